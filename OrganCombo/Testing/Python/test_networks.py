"""Tests of the OrganCombo networks (OrganComboLib): exact trainable parameter counts (against hand formulas and the
paper's Table 2), output shapes and ranges, 2D variants, Glorot initialisation, batch normalisation after every
convolution, gradients, build_model and input validation. Forward passes use small inputs (16^3 / 32^2) or reduced
widths, except one full-width 80^3 forward of the proposed network (about 6 s on 2 CPU cores)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from OrganComboLib import MODEL_NAMES, PAPER_DEFAULTS, PAPER_TABLE2_PARAMETERS, build_model
from OrganComboLib.blocks import SigmoidSegmentationNet

CONVS = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)
NORMS = (nn.BatchNorm2d, nn.BatchNorm3d)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small convolutions run fastest (and steadiest on a shared 2-core machine) on one thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def conv_cost(kernel_elements: int, c_in: int, c_out: int, prelu: bool = False) -> int:
    """Weights + bias + BN gamma/beta (+ PReLU slopes) of one convolution followed by batch normalisation."""
    return kernel_elements * c_in * c_out + c_out + 2 * c_out + (c_out if prelu else 0)


def head_cost(c_in: int, organs: int) -> int:
    return c_in * organs + organs + 2 * organs  # 1x1 conv with bias, then BN


def expected_combo(in_channels: int = 1, organs: int = 5) -> int:
    encoder = [(in_channels, 32), (32, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 512)]
    decoder = [(512, 256), (256, 256), (256, 128), (128, 128), (128, 64), (64, 64)]
    return sum(conv_cost(27, a, b) for a, b in encoder + decoder) + head_cost(64, organs)


def expected_unet(in_channels: int = 1, organs: int = 5) -> int:
    encoder = [(in_channels, 32), (32, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 512)]
    upconvs = [(512, 512), (256, 256), (128, 128)]
    decoder = [(512 + 256, 256), (256, 256), (256 + 128, 128), (128, 128), (128 + 64, 64), (64, 64)]
    return (sum(conv_cost(27, a, b) for a, b in encoder + decoder) + sum(conv_cost(8, a, b) for a, b in upconvs)
            + head_cost(64, organs))


def expected_vnet(in_channels: int = 1, organs: int = 5) -> int:
    def stage(c_in, width, n):  # n convs, n PReLUs (n - 1 inside, one after the residual sum)
        return conv_cost(125, c_in, width, prelu=True) + (n - 1) * conv_cost(125, width, width, prelu=True)

    left = stage(in_channels, 16, 1) + stage(32, 32, 2) + stage(64, 64, 3) + stage(128, 128, 3) + stage(256, 256, 3)
    down = sum(conv_cost(8, c, 2 * c, prelu=True) for c in (16, 32, 64, 128))
    up = sum(conv_cost(8, a, b, prelu=True) for a, b in [(256, 128), (256, 64), (128, 32), (64, 16)])
    right = stage(256, 256, 3) + stage(128, 128, 3) + stage(64, 64, 2) + stage(32, 32, 1)
    return left + down + up + right + head_cost(32, organs)


def small(name: str, **overrides) -> nn.Module:
    """A narrow variant (fast on the CPU) of the named network."""
    overrides.setdefault("base_channels", 4)
    torch.manual_seed(0)
    return build_model(name, **overrides)


# ---------------------------------------------------------------------------------------------------------------------
# Parameter counts


PET_COUNTS = {"combo_net": 13_998_095, "unet3d": 19_075_727, "vnet": 65_182_335}


@pytest.mark.parametrize("name, formula", [("combo_net", expected_combo), ("unet3d", expected_unet),
                                           ("vnet", expected_vnet)])
def test_pet_configuration_parameter_counts(name, formula):
    model = build_model(name)  # PET: 1 channel in, 5 organs, 3D
    assert trainable(model) == PET_COUNTS[name] == formula(1, 5)
    binary = build_model(name, out_channels=1)
    assert trainable(binary) == formula(1, 1)
    # BN running statistics are buffers (Keras' "non-trainable"), never parameters
    assert all(p.requires_grad for p in model.parameters())


def test_combo_net_reproduces_the_papers_table2_count():
    """Table 2's 13,997,827 is the proposed network with one output channel and BN after its 1x1 head."""
    assert trainable(build_model("combo_net", out_channels=1)) == PAPER_TABLE2_PARAMETERS["combo_net"] == 13_997_827
    assert trainable(build_model("combo_net", out_channels=1, final_norm=False)) == 13_997_825
    assert trainable(build_model("combo_net", out_channels=5, final_norm=False)) == 13_998_085


