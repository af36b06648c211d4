"""Per-input reports of a segmentation: JSON (everything), CSV (flat rows), self-contained HTML."""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Optional

from ..io.files import atomic_path, write_csv_rows
from ..quantify.measure import ZONES, Report, report_rows

DISCLAIMER = "Research software, not a medical device: a radiologist must review every result."


def write_csv(report: Report, path: Path) -> Path:
    return write_csv_rows(report_rows(report), path, ["region", "measure", "value"])


def _row(cells, tag: str = "td") -> str:
    return "<tr>" + "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in cells) + "</tr>"


def _zone_cell(zone: dict) -> str:
    if zone["involvement_percent"] is None:
        return "n/a (partial coverage)" if zone["lung_ml"] else "n/a (no lung)"
    return f"{zone['involvement_percent']:.1f} ({zone['score']})"


def write_html(report: Report, path: Path, title: str, meta: dict, overlay: Optional[Path] = None) -> Path:
    """One file a radiologist can open anywhere: overlay figure (embedded), tables, grade."""
    lungs = [_row(["", "Lung (mL)", "GGO (mL)", "Consolidation (mL)", "Involved (%)"], "th")]
    for side, f in report.lungs.items():
        lungs.append(_row([f"{side.capitalize()} lung", f"{f.lung_ml:.1f}", f"{f.ggo_ml:.1f}",
                           f"{f.consolidation_ml:.1f}", f"{f.involvement_percent:.1f}"]))
    lungs.append(_row(["Both lungs", f"{report.both_lung_ml:.1f}", "", "", f"{report.both_involvement_percent:.1f}"]))
    zones = [_row(["Zone"] + [f"{s.capitalize()} lung: % (score)" for s in report.lungs], "th")]
    for z in ZONES:
        zones.append(_row([z.capitalize()] + [_zone_cell(f.zones[z]) for f in report.lungs.values()]))
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in report.warnings)
    warnings = f'<ul class="warn">{warnings}</ul>' if warnings else "<p>No plausibility warnings.</p>"
    density = "".join(_row([k.replace("_", " "), f"{v:.1f}"]) for k, v in (report.density_percent or {}).items())
    density = f"<h2>Density cross-check (% of lung by HU band)</h2><table>{density}</table>" if density else ""
    cov = report.coverage
    coverage = (f"<p>Lungs found over {cov.get('extent_mm', 0):.0f} mm cranio-caudally; apex in the scan: "
                f"{'yes' if cov.get('apex_in_scan') else 'no'}, bases in the scan: "
                f"{'yes' if cov.get('bases_in_scan') else 'no'}; lung outline at the edge of the field of view: "
                f"{cov.get('field_cut_outline_percent', 0):.1f} % ({cov.get('field_cut_slices', 0)} slices).</p>")
    figure = ""
    if overlay is not None and Path(overlay).exists():
        data = base64.b64encode(Path(overlay).read_bytes()).decode("ascii")
        figure = f'<img alt="axial slices with contours" src="data:image/png;base64,{data}">'
    details = "".join(_row([k, v]) for k, v in meta.items())
    page = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:auto}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #bbb;padding:.3em .6em;text-align:right}}.warn{{color:#a40}}img{{max-width:100%}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p><b>Severity: {html.escape(report.grade)} ({html.escape(report.grade_word)})</b>, total CT severity score
{"n/a" if report.total_severity_score is None else report.total_severity_score}/30,
{report.both_involvement_percent:.1f} % of the lungs seen involved.</p>{warnings}{coverage}
<table>{''.join(lungs)}</table><table>{''.join(zones)}</table>{density}{figure}
<h2>Details</h2><table>{details}</table>
<p>Zone score: 0 none, 1 &lt;5 %, 2 5–25 %, 3 26–49 %, 4 50–75 %, 5 &gt;75 %. Grade CT-0..CT-4 by
involvement of both lungs: 0, &lt;25, 25–49, 50–75, &gt;75 %. Involvement below the 1 % grading
floor (both lungs for the grade, a zone for its score) is graded as none and named in the warnings.</p><p><i>{DISCLAIMER}</i></p></body></html>
"""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return path
