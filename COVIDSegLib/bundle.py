"""Model bundles: ``NAME.safetensors`` (weights, no pickle) + ``NAME.json`` (the card).

The card says everything needed to use the weights: architecture and its config, the input
preparation (intensity space, HU window, input size, crop, CLAHE), the task's class -> label
values, training data and configuration, cross-validation metrics, and the SHA-256 of the
weights file. Loading checks the hash before reading a single tensor.

Where models are found (``find_bundle``/``list_bundles``): a path to a card or weights file;
else a name in ``$COVIDSEG_MODELS`` (user models, ``os.pathsep``-separated folders), then
``~/.covidseg/models``, then the bundled ``Resources/Models``.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Union

from .card_check import check_card
from .errors import CovidSegError, shown
from .io.files import atomic_path, write_json
from .names import DEFAULT_BINARY_MODEL, DEFAULT_MODEL

if TYPE_CHECKING:  # torch is imported where weights are read or written: listing cards stays fast
    import torch

FORMAT = "covidseg-model/1"
BUNDLED_DIR = Path(__file__).resolve().parents[1] / "Resources" / "Models"
USER_DIR = Path.home() / ".covidseg" / "models"
REQUIRED = ("format", "name", "task", "architecture", "preprocessing", "labels", "weights", "sha256")


@dataclass
class ModelBundle:
    name: str
    card: dict
    model: torch.nn.Module
    card_path: Path

    @property
    def class_labels(self) -> Dict[int, int]:
        """Network class index -> the project's label value (e.g. {1: 3, 2: 4})."""
        return {int(k): int(v["value"]) for k, v in self.card["labels"].items()}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_bundle(model: torch.nn.Module, card: dict, out_dir: Path, name: str) -> Path:
    """Write NAME.safetensors and NAME.json (card completed with format, name, weights,
    parameter count and hash); returns the card path."""
    from safetensors.torch import save_file

    from .models.registry import count_parameters
    out_dir = Path(out_dir)
    weights = out_dir / f"{name}.safetensors"
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(weights) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "name": name})
        os.chmod(tmp, 0o644)  # safetensors creates it private; a model is meant to be shared
    card = {"format": FORMAT, "name": name, **card, "weights": weights.name, "sha256": sha256_file(weights)}
    card["architecture"] = {**card["architecture"], "parameters": count_parameters(model)}
    return write_json(card, out_dir / f"{name}.json")


