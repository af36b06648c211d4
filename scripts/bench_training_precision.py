"""Training compute on this CPU: forward + backward ms per slice of a model at an input size, in
fp32 and with bf16 autocast, channels-last, N threads (issue 12: measure before planning).

    python scripts/bench_training_precision.py --size 256 --threads 2
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from COVIDSegLib.models.registry import build_model  # noqa: E402


def ms_per_slice(config: dict, size: int, batch: int, bf16: bool, steps: int) -> float:
    torch.manual_seed(0)
    model = build_model(config).to(memory_format=torch.channels_last).train()
    optimiser = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.randn(batch, 1, size, size).to(memory_format=torch.channels_last)
    y = torch.randint(0, config.get("out_channels", 3), (batch, size, size))
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
            out = out[0] if isinstance(out, tuple) else out
            loss = torch.nn.functional.cross_entropy(out.float(), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step:  # the first step warms up
            times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2] / batch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    for name in ("unet", "xr_msf_unet"):
        config = {"name": name, "base": 16, "in_channels": 1, "out_channels": 3}
        results[name] = {precision: round(ms_per_slice(config, args.size, args.batch, precision == "bf16", args.steps), 1)
                         for precision in ("fp32", "bf16")}
    print(json.dumps({"size": args.size, "threads": args.threads, "batch": args.batch, "ms_per_slice": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
