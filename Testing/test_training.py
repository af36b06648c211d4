"""Tests of the 2D training pipeline: Trainer (losses, files, resume, early stopping, schedules),
k-fold splits and cross-validation. Tiny models and inputs: every test runs in seconds on a CPU."""
from __future__ import annotations

import csv
import dataclasses
import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

import COVIDSegLib.training.trainer as trainer_mod
from COVIDSegLib.errors import CovidSegError
from COVIDSegLib.preprocess.slice_prep import InputSpec
from COVIDSegLib.progress import CancelToken
from COVIDSegLib.training.crossval import cross_validate, kfold
from COVIDSegLib.training.datasets import Sample, load_medseg
from COVIDSegLib.training.losses import build_loss, multitask_loss
from COVIDSegLib.training.trainer import TrainConfig, Trainer
from COVIDSegLib.training.training_data import PreparedSet, prepare_set

UNET = {"name": "unet", "base": 4}
NO_AUG = {"flip": 0.0, "rotate_deg": 0.0, "scale": [1.0, 1.0], "translate": 0.0, "elastic": 0.0,
          "window_hu": 0.0, "gamma": [1.0, 1.0]}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@lru_cache(maxsize=None)
def _medseg(root: str):
    return load_medseg(Path(root), "binary")


@pytest.fixture
def slices(shared_data):
    """The 52 real MedSeg slices, the largest findings first."""
    return sorted(_medseg(str(shared_data / "medseg100")), key=lambda s: -int(s.target.sum()))


