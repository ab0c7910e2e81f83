"""Several metrics at once, for one mask pair or for every label of two label maps (rows of a table node / CSV).

Overlap counts and surface distances are computed once per pair however many metrics are asked for, and the surface
distances only when a distance metric is asked for.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from ..progress import CancelCallback, ProgressCallback, check_cancel, report
from .masks import Spacing, as_binary_pair
from .overlap import ConfusionCounts, confusion_counts
from .surface import SurfaceDistances, surface_distances

__all__ = ["METRIC_NAMES", "DEFAULT_METRICS", "segmentation_metrics", "per_label_metrics"]

_OVERLAP: Dict[str, Callable[[ConfusionCounts], float]] = {
    "dice": lambda c: c.dice,
    "jaccard": lambda c: c.jaccard,
    "precision": lambda c: c.precision,
    "recall": lambda c: c.recall,
    "false_positive_rate": lambda c: c.false_positive_rate,
    "false_negative_rate": lambda c: c.false_negative_rate,
}
_SURFACE: Dict[str, Callable[[SurfaceDistances], float]] = {
    "hausdorff_distance": lambda d: d.hausdorff(),
    "hausdorff_distance_95": lambda d: d.hausdorff(95.0),
    "mean_surface_distance": lambda d: d.mean(),
}

#: Every name :func:`segmentation_metrics` understands (distances are in the units of ``spacing``).
METRIC_NAMES = tuple(_OVERLAP) + tuple(_SURFACE)

#: The metrics reported when none are named.
DEFAULT_METRICS = ("dice", "jaccard", "precision", "recall",
                   "hausdorff_distance", "hausdorff_distance_95", "mean_surface_distance")


def _check_names(metrics: Sequence[str]) -> None:
    if isinstance(metrics, str):
        raise TypeError(f"metrics must be a sequence of metric names, got the string {metrics!r}; "
                        f"write ({metrics!r},)")
    unknown = [name for name in metrics if name not in METRIC_NAMES]
    if unknown:
        raise ValueError(f"unknown metric name(s) {unknown}; available: {list(METRIC_NAMES)}")


def segmentation_metrics(
    pred: object,
    ref: object,
    spacing: Optional[Spacing] = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> Dict[str, float]:
    """The named metrics of binary ``pred`` against binary ``ref``, as ``{name: value}`` in the order asked.

    Args:
        pred, ref: binary masks of the same shape (see :mod:`mednets.metrics.masks`).
        spacing: voxel size per array axis in array-axis order (None: 1.0 each); distances are in its units.
        metrics: names from :data:`METRIC_NAMES`; empty-mask values follow :mod:`mednets.metrics.overlap` and
            :mod:`mednets.metrics.surface` (NaN or inf where a metric is undefined).

    Raises:
        ValueError: an unknown metric name, or bad masks/spacing.
        TypeError: ``metrics`` is a single string instead of a sequence of names.
    """
    _check_names(metrics)
    pred, ref = as_binary_pair(pred, ref)  # once, not once per metric family
    counts = confusion_counts(pred, ref)
    distances = surface_distances(pred, ref, spacing) if any(n in _SURFACE for n in metrics) else None
    return {name: _OVERLAP[name](counts) if name in _OVERLAP else _SURFACE[name](distances) for name in metrics}


def per_label_metrics(
    pred_labels: object,
    ref_labels: object,
    labels: Mapping[int, str],
    spacing: Optional[Spacing] = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCallback] = None,
) -> List[Dict[str, Union[int, str, float]]]:
    """One row of metrics per label of two integer label maps: ``{"label": k, "name": name, <metric>: value, ...}``.

    Each label ``k`` of ``labels`` (value -> name, in the mapping's order) is compared as the masks
    ``pred_labels == k`` and ``ref_labels == k``; labels absent from both maps still get a row (Dice 1.0, distances
    NaN). ``progress``/``cancel`` follow :mod:`mednets.progress` (checked between labels).

    Raises:
        ValueError: the label maps differ in shape, an unknown metric name, or bad spacing.
        OperationCancelled: ``cancel()`` returned True.
    """
    _check_names(metrics)
    pred_labels, ref_labels = np.asarray(pred_labels), np.asarray(ref_labels)
    if pred_labels.shape != ref_labels.shape:
        raise ValueError(f"pred_labels and ref_labels must have the same shape, "
                         f"got pred_labels {pred_labels.shape} and ref_labels {ref_labels.shape}")
    rows: List[Dict[str, Union[int, str, float]]] = []
    for done, (value, name) in enumerate(labels.items()):
        check_cancel(cancel)
        report(progress, done / max(len(labels), 1), f"Metrics of {name}")
        row: Dict[str, Union[int, str, float]] = {"label": int(value), "name": str(name)}
        row.update(segmentation_metrics(pred_labels == value, ref_labels == value, spacing, metrics))
        rows.append(row)
    report(progress, 1.0, "Metrics done")
    return rows
