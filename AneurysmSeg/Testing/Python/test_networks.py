"""Tests of GLIA-Net (AneurysmSegLib.glia_net): the official model's exact parameter count, output shapes, the gates and
ROI pooling, and the conversion of checkpoints in the official code's key layout.

The conversion test builds a checkpoint in the official layout itself (names and shapes written out here from the
official code's module structure, MeteorsHub/GLIA-Net model/GLIA-Net.py and model/global_positioning.py), converts it,
loads it strictly, and compares our forward pass with an independent functional forward pass that reads the official
keys directly. Inputs are small (32^3 patches, 32^3 global images) so the file runs in seconds on 2 cores.
"""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

from AneurysmSegLib import MODEL_NAMES, OFFICIAL_PARAMETER_COUNT, build_model, convert_official_state_dict
from AneurysmSegLib.glia_net import GLIANet


@pytest.fixture(autouse=True, scope="module")
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ------------------------------------------------------------------------------------ official layout, by hand

def _residual(prefix, cin, cout):
    mid = cout // 2
    keys = {f"{prefix}.conv1.weight": (mid, cin, 1, 1, 1), f"{prefix}.bn1.weight": (mid,), f"{prefix}.bn1.bias": (mid,),
            f"{prefix}.conv2.weight": (mid, mid, 3, 3, 3), f"{prefix}.bn2.weight": (mid,), f"{prefix}.bn2.bias": (mid,),
            f"{prefix}.conv3.weight": (cout, mid, 1, 1, 1), f"{prefix}.bn3.weight": (cout,),
            f"{prefix}.bn3.bias": (cout,)}
    if cin != cout:
        keys[f"{prefix}.res_conv.weight"] = (cout, cin, 1, 1, 1)
    return keys


def official_layout():
    """Key -> shape of the official GLIANet(3, 2, with_global=True, f_maps=[16, 32, 64, 128], norm_type='gn')."""
    keys = {}
    for i, (a, b) in enumerate([(3, 16), (16, 32), (32, 64), (64, 128)]):
        keys.update(_residual(f"encoder_blocks.{i}.residual_block1", a, b))
    for i, (a, b) in enumerate([(3, 8), (8, 16), (16, 32), (32, 64), (64, 128)], start=1):
        keys.update(_residual(f"global_localizer.feature_generator.encode_block{i}.residual_block1", a, b))
    for i, (a, b) in enumerate([(128, 64), (64, 32)], start=1):
        keys.update(_residual(f"global_localizer.localizer_generator.encode_block{i}.residual_block1", a, b))
    for i, c in enumerate([16, 32, 64]):
        keys[f"localizer_adaptor.{i}.conv.weight"] = (c, 32, 1, 1, 1)
        keys[f"localizer_adaptor.{i}.conv.bias"] = (c,)
    keys.update({"localizer_loss.conv1.weight": (16, 32, 3, 3, 3), "localizer_loss.bn1.weight": (16,),
                 "localizer_loss.bn1.bias": (16,), "localizer_loss.conv2.weight": (2, 16, 1, 1, 1),
                 "localizer_loss.conv2.bias": (2,)})
    for j, (cin, skip) in enumerate([(128, 64), (64, 32), (32, 16)]):
        keys[f"decoder_blocks.{j}.de_conv.weight"] = (cin, cin, 3, 3, 3)
        keys[f"decoder_blocks.{j}.bn.weight"] = (cin + skip,)
        keys[f"decoder_blocks.{j}.bn.bias"] = (cin + skip,)
        keys.update(_residual(f"decoder_blocks.{j}.residual_blocks.residual_block1", cin + skip, skip))
    keys["output_conv.weight"] = (2, 16, 3, 3, 3)
    keys["output_conv.bias"] = (2,)
    return keys


def random_official_state_dict(seed=0):
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in official_layout().items():
        if key.endswith("bias") or ".bn" in key:
            base = 1.0 if (".bn" in key and key.endswith("weight")) else 0.0
            state[key] = base + 0.1 * torch.randn(shape, generator=generator)
        else:
            fan_in = max(1, int(torch.tensor(shape[1:]).prod()))
            state[key] = torch.randn(shape, generator=generator) / fan_in ** 0.5
    return state


