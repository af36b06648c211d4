"""Imports every architecture module so that each registers its name."""
from . import pspnet_cbam, resnet34_scse, resnet_unet, unet, unetpp, xr_msf_unet  # noqa: F401
