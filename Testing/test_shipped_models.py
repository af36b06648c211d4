"""The bundled models: present, within size, hash-checked, self-described, and working on the real sample."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from COVIDSegLib.bundle import BUNDLED_DIR, load_bundle, read_card
from COVIDSegLib.io.files import read_volume
from COVIDSegLib.preprocess.slice_prep import InputSpec
from COVIDSegLib.training.crossval import score_model
from COVIDSegLib.training.datasets import Sample

SAMPLES = Path(__file__).resolve().parents[1] / "Resources" / "Samples"
SHIPPED = {"covidseg_binary": "binary", "covidseg_multiclass": "multiclass"}
MAX_BYTES = 30 * 1024 * 1024


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_card_and_size(name):
    card_path = BUNDLED_DIR / f"{name}.json"
    assert card_path.is_file(), f"bundled model {name} is missing"
    card = read_card(card_path)
    assert card["task"] == SHIPPED[name]
    assert (BUNDLED_DIR / card["weights"]).stat().st_size <= MAX_BYTES
    cv = card["metrics"]["cv"]
    assert card["metrics"]["cv_folds"] == 5 and cv["dice"]["n"] >= 50
    assert 0 < cv["dice"]["mean"] < 1
    assert card["training"]["n_slices"] >= 50 and card["architecture"]["parameters"] > 0
    assert set(v["value"] for v in card["labels"].values()) <= {3, 4}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_segments_the_real_sample(name):
    """medseg_0000 was in the training data: a sanity check of the whole chain, not an accuracy figure."""
    bundle = load_bundle(name)
    image = read_volume(SAMPLES / "medseg_0000.png").array[0]
    mask = (read_volume(SAMPLES / "medseg_0000_mask.png").array[0] > 0).astype(np.uint8)
    sample = Sample("medseg_0000", image, mask)
    spec = InputSpec.from_dict(bundle.card["preprocessing"]["input"])
    row = score_model(bundle.model, [sample], spec, bundle.card["task"], torch.device("cpu"),
                      bundle.card["preprocessing"].get("intensity_space"))[0]
    assert row["dice"] > 0.6
