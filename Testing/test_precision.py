"""Model arithmetic: bf16 autocast on CUDA and AMX CPUs by default, fp32 or bf16 on request,
recorded in every report."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from COVIDSegLib.bundle import load_bundle
from COVIDSegLib.cli.commands import EXIT_OK, EXIT_USAGE, main
from COVIDSegLib.errors import CovidSegError
from COVIDSegLib.inference import predict2d
from COVIDSegLib.inference.predict2d import batch_probabilities, use_bf16
from COVIDSegLib.io.files import read_volume

SAMPLE = Path(__file__).resolve().parents[1] / "Resources" / "Samples" / "medseg_0000.png"


@pytest.mark.parametrize("amx", [True, False])
def test_auto_is_bf16_on_cuda_and_on_amx_cpus_only(monkeypatch, amx):
    monkeypatch.setattr(predict2d, "cpu_has_amx", lambda: amx)
    assert use_bf16(torch.device("cpu")) is amx
    assert use_bf16(torch.device("cuda")) is True
    assert use_bf16(torch.device("cpu"), "fp32") is False and use_bf16(torch.device("cuda"), "fp32") is False
    assert use_bf16(torch.device("cpu"), "bf16") is True


def test_unknown_precision_is_a_project_error():
    with pytest.raises(CovidSegError, match="unknown precision 'fp16'"):
        use_bf16(torch.device("cpu"), "fp16")


def test_bf16_runs_in_bf16_and_stays_close_to_fp32_on_a_real_slice():
    model = load_bundle("covidseg_multiclass").model.eval()
    image = read_volume(SAMPLE).array[0].astype(np.float32)
    x = torch.from_numpy(image[::4, ::4].copy() / 255.0)[None, None]  # 128 px, the model's input size
    fp32, _ = batch_probabilities(model, x, torch.device("cpu"), bf16=False)
    bf16, _ = batch_probabilities(model, x, torch.device("cpu"), bf16=True)
    assert not np.array_equal(fp32, bf16)  # autocast really changed the arithmetic
    diff = np.abs(fp32 - bf16)  # rounding moves a few boundary pixels most (0.30 at one of 49,152)
    assert np.percentile(diff, 99) < 0.1 and diff.mean() < 0.01
    assert np.mean(fp32.argmax(1) == bf16.argmax(1)) > 0.99


def test_report_records_the_precision_asked_for(tmp_path):
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        assert main(["segment", str(SAMPLE), "-o", str(out), "--precision", precision, "--no-overlay", "-q"]) == EXIT_OK
        assert json.loads((out / "medseg_0000.report.json").read_text())["precision"] == precision


def test_cli_refuses_an_unknown_precision(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["segment", str(SAMPLE), "-o", str(tmp_path), "--precision", "fp16"])
    assert done.value.code == EXIT_USAGE
    assert "invalid choice: 'fp16'" in capsys.readouterr().err
