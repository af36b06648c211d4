"""COVIDSegLib: COVID-19 lung and infection segmentation of chest CT (pure Python)."""
__version__ = "0.21.1"

from .errors import Cancelled, CovidSegError, InputError, IntensityError  # noqa: F401,E402

_FROM_VOLUME = ("Volume", "HU", "MEDSEG8")  # imported on first use: the CLI starts without numpy/SimpleITK


def __getattr__(name: str):
    if name in _FROM_VOLUME:
        from . import volume
        return getattr(volume, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
