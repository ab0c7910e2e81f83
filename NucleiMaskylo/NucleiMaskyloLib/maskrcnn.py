"""The Mask R-CNN branch of MASKYLO with torchvision, configured like the paper's Detectron2 setup (Table I).

Paper configuration (``build_mask_rcnn``), Table I / section 3.5 of the MASKYLO paper:

* ResNet-50 backbone + FPN (levels P2-P6, 256 channels); Detectron2's R50 uses frozen batch normalisation and freezes
  the stem and the first residual stage (``FREEZE_AT=2``): here ``norm="frozen_bn"`` and
  ``trainable_backbone_layers=3`` (res3-res5 train).
* Region proposal network with one anchor size per level (32, 64, 128, 256, 512) and aspect ratios 0.5, 1, 2;
  Detectron2 defaults for proposals: 2000/1000 pre-NMS (train/test), 1000/1000 post-NMS, NMS 0.7.
* RoIAlign 7x7 for the box head; the box head is two 1024-d fully connected layers, followed by class scores
  (cross-entropy) and class-specific box deltas (smooth L1).
* Mask head on RoIAlign 14x14: four 3x3 convolutions with 256 channels, a 2x2 stride-2 deconvolution and a 1x1
  convolution to per-class mask logits; masks are the sigmoid of these logits (binary cross-entropy loss).
* Input: 512x512 H&E tiles used at their native scale (no resizing: nuclei sizes are physical), ImageNet mean/std.

Not from the paper (it does not give them): ``box_detections_per_img`` is 300 (a 512x512 tile can hold more than
Detectron2's default 100 nuclei). torchvision's RoIAlign samples 2x2 points per bin without the half-pixel shift
(``aligned=False``); Detectron2's ROIAlignV2 uses adaptive sampling with the shift. The paper's backbone was ImageNet
pre-trained; nothing is downloaded here: pass ``backbone_weights`` (a local torchvision ResNet-50 state dict file) to
start from it, or train from scratch with ``norm="gn"`` and ``trainable_backbone_layers=5``.

The small configuration (``build_mask_rcnn_small``, the bundled demo weights) keeps the paper's head structure (two FC
layers, four 3x3 convolutions + deconvolution + sigmoid, RoIAlign 7x7 / 14x14) on a 4-stage BatchNorm backbone with a
narrow FPN, narrower heads and anchors suited to nuclei of 8-40 pixels, so it trains on a CPU in minutes.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torchvision.models import resnet50
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN, _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

__all__ = ["accepted_options", "PAPER_CONFIG", "SMALL_CONFIG", "build_mask_rcnn", "build_mask_rcnn_small", "NativeScaleTransform",
           "SmallBackbone"]

#: Table I of the paper as data (plus the torchvision names of each choice).
PAPER_CONFIG: Dict[str, object] = {
    "backbone": "resnet50", "fpn_channels": 256, "roi_pool": (7, 7), "mask_roi_pool": (14, 14),
    "mask_head_convs": (256, 256, 256, 256), "mask_head_kernel": 3, "box_head_fc": (1024, 1024),
    "anchor_sizes": ((32,), (64,), (128,), (256,), (512,)), "aspect_ratios": (0.5, 1.0, 2.0),
    "tile_size": 512, "num_classes": 2, "norm": "frozen_bn", "trainable_backbone_layers": 3,
}

#: The demo configuration (``mask_rcnn_small``).
SMALL_CONFIG: Dict[str, object] = {
    "backbone": "small_bn", "stage_channels": (24, 48, 64, 96), "fpn_channels": 64, "roi_pool": (7, 7),
    "mask_roi_pool": (14, 14), "mask_head_convs": (64, 64, 64, 64), "mask_head_kernel": 3, "box_head_fc": (256, 256),
    "anchor_sizes": ((8,), (16,), (32,), (64,)), "aspect_ratios": (0.5, 1.0, 2.0), "num_classes": 2,
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class NativeScaleTransform(GeneralizedRCNNTransform):
    """torchvision's detection transform (normalise, batch with padding) without resizing: tiles keep their scale."""

    def resize(self, image, target=None):  # noqa: D102 - identity on purpose
        return image, target


def _transform(size_divisible: int = 32) -> NativeScaleTransform:
    return NativeScaleTransform(min_size=512, max_size=4096, image_mean=list(IMAGENET_MEAN),
                                image_std=list(IMAGENET_STD), size_divisible=size_divisible)


