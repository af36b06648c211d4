"""Reading CT images and writing label maps (NIfTI, NRRD, MetaImage, DICOM, PNG/JPG, seg.nrrd).

Everything goes through SimpleITK, so geometry stays in its LPS convention; ``to_nibabel`` /
``from_nibabel`` convert to and from nibabel's RAS affine at the edge. Every reading failure
a user can cause raises ``InputError`` with a one-line message; inputs are only ever read.
Every writer writes to a temporary name in the target folder and renames (``atomic_path``).
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
import secrets
import zlib
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Tuple, Union

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from .. import labels as label_defs
from ..errors import CovidSegError, InputError, shown
from ..morphology import bounding_box
from ..volume import HU, MEDSEG8, Volume
from .dicom import read_series
from .native import quiet_native, quiet_nibabel
from .orientation import geometry_from_ras, ras_affine
from .paths import SLICE_FORMATS, SUPPORTED_INPUTS, VOLUME_FORMATS, suffix_in
from .preflight import check_file, check_readable, png_colour_type
from .validate import check_finite, check_geometry, check_size, shape_text

PathLike = Union[str, Path]
RGB = Tuple[float, float, float]
LABEL_WRITE_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".mha")
_DISPLAY = {"nifti": "NIfTI", "nrrd": "NRRD", "metaimage": "MetaImage", "dicom": "DICOM",
            "png": "PNG", "jpeg": "JPEG"}

_RGB_TO_GREY = np.array([0.299, 0.587, 0.114])


# ----------------------------------------------------------------------------- names


def _format_of(path: Path) -> str:
    suffix = suffix_in(path, list(VOLUME_FORMATS) + list(SLICE_FORMATS))
    if suffix is None:
        raise InputError(f"Unsupported input '{path.name}': expected {SUPPORTED_INPUTS}.")
    return {**VOLUME_FORMATS, **SLICE_FORMATS}[suffix]


# ----------------------------------------------------------------------------- reading


def read_volume(path: PathLike, slice_space: str = MEDSEG8) -> Volume:
    """Read a CT volume, a DICOM series folder or a single PNG/JPG slice.

    3D images come back as read (intensity space ``HU``: deciding whether they really are
    HU is ``COVIDSegLib.preprocess.intensity``'s job). A 2D image becomes a one-slice volume of shape
    (1, y, x) with ``is_slice=True``; PNG/JPG slices are in ``slice_space``, grey (RGB is
    converted) and spacing (1, 1, 1) because their DPI is no CT pixel size. The file and its
    header are checked (``preflight``: regular file, sane header; then dimension, size against
    memory, geometry) before any native reader or voxel is touched. ``meta`` holds ``source``
    and ``format``.
    """
    p = Path(path)
    check_readable(p, folder=True)
    if p.is_dir():
        return _read_dicom(p)
    fmt = _format_of(p)
    if fmt == "dicom":
        return _read_dicom(p.parent, member=p)
    check_file(p, fmt)
    if fmt in SLICE_FORMATS.values():
        return _read_slice(p, fmt, slice_space)
    return _read_image_file(p, fmt)


# ITK's words for what a user can fix -> what to tell them
_ITK_REASONS = {"orthonormal": "its orientation is not orthogonal (sheared or degenerate), which ITK cannot represent",
                "Permission denied": "permission denied"}


def _sitk_call(function, path: Path, fmt: str):
    """Call a SimpleITK reader method quietly, turning its multi-line errors into one InputError line."""
    try:
        with quiet_native():
            return function()
    except RuntimeError as error:
        reason = next((text for key, text in _ITK_REASONS.items() if key in str(error)),
                      f"the file is truncated, corrupt or not a valid {_DISPLAY[fmt]} file")
        raise InputError(f"Cannot read '{shown(path.name)}': {reason}.") from None


def _read_header(path: Path, fmt: str) -> sitk.ImageFileReader:
    """A reader whose header (size, type, geometry) has been read, no voxels yet."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    _sitk_call(reader.ReadImageInformation, path, fmt)
    return reader


def _bytes_per_voxel(reader: sitk.ImageFileReader) -> int:
    components = reader.GetNumberOfComponents()
    one_pixel = sitk.Image([1, 1], reader.GetPixelID(), components)
    return one_pixel.GetSizeOfPixelComponent() * components


def _check_header(reader: sitk.ImageFileReader, path: Path, slices: int = 1,
                  colour: bool = False) -> None:
    """Reject 4D+ images, colour ones unless ``colour``, those too large for memory, and bad geometry.

    ``slices``: the number of files of a DICOM series whose first file ``reader`` read.
    """
    size = list(reader.GetSize())
    if len(size) > 3:
        raise InputError(
            f"'{shown(path.name)}' is a {len(size)}D image ({shape_text(size)}): "
            "only single 2D slices and 3D volumes are supported."
        )
    if reader.GetNumberOfComponents() != 1 and not colour:
        raise InputError(
            f"'{shown(path.name)}' has {reader.GetNumberOfComponents()} values per voxel: "
            "expected a grey-level CT image."
        )
    if slices > 1:
        size = size[:2] + [slices]
    check_size(int(np.prod(size)), _bytes_per_voxel(reader), size)
    if not colour:  # slices get spacing 1: their DPI is no CT pixel size
        # Checked on the header: SimpleITK loads a negative spacing as 1 without a word.
        check_geometry(reader.GetSpacing(), reader.GetDirection(), reader.GetOrigin())


def _volume(image: sitk.Image, path: Path, fmt: str, space: str, **meta) -> Volume:
    """Wrap a 2D or 3D SimpleITK image; a 2D image becomes a (1, y, x) slice (z spacing 1)."""
    is_slice = image.GetDimension() == 2
    volume = Volume.from_sitk(sitk.JoinSeries(image) if is_slice else image, space, is_slice)
    volume.meta.update(source=str(path), format=fmt, **meta)
    return volume


def _read_image_file(path: Path, fmt: str) -> Volume:
    reader = _read_header(path, fmt)
    _check_header(reader, path)
    if fmt == "nifti":
        _check_nifti_values(path)
    return _volume(_sitk_call(reader.Execute, path, fmt), path, fmt, HU)


def _check_nifti_values(path: Path) -> None:
    """SimpleITK's NIfTI reader replaces NaN/inf with 0: float images are read once more (nibabel)."""
    try:
        with quiet_nibabel():
            image = nib.load(str(path))
            if np.issubdtype(image.get_data_dtype(), np.floating):
                check_finite(np.asanyarray(image.dataobj))
    except (EOFError, OSError, zlib.error, ValueError, ImageFileError, HeaderDataError):
        raise InputError(f"Cannot read '{shown(path.name)}': the file is truncated or corrupt.") from None


def _read_slice(path: Path, fmt: str, space: str) -> Volume:
    if fmt == "png" and png_colour_type(path) == 4:  # grey + alpha: SimpleITK has no such pixel type
        image = _grey_alpha_png(path)
    else:
        reader = _read_header(path, fmt)
        _check_header(reader, path, colour=True)
        if reader.GetDimension() != 2:
            raise InputError(f"'{shown(path.name)}' is not a 2D image.")
        image = _to_grey(_sitk_call(reader.Execute, path, fmt))
    image.SetSpacing((1.0, 1.0))
    image.SetOrigin((0.0, 0.0))
    image.SetDirection((1.0, 0.0, 0.0, 1.0))
    return _volume(image, path, fmt, space)


def _grey_alpha_png(path: Path) -> sitk.Image:
    """The grey channel of a grey+alpha PNG (read with Pillow, which matplotlib brings)."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as png:
            grey = np.asarray(png.getchannel(0) if png.mode == "LA" else png.convert("L"))
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError):
        raise InputError(f"Cannot read '{shown(path.name)}': the file is truncated, corrupt or not a valid PNG file.") from None
    return sitk.GetImageFromArray(np.ascontiguousarray(grey))


def _to_grey(image: sitk.Image) -> sitk.Image:
    """RGB(A) -> luminance with the input's pixel type; grey+alpha -> grey; grey unchanged."""
    components = image.GetNumberOfComponentsPerPixel()
    if components == 1:
        return image
    array = sitk.GetArrayFromImage(image)
    if components < 3:
        grey = array[..., 0]
    else:
        grey = np.rint(array[..., :3] @ _RGB_TO_GREY).astype(array.dtype)
    return sitk.GetImageFromArray(grey)


def _read_dicom(folder: Path, member: Optional[Path] = None) -> Volume:
    """One DICOM series (slice geometry checked by ``dicom.read_series``) or one multi-frame file."""
    reader, header, meta = read_series(folder, member)
    _check_header(header, Path(header.GetFileName()), slices=meta["n_files"])
    image = _sitk_call(reader.Execute, folder, "dicom")
    if image.GetDimension() != 3:
        raise InputError(f"DICOM input '{shown(folder.name)}' is not a 3D image ({image.GetDimension()}D).")
    measured = meta.get("slice_spacing_mm")
    if measured is not None and abs(image.GetSpacing()[2] - measured) > 0.02 * measured:
        raise InputError(f"DICOM series '{shown(folder.name)}': ITK's slice spacing {image.GetSpacing()[2]:.3f} mm "
                         f"differs from the slice positions' {measured:.3f} mm.")
    volume = _volume(image, member if meta.get("frames") else folder, "dicom", HU, **meta)
    check_geometry(volume.spacing, volume.direction, volume.origin)
    return volume


# ----------------------------------------------------------------------------- writing


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    The temporary name is hidden and keeps the target's extensions (writers choosing the
    format by extension still work); on an exception it is deleted, so no partial output
    ever exists. Creates the target's folder if needed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".tmp-{secrets.token_hex(4)}-{target.name}")
    try:
        yield temp
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def write_json(data, path: PathLike) -> Path:
    """``data`` as indented JSON, written atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=1) + "\n")
    return Path(path)


def write_csv_rows(rows: List[Mapping], path: PathLike, fields: Optional[List[str]] = None) -> Path:
    """Rows of dicts as CSV (columns: ``fields`` or every key in first-seen order), atomically."""
    keys = fields or list(dict.fromkeys(k for row in rows for k in row))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, keys)
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


def _label_image(labels: Volume) -> sitk.Image:
    """The label map as a uint8 SimpleITK image with the volume's exact geometry."""
    array = np.asarray(labels.array)
    label_map = array.astype(np.uint8, copy=False)
    if label_map is not array and not np.array_equal(label_map, array):
        raise ValueError("label values must be integers in 0..255")
    return labels.copy_geometry_to(sitk.GetImageFromArray(label_map))


