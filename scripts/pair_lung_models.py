"""Give a 2.5D lung bundle its 2D companion for single slices (``preprocessing.single_slice_model``).

The 2D bundle is written again beside the 2.5D card under ``--name`` (same tensors, its own card
and SHA-256), and the 2.5D card names it. Shipped pair (0.18.0, docs/LUNGS.md):

    python scripts/pair_lung_models.py runs/lungs_ctx2/final/bundle/covidseg_lungs.json \
        Resources/Models/covidseg_lungs.json --name covidseg_lungs_2d
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from COVIDSegLib.bundle import load_bundle, save_bundle  # noqa: E402
from COVIDSegLib.io.files import write_json  # noqa: E402
from COVIDSegLib.preprocess.slice_prep import InputSpec  # noqa: E402

OWN_FIELDS = ("format", "name", "weights", "sha256")  # save_bundle writes these anew


def pair(context_card: Path, flat_card: Path, name: str) -> Path:
    """Write ``flat_card``'s bundle beside ``context_card`` as ``name`` and name it there; the new card."""
    context = json.loads(context_card.read_text(encoding="utf-8"))
    if InputSpec.from_dict(context["preprocessing"]["input"]).context_mm <= 0:
        raise SystemExit(f"{context_card}: not a model with context")
    flat = load_bundle(flat_card)
    if InputSpec.from_dict(flat.card["preprocessing"]["input"]).context_mm > 0 or flat.card["task"] != "lungs":
        raise SystemExit(f"{flat_card}: not a 2D lung model")
    card = {k: v for k, v in flat.card.items() if k not in OWN_FIELDS}
    card["training"] = {**card.get("training", {}), "renamed_from": f"{flat.name} (sha256 {flat.card['sha256']})"}
    written = save_bundle(flat.model, card, context_card.parent, name)
    context["preprocessing"]["single_slice_model"] = name
    write_json(context, context_card)
    return written


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("context_card", type=Path, help="the 2.5D lung bundle's card (edited in place)")
    ap.add_argument("flat_card", type=Path, help="the 2D lung bundle's card")
    ap.add_argument("--name", default="covidseg_lungs_2d")
    args = ap.parse_args()
    print(pair(args.context_card, args.flat_card, args.name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