def _mask_head(in_channels: int, layers: Sequence[int], num_classes: int) -> Tuple[nn.Module, nn.Module]:
    head = MaskRCNNHeads(in_channels, list(layers), dilation=1)
    predictor = MaskRCNNPredictor(layers[-1], layers[-1], num_classes)  # 2x2 stride-2 deconv + ReLU + 1x1 conv
    return head, predictor


def _finish(backbone: nn.Module, featmap_names: List[str], anchor_sizes, aspect_ratios, fc: Sequence[int],
            mask_convs: Sequence[int], num_classes: int, roi: Tuple[int, int], mask_roi: Tuple[int, int],
            **kwargs) -> MaskRCNN:
    out_channels = backbone.out_channels
    anchors = AnchorGenerator(sizes=tuple(tuple(s) for s in anchor_sizes),
                              aspect_ratios=(tuple(aspect_ratios),) * len(anchor_sizes))
    box_pool = MultiScaleRoIAlign(featmap_names=featmap_names, output_size=roi, sampling_ratio=2)
    mask_pool = MultiScaleRoIAlign(featmap_names=featmap_names, output_size=mask_roi, sampling_ratio=2)
    if len(fc) != 2 or fc[0] != fc[1]:
        raise ValueError(f"the box head has two fully connected layers of the same width, got {tuple(fc)}")
    box_head = TwoMLPHead(out_channels * roi[0] * roi[1], fc[0])
    box_predictor = FastRCNNPredictor(fc[1], num_classes)
    mask_head, mask_predictor = _mask_head(out_channels, mask_convs, num_classes)
    model = MaskRCNN(backbone, num_classes=None, rpn_anchor_generator=anchors, box_roi_pool=box_pool,
                     box_head=box_head, box_predictor=box_predictor, mask_roi_pool=mask_pool, mask_head=mask_head,
                     mask_predictor=mask_predictor, **kwargs)
    model.transform = _transform()
    model.num_classes = num_classes
    return model


def accepted_options(builder) -> set:
    """Keyword options a builder takes: its own parameters and those of torchvision's MaskRCNN/FasterRCNN."""
    import inspect

    from torchvision.models.detection import FasterRCNN

    names = set()
    for function in (builder, MaskRCNN.__init__, FasterRCNN.__init__):
        names |= {p.name for p in inspect.signature(function).parameters.values()
                  if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return names - {"self", "backbone", "num_classes"} | {"num_classes"}


def _norm_layer(norm: str):
    if norm == "frozen_bn":
        return FrozenBatchNorm2d
    if norm == "bn":
        return nn.BatchNorm2d
    if norm == "gn":
        return lambda channels: nn.GroupNorm(32, channels)
    raise ValueError(f"norm must be 'frozen_bn', 'bn' or 'gn', got {norm!r}")


def build_mask_rcnn(num_classes: int = 2, norm: str = "frozen_bn", trainable_backbone_layers: int = 3,
                    backbone_weights: Optional[str] = None, anchor_sizes=PAPER_CONFIG["anchor_sizes"],
                    aspect_ratios=PAPER_CONFIG["aspect_ratios"], box_detections_per_img: int = 300,
                    rpn_post_nms_top_n_train: int = 1000, **kwargs) -> MaskRCNN:
    """The paper's Mask R-CNN (ResNet-50 + FPN), see the module docstring. ``kwargs`` go to torchvision's MaskRCNN.

    ``backbone_weights``: optional local file with a torchvision ResNet-50 state dict (e.g. ImageNet weights the user
    has); it is loaded with ``weights_only=True`` before the FPN is attached. Nothing is downloaded.
    """
    if not 0 <= int(trainable_backbone_layers) <= 5:
        raise ValueError(f"trainable_backbone_layers must be in 0..5, got {trainable_backbone_layers}")
    resnet = resnet50(weights=None, norm_layer=_norm_layer(norm))
    if backbone_weights:
        state = torch.load(backbone_weights, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = resnet.load_state_dict(state, strict=False)
        real_missing = [k for k in missing if not k.startswith("fc.") and "num_batches_tracked" not in k]
        if real_missing or unexpected:
            raise ValueError(f"'{backbone_weights}' is not a ResNet-50 state dict (missing {real_missing[:3]}, "
                             f"unexpected {list(unexpected)[:3]})")
    backbone = _resnet_fpn_extractor(resnet, int(trainable_backbone_layers))
    return _finish(backbone, ["0", "1", "2", "3"], anchor_sizes, aspect_ratios, PAPER_CONFIG["box_head_fc"],
                   PAPER_CONFIG["mask_head_convs"], num_classes, PAPER_CONFIG["roi_pool"],
                   PAPER_CONFIG["mask_roi_pool"], box_detections_per_img=box_detections_per_img,
                   rpn_post_nms_top_n_train=rpn_post_nms_top_n_train, **kwargs)


def _small_norm(norm: str, channels: int) -> nn.Module:
    if norm == "bn":
        return nn.BatchNorm2d(channels)
    if norm == "gn":
        return nn.GroupNorm(min(8, channels), channels)
    raise ValueError(f"the small backbone's norm must be 'bn' or 'gn', got {norm!r}")


def _conv_gn(c_in: int, c_out: int, stride: int = 1, norm: str = "bn") -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), _small_norm(norm, c_out),
                         nn.ReLU(inplace=True))