def write_labels(labels: Volume, path: PathLike) -> Path:
    """Write a uint8 label map with the volume's geometry; the format follows the extension.

    ``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``; ``.seg.nrrd`` writes a Slicer segmentation
    (``write_seg_nrrd``). Returns the written path.
    """
    target = Path(path)
    suffix = suffix_in(target, LABEL_WRITE_SUFFIXES)
    if suffix is None:
        raise CovidSegError(
            f"Cannot write labels to '{target.name}': use one of {', '.join(LABEL_WRITE_SUFFIXES)}."
        )
    if suffix == ".seg.nrrd":
        return write_seg_nrrd(labels, target)
    with atomic_path(target) as temp:
        sitk.WriteImage(_label_image(labels), str(temp), True)
    return target


def _extent(mask: np.ndarray) -> str:
    """Slicer's "x0 x1 y0 y1 z0 z1" voxel extent of a (z, y, x) mask; "0 -1 0 -1 0 -1" if empty."""
    if not mask.any():
        return "0 -1 0 -1 0 -1"
    z, y, x = bounding_box(mask)
    return " ".join(str(b) for s in (x, y, z) for b in (s.start, s.stop - 1))


def _segment_fields(index: int, value: int, name: str, color: RGB,
                    array: np.ndarray) -> Dict[str, str]:
    """The ``Segment<index>_*`` header fields Slicer writes for one label value."""
    fields = {
        "ID": f"Segment_{value}", "Name": name, "Color": " ".join(f"{float(c):g}" for c in color),
        "ColorAutoGenerated": "0", "NameAutoGenerated": "0", "LabelValue": str(value),
        "Layer": "0", "Extent": _extent(array == value), "Tags": "|",
    }
    return {f"Segment{index}_{key}": text for key, text in fields.items()}


