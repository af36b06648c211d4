"""The bad-input corpus (issue 11): every class of bad file, header, folder and output place.

Each case asserts the exit code, exactly one stderr line (file descriptor 2, so native
libraries' own prints count too) naming the input, nothing left in the output folder, and the
input unchanged. Output sets are whole: a failure, Ctrl-C or SIGTERM while writing leaves no
partial set, and a signal during the final move waits for it.
"""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from COVIDSegLib.cli.commands import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, main
from COVIDSegLib.errors import shown
from COVIDSegLib.io.paths import LUNGS_OUTPUTS

from badheaders import HOSTILE_INPUTS
from badinputs import BAD_INPUTS
from chest_phantom import SPACING, chest_phantom
from cli_helpers import assert_one_error_line, digest, files_in

CORPUS = {**BAD_INPUTS, **HOSTILE_INPUTS}
SAMPLE = Path(__file__).resolve().parents[1] / "Resources" / "Samples" / "lungmask_chest_ct_2slices.nii.gz"


def run_fd(capfd, *argv) -> tuple:
    capfd.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capfd.readouterr()
    return rc, out, err


def make(tmp_path: Path, name: str) -> Path:
    source = tmp_path / "in"
    source.mkdir(exist_ok=True)
    return CORPUS[name][0](source)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_bad_input_one_line_nothing_written_input_unchanged(capfd, tmp_path, name):
    path = make(tmp_path, name)
    before = digest(path)
    out_dir = tmp_path / "out"
    rc, out, err = run_fd(capfd, "lungs", path, "-o", out_dir)
    # `lungs` takes single 2D slices; this one is random noise, which the intensity check refuses
    expected = "--intensity" if name == "2d_nifti" else CORPUS[name][1]
    assert rc == EXIT_FAILED and out == ""
    assert_one_error_line(err, expected, shown(path))
    assert files_in(out_dir) == []
    assert digest(path) == before


@pytest.mark.parametrize("name", ["fifo", "nifti_inf_sform", "mha_ndims_minus1", "dicom_gap", "nhdr_dev_zero"])
def test_segment_refuses_the_same_way(capfd, tmp_path, name):
    path = make(tmp_path, name)
    before = digest(path)
    rc, out, err = run_fd(capfd, "segment", "-q", path, "-o", tmp_path / "out")
    assert rc == EXIT_FAILED and out == ""
    assert_one_error_line(err, CORPUS[name][1], shown(path))
    assert files_in(tmp_path / "out") == [] and digest(path) == before


def test_a_batch_goes_on_past_every_bad_input(capfd, tmp_path):
    """All hostile inputs and one good scan in one run: one line per bad input, the good one done."""
    bad = [make(tmp_path, name) for name in sorted(HOSTILE_INPUTS)]
    rc, out, err = run_fd(capfd, "lungs", "-q", *bad, SAMPLE, "-o", tmp_path / "out")
    lines = err.splitlines()
    assert rc == EXIT_FAILED and len(lines) == len(bad)
    assert all(line.startswith("covidseg: error: ") for line in lines)
    assert files_in(tmp_path / "out") == sorted(f"lungmask_chest_ct_2slices{s}" for s in LUNGS_OUTPUTS)