class _ResidualStage(nn.Module):
    """Strided 3x3 conv-norm-ReLU, then a residual pair of 3x3 conv-norm."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str = "bn"):
        super().__init__()
        self.down = _conv_gn(c_in, c_out, stride, norm)
        self.body = nn.Sequential(_conv_gn(c_out, c_out, 1, norm), nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                                  _small_norm(norm, c_out))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.down(x)
        return self.relu(x + self.body(x))


class SmallBackbone(nn.Module):
    """Four residual stages at strides 2, 4, 8, 16, an FPN on the last three (strides 4, 8, 16) and a max-pooled extra
    level (stride 32); ``out_channels`` is the FPN width.

    ``norm="bn"`` (default): batch normalisation, whose inference uses fixed statistics, so a nucleus looks the same to
    the network whatever tile it is in (tiled == untiled). ``"gn"``: group normalisation (statistics of each tile).
    """

    def __init__(self, stage_channels: Sequence[int] = SMALL_CONFIG["stage_channels"],
                 fpn_channels: int = SMALL_CONFIG["fpn_channels"], in_channels: int = 3, norm: str = "bn"):
        super().__init__()
        c = list(stage_channels)
        if len(c) != 4:
            raise ValueError(f"stage_channels needs 4 widths, got {tuple(stage_channels)}")
        self.stages = nn.ModuleList([_ResidualStage(in_channels, c[0], 2, norm), _ResidualStage(c[0], c[1], 2, norm),
                                     _ResidualStage(c[1], c[2], 2, norm), _ResidualStage(c[2], c[3], 2, norm)])
        self.fpn = FeaturePyramidNetwork(c[1:], fpn_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = fpn_channels

    def forward(self, x):
        features = OrderedDict()
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index >= 1:
                features[str(index - 1)] = x
        return self.fpn(features)


def build_mask_rcnn_small(num_classes: int = 2, stage_channels=SMALL_CONFIG["stage_channels"],
                          fpn_channels: int = SMALL_CONFIG["fpn_channels"], box_head_fc=SMALL_CONFIG["box_head_fc"],
                          mask_head_convs=SMALL_CONFIG["mask_head_convs"], anchor_sizes=SMALL_CONFIG["anchor_sizes"],
                          aspect_ratios=SMALL_CONFIG["aspect_ratios"], box_detections_per_img: int = 300,
                          rpn_pre_nms_top_n_train: int = 600, rpn_post_nms_top_n_train: int = 300,
                          rpn_pre_nms_top_n_test: int = 2000, rpn_post_nms_top_n_test: int = 1000,
                          box_batch_size_per_image: int = 128, norm: str = "bn", **kwargs) -> MaskRCNN:
    """The demo configuration: paper head structure on :class:`SmallBackbone` (about 1.6 M parameters)."""
    backbone = SmallBackbone(stage_channels, fpn_channels, norm=norm)
    if len(anchor_sizes) != 4:
        raise ValueError(f"the small backbone has 4 pyramid levels; anchor_sizes needs 4 entries, got {anchor_sizes}")
    return _finish(backbone, ["0", "1", "2"], anchor_sizes, aspect_ratios, box_head_fc, mask_head_convs, num_classes,
                   SMALL_CONFIG["roi_pool"], SMALL_CONFIG["mask_roi_pool"],
                   box_detections_per_img=box_detections_per_img, rpn_pre_nms_top_n_train=rpn_pre_nms_top_n_train,
                   rpn_post_nms_top_n_train=rpn_post_nms_top_n_train, rpn_pre_nms_top_n_test=rpn_pre_nms_top_n_test,
                   rpn_post_nms_top_n_test=rpn_post_nms_top_n_test, box_batch_size_per_image=box_batch_size_per_image,
                   **kwargs)
