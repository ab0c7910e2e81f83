"""NucleiMaskylo: MASKYLO hybrid nuclei detection and instance segmentation in H&E histology.

Bukhari, Munir, Haider, Hussain, "MASKYLO: Hybrid Deep Learning Framework for Detection and Segmentation of HE
Stained Histology Image" (2025): a Mask R-CNN branch (Detectron2, ResNet-50 + FPN, Table I), YOLO branches (YOLOv11
detection, YOLOv8-seg) and a fusion of their outputs by IoU voting or confidence weighting.

* :func:`build_model` builds the Mask R-CNN branch with torchvision: ``"mask_rcnn"`` is the paper's configuration
  (Table I), ``"mask_rcnn_small"`` the small configuration of the bundled demo weights. No weights are ever downloaded.
* The YOLO branch (:mod:`.yolo`) uses the optional ``ultralytics`` package (AGPL-3.0), installed only on demand with the
  user's consent and never vendored; everything else works without it. Its model names are :data:`YOLO_MODEL_NAMES`.

Importing this package is cheap: torch/torchvision are imported by :func:`build_model`.
"""

from __future__ import annotations

from typing import Any, Tuple

__all__ = ["MODEL_NAMES", "YOLO_MODEL_NAMES", "build_model"]

#: Names accepted by :func:`build_model` (the Mask R-CNN branch).
MODEL_NAMES: Tuple[str, ...] = ("mask_rcnn", "mask_rcnn_small")

#: Names of the YOLO branch (ultralytics model yaml names, built without pretrained weights): YOLOv11 detection and
#: YOLOv8 / YOLOv11 instance segmentation.
YOLO_MODEL_NAMES: Tuple[str, ...] = ("yolo11n", "yolo11s", "yolov8n-seg", "yolov8s-seg", "yolo11n-seg")


def build_model(name: str, **overrides: Any):
    """Build one of :data:`MODEL_NAMES` (a torchvision ``MaskRCNN``), randomly initialised, in training mode.

    ``"mask_rcnn"``: ResNet-50 + FPN, RoIAlign 7x7 (boxes) / 14x14 (masks), mask head of four 3x3 256-channel
    convolutions + 2x deconvolution + per-class sigmoid masks, box head of two 1024-d fully connected layers, 2 classes
    (background, nucleus), 512x512 tiles used as they are (no resizing). ``"mask_rcnn_small"``: the same heads on a
    small BatchNorm backbone with narrower heads (see :mod:`.maskrcnn`). ``overrides`` go to the builder (e.g.
    ``num_classes``, ``box_detections_per_img``, ``anchor_sizes``, ``norm``, ``backbone_weights`` (a local file),
    ``trainable_backbone_layers``).

    Raises:
        ValueError: ``name`` is not one of :data:`MODEL_NAMES` (YOLO names go to :mod:`.yolo`).
        TypeError: an override the builder does not take.
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in MODEL_NAMES:
        hint = " (YOLO models are built by NucleiMaskyloLib.yolo.build_yolo)" if str(name) in YOLO_MODEL_NAMES else ""
        raise ValueError(f"unknown NucleiMaskylo model {name!r}; valid names: {', '.join(MODEL_NAMES)}{hint}")
    from . import maskrcnn

    builder = maskrcnn.build_mask_rcnn if key == "mask_rcnn" else maskrcnn.build_mask_rcnn_small
    unknown = sorted(set(overrides) - maskrcnn.accepted_options(builder))
    if unknown:  # torchvision's MaskRCNN swallows unknown keywords; refuse them here instead
        raise TypeError(f"{name} does not take the option(s) {', '.join(unknown)}")
    return builder(**overrides)
