"""Lungs as 3D structures: from a per-voxel lung mask (model or HU candidates) to left/right lungs.

All arrays are in LPS order (z inferior -> superior, y anterior -> posterior, x patient's right ->
left). Steps:

1. 3D connected components (face connectivity); pieces under ``min_ml`` dropped, unless the scan
   cuts them at its first or last slice and no pure gas borders them (``cut_min_ml``: the tip of a
   lung base or apex, not a sliver of bowel wall).
2. A component is lung when it is aerated (soft tissue such as kidney or liver is not), not
   mostly air around the body (pure gas joined to the image border within its slices), not a
   small pocket of pure gas (bowel, stomach), not tiny next to the largest, and reaches within
   ``max_drop_mm`` of the lungs' top: the abdomen lies below the diaphragm. Before that, gas
   pockets walled by soft tissue and in-plane pieces without aerated voxels are taken out,
   so that a mask bridging lung and bowel or kidney falls apart.
3. Trachea and main bronchi removed: an airway tree grown from a tracheal seed in HU.
4. Sides from patient coordinates: each component takes the side of its centroid relative to
   the body's midline; one spanning both sides (lungs touching at the anterior junction) is
   split by in-plane erosion and nearest-part assignment.
5. The outer layer of partial-volume tissue (at or above -400 HU) peeled off
   (``peel_partial_volume_rim``).
6. Holes filled per slice (vessels, consolidation enclosed by lung).

Before step 1 the mask grows into the aerated voxels connected to it (not into airways or
pure gas): the thin crescents of the bases behind the diaphragm's domes, which
a 2D model sees poorly, belong to the lung beside them (``grow_into_aerated``).

After growth, on slices where the body lies wholly in view, lung is kept only inside the body
(its tissue with the holes filled; the lungs are such holes): material around the patient as dense
as lung (cushions, blankets, noisy air) is not lung. Where the field of view (the image border or the
padding of a round field of view) cuts the body there is no bound, nothing is clipped at the image
edge, and no convex hull is used.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
from scipy import ndimage

from .. import morphology as morph
from ..labels import LEFT_LUNG, RIGHT_LUNG
from ..preprocess.lung_space import corner_padding

FACE = ndimage.generate_binary_structure(3, 1)  # the six face neighbours
PLANE = np.zeros((3, 3, 3), bool)  # the four in-plane face neighbours: each slice on its own
PLANE[1] = ndimage.generate_binary_structure(2, 1)


@dataclass(frozen=True)
class Lungs3DParams:
    min_ml: float = 1.0           # smaller 3D pieces are noise ...
    cut_min_ml: float = 0.5       # ... unless cut by the scan's first or last slice (a base or apex tip)
    cut_min_slices: int = 3       # over at least this many slices, and not bordering pure gas (bowel):
    cut_gas_share: float = 0.05   # at most this share of its in-plane rim below gas_hu
    keep_share: float = 0.02      # further components kept if >= this share of the largest
    aerated_hu: float = -500.0    # a lung component has voxels below this ...
    min_aerated: float = 0.2      # ... at least this share of them (soft tissue has none)
    gas_hu: float = -950.0        # a small component mostly below this is gas (bowel, stomach)
    gas_share: float = 0.5
    pocket_wall_share: float = 0.5  # a gas pocket walled by this share of tissue is not lung
    min_piece_aerated: float = 0.05  # in-plane pieces with fewer aerated voxels are tissue
    big_share: float = 0.3        # components this big (share of the largest) are never "gas"
    max_drop_mm: float = 40.0     # a component whose top is further below the lungs' top is abdominal
    body_hu: float = -500.0       # tissue for the body midline
    grow_hu: float = -400.0       # the mask grows into the connected voxels from gas_hu to this
    grow: bool = True
    rim_hu: float = -400.0        # boundary voxels at or above this (half-way lung/tissue) are peeled
    peel_rim: bool = True
    fill_holes: bool = True


def component_table(labels: np.ndarray, n: int, hu: np.ndarray, params: Lungs3DParams) -> dict:
    """Per component 1..n: voxels, bounding box, bottom and top slice (LPS z), share aerated, share
    gas-dense."""
    flat = labels.ravel()
    count = np.bincount(flat, minlength=n + 1)[1:]
    aerated = np.bincount(flat, (hu < params.aerated_hu).ravel(), minlength=n + 1)[1:]
    gas = np.bincount(flat, (hu < params.gas_hu).ravel(), minlength=n + 1)[1:]
    boxes = ndimage.find_objects(labels, n)
    bottom = np.array([-1 if box is None else box[0].start for box in boxes])
    top = np.array([-1 if box is None else box[0].stop - 1 for box in boxes])
    return {"voxels": count, "boxes": boxes, "bottom": bottom, "top": top,
            "aerated": aerated / np.maximum(count, 1), "gas": gas / np.maximum(count, 1)}


def gas_pockets(mask: np.ndarray, hu: np.ndarray, params: "Lungs3DParams") -> np.ndarray:
    """Pockets of pure gas walled by soft tissue (bowel, stomach, trachea) that touch ``mask``,
    with their wall: removed before the lungs' components are taken, so that a mask bridging
    lung and bowel falls apart. Emphysema and bullae are walled by lung, not tissue, and stay."""
    box = morph.bounding_box(mask, 3)
    gas = (hu[box] < params.gas_hu)
    labels, n = ndimage.label(gas)
    if n == 0:
        return np.zeros(mask.shape, bool)
    grown = ndimage.grey_dilation(labels, size=(3, 5, 5))
    ring = (grown > 0) & ~gas
    tissue = np.bincount(grown[ring], (hu[box][ring] > params.aerated_hu), minlength=n + 1)
    around = np.bincount(grown[ring], minlength=n + 1)
    touching = np.bincount(labels[mask[box]], minlength=n + 1) > 0
    walled = (tissue >= params.pocket_wall_share * np.maximum(around, 1)) & touching
    walled[0] = False
    out = np.zeros(mask.shape, bool)
    out[box] = walled[grown]
    return out


def airless_pieces(mask: np.ndarray, hu: np.ndarray, params: "Lungs3DParams") -> np.ndarray:
    """In-plane pieces of ``mask`` with (almost) no aerated voxel: soft tissue (kidney, liver,
    muscle) the mask spilled into, not lung. Consolidated lung keeps air bronchograms or
    touches aerated lung on its slice."""
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    labels, n = ndimage.label(mask, structure)
    if n == 0:
        return np.zeros(mask.shape, bool)
    count = np.bincount(labels.ravel(), minlength=n + 1)
    aerated = np.bincount(labels.ravel(), (hu < params.aerated_hu).ravel(), minlength=n + 1)
    airless = aerated < params.min_piece_aerated * np.maximum(count, 1)
    airless[0] = False
    return airless[labels]


def keep_lung_components(mask: np.ndarray, hu: np.ndarray, spacing_zyx: Tuple[float, float, float],
                         params: Lungs3DParams = Lungs3DParams()) -> np.ndarray:
    """Steps 1-2 of the module docstring on a boolean LPS mask with its HU: a component is lung
    when it is aerated (not soft tissue), not a small pocket of pure gas, large enough, and
    reaches within ``max_drop_mm`` of the lungs' top (the abdomen lies below the diaphragm)."""
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    floor = min(params.min_ml, params.cut_min_ml)
    labels, sizes = morph.components(mask, max(1, int(np.ceil(floor / voxel_ml))))
    if not len(sizes):
        return np.zeros(mask.shape, bool)
    t = component_table(labels, len(sizes), hu, params)
    small = t["voxels"] * voxel_ml < params.min_ml
    tips = small & cut_by_scan_end(t, len(mask), params.cut_min_slices)
    ok = ~small | (tips & ~beside_gas(labels, t["boxes"], tips, hu, params))
    ok &= t["aerated"] >= params.min_aerated
    gassy = ok & (t["gas"] >= params.gas_share)
    if gassy.any():
        ok &= ~outside_components(labels, t["boxes"], gassy, hu, params)
    if not ok.any():
        return np.zeros(mask.shape, bool)
    largest = t["voxels"][ok].max()
    ok &= t["voxels"] >= params.keep_share * largest
    ok &= (t["gas"] < params.gas_share) | (t["voxels"] >= params.big_share * largest)
    if ok.any():
        top = t["top"][ok & (t["voxels"] >= params.big_share * largest)].max(initial=t["top"][ok].max())
        ok &= (top - t["top"]) * spacing_zyx[0] <= params.max_drop_mm
    return np.isin(labels, np.flatnonzero(ok) + 1)


