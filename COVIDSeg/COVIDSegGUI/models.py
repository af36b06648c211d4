"""Model bundles in the user interface: the choices to list and importing a user's bundle."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import List, Optional, Tuple, Union

from COVIDSegLib.errors import CovidSegError


class ModelExistsError(CovidSegError):
    """The user folder already has a model of that name (import again with ``overwrite``)."""


def model_choices(current: str) -> Tuple[List[dict], str]:
    """(infection bundles found by ``COVIDSegLib.bundle.list_bundles``, a note; lung models run
    beside them, so they are not choices). Without PyTorch the library cannot list them yet:
    only ``current`` is offered, with a note saying why."""
    try:
        from COVIDSegLib.bundle import list_bundles
    except ImportError as error:
        return [{"name": current}], f"Models are listed once the requirements are installed ({error.name} is missing)."
    bundles = [b for b in list_bundles() if b.get("task") != "lungs"]
    return bundles, "" if bundles else "No model found: add one with “Add model…”."


def describe(bundle: dict) -> str:
    """One line about a bundle from ``list_bundles``."""
    parts = [bundle.get("task"), bundle.get("architecture")]
    if bundle.get("cv_dice") is not None:
        parts.append(f"cross-validated Dice {bundle['cv_dice']:.3f}")
    parts.append("bundled" if bundle.get("bundled") else bundle.get("path"))
    return ", ".join(str(p) for p in parts if p)


def import_bundle(source: Union[str, Path], user_dir: Optional[Path] = None, overwrite: bool = False) -> str:
    """Copy a bundle (``NAME.json`` card + its weights) into the user model folder
    (``~/.covidseg/models``) after loading it once: the SHA-256 of the weights and the
    architecture are checked before anything is copied. Returns the model's name."""
    from COVIDSegLib.bundle import USER_DIR, find_bundle, load_bundle
    from COVIDSegLib.io.files import atomic_path

    card_path = find_bundle(Path(source))
    bundle = load_bundle(card_path)  # raises CovidSegError on a bad hash or architecture
    target = Path(user_dir or USER_DIR)
    weights = card_path.parent / bundle.card["weights"]
    dest_card, dest_weights = target / f"{bundle.name}.json", target / bundle.card["weights"]
    if dest_card.resolve() == card_path.resolve():
        return bundle.name  # already there
    if not overwrite and (dest_card.exists() or dest_weights.exists()):
        raise ModelExistsError(f"A model named {bundle.name} is already in {target}.")
    for src, dest in ((weights, dest_weights), (card_path, dest_card)):  # card last: it makes the model visible
        with atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)
    return bundle.name
