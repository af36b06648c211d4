"""Quantification report -> MRML table node (real MRML)."""
import math

import numpy as np
import pytest

pytest.importorskip("slicer", reason="PyPI slicer-core (the test extra) is not installed")

import vtk  # noqa: E402

from COVIDSegLib.quantify.measure import quantify  # noqa: E402
from COVIDSegLib.quantify.plausibility import Limits  # noqa: E402
from COVIDSegLib.volume import Volume  # noqa: E402
from COVIDSegSlicer.report_table import REPORT_COLUMNS, make_table, report_to_table  # noqa: E402


def _report():
    """Left lung 6x4x10 voxels with 3 GGO + 2 consolidation in its top slice, right lung clear."""
    labels = np.zeros((8, 8, 44), np.uint8)  # slices 0 and 7 empty: the whole lungs are in the scan
    labels[1:7, 2:6, 2:12] = 2   # index x low = patient's right (identity LPS); clear of the image edge
    labels[1:7, 2:6, 32:42] = 1
    labels[6, 2, 32:35] = 3
    labels[6, 3, 32:34] = 4
    tiny_lungs_graded = Limits(lung_ml=(0.0, 1.0), min_height_mm=0.0)  # graded, and warned as too large
    return quantify(Volume(labels, spacing=(2.0, 2.0, 2.0)), limits=tiny_lungs_graded)


def _table_rows(node):
    table = node.GetTable()
    return {table.GetValue(r, 0).ToString(): [table.GetValue(r, c) for c in range(1, 5)]
            for r in range(table.GetNumberOfRows())}


def test_table_holds_the_reports_figures(slicer_env):
    report = _report()
    node = report_to_table(slicer_env.scene, report)
    rows = _table_rows(node)
    left, right = report.lungs["left"], report.lungs["right"]

    def values(measure):
        return [v.ToDouble() for v in rows[measure][:3]]
    assert values("Lung volume") == pytest.approx([left.lung_ml, right.lung_ml, report.both_lung_ml])
    assert values("Ground-glass opacity volume") == pytest.approx([3 * 0.008, 0.0, 3 * 0.008])
    assert values("Consolidation volume") == pytest.approx([2 * 0.008, 0.0, 2 * 0.008])
    assert values("Involvement") == pytest.approx([left.involvement_percent, 0.0, report.both_involvement_percent])
    upper = left.zones["upper"]
    both_upper = 100 * upper["infection_ml"] / (upper["lung_ml"] + right.zones["upper"]["lung_ml"])
    assert values("Upper zone involvement") == pytest.approx([upper["involvement_percent"], 0.0, both_upper])
    assert values("Upper zone score") == [upper["score"], 0, upper["score"]]
    assert values("CT severity score") == [report.total_severity_score, 0, report.total_severity_score]
    grade_row = next(m for m in rows if m.startswith("Severity grade"))
    assert grade_row == f"Severity grade: {report.grade} {report.grade_word}"
    assert math.isnan(values(grade_row)[0]) and values(grade_row)[2] == int(report.grade[-1])
    assert rows["Lung volume"][3].ToString() == "mL" and rows["Involvement"][3].ToString() == "%"
    assert node.GetAttribute("COVIDSeg.grade") == report.grade
    warning_rows = [m for m in rows if m.startswith("Warning: ")]  # lungs over the test's 1 mL limit
    assert warning_rows == [f"Warning: {w}" for w in report.warnings] and warning_rows


def test_table_of_a_partial_scan_has_no_grade_and_na_zones(slicer_env):
    labels = np.zeros((3, 4, 40), np.uint8)
    labels[:, :, :10] = 2
    report = quantify(Volume(labels, spacing=(2.0, 2.0, 2.0)))  # right lung only, cut at both ends
    rows = _table_rows(report_to_table(slicer_env.scene, report))
    grade_row = next(m for m in rows if m.startswith("Severity grade"))
    assert grade_row.startswith("Severity grade: not gradable partial lung coverage")
    assert math.isnan(rows[grade_row][2].ToDouble())
    assert all(math.isnan(rows[f"Upper zone {m}"][c].ToDouble()) for m in ("score", "involvement") for c in range(3))
    assert math.isnan(rows["CT severity score"][2].ToDouble())


def test_columns_are_typed_and_the_table_locked(slicer_env):
    node = report_to_table(slicer_env.scene, _report(), task="binary")
    table = node.GetTable()
    assert [table.GetColumn(c).GetName() for c in range(5)] == [name for name, _ in REPORT_COLUMNS]
    assert isinstance(table.GetColumn(1), vtk.vtkDoubleArray) and isinstance(table.GetColumn(4), vtk.vtkStringArray)
    assert node.GetLocked()
    names = _table_rows(node)
    assert "Infection volume" in names and "Ground-glass opacity volume" not in names  # binary model


def test_make_table_refills_a_given_node(slicer_env):
    node = make_table(slicer_env.scene, [("a", "string"), ("b", "double")], [("x", 1.5), ("y", 2)])
    same = make_table(slicer_env.scene, [("a", "string"), ("b", "double")], [("z", 3)], table_node=node)
    assert same is node and node.GetTable().GetNumberOfRows() == 1
    assert node.GetTable().GetValue(0, 1).ToDouble() == 3.0