def reference_forward(sd, local, global_image, boxes):
    """Functional GLIA-Net forward reading the official keys (independent of our module structure)."""
    def gn(x, p):
        return F.leaky_relu(F.group_norm(x, 4, sd[p + ".weight"], sd[p + ".bias"]), 0.01)

    def res(x, p):
        r = F.conv3d(x, sd[p + ".res_conv.weight"]) if p + ".res_conv.weight" in sd else x
        y = gn(F.conv3d(x, sd[p + ".conv1.weight"]), p + ".bn1")
        y = gn(F.conv3d(y, sd[p + ".conv2.weight"], padding=1), p + ".bn2")
        return gn(F.conv3d(y, sd[p + ".conv3.weight"]) + r, p + ".bn3")

    g = global_image
    for i in range(1, 6):
        if i in (2, 3):
            g = F.max_pool3d(g, 2)
        g = res(g, f"global_localizer.feature_generator.encode_block{i}.residual_block1")
    rois = []
    for b, box in enumerate(torch.round(boxes / 4).long().tolist()):
        sl = []
        for a in range(3):
            n = g.shape[2 + a]
            s = min(max(box[2 * a], 0), n - 1)
            e = min(max(box[2 * a + 1], s), n - 1)
            sl.append(slice(s, e + 1))
        rois.append(F.adaptive_max_pool3d(g[b][(slice(None), *sl)], 6))
    f = torch.stack(rois)
    for i in (1, 2):
        f = res(f, f"global_localizer.localizer_generator.encode_block{i}.residual_block1")
    h = gn(F.conv3d(f, sd["localizer_loss.conv1.weight"], padding=1), "localizer_loss.bn1")
    h = F.adaptive_max_pool3d(h, 1)
    glob = F.conv3d(h, sd["localizer_loss.conv2.weight"], sd["localizer_loss.conv2.bias"]).flatten(1)
    x, skips = local, []
    for i in range(4):
        if i:
            x = F.max_pool3d(x, 2)
        x = res(x, f"encoder_blocks.{i}.residual_block1")
        skips.append(x)
    skips.pop()
    skips = [torch.sigmoid(F.conv3d(F.adaptive_avg_pool3d(f, s.shape[2:]), sd[f"localizer_adaptor.{i}.conv.weight"],
                                    sd[f"localizer_adaptor.{i}.conv.bias"])) * s for i, s in enumerate(skips)]
    for j in range(3):
        x = F.conv_transpose3d(x, sd[f"decoder_blocks.{j}.de_conv.weight"], stride=2, padding=1, output_padding=1)
        x = gn(torch.cat([x, skips.pop()], 1), f"decoder_blocks.{j}.bn")
        x = res(x, f"decoder_blocks.{j}.residual_blocks.residual_block1")
    return F.conv3d(x, sd["output_conv.weight"], sd["output_conv.bias"], padding=1), glob


# ------------------------------------------------------------------------------------------------------ tests

def test_model_names_and_build():
    assert MODEL_NAMES == ("glia_net",)
    model = build_model("glia_net")
    assert isinstance(model, GLIANet) and model.training
    assert build_model("GLIA-Net").widths == (16, 32, 64, 128)
    with pytest.raises(ValueError, match="glia_net"):
        build_model("unet")
    with pytest.raises(TypeError):
        build_model("glia_net", no_such_option=1)


def test_parameter_count_equals_official_model():
    model = build_model("glia_net")
    assert trainable(model) == OFFICIAL_PARAMETER_COUNT == 1_066_704
    assert official_layout_numel() == 1_066_704  # the official layout written out by hand has the same count


def official_layout_numel():
    return sum(int(torch.tensor(shape).prod()) for shape in official_layout().values())


def test_parameter_breakdown_and_layer_facts():
    model = build_model("glia_net")
    parts = {name: sum(p.numel() for p in getattr(model, name).parameters())
             for name in ("encoder", "decoder", "head", "global_encoder", "roi_features", "global_head", "gates")}
    assert sum(parts.values()) == 1_066_704
    assert parts["gates"] == (32 + 1) * (16 + 32 + 64)
    assert parts["head"] == 16 * 2 * 27 + 2
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(m.num_groups == 4 for m in norms)
    assert not any(isinstance(m, (torch.nn.BatchNorm3d, torch.nn.InstanceNorm3d)) for m in model.modules())
    biased = {name for name, m in model.named_modules()
              if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d)) and m.bias is not None}
    assert biased == {"head", "global_head.classifier", "gates.0.conv", "gates.1.conv", "gates.2.conv"}
    ups = [m for m in model.modules() if isinstance(m, torch.nn.ConvTranspose3d)]
    assert [(m.kernel_size, m.stride, m.padding, m.output_padding) for m in ups] == [((3,) * 3, (2,) * 3, (1,) * 3,
                                                                                      (1,) * 3)] * 3


