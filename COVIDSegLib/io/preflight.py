"""Checks on an input file before any native reader (ITK, MetaIO, niftilib, libpng) sees it.

Native readers crash, hang or loop on hostile headers (a negative MetaImage ``NDims``, an
infinite NIfTI sform, a FIFO named ``.nii``). Here the file is checked to be a readable regular
file and its header is parsed in Python: sane dimensions, finite geometry and offsets, a known
data type, and as many bytes as the header promises. Each failure is one ``InputError`` line.
"""
from __future__ import annotations

import errno
import gzip
import io
import math
import os
import re
import stat
import struct
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import InputError, shown
from .native import quiet_nibabel
from .validate import check_size

MAX_SIDE = 1 << 20           # voxels along one axis
HEADER_BYTES = 1 << 16       # text headers (MetaImage, NRRD) are searched this far
_CHUNK = 1 << 22


# ----------------------------------------------------------------------------- files


def check_readable(path: Path, folder: bool = False) -> os.stat_result:
    """The path exists, is a regular file (a folder when ``folder``) and can be read."""
    name = shown(path)
    try:
        info = os.stat(path)
    except ValueError:  # a NUL byte in the name (e.g. a detached data file named in a header)
        raise InputError(f"Invalid file name (it contains a NUL byte): {name}") from None
    except FileNotFoundError:
        kind = "a broken symbolic link" if os.path.islink(path) else "not found"
        raise InputError(f"Input {kind}: {name}") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise InputError(f"Input is a symbolic link loop: {name}") from None
        if error.errno in (errno.EACCES, errno.EPERM):
            raise InputError(f"Permission denied: cannot read {name}") from None
        raise InputError(f"Cannot access {name}: {error.strerror}") from None
    if folder and stat.S_ISDIR(info.st_mode):
        if not os.access(path, os.R_OK | os.X_OK):
            raise InputError(f"Permission denied: cannot list the folder {name}")
        return info
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"'{name}' is not a regular file ({_file_kind(info.st_mode)}): give an image file")
    if not os.access(path, os.R_OK):
        raise InputError(f"Permission denied: cannot read {name}")
    if info.st_size == 0:
        raise InputError(f"'{name}' is an empty file.")
    return info


def _file_kind(mode: int) -> str:
    kinds = {stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket", stat.S_ISCHR: "a character device",
             stat.S_ISBLK: "a block device", stat.S_ISDIR: "a folder"}
    return next((text for test, text in kinds.items() if test(mode)), "not a plain file")


def check_folder_entries(folder: Path) -> None:
    """A DICOM folder holds only regular files and folders (GDCM would block on a FIFO)."""
    for entry in sorted(folder.iterdir()):
        try:
            mode = entry.stat().st_mode
        except OSError:
            raise InputError(f"Cannot access '{shown(entry)}' in the DICOM folder {shown(folder)}") from None
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise InputError(f"'{shown(entry.name)}' in the DICOM folder {shown(folder)} is not a regular file "
                             f"({_file_kind(mode)})")


def _head(path: Path, size: int, gz: bool = False) -> bytes:
    """The first ``size`` bytes (decompressed when ``gz``)."""
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            return f.read(size)
    except (OSError, EOFError, zlib.error):
        raise InputError(f"Cannot read '{shown(path.name)}': the file is truncated or not gzip-compressed data.") from None


def stored_bytes(path: Path) -> int:
    """Size of the file's content, decompressed if it is gzipped (raises on a broken stream)."""
    if not path.name.lower().endswith(".gz"):
        return path.stat().st_size
    total = 0
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(_CHUNK):
                total += len(chunk)
    except (OSError, EOFError, zlib.error):
        raise InputError(f"Cannot read '{shown(path.name)}': the file is truncated or corrupt.") from None
    return total


def _need_bytes(path: Path, found: int, expected: int) -> None:
    if found < expected:
        raise InputError(f"Cannot read '{shown(path.name)}': the file is truncated ({found} of {expected} bytes present).")


def _check_sizes(path: Path, sizes: Sequence[int], bytes_per_voxel: int) -> int:
    """Each side 1..MAX_SIDE and the whole small enough for memory; returns the voxel count."""
    if not sizes or any(s < 1 or s > MAX_SIDE for s in sizes):
        raise InputError(f"'{shown(path.name)}' declares image sizes {list(sizes)}: each must be 1..{MAX_SIDE}.")
    n = math.prod(int(s) for s in sizes)
    check_size(n, bytes_per_voxel, list(sizes))
    return n