@lru_cache(maxsize=None)
def _synthetic(n: int, size: int = 96):
    """``n`` CT-looking 8-bit slices (air, body, two lungs) with a random lesion in a lung, prepared
    at 32 x 32; cached (never modified). Trainer mechanics need no real data."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:size, :size] / (size - 1) * 2 - 1
    samples = []
    for i in range(n):
        img = np.full((size, size), 60.0)
        img[(x / 0.85) ** 2 + (y / 0.65) ** 2 <= 1] = 235
        for cx in (-0.4, 0.4):
            img[((x - cx) / 0.28) ** 2 + (y / 0.45) ** 2 <= 1] = 80
        cx, cy, r = rng.choice([-0.4, 0.4]), rng.uniform(-0.2, 0.2), rng.uniform(0.08, 0.18)
        mask = ((x - cx) ** 2 + (y - cy) ** 2 <= r * r).astype(np.uint8)
        img[mask > 0] = 200
        img = np.clip(img + rng.normal(0, 5, img.shape), 1, 255).astype(np.float32)
        samples.append(Sample(f"s{i}", img, mask))
    return prepare_set(samples, InputSpec(32))


@pytest.fixture
def small():
    """6 synthetic training slices and 2 validation slices at 32 x 32."""
    data = _synthetic(8)
    return (PreparedSet(data.images[:6], None, data.targets[:6], data.geometries[:6], data.samples[:6]),
            PreparedSet(data.images[6:], None, data.targets[6:], data.geometries[6:], data.samples[6:]))


def config(**kw) -> TrainConfig:
    base = dict(model=UNET, input={"size": 32, "crop_body": True, "clahe": False}, augment=NO_AUG,
                epochs=2, batch_size=2, lr=1e-2, seed=0, device="cpu", patience=0, amp=False)
    return TrainConfig(**{**base, **kw})  # fp32: exact comparisons on any CPU (bf16: its own test)


def state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float()) for k in a)


# ----------------------------------------------------------------------------- smoke training


def test_training_loss_falls_on_real_slices(slices, tmp_path):
    """CI smoke test: 8 real slices, 64 px, U-Net base 4, 24 steps; the loss must clearly fall
    (over seeds 0-4 the last-3 mean / first ratio was 0.51-0.80; seed 0 gives 0.51)."""
    spec = InputSpec(64)
    data = prepare_set(slices[:8], spec)
    cfg = config(input=spec.to_dict(), augment={**NO_AUG, "flip": 0.5}, epochs=12, batch_size=4,
                 schedule="constant")
    result = Trainer(cfg, tmp_path).fit(data)
    losses = [row["train_loss"] for row in result.history]
    assert len(losses) == 12 and all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-3:]) < 0.85 * losses[0], losses


def test_trainer_files_and_metrics(small, tmp_path):
    train, val = small
    progress = []
    result = Trainer(config(), tmp_path, progress=lambda d, t, m: progress.append((d, t, m))).fit(train, val)
    for name in ("metrics.csv", "metrics.json", "curves.png", "checkpoint.pt", "best.safetensors"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG_SIGNATURE
    rows = json.loads((tmp_path / "metrics.json").read_text())
    assert rows == result.history and [r["epoch"] for r in rows] == [0, 1]
    for r in rows:
        assert set(r) == {"epoch", "lr", "train_loss", "val_loss", "val_dice"}
        assert r["train_loss"] > 0 and r["val_loss"] > 0 and 0 <= r["val_dice"] <= 1
    with open(tmp_path / "metrics.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2 and float(table[1]["val_dice"]) == pytest.approx(rows[1]["val_dice"])
    assert [(d, t) for d, t, _ in progress] == [(1, 2), (2, 2)] and "val Dice" in progress[-1][2]
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["history"] == rows
    best = load_file(str(tmp_path / "best.safetensors"))
    assert best.keys() == result.model.state_dict().keys()
    assert same_weights(best, state(result.model))  # the returned model holds the best weights
    assert result.best_epoch in (0, 1) and result.best_val_dice == max(r["val_dice"] for r in rows)


def test_trainer_without_validation_has_no_val_columns(small, tmp_path):
    result = Trainer(config(epochs=1), tmp_path).fit(small[0])
    assert set(result.history[0]) == {"epoch", "lr", "train_loss"}
    assert math.isnan(result.best_val_dice) and not result.stopped_early


def test_empty_training_set_refused(small, tmp_path):
    empty = PreparedSet(torch.zeros(0, 1, 32, 32), None, torch.zeros(0, 32, 32, dtype=torch.uint8), [], [])
    with pytest.raises(CovidSegError, match="no training samples"):
        Trainer(config(), tmp_path).fit(empty)


# ----------------------------------------------------------------------------- resume


def _interrupted_then_resumed(cfg, data, folder):
    token = CancelToken()

    def cancel_after_two(done, total, message):
        if done == 2:
            token.cancel()  # the next batch (epoch 3) raises Cancelled

    with pytest.raises(CovidSegError):  # Cancelled is a CovidSegError
        Trainer(cfg, folder, cancel_after_two, token).fit(data)
    first = json.loads((folder / "metrics.json").read_text())
    assert len(first) == 2
    return first, Trainer(cfg, folder).fit(data)


def test_resume_reproduces_an_uninterrupted_run(small, tmp_path):
    cfg = config(epochs=3, augment={**NO_AUG, "flip": 0.5, "rotate_deg": 10.0})
    first, resumed = _interrupted_then_resumed(cfg, small[0], tmp_path / "a")
    assert len(resumed.history) == 3 and resumed.history[:2] == first
    straight = Trainer(cfg, tmp_path / "b").fit(small[0])
    assert [r["train_loss"] for r in straight.history] == [r["train_loss"] for r in resumed.history]
    assert same_weights(state(resumed.model), state(straight.model))


def test_resume_reproduces_an_uninterrupted_run_with_dropout(small, tmp_path):
    cfg = config(epochs=3, model={"name": "cbam_pspnet", "width": 8})
    _, resumed = _interrupted_then_resumed(cfg, small[0], tmp_path / "a")
    straight = Trainer(cfg, tmp_path / "b").fit(small[0])
    assert same_weights(state(resumed.model), state(straight.model))


def test_checkpoint_of_another_config_refused(small, tmp_path):
    Trainer(config(epochs=1), tmp_path).fit(small[0])
    with pytest.raises(CovidSegError, match="another configuration"):
        Trainer(config(epochs=1, lr=5e-3), tmp_path).fit(small[0])


def test_finished_run_is_not_retrained(small, tmp_path):
    first = Trainer(config(epochs=1), tmp_path).fit(small[0])
    again = Trainer(config(epochs=1), tmp_path).fit(small[0])
    assert again.history == first.history and same_weights(state(again.model), state(first.model))


def test_max_steps_stops_and_reports_the_true_loss(tmp_path):
    data = _synthetic(8)
    trainer = Trainer(config(epochs=5, batch_size=4, max_steps=3), tmp_path)
    seen, loss_fn = [], trainer.loss_fn

    def recording(x, y):
        loss = loss_fn(x, y)
        seen.append(float(loss.detach()))
        return loss

    trainer.loss_fn = recording
    result = trainer.fit(data)
    assert trainer.steps == 3 and len(result.history) == 2  # stopped inside the second epoch
    assert result.history[1]["train_loss"] == pytest.approx(seen[-1], rel=1e-3)


@pytest.mark.parametrize("amx, amp, expected", [(True, True, True), (False, True, False), (True, False, False)])
def test_cpu_training_autocasts_to_bf16_only_with_amx(small, tmp_path, monkeypatch, amx, amp, expected):
    monkeypatch.setattr(trainer_mod, "cpu_has_amx", lambda: amx)
    trainer = Trainer(config(epochs=1, amp=amp), tmp_path)
    assert trainer.autocast is expected and not trainer.amp  # no fp16 GradScaler on the CPU
    dtypes = []
    trainer.model.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    x, y = small[0].batch(torch.arange(2))
    loss = trainer.loss_fn(x, y)
    assert dtypes == [torch.bfloat16 if expected else torch.float32]
    assert loss.dtype == torch.float32 and math.isfinite(float(loss.detach()))  # the loss itself in fp32
    before = state(trainer.model)
    result = trainer.fit(small[0])
    assert math.isfinite(result.history[0]["train_loss"])
    assert not same_weights(before, state(result.model))


# ----------------------------------------------------------------------------- early stopping


def scripted_validation(monkeypatch, dices):
    """Replace the validation pass by a scripted Dice per epoch (lr 0 is refused by TrainConfig,
    so a frozen model cannot be had; this isolates the stopping logic)."""
    calls = iter(dices)
    monkeypatch.setattr(trainer_mod, "validate", lambda *a, **k: {"val_loss": 1.0, "val_dice": next(calls)})


def test_early_stopping_on_a_flat_dice(small, tmp_path, monkeypatch):
    scripted_validation(monkeypatch, [0.5] * 10)
    result = Trainer(config(epochs=6, patience=1), tmp_path).fit(*small)
    assert result.stopped_early and len(result.history) == 2
    assert result.best_epoch == 0 and result.best_val_dice == 0.5


def test_early_stopping_keeps_the_best_epoch(small, tmp_path, monkeypatch):
    scripted_validation(monkeypatch, [0.1, 0.3, 0.2, 0.25, 0.1, 0.1])
    snapshots = {}
    trainer = Trainer(config(epochs=6, patience=2), tmp_path,
                      progress=lambda d, t, m: snapshots.setdefault(d, state(trainer.model)))
    result = trainer.fit(*small)
    assert result.stopped_early and len(result.history) == 4  # epoch 3 is 2 epochs past the best
    assert result.best_epoch == 1 and result.best_val_dice == 0.3
    assert same_weights(state(result.model), snapshots[2])
    assert not same_weights(state(result.model), snapshots[4])


def test_select_best_false_runs_all_epochs_and_keeps_the_last(small, tmp_path, monkeypatch):
    scripted_validation(monkeypatch, [0.5, 0.1, 0.1, 0.1])
    snapshots = {}
    trainer = Trainer(config(epochs=4, patience=1), tmp_path,
                      progress=lambda d, t, m: snapshots.setdefault(d, state(trainer.model)))
    result = trainer.fit(*small, select_best=False)
    assert not result.stopped_early and len(result.history) == 4
    assert result.best_epoch == 3 and math.isnan(result.best_val_dice)
    assert same_weights(state(result.model), snapshots[4])


def test_zero_learning_rate_refused():
    with pytest.raises(CovidSegError, match="positive"):
        config(lr=0.0)


# ----------------------------------------------------------------------------- schedules


def _lrs(data, folder, **kw):
    trainer = Trainer(config(epochs=4, lr=1e-2, min_lr=1e-4, **kw), folder)
    result = trainer.fit(data)
    return [r["lr"] for r in result.history], trainer.opt.param_groups[0]["lr"]


@pytest.fixture
def two():
    data = _synthetic(8)
    return PreparedSet(data.images[:2], None, data.targets[:2], data.geometries[:2], data.samples[:2])


def test_cosine_schedule(two, tmp_path):
    lrs, final = _lrs(two, tmp_path, schedule="cosine")
    expected = [1e-4 + (1e-2 - 1e-4) * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    assert lrs == pytest.approx(expected) and all(a > b for a, b in zip(lrs, lrs[1:]))
    assert final == pytest.approx(1e-4)  # annealed to min_lr after the last epoch


def test_exponential_schedule(two, tmp_path):
    lrs, _ = _lrs(two, tmp_path, schedule="exponential", lr_decay=0.5)
    assert lrs == pytest.approx([1e-2 * 0.5 ** e for e in range(4)])


def test_constant_schedule(two, tmp_path):
    lrs, final = _lrs(two, tmp_path, schedule="constant")
    assert lrs == pytest.approx([1e-2] * 4) and final == pytest.approx(1e-2)


def test_unknown_schedule_and_options_refused():
    with pytest.raises(CovidSegError, match="schedule"):
        config(schedule="step")
    with pytest.raises(CovidSegError, match="unknown training option"):
        TrainConfig.from_dict({"epochs": 2, "lr_sched": "cosine"})
    assert TrainConfig.from_dict(config().to_dict()) == config()


# ----------------------------------------------------------------------------- multi-task model


def test_multitask_model_trains_its_classifier(small, tmp_path):
    cfg = config(epochs=1, model={"name": "resnet34_scse_mt", "width": 8}, weight_decay=0.0)
    trainer = Trainer(cfg, tmp_path)
    before = {k: v for k, v in state(trainer.model).items() if "classifier" in k}
    assert before
    result = trainer.fit(small[0])
    after = state(result.model)
    assert all(not torch.equal(before[k], after[k]) for k in before)  # the head got gradients
    # The training loss is the multi-task loss (segmentation + classification terms).
    model = result.model.eval()
    x, y = small[0].batch(torch.arange(4))
    with torch.no_grad():
        seg, cls = model.forward_multitask(x)
        expected = multitask_loss(seg, cls, y, seg_loss=build_loss({}), w_seg=1.0, w_cls=0.5)
        assert float(trainer.loss_fn(x, y)) == pytest.approx(float(expected), rel=1e-5)
        assert float(expected) != pytest.approx(float(build_loss({})(seg, y)), rel=1e-3)


# ----------------------------------------------------------------------------- cross-validation


@settings(max_examples=150, deadline=None)
@given(st.integers(2, 60).flatmap(lambda n: st.tuples(st.just(n), st.integers(2, min(n, 10)),
                                                      st.integers(0, 2 ** 31))))
def test_kfold_properties(args):
    n, k, seed = args
    folds = kfold(n, k, seed)
    assert len(folds) == k
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(n))  # each index tested exactly once
    for train, test in folds:
        assert not set(train.tolist()) & set(test.tolist())
        assert sorted(train.tolist() + test.tolist()) == list(range(n))
    sizes = [len(test) for _, test in folds]
    assert max(sizes) - min(sizes) <= 1
    again = kfold(n, k, seed)
    assert all(np.array_equal(a[1], b[1]) and np.array_equal(a[0], b[0]) for a, b in zip(folds, again))


@pytest.mark.parametrize("n,k", [(5, 1), (5, 6), (1, 2)])
def test_kfold_refuses_bad_k(n, k):
    with pytest.raises(ValueError):
        kfold(n, k)


def test_cross_validate_writes_slices_and_summary(slices, tmp_path):
    cfg = config(epochs=1, batch_size=3)
    samples = slices[10:16]
    summary = cross_validate(cfg, samples, tmp_path, k=2)
    with open(tmp_path / "cv_slices.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and sorted(r["id"] for r in rows) == sorted(s.id for s in samples)
    assert sorted(r["fold"] for r in rows) == ["0", "0", "0", "1", "1", "1"]
    dices = [float(r["dice"]) for r in rows]
    assert all(0 <= d <= 1 for d in dices)
    saved = json.loads((tmp_path / "cv_summary.json").read_text())
    assert saved["k"] == 2 and saved["n_slices"] == 6 and saved["epochs"] == [1, 1]
    dice = saved["metrics"]["dice"]
    assert dice["mean"] == pytest.approx(np.mean(dices)) and dice["sd"] == pytest.approx(np.std(dices, ddof=1))
    assert {"tad", "hd95", "iou"} <= set(saved["metrics"])
    assert summary["metrics"]["dice"]["mean"] == pytest.approx(dice["mean"])
    assert (tmp_path / "fold0" / "checkpoint.pt").is_file() and (tmp_path / "fold1" / "checkpoint.pt").is_file()


def test_cv_summary_is_attached_only_to_its_own_configuration(tmp_path):
    from COVIDSegLib.training.train_run import read_cv_summary
    cfg = config()
    path = tmp_path / "cv_summary.json"
    path.write_text(json.dumps({"k": 5, "config": cfg.to_dict(), "metrics": {"dice": {"mean": 0.5}}}))
    assert read_cv_summary(path, cfg)["metrics"]["dice"]["mean"] == 0.5
    with pytest.raises(CovidSegError, match="another training configuration"):
        read_cv_summary(path, config(epochs=cfg.epochs + 1))
    path.write_text("{not json")
    with pytest.raises(CovidSegError, match="Cannot use"):
        read_cv_summary(path, cfg)


def test_random_crops_train_and_keep_image_and_target_aligned(tmp_path):
    x = torch.arange(2 * 16 * 16, dtype=torch.float32).reshape(2, 1, 16, 16)
    y = x[:, 0].long()
    cx, cy = trainer_mod.random_crops(x, y, 8, torch.Generator().manual_seed(0))
    assert cx.shape == (2, 1, 8, 8) and cy.shape == (2, 8, 8)
    assert torch.equal(cx[:, 0].long(), cy)  # the same window of image and target
    result = Trainer(config(epochs=1, crop=16), tmp_path).fit(_synthetic(4))
    assert math.isfinite(result.history[0]["train_loss"])
    with pytest.raises(CovidSegError, match="crop"):
        config(crop=10_000)


def test_samples_marked_to_repeat_are_seen_that_often():
    cached = _synthetic(4)  # shared: copied, not modified
    samples = [dataclasses.replace(s, meta=dict(s.meta)) for s in cached.samples]
    samples[1].meta["repeat"] = 3
    data = PreparedSet(cached.images, None, cached.targets, cached.geometries, samples)
    order = trainer_mod.epoch_order(data, torch.Generator().manual_seed(0))
    assert sorted(order.tolist()) == [0, 1, 1, 1, 2, 3]