def test_output_shapes_and_gradients():
    torch.manual_seed(0)
    model = build_model("glia_net")
    local = torch.rand(2, 3, 32, 32, 32)
    glob = torch.rand(2, 3, 32, 32, 32)
    boxes = torch.tensor([[0, 15, 0, 15, 0, 15], [8, 31, 4, 20, 0, 31]], dtype=torch.float32)
    seg, cls = model(local, glob, boxes)
    assert seg.shape == (2, 2, 32, 32, 32) and cls.shape == (2, 2)
    (seg.mean() + cls.mean()).backward()
    assert all(p.grad is not None for p in model.parameters())
    plain = build_model("glia_net", with_global=False)
    assert plain(local).shape == (2, 2, 32, 32, 32)
    assert trainable(plain) < trainable(model)
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.rand(1, 3, 20, 32, 32), glob[:1], boxes[:1])
    with pytest.raises(ValueError, match="boxes"):
        model(local, glob)


def test_global_feature_map_shape_and_roi_pool():
    model = build_model("glia_net").eval()
    with torch.no_grad():
        fmap = model.global_feature_map(torch.rand(1, 3, 96, 96, 96))
    assert fmap.shape == (1, 128, 24, 24, 24)
    fmap = torch.arange(24 ** 3, dtype=torch.float32).reshape(1, 1, 24, 24, 24)
    pooled = GLIANet.roi_pool(fmap, torch.tensor([[0, 95, 0, 95, 0, 95], [40, 40, 200, 300, -5, 3]]))
    assert pooled.shape == (2, 1, 6, 6, 6)
    # max over the last 4^3 block of the whole map = the last voxel
    assert pooled[0, 0, -1, -1, -1] == 24 ** 3 - 1
    # a box beyond the map is clipped to its last index; a degenerate box gives one repeated voxel per axis
    assert torch.all(pooled[1, 0, :, 0, 0] == pooled[1, 0, 0, 0, 0])
    assert pooled[1, 0, 0, 0, 0] == fmap[0, 0, 10, 23, 0]


def test_precomputed_global_features_give_the_same_output():
    torch.manual_seed(1)
    model = build_model("glia_net").eval()
    local, glob = torch.rand(3, 3, 16, 16, 16), torch.rand(1, 3, 32, 32, 32)
    boxes = torch.tensor([[0, 10, 0, 10, 0, 10], [5, 20, 5, 20, 5, 20], [16, 31, 16, 31, 16, 31]])
    with torch.no_grad():
        a = model(local, glob.expand(3, -1, -1, -1, -1), boxes)
        b = model(local, boxes=boxes, global_features=model.global_feature_map(glob))
    assert torch.allclose(a[0], b[0], atol=1e-5) and torch.allclose(a[1], b[1], atol=1e-5)


def test_gates_modulate_the_skips():
    """Changing only the global image changes the segmentation (through the gates), not just the global logits."""
    torch.manual_seed(2)
    model = build_model("glia_net").eval()
    local = torch.rand(1, 3, 16, 16, 16)
    boxes = torch.tensor([[0, 31, 0, 31, 0, 31]])
    with torch.no_grad():
        a = model(local, torch.zeros(1, 3, 32, 32, 32), boxes)[0]
        b = model(local, torch.rand(1, 3, 32, 32, 32), boxes)[0]
    assert (a - b).abs().max() > 1e-4


def test_convert_official_checkpoint_matches_reference_forward():
    official = random_official_state_dict()
    assert official_layout_numel() == 1_066_704
    # the official release format: torch.save({"model_state_dict": ...}), loaded with weights_only=True
    buffer = io.BytesIO()
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in official.items()}, "step": 245700}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    converted = convert_official_state_dict(checkpoint)
    model = build_model("glia_net").eval()
    model.load_state_dict(converted, strict=True)
    torch.manual_seed(3)
    local, glob = torch.rand(2, 3, 16, 16, 16), torch.rand(2, 3, 32, 32, 32)
    boxes = torch.tensor([[0, 15, 3, 18, 8, 31], [10, 31, 0, 31, 20, 25]], dtype=torch.float32)
    with torch.no_grad():
        seg, cls = model(local, glob, boxes)
        ref_seg, ref_cls = reference_forward(official, local, glob, boxes)
    assert torch.allclose(seg, ref_seg, atol=1e-4, rtol=1e-4)
    assert torch.allclose(cls, ref_cls, atol=1e-4, rtol=1e-4)


def test_convert_rejects_foreign_keys():
    official = random_official_state_dict()
    official["encoder_blocks.0.residual_block1.bn1.running_mean"] = torch.zeros(8)
    with pytest.raises(KeyError, match="running_mean"):
        convert_official_state_dict(official)
    with pytest.raises(KeyError):
        convert_official_state_dict({"encoder.0.block.reduce.weight": torch.zeros(1)})
