"""U-Net family (unet, tv_unet, xr_msf_unet, unetpp) built by name through the registry."""
import pytest
import torch
import torch.nn.functional as F

from COVIDSegLib.models import build_model, count_parameters

# Small configurations that keep the suite fast on CPU.
SMALL = {
    "unet": {"name": "unet", "base": 8},
    "tv_unet": {"name": "tv_unet", "base": 8},
    "xr_msf_unet": {"name": "xr_msf_unet", "base": 8},
    "unetpp": {"name": "unetpp", "features": [8, 8, 16, 32, 64, 8]},
}
NAMES = list(SMALL)

# Trainable parameters at the default configuration (deterministic; recomputed by hand:
# U-Net base 32 = the classic 31.0 M U-Net at base 64 scaled by ~1/4; unetpp is MONAI 1.x
# BasicUNetPlusPlus 2D with the three unused side heads removed).
DEFAULT_PARAMS = {
    "unet": 7_762_498,
    "tv_unet": 7_762_498,
    "xr_msf_unet": 20_491_962,
    "unetpp": 2_410_114,
}


def _small(name: str, **overrides):
    torch.manual_seed(0)
    return build_model({**SMALL[name], **overrides})


@pytest.mark.parametrize("name", NAMES)
def test_backward_reaches_every_parameter(name):
    model = _small(name).train()
    x = torch.randn(2, 1, 64, 64)
    target = torch.randint(0, 2, (2, 64, 64))
    F.cross_entropy(model(x), target).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient for {pname}"
        assert p.grad.abs().sum() > 0, f"{name}: zero gradient for {pname}"


def test_unet_overfits_one_sample():
    model = _small("unet").train()
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    mask = (((yy - 30) ** 2 + (xx - 36) ** 2) < 15 ** 2).long()[None]
    x = torch.randn(1, 1, 64, 64) * 0.3 + mask[:, None].float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), mask)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("name", NAMES)
def test_default_parameter_count(name):
    assert count_parameters(build_model({"name": name})) == DEFAULT_PARAMS[name]


def test_tv_unet_is_the_unet_architecture():
    unet, tv = build_model({"name": "unet", "base": 8}), build_model({"name": "tv_unet", "base": 8})
    tv.load_state_dict(unet.state_dict(), strict=True)
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(unet.eval()(x), tv.eval()(x))


def test_xr_msf_levels_are_configurable():
    full = _small("xr_msf_unet")
    plain = _small("xr_msf_unet", msf_levels=[])
    deep_only = _small("xr_msf_unet", msf_levels=[3], msf_weights=[0.5, 2.0])
    assert count_parameters(plain) < count_parameters(deep_only) < count_parameters(full)
    with torch.no_grad():
        assert deep_only.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 2, 32, 32)
    with pytest.raises(ValueError):
        build_model({"name": "xr_msf_unet", "msf_levels": [4]})
    with pytest.raises(ValueError):
        build_model({"name": "xr_msf_unet", "msf_weights": [1.0]})


def test_unetpp_deep_supervision_returns_one_tensor():
    model = _small("unetpp", deep_supervision=True).eval()
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        out = model(x)
        heads = model.model.forward_all(x)
    assert out.shape == (1, 2, 32, 32)
    assert len(heads) == 4
    assert torch.allclose(out, torch.stack(heads).mean(0), atol=1e-6)


def test_dropout_is_optional():
    model = _small("unet", dropout=0.2)
    assert any(isinstance(m, torch.nn.Dropout2d) for m in model.modules())
    with pytest.raises(ValueError):
        build_model({"name": "unet", "dropout": 1.5})
