"""Losses (COVIDSegLib.training.losses) and evaluation metrics (COVIDSegLib.training.metrics)."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from COVIDSegLib.errors import CovidSegError
from COVIDSegLib.training import losses as L
from COVIDSegLib.training import metrics as M

# ---------------------------------------------------------------- metrics

PRED = np.array([[1, 1, 0, 0],
                 [1, 0, 0, 0],
                 [0, 0, 0, 0]])
TRUTH = np.array([[1, 0, 0, 0],
                  [1, 1, 0, 0],
                  [0, 0, 0, 1]])
# by hand: TP = 2 ((0,0), (1,0)), FP = 1 ((0,1)), FN = 2 ((1,1), (2,3)), TN = 12 - 5 = 7


def square(shape=(20, 20), at=(5, 5), size=5):
    m = np.zeros(shape, bool)
    m[tuple(slice(a, a + size) for a in at)] = True
    return m


def test_confusion_counts_by_hand():
    assert M.confusion_counts(PRED, TRUTH) == (2, 1, 7, 2)


def test_binary_metrics_by_hand():
    r = M.binary_metrics(PRED, TRUTH)
    assert r["dice"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))  # 4/7
    assert r["iou"] == pytest.approx(2 / 5)
    assert r["precision"] == pytest.approx(2 / 3)
    assert r["sensitivity"] == pytest.approx(2 / 4)
    assert r["specificity"] == pytest.approx(7 / 8)
    assert r["f1"] == r["dice"]
    # HD95 by hand: pred surface = its 3 pixels, truth surface = its 4 pixels; pred->truth
    # distances (0, 1, 0), truth->pred (0, 0, 1, sqrt(8)) ((2,3) is nearest to (0,1));
    # 95th percentiles (linear interpolation) 0.9 and 1 + 0.85 * (sqrt(8) - 1) = 2.554.
    d = np.array([0, 0, 1, math.sqrt(8)])
    assert r["hd95"] == pytest.approx(max(np.percentile([0, 1, 0], 95), np.percentile(d, 95)), abs=1e-5)


def test_dice_and_iou_agree_with_monai_direct():
    from monai.metrics import compute_dice, compute_iou
    p, t = torch.tensor(PRED)[None, None].float(), torch.tensor(TRUTH)[None, None].float()
    r = M.binary_metrics(PRED, TRUTH)
    assert r["dice"] == pytest.approx(compute_dice(p, t, include_background=True).item())
    assert r["iou"] == pytest.approx(compute_iou(p, t, include_background=True).item())


def test_empty_mask_conventions():
    z, s = np.zeros((8, 8)), square((8, 8), (2, 2), 3)
    both = M.binary_metrics(z, z)
    assert (both["dice"], both["iou"], both["f1"], both["hd95"], both["specificity"]) == (1, 1, 1, 0, 1)
    assert math.isnan(both["precision"]) and math.isnan(both["sensitivity"])
    no_pred = M.binary_metrics(z, s)
    assert (no_pred["dice"], no_pred["iou"], no_pred["sensitivity"]) == (0, 0, 0)
    assert math.isnan(no_pred["hd95"]) and math.isnan(no_pred["precision"])
    no_truth = M.binary_metrics(s, z)
    assert (no_truth["dice"], no_truth["precision"]) == (0, 0)
    assert math.isnan(no_truth["hd95"]) and math.isnan(no_truth["sensitivity"])


@pytest.mark.parametrize("spacing, axis, expected", [
    ((0.5, 0.5), 1, 1.5),   # 3 px along x at 0.5 mm
    (0.5, 1, 1.5),          # scalar spacing
    ((2.0, 0.5), 0, 6.0),   # 3 px along y at 2 mm
    (None, 0, 3.0),         # pixels
])
def test_hd95_shifted_squares(spacing, axis, expected):
    a = square()
    b = np.roll(a, 3, axis=axis)
    assert M.hd95(b, a, spacing) == pytest.approx(expected, abs=1e-5)
    assert M.binary_metrics(a, b, spacing)["hd95"] == pytest.approx(expected, abs=1e-5)


def test_hd95_3d_uses_spacing_per_axis():
    a = square((10, 20, 20), (3, 5, 5), 4)
    assert M.hd95(np.roll(a, 2, axis=0), a, (2.5, 0.7, 0.7)) == pytest.approx(5.0, abs=1e-5)


def _brute_hd95(p, t, sp):
    ep, et = M._surface(p), M._surface(t)
    a, b = np.argwhere(ep) * sp, np.argwhere(et) * sp
    d = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))
    return max(np.percentile(d.min(1), 95), np.percentile(d.min(0), 95))


def test_hd95_fallback_matches_brute_force_on_random_masks():
    rng = np.random.default_rng(0)
    for shape in [(17, 23), (6, 11, 9), (30, 12)]:
        p, t = rng.random(shape) > 0.7, rng.random(shape) > 0.6
        sp = tuple(rng.uniform(0.3, 3.0, len(shape)))
        assert M._hd95_sitk(p, t, sp) == pytest.approx(_brute_hd95(p, t, sp), abs=1e-4)


def test_hd95_monai_and_fallback_agree():
    pytest.importorskip("scipy")  # MONAI's Hausdorff distance needs it
    rng = np.random.default_rng(1)
    p, t = rng.random((9, 14, 12)) > 0.7, rng.random((9, 14, 12)) > 0.6
    sp = (2.0, 0.8, 0.6)
    assert M.hd95(p, t, sp) == pytest.approx(M._hd95_sitk(p, t, sp), abs=1e-4)


def test_multiclass_metrics_single_and_grouped_labels():
    truth = np.array([[0, 1, 1, 3], [0, 2, 4, 4]])
    pred = np.array([[0, 1, 3, 3], [0, 2, 4, 0]])
    r = M.multiclass_metrics(pred, truth, {"left": 1, "GGO": 3, "infection": (3, 4)})
    assert set(r) == {"left", "GGO", "infection"}
    assert r["left"]["dice"] == pytest.approx(2 * 1 / (1 + 2))
    assert r["GGO"]["dice"] == pytest.approx(2 * 1 / (2 + 1))
    assert r["infection"]["dice"] == pytest.approx(2 * 2 / (3 + 3))  # pred {3,3,4}, truth {3,4,4}


def test_summarise_is_nan_aware():
    rows = [{"dice": 0.5, "hd95": 2.0, "name": "a"}, {"dice": 0.7, "hd95": float("nan")},
            {"dice": 0.9, "hd95": 4.0}]
    s = M.summarise(rows)
    assert s["dice"]["mean"] == pytest.approx(0.7) and s["dice"]["sd"] == pytest.approx(0.2)
    assert s["hd95"] == {"mean": 3.0, "sd": pytest.approx(math.sqrt(2)), "n": 2, "n_missing": 1}
    assert "name" not in s
    assert M.summarise([{"x": float("nan")}])["x"]["n"] == 0


def _infnet_reference(prob, truth):
    """Straight loop transcription of Inf-Net's main.m + Fmeasure_calu.m (meanDic of one image)."""
    p = prob.astype(float)
    if p.max() > p.min():
        p = (p - p.min()) / (p.max() - p.min())
    g = truth != 0
    dices = []
    for t in np.arange(255, -1, -1) / 255:  # 1:-1/255:0
        lab = p >= t
        tp = np.count_nonzero(lab & g)
        dices.append(0.0 if tp == 0 else 2 * tp / (g.sum() + lab.sum()))
    return float(np.mean(dices))


