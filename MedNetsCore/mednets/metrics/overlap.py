"""Voxel-overlap metrics of two binary masks: Dice, Jaccard, precision, recall, false positive/negative rates.

All of them come from the confusion counts of a prediction ``pred`` against a reference ``ref`` (any dimension, same
shape, see :mod:`mednets.metrics.masks` for the accepted inputs):

* TP = |pred ∧ ref|, FP = |pred ∧ ¬ref|, FN = |¬pred ∧ ref|, TN = |¬pred ∧ ¬ref|.

Empty masks (the conventions of MONAI, which is the oracle of the tests):

* Dice and Jaccard of two empty masks are 1.0 (MONAI ``compute_dice``/``compute_iou`` with ``ignore_empty=False``):
  the prediction found exactly the nothing that was there. One empty mask and one non-empty mask score 0.0.
* Precision, recall and the two rates are NaN when their denominator is 0 (MONAI ``compute_confusion_matrix_metric``):
  precision of an empty prediction, recall and false negative rate of an empty reference, false positive rate of a
  reference that covers the whole array. NaN is what an average over cases should skip (``numpy.nanmean``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .masks import as_binary_pair

__all__ = [
    "ConfusionCounts",
    "confusion_counts",
    "dice",
    "jaccard",
    "precision",
    "recall",
    "false_positive_rate",
    "false_negative_rate",
]


def _ratio(numerator: int, denominator: int) -> float:
    """numerator / denominator as a float, NaN when the denominator is 0."""
    return numerator / denominator if denominator else float("nan")


@dataclass(frozen=True)
class ConfusionCounts:
    """Voxel counts of a binary prediction against a binary reference, and the overlap metrics derived from them."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def dice(self) -> float:
        """Dice (F1) = 2 TP / (2 TP + FP + FN); 1.0 when both masks are empty. Dice, Ecology 26(3), 1945."""
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else 1.0

    @property
    def jaccard(self) -> float:
        """Jaccard index (IoU) = TP / (TP + FP + FN); 1.0 when both masks are empty. Jaccard, New Phytol. 1912."""
        denominator = self.tp + self.fp + self.fn
        return self.tp / denominator if denominator else 1.0

    @property
    def precision(self) -> float:
        """Precision (positive predictive value) = TP / (TP + FP); NaN for an empty prediction."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        """Recall (sensitivity, true positive rate) = TP / (TP + FN); NaN for an empty reference."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def false_positive_rate(self) -> float:
        """False positive rate (fall-out) = FP / (FP + TN); NaN when the reference covers the whole array."""
        return _ratio(self.fp, self.fp + self.tn)

    @property
    def false_negative_rate(self) -> float:
        """False negative rate (miss rate) = FN / (FN + TP); NaN for an empty reference."""
        return _ratio(self.fn, self.fn + self.tp)


def confusion_counts(pred: object, ref: object) -> ConfusionCounts:
    """TP, FP, FN and TN of binary ``pred`` against binary ``ref`` (same shape, any dimension)."""
    pred, ref = as_binary_pair(pred, ref)
    tp = int(np.count_nonzero(pred & ref))
    predicted = int(np.count_nonzero(pred))
    actual = int(np.count_nonzero(ref))
    return ConfusionCounts(tp=tp, fp=predicted - tp, fn=actual - tp, tn=pred.size - predicted - actual + tp)


def dice(pred: object, ref: object) -> float:
    """Dice similarity coefficient 2|P∧R| / (|P| + |R|) in [0, 1]; 1.0 when both masks are empty."""
    return confusion_counts(pred, ref).dice


def jaccard(pred: object, ref: object) -> float:
    """Jaccard index (intersection over union) |P∧R| / |P∨R| in [0, 1]; 1.0 when both masks are empty."""
    return confusion_counts(pred, ref).jaccard


def precision(pred: object, ref: object) -> float:
    """Precision TP / (TP + FP) in [0, 1]; NaN when ``pred`` is empty."""
    return confusion_counts(pred, ref).precision


def recall(pred: object, ref: object) -> float:
    """Recall (sensitivity) TP / (TP + FN) in [0, 1]; NaN when ``ref`` is empty."""
    return confusion_counts(pred, ref).recall


def false_positive_rate(pred: object, ref: object) -> float:
    """False positive rate FP / (FP + TN) in [0, 1]; NaN when ``ref`` is everywhere True."""
    return confusion_counts(pred, ref).false_positive_rate


def false_negative_rate(pred: object, ref: object) -> float:
    """False negative rate FN / (FN + TP) = 1 - recall in [0, 1]; NaN when ``ref`` is empty."""
    return confusion_counts(pred, ref).false_negative_rate
