"""Which Python packages COVIDSegLib still needs inside Slicer, and what pip should install.

numpy and SimpleITK are Slicer's own: they are checked but never installed or replaced (a pip
upgrade would break Slicer). No GUI here: the module asks the user, then calls
``slicer.util.pip_install`` with ``pip_requirements_to_install()``.
"""
from __future__ import annotations

import re
from importlib import metadata
from typing import Callable, List, Optional, Tuple

# COVIDSegLib's runtime needs (pyproject.toml; torch without the local CPU-wheel pin).
REQUIREMENTS: Tuple[str, ...] = (
    "torch>=2.0",
    "numpy>=1.24",
    "SimpleITK>=2.3",
    "nibabel>=5.0",
    "tqdm>=4.60",
    "matplotlib>=3.7",
    "pillow>=9",
    "safetensors>=0.4",
    "monai>=1.3",
    "scipy>=1.10",
)
PROVIDED_BY_SLICER = frozenset({"numpy", "simpleitk"})

_SPEC = re.compile(r"^([A-Za-z0-9_.\-]+)\s*(?:>=\s*([0-9][0-9A-Za-z.]*))?$")


def _name_and_minimum(requirement: str) -> Tuple[str, Optional[str]]:
    match = _SPEC.match(requirement.strip())
    if match is None:
        raise ValueError(f"unsupported requirement '{requirement}' (use NAME or NAME>=VERSION)")
    return match.group(1), match.group(2)


def _release(version: str) -> Tuple[int, ...]:
    """Leading numeric release of a version string: '2.13.0+cpu' -> (2, 13, 0)."""
    parts = []
    for part in version.split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        parts.append(int(digits.group()))
        if digits.group() != part:
            break
    return tuple(parts)


def _installed(name: str) -> Optional[str]:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def missing_requirements(requirements: Tuple[str, ...] = REQUIREMENTS,
                         installed: Callable[[str], Optional[str]] = _installed) -> List[str]:
    """The requirements not met: absent, or older than their minimum version."""
    missing = []
    for requirement in requirements:
        name, minimum = _name_and_minimum(requirement)
        version = installed(name)
        if version is None or (minimum and _release(version) < _release(minimum)):
            missing.append(requirement)
    return missing


def pip_requirements_to_install(requirements: Tuple[str, ...] = REQUIREMENTS,
                                installed: Callable[[str], Optional[str]] = _installed) -> List[str]:
    """``missing_requirements`` less the packages Slicer provides itself."""
    return [r for r in missing_requirements(requirements, installed)
            if _name_and_minimum(r)[0].lower() not in PROVIDED_BY_SLICER]