def test_threshold_averaged_dice_matches_reference_loop():
    rng = np.random.default_rng(2)
    truth = square((16, 16), (4, 4), 6)
    for prob in [rng.random((16, 16)), 0.3 * truth + 0.2 * rng.random((16, 16)), np.round(rng.random((16, 16)), 1)]:
        assert M.threshold_averaged_dice(prob, truth) == pytest.approx(_infnet_reference(prob, truth), abs=1e-12)


def test_threshold_averaged_dice_perfect_binary_map():
    truth = square((16, 16), (4, 4), 6)
    g, n = truth.sum(), truth.size
    expected = (255 + 2 * g / (g + n)) / 256  # t = 0 predicts every pixel
    for scale in (1.0, 0.1):  # min-max normalisation: a low-confidence map scores the same
        assert M.threshold_averaged_dice(scale * truth, truth) == pytest.approx(expected)
    assert expected > 0.99


def test_threshold_averaged_dice_rewards_ranking():
    truth = np.zeros((32, 32), bool)
    truth[8:24, 8:24] = True
    yy, xx = np.mgrid[:32, :32]
    smooth = np.exp(-((yy - 15.5) ** 2 + (xx - 15.5) ** 2) / 200.0)  # ranks the centre first
    noisy = np.clip(0.6 * truth + np.random.default_rng(3).normal(0, 0.35, truth.shape), 0, 1)
    assert M.threshold_averaged_dice(smooth, truth) > M.threshold_averaged_dice(noisy, truth)


