"""Hostile files for the bad-input corpus: headers that crash, hang or mislead native readers,
files that are not regular files, DICOM series with wrong slice geometry.

``HOSTILE_INPUTS`` maps a name to ``(factory, substring expected in the one-line message)``;
every factory writes into ``tmp`` and returns the path to give to the CLI. NIfTI headers are
patched at their NIfTI-1 byte offsets, so each file differs from a valid one in one field.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Dict, Sequence, Tuple

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from badinputs import Factory, _ct_like

# NIfTI-1 header: field -> (byte offset, struct format)
_NIFTI = {"dim0": (40, "<h"), "dim3": (46, "<h"), "datatype": (70, "<h"), "pixdim1": (80, "<f"),
          "vox_offset": (108, "<f"), "qform_code": (252, "<h"), "sform_code": (254, "<h"),
          "srow_x0": (280, "<f"), "srow_x1": (284, "<f"), "magic": (344, "4s")}


def _nifti(tmp: Path, name: str, **fields) -> Path:
    """A valid int16 8x24x24 NIfTI-1 (.nii) with ``fields`` overwritten in its header."""
    image = nib.Nifti1Image(_ct_like().transpose(2, 1, 0).copy(), np.diag([0.7, 0.7, 2.5, 1.0]))
    image.header.set_sform(image.affine, code=1)
    image.header.set_qform(image.affine, code=1)
    path = Path(tmp) / name
    nib.save(image, str(path))
    data = bytearray(path.read_bytes())
    for key, value in fields.items():
        offset, fmt = _NIFTI[key]
        struct.pack_into(fmt, data, offset, value)
    path.write_bytes(bytes(data))
    return path


def _text_file(tmp: Path, name: str, header: str, payload: bytes = b"") -> Path:
    path = Path(tmp) / name
    path.write_bytes(header.encode("ascii") + payload)
    return path


_VOXELS = _ct_like().astype("<i2").tobytes()  # 8 x 24 x 24 int16


def _mha(tmp: Path, name: str, ndims: str = "3", extra: str = "", data: str = "LOCAL",
         payload: bytes = _VOXELS) -> Path:
    header = (f"ObjectType = Image\nNDims = {ndims}\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
              f"DimSize = 24 24 8\nElementSpacing = 0.7 0.7 2.5\n{extra}ElementType = MET_SHORT\n"
              f"ElementDataFile = {data}\n")
    return _text_file(tmp, name, header, payload)


def _nhdr(tmp: Path, name: str, data_file: str, encoding: str = "raw", extra: str = "") -> Path:
    header = ("NRRD0004\ntype: short\ndimension: 3\nsizes: 24 24 8\nspace: left-posterior-superior\n"
              "space directions: (0.7,0,0) (0,0.7,0) (0,0,2.5)\nspace origin: (0,0,0)\nendian: little\n"
              f"encoding: {encoding}\n{extra}data file: {data_file}\n")
    return _text_file(tmp, name, header)


def _dicom_series(tmp: Path, name: str, positions: Sequence[float],
                  orientation: str = "1\\0\\0\\0\\1\\0", orientations: Sequence[str] = ()) -> Path:
    """A CT series of 24x24 int16 slices at ``positions`` (mm along z), written by SimpleITK/GDCM."""
    folder = Path(tmp) / name
    folder.mkdir()
    voxels = _ct_like((len(positions), 24, 24))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series = "1.2.826.0.1.3680043.2.1125.7." + str(abs(hash(name)) % 10**8)
    for i, z in enumerate(positions):
        image = sitk.GetImageFromArray(voxels[i])
        image.SetSpacing((0.7, 0.7))
        tags = {"0008|0060": "CT", "0020|000d": series + ".1", "0020|000e": series, "0020|0013": str(i + 1),
                "0008|0018": f"{series}.{i + 1}", "0020|0032": f"0\\0\\{z}",
                "0020|0037": orientations[i] if orientations else orientation, "0028|0030": "0.7\\0.7"}
        for key, value in tags.items():
            image.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"slice{i:03d}.dcm"))
        writer.Execute(image)
    return folder


def make_fifo(tmp: Path) -> Path:
    path = Path(tmp) / "fifo.nii"
    os.mkfifo(path)
    return path


def make_dicom_folder_with_fifo(tmp: Path) -> Path:
    folder = _dicom_series(tmp, "series_with_fifo", [0.0, 2.5, 5.0])
    os.mkfifo(folder / "pipe")
    return folder


def make_symlink_loop(tmp: Path) -> Path:
    a, b = Path(tmp) / "loop_a.nii.gz", Path(tmp) / "loop_b.nii.gz"
    a.symlink_to(b)
    b.symlink_to(a)
    return a


def make_broken_symlink(tmp: Path) -> Path:
    link = Path(tmp) / "dangling.nii.gz"
    link.symlink_to(Path(tmp) / "gone.nii.gz")
    return link


def make_empty_file(tmp: Path) -> Path:
    path = Path(tmp) / "empty.nii.gz"
    path.write_bytes(b"")
    return path


def make_newline_name(tmp: Path) -> Path:
    path = Path(tmp) / "two\nlines.nii.gz"
    path.write_bytes(np.random.default_rng(2).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    return path


def make_truncated_png(tmp: Path) -> Path:
    path = Path(tmp) / "cut.png"
    sitk.WriteImage(sitk.GetImageFromArray((_ct_like((1, 64, 64))[0] % 256).astype(np.uint8)), str(path))
    path.write_bytes(path.read_bytes()[:120])
    return path


def _degenerate(tmp: Path) -> Path:
    """Rows and columns both along x: GDCM will not write it, so the valid value is patched."""
    folder = _dicom_series(tmp, "degenerate", [0.0, 2.5, 5.0])
    for file in folder.iterdir():
        data = file.read_bytes()
        assert b"1\\0\\0\\0\\1\\0" in data
        file.write_bytes(data.replace(b"1\\0\\0\\0\\1\\0", b"1\\0\\0\\1\\0\\0"))
    return folder


def _gap(tmp: Path) -> Path:
    return _dicom_series(tmp, "gap_series", [0.0, 2.5, 5.0, 12.5, 15.0])


def _truncated_slice(tmp: Path) -> Path:
    folder = _dicom_series(tmp, "truncated_slice", [0.0, 2.5, 5.0, 7.5, 10.0])
    victim = folder / "slice002.dcm"
    victim.write_bytes(victim.read_bytes()[:200])
    return folder


HOSTILE_INPUTS: Dict[str, Tuple[Factory, str]] = {
    # MetaImage headers that crashed or hung MetaIO
    **{f"mha_ndims_{label}": ((lambda t, n=n, label=label: _mha(t, f"ndims_{label}.mha", n)), "NDims")
       for label, n in {"minus1": "-1", "minus3": "-3", "2pow31": "2147483648", "1e308": "1e308",
                        "100000": "100000"}.items()},
    "mha_minimal_negative": (lambda t: _text_file(t, "minimal.mha", "NDims = -1\nDimSize = 4\nElementType = MET_UCHAR\n"
                                                  "ElementDataFile = LOCAL\n", b"\0" * 4), "NDims"),
    "mha_non_orthogonal": (lambda t: _mha(t, "sheared_matrix.mha", extra="TransformMatrix = 1 0.5 0 0 1 0 0 0 1\n"),
                           "not orthonormal"),
    "mha_origin_1e308": (lambda t: _mha(t, "far.mha", extra="Offset = 1e308 0 0\n"), "origin"),
    "mha_spacing_nan": (lambda t: _text_file(t, "nan_spacing.mha", "NDims = 3\nDimSize = 24 24 8\n"
                                             "ElementSpacing = nan 0.7 2.5\nElementType = MET_SHORT\n"
                                             "ElementDataFile = LOCAL\n", _VOXELS), "non-finite"),
    "mha_truncated": (lambda t: _mha(t, "short_data.mha", payload=_VOXELS[:1000]), "truncated"),
    "mha_missing_data_file": (lambda t: _mha(t, "detached.mhd", data="voxels.raw", payload=b""), "not found"),
    "mha_data_list": (lambda t: _mha(t, "listed.mhd", data="LIST", payload=b""), "several files"),
    # NIfTI headers: inf/NaN geometry, offsets, dims, types
    "nifti_inf_sform": (lambda t: _nifti(t, "inf_sform.nii", srow_x0=float("inf")), "non-finite orientation"),
    "nifti_vox_offset_inf": (lambda t: _nifti(t, "offset_inf.nii", vox_offset=float("inf")), "vox_offset"),
    "nifti_vox_offset_nan": (lambda t: _nifti(t, "offset_nan.nii", vox_offset=float("nan")), "vox_offset"),
    "nifti_dim_minus1": (lambda t: _nifti(t, "dim_minus1.nii", dim3=-1), "image sizes"),
    "nifti_dim0_zero": (lambda t: _nifti(t, "dim0_zero.nii", dim0=0), "dim[0]"),
    "nifti_bad_datatype": (lambda t: _nifti(t, "datatype.nii", datatype=9999), "data type code"),
    "nifti_rgb": (lambda t: _nifti(t, "rgb.nii", datatype=128), "data type code"),
    "nifti_pixdim_zero": (lambda t: _nifti(t, "pixdim_zero.nii", pixdim1=0.0), "pixdim"),
    "nifti_pixdim_nan": (lambda t: _nifti(t, "pixdim_nan.nii", pixdim1=float("nan")), "pixdim"),
    "nifti_non_orthogonal": (lambda t: _nifti(t, "sheared.nii", qform_code=0, srow_x1=0.5), "not orthogonal"),
    "nifti_header_only": (lambda t: _nifti(t, "pair.nii", magic=b"ni1\0"), "single-file NIfTI"),
    "nifti_not_gzip": (lambda t: Path(os.replace(_nifti(t, "raw.nii"), Path(t) / "raw.nii.gz") or Path(t) / "raw.nii.gz"),
                       "gzip"),
    "nifti_too_short": (lambda t: _text_file(t, "short.nii", "", b"\x5c\x01\0\0" + b"\0" * 96), "too short"),
    # NRRD: detached data that is not image data, bad fields
    "nhdr_dev_zero": (lambda t: _nhdr(t, "zero.nhdr", "/dev/zero"), "not a regular file"),
    "nhdr_folder": (lambda t: _nhdr(t, "folder.nhdr", "."), "not a regular file"),
    "nhdr_not_gzip": (lambda t: (Path(t) / "plain.raw").write_bytes(_VOXELS) and _nhdr(t, "gz.nhdr", "plain.raw", "gzip"),
                      "not gzip"),
    "nrrd_dimension_minus1": (lambda t: _text_file(t, "dim.nrrd", "NRRD0004\ntype: short\ndimension: -1\nsizes: 24\n"
                                                   "encoding: raw\n\n", _VOXELS), "dimension"),
    "nrrd_inf_origin": (lambda t: _text_file(t, "origin.nrrd", "NRRD0004\ntype: short\ndimension: 3\nsizes: 24 24 8\n"
                                             "space: left-posterior-superior\nspace origin: (inf,0,0)\n"
                                             "space directions: (0.7,0,0) (0,0.7,0) (0,0,2.5)\nendian: little\n"
                                             "encoding: raw\n\n", _VOXELS), "non-finite"),
    # not regular files, names
    "fifo": (make_fifo, "not a regular file (a FIFO)"),
    "dicom_folder_with_fifo": (make_dicom_folder_with_fifo, "not a regular file (a FIFO)"),
    "symlink_loop": (make_symlink_loop, "symbolic link loop"),
    "broken_symlink": (make_broken_symlink, "broken symbolic link"),
    "empty_file": (make_empty_file, "empty file"),
    "newline_name": (make_newline_name, "two\\nlines"),
    "png_truncated": (make_truncated_png, "Cannot read"),
    "png_bad_ihdr": (lambda t: _text_file(t, "ihdr.png", "", b"\x89PNG\r\n\x1a\n" + b"\0" * 40), "not a valid PNG"),
    "jpeg_garbage": (lambda t: _text_file(t, "noise.jpg", "", b"\0" * 500), "not a valid JPEG"),
    # DICOM slice geometry: volumes would be computed on a wrong z spacing
    "dicom_duplicate_positions": (lambda t: _dicom_series(t, "duplicates", [0.0, 2.5, 2.5, 5.0, 7.5]), "share a position"),
    "dicom_gap": (_gap, "missing slices"),
    "dicom_truncated_slice": (_truncated_slice, "missing slices"),
    "dicom_uneven_spacing": (lambda t: _dicom_series(t, "uneven", [0.0, 2.0, 5.0, 7.0, 10.0]), "spacing varies"),
    "dicom_degenerate_orientation": (_degenerate, "degenerate"),
    "dicom_mixed_orientation": (lambda t: _dicom_series(t, "mixed", [0.0, 2.5, 5.0], orientations=[
        "1\\0\\0\\0\\1\\0", "1\\0\\0\\0\\0.9950042\\0.0998334", "1\\0\\0\\0\\1\\0"]), "different orientations"),
}
