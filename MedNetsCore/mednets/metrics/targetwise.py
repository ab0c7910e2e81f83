"""Lesion detection metrics: voxel-wise ROC AUC / average precision, target-wise matching, case-wise sensitivity.

Evaluation of Bo et al., "Toward human intervention-free clinical diagnosis of intracranial aneurysm via deep neural
network", Patterns 2 (2021) ("Performance evaluation", Figure 4, Tables 2-4):

* voxel-wise: precision, recall, DSC and HD95 at the probability threshold 0.5 (from :mod:`.overlap` and
  :mod:`.surface`), ROC AUC and average precision over all thresholds (:func:`roc_auc`, :func:`average_precision`,
  equal to scikit-learn's ``roc_auc_score`` and ``average_precision_score``; ties are one threshold);
* target-wise: connected regions (26-connectivity) of the prediction and the reference; a predicted and a reference
  region match when the distance between their centres is smaller than the sum of their radii. The radius of a region
  is that of the sphere of the same volume, ``(3 V / 4 pi)^(1/3)`` (the official code uses ``0.62 * voxels^(1/3)``,
  the same number in voxel units, fact from MeteorsHub/GLIA-Net ``utils/metrics.py`` ``per_target_transform``); here
  centres, radii and distances are in mm. A predicted region matching no reference region is a false positive; a
  reference region matched by at least one predicted region is a true positive, otherwise a false negative. The
  official code also closes the prediction with a 7^3 window and ignores regions of <= 10 voxels on both sides:
  ``closing`` and ``min_voxels`` give that variant (defaults: none);
* case-wise: a case is called positive when its prediction has at least one region; sensitivity over the reference-
  positive cases, specificity over the reference-negative ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .masks import Spacing, as_binary_mask, normalize_spacing

__all__ = ["roc_auc", "average_precision", "Target", "find_targets", "TargetMatch", "match_targets",
           "summarize_targets", "case_wise_metrics", "voxel_detection_metrics"]


def _scores_and_labels(scores: object, labels: object) -> Tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in size: {s.size} vs {y.size}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    return s, y


def _threshold_counts(scores: np.ndarray, labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """True and false positives when thresholding at each distinct score, from the highest score down."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    last_of_value = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    tps = np.cumsum(y, dtype=np.int64)[last_of_value]
    fps = (last_of_value + 1) - tps
    return tps, fps


def roc_auc(scores: object, labels: object) -> float:
    """Area under the ROC curve (trapezoids between distinct thresholds); NaN if only one class is present."""
    s, y = _scores_and_labels(scores, labels)
    positives = int(y.sum())
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    tps, fps = _threshold_counts(s, y)
    tpr = np.r_[0.0, tps / positives]
    fpr = np.r_[0.0, fps / negatives]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def average_precision(scores: object, labels: object) -> float:
    """``sum_k (R_k - R_{k-1}) P_k`` over distinct thresholds (no interpolation); NaN without positives."""
    s, y = _scores_and_labels(scores, labels)
    positives = int(y.sum())
    if positives == 0:
        return float("nan")
    tps, fps = _threshold_counts(s, y)
    precision = tps / (tps + fps)
    recall = tps / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


@dataclass(frozen=True)
class Target:
    """One connected region: its label in the component map, size, centre and extent (mm from the array origin)."""

    label: int
    voxels: int
    volume_mm3: float
    centre_kji: Tuple[float, float, float]
    centre_mm: Tuple[float, float, float]
    radius_mm: float
    max_diameter_mm: float


def _max_diameter(points_mm: np.ndarray, scale: np.ndarray) -> float:
    """Largest distance between two voxels, counting their boxes: centre distance + box extent along it."""
    if len(points_mm) == 1:
        return float(scale.max())
    candidates = points_mm
    if len(points_mm) > 64:
        try:
            from scipy.spatial import ConvexHull

            candidates = points_mm[ConvexHull(points_mm).vertices]
        except Exception:  # flat regions (all voxels in one plane): keep every point
            candidates = points_mm
    best, direction = 0.0, np.zeros(points_mm.shape[1])
    for start in range(0, len(candidates), 512):
        block = candidates[start:start + 512]
        diff = block[:, None, :] - candidates[None, :, :]
        dist = np.sqrt((diff ** 2).sum(-1))
        index = np.unravel_index(int(np.argmax(dist)), dist.shape)
        if dist[index] > best:
            best, direction = float(dist[index]), diff[index] / max(float(dist[index]), 1e-12)
    if best == 0.0:
        return float(scale.max())
    return best + float(np.abs(direction) @ scale)


