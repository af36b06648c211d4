"""Cohorts (issue 13): `segment --workers N` gives the outputs of a plain run, a dead worker is
replaced and only its input fails, and every run ends with cohort.csv and index.html."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from COVIDSegLib.jobs.workers import default_workers, threads_per_worker

from chest_phantom import SPACING, chest_phantom
from cli_helpers import files_in, run

SAMPLE = Path(__file__).resolve().parents[1] / "Resources" / "Samples" / "lungmask_chest_ct_2slices.nii.gz"
GIB = 1024**3


@pytest.fixture(scope="module")
def cohort_inputs(tmp_path_factory) -> list:
    """Three real-sample copies, the chest phantom, and one broken file."""
    folder = tmp_path_factory.mktemp("cohort_in")
    paths = []
    for name in ("patient_a", "patient_b"):
        paths.append(folder / f"{name}.nii.gz")
        shutil.copy(SAMPLE, paths[-1])
    image = sitk.GetImageFromArray(chest_phantom().hu)
    image.SetSpacing(SPACING)
    paths.append(folder / "phantom.nii.gz")
    sitk.WriteImage(image, str(paths[-1]))
    paths.append(folder / "broken.nii.gz")
    paths[-1].write_bytes(b"not an image at all")
    return paths


def labels_and_report(out_dir: Path, stem: str):
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out_dir / f"{stem}.labels.nii.gz")))
    report = json.loads((out_dir / f"{stem}.report.json").read_text())
    return labels, {k: v for k, v in report.items() if k != "seconds"}


def cohort_table(out_dir: Path) -> dict:
    with open(out_dir / "cohort.csv", newline="") as f:
        return {row["stem"]: row for row in csv.DictReader(f)}


def test_workers_give_the_outputs_of_a_plain_run_and_a_cohort_page(capsys, tmp_path, cohort_inputs):
    plain, parallel = tmp_path / "plain", tmp_path / "parallel"
    assert run(capsys, "segment", "-q", *cohort_inputs, "-o", plain, "--workers", "1")[0] == 1  # broken fails
    rc, _, err = run(capsys, "segment", "-q", *cohort_inputs, "-o", parallel, "--workers", "2")
    assert rc == 1 and err.count("\n") == 1 and "broken.nii.gz" in err
    for stem in ("patient_a", "patient_b", "phantom"):
        (a, report_a), (b, report_b) = labels_and_report(plain, stem), labels_and_report(parallel, stem)
        assert np.array_equal(a, b) and report_a == report_b
    table = cohort_table(parallel)
    assert sorted(table) == ["broken", "patient_a", "patient_b", "phantom"]
    assert table["broken"]["status"] == "failed" and "Cannot read" in table["broken"]["error"]
    phantom = json.loads((parallel / "phantom.report.json").read_text())
    assert table["phantom"]["grade"] == phantom["grade"] and table["phantom"]["model_sha256"] == phantom["model_sha256"]
    assert float(table["phantom"]["left_lung_ml"]) == pytest.approx(phantom["lungs"]["left"]["lung_ml"], abs=0.01)
    settings = dict(item.split("=") for item in table["phantom"]["postprocessing"].split("; "))
    assert settings == {k: str(v) for k, v in phantom["postprocessing"].items()} and "airless_inside_share" in settings
    page = (parallel / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and page.count('href="phantom.report.html"') == 2
    assert "<script>" in page and "Cannot read" in page


def test_a_rerun_updates_the_cohort(capsys, tmp_path, cohort_inputs):
    out_dir = tmp_path / "out"
    run(capsys, "segment", "-q", cohort_inputs[0], "-o", out_dir)
    run(capsys, "segment", "-q", cohort_inputs[1], "-o", out_dir)
    run(capsys, "segment", "-q", cohort_inputs[0], "-o", out_dir)  # skipped: outputs exist
    table = cohort_table(out_dir)
    assert sorted(table) == ["patient_a", "patient_b"]
    assert table["patient_a"]["status"] == "skipped" and table["patient_a"]["grade"] == "not gradable"


def _worker_pids(parent: int) -> list:
    """The spawned worker processes of ``parent`` (not multiprocessing's resource tracker)."""
    pids = []
    for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        if "multiprocessing.spawn" in cmdline and "resource_tracker" not in cmdline:
            pids.append(int(child))
    return pids


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_worker_that_dies_is_replaced_and_only_its_input_fails(tmp_path, cohort_inputs):
    phantoms = [tmp_path / f"phantom_{i}.nii.gz" for i in range(2)]
    tall = sitk.GetImageFromArray(np.concatenate([chest_phantom().hu] * 8))  # long enough to be caught at work
    tall.SetSpacing(SPACING)
    for path in phantoms:
        sitk.WriteImage(tall, str(path))
    out_dir = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "COVIDSegLib", "segment", "-q", *map(str, phantoms),
                                str(cohort_inputs[0]), "-o", str(out_dir), "--workers", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while len(_worker_pids(process.pid)) < 2 and time.time() < deadline:
        time.sleep(0.2)
    workers = _worker_pids(process.pid)
    # busy: past importing and loading the models (a few CPU seconds), segmenting a phantom
    while min(map(_cpu_seconds, workers)) < 6.0 and time.time() < deadline:
        time.sleep(0.2)
    assert len(_worker_pids(process.pid)) == 2, "the workers finished before one could be stopped"
    os.kill(workers[0], signal.SIGKILL)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 1
    assert err.count("\n") == 1 and "the worker process died (signal SIGKILL)" in err, err
    table = cohort_table(out_dir)
    assert sorted(row["status"] for row in table.values()) == ["done", "done", "failed"]
    dead = next(stem for stem, row in table.items() if row["status"] == "failed")
    assert not any(name.startswith((f"{dead}.", ".covidseg-partial")) for name in files_in(out_dir))  # no partial set


def test_default_workers_follow_cores_and_memory():
    assert default_workers(cores=16, available=64 * GIB) == 8
    assert default_workers(cores=16, available=8 * GIB) == 2
    assert default_workers(cores=2, available=64 * GIB) == 1
    assert default_workers(cores=1, available=1 * GIB) == 1
    assert threads_per_worker(8, cores=16) == 2 and threads_per_worker(3, cores=2) == 1


def test_ctrl_c_stops_the_workers_and_keeps_finished_inputs(tmp_path, cohort_inputs):
    """SIGINT to the command (a terminal's Ctrl-C): exit 130, one line, the inputs finished so
    far stay whole, the ones in flight leave nothing, and the cohort table lists the finished."""
    tall = sitk.GetImageFromArray(np.concatenate([chest_phantom().hu] * 8))  # still in flight at the signal
    tall.SetSpacing(SPACING)
    slow = [tmp_path / f"slow_{i}.nii.gz" for i in range(2)]
    for path in slow:
        sitk.WriteImage(tall, str(path))
    out_dir = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "COVIDSegLib", "segment", "-q", str(cohort_inputs[0]),
                                *map(str, slow), "-o", str(out_dir), "--workers", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out_dir / "patient_a.labels.nii.gz").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and err == "covidseg: interrupted\n", err
    names = files_in(out_dir)
    assert not any(name.startswith(("slow_", ".covidseg-partial")) for name in names), names
    assert sorted(cohort_table(out_dir)) == ["patient_a"]
