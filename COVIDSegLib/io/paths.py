"""Input and output names: which files are images (by suffix), a file's stem, a folder's
inputs, and the outputs each job writes per input. Light (no numpy or SimpleITK), so the CLI
can plan and skip a batch at once."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Union

PathLike = Union[str, Path]

# File suffix -> the format name kept in Volume.meta["format"] (the longest suffix wins).
VOLUME_FORMATS = {".nii.gz": "nifti", ".nii": "nifti", ".nrrd": "nrrd", ".nhdr": "nrrd",
                  ".mha": "metaimage", ".mhd": "metaimage", ".dcm": "dicom"}
SLICE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}
SUPPORTED_INPUTS = (
    "a NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr) or MetaImage (.mha, .mhd) file, "
    "a DICOM series folder (or one of its .dcm files), or a PNG/JPG slice"
)
# Stripped by stem_of; ".labels" so that our own "<stem>.labels.nii.gz" maps back to <stem>.
_STEM_SUFFIXES = (".gz", ".nii", ".nrrd", ".nhdr", ".seg", ".mha", ".mhd", ".dcm", ".png",
                  ".jpg", ".jpeg", ".labels")


def suffix_in(path: PathLike, suffixes) -> Optional[str]:
    """The longest of ``suffixes`` that the file name ends with (case-insensitive)."""
    name = Path(path).name.lower()
    matches = [s for s in suffixes if name.endswith(s)]
    return max(matches, key=len) if matches else None


SEGMENT_OUTPUTS = (".labels.nii.gz", ".report.json", ".report.csv", ".report.html", ".seg.nrrd", ".overlay.png")
LUNGS_OUTPUTS = (".labels.nii.gz", ".overlay.png")  # what ``covidseg segment`` / ``lungs`` write per input
INPUT_SUFFIXES = tuple(s for s in (*VOLUME_FORMATS, *SLICE_FORMATS) if s != ".dcm")
OUTPUT_SUFFIXES = tuple(s for s in SEGMENT_OUTPUTS if s.endswith(INPUT_SUFFIXES))  # outputs that look like inputs


def folder_inputs(folder: PathLike) -> List[Path]:
    """Image files in ``folder`` (not our own outputs) and its subfolders (DICOM series); the
    folder itself when it holds neither (one DICOM series)."""
    folder = Path(folder)
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    files = [p for p in entries if p.is_file() and p.name.lower().endswith(INPUT_SUFFIXES)
             and not p.name.lower().endswith(OUTPUT_SUFFIXES)]
    series = [p for p in entries if p.is_dir()]
    return files + series or [folder]


def expand_inputs(inputs: Sequence[PathLike]) -> List[str]:
    """Command-line inputs with each folder replaced by its ``folder_inputs``."""
    out: List[str] = []
    for item in inputs:
        p = Path(item)
        out += [str(x) for x in folder_inputs(p)] if p.is_dir() else [str(item)]
    return out


def stem_of(path: PathLike) -> str:
    """File name without its image extensions (``a.nii.gz`` -> ``a``); a folder's own name."""
    p = Path(path)
    if p.is_dir():
        return p.resolve().name
    name = p.name
    while True:
        suffix = suffix_in(name, _STEM_SUFFIXES)
        if not suffix or len(suffix) >= len(name):
            break
        name = name[: -len(suffix)]
    return name if name != p.name else (p.stem or p.name)
