"""Cohort throughput: `covidseg segment` on N volumes as one process, with --workers 2, and with
--ray (a local cluster); peak memory per process (sampled from /proc every 0.2 s) and Ray's
per-task overhead (empty tasks). Writes a JSON for docs/BENCHMARKS.md.

    python scripts/bench_cohort.py -n 8 -o docs/COHORT_BENCH.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "Testing")]


def inputs(folder: Path, n: int) -> list:
    """N chest phantoms (40 x 128 x 128, 1.5 x 1.5 x 2.5 mm), each with its own noise seed."""
    from chest_phantom import SPACING, chest_phantom
    paths = []
    for i in range(n):
        image = sitk.GetImageFromArray(chest_phantom(seed=i).hu)
        image.SetSpacing(SPACING)
        paths.append(folder / f"phantom_{i}.nii.gz")
        sitk.WriteImage(image, str(paths[-1]))
    return paths


class PeakMemory(threading.Thread):
    """Largest resident set of any COVIDSeg or Ray task process, and per process."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peaks, self.running = {}, True

    def run(self) -> None:
        while self.running:
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    cmdline = (entry / "cmdline").read_bytes()
                    if b"COVIDSegLib" in cmdline or b"multiprocessing.spawn" in cmdline or cmdline.startswith(b"ray::"):
                        rss = next(int(line.split()[1]) for line in (entry / "status").read_text().splitlines()
                                   if line.startswith("VmRSS:"))
                        self.peaks[entry.name] = max(self.peaks.get(entry.name, 0), rss)
                except (OSError, StopIteration, ValueError):
                    pass
            time.sleep(0.2)


def timed(paths: list, out_dir: Path, extra: list) -> dict:
    shutil.rmtree(out_dir, ignore_errors=True)
    sampler = PeakMemory()
    sampler.start()
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "COVIDSegLib", "segment", "-q", *map(str, paths), "-o", str(out_dir),
                           *extra], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    sampler.running = False
    sampler.join()
    assert done.returncode == 0, done.stderr
    peaks = sorted(sampler.peaks.values(), reverse=True)
    return {"seconds": round(seconds, 1), "volumes_per_minute": round(60 * len(paths) / seconds, 2),
            "peak_rss_mb_largest_process": round(peaks[0] / 1024) if peaks else None,
            "processes_sampled": len(peaks)}


def ray_task_overhead(tasks: int = 200) -> float:
    import ray
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    noop = ray.remote(num_cpus=1)(lambda: None)
    ray.get([noop.remote() for _ in range(20)])  # warm workers
    start = time.perf_counter()
    ray.get([noop.remote() for _ in range(tasks)])
    per_task = (time.perf_counter() - start) / tasks
    ray.shutdown()
    return per_task


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=8)
    ap.add_argument("-o", "--output", type=Path)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cohort-bench-"))
    paths = inputs(work, args.n)
    results = {"volumes": args.n, "volume": "chest phantom 40 x 128 x 128", "cores": os.cpu_count(),
               "one process (--workers 1)": timed(paths, work / "w1", ["--workers", "1"]),
               "--workers 2": timed(paths, work / "w2", ["--workers", "2"]),
               "--ray (local cluster)": timed(paths, work / "ray", ["--ray"])}
    results["ray_empty_task_ms"] = round(1000 * ray_task_overhead(), 2)
    labels = [np.asarray(sitk.GetArrayFromImage(sitk.ReadImage(str(work / d / "phantom_0.labels.nii.gz"))))
              for d in ("w1", "w2", "ray")]
    results["outputs_identical"] = all(np.array_equal(labels[0], other) for other in labels[1:])
    print(json.dumps(results, indent=1))
    if args.output:
        args.output.write_text(json.dumps(results, indent=1) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
