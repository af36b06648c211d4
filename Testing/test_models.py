"""Every registered architecture: output shapes for several input sizes and k-channel (2.5D) input."""
import pytest
import torch

from COVIDSegLib.models import available, build_model

# Small configurations of all seven architectures, to keep the suite fast on CPU.
SMALL = {
    "unet": {"base": 8},
    "tv_unet": {"base": 8},
    "xr_msf_unet": {"base": 8},
    "unetpp": {"features": [8, 8, 16, 32, 64, 8]},
    "resnet18_unet": {"width": 16},
    "cbam_pspnet": {"width": 16},
    "resnet34_scse_mt": {"width": 16},
}


def small(name: str, **overrides):
    torch.manual_seed(0)
    return build_model({"name": name, **SMALL[name], **overrides})


def test_all_seven_registered():
    assert set(SMALL) <= set(available())


@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("size", [(64, 64), (96, 80), (50, 70), (96, 128), (70, 50)])
def test_output_shape_any_size(name, size):
    model = small(name).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, *size))
    assert out.shape == (2, 2, *size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("size, classes", [((48, 64), 4), ((70, 50), 5)])
def test_adjacent_slice_input_and_more_classes(name, size, classes):
    model = small(name, in_channels=3, out_channels=classes).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert out.shape == (1, classes, *size)
