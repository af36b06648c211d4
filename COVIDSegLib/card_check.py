"""What a model card must hold, checked before anything in it is used: each problem is one
line naming the card and the field (a card is a file a user may have edited or downloaded)."""
from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import CovidSegError, shown
from .names import INTENSITY_SPACES

TASKS = ("multiclass", "binary", "lungs")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # a bundle name, never a path


def _fail(card_path: Path, field: str, problem: str) -> None:
    raise CovidSegError(f"Model card {shown(card_path)}: {field} {problem}")


def _mapping(card_path: Path, value: Any, field: str) -> dict:
    if not isinstance(value, dict) or not value:
        _fail(card_path, field, "must be a non-empty JSON object")
    return value


def _text(card_path: Path, value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        _fail(card_path, field, "must be a non-empty string")
    return value


def _integer(card_path: Path, value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        _fail(card_path, field, f"must be an integer from {low} to {high} (found {value!r:.40})")
    return value


def check_card(card: dict, card_path: Path) -> dict:
    """``card`` when every field the project reads is there and well-formed; else CovidSegError."""
    _text(card_path, card.get("name"), "'name'")
    if card.get("task") not in TASKS:
        _fail(card_path, "'task'", f"must be one of {', '.join(TASKS)} (found {card.get('task')!r:.40})")
    architecture = _mapping(card_path, card.get("architecture"), "'architecture'")
    _text(card_path, architecture.get("name"), "'architecture.name'")
    config = _mapping(card_path, architecture.get("config"), "'architecture.config'")
    _text(card_path, config.get("name"), "'architecture.config.name'")
    preprocessing = _mapping(card_path, card.get("preprocessing"), "'preprocessing'")
    spec = _mapping(card_path, preprocessing.get("input"), "'preprocessing.input'")
    _integer(card_path, spec.get("size"), "'preprocessing.input.size'", 16, 4096)
    for key in ("crop_body", "clahe"):
        if key in spec and not isinstance(spec[key], bool):
            _fail(card_path, f"'preprocessing.input.{key}'", "must be true or false")
    models = preprocessing.get("space_models")
    for space, name in (_mapping(card_path, models, "'preprocessing.space_models'") if models is not None else {}).items():
        if space not in INTENSITY_SPACES or not isinstance(name, str) or not _NAME.fullmatch(name):
            _fail(card_path, f"'preprocessing.space_models.{space:.20}'",
                  f"must map a space ({', '.join(INTENSITY_SPACES)}) to a model name (found {name!r:.40})")
    single = preprocessing.get("single_slice_model")
    if single is not None and not (isinstance(single, str) and _NAME.fullmatch(single)):
        _fail(card_path, "'preprocessing.single_slice_model'", f"must be a model name (found {single!r:.40})")
    members = preprocessing.get("ensemble_with")
    if members is not None and not (isinstance(members, list) and len(members) <= 4
                                    and all(isinstance(m, str) and _NAME.fullmatch(m) for m in members)):
        _fail(card_path, "'preprocessing.ensemble_with'", f"must be a list of up to 4 model names (found {members!r:.40})")
    labels = _mapping(card_path, card.get("labels"), "'labels'")
    for key, entry in labels.items():
        if not key.isdigit() or not 1 <= int(key) <= 255:
            _fail(card_path, f"label class '{key:.20}'", "must be a class index from 1 to 255")
        entry = _mapping(card_path, entry, f"'labels.{key}'")
        _integer(card_path, entry.get("value"), f"'labels.{key}.value'", 1, 255)
        _text(card_path, entry.get("name"), f"'labels.{key}.name'")
    weights = _text(card_path, card.get("weights"), "'weights'")
    relative = PurePosixPath(weights)
    if relative.is_absolute() or len(relative.parts) != 1 or relative.name in (".", "..") or "\\" in weights:
        _fail(card_path, "'weights'", f"must be a file name inside the card's folder (found {weights!r:.60})")
    sha = card.get("sha256")
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        _fail(card_path, "'sha256'", "must be 64 lower-case hexadecimal digits")
    return card