def test_permission_and_link_messages_say_what_is_wrong(monkeypatch, tmp_path):
    """Permission denied is not "corrupt" (checked by mapping: this suite may run as root)."""
    from COVIDSegLib.errors import InputError
    from COVIDSegLib.io.preflight import check_readable
    path = tmp_path / "locked.nii.gz"
    path.write_bytes(b"x")
    monkeypatch.setattr(os, "stat", lambda p: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    with pytest.raises(InputError, match="Permission denied: cannot read"):
        check_readable(path)


# ----------------------------------------------------------------------------- the output folder


def test_output_folder_that_is_a_file_fails_before_any_work(capfd, tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("not a folder")
    rc, out, err = run_fd(capfd, "segment", SAMPLE, "-o", target)
    assert rc == EXIT_USAGE and out == "" and err.count("\n") == 1 and "is a file" in err
    assert target.read_text() == "not a folder"


def test_output_folder_that_cannot_be_created_fails_before_any_work(capfd, tmp_path):
    parent = tmp_path / "plain_file"
    parent.write_text("x")
    start = time.perf_counter()
    rc, out, err = run_fd(capfd, "segment", SAMPLE, "-o", parent / "out")
    assert rc == EXIT_USAGE and err.count("\n") == 1 and "Cannot write to the output folder" in err
    assert time.perf_counter() - start < 5  # no model was loaded, nothing was computed


def test_a_full_disk_leaves_no_partial_set(tmp_path):
    """A file-size limit makes every large write fail as a full disk would."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
    out_dir = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "COVIDSegLib", "lungs", "-q", str(SAMPLE), "-o", str(out_dir)],
                          capture_output=True, text=True, timeout=300, preexec_fn=limit)
    assert done.returncode == EXIT_FAILED, done.stderr
    assert_one_error_line(done.stderr, "Cannot write the outputs", "File too large")
    assert files_in(out_dir) == []


# ----------------------------------------------------------------------------- whole output sets


def test_interrupt_while_writing_keeps_the_old_set_and_leaves_nothing_new(capfd, tmp_path, monkeypatch):
    from COVIDSegLib.jobs import pipeline
    out_dir = tmp_path / "out"
    assert run_fd(capfd, "lungs", "-q", SAMPLE, "-o", out_dir)[0] == 0
    old = {name: digest(out_dir / name) for name in files_in(out_dir)}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(pipeline, "write_labels", interrupted)  # after the overlay was staged
    rc, out, err = run_fd(capfd, "lungs", "-q", "--overwrite", SAMPLE, "-o", out_dir)
    assert rc == EXIT_INTERRUPTED and err == "covidseg: interrupted\n"
    assert {name: digest(out_dir / name) for name in files_in(out_dir)} == old


def test_a_signal_during_the_final_move_waits_for_it(capfd, tmp_path, monkeypatch):
    out_dir = tmp_path / "out"
    moves = []

    def replace_then_signal(source, target):
        if Path(target).parent == out_dir:  # the final move, not a writer's rename in the staging folder
            if not moves:
                os.kill(os.getpid(), signal.SIGINT)  # arrives in the middle of the move
            moves.append(target)
        os.rename(source, target)
    monkeypatch.setattr(os, "replace", replace_then_signal)
    rc, _, err = run_fd(capfd, "lungs", "-q", SAMPLE, "-o", out_dir)
    assert rc == EXIT_INTERRUPTED and err == "covidseg: interrupted\n"
    assert files_in(out_dir) == sorted(f"lungmask_chest_ct_2slices{s}" for s in LUNGS_OUTPUTS)


@pytest.fixture(scope="module")
def phantom_nifti(tmp_path_factory) -> Path:
    image = sitk.GetImageFromArray(chest_phantom().hu)
    image.SetSpacing(SPACING)
    path = tmp_path_factory.mktemp("phantom") / "phantom.nii.gz"
    sitk.WriteImage(image, str(path))
    return path


def _signalled_run(path: Path, out_dir: Path, signum: int, delay: float) -> subprocess.CompletedProcess:
    process = subprocess.Popen([sys.executable, "-m", "COVIDSegLib", "segment", "-q", str(path), "-o", str(out_dir)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    process.send_signal(signum)
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("delay", [0.3, 3.0, 7.0, 11.0], ids=["start-up", "early", "model", "late"])
def test_signals_leave_a_whole_set_or_nothing(tmp_path, phantom_nifti, signum, delay):
    """Ctrl-C or SIGTERM at start-up, while the model runs or while writing: one line, exit 130
    (SIGINT) or 143 (SIGTERM), and the output folder holds the whole set or nothing."""
    out_dir = tmp_path / "out"
    done = _signalled_run(phantom_nifti, out_dir, signum, delay)
    names = [name for name in files_in(out_dir) if name not in ("cohort.csv", "index.html")]
    if done.returncode == 0:  # it finished before the signal came
        assert len(names) == 6
        return
    assert done.returncode == (130 if signum == signal.SIGINT else 143), done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert names in ([], sorted(f"phantom{s}" for s in
                                (".labels.nii.gz", ".report.json", ".report.csv", ".report.html", ".seg.nrrd",
                                 ".overlay.png"))), names


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_that_a_c_extension_reports_as_its_own_error_still_stops(monkeypatch, capfd, signum):
    """matplotlib turns a Ctrl-C that arrives while it draws into "ValueError: Invalid affine
    transformation matrix": the batch must stop there (not fail that input and go on) and the CLI
    must exit 130 / 143 with its one line."""
    from COVIDSegLib import signals
    from COVIDSegLib.cli import commands
    from COVIDSegLib.jobs.batch import run_batch
    monkeypatch.setattr(signals, "_ARRIVED", [])
    previous = {s: signal.getsignal(s) for s in signals.STOP_SIGNALS}
    started = []

    def job(path):
        started.append(path)
        try:
            os.kill(os.getpid(), signum)
            time.sleep(1)
        except KeyboardInterrupt:
            raise ValueError("Invalid affine transformation matrix") from None
        return [], {}

    try:
        signals.handle_stop_signals()
        with pytest.raises(ValueError):
            run_batch(["a", "b"], job)
        assert started == ["a"] and signals.stop_arrived() == signum
        monkeypatch.setattr(commands, "build_parser", lambda: _Parser(lambda args: job("c")))
        code = commands.main([])
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    assert code == (130 if signum == signal.SIGINT else 143)
    assert capfd.readouterr().err == ("covidseg: interrupted\n" if signum == signal.SIGINT
                                      else "covidseg: terminated (SIGTERM)\n")


class _Parser:
    """A stand-in for the CLI parser whose one command is ``run``."""
    def __init__(self, run):
        self.run = run

    def parse_args(self, argv):
        return type("Args", (), {"run": staticmethod(self.run)})()


def test_multi_frame_dicom_is_read_as_one_volume(tmp_path):
    """A 3D image in one DICOM file (NumberOfFrames > 1) keeps its shape, spacing and voxels."""
    from COVIDSegLib.io.files import read_volume
    hu = np.maximum(chest_phantom().hu, -1024)  # stored unsigned, as HU + 1024
    image = sitk.GetImageFromArray((hu + 1024).astype(np.uint16))
    image.SetSpacing(SPACING)
    image.SetOrigin((-90.0, -80.0, -300.0))
    path = tmp_path / "multiframe.dcm"
    sitk.WriteImage(image, str(path))
    volume = read_volume(path)
    assert volume.meta["frames"] == hu.shape[0] and volume.shape == hu.shape
    np.testing.assert_allclose(volume.spacing, SPACING, atol=1e-4)
    np.testing.assert_allclose(volume.origin, (-90.0, -80.0, -300.0), atol=1e-3)
    assert np.array_equal(volume.array.astype(np.int32) - 1024, hu.astype(np.int32))


def test_a_nifti_with_a_long_header_extension_is_read(tmp_path):
    """Found by fuzzing: the header check must not read extensions as part of the header."""
    import nibabel as nib

    from COVIDSegLib.io.files import read_volume
    array = np.random.default_rng(0).integers(-1000, 400, (16, 16, 4)).astype(np.int16)
    image = nib.Nifti1Image(array, np.diag([0.7, 0.7, 2.5, 1.0]))
    image.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"x" * 1000))
    nib.save(image, str(tmp_path / "extended.nii"))
    volume = read_volume(tmp_path / "extended.nii")
    assert volume.shape == (4, 16, 16) and np.array_equal(volume.array, array.transpose(2, 1, 0))