def find_targets(mask: object, spacing: Optional[Spacing] = None, min_voxels: int = 0,
                 closing: int = 0) -> Tuple[np.ndarray, List[Target]]:
    """Connected regions (full connectivity) of a binary mask: ``(component map, [Target, ...])``.

    Regions with ``voxels <= min_voxels`` are dropped (and zeroed in the component map); ``closing`` > 0 first applies
    a morphological closing with a cube of side ``closing``.
    """
    from scipy import ndimage

    array = as_binary_mask(mask)
    scale = np.asarray(normalize_spacing(spacing, array.ndim), dtype=np.float64)
    if closing and closing > 1:
        structure = np.ones((int(closing),) * array.ndim, bool)
        array = ndimage.binary_closing(np.pad(array, closing), structure)[tuple(slice(closing, -closing)
                                                                                  for _ in range(array.ndim))]
    labels, count = ndimage.label(array, structure=np.ones((3,) * array.ndim))
    targets: List[Target] = []
    boxes = ndimage.find_objects(labels)
    keep = np.zeros(count + 1, dtype=np.int64)
    voxel_volume = float(np.prod(scale))
    for number, box in enumerate(boxes, start=1):
        region = labels[box] == number
        voxels = int(region.sum())
        if voxels <= min_voxels:
            continue
        new_label = len(targets) + 1
        keep[number] = new_label
        index = np.argwhere(region) + np.array([b.start for b in box])
        centre = index.mean(axis=0)
        points_mm = index * scale
        volume = voxels * voxel_volume
        targets.append(Target(new_label, voxels, volume, tuple(float(c) for c in centre),
                              tuple(float(c) for c in centre * scale),
                              (3.0 * volume / (4.0 * math.pi)) ** (1.0 / 3.0), _max_diameter(points_mm, scale)))
    return keep[labels].astype(np.int32), targets


@dataclass
class TargetMatch:
    """Target-wise result of one case."""

    tp: int
    fp: int
    fn: int
    predicted: List[Target] = field(default_factory=list)
    reference: List[Target] = field(default_factory=list)
    pairs: List[Tuple[int, int]] = field(default_factory=list)  # (predicted label, reference label)

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def precision(self) -> float:
        hits = len(self.predicted) - self.fp
        return hits / len(self.predicted) if self.predicted else float("nan")


def match_targets(pred: object, ref: object, spacing: Optional[Spacing] = None, min_voxels: int = 0,
                  closing: int = 0) -> TargetMatch:
    """Match the regions of a binary prediction against those of a binary reference (module doc rule)."""
    pred_mask = as_binary_mask(pred, "pred")
    ref_mask = as_binary_mask(ref, "ref")
    if pred_mask.shape != ref_mask.shape:
        raise ValueError(f"pred and ref differ in shape: {pred_mask.shape} vs {ref_mask.shape}")
    _, predicted = find_targets(pred_mask, spacing, min_voxels, closing)
    _, reference = find_targets(ref_mask, spacing, min_voxels)
    pairs = []
    for p in predicted:
        for r in reference:
            if math.dist(p.centre_mm, r.centre_mm) < p.radius_mm + r.radius_mm:
                pairs.append((p.label, r.label))
    matched_pred = {p for p, _ in pairs}
    matched_ref = {r for _, r in pairs}
    return TargetMatch(tp=len(matched_ref), fp=len(predicted) - len(matched_pred), fn=len(reference) - len(matched_ref),
                       predicted=predicted, reference=reference, pairs=pairs)


def summarize_targets(matches: Sequence[TargetMatch]) -> Dict[str, float]:
    """Pooled target-wise recall and precision, and false positives per case, over several cases."""
    tp = sum(m.tp for m in matches)
    fp = sum(m.fp for m in matches)
    fn = sum(m.fn for m in matches)
    predicted = sum(len(m.predicted) for m in matches)
    return {"tp": tp, "fp": fp, "fn": fn, "recall": tp / (tp + fn) if tp + fn else float("nan"),
            "precision": (predicted - fp) / predicted if predicted else float("nan"),
            "fp_per_case": fp / len(matches) if matches else float("nan")}


def case_wise_metrics(predicted_positive: Sequence[bool], reference_positive: Sequence[bool]) -> Dict[str, float]:
    """Case-wise sensitivity, specificity and accuracy (NaN where a group is empty)."""
    p = np.asarray(predicted_positive, dtype=bool)
    r = np.asarray(reference_positive, dtype=bool)
    if p.shape != r.shape:
        raise ValueError("predicted_positive and reference_positive differ in length")
    tp, tn = int((p & r).sum()), int((~p & ~r).sum())
    positives, negatives = int(r.sum()), int((~r).sum())
    return {"sensitivity": tp / positives if positives else float("nan"),
            "specificity": tn / negatives if negatives else float("nan"),
            "accuracy": (tp + tn) / p.size if p.size else float("nan")}


def voxel_detection_metrics(probabilities: object, reference: object, spacing: Optional[Spacing] = None,
                            threshold: float = 0.5) -> Dict[str, float]:
    """The paper's voxel-wise metrics of a probability map against a binary reference.

    precision, recall, dsc (at ``probability > threshold``), hd95 (mm; NaN when both masks are empty, inf when one is),
    auc and ap over all thresholds.
    """
    from .overlap import confusion_counts
    from .surface import hausdorff_distance

    prob = np.asarray(probabilities, dtype=np.float32)
    ref = as_binary_mask(reference, "reference")
    if prob.shape != ref.shape:
        raise ValueError(f"probabilities and reference differ in shape: {prob.shape} vs {ref.shape}")
    pred = prob > threshold
    counts = confusion_counts(pred, ref)
    hd95 = hausdorff_distance(pred, ref, spacing, percentile=95) if (pred.any() and ref.any()) else (
        float("nan") if not (pred.any() or ref.any()) else float("inf"))
    return {"precision": counts.precision, "recall": counts.recall, "dsc": counts.dice, "hd95": float(hd95),
            "auc": roc_auc(prob, ref), "ap": average_precision(prob, ref)}
