"""Fuzz cases for the readers: small valid files of every input format, and seeded mutations of
them (byte flips, cuts, insertions, hostile header numbers). ``make_case(i, folder)`` writes case
``i`` (deterministic) and returns its path; ``read_case(path)`` runs it the way the pipeline
reads an input: ``read_volume`` -> ``check_volume`` -> intensity resolution.
"""
from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import SimpleITK as sitk

HOSTILE_NUMBERS = ["-1", "0", "-3", "2147483648", "-2147483649", "1e308", "-1e308", "nan", "inf", "-inf", "100000",
                   "4294967296", "1e-300", "0.0", "3.5", "", "x", "99999999999999999999"]
_NUMBER = re.compile(rb"-?\d+(\.\d+)?(e[-+]?\d+)?")


SAMPLES = Path(__file__).resolve().parents[1] / "Resources" / "Samples"


def _volume() -> sitk.Image:
    """The bundled real CT sample (HU), every 8th pixel: 64 x 64 x 2, spacing 5 x 5 x 1 mm."""
    return sitk.ReadImage(str(SAMPLES / "lungmask_chest_ct_2slices.nii.gz"))[::8, ::8, :]


def _slice8() -> sitk.Image:
    """The bundled real MedSeg slice (8-bit), every 4th pixel: 128 x 128."""
    return sitk.ReadImage(str(SAMPLES / "medseg_0000.png"))[::4, ::4]


def _write_seeds(folder: Path) -> List[Path]:
    """One small valid file (or header + data pair) per format; returns the inputs to mutate."""
    folder.mkdir(parents=True, exist_ok=True)
    volume = _volume()
    for name in ("seed.nii", "seed.nii.gz", "seed.nrrd", "seed.mha"):
        sitk.WriteImage(volume, str(folder / name), name.endswith((".gz", ".nrrd")))
    sitk.WriteImage(volume, str(folder / "pair.mhd"))              # + pair.raw
    sitk.WriteImage(volume, str(folder / "pair.nhdr"))             # + pair.raw
    slice8 = _slice8()
    sitk.WriteImage(slice8, str(folder / "seed.png"))
    sitk.WriteImage(sitk.Compose(slice8, slice8, slice8), str(folder / "rgb.png"))
    sitk.WriteImage(sitk.Cast(slice8, sitk.sitkUInt16) * 200, str(folder / "deep.png"))
    sitk.WriteImage(slice8, str(folder / "seed.jpg"))
    unsigned = sitk.Cast(sitk.Clamp(volume, lowerBound=-1024) + 1024, sitk.sitkUInt16)
    sitk.WriteImage(unsigned, str(folder / "frames.dcm"))          # multi-frame (unsigned, no rescale)
    sitk.WriteImage(volume[:, :, 0], str(folder / "slice.dcm"))
    return sorted(p for p in folder.iterdir() if not p.name.startswith("pair.raw"))


SEED_DIR_NAME = "seeds"


def seeds(root: Path) -> List[Path]:
    folder = Path(root) / SEED_DIR_NAME
    return sorted(p for p in folder.iterdir() if not p.name.startswith("pair.raw")) if folder.is_dir() \
        else _write_seeds(folder)


def _flip(data: bytearray, rng: np.random.Generator) -> bytes:
    for _ in range(int(rng.integers(1, 24))):
        position = int(rng.integers(0, len(data)))
        data[position] = int(rng.integers(0, 256))
    return bytes(data)


def _cut(data: bytearray, rng: np.random.Generator) -> bytes:
    return bytes(data[: int(rng.integers(0, len(data)))])


def _insert(data: bytearray, rng: np.random.Generator) -> bytes:
    position = int(rng.integers(0, len(data)))
    return bytes(data[:position]) + rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes() \
        + bytes(data[position:])


def _numbers(data: bytearray, rng: np.random.Generator) -> bytes:
    """A number in the (text) header replaced by a hostile one."""
    head = bytes(data[:2048])
    matches = list(_NUMBER.finditer(head))
    if not matches:
        return _flip(data, rng)
    match = matches[int(rng.integers(0, len(matches)))]
    value = HOSTILE_NUMBERS[int(rng.integers(0, len(HOSTILE_NUMBERS)))].encode()
    return bytes(data[:match.start()]) + value + bytes(data[match.end():])


def _binary_field(data: bytearray, rng: np.random.Generator) -> bytes:
    """A 2-, 4- or 8-byte field in the first 352 bytes (a NIfTI header) set to an extreme value."""
    width = int(rng.choice([2, 4, 8]))
    position = int(rng.integers(0, max(min(len(data), 352) - width, 1)))
    kind = {2: ["<i2", "<u2"], 4: ["<i4", "<f4"], 8: ["<i8", "<f8"]}[width]
    dtype = np.dtype(kind[int(rng.integers(0, 2))])
    if dtype.kind == "f":
        value = np.array(rng.choice([np.nan, np.inf, -np.inf, 1e30, -1e30, 0.0, 1e-30]), dtype)
    else:
        info = np.iinfo(dtype)
        value = np.array(rng.choice([info.min, info.max, 0, -1 if info.min < 0 else 1, 7]), dtype)
    data[position:position + width] = value.tobytes()
    return bytes(data)


MUTATIONS: Dict[str, Callable[[bytearray, np.random.Generator], bytes]] = {
    "flip": _flip, "cut": _cut, "insert": _insert, "numbers": _numbers, "binary_field": _binary_field}


def make_case(index: int, root: Path) -> Path:
    """Write fuzz case ``index`` (a mutated seed) into ``root/case`` and return the input's path."""
    rng = np.random.default_rng(index)
    sources = seeds(root)
    seed = sources[int(rng.integers(0, len(sources)))]
    name = list(MUTATIONS)[int(rng.integers(0, len(MUTATIONS)))]
    case = Path(root) / "case"
    shutil.rmtree(case, ignore_errors=True)
    case.mkdir()
    for companion in seed.parent.glob("pair.raw*"):  # detached data travels with its header
        shutil.copy(companion, case / companion.name)
    raw = seed.read_bytes()
    inside = seed.name.endswith(".gz") and rng.random() < 0.7  # mutate the content, not the gzip stream
    mutated = MUTATIONS[name](bytearray(gzip.decompress(raw) if inside else raw), rng)
    if inside:
        mutated = gzip.compress(mutated)
    target = case / seed.name
    target.write_bytes(mutated)
    if seed.name.startswith("pair") and rng.random() < 0.5:  # mutate the detached data instead
        target.write_bytes(raw)
        for companion in case.glob("pair.raw*"):
            companion.write_bytes(MUTATIONS[name](bytearray(companion.read_bytes()), rng))
    return target


def read_case(path: Path) -> str:
    """'ok' when the input is usable; raises the project's errors (or, for a defect, anything else)."""
    from COVIDSegLib.io.files import read_volume
    from COVIDSegLib.io.validate import check_volume
    from COVIDSegLib.preprocess.intensity import resolve_calibration
    volume = check_volume(read_volume(path))
    resolve_calibration(volume)
    return "ok"
