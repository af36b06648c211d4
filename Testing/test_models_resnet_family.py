"""ResNet-family models: resnet18_unet, cbam_pspnet, resnet34_scse_mt and the ResNet encoder."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from COVIDSegLib.models import available, build_model, count_parameters
from COVIDSegLib.models.pspnet_cbam import CBAM
from COVIDSegLib.models.resnet import DEPTHS, ResNetEncoder
from COVIDSegLib.models.resnet34_scse import SCSE, ResNet34SCSE

NAMES = ["resnet18_unet", "cbam_pspnet", "resnet34_scse_mt"]


def _small(name: str, **kwargs):
    torch.manual_seed(0)
    return build_model({"name": name, "width": 16, **kwargs})


def _expected_encoder_params(depth: int, in_channels: int, width: int) -> int:
    """Closed-form parameter count of a BasicBlock ResNet without fc (independent of the code)."""
    total = in_channels * 7 * 7 * width + 2 * width  # stem conv + BN
    c_in = width
    for layer, n_blocks in enumerate(DEPTHS[depth]):
        c_out = width * 2 ** layer
        for block in range(n_blocks):
            src = c_in if block == 0 else c_out
            total += 9 * src * c_out + 9 * c_out * c_out + 4 * c_out  # two convs + two BNs
            if src != c_out:
                total += src * c_out + 2 * c_out  # 1×1 projection + BN
        c_in = c_out
    return total


def test_names_registered():
    assert set(NAMES) <= set(available())


@pytest.mark.parametrize("name", NAMES)
def test_backward_gives_finite_grads_on_all_parameters(name):
    model = _small(name).train()
    x, target = torch.randn(2, 1, 64, 64), torch.randint(0, 2, (2, 64, 64))
    if getattr(model.model, "multitask", False):
        seg, cls = model.forward_multitask(x)
        loss = F.cross_entropy(seg, target) + F.binary_cross_entropy_with_logits(
            cls, torch.tensor([0.0, 1.0]))
    else:
        loss = F.cross_entropy(model(x), target)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"


def test_pspnet_trains_with_batch_one():
    """The 1-bin pyramid branch has no BatchNorm, so a 1-sample batch trains (1×1 map)."""
    model = _small("cbam_pspnet").train()
    out = model(torch.randn(1, 1, 64, 64))
    out.mean().backward()
    assert out.shape == (1, 2, 64, 64)


def test_multitask_shapes_and_head_gradient():
    model = _small("resnet34_scse_mt").train()
    assert model.model.multitask is True
    seg, cls = model.forward_multitask(torch.randn(3, 1, 70, 50))
    assert seg.shape == (3, 2, 70, 50) and cls.shape == (3,)
    F.binary_cross_entropy_with_logits(cls, torch.tensor([1.0, 0.0, 1.0])).backward()
    inner = model.model
    head = [p.grad for p in inner.classifier.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in head)
    # The classification loss trains the shared encoder too, but not the decoder.
    assert inner.encoder.conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in inner.decoder.parameters())
    with torch.no_grad():
        seg_only = model.eval()(torch.randn(2, 1, 64, 64))
    assert seg_only.shape == (2, 2, 64, 64)


def test_slice_is_empty_threshold():
    logits = torch.tensor([-5.0, 0.1, 5.0])
    assert ResNet34SCSE.slice_is_empty(logits).tolist() == [True, False, False]
    assert ResNet34SCSE.slice_is_empty(logits, threshold=0.99).tolist() == [True, True, False]
    assert not ResNet34SCSE.slice_is_empty(logits, threshold=0.0).any()
    with pytest.raises(ValueError):
        ResNet34SCSE.slice_is_empty(logits, threshold=1.5)


@pytest.mark.parametrize("depth, in_channels, expected", [
    (18, 1, 11_170_240), (34, 1, 21_278_400),   # 1-channel CT stem
    (18, 3, 11_176_512), (34, 3, 21_284_672),   # torchvision resnet18/34 without fc
])
def test_encoder_parameter_count(depth, in_channels, expected):
    encoder = ResNetEncoder(depth, in_channels, width=64)
    assert count_parameters(encoder) == expected
    assert _expected_encoder_params(depth, in_channels, 64) == expected
    assert expected - _expected_encoder_params(depth, 1, 64) == (in_channels - 1) * 7 * 7 * 64


@pytest.mark.parametrize("output_stride, strides", [(32, [2, 4, 8, 16, 32]),
                                                     (16, [2, 4, 8, 16, 16]),
                                                     (8, [2, 4, 8, 8, 8])])
def test_encoder_feature_strides(output_stride, strides):
    encoder = ResNetEncoder(18, 1, width=8, output_stride=output_stride).eval()
    with torch.no_grad():
        feats = encoder(torch.randn(1, 1, 64, 96))
    assert [f.shape[1] for f in feats] == encoder.channels == [8, 8, 16, 32, 64]
    assert [(64 // s, 96 // s) for s in strides] == [tuple(f.shape[-2:]) for f in feats]
    # Dilation keeps the parameter count (only strides change).
    assert count_parameters(encoder) == _expected_encoder_params(18, 1, 8)


def test_encoder_rejects_bad_config():
    with pytest.raises(ValueError):
        ResNetEncoder(50)
    with pytest.raises(ValueError):
        ResNetEncoder(18, output_stride=4)


@pytest.mark.parametrize("module", [CBAM(32, reduction=16), SCSE(32, reduction=16)])
def test_attention_blocks_keep_shape(module):
    x = torch.randn(2, 32, 9, 7)
    assert module(x).shape == x.shape
