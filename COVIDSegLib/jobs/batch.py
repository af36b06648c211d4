"""Many inputs, one job each: keep going after a failure, record a row per input, summarise."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import user_message
from ..progress import CancelToken, check
from ..signals import stop_arrived

DONE, SKIPPED, FAILED = "done", "skipped", "failed"

#: ``job(input) -> (written files, summary columns)``; no files written = already done (skipped)
Job = Callable[[str], Tuple[List[Path], Dict[str, object]]]


@dataclass
class BatchRow:
    input: str
    status: str
    seconds: float
    outputs: List[Path] = field(default_factory=list)
    details: Dict[str, object] = field(default_factory=dict)
    error: str = ""


def run_batch(inputs: Sequence[str], job: Job, on_row: Optional[Callable[[BatchRow], None]] = None,
              cancel: Optional[CancelToken] = None) -> List[BatchRow]:
    """Run ``job`` on every input; any error fails that input only (Ctrl-C and SIGTERM stop the batch)."""
    rows = []
    for path in inputs:
        check(cancel)
        start = time.perf_counter()
        try:
            written, details = job(path)
            row = BatchRow(str(path), DONE if written else SKIPPED, 0.0, written, details)
        except Exception as error:  # noqa: BLE001 - one input's failure (even a bug) must not stop the batch
            if stop_arrived() is not None:  # a Ctrl-C or SIGTERM that a C extension reported as its own error
                raise
            row = BatchRow(str(path), FAILED, 0.0, error=user_message(error))
        row.seconds = round(time.perf_counter() - start, 2)
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


def format_summary(rows: Sequence[BatchRow]) -> str:
    """A plain-text table: input, status, seconds and the job's summary columns."""
    keys = list(dict.fromkeys(k for row in rows for k in row.details))
    header = ["input", "status", "seconds"] + keys
    table = [header] + [[Path(r.input).name, r.status, f"{r.seconds:.1f}"]
                        + [_cell(r.details.get(k, "")) for k in keys] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in table]
    failed = sum(r.status == FAILED for r in rows)
    skipped = sum(r.status == SKIPPED for r in rows)
    lines.append(f"{len(rows) - failed - skipped} of {len(rows)} inputs succeeded"
                 + (f", {skipped} skipped (outputs exist)" if skipped else "") + (f", {failed} failed" if failed else ""))
    return "\n".join(lines)


def _cell(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)
