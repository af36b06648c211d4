#!/usr/bin/env python3
"""Held-out CV of the lung-space fold models on their covid19-ct-seg slices: the network alone (as
``evaluate`` scores it), and with the infection kept only inside (a) the reference lungs, (b) the
lungs of covidseg_lungs (which saw these slices in training: near an upper bound).

    python scripts/ctseg_within_lungs.py   # after scripts/train_infection_union.py ... -o runs/lungspace_u16
"""
import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from COVIDSegLib.bundle import load_bundle
from COVIDSegLib.inference.predict2d import forward_probabilities, full_size
from COVIDSegLib.models.registry import build_model
from COVIDSegLib.preprocess.slice_prep import InputSpec
from COVIDSegLib.training.datasets import load_ct_seg_slices
from COVIDSegLib.training.metrics import binary_metrics
from COVIDSegLib.training.trainer import TrainConfig
from COVIDSegLib.training.training_data import prepare_set

root = "../shared/data/covid19-ct-seg-slices"
rows = [r for r in csv.DictReader(open("runs/lungspace_u16/cv/cv_slices.csv")) if r["id"].startswith("ctseg_")]
summary = json.load(open("runs/lungspace_u16/cv/cv_summary.json"))
cfg = TrainConfig.from_dict(summary["config"]); spec = InputSpec.from_dict(cfg.input)
samples = {s.id: s for s in load_ct_seg_slices(root, "binary")}
lungs_ref = {i: np.asarray(Image.open(f"{root}/lungs/{i}.png")) > 0 for i in samples}
lb = load_bundle("covidseg_lungs"); lspec = InputSpec.from_dict(lb.card["preprocessing"]["input"])
dev = torch.device("cpu"); out = {"network": [], "ref_lungs": [], "model_lungs": []}
for fold in range(5):
    ids = [r["id"][6:] for r in rows if int(r["fold"]) == fold]
    model = build_model(cfg.model_config()); model.load_state_dict(torch.load(f"runs/lungspace_u16/cv/fold{fold}/checkpoint.pt", map_location="cpu", weights_only=False)["model"]); model.eval()
    data = prepare_set([samples[i] for i in ids], spec)
    probs, _ = forward_probabilities(model, data.inputs(), dev)
    ldata = prepare_set([samples[i] for i in ids], lspec)
    lprobs, _ = forward_probabilities(lb.model, ldata.inputs(), dev)
    for i, p, lp in zip(ids, full_size(probs, data.geometries), full_size(lprobs, ldata.geometries)):
        pred, truth = p.argmax(0) > 0, samples[i].target > 0
        for key, mask in (("network", None), ("ref_lungs", lungs_ref[i]), ("model_lungs", lp.argmax(0) > 0)):
            out[key].append(binary_metrics(pred if mask is None else pred & mask, truth)["dice"])
res = {k: float(np.mean(v)) for k, v in out.items()}
print(len(out["network"]), res)
json.dump({"slices": len(out["network"]), "mean_dice": res}, open("docs/training_logs/lungspace_u16/within_lungs_cv.json", "w"), indent=1)