def test_documented_gaps_to_table2_for_the_baselines():
    """The baselines follow Cicek et al. / Milletari et al.; Table 2's counts are not reproduced (NETWORKS_NOTES.md)."""
    assert trainable(build_model("unet3d", out_channels=1)) == 19_075_459
    assert trainable(build_model("unet3d", out_channels=1, upsampling="nearest")) == 16_320_259
    assert trainable(build_model("unet3d", upsampling="nearest")) == 16_320_527
    assert trainable(build_model("vnet", out_channels=1)) == 65_182_195
    assert PAPER_TABLE2_PARAMETERS["unet3d"] == 12_226_243 and PAPER_TABLE2_PARAMETERS["vnet"] == 84_938_241


# ---------------------------------------------------------------------------------------------------------------------
# Forward passes


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_full_width_forward_shape_and_range(name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 1, 16, 16, 16))
    assert out.shape == (1, 5, 16, 16, 16) and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_training_mode_forward_probabilities_and_logits(name):
    model = small(name, out_channels=3)
    assert isinstance(model, SigmoidSegmentationNet) and model.output_activation == "sigmoid"
    model.train()
    x = torch.rand(2, 1, 16, 16, 16)
    with torch.no_grad():
        logits = model.logits(x)
        probabilities = model(x)
    assert probabilities.shape == logits.shape == (2, 3, 16, 16, 16)
    assert torch.isfinite(logits).all()
    assert probabilities.min() >= 0 and probabilities.max() <= 1
    torch.testing.assert_close(probabilities, torch.sigmoid(logits))


def test_combo_net_full_width_80_cubed_patch():
    torch.manual_seed(0)
    model = build_model("combo_net").eval()
    with torch.no_grad():
        out = model(torch.rand(1, 1, 80, 80, 80))
    assert out.shape == (1, 5, 80, 80, 80) and 0 <= out.min() and out.max() <= 1


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_narrow_networks_accept_80_cubed_and_other_multiples(name):
    model = small(name).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 1, 80, 80, 80)).shape == (1, 5, 80, 80, 80)
        assert model(torch.rand(1, 1, 32, 16, 48)).shape == (1, 5, 32, 16, 48)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_2d_variants(name):
    model = small(name, spatial_dims=2, in_channels=3, out_channels=2)
    assert model.spatial_dims == 2
    assert not any(isinstance(m, (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.ConvTranspose3d))
                   for m in model.modules())
    with torch.no_grad():
        out = model(torch.rand(2, 3, 32, 48))
    assert out.shape == (2, 2, 32, 48) and 0 <= out.min() and out.max() <= 1
    full_2d = build_model(name, spatial_dims=2)  # default widths build in 2D too
    assert trainable(full_2d) < trainable(build_model(name))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_parameter_gets_a_gradient(name):
    model = small(name, in_channels=2, out_channels=3)
    x = torch.rand(2, 2, 16, 16, 16)
    model.logits(x).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_vnet_tiles_multichannel_input_into_the_first_residual():
    model = small("vnet", in_channels=3).eval()  # 3 does not divide the first stage's width (4)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 16, 16, 16)).shape == (1, 5, 16, 16, 16)


# ---------------------------------------------------------------------------------------------------------------------
# Initialisation and layer structure


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_glorot_uniform_initialisation(name):
    torch.manual_seed(1)
    model = build_model(name, out_channels=5)
    convs = [m for m in model.modules() if isinstance(m, CONVS)]
    assert convs
    for conv in convs:
        w = conv.weight.detach().double()
        receptive = math.prod(conv.kernel_size)
        bound = math.sqrt(6.0 / ((conv.in_channels + conv.out_channels) * receptive))
        assert w.abs().max() <= bound * (1 + 1e-6)
        # variance of U(-a, a) is a^2 / 3; the sample estimate's relative spread is about 0.894 / sqrt(n)
        tolerance = max(0.05, 4 * 0.894 / math.sqrt(w.numel()))
        assert w.var(unbiased=False).item() == pytest.approx(bound ** 2 / 3, rel=tolerance)
        assert conv.bias is not None and torch.count_nonzero(conv.bias) == 0
    for norm in (m for m in model.modules() if isinstance(m, NORMS)):
        assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_batch_norm_after_every_convolution(name, spatial_dims):
    model = small(name, spatial_dims=spatial_dims)
    leaves = [m for m in model.modules() if not list(m.children())]
    convs = [i for i, m in enumerate(leaves) if isinstance(m, CONVS)]
    assert convs
    for i in convs:
        assert isinstance(leaves[i + 1], NORMS), f"{leaves[i]} is not followed by batch normalisation"
        assert leaves[i + 1].num_features == leaves[i].out_channels
    head = leaves[convs[-1]]
    assert isinstance(head, (nn.Conv2d, nn.Conv3d)) and head.kernel_size == (1,) * spatial_dims
    assert head.out_channels == 5


