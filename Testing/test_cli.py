"""Tests of the `covidseg` command line (COVIDSegLib.cli.commands), mostly in-process via main()."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest
import SimpleITK as sitk

from COVIDSegLib.cli.commands import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from COVIDSegLib.io.files import read_volume

from badinputs import make_corrupt
from chest_phantom import SPACING, chest_phantom
from cli_helpers import assert_one_error_line, digest, files_in, run

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "Resources" / "Samples"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_same_geometry(a, b, tol: float = 1e-5) -> None:
    assert a.shape == b.shape
    np.testing.assert_allclose(a.spacing, b.spacing, atol=tol, rtol=0)
    np.testing.assert_allclose(a.origin, b.origin, atol=tol, rtol=0)
    np.testing.assert_allclose(a.direction, b.direction, atol=tol, rtol=0)


def assert_valid_png(path: Path, min_bytes: int = 5_000) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) >= min_bytes
    image = sitk.ReadImage(str(path))
    assert image.GetDimension() == 2 and min(image.GetSize()) >= 100
    assert np.ptp(sitk.GetArrayFromImage(image)) > 0  # not a blank picture


def assert_lung_outputs(input_path: Path, out_dir: Path, stem: str) -> None:
    labels_path, overlay_path = out_dir / f"{stem}.labels.nii.gz", out_dir / f"{stem}.overlay.png"
    assert files_in(out_dir) == sorted([labels_path.name, overlay_path.name])  # no temp files left
    labels = read_volume(labels_path)
    assert labels.array.dtype == np.uint8
    assert set(np.unique(labels.array)) == {0, 1, 2}
    assert_same_geometry(labels, read_volume(input_path))
    assert_valid_png(overlay_path)


def unit_interval_nifti(folder: Path) -> Path:
    """The chest phantom's anatomy scaled to 0..1 floats: real-looking shape, unknown intensities."""
    hu = chest_phantom().hu.astype(np.float32)
    image = sitk.GetImageFromArray(np.clip((hu + 1024.0) / 4096.0, 0.0, 1.0))
    image.SetSpacing(SPACING)
    path = folder / "unit_scaled.nii.gz"
    sitk.WriteImage(image, str(path))
    return path


# ----------------------------------------------------------------------------- help


