"""Lesion-level detection evaluation: candidates from a probability map, hit criteria, FROC curves and plots.

Candidates (Altun et al., axillary lymph-node detection, sec. 2.4 and 3.3): the connected components ``P`` of the
thresholded probability map, each with confidence = the maximum probability inside it. A reference object ``G``
(e.g. a sphere from an annotated centre and short-axis diameter) is hit by a candidate ``P`` when

* ``"overlap"`` (eq. 1): ``|G ∩ P| >= 1``;
* ``"centre"`` (eq. 2): ``CoM(G) ∈ P`` or ``CoM(P) ∈ G``;
* ``"candidate_centre"``: ``CoM(P) ∈ G`` only (the CAMELYON16 / MONAI ``compute_fp_tp_probs_nd`` rule).

A candidate hitting no reference is a false positive (its confidence goes to ``fp_probs``); each reference gets the
highest confidence of the candidates hitting it (``tp_probs``, 0 when missed). The FROC curve then gives, for each
threshold ``t`` among the confidences, ``FPs/volume = #{fp_probs >= t} / volumes`` and
``sensitivity = #{tp_probs >= t} / references``. :func:`froc_curve` follows the CAMELYON16 evaluation code as
``monai.metrics.compute_froc_curve_data`` does (the lowest distinct confidence is not used as a threshold; a final
point (0, 0) is appended) and :func:`froc_score` equals ``monai.metrics.compute_froc_score`` (mean interpolated
sensitivity at the given FP rates); both are tested against MONAI. With ``skip_lowest=False`` every distinct
positive confidence is a threshold (what :func:`sensitivity_at_fp` uses for operating points).

Size groups (Altun et al., Fig. 11): the references of a group (by short-axis diameter, e.g. < 5 mm, >= 5 mm,
>= 10 mm) are the targets; candidates hitting only references outside the group are left out; candidates hitting no
reference stay false positives.

Arrays are in array-axis order (K, J, I for Slicer volumes); ``spacing`` in mm in the same order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from scipy import ndimage

__all__ = [
    "HIT_CRITERIA",
    "PAPER_SIZE_GROUPS",
    "Candidate",
    "DetectionMatch",
    "detection_candidates",
    "object_short_axis_mm",
    "match_detections",
    "froc_curve",
    "froc_score",
    "sensitivity_at_fp",
    "evaluate_detections",
    "plot_froc",
]

HIT_CRITERIA = ("overlap", "centre", "candidate_centre")
#: Size groups of the paper (short-axis diameter in mm, [low, high)).
PAPER_SIZE_GROUPS: Dict[str, Tuple[float, float]] = {
    "all": (0.0, math.inf), "<5mm": (0.0, 5.0), ">=5mm": (5.0, math.inf), ">=10mm": (10.0, math.inf)}


@dataclass
class Candidate:
    """One detected blob: ``label`` in the candidate label map, ``confidence`` (max probability), centre of mass
    (voxel indices), voxel count and estimated short-axis diameter (mm)."""

    label: int
    confidence: float
    centre: Tuple[float, ...]
    voxels: int
    short_axis_mm: float


def _spacing(spacing: Optional[Sequence[float]], ndim: int) -> np.ndarray:
    values = np.asarray(spacing if spacing is not None else (1.0,) * ndim, dtype=np.float64)
    if values.shape != (ndim,) or np.any(~np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"spacing must be {ndim} positive values, got {spacing!r}")
    return values


def object_short_axis_mm(coordinates: np.ndarray, spacing: Sequence[float]) -> float:
    """Short-axis diameter of a solid object from its voxel indices (N, ndim): ``2 sqrt(5 lambda_min)`` where
    ``lambda_min`` is the smallest eigenvalue of the physical coordinate covariance (exact for a solid ellipsoid,
    whose variance along a semi-axis ``a`` is ``a^2 / 5``), with the voxel's own extent added (``s^2 / 12`` per axis);
    never below the smallest voxel size."""
    points = np.asarray(coordinates, dtype=np.float64) * np.asarray(spacing, dtype=np.float64)
    spacing = np.asarray(spacing, dtype=np.float64)
    covariance = np.diag(spacing ** 2 / 12.0)
    if len(points) > 1:
        covariance = covariance + np.cov(points.T, bias=True).reshape(len(spacing), len(spacing))
    smallest = float(np.linalg.eigvalsh(covariance)[0])
    ndim = len(spacing)
    factor = ndim + 2  # variance of a solid n-ball along an axis is r^2 / (n + 2)
    return max(2.0 * math.sqrt(max(smallest, 0.0) * factor), float(spacing.min()))


def detection_candidates(probability: np.ndarray, threshold: float = 0.5, spacing: Optional[Sequence[float]] = None,
                         min_voxels: int = 1, connectivity: Optional[int] = None
                         ) -> Tuple[np.ndarray, List[Candidate]]:
    """Connected components of ``probability >= threshold`` as candidates.

    Args:
        probability: foreground probability map (any number of axes).
        threshold: binarisation threshold (0.5).
        spacing: voxel size per axis (mm), for the size estimate.
        min_voxels: components with fewer voxels are dropped.
        connectivity: neighbourhood of :func:`scipy.ndimage.generate_binary_structure` (default: full, 26 in 3D).

    Returns:
        ``(labels, candidates)``: an int32 label map (0 = background, ``candidate.label`` elsewhere, consecutive) and
        the candidates sorted by decreasing confidence.
    """
    probability = np.asarray(probability)
    if probability.ndim < 1 or probability.size == 0:
        raise ValueError("probability must be a non-empty array")
    if not np.all(np.isfinite(probability)):
        raise ValueError("probability contains NaN or infinite values")
    spacing_array = _spacing(spacing, probability.ndim)
    structure = ndimage.generate_binary_structure(probability.ndim, connectivity or probability.ndim)
    labels, count = ndimage.label(probability >= threshold, structure=structure)
    labels = labels.astype(np.int32, copy=False)
    candidates: List[Candidate] = []
    if count == 0:
        return labels, candidates
    keep = np.zeros(count + 1, dtype=np.int32)
    next_label = 0
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        local = labels[box] == index
        voxels = int(local.sum())
        if voxels < min_voxels:
            continue
        next_label += 1
        keep[index] = next_label
        coordinates = np.argwhere(local) + np.array([s.start for s in box])
        confidence = float(probability[box][local].max())
        centre = tuple(float(c) for c in coordinates.mean(axis=0))
        candidates.append(Candidate(next_label, confidence, centre, voxels,
                                    object_short_axis_mm(coordinates, spacing_array)))
    labels = keep[labels]
    candidates.sort(key=lambda c: -c.confidence)
    return labels, candidates


@dataclass
class DetectionMatch:
    """Result of :func:`match_detections` for one volume.

    Attributes:
        hits: (candidates, references) boolean matrix, candidates in the order given, references by label 1..R.
        confidences: candidate confidences in the order given.
        tp_probs: per reference, the highest confidence of the candidates hitting it (0: missed).
        fp_probs: confidences of the candidates hitting no reference.
    """

    hits: np.ndarray
    confidences: np.ndarray
    tp_probs: np.ndarray = field(default=None)
    fp_probs: np.ndarray = field(default=None)

    def __post_init__(self) -> None:
        hit_any = self.hits.any(axis=1) if self.hits.size else np.zeros(len(self.confidences), bool)
        self.fp_probs = self.confidences[~hit_any]
        tp = np.zeros(self.hits.shape[1], dtype=np.float64)
        for ref in range(self.hits.shape[1]):
            hitting = self.confidences[self.hits[:, ref]]
            tp[ref] = hitting.max() if len(hitting) else 0.0
        self.tp_probs = tp

    def restricted(self, references: np.ndarray) -> "DetectionMatch":
        """The match for a subset of references (boolean or index array): candidates hitting only other references
        are left out, candidates hitting none stay false positives."""
        selected = np.zeros(self.hits.shape[1], dtype=bool)
        selected[references] = True
        hit_any = self.hits.any(axis=1)
        keep = ~hit_any | self.hits[:, selected].any(axis=1)
        return DetectionMatch(self.hits[keep][:, selected], self.confidences[keep])


def _round_index(point: Sequence[float], shape: Sequence[int]) -> Optional[Tuple[int, ...]]:
    index = tuple(int(round(p)) for p in point)
    if all(0 <= i < s for i, s in zip(index, shape)):
        return index
    return None


def match_detections(candidate_labels: np.ndarray, candidates: Sequence[Candidate], reference_instances: np.ndarray,
                     criterion: str = "overlap", reference_centres: Optional[Sequence[Sequence[float]]] = None
                     ) -> DetectionMatch:
    """Which candidates hit which references in one volume.

    Args:
        candidate_labels: label map of :func:`detection_candidates`.
        candidates: its candidates (any order; the match keeps this order).
        reference_instances: reference label map, objects labelled 1..R (an absent label is a reference that cannot
            be hit by overlap, e.g. a sphere lost to resampling; it still counts as a target).
        criterion: one of :data:`HIT_CRITERIA`.
        reference_centres: CoM(G) per reference (voxel indices) for ``"centre"``; default: the centroid of each
            reference's voxels.
    """
    if criterion not in HIT_CRITERIA:
        raise ValueError(f"criterion must be one of {HIT_CRITERIA}, got {criterion!r}")
    candidate_labels = np.asarray(candidate_labels)
    reference_instances = np.asarray(reference_instances)
    if candidate_labels.shape != reference_instances.shape:
        raise ValueError(f"candidate labels {candidate_labels.shape} and reference {reference_instances.shape} "
                         f"have different shapes")
    if reference_instances.size and reference_instances.min() < 0:
        raise ValueError("reference labels must be >= 0")
    num_refs = int(reference_instances.max()) if reference_instances.size else 0
    hits = np.zeros((len(candidates), num_refs), dtype=bool)
    confidences = np.array([c.confidence for c in candidates], dtype=np.float64)
    if not len(candidates) or not num_refs:
        return DetectionMatch(hits, confidences)
    row_of = {c.label: row for row, c in enumerate(candidates)}
    if criterion == "overlap":
        both = (candidate_labels > 0) & (reference_instances > 0)
        pairs = np.unique(np.stack([candidate_labels[both], reference_instances[both]], axis=1), axis=0)
        for cand, ref in pairs:
            if int(cand) in row_of:
                hits[row_of[int(cand)], int(ref) - 1] = True
        return DetectionMatch(hits, confidences)
    shape = reference_instances.shape
    for row, candidate in enumerate(candidates):  # CoM(P) in G
        index = _round_index(candidate.centre, shape)
        if index is not None and reference_instances[index] > 0:
            hits[row, int(reference_instances[index]) - 1] = True
    if criterion == "centre":  # or CoM(G) in P
        if reference_centres is None:
            found = ndimage.center_of_mass(reference_instances > 0, reference_instances, np.arange(1, num_refs + 1))
            reference_centres = [None if np.any(np.isnan(c)) else c for c in found]
        for ref, centre in enumerate(reference_centres):
            if centre is None:
                continue
            index = _round_index(centre, shape)
            if index is not None and candidate_labels[index] in row_of:
                hits[row_of[int(candidate_labels[index])], ref] = True
    return DetectionMatch(hits, confidences)


def froc_curve(fp_probs: Sequence[float], tp_probs: Sequence[float], num_targets: int, num_images: int,
               skip_lowest: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """FPs per image and sensitivity at each threshold; thresholds are the distinct confidences in increasing order.

    ``skip_lowest=True`` reproduces ``monai.metrics.compute_froc_curve_data`` (thresholds: every distinct value of
    ``fp_probs`` and ``tp_probs`` but the lowest, then a final point (0, 0)); ``skip_lowest=False`` uses every
    distinct value > 0 (so a reference detected at the lowest confidence still counts), then (0, 0).
    """
    fp = np.asarray(fp_probs, dtype=np.float64).reshape(-1)
    tp = np.asarray(tp_probs, dtype=np.float64).reshape(-1)
    if num_targets < 1 or num_images < 1:
        raise ValueError(f"need num_targets >= 1 and num_images >= 1, got {num_targets}, {num_images}")
    values = np.unique(np.concatenate([fp, tp]))
    thresholds = values[1:] if skip_lowest else values[values > 0]
    fp_sorted, tp_sorted = np.sort(fp), np.sort(tp)
    fps = len(fp_sorted) - np.searchsorted(fp_sorted, thresholds, side="left")
    tps = len(tp_sorted) - np.searchsorted(tp_sorted, thresholds, side="left")
    fps = np.append(fps, 0) / float(num_images)
    sensitivity = np.append(tps, 0) / float(num_targets)
    return fps, sensitivity


def froc_score(fps_per_image: np.ndarray, sensitivity: np.ndarray,
               eval_thresholds: Sequence[float] = (0.25, 0.5, 1, 2, 4, 8)) -> float:
    """Mean sensitivity interpolated at ``eval_thresholds`` FPs per image (as ``monai.metrics.compute_froc_score``)."""
    fps = np.asarray(fps_per_image, dtype=np.float64)
    sens = np.asarray(sensitivity, dtype=np.float64)
    return float(np.mean(np.interp(np.asarray(eval_thresholds, dtype=np.float64), fps[::-1], sens[::-1])))


def sensitivity_at_fp(fps_per_image: np.ndarray, sensitivity: np.ndarray, fp_rate: float) -> float:
    """Highest sensitivity among the operating points with at most ``fp_rate`` FPs per image (0 if none)."""
    fps = np.asarray(fps_per_image, dtype=np.float64)
    sens = np.asarray(sensitivity, dtype=np.float64)
    allowed = fps <= fp_rate + 1e-12
    return float(sens[allowed].max()) if allowed.any() else 0.0


def evaluate_detections(matches: Sequence[DetectionMatch], reference_sizes_mm: Sequence[Sequence[float]],
                        size_groups: Mapping[str, Tuple[float, float]] = PAPER_SIZE_GROUPS,
                        operating_points: Sequence[float] = (1.0, 2.0, 4.3, 6.7),
                        eval_thresholds: Sequence[float] = (0.25, 0.5, 1, 2, 4, 8)) -> Dict[str, dict]:
    """FROC per size group over several volumes.

    Args:
        matches: one :class:`DetectionMatch` per volume.
        reference_sizes_mm: per volume, the short-axis diameter of each reference (label order).
        size_groups: name -> [low, high) in mm.
        operating_points: FP rates per volume at which :func:`sensitivity_at_fp` is reported.

    Returns:
        ``{group: {"fps": array, "sensitivity": array, "targets": n, "froc_score": s, "sensitivity_at": {fp: s},
        "detected": n detected at any confidence}}``; a group without targets gets ``targets = 0`` and NaN scores.
    """
    if len(matches) != len(reference_sizes_mm):
        raise ValueError(f"{len(matches)} matches but {len(reference_sizes_mm)} size lists")
    if not len(matches):
        raise ValueError("no volumes to evaluate")
    results: Dict[str, dict] = {}
    for name, (low, high) in size_groups.items():
        fp_probs, tp_probs = [], []
        for match, sizes in zip(matches, reference_sizes_mm):
            sizes = np.asarray(sizes, dtype=np.float64).reshape(-1)
            if len(sizes) != match.hits.shape[1]:
                raise ValueError(f"{len(sizes)} reference sizes for {match.hits.shape[1]} references")
            part = match.restricted(np.flatnonzero((sizes >= low) & (sizes < high)))
            fp_probs.append(part.fp_probs)
            tp_probs.append(part.tp_probs)
        fp_all = np.concatenate(fp_probs) if fp_probs else np.zeros(0)
        tp_all = np.concatenate(tp_probs) if tp_probs else np.zeros(0)
        targets = len(tp_all)
        if targets == 0:
            results[name] = {"fps": np.zeros(1), "sensitivity": np.zeros(1), "targets": 0, "froc_score": float("nan"),
                             "sensitivity_at": {float(p): float("nan") for p in operating_points}, "detected": 0,
                             "false_positives": len(fp_all)}
            continue
        fps, sens = froc_curve(fp_all, tp_all, targets, len(matches), skip_lowest=False)
        results[name] = {
            "fps": fps, "sensitivity": sens, "targets": targets,
            "froc_score": froc_score(fps, sens, eval_thresholds),
            "sensitivity_at": {float(p): sensitivity_at_fp(fps, sens, p) for p in operating_points},
            "detected": int((tp_all > 0).sum()), "false_positives": len(fp_all)}
    return results


def plot_froc(curves: Mapping[str, Tuple[Sequence[float], Sequence[float]]], path: Union[str, Path],
              title: str = "FROC", operating_points: Sequence[float] = (), max_fp: Optional[float] = None) -> Path:
    """Write a FROC plot (sensitivity against FPs per volume, one step curve per entry of ``curves``) as PNG.

    Uses matplotlib's object API with the Agg canvas (no GUI backend is selected or changed).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    figure = Figure(figsize=(5.0, 4.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    largest = 0.0
    for name, (fps, sens) in curves.items():
        fps = np.asarray(fps, dtype=np.float64)
        sens = np.asarray(sens, dtype=np.float64)
        order = np.argsort(fps, kind="stable")
        axes.step(fps[order], sens[order], where="post", label=str(name))
        largest = max(largest, float(fps.max()) if fps.size else 0.0)
    for point in operating_points:
        axes.axvline(float(point), color="grey", linestyle=":", linewidth=0.8)
    axes.set_xlim(0.0, max_fp if max_fp is not None else max(largest, 1.0) * 1.05)
    axes.set_ylim(0.0, 1.02)
    axes.set_xlabel("false positives per volume")
    axes.set_ylabel("sensitivity")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    if curves:
        axes.legend(loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    from mednets.fileio import atomic_output_path
    with atomic_output_path(path) as temporary:
        figure.savefig(str(temporary), format="png")
    return path
