"""The six JRS-MTL networks: parameter counts of section 5.2, output sizes of section 5.2.1, behaviour."""

import pytest
import torch

from AdaptiveRecontourLib import MODEL_NAMES, PAPER_PARAMETERS, build_model
from AdaptiveRecontourLib.blocks import count_parameters, output_grids

SMALL = (4, 6, 8)


def _inputs(n, b=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    fixed = torch.randn(b, 1, n, n, n, generator=g)
    moving = torch.randn(b, 1, n, n, n, generator=g)
    seg = torch.randint(0, 5, (b, 1, n, n, n), generator=g).float()
    return fixed, moving, seg


@pytest.mark.parametrize("name", ["seg", "reg", "dense", "sedd", "cross_stitch"])
def test_paper_parameter_counts(name):
    assert count_parameters(build_model(name)) == PAPER_PARAMETERS[name]


def test_jrs_reg_is_reg_with_moving_segmentation_channel():
    jrs = build_model("jrs_reg")
    assert jrs.inputs == ("fixed", "moving", "moving_seg") and jrs.uses_contour_loss
    # 621 = 27 * 23 kernel weights for the third channel
    assert count_parameters(jrs) == PAPER_PARAMETERS["reg"] + 27 * 23
    assert count_parameters(build_model("jrs_reg", inputs=("fixed", "moving"))) == PAPER_PARAMETERS["reg"]


def test_cross_stitch_units_count_and_init():
    torch.manual_seed(0)
    net = build_model("cross_stitch")
    sizes = [u.alphas.shape for u in net.units]
    assert [s[0] for s in sizes] == [16, 32, 64, 32] and all(s[1:] == (2, 2) for s in sizes)
    a = torch.cat([u.alphas.flatten() for u in net.units])
    assert a.numel() == 576 and count_parameters(net) - a.numel() == 779_000
    assert 0.0 <= a.min() and a.max() <= 1.0  # truncated at 2 sigma around 0.5
    assert abs(a.mean().item() - 0.5) < 0.05 and 0.15 < a.std().item() < 0.3


def test_conv_init_is_normal_002():
    torch.manual_seed(0)
    net = build_model("seg")
    w = torch.cat([m.weight.flatten() for m in net.modules() if isinstance(m, torch.nn.Conv3d)])
    assert abs(w.mean().item()) < 1e-3 and abs(w.std().item() - 0.02) < 1e-3


def test_output_sizes_paper_patch_96():
    net = build_model("seg").eval()
    with torch.no_grad():
        out = net(torch.randn(1, 1, 96, 96, 96))
    assert [tuple(t.shape) for t in out["seg"]] == [(1, 5, 56, 56, 56), (1, 5, 30, 30, 30), (1, 5, 17, 17, 17)]
    assert [g.size for g in output_grids(96)] == [56, 30, 17]


@pytest.mark.parametrize("n", [48, 64, 96])
def test_output_size_formula(n):
    assert [g.size for g in output_grids(n)] == [n - 40, n // 2 - 18, n // 4 - 7]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_network_small_forward_backward(name):
    torch.manual_seed(0)
    net = build_model(name, filters=SMALL)
    fixed, moving, seg = _inputs(48, b=2)
    out = net(fixed, moving, seg)
    assert set(out) == set(net.tasks)
    for key, channels in (("seg", 5), ("dvf", 3)):
        if key in out:
            assert [tuple(t.shape) for t in out[key]] == [(2, channels, s, s, s) for s in (8, 6, 5)]
    loss = sum(t.square().mean() for v in out.values() for t in v)
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_cross_stitch_units_mix_streams():
    torch.manual_seed(0)
    net = build_model("cross_stitch", filters=SMALL)
    fixed, moving, seg = _inputs(48, b=2)
    out = net(fixed, moving, seg)
    # the segmentation output depends on the moving image only through the cross-stitch units
    out["seg"][0].sum().backward()
    assert all(u.alphas.grad.abs().sum() > 0 for u in net.units)
    with torch.no_grad():
        for u in net.units:
            u.alphas.copy_(torch.eye(2).expand_as(u.alphas))  # identity: no sharing
        net.eval()
        a = net(fixed, moving, seg)["seg"][0]
        b = net(fixed, moving + 1.0, seg)["seg"][0]
    assert torch.allclose(a, b)


def test_segmentation_ignores_moving_image():
    net = build_model("seg", filters=SMALL).eval()
    fixed, moving, seg = _inputs(48)
    with torch.no_grad():
        assert torch.equal(net(fixed)["seg"][0], net(fixed, moving, seg)["seg"][0])


def test_bad_inputs():
    net = build_model("reg", filters=SMALL)
    fixed, moving, _ = _inputs(48)
    with pytest.raises(ValueError, match="moving"):
        net(fixed)
    with pytest.raises(ValueError, match="multiple of 4"):
        net(torch.randn(1, 1, 50, 50, 50), torch.randn(1, 1, 50, 50, 50))
    with pytest.raises(ValueError, match="valid names"):
        build_model("unet")
    with pytest.raises(TypeError):
        build_model("seg", nonsense=1)


def test_nearest_upsampling_option_same_count():
    assert count_parameters(build_model("dense", upsample="nearest")) == PAPER_PARAMETERS["dense"]