def test_final_norm_can_be_switched_off():
    model = small("unet3d", final_norm=False)
    assert not any(isinstance(m, NORMS) for m in model.head.modules())
    assert trainable(build_model("unet3d")) - trainable(build_model("unet3d", final_norm=False)) == 2 * 5


def test_structures_follow_the_papers():
    combo = build_model("combo_net")
    assert not any(isinstance(m, (nn.ConvTranspose3d, nn.ConvTranspose2d)) for m in combo.modules())
    assert {m.kernel_size for m in combo.modules() if isinstance(m, nn.Conv3d)} == {(3, 3, 3), (1, 1, 1)}
    assert [m.kernel_size for m in combo.modules() if isinstance(m, nn.MaxPool3d)] == [2]
    assert combo.size_factor == 8
    unet = build_model("unet3d")
    ups = [m for m in unet.modules() if isinstance(m, nn.ConvTranspose3d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in ups] == [
        (c, c, (2, 2, 2), (2, 2, 2)) for c in (512, 256, 128)]
    assert unet.size_factor == 8
    vnet = build_model("vnet")
    assert {m.kernel_size for m in vnet.modules() if isinstance(m, nn.Conv3d) and m.stride == (1, 1, 1)} == {
        (5, 5, 5), (1, 1, 1)}
    downs = [m for m in vnet.modules() if isinstance(m, nn.Conv3d) and m.stride == (2, 2, 2)]
    assert [(m.in_channels, m.out_channels) for m in downs] == [(16, 32), (32, 64), (64, 128), (128, 256)]
    assert sum(isinstance(m, nn.PReLU) for m in vnet.modules()) > 0 and vnet.size_factor == 16


# ---------------------------------------------------------------------------------------------------------------------
# build_model and input validation


def test_build_model_defaults_and_overrides():
    assert PAPER_DEFAULTS == {"in_channels": 1, "out_channels": 5, "spatial_dims": 3}
    for name in MODEL_NAMES:
        model = build_model(name)
        assert (model.in_channels, model.out_channels, model.spatial_dims) == (1, 5, 3)
        model = small(name, in_channels=2, out_channels=1, spatial_dims=2)
        assert (model.in_channels, model.out_channels, model.spatial_dims) == (2, 1, 2)
    assert trainable(build_model("combo_net", base_channels=8)) < trainable(build_model("combo_net"))
    assert build_model("combo_net", num_levels=3).size_factor == 4
    assert build_model("vnet", convolutions=(1, 2, 3)).size_factor == 4
    assert type(build_model("Combo-Net")).__name__ == "ComboNet"
    assert type(build_model("UNet3D")).__name__ == "UNet3D"


def test_build_model_rejects_unknown_names_and_arguments():
    with pytest.raises(ValueError) as excinfo:
        build_model("segnet")
    message = str(excinfo.value)
    assert "segnet" in message and all(name in message for name in MODEL_NAMES)
    with pytest.raises(TypeError):
        build_model("vnet", num_levels=3)  # V-Net takes ``convolutions``
    with pytest.raises(ValueError, match="spatial_dims"):
        build_model("combo_net", spatial_dims=1)
    with pytest.raises(ValueError, match="upsampling"):
        build_model("unet3d", upsampling="bilinear")


@pytest.mark.parametrize("name, bad_size", [("combo_net", (20, 16, 16)), ("unet3d", (16, 16, 12)),
                                            ("vnet", (24, 16, 16)), ("vnet", (8, 8, 8))])
def test_invalid_spatial_size_raises(name, bad_size):
    model = small(name)
    with pytest.raises(ValueError, match=rf"multiple of .*{model.size_factor}"):
        model(torch.rand(1, 1, *bad_size))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_wrong_channels_or_rank_raise(name):
    model = small(name)
    with pytest.raises(ValueError, match="expects input of shape"):
        model(torch.rand(1, 2, 16, 16, 16))
    with pytest.raises(ValueError, match="expects input of shape"):
        model(torch.rand(1, 1, 16, 16))


def test_package_import_is_light():
    code = ("import sys; import OrganComboLib as p; "
            "assert p.MODEL_NAMES == ('combo_net', 'unet3d', 'vnet'); "
            "assert not [m for m in sys.modules if m.startswith('OrganComboLib.')], sys.modules; "
            "assert 'torch' not in sys.modules")
    module_dir = [p for p in sys.path if p.endswith("OrganCombo")][0]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=module_dir, timeout=60)
