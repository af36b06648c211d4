"""Quantification reports (and any row list) as MRML table nodes with typed columns."""
from __future__ import annotations

from typing import List, Sequence, Tuple

import vtk

from COVIDSegLib.quantify.measure import ZONES, Report

from .hierarchy import place_beside

Column = Tuple[str, str]  # (name, "string" | "double")
REPORT_COLUMNS: Sequence[Column] = (("Measure", "string"), ("Left lung", "double"),
                                    ("Right lung", "double"), ("Both lungs", "double"), ("Unit", "string"))
GRADE_ATTRIBUTES = ("COVIDSeg.grade", "COVIDSeg.grade_word", "COVIDSeg.total_score", "COVIDSeg.warnings")


def make_table(scene, columns: Sequence[Column], rows: Sequence[Sequence], table_node=None, name: str = "Table"):
    """Fill ``table_node`` (or a new, locked table node) with ``rows`` under typed ``columns``."""
    table = vtk.vtkTable()
    for index, (title, kind) in enumerate(columns):
        array = vtk.vtkStringArray() if kind == "string" else vtk.vtkDoubleArray()
        array.SetName(title)
        array.SetNumberOfValues(len(rows))
        for r, row in enumerate(rows):
            array.SetValue(r, str(row[index]) if kind == "string" else float(row[index]))
        table.AddColumn(array)
    node = table_node or scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    node.SetAndObserveTable(table)
    node.SetLocked(True)  # results, not a form
    return node


NA = float("nan")  # "n/a" in a double column: a zone without lung, no grade


def _zone_percent(report: Report, zone: str) -> float:
    if not report.gradable:
        return NA  # thirds of a partial scan are not the lung's zones
    zones = [f.zones[zone] for f in report.lungs.values()]
    lung = sum(z["lung_ml"] for z in zones)
    return 100.0 * sum(z["infection_ml"] for z in zones) / lung if lung else NA


def _na(value) -> float:
    return NA if value is None else value


def _sum(values) -> float:
    return NA if any(v is None for v in values) else float(sum(values))


def report_table_rows(report: Report, task: str = "multiclass") -> List[Tuple[str, float, float, float, str]]:
    """(measure, left, right, both, unit) rows of a report; a binary model's finding is "Infection"."""
    left, right = report.lungs["left"], report.lungs["right"]
    rows = [("Lung volume", left.lung_ml, right.lung_ml, report.both_lung_ml, "mL")]
    if task != "binary":
        rows += [("Ground-glass opacity volume", left.ggo_ml, right.ggo_ml, left.ggo_ml + right.ggo_ml, "mL"),
                 ("Consolidation volume", left.consolidation_ml, right.consolidation_ml,
                  left.consolidation_ml + right.consolidation_ml, "mL")]
    rows += [("Infection volume", left.infection_ml, right.infection_ml, report.both_infection_ml, "mL"),
             ("Involvement", left.involvement_percent, right.involvement_percent,
              report.both_involvement_percent, "%")]
    for zone in ZONES:
        rows.append((f"{zone.capitalize()} zone involvement", _na(left.zones[zone]["involvement_percent"]),
                     _na(right.zones[zone]["involvement_percent"]), _zone_percent(report, zone), "%"))
    for zone in ZONES:
        l_score, r_score = left.zones[zone]["score"], right.zones[zone]["score"]
        rows.append((f"{zone.capitalize()} zone score", _na(l_score), _na(r_score), _sum([l_score, r_score]),
                     "0-5 per lung"))
    side_total = [_sum([z["score"] for z in f.zones.values()]) for f in (left, right)]
    rows.append(("CT severity score", side_total[0], side_total[1], _na(report.total_severity_score), "0-30"))
    code = int(report.grade.split("-")[1]) if report.gradable else NA
    rows.append((f"Severity grade: {report.grade} {report.grade_word}", NA, NA, code, "CT-0 to CT-4"))
    rows += [(f"Warning: {w}", NA, NA, NA, "") for w in report.warnings]
    return rows


def report_to_table(scene, report: Report, table_node=None, name: str = "COVIDSeg report",
                    task: str = "multiclass", beside=None):
    """The report as a table node (``report_table_rows``), its grade also in node attributes,
    placed beside the node ``beside`` (the CT) in the subject hierarchy when given."""
    node = make_table(scene, REPORT_COLUMNS, report_table_rows(report, task), table_node, name)
    values = (report.grade, report.grade_word, report.total_severity_score, " | ".join(report.warnings))
    for attribute, value in zip(GRADE_ATTRIBUTES, values):
        node.SetAttribute(attribute, str(value))
    if beside is not None:
        place_beside(scene, node, beside)
    return node