def cut_by_scan_end(table: dict, n_slices: int, min_slices: int) -> np.ndarray:
    """Per component of ``component_table``: whether it reaches the first or the last slice of a
    scan of ``n_slices`` over at least ``min_slices`` slices: the scan shows only the tip of a lung
    base or apex, so its size says nothing about noise."""
    bottom, top = table["bottom"], table["top"]
    return (top - bottom + 1 >= min_slices) & ((bottom == 0) | (top == n_slices - 1))


def beside_gas(labels: np.ndarray, boxes: list, candidates: np.ndarray, hu: np.ndarray,
               params: Lungs3DParams) -> np.ndarray:
    """Per component 1..n (``boxes``: their bounding boxes; ``candidates``: those to test): whether
    more than ``cut_gas_share`` of its in-plane rim is pure gas. A lung tip is walled by chest wall,
    diaphragm and lung; a sliver of bowel wall or of a gas pocket's partial volume borders the gas of
    its lumen."""
    out = np.zeros(len(candidates), bool)
    for i in np.flatnonzero(candidates):
        box = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in boxes[i])
        part = labels[box] == i + 1
        rim = ndimage.binary_dilation(part, PLANE) & ~part
        out[i] = np.mean(hu[box][rim] < params.gas_hu) > params.cut_gas_share
    return out


