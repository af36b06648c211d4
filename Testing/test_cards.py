"""Malformed model cards: one line naming the card and the field, never a TypeError/KeyError."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from COVIDSegLib.bundle import BUNDLED_DIR, load_bundle

from cli_helpers import run

NAME = "covidseg_binary"
BROKEN = {
    "sha256 as a number": (lambda c: c.update(sha256=12345), "'sha256'"),
    "weights as a number": (lambda c: c.update(weights=7), "'weights'"),
    "weights outside the bundle": (lambda c: c.update(weights="../elsewhere.safetensors"), "'weights'"),
    "weights absolute": (lambda c: c.update(weights="/etc/passwd"), "'weights'"),
    "empty labels": (lambda c: c.update(labels={}), "'labels'"),
    "non-integer label value": (lambda c: c["labels"]["1"].update(value="three"), "'labels.1.value'"),
    "label class not a number": (lambda c: c["labels"].update(x={"value": 3, "name": "GGO"}), "label class 'x'"),
    "no preprocessing.input": (lambda c: c["preprocessing"].pop("input"), "'preprocessing.input'"),
    "input size a string": (lambda c: c["preprocessing"]["input"].update(size="256"), "'preprocessing.input.size'"),
    "unknown task": (lambda c: c.update(task="everything"), "'task'"),
    "architecture a list": (lambda c: c.update(architecture=[1, 2]), "'architecture'"),
}


@pytest.fixture()
def bundle_copy(tmp_path) -> Path:
    for suffix in (".json", ".safetensors"):
        shutil.copy(BUNDLED_DIR / f"{NAME}{suffix}", tmp_path / f"{NAME}{suffix}")
    return tmp_path / f"{NAME}.json"


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_malformed_card_is_one_line_naming_card_and_field(capsys, tmp_path, bundle_copy, case):
    card = json.loads(bundle_copy.read_text())
    change, field = BROKEN[case]
    change(card)
    bundle_copy.write_text(json.dumps(card))
    sample = Path(__file__).resolve().parents[1] / "Resources" / "Samples" / "lungmask_chest_ct_2slices.nii.gz"
    rc, out, err = run(capsys, "segment", "-q", sample, "-o", tmp_path / "out", "--model", bundle_copy)
    assert rc == 2 and err.count("\n") == 1, err
    assert str(bundle_copy) in err and field in err and "internal error" not in err
    assert not any((tmp_path / "out").iterdir())


def test_the_shipped_cards_pass(bundle_copy):
    assert load_bundle(bundle_copy).name == NAME


def test_a_killed_runs_staging_folder_is_removed_by_the_next_run(tmp_path):
    """SIGKILL leaves .covidseg-partial-<pid>-*; the next output set in that folder removes it
    (the dead process's only: a live one's staging is left alone)."""
    import os
    import subprocess
    import sys

    from COVIDSegLib.report.outputs import STAGING_PREFIX, OutputSet
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"{STAGING_PREFIX}{dead.stdout.strip()}-abc"
    live = tmp_path / f"{STAGING_PREFIX}{os.getppid()}-def"
    for folder in (stale, live):
        folder.mkdir()
        (folder / "x.report.json").write_text("{}")
    with OutputSet(tmp_path, "x", (".labels.nii.gz",)) as outputs:
        outputs.path(".labels.nii.gz").write_bytes(b"labels")
        outputs.commit()
    assert not stale.exists() and live.exists()
    assert (tmp_path / "x.labels.nii.gz").read_bytes() == b"labels"
