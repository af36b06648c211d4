"""Issue 12 groundwork: the union training set in the lung space with partial labels, the
"partial" loss, per-class CV metrics left undefined where the split is unknown, and a
lung-space infection bundle run through the whole segmentation (phantom)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from COVIDSegLib.bundle import load_bundle, save_bundle
from COVIDSegLib.inference.segmenter import InferenceOptions, Segmenter
from COVIDSegLib.io.orientation import to_lps
from COVIDSegLib.preprocess.lung_space import SIZE, slices_to_lung_space
from COVIDSegLib.preprocess.slice_prep import InputSpec, prepare, restore
from COVIDSegLib.preprocess.transforms import unletterbox
from COVIDSegLib.training.crossval import score_slice
from COVIDSegLib.training.datasets import Sample, filter_quality
from COVIDSegLib.training.losses import build_loss
from COVIDSegLib.training.partial_loss import UNION, partial_label_loss
from COVIDSegLib.training.train_run import compute_description, make_card
from COVIDSegLib.training.trainer import TrainConfig, Trainer, epoch_order
from COVIDSegLib.training.training_data import prepare_set
from COVIDSegLib.training.union_data import N_CLASSES, ct_seg_samples, medseg_samples, rows_of, thin_and_weight
from COVIDSegLib.volume import Volume

from chest_phantom import SPACING, chest_phantom

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ct_seg():
    from conftest import SHARED_DATA
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is not available")
    return ct_seg_samples(SHARED_DATA / "covid19-ct-seg-slices")


def test_medseg_slices_in_the_lung_space_with_known_or_union_labels(shared_data):
    samples = {s.id: s for s in medseg_samples(shared_data / "medseg100")}
    assert len(samples) == 52 and len({s.meta["group"] for s in samples.values()}) == 52
    for s in samples.values():
        assert s.image.shape == s.target.shape == (SIZE, SIZE) and s.meta["space"] == "lung"
        assert set(np.unique(s.target).tolist()) <= {0, 1, 2, UNION}
    assert (samples["medseg_0022"].target == UNION).any()  # binary mask only: split unknown
    assert not samples["medseg_0048"].target.any()  # empty mask: all background, known
    assert not any((s.target == UNION).any() for k, s in samples.items() if k != "medseg_0022")
    assert (samples["medseg_0000"].target == 1).any()  # multi-class where there is one


def test_ct_seg_infection_is_union_and_grouped_by_patient(ct_seg):
    samples = ct_seg
    assert len(samples) == 1201
    assert all(set(np.unique(s.target).tolist()) <= {0, UNION} for s in samples[:50])
    assert {s.meta["group"] for s in samples} == {f"ctseg_{g}" for g in
                                                  (0, 1, 2, 3, 4, 5, 6, 8, 10, 11, 13, 14, 15, 16, 17)}
    kept, _ = filter_quality(samples[:20], N_CLASSES + 1)
    assert len(kept) == 20  # the UNION value is allowed by the quality filter


def test_partial_loss_by_name():
    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 8, 8))
    target[1, :4] = UNION
    assert torch.allclose(build_loss({"name": "partial"})(logits, target), partial_label_loss(logits, target))


def test_class_metrics_undefined_where_only_infection_is_known():
    prob = np.zeros((3, 16, 16), np.float32)
    prob[0] = 1.0
    prob[:, 4:8, 4:8] = np.array([0.0, 1.0, 0.0])[:, None, None]  # GGO predicted
    truth = np.zeros((16, 16), np.uint8)
    truth[4:8, 4:8] = UNION
    row = score_slice(prob, truth, "multiclass")
    assert row["dice"] == pytest.approx(1.0)  # the infection union is known
    assert np.isnan(row["GGO_dice"]) and np.isnan(row["consolidation_dice"])
    truth[4:8, 4:8] = 2
    row = score_slice(prob, truth, "multiclass")
    assert row["GGO_dice"] == 0.0 and row["consolidation_dice"] == 0.0  # split known: scored
    rows = [{"id": "medseg_0001"}, {"id": "ctseg_0001"}, {"id": "neg_x_z000_r0"}]
    assert [r["id"] for r in rows_of(rows, "ctseg")] == ["ctseg_0001"]


def test_a_lung_space_bundle_runs_through_segmentation(shared_data, ct_seg, tmp_path):
    """Train a tiny model on the union for a few steps, ship it, segment the phantom: its
    probabilities are those of the network on the lung-space slice, mapped back."""
    samples = medseg_samples(shared_data / "medseg100")[:3] + ct_seg[:3]
    cfg = TrainConfig.from_dict({"task": "multiclass", "model": {"name": "unet", "base": 4},
                                 "loss": {"name": "partial"}, "input": {"size": 64, "crop_body": False, "clahe": False},
                                 "crop": 48, "epochs": 1, "batch_size": 3, "max_steps": 2, "device": "cpu"})
    trainer = Trainer(cfg, tmp_path / "run")
    result = trainer.fit(prepare_set(samples, InputSpec.from_dict(cfg.input)))
    card = make_card(cfg, shared_data, len(samples), [], result.history, None,
                     compute_description(1.0, trainer), space="lung")
    bundle = load_bundle(save_bundle(result.model, card, tmp_path / "bundle", "tiny_v2"))
    assert bundle.card["preprocessing"]["intensity_space"] == "lung"
    segmenter = Segmenter(bundle, InferenceOptions(device="cpu", keep_probabilities=True, lungs="classic"))
    assert segmenter.lung_space
    phantom = chest_phantom()
    volume = Volume(phantom.hu, spacing=SPACING)
    out = segmenter.segment(volume)
    z = 18
    planes, outer = slices_to_lung_space(to_lps(phantom.hu, volume)[z:z + 1].astype(np.float32), is_hu=True)
    x, geometry = prepare(planes[0], segmenter.spec)
    with torch.no_grad():
        prob = torch.softmax(segmenter.model(torch.from_numpy(x)[None, None]), 1)[0].numpy()
    expected = unletterbox(restore(prob, geometry), outer, order=1)
    got = to_lps(out.probabilities[3], volume)[z] / 255.0
    assert np.abs(got - expected[1]).max() <= 1.0 / 255 + 1e-4


def test_thinning_keeps_every_nth_slice_per_patient_and_medseg_is_repeated():
    def sample(i, source, group):
        return Sample(f"{source}_{i}", np.zeros((4, 4), np.float32), np.zeros((4, 4), np.uint8), "x",
                      {"source": source, "group": group})
    samples = ([sample(i, "ctseg", "ctseg_1") for i in range(7)] + [sample(i, "ctseg", "ctseg_2") for i in range(7, 9)]
               + [sample(0, "medseg", "medseg_0"), sample(0, "neg", "neg_a")])
    kept = thin_and_weight(samples, ct_seg_every=3, repeat_medseg=4)
    assert [s.id for s in kept] == ["ctseg_0", "ctseg_3", "ctseg_6", "ctseg_7", "medseg_0", "neg_0"]
    data = prepare_set(kept, InputSpec(size=4, crop_body=False))
    order = epoch_order(data, torch.Generator().manual_seed(0)).tolist()
    assert sorted(order) == [0, 1, 2, 3, 4, 4, 4, 4, 5]  # the MedSeg slice 4x per epoch, the rest once
    assert [s.id for s in thin_and_weight(samples)] == [s.id for s in samples]