def _finite(path: Path, what: str, values: Sequence[float]) -> None:
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"'{shown(path.name)}' has a non-finite {what} ({' '.join(f'{v:g}' for v in values)}).")


# ----------------------------------------------------------------------------- NIfTI

# datatype code -> bytes per voxel, grey-level types ITK reads
_NIFTI_TYPES = {2: 1, 4: 2, 8: 4, 16: 4, 64: 8, 256: 1, 512: 2, 768: 4, 1024: 8, 1280: 8}


def check_nifti(path: Path) -> None:
    import nibabel as nib
    gz = path.name.lower().endswith(".gz")
    head = _head(path, 540, gz)
    name = shown(path.name)
    if len(head) < 348:
        raise InputError(f"Cannot read '{name}': the file is too short for a NIfTI header.")
    first = struct.unpack("<i", head[:4])[0], struct.unpack(">i", head[:4])[0]
    klass = nib.Nifti2Header if 540 in first else nib.Nifti1Header if 348 in first else None
    if klass is None:
        raise InputError(f"Cannot read '{name}': not a NIfTI file (header size field is wrong).")
    try:
        with quiet_nibabel():
            # the fixed header only: extensions (any length) lie between it and vox_offset
            header = klass.from_fileobj(io.BytesIO(head[:540 if klass is nib.Nifti2Header else 348]), check=False)
    except Exception:  # nibabel raises several types on malformed bytes
        raise InputError(f"Cannot read '{name}': the NIfTI header is corrupt.") from None
    if bytes(header["magic"]).rstrip(b"\0") not in (b"n+1", b"n+2"):
        raise InputError(f"Cannot read '{name}': not a single-file NIfTI (magic {bytes(header['magic'])!r}).")
    dim = [int(d) for d in header["dim"]]
    if not 1 <= dim[0] <= 7:
        raise InputError(f"Cannot read '{name}': NIfTI dim[0] = {dim[0]} (must be 1..7).")
    code = int(header["datatype"])
    if code not in _NIFTI_TYPES:
        raise InputError(f"'{name}' has NIfTI data type code {code}: expected a grey-level integer or float type.")
    n = _check_sizes(path, dim[1:dim[0] + 1], _NIFTI_TYPES[code])
    pixdim = [float(p) for p in header["pixdim"][1:min(dim[0], 3) + 1]]
    if not all(math.isfinite(p) and p > 0 for p in pixdim):
        raise InputError(f"'{name}' has voxel sizes (pixdim) {' '.join(f'{p:g}' for p in pixdim)}: "
                         "each must be a positive number of mm.")
    offset = float(header["vox_offset"])
    if not math.isfinite(offset) or offset < 0 or offset > 1 << 40:
        raise InputError(f"Cannot read '{name}': NIfTI vox_offset {offset:g} is not a valid byte offset.")
    for key in ("qform_code", "sform_code"):
        if not 0 <= int(header[key]) <= 4:
            raise InputError(f"Cannot read '{name}': NIfTI {key} {int(header[key])} is not a valid code (0..4).")
    geometry = [float(header[k]) for k in ("quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z")]
    _finite(path, "orientation (qform)", geometry)
    _finite(path, "orientation (sform)", [float(v) for k in ("srow_x", "srow_y", "srow_z") for v in header[k]])
    start = max(int(offset), len(head) if klass is nib.Nifti2Header else 352)
    _need_bytes(path, stored_bytes(path), start + n * _NIFTI_TYPES[code])


# ----------------------------------------------------------------------------- text headers


def _text_header(path: Path, stop=None) -> Tuple[List[str], int]:
    """Header lines up to the first line for which ``stop(line)`` is true (included), and the
    byte offset after it; without ``stop``, the whole (short) file is the header."""
    data = _head(path, HEADER_BYTES)
    lines: List[str] = []
    end = 0
    for raw in data.split(b"\n"):
        end += len(raw) + 1
        try:
            line = raw.decode("ascii").rstrip("\r")
        except UnicodeDecodeError:
            raise InputError(f"Cannot read '{shown(path.name)}': its header is not text.") from None
        lines.append(line)
        if stop is not None and stop(line):
            return lines, end
    if stop is None and len(data) < HEADER_BYTES:
        return lines, len(data)
    raise InputError(f"Cannot read '{shown(path.name)}': no end of header in its first {HEADER_BYTES} bytes.")


