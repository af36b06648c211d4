"""Helpers for command-line tests: run the CLI in-process, fingerprint inputs, list outputs,
and check that stderr is exactly one clear error line."""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import List, Optional, Tuple

from COVIDSegLib.cli.commands import main


def digest(path: Path) -> Optional[str]:
    """A fingerprint of an input that never opens special files: SHA-256 of a regular file; of
    every entry (name + fingerprint) in a folder; a link's target; a FIFO's or device's mode;
    None when missing."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        return "link:" + os.readlink(path)
    if stat.S_ISDIR(info.st_mode):
        h = hashlib.sha256()
        for f in sorted(Path(path).iterdir()):
            h.update(f.name.encode() + str(digest(f)).encode())
        return h.hexdigest()
    if not stat.S_ISREG(info.st_mode):
        return f"special:{info.st_mode}"
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def files_in(folder: Path) -> List[str]:
    """Every file below ``folder`` (hidden temporary files included), relative names."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def run(capsys, *argv: str) -> Tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def visible_lines(err: str) -> List[str]:
    """The non-empty lines a terminal shows: a progress bar redraws with '\r' and is cleared
    (leave=False), so only the text after the last '\r' of each line remains visible."""
    return [line.split("\r")[-1] for line in err.split("\n") if line.split("\r")[-1].strip()]


def assert_one_error_line(err: str, *expected: str, raw: bool = True) -> str:
    """``raw``: stderr is byte for byte one line; otherwise one line once progress bars are drawn."""
    if raw:
        assert err.count("\n") == 1 and err.endswith("\n") and "\r" not in err, repr(err)
    lines = visible_lines(err)
    assert len(lines) == 1, repr(err)
    assert "Traceback" not in err and 'File "' not in err
    assert lines[0].startswith("covidseg: error: ")
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]