def outside_air(hu: np.ndarray, gas_hu: float) -> np.ndarray:
    """Pure gas (below ``gas_hu``) joined to the in-plane image border within its slice: the air
    around the body and padding beyond the field of view. Lung is walled off from it by the chest
    wall; bowel gas, the trachea and emphysema are enclosed."""
    labels, n = ndimage.label(hu < gas_hu, PLANE)
    border = np.zeros(n + 1, bool)
    for edge in (labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]):
        border[edge] = True
    border[0] = False
    return border[labels]


def outside_components(labels: np.ndarray, boxes: list, candidates: np.ndarray, hu: np.ndarray,
                       params: Lungs3DParams) -> np.ndarray:
    """Per component 1..n (``boxes``: their bounding boxes; ``candidates``: the mostly-gas ones to
    test): whether most of its voxels are air around the body (``outside_air``, on the candidates'
    slices only)."""
    out = np.zeros(len(candidates), bool)
    zs = [boxes[i][0] for i in np.flatnonzero(candidates)]
    z = slice(min(s.start for s in zs), max(s.stop for s in zs))
    part = labels[z]
    outside = np.bincount(part.ravel(), outside_air(hu[z], params.gas_hu).ravel(), minlength=len(candidates) + 1)[1:]
    count = np.bincount(part.ravel(), minlength=len(candidates) + 1)[1:]
    out[candidates] = (outside >= 0.5 * np.maximum(count, 1))[candidates]
    return out


def body_midline_x(hu: np.ndarray, x_mm: np.ndarray, lung: np.ndarray, body_hu: float) -> float:
    """Mean patient x (mm) of tissue on the slices that hold lung (cropped fields of view too)."""
    zs = np.flatnonzero(lung.any(axis=(1, 2)))
    tissue = hu[zs] > body_hu
    if not tissue.any():
        return float(np.broadcast_to(x_mm, lung.shape)[lung].mean())
    return float(np.broadcast_to(x_mm, tissue.shape)[tissue].mean())


def assign_sides(lung: np.ndarray, x_mm: np.ndarray, midline: float,
                 spacing_zyx: Tuple[float, float, float]) -> np.ndarray:
    """uint8 map: 1 left / 2 right per component of ``lung`` (step 4)."""
    out = np.zeros(lung.shape, np.uint8)
    labels, sizes = morph.components(lung)
    x = np.broadcast_to(x_mm, lung.shape)
    for i in range(1, len(sizes) + 1):
        part = labels == i
        share_left = float(np.mean(x[part] > midline))
        pieces = split_by_erosion(part, spacing_zyx) if 0.15 < share_left < 0.85 else (part,)
        for piece in pieces:
            if piece.any():
                out[piece] = LEFT_LUNG if float(x[piece].mean()) > midline else RIGHT_LUNG
    return out


def split_by_erosion(mask: np.ndarray, spacing_zyx: Tuple[float, float, float]):
    """Erode in-plane until two big parts appear; each voxel goes to the nearer part. Returns
    the two parts, or ``(mask,)`` when it does not fall apart."""
    spacing_xyz = tuple(reversed(spacing_zyx))
    for radius in range(1, 16):
        labels, sizes = morph.components(morph.erode_inplane(mask, radius))
        if len(sizes) >= 2 and sizes[1] >= 0.1 * sizes[0]:
            nearest = morph.nearest_label(mask, [labels == 1, labels == 2], spacing_xyz)
            return nearest == 1, nearest == 2
    return (mask,)


