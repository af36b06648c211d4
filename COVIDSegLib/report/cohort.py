"""A cohort at a glance: ``OUT/cohort.csv`` (a row per input) and ``OUT/index.html`` (one
self-contained, sortable page with each patient's overlay thumbnail, grade, involvement,
warnings and a link to the report). Built from the batch rows and the reports in OUT; rows of
earlier runs into the same OUT are kept, so re-running updates the table."""
from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path
from typing import Dict, List, Sequence

from ..io.files import atomic_path, write_csv_rows
from ..io.paths import stem_of
from ..jobs.batch import BatchRow

FIELDS = ["stem", "input", "status", "seconds", "grade", "gradable", "total_severity_score",
          "both_involvement_percent", "left_involvement_percent", "right_involvement_percent",
          "left_lung_ml", "right_lung_ml", "left_infection_ml", "right_infection_ml", "left_ggo_ml", "right_ggo_ml",
          "left_consolidation_ml", "right_consolidation_ml", "warnings", "error", "model", "model_sha256", "lung_method",
          "class_method", "postprocessing"]


def _report_columns(report: dict) -> Dict[str, object]:
    columns: Dict[str, object] = {key: report.get(key) for key in
                                  ("grade", "gradable", "total_severity_score", "both_involvement_percent", "model",
                                   "model_sha256", "lung_method", "class_method")}
    for side, figures in (report.get("lungs") or {}).items():
        columns[f"{side}_involvement_percent"] = figures.get("involvement_percent")
        for key in ("lung_ml", "infection_ml", "ggo_ml", "consolidation_ml"):
            columns[f"{side}_{key}"] = figures.get(key)
    columns["warnings"] = " | ".join(report.get("warnings") or [])
    columns["postprocessing"] = "; ".join(f"{k}={v}" for k, v in (report.get("postprocessing") or {}).items())
    return {k: ("n/a" if v is None else round(v, 2) if isinstance(v, float) else v) for k, v in columns.items()}


def cohort_row(row: BatchRow, out_dir: Path) -> Dict[str, object]:
    stem = stem_of(row.input)
    entry: Dict[str, object] = {"stem": stem, "input": row.input, "status": row.status, "seconds": row.seconds,
                                "error": row.error}
    report = Path(out_dir) / f"{stem}.report.json"
    if row.status != "failed" and report.is_file():
        entry.update(_report_columns(json.loads(report.read_text(encoding="utf-8"))))
    return entry


def _previous(path: Path) -> List[Dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_cohort(rows: Sequence[BatchRow], out_dir: Path) -> List[Path]:
    """Write (or update) ``cohort.csv`` and ``index.html`` in ``out_dir``; returns both paths."""
    out_dir = Path(out_dir)
    table = {r["stem"]: r for r in _previous(out_dir / "cohort.csv")}
    for row in rows:
        table[stem_of(row.input)] = cohort_row(row, out_dir)
    entries = [table[k] for k in sorted(table)]
    csv_path = write_csv_rows(entries, out_dir / "cohort.csv", FIELDS)
    return [csv_path, write_index(entries, out_dir)]


def _thumbnail(path: Path, size: int = 160) -> str:
    """A small PNG of the overlay as a data URI ('' when there is none)."""
    if not path.is_file():
        return ""
    from PIL import Image
    with Image.open(path) as image:
        image.thumbnail((size * 2, size))
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_STYLE = ("body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}th,td{border:1px solid #ccc;"
          "padding:4px 8px;vertical-align:middle}th{cursor:pointer;background:#eee}tr.failed{background:#fdd}"
          "td.warn{color:#a60;font-size:90%;max-width:28em}")
_SORT = ("document.querySelectorAll('th').forEach((th,i)=>th.onclick=()=>{const b=th.closest('table').tBodies[0];"
         "const up=th.dataset.up!=='1';th.dataset.up=up?'1':'0';[...b.rows].sort((x,y)=>{const p=x.cells[i].dataset.v,"
         "q=y.cells[i].dataset.v,a=parseFloat(p),c=parseFloat(q);const r=isNaN(a)||isNaN(c)?p.localeCompare(q):a-c;"
         "return up?r:-r}).forEach(r=>b.appendChild(r))});")
_COLUMNS = [("patient", "stem"), ("status", "status"), ("grade", "grade"), ("score /30", "total_severity_score"),
            ("involved %", "both_involvement_percent"), ("left %", "left_involvement_percent"),
            ("right %", "right_involvement_percent"), ("lungs mL", None), ("warnings / error", None)]


def write_index(entries: Sequence[Dict[str, object]], out_dir: Path) -> Path:
    """The cohort page: one row per patient, click a header to sort."""
    head = "".join(f"<th>{html.escape(name)}</th>" for name, _ in [("overlay", None)] + _COLUMNS)
    body = []
    for e in entries:
        stem = str(e["stem"])
        thumb = _thumbnail(out_dir / f"{stem}.overlay.png")
        report = f"{stem}.report.html"
        picture = f'<a href="{html.escape(report, quote=True)}"><img src="{thumb}" alt="overlay"></a>' if thumb else ""
        cells = [f'<td data-v="">{picture}</td>']
        for _, key in _COLUMNS[:7]:
            value = html.escape(str(e.get(key, "") or ""))
            link = key == "stem" and (out_dir / report).is_file()
            cells.append(f'<td data-v="{value}">' + (f'<a href="{html.escape(report, quote=True)}">{value}</a>'
                                                        if link else value) + "</td>")
        lungs = _sum(e.get("left_lung_ml"), e.get("right_lung_ml"))
        cells.append(f'<td data-v="{lungs}">{lungs}</td>')
        note = html.escape(str(e.get("error") or e.get("warnings") or ""))
        cells.append(f'<td class="warn" data-v="{note}">{note}</td>')
        body.append(f'<tr class="{html.escape(str(e["status"]))}">{"".join(cells)}</tr>')
    done = sum(e["status"] in ("done", "skipped") for e in entries)
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>COVIDSeg cohort</title><style>{_STYLE}</style>"
            f"</head><body><h1>COVIDSeg cohort</h1><p>{len(entries)} inputs, {done} segmented, "
            f"{len(entries) - done} failed. Click a column to sort; a thumbnail or name opens the report.</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            f"<script>{_SORT}</script></body></html>\n")
    path = out_dir / "index.html"
    with atomic_path(path) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return path


def _sum(*values) -> str:
    try:
        return f"{sum(float(v) for v in values):.0f}"
    except (TypeError, ValueError):
        return ""
