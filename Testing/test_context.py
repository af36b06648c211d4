"""Slices with context (2.5D): the slices below and above as input channels, in training
(``training_data``) and in the lung model's inference (``lung_model``)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from COVIDSegLib.bundle import save_bundle
from COVIDSegLib.errors import CovidSegError
from COVIDSegLib.lungs.lung_model import LungModel, neighbour_slices
from COVIDSegLib.preprocess.slice_prep import InputSpec
from COVIDSegLib.training.datasets import Sample
from COVIDSegLib.training.train_run import make_card
from COVIDSegLib.training.trainer import TrainConfig, Trainer
from COVIDSegLib.training.training_data import CONTEXT_OFFSETS, context_index, prepare_set

SPEC = InputSpec(size=32, crop_body=False, context_mm=2.0)


def volume_samples(zs, volume="a", value=None):
    """One sample per slice number; each image is filled with its own number, so a channel shows
    which slice it came from."""
    return [Sample(f"{volume}{z}", np.full((48, 48), float(z if value is None else value), np.float32),
                   np.zeros((48, 48), np.uint8), meta={"volume": volume, "z": z}) for z in zs]


def test_neighbours_are_found_within_one_volume_only():
    samples = volume_samples([10, 11, 12, 14]) + volume_samples([13], volume="b") + [
        Sample("lone", np.zeros((48, 48), np.float32), np.zeros((48, 48), np.uint8))]
    near = context_index(samples)
    assert near.shape == (6, 2, CONTEXT_OFFSETS)
    assert near[1, 0].tolist() == [0, 1, 1] and near[1, 1].tolist() == [2, 1, 3]  # z 11: 10 below; 12, -, 14 above
    assert near[4].unique().tolist() == [4] and near[5].unique().tolist() == [5]  # other volume, no volume


def test_evaluation_inputs_are_the_next_slices_and_training_draws_among_neighbours():
    data = prepare_set(volume_samples(range(20, 30)), SPEC)
    x = data.inputs()
    assert x.shape == (10, 3, 32, 32)
    levels = (x[:, :, 16, 16] * 255).round().long()
    assert levels[5].tolist() == [24, 25, 26] and levels[0].tolist() == [20, 20, 21]  # the end: itself
    xb, _ = data.batch(torch.arange(10), gen=torch.Generator().manual_seed(0))
    drawn = (xb[:, :, 16, 16] * 255).round().long()
    assert torch.equal(drawn[:, 1], torch.arange(20, 30))  # the centre is always the slice itself
    gaps = (drawn[:, [0, 2]] - drawn[:, 1:2]).abs()
    assert int(gaps.max()) <= CONTEXT_OFFSETS
    assert prepare_set(volume_samples(range(3)), InputSpec(size=32, crop_body=False)).inputs().shape[1] == 1


def test_neighbours_at_the_context_distance_in_mm():
    assert neighbour_slices(5, 0.0, 1.0) is None
    assert neighbour_slices(8, 2.0, 0.625)[4].tolist() == [1, 4, 7]  # 3 slices = 1.9 mm
    assert neighbour_slices(8, 2.0, 3.0)[4].tolist() == [3, 4, 5]  # never the slice itself
    assert neighbour_slices(8, 2.0, 3.0)[0].tolist() == [0, 0, 1]
    assert neighbour_slices(1, 2.0, 5.0).tolist() == [[0, 0, 0]]  # a single slice: itself thrice
    assert neighbour_slices(8, 2.0, 5.0)[4].tolist() == [3, 4, 5]  # 5 mm apart: still context
    assert neighbour_slices(8, 2.0, 9.0)[4].tolist() == [4, 4, 4]  # 9 mm apart: none
    assert neighbour_slices(8, 2.0, 9.0, max_gap_mm=10.0)[4].tolist() == [3, 4, 5]


def _chest(n: int = 3) -> np.ndarray:
    """A toy chest in HU: air, a body, one lung."""
    hu = np.full((n, 40, 40), -1000, np.int16)
    hu[:, 5:35, 5:35] = 40
    hu[:, 10:30, 8:18] = -850
    return hu


def test_a_lung_model_with_context_trains_and_runs_on_a_volume(tmp_path):
    cfg = TrainConfig(task="lungs", model={"name": "unet", "base": 4},
                      input={"size": 32, "crop_body": False, "clahe": False, "context_mm": 2.0},
                      epochs=1, batch_size=4, lr=1e-2, seed=0, device="cpu", patience=0, amp=False)
    samples = volume_samples(range(8), value=100)
    for s in samples:
        s.target[12:36, 8:20] = 1
    data = prepare_set(samples, InputSpec.from_dict(cfg.input))
    result = Trainer(cfg, tmp_path / "run").fit(data, None)
    first_conv = next(m for m in result.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 3
    card = make_card(cfg, tmp_path, len(samples), [], result.history, None, {})
    assert card["preprocessing"]["input"]["context_mm"] == 2.0
    model = LungModel.load(str(save_bundle(result.model, card, tmp_path, "tiny_lungs")))
    hu = _chest(6)
    prob = model.probabilities(hu, True, slice_mm=3.0)
    assert prob.shape == hu.shape and prob.dtype == np.uint8


def _tiny_lung_bundle(tmp_path, name: str, context_mm: float, extra: dict = None, seed: int = 0):
    cfg = TrainConfig(task="lungs", model={"name": "unet", "base": 4},
                      input={"size": 32, "crop_body": False, "clahe": False, "context_mm": context_mm},
                      epochs=1, batch_size=4, lr=1e-2, seed=seed, device="cpu", patience=0, amp=False)
    samples = volume_samples(range(4), value=100)
    result = Trainer(cfg, tmp_path / name).fit(prepare_set(samples, InputSpec.from_dict(cfg.input)), None)
    card = make_card(cfg, tmp_path, len(samples), [], result.history, None, {})
    card["preprocessing"].update(extra or {})
    return save_bundle(result.model, card, tmp_path, name)


def test_a_single_slice_goes_to_the_model_the_2_5d_card_names(tmp_path):
    """A one-slice input reaches the 2D companion (its probabilities exactly), a volume the 2.5D network."""
    flat = _tiny_lung_bundle(tmp_path, "tiny_2d", 0.0)
    context = LungModel.load(str(_tiny_lung_bundle(tmp_path, "tiny_25d", 2.0, {"single_slice_model": "tiny_2d"})))
    alone = LungModel.load(str(flat))
    assert context.runs_for(1) is context.single and context.runs_for(2) is context
    assert context.single.name == "tiny_2d" and alone.runs_for(1) is alone
    hu = _chest()
    one = hu[1:2]
    assert np.array_equal(context.probabilities(one, True, slice_mm=3.0), alone.probabilities(one, True))
    own = context.probabilities(hu, True, slice_mm=3.0)[1:2]
    assert not np.array_equal(own, alone.probabilities(one, True))  # the volume's slice: the 2.5D network


def test_a_2_5d_card_must_name_a_2d_single_slice_model(tmp_path):
    _tiny_lung_bundle(tmp_path, "other_25d", 2.0)
    card = _tiny_lung_bundle(tmp_path, "bad_25d", 2.0, {"single_slice_model": "other_25d"})
    with pytest.raises(CovidSegError, match="has context itself"):
        LungModel.load(str(card))
    bad = json.loads(card.read_text())
    bad["preprocessing"]["single_slice_model"] = "../elsewhere/model"
    card.write_text(json.dumps(bad))
    with pytest.raises(CovidSegError, match="single_slice_model"):
        LungModel.load(str(card))


def test_a_missing_single_slice_model_is_named_with_the_card_that_names_it(tmp_path):
    card = _tiny_lung_bundle(tmp_path, "lonely_25d", 2.0, {"single_slice_model": "no_such_2d"})
    with pytest.raises(CovidSegError) as err:
        LungModel.load(str(card))
    assert str(card) in str(err.value) and "'no_such_2d'" in str(err.value) and len(str(err.value).splitlines()) == 1


def test_an_ensemble_card_averages_its_members_probabilities(tmp_path):
    """A card naming ``ensemble_with`` gives the mean of its own and each member's probabilities on
    volumes; single slices still go to its single-slice model alone."""
    flat = LungModel.load(str(_tiny_lung_bundle(tmp_path, "flat_2d", 0.0)))
    member = LungModel.load(str(_tiny_lung_bundle(tmp_path, "member_25d", 2.0, seed=1)))
    own_card = _tiny_lung_bundle(tmp_path, "own_25d", 2.0)
    card = json.loads(own_card.read_text())  # the same network, its card naming the member
    card["preprocessing"].update(ensemble_with=["member_25d"], single_slice_model="flat_2d")
    (tmp_path / "pair_25d.json").write_text(json.dumps(card))
    pair = LungModel.load(str(tmp_path / "pair_25d.json"))
    assert pair.name == "own_25d+member_25d"
    hu = _chest()
    mine = LungModel.load(str(own_card)).probabilities(hu, True, slice_mm=3.0)
    theirs = member.probabilities(hu, True, slice_mm=3.0)
    steps = []
    got = pair.probabilities(hu, True, lambda done, total, _: steps.append((done, total)), slice_mm=3.0)
    assert np.abs(got - (mine.astype(float) + theirs) / 2).max() <= 0.5 and not np.array_equal(got, mine)
    done = [d for d, _ in steps]  # one run over both networks, not 0 -> n twice
    assert done == sorted(done) and steps[-1] == (2 * len(hu), 2 * len(hu)) and {t for _, t in steps} == {2 * len(hu)}
    assert np.array_equal(pair.probabilities(hu[1:2], True), flat.probabilities(hu[1:2], True))


@pytest.mark.parametrize("member_extra, context", [({"single_slice_model": "flat_2d"}, 2.0), ({}, 0.0)])
def test_an_ensemble_member_must_be_a_plain_model_of_the_same_kind(tmp_path, member_extra, context):
    _tiny_lung_bundle(tmp_path, "flat_2d", 0.0)
    _tiny_lung_bundle(tmp_path, "member", context, member_extra)
    card = _tiny_lung_bundle(tmp_path, "pair", 2.0, {"ensemble_with": ["member"]})
    with pytest.raises(CovidSegError, match="ensemble member 'member' must be a plain lung model with context"):
        LungModel.load(str(card))


def test_a_card_with_a_malformed_ensemble_list_is_refused(tmp_path):
    card = _tiny_lung_bundle(tmp_path, "pair", 2.0, {"ensemble_with": "../other"})
    with pytest.raises(CovidSegError, match="ensemble_with"):
        LungModel.load(str(card))
