"""`covidseg segment` never imports MONAI: importing it costs each process about a second
(docs/BENCHMARKS.md); only training, evaluation and the UNet++ architecture need it."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "Resources" / "Samples" / "lungmask_chest_ct_2slices.nii.gz"

PROGRAM = """
import sys
from COVIDSegLib.cli.commands import main
rc = main(["segment", sys.argv[1], "-o", sys.argv[2], "-q", "--no-overlay"])
print(rc, sorted(m for m in sys.modules if m.split(".")[0] == "monai")[:3])
"""


def test_segment_runs_without_importing_monai(tmp_path):
    done = subprocess.run([sys.executable, "-c", PROGRAM, str(SAMPLE), str(tmp_path)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-2:] == ["0", "[]"], done.stdout
    assert (tmp_path / "lungmask_chest_ct_2slices.labels.nii.gz").exists()


def test_unetpp_still_builds_from_monai():
    from COVIDSegLib.models.registry import build_model
    model = build_model({"name": "unetpp", "features": (8, 8, 16, 32, 64, 8)})
    net = model.model.net
    assert "monai" in sys.modules and type(net).__name__ == "BasicUNetPlusPlus"
