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


# (BatchNorm layers before, after): the U-Net family folds all; ResNet blocks keep theirs
# (conv and BN are attributes there, not a Sequential) and only the stem's pairs fold
BN_LAYERS = {"xr_msf_unet": (78, 0), "unet": (18, 0), "resnet34_scse_mt": (36, 33)}


@pytest.mark.parametrize("name", ["xr_msf_unet", "unet", "resnet34_scse_mt"])
def test_fold_batchnorm_same_outputs_fewer_layers(name):
    """Folding each BatchNorm into its convolution (inference only) keeps the outputs and leaves
    the original model untouched."""
    from torch import nn

    from COVIDSegLib.models.fold import fold_batchnorm
    model = small(name, out_channels=3).train()
    with torch.no_grad():  # non-trivial running statistics
        for _ in range(3):
            model(torch.rand(4, 1, 64, 64) * 2 + 1)
    model.eval()
    folded = fold_batchnorm(model)
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-4, rtol=1e-4)
    def count(m):
        return sum(isinstance(k, nn.BatchNorm2d) for k in m.modules())
    assert count(model) == BN_LAYERS[name][0] and count(folded) == BN_LAYERS[name][1]
    expected = folded(x).detach()
    assert fold_batchnorm(model, inplace=True) is model and count(model) == BN_LAYERS[name][1]
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(fold_batchnorm(model, inplace=True)(x), expected, atol=1e-6, rtol=1e-6)
