"""Reading one DICOM series (or one multi-frame file), with its slice geometry checked first.

GDCM sorts a series' files along the slice normal, but it accepts duplicate positions, missing
slices and varying spacing, and ITK then builds the volume on a wrong z spacing (volumes in mL
would be wrong). Here every file's ImagePositionPatient / ImageOrientationPatient is checked:
a series is read only when its slices are distinct, equally spaced and equally oriented.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from ..errors import InputError, shown
from .native import quiet_native
from .preflight import check_folder_entries

POSITION, ORIENTATION, FRAMES, ROWS, COLUMNS = "0020|0032", "0020|0037", "0028|0008", "0028|0010", "0028|0011"
RELATIVE_TOLERANCE = 0.02   # slice spacing may vary by this share of its median
ABSOLUTE_TOLERANCE_MM = 0.01


def find_series(folder: Path, member: Optional[Path] = None) -> Tuple[str, List[str]]:
    """(series UID, files sorted by GDCM) of the series holding ``member``, else the largest one."""
    check_folder_entries(folder)
    try:
        with quiet_native():
            uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
            series = {uid: sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid) for uid in uids}
    except RuntimeError:
        series = {}
    if member is not None:
        series = {uid: files for uid, files in series.items()
                  if any(Path(f).resolve() == member.resolve() for f in files)}
    if not series:
        where = f"'{shown(member.name)}'" if member is not None else f"folder '{shown(folder)}'"
        raise InputError(f"No DICOM series found in {where}: give a folder of DICOM slices, "
                         "or the image file itself for other formats.")
    uid = max(series, key=lambda u: len(series[u]))
    return uid, list(series[uid])


def read_header(path: str) -> sitk.ImageFileReader:
    """A reader that has read one file's header (no pixels)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        with quiet_native():
            reader.ReadImageInformation()
    except RuntimeError:
        raise InputError(f"Cannot read the DICOM file '{shown(Path(path).name)}': it is truncated or corrupt.") from None
    return reader


def _tag(reader: sitk.ImageFileReader, key: str) -> Optional[str]:
    return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else None


def _floats(text: Optional[str], count: int) -> Optional[np.ndarray]:
    try:
        values = np.array([float(v) for v in (text or "").split("\\")], dtype=float)
    except ValueError:
        return None
    return values if values.size == count and np.all(np.isfinite(values)) else None


def frames(reader: sitk.ImageFileReader) -> int:
    """NumberOfFrames of a file (1 when absent or unreadable)."""
    try:
        return max(int(_tag(reader, FRAMES) or 1), 1)
    except ValueError:
        return 1


def slice_normal(orientation: Optional[np.ndarray], where: str) -> np.ndarray:
    """The unit normal of an ImageOrientationPatient; refused when it is not two unit, orthogonal vectors."""
    if orientation is None:
        raise InputError(f"{where}: ImageOrientationPatient is missing or not six numbers.")
    row, col = orientation[:3], orientation[3:]
    if abs(np.linalg.norm(row) - 1) > 0.01 or abs(np.linalg.norm(col) - 1) > 0.01 or abs(row @ col) > 0.01:
        raise InputError(f"{where}: ImageOrientationPatient {' '.join(f'{v:g}' for v in orientation)} is degenerate "
                         "(its row and column directions must be orthogonal unit vectors).")
    normal = np.cross(row, col)
    return normal / np.linalg.norm(normal)


def slice_positions(headers: Sequence[sitk.ImageFileReader], folder: Path) -> np.ndarray:
    """Each slice's position along the common slice normal (mm), after checking the orientation."""
    where = f"DICOM series '{shown(folder.name)}'"
    orientations = [_floats(_tag(h, ORIENTATION), 6) for h in headers]
    normal = slice_normal(orientations[0], where)
    if any(o is None or np.abs(o - orientations[0]).max() > 1e-3 for o in orientations):
        raise InputError(f"{where}: its slices have different orientations (ImageOrientationPatient).")
    positions = [_floats(_tag(h, POSITION), 3) for h in headers]
    if any(p is None for p in positions):
        raise InputError(f"{where}: some slices have no ImagePositionPatient, so their order and spacing are unknown.")
    sizes = {(_tag(h, ROWS), _tag(h, COLUMNS)) for h in headers}
    if len(sizes) > 1:
        raise InputError(f"{where}: its slices have different sizes (Rows x Columns {sorted(sizes)}).")
    return np.array([float(p @ normal) for p in positions])


def check_spacing(positions: np.ndarray, folder: Path, unread: int = 0) -> float:
    """The uniform slice spacing of sorted ``positions``; duplicates, gaps and varying spacing are refused."""
    where = f"DICOM series '{shown(folder.name)}'"
    steps = np.diff(np.sort(positions))
    duplicates = int(np.sum(steps < ABSOLUTE_TOLERANCE_MM))
    if duplicates:
        raise InputError(f"{where}: {duplicates} slice(s) share a position with another (two series mixed, or "
                         "duplicated files): the slice spacing would be wrong.")
    spacing = float(np.median(steps))
    tolerance = max(RELATIVE_TOLERANCE * spacing, ABSOLUTE_TOLERANCE_MM)
    worst = int(np.argmax(np.abs(steps - spacing)))
    if abs(steps[worst] - spacing) <= tolerance:
        return spacing
    low, high = np.sort(positions)[worst:worst + 2]
    missing = f"; {unread} file(s) in the folder are not readable DICOM slices" if unread else ""
    if steps[worst] > spacing:
        raise InputError(f"{where}: missing slices, a gap of {steps[worst]:.2f} mm between {low:.2f} and "
                         f"{high:.2f} mm where the spacing is {spacing:.2f} mm{missing}.")
    raise InputError(f"{where}: the slice spacing varies ({steps.min():.2f} to {steps.max():.2f} mm): "
                     "resample it to a uniform spacing first.")


def read_series(folder: Path, member: Optional[Path] = None) -> Tuple[object, sitk.ImageFileReader, dict]:
    """A reader of the series (3D), the first file's header (read) and what to keep in
    ``Volume.meta``; a multi-frame file is read whole (its header reader is also the reader)."""
    if member is not None:
        header = read_header(str(member))
        if frames(header) > 1:  # one file is the whole volume: the rest of the folder does not matter
            return header, header, {"series_uid": _tag(header, "0020|000e") or "", "n_files": 1,
                                    "frames": frames(header)}
    uid, files = find_series(folder, member)
    headers = [read_header(f) for f in files]
    meta = {"series_uid": uid, "n_files": len(files)}
    if any(frames(h) > 1 for h in headers):
        if len(files) > 1:
            raise InputError(f"DICOM series '{shown(folder.name)}' has several multi-frame files: give one of them.")
        return headers[0], headers[0], {**meta, "frames": frames(headers[0])}
    if len(files) > 1:
        unread = sum(1 for p in folder.iterdir() if p.is_file()) - len(files)
        spacing = check_spacing(slice_positions(headers, folder), folder, max(unread, 0))
        meta["slice_spacing_mm"] = spacing
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    return reader, headers[0], meta
