"""Python requirements inside Slicer, checked on first use and installed after the user agrees.

PyTorch comes from the PyTorch extension (PyTorchUtils picks the build that suits the
computer, as other AI extensions do); the other packages from pip, through ``pip_ensure``
where this Slicer has it (``slicer.pydeps``, Slicer >= 5.11), else ``slicer.util.pip_install``.
Slicer's own SimpleITK, numpy and torch are pinned by a constraints file and skipped, so
installing never replaces them.
"""
import importlib
import importlib.metadata
import logging
import os

import slicer

PROTECTED = ("SimpleITK", "numpy", "torch")


def ensureRequirements(parent=None) -> bool:
    """True when everything COVIDSegLib needs is importable; else offer to install it."""
    from COVIDSegSlicer import dependencies

    missing = dependencies.missing_requirements()
    if not missing:
        return True
    if not slicer.util.confirmOkCancelDisplay(
            "COVIDSeg needs Python packages that are not installed yet:\n\n  " + "\n  ".join(map(str, missing))
            + "\n\nInstall them now? They are downloaded from the internet (PyTorch by the PyTorch "
              "extension); this can take several minutes.", "COVIDSeg: install requirements", parent=parent):
        return False
    try:
        with slicer.util.WaitCursor():
            torch = [r for r in missing if r.startswith("torch")]
            if torch:
                _installTorch(torch[0][len("torch"):])
            _pipInstall(dependencies.pip_requirements_to_install())
    except Exception as error:  # shown to the user; the scene is not touched
        logging.exception("COVIDSeg requirements")
        slicer.util.errorDisplay(f"Installing the COVIDSeg requirements failed: {error}", parent=parent)
        return False
    importlib.invalidate_caches()
    missing = dependencies.missing_requirements()
    if missing:
        slicer.util.errorDisplay("Still missing after installation: " + ", ".join(map(str, missing))
                                 + ". Restart Slicer and try again.", parent=parent)
        return False
    return True


def _installTorch(versionRequirement: str) -> None:
    """PyTorch through the PyTorch extension (installed from the Extensions Manager if needed)."""
    try:
        import PyTorchUtils
    except ModuleNotFoundError:
        _offerPyTorchExtension()
        raise RuntimeError("the PyTorch extension is needed: install it, restart Slicer and try again.") from None
    if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False,
                                                     torchVersionRequirement=versionRequirement) is None:
        raise RuntimeError("PyTorch could not be installed (see the PyTorch Utils module).")


def _offerPyTorchExtension() -> None:
    manager = slicer.app.extensionsManagerModel()
    if manager.isExtensionInstalled("PyTorch"):
        return  # installed but not loaded yet: a restart is enough
    if slicer.util.confirmOkCancelDisplay("Install the PyTorch extension from the Extensions Manager now? "
                                          "Slicer must be restarted afterwards."):
        if manager.installExtensionFromServer("PyTorch"):
            slicer.util.infoDisplay("PyTorch extension installed: restart Slicer, then run COVIDSeg again.")


def _constraintsFile() -> str:
    """A pip constraints file pinning the protected packages to the installed versions."""
    lines = []
    for name in PROTECTED:
        try:
            lines.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    path = os.path.join(slicer.app.temporaryPath, "COVIDSeg-constraints.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _pipEnsure():
    """Slicer's ``pip_ensure`` (prompts, progress, restart advice) when this Slicer has one."""
    for name in ("slicer.pydeps", "slicer.packaging"):
        try:
            return importlib.import_module(name).pip_ensure
        except (ImportError, AttributeError):
            continue
    return None


def _pipInstall(requirements) -> None:
    from packaging.requirements import Requirement

    protected = {name.lower() for name in PROTECTED}
    requirements = [Requirement(str(r)) for r in requirements]
    requirements = [r for r in requirements if r.name.lower() not in protected]
    if not requirements:
        return
    constraints = _constraintsFile()
    pipEnsure = _pipEnsure()
    if pipEnsure is not None:
        pipEnsure(requirements, constraints=constraints, skip_packages=list(PROTECTED),
                  prompt_install=False, requester="COVIDSeg")
    else:
        slicer.util.pip_install(["-c", constraints, *map(str, requirements)])
