"""The segments COVIDSeg writes: name, colour and standard terminology per label value.

Codes (checked against Slicer's own terminology lists and DICOM PS3.16):
lungs are Slicer's "Anatomical Structure / Lung" (SCT 39607008) with the laterality modifier
Left (SCT 7771000) or Right (SCT 24028007), as in Slicer's DICOM master list; findings are
"Morphologically Altered Structure" (SCT 49755003) of type Lung consolidation (SCT 95436008),
Ground glass opacity (DCM 112120, CID 6104: SNOMED CT has no such concept) or, for a binary
model's "Infection", Abnormal opacity (DCM 112033, CID 6101), in the anatomic region Lung.
Slicer's lists lack the finding types, so all of them are in ``Resources/Terminology/
COVIDSeg.term.json``, the context the entries below name.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

from COVIDSegLib import labels as L

Code = Tuple[str, str, str]  # (coding scheme designator, code value, code meaning)


def _terminology_file() -> Path:
    """In the built extension Resources/ sits in the module folder; in the repository at its root."""
    here = Path(__file__).resolve()
    candidates = [root / "Resources" / "Terminology" / "COVIDSeg.term.json" for root in here.parents[1:3]]
    return next((c for c in candidates if c.is_file()), candidates[-1])


TERMINOLOGY_FILE = _terminology_file()
CONTEXT = "Segmentation category and type - COVIDSeg"
REGION_CONTEXT = "Anatomic codes - DICOM master list"

ANATOMICAL_STRUCTURE: Code = ("SCT", "123037004", "Anatomical Structure")
ALTERED_STRUCTURE: Code = ("SCT", "49755003", "Morphologically Altered Structure")
LUNG: Code = ("SCT", "39607008", "Lung")
LEFT: Code = ("SCT", "7771000", "Left")
RIGHT: Code = ("SCT", "24028007", "Right")
GROUND_GLASS_OPACITY: Code = ("DCM", "112120", "Ground glass opacity")
CONSOLIDATION: Code = ("SCT", "95436008", "Lung consolidation")
ABNORMAL_OPACITY: Code = ("DCM", "112033", "Abnormal opacity")

# What a user can ask for -> label values (DESIGN.md); "infection" is GGO and consolidation.
CLASS_VALUES = {
    "lungs": (L.LEFT_LUNG, L.RIGHT_LUNG),
    "ggo": (L.GGO,),
    "consolidation": (L.CONSOLIDATION,),
    "infection": (L.GGO, L.CONSOLIDATION),
}
ALL_CLASSES = ("lungs", "ggo", "consolidation")


@dataclass(frozen=True)
class SegmentSpec:
    value: int                          # label value in the label map
    segment_id: str
    name: str
    color: Tuple[float, float, float]   # RGB 0..1
    terminology: str                    # serialized Slicer terminology entry


def _code(code: Optional[Code]) -> str:
    return "^".join(code) if code else "^^"


def terminology_entry(category: Code, type_: Code, modifier: Optional[Code] = None,
                      region: Optional[Code] = None) -> str:
    """A terminology entry string as Slicer's ``SerializeTerminologyEntry`` writes it."""
    return "~".join([CONTEXT, _code(category), _code(type_), _code(modifier),
                     REGION_CONTEXT if region else "", _code(region), _code(None)])


def task_values(task: str) -> Tuple[int, ...]:
    """Label values a model of ``task`` produces: a binary model has no consolidation."""
    return (L.LEFT_LUNG, L.RIGHT_LUNG, L.GGO) if task == "binary" else tuple(L.NAMES)


def values_for_classes(classes: Optional[Iterable[str]]) -> Tuple[int, ...]:
    """Label values of the requested classes (all when ``None``); unknown names raise."""
    if classes is None:
        return tuple(L.NAMES)
    unknown = sorted(set(classes) - set(CLASS_VALUES))
    if unknown:
        raise ValueError(f"unknown class {', '.join(unknown)}; choose from {', '.join(CLASS_VALUES)}")
    return tuple(sorted({v for c in classes for v in CLASS_VALUES[c]}))


def _terminology(value: int, task: str) -> str:
    if value == L.LEFT_LUNG:
        return terminology_entry(ANATOMICAL_STRUCTURE, LUNG, LEFT)
    if value == L.RIGHT_LUNG:
        return terminology_entry(ANATOMICAL_STRUCTURE, LUNG, RIGHT)
    finding = {L.GGO: ABNORMAL_OPACITY if task == "binary" else GROUND_GLASS_OPACITY,
               L.CONSOLIDATION: CONSOLIDATION}[value]
    return terminology_entry(ALTERED_STRUCTURE, finding, region=LUNG)


def specs_for(task: str, classes: Optional[Iterable[str]] = None) -> List[SegmentSpec]:
    """The segments of a ``task`` model's output, in label order, limited to ``classes``."""
    names = L.names_for(task)
    wanted = set(values_for_classes(classes))
    return [SegmentSpec(v, names[v].lower().replace(" ", "_").replace("-", "_"), names[v],
                        L.COLORS[v], _terminology(v, task))
            for v in task_values(task) if v in wanted]


def load_terminology(terminologies_logic) -> str:
    """Load COVIDSeg's terminology context into the Terminologies logic; returns its name."""
    name = terminologies_logic.LoadTerminologyFromFile(str(TERMINOLOGY_FILE))
    if name != CONTEXT:
        raise RuntimeError(f"cannot load the COVIDSeg terminology from {TERMINOLOGY_FILE}")
    return name
