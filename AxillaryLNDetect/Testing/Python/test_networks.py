"""The three-level valid-convolution 3D U-Net of Altun et al. (Fig. 3): shapes, receptive field, parameter counts."""
import pytest
import torch

from AxillaryLNDetectLib import MODEL_NAMES, PAPER_PARAMETERS, build_model
from AxillaryLNDetectLib.unet3d_3level import (DEFAULT_PARAMETERS, EXACT_COUNT_OVERRIDES, UNet3Level,
                                               count_parameters)


def test_model_names():
    assert MODEL_NAMES == ("unet3d_3level",)
    with pytest.raises(ValueError, match="unknown"):
        build_model("unet2d")


def test_default_parameter_count_is_the_documented_closest_regular_configuration():
    model = build_model("unet3d_3level")
    assert count_parameters(model) == DEFAULT_PARAMETERS == 8_468_642
    assert abs(DEFAULT_PARAMETERS - PAPER_PARAMETERS) / PAPER_PARAMETERS < 0.006


def test_paper_count_is_reachable_with_the_documented_irregular_widths():
    assert count_parameters(build_model("unet3d_3level", **EXACT_COUNT_OVERRIDES)) == PAPER_PARAMETERS == 8_516_034


def test_parameter_count_formula_for_small_widths():
    # Hand count for widths (2, 4, 8), 1 channel in, 2 out: conv k^3*ci*co + co (bias) + 2*co (BN).
    def conv(ci, co, k=3, bn=True):
        return k ** 3 * ci * co + co + (2 * co if bn else 0)
    expected = (conv(1, 2) + conv(2, 2) + conv(2, 4) + conv(4, 4) + conv(4, 8) + conv(8, 8)
                + conv(8, 4, k=2) + conv(4 + 4, 4) + conv(4, 4)
                + conv(4, 2, k=2) + conv(2 + 2, 2) + conv(2, 2) + conv(2, 2, k=1, bn=False))
    assert count_parameters(build_model("unet3d_3level", widths=(2, 4, 8))) == expected


def test_shapes_72_to_32_softmax_and_relu_logits():
    torch.manual_seed(0)
    model = build_model("unet3d_3level", widths=(4, 8, 16)).eval()
    x = torch.randn(2, 1, 72, 72, 72)
    with torch.no_grad():
        probabilities = model(x)
        scores = model.logits(x)
    assert probabilities.shape == (2, 2, 32, 32, 32)
    assert torch.allclose(probabilities.sum(1), torch.ones(2, 32, 32, 32), atol=1e-5)
    assert (scores >= 0).all()  # the head's ReLU
    assert torch.allclose(torch.softmax(scores, 1), probabilities)


def test_valid_sizes_and_errors():
    assert UNet3Level.output_size(72) == 32
    assert UNet3Level.output_size(44) == 4
    assert UNet3Level.output_size(48) == 8
    assert UNet3Level.output_size(70) is None and UNet3Level.output_size(40) is None
    assert UNet3Level.valid_input_size(32) == 72
    assert UNet3Level.valid_input_size(33) == 76
    model = build_model("unet3d_3level", widths=(2, 4, 8)).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 44, 48, 52)).shape == (1, 2, 4, 8, 12)
    with pytest.raises(ValueError, match="44 \\+ 4k"):
        model(torch.zeros(1, 1, 70, 72, 72))
    with pytest.raises(ValueError, match="channels"):
        model(torch.zeros(1, 2, 72, 72, 72))
    with pytest.raises(ValueError):
        build_model("unet3d_3level", up_channels="double")
    with pytest.raises(TypeError):
        build_model("unet3d_3level", levels=4)


def test_receptive_field_is_44():
    """The output voxel at the centre depends on exactly a 44^3 input cube (gradient support)."""
    torch.manual_seed(0)
    model = build_model("unet3d_3level", widths=(2, 4, 8), dropout=0.0).eval()
    for p in model.parameters():  # positive weights: no cancellation hides a dependency
        p.data.abs_().add_(0.01)
    x = torch.randn(1, 1, 72, 72, 72, requires_grad=True)
    out = model.logits(x)
    out[0, 1, 16, 16, 16].backward()
    support = (x.grad[0, 0].abs() > 0).nonzero()
    extent = (support.max(0).values - support.min(0).values + 1).tolist()
    assert extent == [44, 44, 44]
    assert UNet3Level.receptive_field == 44


def test_dropout_before_bottleneck_and_up_path_convolutions_only():
    model = build_model("unet3d_3level", widths=(2, 4, 8), dropout=0.25)
    rates = {name: m.p for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    assert rates and set(rates.values()) == {0.25}
    assert all(name.split(".")[0] in ("bottleneck", "decoder2", "decoder1") for name in rates)
    assert len(rates) == 6
    model.set_dropout(0.5)
    assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.5}
    bn_after_conv = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert len(bn_after_conv) == 12  # 10 convolutions + 2 up-convolutions