def _numbers(path: Path, key: str, text: str, count: Optional[int] = None, integer: bool = False) -> List[float]:
    try:
        values = [int(v) if integer else float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise InputError(f"Cannot read '{shown(path.name)}': header field {key} = '{text[:40]}' is not a number list.") from None
    if count is not None and len(values) != count:
        raise InputError(f"Cannot read '{shown(path.name)}': header field {key} has {len(values)} values, expected {count}.")
    _finite(path, key, values)
    return values


def _data_file(header: Path, name: str) -> Path:
    """A detached data file: a single regular file (no lists or patterns)."""
    if name.upper() == "LIST" or "%" in name or " " in name.strip():
        raise InputError(f"'{shown(header.name)}' stores its voxels in several files: not supported.")
    target = (header.parent / name.strip())
    check_readable(target)
    return target


# MetaImage element type -> bytes
_MET_TYPES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
              "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8}


def check_metaimage(path: Path) -> None:
    lines, end = _text_header(path, lambda line: line.replace(" ", "").lower().startswith("elementdatafile="))
    fields: Dict[str, str] = {}
    for line in lines:
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise InputError(f"Cannot read '{shown(path.name)}': not a MetaImage header (line '{shown(line[:40])}').")
        if key in fields:
            raise InputError(f"Cannot read '{shown(path.name)}': header field {key} appears twice.")
        fields[key] = value.strip()
    ndims = _numbers(path, "NDims", fields.get("ndims", ""), 1, integer=True)[0] if "ndims" in fields else None
    if ndims is None or not 2 <= ndims <= 4:
        raise InputError(f"Cannot read '{shown(path.name)}': MetaImage NDims = {fields.get('ndims')} (must be 2, 3 or 4).")
    element = fields.get("elementtype", "").upper().removesuffix("_ARRAY")
    if element not in _MET_TYPES:
        raise InputError(f"Cannot read '{shown(path.name)}': unknown MetaImage ElementType '{fields.get('elementtype', '')}'.")
    sizes = _numbers(path, "DimSize", fields.get("dimsize", ""), ndims, integer=True)
    channels = _numbers(path, "ElementNumberOfChannels", fields.get("elementnumberofchannels", "1"), 1, integer=True)[0]
    if not 1 <= channels <= 4:
        raise InputError(f"Cannot read '{shown(path.name)}': ElementNumberOfChannels = {channels}.")
    n = _check_sizes(path, sizes, _MET_TYPES[element] * channels)
    for key in ("elementspacing", "elementsize"):
        if key in fields and any(v <= 0 for v in _numbers(path, key, fields[key], ndims)):
            raise InputError(f"'{shown(path.name)}' has voxel spacing {fields[key]}: each must be a positive number of mm.")
    for key in ("offset", "origin", "position", "centerofrotation"):
        if key in fields:
            _numbers(path, key, fields[key], ndims)
    for key in ("transformmatrix", "rotation", "orientation"):
        if key in fields:
            _numbers(path, key, fields[key], ndims * ndims)
    header_size = _numbers(path, "HeaderSize", fields.get("headersize", "0"), 1, integer=True)[0]
    compressed = fields.get("compresseddata", "false").lower() == "true"
    name = fields["elementdatafile"]
    data_bytes = n * _MET_TYPES[element] * channels
    if name.upper() == "LOCAL":
        found = path.stat().st_size - end - max(header_size, 0)
    else:
        target = _data_file(path, name)
        found = target.stat().st_size - max(header_size, 0)
    if not compressed and header_size >= 0:
        _need_bytes(path, found, data_bytes)


# NRRD type -> bytes
_NRRD_TYPES = {**dict.fromkeys(("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"), 1),
               **dict.fromkeys(("short", "short int", "signed short", "signed short int", "int16", "int16_t", "ushort",
                                "unsigned short", "unsigned short int", "uint16", "uint16_t"), 2),
               **dict.fromkeys(("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t",
                                "float"), 4),
               **dict.fromkeys(("longlong", "long long", "long long int", "signed long long", "signed long long int",
                                "int64", "int64_t", "ulonglong", "unsigned long long", "unsigned long long int", "uint64",
                                "uint64_t", "double"), 8)}
_NRRD_ENCODINGS = {"raw", "txt", "text", "ascii", "gz", "gzip", "bz2", "bzip2"}


def check_nrrd(path: Path) -> None:
    detached = path.name.lower().endswith(".nhdr")
    lines, end = _text_header(path, None if detached else (lambda line: line == ""))
    if not lines or not lines[0].startswith("NRRD000") or lines[0][7:] not in "12345" or len(lines[0]) != 8:
        raise InputError(f"Cannot read '{shown(path.name)}': not an NRRD file (no NRRD000N magic line).")
    fields: Dict[str, str] = {}
    for line in lines[1:]:
        pair, field = line.find(":="), line.find(": ")
        if not line or line.startswith("#") or (pair != -1 and (field == -1 or pair < field)):
            continue  # comments and key:=value pairs
        key, sep, value = line.partition(": ")
        if not sep:
            raise InputError(f"Cannot read '{shown(path.name)}': bad NRRD header line '{shown(line[:40])}'.")
        key = key.strip().lower()
        if key in fields:
            raise InputError(f"Cannot read '{shown(path.name)}': header field '{key}' appears twice.")
        fields[key] = value.strip()
    ndim = _numbers(path, "dimension", fields.get("dimension", ""), 1, integer=True)[0] if "dimension" in fields else 0
    if not 2 <= ndim <= 4:
        raise InputError(f"Cannot read '{shown(path.name)}': NRRD dimension {fields.get('dimension')} (must be 2, 3 or 4).")
    kind = " ".join(fields.get("type", "").lower().split())
    if kind not in _NRRD_TYPES:
        raise InputError(f"Cannot read '{shown(path.name)}': NRRD type '{fields.get('type', '')}' is not a grey-level type.")
    encoding = fields.get("encoding", "").lower()
    if encoding not in _NRRD_ENCODINGS:
        raise InputError(f"Cannot read '{shown(path.name)}': NRRD encoding '{fields.get('encoding', '')}' is not supported.")
    n = _check_sizes(path, _numbers(path, "sizes", fields.get("sizes", ""), ndim, integer=True), _NRRD_TYPES[kind])
    for vector in re.findall(r"\(([^)]*)\)", fields.get("space directions", "")):
        _numbers(path, "space directions", vector)
    if "space origin" in fields:
        _numbers(path, "space origin", fields["space origin"].strip("()"))
    if "spacings" in fields:
        values = [v for v in fields["spacings"].split() if v.lower() != "nan"]
        if any(v <= 0 for v in _numbers(path, "spacings", " ".join(values))):
            raise InputError(f"'{shown(path.name)}' has voxel spacing {fields['spacings']}: each must be positive.")
    skip = _numbers(path, "byte skip", fields.get("byte skip", fields.get("byteskip", "0")), 1, integer=True)[0]
    _numbers(path, "line skip", fields.get("line skip", fields.get("lineskip", "0")), 1, integer=True)
    if skip < -1:
        raise InputError(f"Cannot read '{shown(path.name)}': NRRD byte skip {skip}.")
    name = fields.get("data file", fields.get("datafile"))
    if name is None and path.name.lower().endswith(".nhdr"):
        raise InputError(f"Cannot read '{shown(path.name)}': a detached NRRD header without a 'data file' field.")
    target = _data_file(path, name) if name is not None else path
    found = target.stat().st_size - (0 if name is not None else end) - max(skip, 0)
    if encoding == "raw":
        _need_bytes(target, found, n * _NRRD_TYPES[kind])
    elif encoding in ("gz", "gzip") and name is not None and _head(target, 2) != b"\x1f\x8b":
        raise InputError(f"'{shown(path.name)}' points at '{shown(name)}', which is not gzip-compressed voxel data.")


# ----------------------------------------------------------------------------- PNG / JPEG

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


def png_colour_type(path: Path) -> int:
    """The PNG's colour type (0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA), after checking IHDR."""
    head = _head(path, 33)
    if head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR" or len(head) < 33:
        raise InputError(f"Cannot read '{shown(path.name)}': not a valid PNG file.")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", head[16:29])
    if depth not in _PNG_DEPTHS.get(colour, ()) or compression or filtering or interlace > 1:
        raise InputError(f"Cannot read '{shown(path.name)}': not a valid PNG file (bad IHDR).")
    _check_sizes(path, [width, height], 4 if colour else 2)
    return colour


def check_png(path: Path) -> None:
    png_colour_type(path)


def check_jpeg(path: Path) -> None:
    if _head(path, 3) != b"\xff\xd8\xff":
        raise InputError(f"Cannot read '{shown(path.name)}': not a valid JPEG file.")


CHECKS = {"nifti": check_nifti, "metaimage": check_metaimage, "nrrd": check_nrrd, "png": check_png, "jpeg": check_jpeg}


def check_file(path: Path, fmt: str) -> None:
    """Every check for a file of format ``fmt`` (a key of ``io.VOLUME_FORMATS`` values)."""
    check_readable(path)
    if fmt in CHECKS:
        CHECKS[fmt](path)