def test_help_lists_lungs(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert "lungs" in out and "usage: covidseg" in out


def test_lungs_help(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["lungs", "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    for option in ("covidseg lungs", "--output", "--intensity", "--overwrite", "--quiet", "INPUT"):
        assert option in out


def test_missing_command_and_output_are_usage_errors(capsys):
    for argv in ([], ["lungs", str(SAMPLES / "medseg_0000.png")]):
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 2
        assert "Traceback" not in capsys.readouterr().err


# ----------------------------------------------------------------------------- lungs on real inputs


@pytest.fixture(params=["dicom_folder", "nifti_sample", "png_sample"])
def real_input(request) -> Tuple[Path, str]:
    if request.param == "dicom_folder":
        return request.getfixturevalue("shared_data") / "chest-ct-dicom", "chest-ct-dicom"
    if request.param == "nifti_sample":
        return SAMPLES / "lungmask_chest_ct_2slices.nii.gz", "lungmask_chest_ct_2slices"
    return SAMPLES / "medseg_0000.png", "medseg_0000"


def test_lungs_writes_labels_and_overlay_then_skips(capsys, tmp_path, real_input):
    path, stem = real_input
    before = digest(path)
    out_dir = tmp_path / "out"

    rc, out, err = run(capsys, "lungs", path, "-o", out_dir)
    assert rc == EXIT_OK, err
    assert_lung_outputs(path, out_dir, stem)
    assert f"{stem}.labels.nii.gz" in out and f"{stem}.overlay.png" in out
    assert "Traceback" not in err
    written = {name: ((out_dir / name).stat().st_mtime_ns, digest(out_dir / name)) for name in files_in(out_dir)}

    # A second run without --overwrite skips the input and leaves its outputs alone.
    rc, out, err = run(capsys, "lungs", path, "-o", out_dir)
    assert rc == EXIT_OK and "skipped" in out
    assert {n: ((out_dir / n).stat().st_mtime_ns, digest(out_dir / n)) for n in files_in(out_dir)} == written

    # --overwrite redoes it; --quiet prints nothing at all.
    rc, out, err = run(capsys, "lungs", path, "-o", out_dir, "--overwrite", "--quiet")
    assert rc == EXIT_OK and out == "" and err == ""
    assert all((out_dir / n).stat().st_mtime_ns != written[n][0] for n in written)
    assert_lung_outputs(path, out_dir, stem)
    assert digest(path) == before  # the input is never modified


def test_no_overlay_writes_only_the_labels(capsys, tmp_path):
    rc, out, _ = run(capsys, "lungs", SAMPLES / "medseg_0000.png", "-o", tmp_path, "--no-overlay", "-q")
    assert rc == EXIT_OK and out == ""
    assert files_in(tmp_path) == ["medseg_0000.labels.nii.gz"]


# ----------------------------------------------------------------------------- bad inputs


def test_lungs_accepts_a_2d_nifti_slice(capsys, tmp_path):
    """A real one-slice 2D NIfTI (slice 0 of the bundled sample) is segmented like a volume."""
    image = sitk.ReadImage(str(SAMPLES / "lungmask_chest_ct_2slices.nii.gz"))[:, :, 0]
    assert image.GetDimension() == 2
    path = tmp_path / "one_slice.nii.gz"
    sitk.WriteImage(image, str(path))
    out_dir = tmp_path / "out"
    rc, out, err = run(capsys, "lungs", path, "-o", out_dir, "-q")
    assert rc == EXIT_OK, err
    assert_lung_outputs(path, out_dir, "one_slice")
    assert read_volume(out_dir / "one_slice.labels.nii.gz").shape == (1, 512, 512)


def test_batch_continues_after_a_bad_input(capsys, tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    bad = make_corrupt(source)
    good = SAMPLES / "medseg_0000.png"
    out_dir = tmp_path / "out"
    rc, out, err = run(capsys, "lungs", bad, good, "-o", out_dir)
    assert rc == EXIT_FAILED
    assert_lung_outputs(good, out_dir, "medseg_0000")
    errors = [line for line in err.splitlines() if line.startswith("covidseg: error:")]
    assert len(errors) == 1 and str(bad) in errors[0] and "Cannot read" in errors[0]
    assert "1 of 2 inputs succeeded, 1 failed" in out and "Traceback" not in err
    assert "medseg_0000.labels.nii.gz" in out

    # Quiet: the error line is all there is.
    rc, out, err = run(capsys, "lungs", good, bad, "-o", out_dir, "--quiet")
    assert rc == EXIT_FAILED and out == ""
    assert_one_error_line(err, str(bad))


def test_bad_calibration_is_one_line(capsys, tmp_path):
    out_dir = tmp_path / "out"
    rc, out, err = run(capsys, "lungs", SAMPLES / "medseg_0000.png", "-o", out_dir, "--intensity", "linear:abc")
    assert rc == EXIT_USAGE and out == ""
    assert_one_error_line(err, "linear:abc")
    assert files_in(out_dir) == []


def test_unrecognisable_intensity_volume_is_refused(capsys, tmp_path):
    path = unit_interval_nifti(tmp_path)
    before = digest(path)
    out_dir = tmp_path / "out"
    rc, out, err = run(capsys, "lungs", path, "-o", out_dir)
    assert rc == EXIT_FAILED and out == ""
    # A 3D input shows a progress bar on stderr before the error: one line once drawn.
    assert_one_error_line(err, "--intensity", "unit_scaled.nii.gz", raw=False)
    rc, out, err = run(capsys, "lungs", path, "-o", out_dir, "--quiet")
    assert rc == EXIT_FAILED and out == ""
    assert_one_error_line(err, "--intensity", "unit_scaled.nii.gz")
    assert files_in(out_dir) == []
    # Declared, the same file segments: HU = 4096 * value - 1024.
    rc, _, err = run(capsys, "lungs", path, "-o", out_dir, "--intensity", "linear:4096,-1024", "-q")
    assert rc == EXIT_OK, err
    assert_lung_outputs(path, out_dir, "unit_scaled")
    assert digest(path) == before


@pytest.mark.parametrize("kind", ["uint16 unsigned CT", "uint8 noise"])
def test_slice_with_wrong_intensities_is_refused(capsys, tmp_path, kind):
    """PNG slices are taken as 8-bit MedSeg without a check (library: to_hu), so these reach the
    lung step; what stops them is the CLI's refusal of an empty lung result."""
    if kind == "uint16 unsigned CT":
        hu = sitk.GetArrayFromImage(sitk.ReadImage(str(SAMPLES / "lungmask_chest_ct_2slices.nii.gz")))[0]
        array = np.clip(hu.astype(np.int32) + 1024, 0, None).astype(np.uint16)
    else:
        array = np.random.default_rng(0).integers(0, 256, (256, 256)).astype(np.uint8)
    path = tmp_path / "slice.png"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    before = digest(path)
    out_dir = tmp_path / "out"
    rc, out, err = run(capsys, "lungs", path, "-o", out_dir)
    assert rc == EXIT_FAILED and out == ""
    assert_one_error_line(err, "--intensity", str(path))
    assert files_in(out_dir) == []
    assert digest(path) == before


# ----------------------------------------------------------------------------- console entry point


def covidseg_command() -> List[str]:
    script = Path(sys.executable).with_name("covidseg")
    return [str(script)] if script.exists() else [sys.executable, "-m", "COVIDSegLib"]


def test_console_entry_point(tmp_path):
    out_dir = tmp_path / "out"
    good = SAMPLES / "medseg_0000.png"
    done = subprocess.run([*covidseg_command(), "lungs", str(good), "-o", str(out_dir)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "medseg_0000.labels.nii.gz" in done.stdout
    assert_lung_outputs(good, out_dir, "medseg_0000")

    missing = tmp_path / "nowhere.nii.gz"
    done = subprocess.run([sys.executable, "-m", "COVIDSegLib.cli.commands", "lungs", str(missing), "-o", str(out_dir)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == EXIT_FAILED and done.stdout == ""
    assert_one_error_line(done.stderr, "Input not found", str(missing))


def test_device_errors_are_usage_errors_with_one_clear_line(capsys, tmp_path):
    import torch
    sample = Path(__file__).resolve().parents[1] / "Resources" / "Samples" / "lungmask_chest_ct_2slices.nii.gz"
    rc, _, err = run(capsys, "segment", str(sample), "-o", str(tmp_path / "o"), "--device", "tpu0")
    assert rc == 2 and err.strip() == "covidseg: error: unknown device 'tpu0': use auto, cpu, cuda or cuda:N"
    if not torch.cuda.is_available():
        rc, _, err = run(capsys, "segment", str(sample), "-o", str(tmp_path / "o"), "--device", "cuda")
        assert rc == 2 and len(err.strip().splitlines()) == 1 and "CUDA is not available on this machine" in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.parametrize("option, value, words", [("--lung-margin-mm", "-3", "lung margin"),
                                                  ("--min-component-mm3", "-5", "smallest infection island"),
                                                  ("--min-inside-share", "1.5", "share inside the lungs"),
                                                  ("--min-inside-share", "nan", "share inside the lungs")])
def test_post_processing_options_out_of_range_are_usage_errors(capsys, tmp_path, option, value, words):
    rc, _, err = run(capsys, "segment", str(SAMPLES / "medseg_0000.png"), "-o", str(tmp_path / "o"), option, value)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and words in err and value in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_the_command_line_loads_no_heavy_library_before_a_command_runs():
    """--help, --version and usage errors answer without importing torch or MONAI (issue 11, 14)."""
    code = ("import sys, COVIDSegLib.cli.commands as c; c.build_parser(); "
            "print(sorted(m for m in ('torch', 'monai', 'nibabel') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_light_names_agree_with_the_libraries():
    from COVIDSegLib import names
    from COVIDSegLib.bundle import default_model
    from COVIDSegLib.cli import commands as cli
    from COVIDSegLib.training.evaluate import ENCODINGS
    from COVIDSegLib.volume import MEDSEG8
    assert names.ENCODING_NAMES == tuple(ENCODINGS) and cli.MEDSEG8 == MEDSEG8
    assert default_model() == names.DEFAULT_MODEL and default_model("binary") == names.DEFAULT_BINARY_MODEL


def test_a_folder_of_volumes_is_one_input_per_file_and_series(capsys, tmp_path, shared_data):
    """`covidseg lungs FOLDER`: each NIfTI file and each DICOM series sub-folder is an input;
    our own outputs in the folder are not (issue 11, item 16)."""
    sample = Path(__file__).resolve().parents[1] / "Resources" / "Samples" / "lungmask_chest_ct_2slices.nii.gz"
    folder = tmp_path / "cohort"
    (folder / "series").mkdir(parents=True)
    for name in ("a.nii.gz", "b.nii.gz"):
        (folder / name).write_bytes(sample.read_bytes())
    (folder / "a.labels.nii.gz").write_bytes(sample.read_bytes())  # an output of an earlier run
    for dcm in sorted((shared_data / "chest-ct-dicom").glob("*.dcm")):
        (folder / "series" / dcm.name).write_bytes(dcm.read_bytes())
    rc, out, err = run(capsys, "lungs", str(folder), "-o", str(tmp_path / "out"), "-q")
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "out").glob("*.labels.nii.gz")) == [
        "a.labels.nii.gz", "b.labels.nii.gz", "series.labels.nii.gz"]


def test_segment_help_shows_every_default(capsys):
    with pytest.raises(SystemExit):
        main(["segment", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("auto (default)", "(default: the 8-bit MedSeg window)", "default: covidseg_multiclass",
                  "(default: auto)", "(default: 16 on a GPU; on a CPU 4-8", "(default: 10.0)", "(default: 5 with the learned lungs"):
        assert shown in text, shown


def test_a_batch_of_finished_inputs_loads_no_model(tmp_path):
    """Skipping inputs whose outputs exist needs neither torch nor the model (issue 11, item 14)."""
    sample = SAMPLES / "lungmask_chest_ct_2slices.nii.gz"
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "lungmask_chest_ct_2slices.labels.nii.gz").write_bytes(b"done")
    code = ("import sys; from COVIDSegLib.cli.commands import main; "
            f"rc = main(['segment', {str(sample)!r}, '-o', {str(out_dir)!r}]); "
            "print(rc, sorted(m for m in ('torch', 'monai') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "0 []", done.stdout + done.stderr
    assert "skipped" in done.stdout


def test_segment_defaults_are_the_inference_defaults(tmp_path):
    """`covidseg segment` with no options runs the pipeline the docs measured (InferenceOptions)."""
    from COVIDSegLib.cli.commands import _inference_options, build_parser
    from COVIDSegLib.inference.segmenter import InferenceOptions
    args = build_parser().parse_args(["segment", "x.nii.gz", "-o", str(tmp_path)])
    given, defaults = _inference_options(args), InferenceOptions()
    for name in ("min_component_mm3", "min_inside_share", "airless_inside_share", "decision", "lesion_threshold",
                 "classes", "lung_margin_mm", "precision", "lungs", "tta_flip", "batch_size"):
        assert getattr(given, name) == getattr(defaults, name), name
