"""Segmentation metrics on numpy masks (2D, 3D or any dimension), spacing-aware, checked against MONAI and medpy.

* Overlap (:mod:`.overlap`): :func:`dice`, :func:`jaccard`, :func:`precision`, :func:`recall`,
  :func:`false_positive_rate`, :func:`false_negative_rate`, and the underlying :func:`confusion_counts`.
* Surface distances (:mod:`.surface`): :func:`hausdorff_distance` (``percentile=95`` for HD95),
  :func:`mean_surface_distance`, and :func:`surface_distances` for the directed distances themselves.
* Tables (:mod:`.tables`): :func:`segmentation_metrics` (several metrics of one pair) and :func:`per_label_metrics`
  (one row per label of two label maps).

Masks are in array-axis order (K, J, I for Slicer volumes) and ``spacing`` lists the voxel size per axis in the same
order; distances come out in its units. Empty-mask conventions follow MONAI and are stated in each submodule.
"""

from __future__ import annotations

from .masks import Spacing, as_binary_mask, as_binary_pair, foreground_box, normalize_spacing
from .overlap import (
    ConfusionCounts,
    confusion_counts,
    dice,
    false_negative_rate,
    false_positive_rate,
    jaccard,
    precision,
    recall,
)
from .surface import SurfaceDistances, hausdorff_distance, mean_surface_distance, surface_distances, surface_voxels
from .deformation import deformation_metrics, folding_fraction, jacobian_determinant, jacobian_std
from .froc import (Candidate, DetectionMatch, detection_candidates, evaluate_detections, froc_curve, froc_score,
                   match_detections, plot_froc, sensitivity_at_fp)
from .targetwise import (average_precision, case_wise_metrics, find_targets, match_targets, roc_auc,
                         summarize_targets, voxel_detection_metrics)
from .tables import DEFAULT_METRICS, METRIC_NAMES, per_label_metrics, segmentation_metrics
from .coco_instances import (
    aggregated_jaccard_index,
    coco_average_precision,
    detection_precision_recall,
    instance_segmentation_metrics,
    panoptic_quality,
)

__all__ = [
    "Spacing",
    "as_binary_mask",
    "as_binary_pair",
    "foreground_box",
    "normalize_spacing",
    "ConfusionCounts",
    "confusion_counts",
    "dice",
    "jaccard",
    "precision",
    "recall",
    "false_positive_rate",
    "false_negative_rate",
    "SurfaceDistances",
    "surface_voxels",
    "surface_distances",
    "hausdorff_distance",
    "mean_surface_distance",
    "METRIC_NAMES",
    "DEFAULT_METRICS",
    "segmentation_metrics",
    "per_label_metrics",
    "coco_average_precision",
    "detection_precision_recall",
    "aggregated_jaccard_index",
    "panoptic_quality",
    "instance_segmentation_metrics",
]
__all__ += ["jacobian_determinant", "jacobian_std", "folding_fraction", "deformation_metrics"]
__all__ += ["roc_auc", "average_precision", "find_targets", "match_targets", "summarize_targets",
            "case_wise_metrics", "voxel_detection_metrics"]
__all__ += ["Candidate", "DetectionMatch", "detection_candidates", "match_detections", "froc_curve", "froc_score",
            "sensitivity_at_fp", "evaluate_detections", "plot_froc"]
