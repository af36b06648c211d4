"""Make COVIDSegLib importable when Slicer loads the module from a source checkout.

A built extension ships COVIDSegLib next to the module file (on ``sys.path`` already). When
the user adds the source folder ``COVIDSeg/`` as an additional module path instead, the
library is one level up, at the repository root.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Optional

MODULE_DIR = Path(__file__).resolve().parents[1]


def library_root(module_dir: Path = MODULE_DIR) -> Optional[Path]:
    """The folder holding ``COVIDSegLib/``: the module folder (built) or its parent (source)."""
    for candidate in (module_dir, module_dir.parent):
        if (candidate / "COVIDSegLib" / "__init__.py").is_file():
            return candidate
    return None


def ensure_library_importable(module_dir: Path = MODULE_DIR) -> bool:
    """Put the folder holding COVIDSegLib on ``sys.path`` if it is not importable yet."""
    if importlib.util.find_spec("COVIDSegLib") is not None:
        return True
    root = library_root(module_dir)
    if root is None:
        return False
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    return True