def test_threshold_averaged_dice_constant_and_empty():
    truth = square((10, 10), (2, 2), 5)
    g, n = truth.sum(), truth.size
    # constant c = 0.5: predicted everywhere for the 128 thresholds t <= 0.5
    assert M.threshold_averaged_dice(np.full((10, 10), 0.5), truth) == pytest.approx(2 * g / (g + n) * 128 / 256)
    assert M.threshold_averaged_dice(np.random.default_rng(0).random((10, 10)), np.zeros((10, 10))) == 0.0
    t, d = M.threshold_dice_curve(truth * 1.0, truth)
    assert np.allclose(t, np.linspace(0, 1, 256)) and d.shape == (256,)


small_masks = st.integers(2, 12).flatmap(
    lambda n: st.tuples(arrays(np.bool_, (n, n)), arrays(np.bool_, (n, n))))


@settings(max_examples=60, deadline=None)
@given(small_masks)
def test_property_dice_symmetric_and_metrics_bounded(masks):
    a, b = masks
    ra, rb = M.binary_metrics(a, b), M.binary_metrics(b, a)
    assert ra["dice"] == pytest.approx(rb["dice"]) and ra["iou"] == pytest.approx(rb["iou"])
    assert ra["f1"] == ra["dice"] and ra["iou"] <= ra["dice"] + 1e-12
    for k in ("dice", "iou", "f1", "precision", "sensitivity", "specificity"):
        assert math.isnan(ra[k]) or 0.0 <= ra[k] <= 1.0
    assert math.isnan(ra["hd95"]) or ra["hd95"] >= 0
    if not math.isnan(ra["hd95"]):
        assert ra["hd95"] == pytest.approx(rb["hd95"], abs=1e-5)


# ---------------------------------------------------------------- losses

def _target():
    t = torch.zeros(2, 1, 8, 8, dtype=torch.long)
    t[0, 0, 2:6, 2:6] = 1
    t[1, 0, 1:4, 4:8] = 1
    return t


def _perfect_logits(t, c=2, scale=20.0):
    return scale * (2 * torch.nn.functional.one_hot(t[:, 0], c).permute(0, 3, 1, 2).float() - 1)


def test_dice_loss_near_zero_for_perfect_and_high_for_wrong_logits():
    t = _target()
    good = L.soft_dice_loss(_perfect_logits(t), t)
    bad = L.soft_dice_loss(_perfect_logits(1 - t), t)
    assert good.item() < 1e-3 and bad.item() > 0.99
    assert L.soft_dice_loss(_perfect_logits(t), t[:, 0]).item() == pytest.approx(good.item())  # (N, H, W)
    # one-channel sigmoid model
    assert L.soft_dice_loss(20.0 * (2 * t.float() - 1), t).item() < 1e-3
    assert L.soft_dice_loss(-20.0 * (2 * t.float() - 1), t).item() > 0.99


@pytest.mark.parametrize("name", ["dice", "ce_dice", "focal"])
def test_build_loss_orders_perfect_below_wrong(name):
    t = _target()
    fn = L.build_loss({"name": name})
    assert fn(_perfect_logits(t), t).item() < fn(_perfect_logits(1 - t), t).item()
    assert fn(_perfect_logits(t), t).item() < 1e-3


