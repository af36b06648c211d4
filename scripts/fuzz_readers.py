"""Fuzz the readers: N mutated files (all input formats) through read_volume -> check_volume ->
intensity resolution, each case watched from outside for crashes and hangs.

Workers (one per core) run cases in order and say "start i" before each and "done i OUTCOME"
after; a worker that dies marks its current case a crash, one silent for --timeout seconds a
hang (it is killed and a new worker goes on). Outcomes: ok (usable input), project (one-line
project error), other (any other exception: a defect), noise (native code wrote to stderr),
crash, hang. Writes a JSON summary and lists every defect's case number (re-run one with
--case I --keep DIR to get its file).

    python scripts/fuzz_readers.py -n 10000 -o docs/FUZZ.json
"""
from __future__ import annotations

import argparse
import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "Testing")]


def worker(first: int, last: int, root: Path) -> None:
    """Run cases first..last-1, reporting on stdout; native stderr goes to a file checked per case."""
    from COVIDSegLib.errors import CovidSegError

    from fuzzcases import make_case, read_case
    noise = root / "stderr.txt"
    handle = os.open(noise, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(handle, 2)
    for index in range(first, last):
        path = make_case(index, root)
        print(f"start {index}", flush=True)
        size = os.fstat(2).st_size
        try:
            outcome = read_case(path)
        except CovidSegError:
            outcome = "project"
        except Exception as error:  # noqa: BLE001 - counted as a defect
            outcome = f"other:{type(error).__name__}"
        if os.fstat(2).st_size != size and outcome in ("ok", "project"):
            outcome = "noise"
        print(f"done {index} {outcome}", flush=True)


def run_range(first: int, last: int, timeout: float, outcomes: dict) -> None:
    """Cases first..last-1 in workers, restarting after a crash or hang."""
    while first < last:
        root = Path(tempfile.mkdtemp(prefix="fuzz-"))
        process = subprocess.Popen([sys.executable, __file__, "--worker", str(first), str(last), str(root)],
                                   stdout=subprocess.PIPE, text=True)
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        current = None
        while True:
            if not selector.select(timeout):
                process.kill()
                outcomes[current if current is not None else first] = "hang"
                break
            line = process.stdout.readline()
            if not line:
                process.wait()
                if current is not None:
                    outcomes[current] = f"crash:{process.returncode}"
                break
            word, index, *rest = line.split()
            current = int(index) if word == "start" else None
            if word == "done":
                outcomes[int(index)] = rest[0]
        process.wait()
        done = [i for i in outcomes if first <= i < last]
        first = max(done) + 1 if done else first + 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10000, help="number of cases (default: %(default)s)")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds without progress = a hang")
    ap.add_argument("-o", "--output", type=Path)
    ap.add_argument("--case", type=int, help="write this case into --keep and run it here")
    ap.add_argument("--keep", type=Path)
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(int(args.worker[0]), int(args.worker[1]), Path(args.worker[2]))
        return 0
    if args.case is not None:
        from fuzzcases import make_case, read_case
        path = make_case(args.case, args.keep or Path(tempfile.mkdtemp()))
        print(path)
        print(read_case(path))
        return 0
    import concurrent.futures
    start, outcomes, chunks = time.time(), {}, []
    size = max(args.n // (args.workers * 10), 1)
    for first in range(args.start, args.start + args.n, size):
        chunks.append((first, min(first + size, args.start + args.n)))
    with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(lambda c: run_range(c[0], c[1], args.timeout, outcomes), chunks))
    kinds = Counter(v.split(":")[0] for v in outcomes.values())
    defects = {i: v for i, v in sorted(outcomes.items()) if not v in ("ok", "project")}
    summary = {"cases": len(outcomes), "first_case": args.start, "seconds": round(time.time() - start, 1),
               "outcomes": dict(sorted(kinds.items())), "defects": defects,
               "defect_types": dict(Counter(defects.values()))}
    print(json.dumps(summary, indent=1))
    if args.output:
        args.output.write_text(json.dumps(summary, indent=1) + "\n")
    return 1 if defects else 0


if __name__ == "__main__":
    sys.exit(main())