def write_seg_nrrd(
    labels: Volume,
    path: PathLike,
    names: Mapping[int, str] = label_defs.NAMES,
    colors: Mapping[int, RGB] = label_defs.COLORS,
) -> Path:
    """Write a Slicer segmentation (``.seg.nrrd``): one uint8 labelmap layer, 3D NRRD.

    One segment is written for every entry of ``names`` (present or not), so a case without
    consolidation still lists an empty "Consolidation" segment and segment IDs, names and
    colours are the same in every file; absent segments get Slicer's empty extent.
    Values in the array that are not in ``names`` are written but get no segment.
    """
    image = _label_image(labels)
    array = sitk.GetArrayViewFromImage(image)
    fields = {
        "Segmentation_MasterRepresentation": "Binary labelmap",
        "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
        "Segmentation_ReferenceImageExtentOffset": "0 0 0",
    }
    for index, value in enumerate(sorted(names)):
        color = colors.get(value, (0.5, 0.5, 0.5))
        fields.update(_segment_fields(index, int(value), names[value], color, array))
    for key, text in fields.items():
        image.SetMetaData(key, text)
    with atomic_path(path) as temp:
        sitk.WriteImage(image, str(temp), True)
    return Path(path)


def read_seg_nrrd(path: PathLike) -> Tuple[Volume, Dict[int, str]]:
    """Read a single-layer ``.seg.nrrd``: the label map and its {label value: segment name}."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"Input not found: {p}")
    reader = _read_header(p, "nrrd")
    if reader.GetDimension() != 3 or reader.GetNumberOfComponents() != 1:
        raise InputError(f"'{p.name}' is not a single-layer 3D segmentation.")
    image = _sitk_call(reader.Execute, p, "nrrd")
    names = {}
    index = 0
    while image.HasMetaDataKey(f"Segment{index}_LabelValue"):
        value = int(image.GetMetaData(f"Segment{index}_LabelValue"))
        key = f"Segment{index}_Name"
        names[value] = image.GetMetaData(key) if image.HasMetaDataKey(key) else f"Segment_{value}"
        index += 1
    return _volume(image, p, "seg.nrrd", HU), names


# ----------------------------------------------------------------------------- nibabel (RAS)


def to_nibabel(volume: Volume) -> nib.Nifti1Image:
    """A nibabel image: array (x, y, z) and the RAS affine of the volume's LPS geometry."""
    affine = ras_affine(volume)
    image = nib.Nifti1Image(np.ascontiguousarray(volume.array.transpose(2, 1, 0)), affine)
    image.header.set_sform(affine, code=1)  # scanner coordinates; the header methods keep
    image.header.set_qform(affine, code=1)  # image.affine in float64 (image.set_* would not)
    return image


def from_nibabel(image: nib.spatialimages.SpatialImage, space: str = HU) -> Volume:
    """A Volume from a 2D/3D nibabel image (RAS affine -> LPS spacing/origin/direction)."""
    array = np.asanyarray(image.dataobj)
    if array.ndim == 2:
        array = array[..., np.newaxis]
    if array.ndim != 3:
        raise ValueError(f"expected a 2D or 3D image, got shape {array.shape}")
    return Volume(array=np.ascontiguousarray(array.transpose(2, 1, 0)), space=space,
                  **geometry_from_ras(image.affine))