def read_card(card_path: Path) -> dict:
    try:
        card = json.loads(Path(card_path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CovidSegError(f"Cannot read model card {shown(card_path)}: {exc}") from None
    missing = [k for k in REQUIRED if k not in card] if isinstance(card, dict) else list(REQUIRED)
    if missing or card.get("format") != FORMAT:
        raise CovidSegError(f"{shown(card_path)} is not a COVIDSeg model card ({FORMAT}); missing: {', '.join(missing)}")
    return check_card(card, Path(card_path))


def search_dirs() -> List[Path]:
    env = [Path(p) for p in os.environ.get("COVIDSEG_MODELS", "").split(os.pathsep) if p]
    return env + [USER_DIR, BUNDLED_DIR]


def find_bundle(ref: Union[str, Path]) -> Path:
    """The card path of a model given by name, card path or weights path."""
    p = Path(ref)
    if p.suffix in (".json", ".safetensors") or p.exists():
        card = p.with_suffix(".json") if p.suffix == ".safetensors" else p
        if card.is_file():
            return card
        raise CovidSegError(f"Model card not found: {card}")
    for folder in search_dirs():
        if (folder / f"{ref}.json").is_file():
            return folder / f"{ref}.json"
    names = ", ".join(b["name"] for b in list_bundles()) or "none installed"
    raise CovidSegError(f"Unknown model '{ref}'; available: {names}")


def load_bundle(ref: Union[str, Path], device: Union[str, torch.device] = "cpu") -> ModelBundle:
    """Load a bundle after checking the weights' SHA-256 against its card."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .models.registry import build_model
    card_path = find_bundle(ref)
    card = read_card(card_path)
    weights = verify_weights(card, card_path)
    try:
        model = build_model(card["architecture"]["config"])
        model.load_state_dict(load_file(str(weights), device=str(device)))
    except (SafetensorError, RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise CovidSegError(f"Model {card['name']} cannot be loaded: {str(exc).splitlines()[0]}") from None
    return ModelBundle(card["name"], card, model.to(device).eval(), card_path)


def verify_weights(card: dict, card_path: Path) -> Path:
    """The card's weights file, after checking that it exists and matches the card's SHA-256."""
    weights = Path(card_path).parent / card["weights"]
    if not weights.is_file():
        raise CovidSegError(f"Model weights not found: {weights}")
    actual = sha256_file(weights)
    if actual != card["sha256"]:
        raise CovidSegError(f"Model weights {weights.name} do not match the SHA-256 in {Path(card_path).name} "
                            f"(expected {card['sha256'][:12]}..., got {actual[:12]}...): corrupt or altered file.")
    return weights


SPACE_NAMES = {"medseg8": "MedSeg 8-bit window (HU or 8-bit slices)",
               "lung": "lung space (per-slice min-max + CLAHE, as covid19-ct-seg-slices)"}


def intensity_space(card: dict) -> str:
    """The input space a card's network reads: "medseg8" (v1 models) or "lung"."""
    return card["preprocessing"].get("intensity_space") or "medseg8"


def bundle_for_space(bundle: ModelBundle, space: str, device: Union[str, "torch.device"] = "cpu") -> ModelBundle:
    """``bundle`` when its network reads ``space``; else the bundle its card names for inputs in
    that space (``preprocessing.space_models``; looked up beside the card first). Slices that
    cannot be brought into a network's space (CLAHE is not invertible) need such a companion."""
    if intensity_space(bundle.card) == space:
        return bundle
    name = (bundle.card["preprocessing"].get("space_models") or {}).get(space)
    if not name:
        own = intensity_space(bundle.card)
        raise CovidSegError(f"Model {bundle.name} reads the {SPACE_NAMES.get(own, own)} and "
                            f"cannot score slices in the {SPACE_NAMES.get(space, space)}; its card names no model for them.")
    other = companion_bundle(bundle, name, device)
    if intensity_space(other.card) != space or other.card["task"] == "lungs":
        raise CovidSegError(f"Model {other.name}, named by {bundle.name} for the {space} space, is not an "
                            f"infection model reading that space.")
    return other


def companion_bundle(bundle: ModelBundle, name: str, device: Union[str, "torch.device"] = "cpu") -> ModelBundle:
    """The bundle ``name`` that ``bundle``'s card names (looked up beside the card first), hash-checked."""
    beside = Path(bundle.card_path).parent / f"{name}.json"
    try:
        return load_bundle(beside if beside.is_file() else name, device)
    except CovidSegError as err:  # name the card that points at it, not only the missing model
        raise CovidSegError(f"{bundle.card_path}: companion model {name!r} named by this card cannot be "
                            f"loaded: {err}") from err


def list_bundles() -> List[dict]:
    """One entry per card found (the first of a name wins): name, task, architecture, CV Dice, path."""
    seen: Dict[str, dict] = {}
    for folder in search_dirs():
        for card_path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                card = read_card(card_path)
            except CovidSegError:
                continue
            metrics = card.get("metrics") or {}  # a card that runs an ensemble: the ensemble's CV
            dice = (metrics.get("ensemble_cv") or metrics.get("cv") or {}).get("dice", {}).get("mean")
            seen.setdefault(card["name"], {
                "name": card["name"], "task": card["task"], "architecture": card["architecture"]["name"],
                "cv_dice": dice, "bundled": folder == BUNDLED_DIR, "path": str(card_path)})
    return list(seen.values())


def default_model(task: Optional[str] = None) -> str:
    """Name of the bundled default model (multiclass unless a task is asked)."""
    return DEFAULT_BINARY_MODEL if task == "binary" else DEFAULT_MODEL
