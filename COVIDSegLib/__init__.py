"""COVIDSegLib: COVID-19 lung and infection segmentation of chest CT (pure Python)."""
__version__ = "0.4.0"

from .errors import CovidSegError, InputError, IntensityError, Cancelled  # noqa: F401
from .volume import Volume, HU, MEDSEG8  # noqa: F401
