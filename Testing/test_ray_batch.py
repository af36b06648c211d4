"""`segment --ray` on a real local Ray cluster (127.0.0.1, 2 CPUs, started here): the outputs of
a plain run, a failing input reported, and a worker killed mid-task retried (issue 13)."""
from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from test_cohort import cohort_table, labels_and_report

from chest_phantom import SPACING, chest_phantom
from cli_helpers import run

ray = pytest.importorskip("ray", reason="Ray is the optional 'cluster' extra: pip install -e \".[cluster]\"")

SAMPLE = Path(__file__).resolve().parents[1] / "Resources" / "Samples" / "lungmask_chest_ct_2slices.nii.gz"


@pytest.fixture(scope="module")
def local_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


def _ray_task_pids() -> list:
    """Processes executing our task right now (Ray titles them ray::segment_task)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(b"ray::segment_task"):
                pids.append(int(entry.name))
        except OSError:
            pass
    return pids


def test_ray_gives_the_outputs_of_a_plain_run_and_retries_a_killed_worker(capsys, tmp_path, local_cluster):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SAMPLE, folder / "patient_a.nii.gz")
    image = sitk.GetImageFromArray(np.concatenate([chest_phantom().hu] * 2))
    image.SetSpacing(SPACING)
    sitk.WriteImage(image, str(folder / "phantom.nii.gz"))
    (folder / "broken.nii.gz").write_bytes(b"not an image")
    inputs = [folder / "patient_a.nii.gz", folder / "phantom.nii.gz", folder / "broken.nii.gz"]
    plain, clustered = tmp_path / "plain", tmp_path / "ray"
    assert run(capsys, "segment", "-q", *inputs, "-o", plain, "--workers", "1")[0] == 1

    killed = []

    def kill_one_running_task() -> None:
        deadline = time.time() + 120
        while not killed and time.time() < deadline:
            pids = _ray_task_pids()
            if pids:
                time.sleep(1.0)  # mid-task
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.1)
    killer = threading.Thread(target=kill_one_running_task)
    killer.start()
    rc, _, err = run(capsys, "segment", "-q", *inputs, "-o", clustered, "--ray")
    killer.join()
    assert killed, "no running task was seen"
    assert rc == 1 and err.count("\n") == 1 and "broken.nii.gz" in err  # the killed task was retried
    table = cohort_table(clustered)
    assert {stem: row["status"] for stem, row in table.items()} == {
        "patient_a": "done", "phantom": "done", "broken": "failed"}
    for stem in ("patient_a", "phantom"):
        (a, report_a), (b, report_b) = labels_and_report(plain, stem), labels_and_report(clustered, stem)
        assert np.array_equal(a, b) and report_a == report_b
