#!/usr/bin/env python3
"""Speed and memory of the full COVIDSeg pipeline vs lungmask R231, same volume, same machine.

The volume: the bundled real 2-slice chest CT (Resources/Samples, 512 x 512, HU) repeated to N
slices with independent noise (+-20 HU), so the lungs are real anatomy. Each measurement runs in
a fresh subprocess (clean peak RSS) with a fixed number of torch threads:

* ours: read -> lungs + infection (bundled model) -> quantification -> write labels + report
* lungmask: ``LMInferer(modelname="R231", modelpath=<random weights>)`` on the same image: the
  R231 U-Net with random weights has the real model's compute and needs no download.

    python benchmarks/bench_pipeline.py --slices 64 --threads 2 --repeats 3 [--lungmask-python PATH] [--device cuda]
Writes docs/BENCHMARKS.md's table rows to stdout and appends the raw figures to benchmarks/results.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "Resources" / "Samples" / "lungmask_chest_ct_2slices.nii.gz"


def make_volume(slices: int, path: Path) -> Path:
    import SimpleITK as sitk
    image = sitk.ReadImage(str(SAMPLE))
    base = sitk.GetArrayFromImage(image).astype(np.int16)
    rng = np.random.default_rng(0)
    reps = -(-slices // base.shape[0])
    arr = np.concatenate([base] * reps)[:slices]
    arr = (arr + rng.integers(-20, 21, size=arr.shape)).astype(np.int16)
    out = sitk.GetImageFromArray(arr)
    out.SetSpacing(image.GetSpacing())
    out.SetOrigin(image.GetOrigin())
    out.SetDirection(image.GetDirection())
    sitk.WriteImage(out, str(path))
    return path


def cpu_name() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
        line = next(x for x in info.splitlines() if x.startswith("model name"))
        return line.split(":", 1)[1].strip() + (" with AMX" if "amx_bf16" in info else "")
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker_ours(path: Path, device: str, out_dir: Path, model: str, precision: str = "auto") -> dict:
    # libraries imported before the clock starts, as for lungmask below (the CLI imports them lazily)
    import COVIDSegLib.inference.segmenter  # noqa: F401 - torch, MONAI
    import COVIDSegLib.jobs.pipeline  # noqa: F401
    from COVIDSegLib.cli.commands import main
    start = time.perf_counter()
    rc = main(["segment", str(path), "-o", str(out_dir), "--device", device, "--model", model,
               "--precision", precision, "--no-overlay", "-q", "--overwrite"])
    return {"rc": rc, "seconds": time.perf_counter() - start}


def worker_lungmask(path: Path, device: str, out_dir: Path, model: str = "", precision: str = "") -> dict:
    import SimpleITK as sitk
    import torch
    from lungmask import LMInferer
    from lungmask.resunet import UNet
    weights = out_dir / "r231_random.pth"
    torch.manual_seed(0)
    net = UNet(n_classes=3, padding=True, depth=5, up_mode="upsample", batch_norm=True, residual=False)
    torch.save(net.state_dict(), weights)
    start = time.perf_counter()
    image = sitk.ReadImage(str(path))
    inferer = LMInferer(modelname="R231", modelpath=str(weights), force_cpu=device == "cpu", tqdm_disable=True)
    mask = inferer.apply(image)
    sitk.WriteImage(sitk.GetImageFromArray(mask), str(out_dir / "lungmask.nii.gz"))
    return {"rc": 0, "seconds": time.perf_counter() - start}


def run_worker(python: str, which: str, path: Path, args: argparse.Namespace, out_dir: Path) -> dict:
    cmd = [python, __file__, "--worker", which, "--input", str(path), "--threads", str(args.threads),
           "--device", args.device, "--out", str(out_dir), "--model", args.model, "--precision", args.precision]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    result = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {}
    if result.get("rc") != 0:
        raise SystemExit(f"{which} failed: {done.stderr.strip().splitlines()[-1:]}")
    return result


def paired_speedups(runs: dict) -> list:
    """lungmask's time over ours for each repeat (the two ran one after the other)."""
    ours, theirs = runs.get("ours", []), runs.get("lungmask", [])
    return [round(t["seconds"] / o["seconds"], 2) for o, t in zip(ours, theirs)]


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    return done.stdout.strip()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--lungmask-python", default=sys.executable, help="a Python with lungmask installed")
    ap.add_argument("--skip-lungmask", action="store_true")
    ap.add_argument("--repeats", type=int, default=1, help="runs per pipeline (median reported)")
    ap.add_argument("--model", default="covidseg_multiclass", help="our model bundle")
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                    help="ours: `segment --precision` (a literal: the lungmask worker's Python has no COVIDSegLib)")
    ap.add_argument("--worker", choices=["ours", "lungmask"], help=argparse.SUPPRESS)
    ap.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        import torch
        torch.set_num_threads(args.threads)
        result = (worker_ours if args.worker == "ours" else worker_lungmask)(args.input, args.device, args.out, args.model,
                                                                               args.precision)
        print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}))
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = make_volume(args.slices, Path(tmp) / "bench.nii.gz")
        runs = {}
        for _ in range(args.repeats):  # alternating, so that slow phases of a noisy machine hit both
            for which, python in (("ours", sys.executable), ("lungmask", args.lungmask_python)):
                if which == "lungmask" and args.skip_lungmask:
                    continue
                runs.setdefault(which, []).append(run_worker(python, which, path, args, Path(tmp)))
        for which, results in runs.items():
            ms = [1000 * r["seconds"] / args.slices for r in results]  # in run order: pairs stay pairs
            rows.append({"pipeline": which, "slices": args.slices, "threads": args.threads, "device": args.device,
                         "ms_per_slice": float(np.median(ms)), "ms_per_slice_runs": ms,
                         "peak_rss_mb": max(r["peak_rss_mb"] for r in results)})
    machine = f"{platform.machine()} ({cpu_name()}), {args.threads} torch threads, ours --precision {args.precision}"
    for r in rows:
        spread = "/".join(f"{m:.0f}" for m in sorted(r["ms_per_slice_runs"]))
        print(f"| {r['pipeline']} | {args.slices} | {machine} | {r['device']} | {r['ms_per_slice']:.0f} ({spread}) | "
              f"{r['peak_rss_mb']:.0f} |")
    paired = paired_speedups(runs)
    if paired:  # each repeat's lungmask time over ours, run next to each other: robust to the machine's drift
        print(f"speed-up per pair (lungmask / ours): median {np.median(paired):.1f}x, "
              f"{' / '.join(f'{p:.1f}' for p in paired)}")
    log = ROOT / "benchmarks" / "results.json"
    history = json.loads(log.read_text()) if log.exists() else []
    history = history if history and isinstance(history[0], dict) and "rows" in history[0] else []  # older format: restart
    history.append({"date": time.strftime("%Y-%m-%d %H:%M"), "commit": _commit(), "machine": machine, "rows": rows,
                    **({"paired_speedups": paired} if paired else {})})
    log.write_text(json.dumps(history, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
