"""What COVIDSegLib needs inside Slicer (pure Python; no Slicer libraries needed)."""
import re
from pathlib import Path

import pytest

from COVIDSegSlicer.dependencies import (PROVIDED_BY_SLICER, REQUIREMENTS, missing_requirements,
                                         pip_requirements_to_install)

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _fake(installed):
    return lambda name: installed.get(name)


def test_missing_absent_and_too_old_packages_only():
    reqs = ("torch>=2.0", "nibabel>=5.0", "tqdm", "scipy>=1.10")
    installed = {"torch": "2.13.0+cpu", "nibabel": "4.0.2", "scipy": "1.10"}
    assert missing_requirements(reqs, _fake(installed)) == ["nibabel>=5.0", "tqdm"]


def test_slicers_own_numpy_and_simpleitk_are_never_installed():
    reqs = ("numpy>=1.24", "SimpleITK>=2.3", "monai>=1.3")
    assert missing_requirements(reqs, _fake({})) == list(reqs)
    assert pip_requirements_to_install(reqs, _fake({})) == ["monai>=1.3"]
    assert {"numpy", "simpleitk"} == PROVIDED_BY_SLICER


def test_requirements_name_every_runtime_dependency_of_the_project():
    text = PYPROJECT.read_text(encoding="utf-8")
    block = text[text.index("dependencies = ["):text.index("]", text.index("dependencies = ["))]
    declared = {re.match(r'\s*"([A-Za-z0-9_.\-]+)', line).group(1).lower()
                for line in block.splitlines()[1:] if line.strip().startswith('"')}
    assert declared == {re.match(r"[A-Za-z0-9_.\-]+", r).group().lower() for r in REQUIREMENTS}


def test_this_environment_meets_them():
    assert missing_requirements() == []


def test_unsupported_specifiers_are_refused():
    with pytest.raises(ValueError, match="unsupported"):
        missing_requirements(("torch<3",), _fake({}))
