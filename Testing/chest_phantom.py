"""A small synthetic chest CT in HU with known anatomy, shared by the lung and CLI tests.

Index axes (z, y, x) with an identity direction: x runs to the patient's left (LPS +x), y to
posterior, z to superior (the trachea is in the highest z slices).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import numpy as np

SHAPE = (40, 128, 128)  # (z, y, x)
SPACING = (1.5, 1.5, 2.5)  # (x, y, z) mm, SimpleITK order
SOFT_TISSUE_HU, AIR_HU, LUNG_HU, CONSOLIDATION_HU, TABLE_HU = 40.0, -1000.0, -850.0, 30.0, 300.0
TOP_TRACHEA_SLICES = slice(34, 40)  # only trachea (no lung) in these slices


@dataclass
class ChestPhantom:
    hu: np.ndarray  # int16 (z, y, x)
    body: np.ndarray  # bool: the patient (soft-tissue ellipse incl. everything inside it)
    lungs: Dict[str, np.ndarray]  # "left" (higher x index) / "right": lung ellipsoids incl. the blob
    trachea: np.ndarray  # bool: the trachea tube (superior slices)
    airways: np.ndarray  # bool: trachea + main bronchi
    blob: np.ndarray  # bool: dense consolidation inside the left lung, against its lateral wall
    table: np.ndarray  # bool: the CT table bar below (posterior to) the body


def chest_phantom(noise_hu: float = 10.0, seed: int = 0) -> ChestPhantom:
    """Body ellipse (+40 HU) in air, two lung ellipsoids (-850 HU), a trachea (-1000 HU) in the
    superior slices branching into both lungs (trachea + lungs form one air component), a
    consolidation blob (+30 HU) in the left lung touching its lateral wall, and a table bar."""
    z, y, x = np.mgrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]].astype(float)
    hu = np.full(SHAPE, AIR_HU)
    body = ((y - 60) / 42) ** 2 + ((x - 64) / 56) ** 2 <= 1
    hu[body] = SOFT_TISSUE_HU
    table = (y >= 110) & (y <= 114) & (x >= 8) & (x <= 120)
    hu[table] = TABLE_HU
    lungs = {}
    for side, cx in (("right", 39.0), ("left", 89.0)):
        lungs[side] = ((x - cx) / 16) ** 2 + ((y - 60) / 28) ** 2 + ((z - 18) / 15) ** 2 <= 1
        hu[lungs[side]] = LUNG_HU
    trachea = ((x - 64) ** 2 + (y - 48) ** 2 <= 5**2) & (z >= 28)
    bronchi = ((y - 48) ** 2 + (z - 28.5) ** 2 <= 2.5**2) & (np.abs(x - 64) <= 30)
    airways = trachea | bronchi
    hu[airways] = AIR_HU
    # 10 mm sphere (in mm) centred 10 px inside the lateral wall of the left lung (x = 105).
    sphere = ((x - 100) * SPACING[0]) ** 2 + ((y - 62) * SPACING[1]) ** 2 + ((z - 18) * SPACING[2]) ** 2
    blob = (sphere <= 10.0**2) & lungs["left"]
    hu[blob] = CONSOLIDATION_HU
    if noise_hu:
        hu = hu + np.random.default_rng(seed).normal(0.0, noise_hu, SHAPE)
    return ChestPhantom(np.rint(hu).astype(np.int16), body, lungs, trachea, airways, blob, table)