def test_tv_loss_constant_and_step():
    assert L.tv_loss(torch.full((2, 3, 5, 7), 0.4)).item() == 0.0
    step = torch.zeros(1, 1, 4, 4)
    step[..., 2:] = 1.0  # one jump of 1 per row, 4 rows, over 16 pixels
    assert L.tv_loss(step).item() == pytest.approx(4 / 16)
    both = torch.zeros(1, 1, 4, 4)
    both[..., 2:, 2:] = 1.0  # 2 jumps along x + 2 along y, over 16 pixels
    assert L.tv_loss(both).item() == pytest.approx(4 / 16)


def test_build_loss_tv_weight_adds_tv_of_foreground_probabilities():
    torch.manual_seed(0)
    logits, t = torch.randn(2, 2, 8, 8), _target()
    base = L.build_loss({"name": "dice"})(logits, t)
    with_tv = L.build_loss({"name": "dice", "tv_weight": 0.3})(logits, t)
    tv = L.tv_loss(torch.softmax(logits, 1)[:, 1:])
    assert with_tv.item() == pytest.approx(base.item() + 0.3 * tv.item(), rel=1e-6)
    assert tv.item() > 0


def test_build_loss_rejects_bad_config():
    with pytest.raises(CovidSegError):
        L.build_loss({"name": "hinge"})
    with pytest.raises(CovidSegError):
        L.build_loss({"name": "dice", "tv_wieght": 1.0})


def test_multitask_loss_backward_and_classification_target():
    torch.manual_seed(0)
    t = _target()
    t[1] = 0  # second slice has no foreground
    seg = torch.randn(2, 2, 8, 8, requires_grad=True)
    cls = torch.tensor([0.3, -0.2], requires_grad=True)
    loss = L.multitask_loss(seg, cls, t, w_seg=1.0, w_cls=0.5)
    loss.backward()
    assert loss.ndim == 0 and seg.grad is not None and cls.grad is not None
    assert torch.isfinite(seg.grad).all() and cls.grad.abs().sum() > 0
    only_cls = L.multitask_loss(seg, cls.view(2, 1), t, w_seg=0.0, w_cls=1.0)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(cls, torch.tensor([1.0, 0.0]))
    assert only_cls.item() == pytest.approx(expected.item())


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2 ** 31 - 1))
def test_pooled_group_dice_equals_dice_over_the_stacked_slices(seed):
    """Rebuilt from per-slice rows, each group's Dice is the Dice of its slices stacked in 3D."""
    rng = np.random.default_rng(seed)
    truths = [rng.random((16, 16)) < rng.uniform(0.05, 0.6) for _ in range(6)]
    preds = [t ^ (rng.random(t.shape) < 0.15) for t in truths]
    preds[0][:] = False  # a slice with nothing predicted (precision 0)
    groups = [0, 0, 1, 1, 1, 2]
    rows = [M.binary_metrics(p, t) for p, t in zip(preds, truths)]
    pooled = M.pooled_group_dice(rows, [int(t.sum()) for t in truths], groups)
    for g in set(groups):
        p = np.stack([x for x, k in zip(preds, groups) if k == g])
        t = np.stack([x for x, k in zip(truths, groups) if k == g])
        assert pooled[str(g)] == pytest.approx(2 * (p & t).sum() / (p.sum() + t.sum()), abs=1e-9)


def test_paired_change_counts_and_tests_the_differences():
    from scipy.stats import wilcoxon

    from COVIDSegLib.training.metrics import paired_change
    c = paired_change([0.5, 0.6, 0.7, 0.8, 0.4], [0.6, 0.6, 0.9, 0.7, 0.8])
    assert c["mean_change"] == pytest.approx(0.12) and (c["better"], c["worse"], c["n"]) == (3, 1, 5)
    assert c["wilcoxon_p"] == pytest.approx(wilcoxon([0.1, 0.0, 0.2, -0.1, 0.4]).pvalue)
    assert paired_change([0.3, 0.4], [0.3, 0.4])["wilcoxon_p"] == 1.0  # nothing changed
