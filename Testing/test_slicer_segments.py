"""Segment specs: names, colours and terminology entries, checked with Slicer's terminology logic."""
import json

import pytest

from COVIDSegLib import labels as L

slicer = pytest.importorskip("slicer", reason="PyPI slicer-core (the test extra) is not installed")

from COVIDSegSlicer import segments as S  # noqa: E402


def test_multiclass_specs_are_the_four_fixed_labels_with_library_names_and_colours():
    specs = S.specs_for("multiclass")
    assert [s.value for s in specs] == [1, 2, 3, 4]
    assert [s.name for s in specs] == ["Left lung", "Right lung", "Ground-glass opacity", "Consolidation"]
    assert [s.color for s in specs] == [L.COLORS[v] for v in (1, 2, 3, 4)]
    assert [s.segment_id for s in specs] == ["left_lung", "right_lung", "ground_glass_opacity", "consolidation"]


def test_binary_model_has_infection_and_no_consolidation():
    specs = S.specs_for("binary")
    assert [(s.value, s.name) for s in specs] == [(1, "Left lung"), (2, "Right lung"), (3, "Infection")]
    assert "DCM^112033^Abnormal opacity" in specs[2].terminology


def test_classes_select_segments_and_unknown_names_fail():
    assert [s.value for s in S.specs_for("multiclass", ["lungs"])] == [1, 2]
    assert [s.value for s in S.specs_for("multiclass", ["infection"])] == [3, 4]
    assert [s.value for s in S.specs_for("binary", ["consolidation"])] == []
    with pytest.raises(ValueError, match="unknown class"):
        S.specs_for("multiclass", ["lung"])


@pytest.mark.parametrize("value, codes", [
    (1, ("123037004", "Anatomical Structure", "39607008", "Lung", "7771000", "Left", "", "", "")),
    (2, ("123037004", "Anatomical Structure", "39607008", "Lung", "24028007", "Right", "", "", "")),
    (3, ("49755003", "Morphologically Altered Structure", "112120", "Ground glass opacity", "", "",
         S.REGION_CONTEXT, "39607008", "Lung")),
    (4, ("49755003", "Morphologically Altered Structure", "95436008", "Lung consolidation", "", "",
         S.REGION_CONTEXT, "39607008", "Lung")),
])
def test_terminology_string_is_what_slicer_serializes(value, codes):
    cat, cat_m, typ, typ_m, mod, mod_m, region_ctx, region, region_m = codes
    spec = next(s for s in S.specs_for("multiclass") if s.value == value)
    scheme = lambda code: "" if not code else ("DCM" if code.startswith("112") else "SCT")  # noqa: E731
    expected = slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(
        S.CONTEXT, cat, scheme(cat), cat_m, typ, scheme(typ), typ_m, mod, scheme(mod), mod_m,
        region_ctx, region, scheme(region), region_m, "", "", "")
    assert spec.terminology == expected


def test_every_entry_is_found_in_the_shipped_terminology_with_its_colour(slicer_env):
    logic = slicer_env.terminologies
    assert S.load_terminology(logic) == S.CONTEXT
    for spec in S.specs_for("multiclass") + S.specs_for("binary"):
        entry = slicer.vtkSlicerTerminologyEntry()
        assert logic.DeserializeTerminologyEntry(spec.terminology, entry)
        assert logic.UpdateEntryFromLoadedTerminologies(entry, [S.CONTEXT], [])
        coded = entry.GetTypeModifierObject() if entry.GetTypeModifierObject().GetCodeValue() else entry.GetTypeObject()
        assert coded.GetRecommendedDisplayRGBValue() == tuple(round(c * 255) for c in spec.color), spec.name


def test_terminology_file_is_valid_slicer_json_with_the_codes_used():
    doc = json.loads(S.TERMINOLOGY_FILE.read_text(encoding="utf-8"))
    assert doc["SegmentationCategoryTypeContextName"] == S.CONTEXT
    types = {t["CodeValue"] for c in doc["SegmentationCodes"]["Category"] for t in c["Type"]}
    assert types == {S.LUNG[1], S.GROUND_GLASS_OPACITY[1], S.CONSOLIDATION[1], S.ABNORMAL_OPACITY[1]}
