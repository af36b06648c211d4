"""Imports every architecture module so that each registers its name."""
from . import unet, xr_msf_unet, unetpp  # noqa: F401
from . import resnet_unet, pspnet_cbam, resnet34_scse  # noqa: F401