def grow_into_aerated(mask: np.ndarray, hu: np.ndarray, airways: np.ndarray, params: Lungs3DParams) -> np.ndarray:
    """``mask`` plus the aerated voxels (``gas_hu`` to ``grow_hu``; not airway, not pure gas nor its
    partial-volume rim) connected to it through such voxels (face connectivity): lung the
    model saw poorly (thin basal crescents) joins the lung beside it. Tissue walls it in: bowel,
    stomach and outside air are pure gas behind the diaphragm, the bowel wall or the skin."""
    if not params.grow or not mask.any():
        return mask
    _, ys, xs = morph.bounding_box(mask, 2)
    box = (slice(None), ys, xs)  # every slice: the bases may lie below the mask's lowest slice
    m, h = mask[box], hu[box]
    free = (h >= params.gas_hu) & (h < params.grow_hu) & ~airways[box]
    free &= ~morph.dilate_inplane(h < params.gas_hu, 1)
    labels, _ = ndimage.label(free | m)
    touching = np.unique(labels[m])
    out = mask.copy()
    out[box] |= np.isin(labels, touching[touching > 0])
    return out


def peel_partial_volume_rim(mask: np.ndarray, hu: np.ndarray, params: Lungs3DParams) -> np.ndarray:
    """``mask`` without its outer layer of voxels at or above ``rim_hu``: the lung boundary at the
    half-way value between aerated lung (about -850 HU) and soft tissue (about +40), where
    threshold-based lung segmentation draws it. One pass, face neighbours in 3D: the layer of
    partial-volume tissue a 2D model at 128 px puts around the lungs goes; dense lung
    (consolidation) keeps all but its outermost voxels, and nothing is peeled at the image edge."""
    if not params.peel_rim or not mask.any():
        return mask
    zs, ys, xs = morph.bounding_box(mask, 1)
    box = (slice(max(0, zs.start - 1), min(mask.shape[0], zs.stop + 1)), ys, xs)  # one voxel of margin
    interior = ndimage.binary_erosion(mask[box], FACE, border_value=1)  # beyond the image counts as mask
    out = mask.copy()
    out[box] &= interior | (hu[box] < params.rim_hu)
    return out


def inside_patient(hu: np.ndarray, mask: np.ndarray, body_hu: float) -> np.ndarray:
    """Where lung may lie: on slices where ``mask`` has voxels and the body lies wholly in view (it
    touches neither the image border nor the padding of a round field of view), the body (the
    largest piece of tissue above ``body_hu``) with its holes filled, the lungs being holes in it;
    everywhere else no bound."""
    inside = np.ones(mask.shape, bool)
    zs = np.flatnonzero(mask.any(axis=(1, 2)))
    if len(zs):
        body = morph.body_per_slice(hu[zs], body_hu)
        view_edge = ndimage.binary_dilation(np.stack([corner_padding(p) for p in hu[zs]]), PLANE)
        view_edge[:, [0, -1]] = view_edge[:, :, [0, -1]] = True
        whole = ~(body & view_edge).any(axis=(1, 2))
        if whole.any():
            inside[zs[whole]] = morph.fill_holes_per_slice(body[whole])
    return inside


def lungs_from_mask(mask: np.ndarray, hu: np.ndarray, x_mm: np.ndarray, airways: np.ndarray,
                    spacing_zyx: Tuple[float, float, float],
                    params: Lungs3DParams = Lungs3DParams()) -> np.ndarray:
    """The whole chain (module docstring) on LPS arrays; returns uint8 labels 0/1/2."""
    if not mask.any():
        return np.zeros(mask.shape, np.uint8)
    mask = mask & ~airways & ~gas_pockets(mask, hu, params)
    mask = grow_into_aerated(mask & ~airless_pieces(mask, hu, params), hu, airways, params)
    mask &= inside_patient(hu, mask, params.body_hu)
    lung = peel_partial_volume_rim(keep_lung_components(mask, hu, spacing_zyx, params), hu, params)
    if not lung.any():
        return np.zeros(mask.shape, np.uint8)
    sides = assign_sides(lung, x_mm, body_midline_x(hu, x_mm, lung, params.body_hu), spacing_zyx)
    if not params.fill_holes:
        return sides
    out = np.zeros(mask.shape, np.uint8)
    for side in (RIGHT_LUNG, LEFT_LUNG):
        mask = sides == side
        if mask.any():
            box = morph.bounding_box(mask)  # holes lie inside the lung's box
            filled = morph.fill_holes_per_slice(mask[box])
            out[box][filled & (out[box] == 0)] = side
    return out
