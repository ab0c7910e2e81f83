"""Tests of the Mask R-CNN branch (NucleiMaskyloLib.build_model): the paper's Detectron2 configuration (Table I)
checked layer by layer with hand formulas, the total against torchvision's published count for its COCO Mask R-CNN,
frozen stages, no resizing of tiles, the small demo configuration, and forward passes in training and inference
mode on small tiles (about 10 s in all on 2 CPU cores)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from NucleiMaskyloLib import MODEL_NAMES, YOLO_MODEL_NAMES, build_model
from NucleiMaskyloLib.maskrcnn import PAPER_CONFIG, SMALL_CONFIG


def count(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def conv(k: int, c_in: int, c_out: int, bias: bool = True) -> int:
    return k * k * c_in * c_out + (c_out if bias else 0)


@pytest.fixture(scope="module")
def paper():
    torch.manual_seed(0)
    return build_model("mask_rcnn")


def test_model_names():
    assert MODEL_NAMES == ("mask_rcnn", "mask_rcnn_small")
    assert "yolo11n" in YOLO_MODEL_NAMES and "yolov8n-seg" in YOLO_MODEL_NAMES
    with pytest.raises(ValueError, match="valid names"):
        build_model("mask_rcnn_x101")
    with pytest.raises(ValueError, match="YOLO"):
        build_model("yolo11n")
    with pytest.raises(TypeError):
        build_model("mask_rcnn_small", no_such_option=1)


def test_paper_heads_match_table_one(paper):
    # Mask head: four 3x3 convolutions, 256 channels, on RoIAlign 14x14; then deconvolution + 1x1 logits (2 classes).
    convs = [m for m in paper.roi_heads.mask_head.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(256, 256, (3, 3))] * 4
    assert count(paper.roi_heads.mask_head) == 4 * conv(3, 256, 256)
    deconv = paper.roi_heads.mask_predictor.conv5_mask
    assert isinstance(deconv, nn.ConvTranspose2d) and deconv.stride == (2, 2) and deconv.kernel_size == (2, 2)
    assert count(paper.roi_heads.mask_predictor) == (4 * 256 * 256 + 256) + conv(1, 256, 2)
    assert paper.roi_heads.mask_roi_pool.output_size == (14, 14)
    # Box head: RoIAlign 7x7, two 1024-d fully connected layers, then class scores and class-specific box deltas.
    assert paper.roi_heads.box_roi_pool.output_size == (7, 7)
    fcs = [m for m in paper.roi_heads.box_head.modules() if isinstance(m, nn.Linear)]
    assert [(f.in_features, f.out_features) for f in fcs] == [(256 * 7 * 7, 1024), (1024, 1024)]
    assert count(paper.roi_heads.box_predictor) == (1024 * 2 + 2) + (1024 * 8 + 8)
    # FPN: 1x1 lateral + 3x3 output convolution per level (ResNet-50 stages of 256..2048 channels), 256 channels.
    fpn = paper.backbone.fpn
    assert count(fpn) == sum(conv(1, c, 256) + conv(3, 256, 256) for c in (256, 512, 1024, 2048))
    # RPN head: 3x3 conv, 3 anchors per location (ratios 0.5, 1, 2) -> objectness + 4 deltas each.
    assert count(paper.rpn.head) == conv(3, 256, 256) + conv(1, 256, 3) + conv(1, 256, 12)
    assert paper.rpn.anchor_generator.sizes == PAPER_CONFIG["anchor_sizes"]


def test_paper_backbone_is_resnet50_with_frozen_stem(paper):
    body = paper.backbone.body
    convs = [m for m in body.modules() if isinstance(m, nn.Conv2d)]
    # ResNet-50 without its classifier: 53 convolutions, no conv bias; frozen BN carries no parameters.
    assert len(convs) == 53 and all(c.bias is None for c in convs)
    assert count(body) == sum(c.weight.numel() for c in convs) == 23_454_912
    assert any(isinstance(m, FrozenBatchNorm2d) for m in body.modules())
    frozen = {name.split(".")[0] for name, p in body.named_parameters() if not p.requires_grad}
    assert frozen == {"conv1", "layer1"}  # Detectron2 FREEZE_AT=2: stem and res2
    assert all(p.requires_grad for name, p in body.named_parameters() if name.startswith(("layer2", "layer3", "layer4")))


def test_paper_total_matches_torchvision_published_count():
    # torchvision documents 44,401,393 parameters for maskrcnn_resnet50_fpn (91 COCO classes, frozen BN); the same
    # network with 91 classes must have exactly that many, and 2 classes removes 89 classes from the three predictors.
    coco = build_model("mask_rcnn", num_classes=91)
    assert count(coco) == 44_401_393
    two = 44_401_393 - 89 * (1024 + 1) - 89 * 4 * (1024 + 1) - 89 * (256 + 1)
    assert count(build_model("mask_rcnn")) == two == 43_922_395


def test_paper_tiles_are_not_resized(paper):
    paper.eval()
    image = torch.rand(3, 64, 96)
    images, _ = paper.transform([image])
    assert images.image_sizes == [(64, 96)]
    assert tuple(images.tensors.shape[-2:]) == (64, 96)


def test_backbone_weights_from_local_file(tmp_path):
    from torchvision.models import resnet50

    torch.manual_seed(1)
    reference = resnet50(weights=None)
    path = tmp_path / "r50.pt"
    torch.save(reference.state_dict(), path)
    model = build_model("mask_rcnn", backbone_weights=str(path))
    assert torch.equal(model.backbone.body.layer3[0].conv1.weight, reference.layer3[0].conv1.weight)
    torch.save({"not": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="ResNet-50"):
        build_model("mask_rcnn", backbone_weights=str(path))


def test_small_configuration_structure():
    torch.manual_seed(0)
    small = build_model("mask_rcnn_small")
    convs = [m for m in small.roi_heads.mask_head.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(64, (3, 3))] * 4
    fcs = [m for m in small.roi_heads.box_head.modules() if isinstance(m, nn.Linear)]
    assert [(f.in_features, f.out_features) for f in fcs] == [(64 * 49, 256), (256, 256)]
    assert small.roi_heads.box_roi_pool.output_size == (7, 7)
    assert small.rpn.anchor_generator.sizes == SMALL_CONFIG["anchor_sizes"]
    backbone = sum(conv(3, a, b, bias=False) + 2 * b + 2 * conv(3, b, b, bias=False) + 4 * b
                   for a, b in zip((3, 24, 48, 64), (24, 48, 64, 96)))
    fpn = sum(conv(1, c, 64) + conv(3, 64, 64) for c in (48, 64, 96))
    rpn = conv(3, 64, 64) + conv(1, 64, 3) + conv(1, 64, 12)
    box = (64 * 49 * 256 + 256) + (256 * 256 + 256) + (256 * 2 + 2) + (256 * 8 + 8)
    mask = 4 * conv(3, 64, 64) + (4 * 64 * 64 + 64) + conv(1, 64, 2)
    assert count(small) == count(small, trainable_only=True) == backbone + fpn + rpn + box + mask == 1_584_723


def test_small_forward_training_and_inference():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = build_model("mask_rcnn_small")
    mask = torch.zeros(1, 64, 64, dtype=torch.uint8)
    mask[0, 10:24, 12:28] = 1
    target = {"boxes": torch.tensor([[12.0, 10.0, 28.0, 24.0]]), "labels": torch.tensor([1]), "masks": mask}
    losses = model([torch.rand(3, 64, 64)], [target])
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    total = sum(losses.values())
    total.backward()
    assert all(torch.isfinite(v) for v in losses.values())
    assert model.roi_heads.mask_head[0][0].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 64, 80)])[0]
    n = len(out["boxes"])
    assert out["masks"].shape == (n, 1, 64, 80) and out["scores"].shape == (n,)
    if n:
        assert 0.0 <= float(out["masks"].min()) and float(out["masks"].max()) <= 1.0  # sigmoid masks
        assert set(out["labels"].tolist()) <= {1}
