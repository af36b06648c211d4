"""One input's outputs as a whole: written into a hidden staging folder inside the output
folder, then moved into place in one uninterruptible step with the labels (the completion
mark a resumed batch trusts) last. A failure, Ctrl-C or SIGTERM leaves no partial set."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..errors import CovidSegError, shown
from ..io.paths import stem_of
from ..signals import deferred_stop

STAGING_PREFIX = ".covidseg-partial-"
MARKER = ".labels.nii.gz"


def check_output_dir(out_dir: Path) -> Path:
    """The output folder exists (or is created) and a file can be written in it: checked before
    any computation, so that a read-only or missing disk fails at once with one line."""
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise CovidSegError(f"The output folder {shown(folder)} is a file: give a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".covidseg-probe-", dir=folder)
        try:
            os.write(handle, b"covidseg")
        finally:
            os.close(handle)
            os.unlink(probe)
    except OSError as error:
        raise CovidSegError(f"Cannot write to the output folder {shown(folder)}: {error.strerror}") from None
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class OutputSet:
    """``with OutputSet(out_dir, stem, suffixes) as outputs: write to outputs.path(s)...; outputs.commit()``.

    ``suffixes``: every output an input of this job can have (old ones not rewritten are removed
    on commit, so a set never mixes runs). Leaving the block without ``commit`` discards it.
    """

    def __init__(self, out_dir: Path, stem: str, suffixes: Sequence[str]):
        self.out_dir, self.stem, self.suffixes = Path(out_dir), stem, tuple(suffixes)
        self.staging: Optional[Path] = None

    def __enter__(self) -> "OutputSet":
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._remove_stale()
            self.staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=self.out_dir))
        except OSError as error:
            raise CovidSegError(f"Cannot write to the output folder {shown(self.out_dir)}: {error.strerror}") from None
        return self

    def __exit__(self, kind, error, trace) -> bool:
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
        if isinstance(error, OSError):  # a full disk, a quota, a file-size limit...
            raise CovidSegError(f"Cannot write the outputs of {shown(self.stem)} to {shown(self.out_dir)}: "
                                f"{error.strerror or error}") from None
        return False

    def _remove_stale(self) -> None:
        """Staging folders left by a killed process (SIGKILL, power loss)."""
        for folder in self.out_dir.glob(f"{STAGING_PREFIX}*"):
            pid = folder.name[len(STAGING_PREFIX):].split("-")[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)

    def path(self, suffix: str) -> Path:
        """Where to write ``<stem><suffix>`` (inside the staging folder)."""
        assert self.staging is not None, "use OutputSet as a context manager"
        return self.staging / f"{self.stem}{suffix}"

    def commit(self) -> List[Path]:
        """Move the staged files into the output folder (labels last); returns their final paths."""
        assert self.staging is not None
        staged = sorted(self.staging.iterdir(), key=lambda p: p.name.endswith(MARKER))
        names = {p.name for p in staged}
        with deferred_stop():
            for suffix in sorted(self.suffixes, key=lambda s: s != MARKER):  # the old mark goes first
                old = self.out_dir / f"{self.stem}{suffix}"
                if old.name not in names or suffix == MARKER:
                    old.unlink(missing_ok=True)
            for file in staged:
                os.replace(file, self.out_dir / file.name)
            self.staging.rmdir()
            self.staging = None
        return [self.out_dir / p.name for p in staged]


def planned_inputs(inputs: Sequence[str], out_dir: Path, suffixes: Sequence[str]) -> List[str]:
    """The batch's inputs, checked before any work: the same file given twice counts once; two
    inputs whose outputs would collide (same stem) or an output that would overwrite an input
    are refused with one line (CovidSegError)."""
    unique: Dict[Path, str] = {}
    for item in inputs:  # realpath: a symbolic link loop fails later, as that input's own error
        unique.setdefault(Path(os.path.realpath(item)), str(item))
    by_stem: Dict[str, str] = {}
    for item in unique.values():
        stem = stem_of(item)
        if stem in by_stem:
            raise CovidSegError(f"{by_stem[stem]} and {item} would both write {stem}.*: rename one, "
                                "or run them into different output folders")
        by_stem[stem] = item
    outputs = {Path(os.path.realpath(Path(out_dir) / f"{stem}{suffix}")) for stem in by_stem for suffix in suffixes}
    for path, item in unique.items():
        if path in outputs or any(path == parent for parent in {o.parent for o in outputs}):
            raise CovidSegError(f"{item}: an output of this batch would overwrite this input; "
                                "choose another output folder")
    return list(unique.values())


def is_done(path: str, out_dir: Path) -> bool:
    """Whether an input's output set is in place (its labels, written last, exist)."""
    return (Path(out_dir) / f"{stem_of(path)}{MARKER}").exists()
