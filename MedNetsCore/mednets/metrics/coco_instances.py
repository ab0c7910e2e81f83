"""Instance-level metrics of 2D detections and instance segmentations (nuclei, cells, lesions in one slice).

* :func:`coco_average_precision`: COCO mAP@[.50:.05:.95], mAP@50, mAP@75 and AR of boxes (``iou_type="bbox"``) or masks
  (``"segm"``), one category, computed with the same matching and interpolation as pycocotools' ``COCOeval``
  (greedy matching of score-ranked detections to the highest-IoU unmatched reference at or above each threshold,
  monotone precision envelope sampled at 101 recall points, ``maxDets`` detections per image); the tests check
  equality with pycocotools to 1e-6. Facts about that procedure from cocodataset/cocoapi
  PythonAPI/pycocotools/cocoeval.py (evaluateImg, accumulate, summarize); no code taken from it.
* :func:`detection_precision_recall`: precision and recall of detections above a score threshold, one-to-one matched
  at an IoU threshold (0.5 by default), the "precision / recall" columns of detection papers.
* :func:`aggregated_jaccard_index` (AJI, Kumar et al., IEEE TMI 36(7), 2017) and :func:`panoptic_quality`
  (PQ = DQ x SQ, Kirillov et al., CVPR 2019; unique matching at IoU > 0.5) on two instance label maps.
* :func:`instance_segmentation_metrics`: all of them plus pixel Dice and IoU of the foreground, as one dict.

Masks are boolean arrays (N, H, W) or instance label maps (H, W; 0 = background, each positive value one instance).
Boxes are (N, 4) ``x1, y1, x2, y2`` in pixel units with ``x2 = x1 + width`` (the COCO box convention: a box covering
pixel columns 3..5 is ``3, *, 6, *``). IoUs between masks are exact pixel counts (sparse products), so images with
thousands of instances stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from scipy import sparse

__all__ = [
    "COCO_IOU_THRESHOLDS",
    "COCO_RECALL_THRESHOLDS",
    "InstanceSet",
    "masks_from_label_map",
    "label_map_from_masks",
    "boxes_from_masks",
    "box_iou",
    "mask_iou",
    "coco_average_precision",
    "detection_precision_recall",
    "aggregated_jaccard_index",
    "panoptic_quality",
    "instance_segmentation_metrics",
]

#: IoU thresholds 0.50:0.05:0.95 (as pycocotools builds them).
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
#: Recall sampling points 0:0.01:1 (as pycocotools builds them).
COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, int(np.round(1.0 / 0.01)) + 1, endpoint=True)

ArrayLike = Union[np.ndarray, Sequence]


# ---------------------------------------------------------------------------------------------------------------------
# Representations

def masks_from_label_map(label_map: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Boolean masks (N, H, W) of the instances of a label map, in increasing label order, and their label values."""
    label_map = np.asarray(label_map)
    if label_map.ndim != 2:
        raise ValueError(f"an instance label map is 2D, got shape {label_map.shape}")
    values = np.unique(label_map)
    values = values[values > 0]
    masks = np.zeros((len(values),) + label_map.shape, dtype=bool)
    if len(values):
        index = np.searchsorted(values, label_map)
        inside = label_map > 0
        rows, cols = np.nonzero(inside)
        masks[index[inside], rows, cols] = True
    return masks, values


def label_map_from_masks(masks: np.ndarray, scores: Optional[np.ndarray] = None, dtype=np.int32) -> np.ndarray:
    """Instance label map (1..N) from boolean masks; where masks overlap the higher-scoring one wins (first one when
    ``scores`` is None). Label ``i + 1`` is mask ``i``; a mask hidden completely by others disappears."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    out = np.zeros(masks.shape[1:], dtype=dtype)
    order = np.arange(len(masks)) if scores is None else np.argsort(-np.asarray(scores), kind="mergesort")
    for index in order[::-1]:  # paint the best last
        out[masks[index]] = index + 1
    return out


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """Tight COCO boxes (x1, y1, x2, y2) of boolean masks (N, H, W); an empty mask gives a zero box."""
    masks = np.asarray(masks, dtype=bool)
    boxes = np.zeros((len(masks), 4), dtype=np.float64)
    for i, mask in enumerate(masks):
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        if len(rows):
            boxes[i] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes


@dataclass
class InstanceSet:
    """Instances of one image: boolean ``masks`` (N, H, W) and/or ``boxes`` (N, 4), optional ``scores`` (N,).

    ``label_map`` (H, W) may stand in for ``masks`` (instances in increasing label order); it is kept sparse, which is
    much faster for images with hundreds of instances.
    """

    masks: Optional[np.ndarray] = None
    boxes: Optional[np.ndarray] = None
    scores: Optional[np.ndarray] = None
    label_map: Optional[np.ndarray] = None

    @classmethod
    def from_label_map(cls, label_map: np.ndarray, scores: Optional[np.ndarray] = None) -> "InstanceSet":
        label_map = np.asarray(label_map)
        if label_map.ndim != 2:
            raise ValueError(f"an instance label map is 2D, got shape {label_map.shape}")
        return cls(scores=scores, label_map=label_map)

    def __len__(self) -> int:
        for array in (self.masks, self.boxes):
            if array is not None:
                return len(array)
        if self.label_map is not None:
            return len(_label_values(self.label_map))
        return 0

    @property
    def has_masks(self) -> bool:
        return self.masks is not None or self.label_map is not None

    def get_masks(self) -> np.ndarray:
        if self.masks is None and self.label_map is not None:
            self.masks = masks_from_label_map(self.label_map)[0]
        return self.masks

    def get_boxes(self) -> np.ndarray:
        if self.boxes is None:
            if self.label_map is not None:
                self.boxes = _label_map_boxes(self.label_map)
            elif self.masks is None:
                return np.zeros((0, 4))
            else:
                self.boxes = boxes_from_masks(self.masks)
        return np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)

    def get_scores(self) -> np.ndarray:
        return np.ones(len(self)) if self.scores is None else np.asarray(self.scores, dtype=np.float64).reshape(-1)

    def sparse(self) -> sparse.csr_matrix:
        """(N, H*W) 0/1 sparse matrix of the instance masks."""
        if self.masks is not None:
            return _sparse_masks(self.masks)
        if self.label_map is not None:
            return _sparse_label_map(self.label_map)
        raise ValueError("these instances have no masks")

    def image_shape(self) -> Optional[Tuple[int, int]]:
        if self.label_map is not None:
            return tuple(self.label_map.shape)
        if self.masks is not None:
            return tuple(np.asarray(self.masks).shape[1:])
        return None


def _label_values(label_map: np.ndarray) -> np.ndarray:
    values = np.unique(label_map)
    return values[values > 0]


def _sparse_label_map(label_map: np.ndarray) -> sparse.csr_matrix:
    flat = np.asarray(label_map).ravel()
    pixels = np.flatnonzero(flat)
    values = _label_values(label_map)
    rows = np.searchsorted(values, flat[pixels])
    return sparse.csr_matrix((np.ones(len(pixels)), (rows, pixels)), shape=(len(values), flat.size))


def _label_map_boxes(label_map: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    values = _label_values(label_map)
    boxes = np.zeros((len(values), 4))
    if not len(values):
        return boxes
    dense = np.searchsorted(values, label_map) + 1
    dense[label_map <= 0] = 0
    for i, found in enumerate(ndimage.find_objects(dense.astype(np.int32), max_label=len(values))):
        if found is not None:
            rows, cols = found
            boxes[i] = (cols.start, rows.start, cols.stop, rows.stop)
    return boxes


def _as_instance_set(item) -> InstanceSet:
    if isinstance(item, InstanceSet):
        return item
    if isinstance(item, dict):
        return InstanceSet(masks=item.get("masks"), boxes=item.get("boxes"), scores=item.get("scores"),
                           label_map=item.get("label_map"))
    array = np.asarray(item)
    if array.ndim == 2:
        return InstanceSet.from_label_map(array)
    if array.ndim == 3:
        return InstanceSet(masks=array.astype(bool))
    raise ValueError(f"cannot read instances from an array of shape {array.shape}")


# ---------------------------------------------------------------------------------------------------------------------
# IoU

def box_iou(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of COCO boxes ``x1, y1, x2, y2`` (areas ``(x2 - x1) * (y2 - y1)``)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    width = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    height = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = width * height
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _sparse_masks(masks: np.ndarray) -> sparse.csr_matrix:
    masks = np.asarray(masks, dtype=bool)
    flat = masks.reshape(len(masks), int(np.prod(masks.shape[1:])))
    rows, cols = np.nonzero(flat)
    return sparse.csr_matrix((np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=flat.shape)


def mask_intersections(a: np.ndarray, b: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel intersection matrix of two mask stacks and their areas (exact counts)."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"mask stacks have different image shapes {a.shape[1:]} and {b.shape[1:]}")
    pixels = int(np.prod(a.shape[1:]))
    area_a = a.reshape(len(a), pixels).sum(axis=1).astype(np.float64)
    area_b = b.reshape(len(b), pixels).sum(axis=1).astype(np.float64)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b))), area_a, area_b
    inter = (_sparse_masks(a) @ _sparse_masks(b).T).toarray()
    return inter, area_a, area_b


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of boolean mask stacks (N, H, W) (exact pixel counts; 0 for two empty masks)."""
    inter, area_a, area_b = mask_intersections(a, b)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _sparse_iou(a: sparse.csr_matrix, b: sparse.csr_matrix) -> np.ndarray:
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]))
    inter = (a @ b.T).toarray()
    area_a = np.asarray(a.sum(axis=1)).ravel()
    area_b = np.asarray(b.sum(axis=1)).ravel()
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _iou(dt: InstanceSet, gt: InstanceSet, iou_type: str, dt_order: Optional[np.ndarray] = None) -> np.ndarray:
    """IoU matrix of the detections (rows, in ``dt_order`` when given) against the references (columns)."""
    if iou_type == "segm":
        if not dt.has_masks or not gt.has_masks:
            if len(dt) == 0 or len(gt) == 0:
                n_dt = len(dt) if dt_order is None else len(dt_order)
                return np.zeros((n_dt, len(gt)))
            raise ValueError("iou_type='segm' needs masks for detections and references")
        shapes = dt.image_shape(), gt.image_shape()
        if shapes[0] != shapes[1]:
            raise ValueError(f"detections and references have different image shapes {shapes[0]} and {shapes[1]}")
        dt_sparse = dt.sparse()
        if dt_order is not None:
            dt_sparse = dt_sparse[dt_order]
        return _sparse_iou(dt_sparse, gt.sparse())
    if iou_type == "bbox":
        boxes = dt.get_boxes()
        return box_iou(boxes if dt_order is None else boxes[dt_order], gt.get_boxes())
    raise ValueError(f"iou_type must be 'segm' or 'bbox', got {iou_type!r}")


# ---------------------------------------------------------------------------------------------------------------------
# COCO average precision

def _match_image(ious: np.ndarray, thresholds: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Greedy COCO matching of score-sorted detections (rows) to references (columns) at each IoU threshold.

    Returns ``dt_matched`` (T, D) bool and ``gt_matched`` (T, G) bool. A detection takes the unmatched reference of
    highest IoU that is at least the threshold (capped at 1 - 1e-10); on ties the later reference wins, like
    pycocotools.
    """
    n_dt, n_gt = ious.shape
    dt_matched = np.zeros((len(thresholds), n_dt), dtype=bool)
    gt_matched = np.zeros((len(thresholds), n_gt), dtype=bool)
    if not n_dt or not n_gt:
        return dt_matched, gt_matched
    for t, threshold in enumerate(thresholds):
        floor = min(float(threshold), 1 - 1e-10)
        taken = gt_matched[t]
        for d in range(n_dt):
            row = np.where(taken, -1.0, ious[d])
            best = row.max()
            if best < floor:
                continue
            # the last index holding the maximum (pycocotools replaces on >=)
            g = n_gt - 1 - int(np.argmax(row[::-1] == best))
            taken[g] = True
            dt_matched[t, d] = True
    return dt_matched, gt_matched


def coco_average_precision(
    references: Sequence,
    detections: Sequence,
    iou_type: str = "segm",
    max_dets: int = 100,
    iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS,
) -> Dict[str, float]:
    """COCO AP/AR of one category over several images, equal to pycocotools' ``COCOeval`` (area range "all").

    Args:
        references: per image, the reference instances: an instance label map (H, W), a mask stack (N, H, W), an
            :class:`InstanceSet` or a dict with ``masks``/``boxes``.
        detections: per image, the detected instances with ``scores`` (an :class:`InstanceSet` or dict; a label map
            or mask stack gets score 1 for every instance).
        iou_type: ``"segm"`` (mask IoU) or ``"bbox"`` (box IoU).
        max_dets: detections kept per image (highest scores first); pycocotools' AP uses 100.
        iou_thresholds: the IoU thresholds averaged by ``mAP`` (COCO: 0.50:0.05:0.95).

    Returns:
        ``{"mAP", "mAP50", "mAP75", "AR", "precision_curve_50"...}``: ``mAP`` averages over ``iou_thresholds``;
        ``mAP50``/``mAP75`` at 0.5/0.75 (NaN if that threshold is not in the list); ``AR`` the mean final recall
        over thresholds. Values are -1 where pycocotools gives -1 (no reference instance in any image).
    """
    if len(references) != len(detections):
        raise ValueError(f"{len(references)} reference images but {len(detections)} detection images")
    thresholds = np.asarray(iou_thresholds, dtype=np.float64)
    scores_all: List[np.ndarray] = []
    matched_all: List[np.ndarray] = []
    n_refs = 0
    for reference, detection in zip(references, detections):
        gt = _as_instance_set(reference)
        dt = _as_instance_set(detection)
        scores = dt.get_scores()
        order = np.argsort(-scores, kind="mergesort")[:max_dets]
        ious = _iou(dt, gt, iou_type, order)
        dt_matched, _ = _match_image(ious, thresholds)
        n_refs += len(gt)
        scores_all.append(scores[order])
        matched_all.append(dt_matched)
    result = {"mAP": -1.0, "mAP50": -1.0, "mAP75": -1.0, "AR": -1.0}
    if n_refs == 0:
        return result
    scores = np.concatenate(scores_all) if scores_all else np.zeros(0)
    matched = np.concatenate(matched_all, axis=1) if matched_all else np.zeros((len(thresholds), 0), bool)
    order = np.argsort(-scores, kind="mergesort")
    matched = matched[:, order]
    tp = np.cumsum(matched, axis=1).astype(np.float64)
    fp = np.cumsum(~matched, axis=1).astype(np.float64)
    precisions = np.zeros((len(thresholds), len(COCO_RECALL_THRESHOLDS)))
    recalls = np.zeros(len(thresholds))
    for t in range(len(thresholds)):
        n_det = tp.shape[1]
        recall = tp[t] / n_refs
        precision = tp[t] / (tp[t] + fp[t] + np.spacing(1))
        recalls[t] = recall[-1] if n_det else 0.0
        if n_det:
            precision = np.maximum.accumulate(precision[::-1])[::-1]
            index = np.searchsorted(recall, COCO_RECALL_THRESHOLDS, side="left")
            valid = index < n_det
            precisions[t, valid] = precision[index[valid]]
    result["mAP"] = float(np.mean(precisions))
    result["AR"] = float(np.mean(recalls))
    for key, value in (("mAP50", 0.5), ("mAP75", 0.75)):
        hit = np.flatnonzero(np.isclose(thresholds, value))
        result[key] = float(np.mean(precisions[hit[0]])) if len(hit) else float("nan")
    return result


# ---------------------------------------------------------------------------------------------------------------------
# Precision / recall at one IoU threshold

def detection_precision_recall(
    references: Sequence,
    detections: Sequence,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.5,
    iou_type: str = "segm",
) -> Dict[str, float]:
    """Precision, recall and F1 of the detections with score >= ``score_threshold`` over several images.

    Detections are matched one-to-one to references (highest score first, each to its best free reference with
    IoU >= ``iou_threshold``); TP = matched detections, FP = unmatched detections, FN = unmatched references.
    Precision is NaN without detections, recall NaN without references.
    """
    tp = fp = fn = 0
    for reference, detection in zip(references, detections):
        gt = _as_instance_set(reference)
        dt = _as_instance_set(detection)
        scores = dt.get_scores()
        keep = np.flatnonzero(scores >= score_threshold)
        keep = keep[np.argsort(-scores[keep], kind="mergesort")]
        ious = _iou(dt, gt, iou_type, keep)
        dt_matched, gt_matched = _match_image(ious, np.array([iou_threshold]))
        tp += int(dt_matched.sum())
        fp += int((~dt_matched).sum())
        fn += int((~gt_matched).sum())
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


# ---------------------------------------------------------------------------------------------------------------------
# AJI and PQ on label maps

def _pair_tables(reference: np.ndarray, prediction: np.ndarray):
    """Intersections (G, P), reference areas (G,), prediction areas (P,) of two instance label maps."""
    reference = np.asarray(reference)
    prediction = np.asarray(prediction)
    if reference.shape != prediction.shape or reference.ndim != 2:
        raise ValueError(f"label maps must be 2D of the same shape, got {reference.shape} and {prediction.shape}")
    gt_values, gt_index = np.unique(reference, return_inverse=True)
    dt_values, dt_index = np.unique(prediction, return_inverse=True)
    gt_index = gt_index.reshape(-1)
    dt_index = dt_index.reshape(-1)
    table = sparse.coo_matrix((np.ones(gt_index.size), (gt_index, dt_index)),
                              shape=(len(gt_values), len(dt_values))).toarray()
    gt_fg = gt_values > 0
    dt_fg = dt_values > 0
    inter = table[np.ix_(gt_fg, dt_fg)]
    return inter, table[gt_fg].sum(axis=1), table[:, dt_fg].sum(axis=0)


def aggregated_jaccard_index(reference: np.ndarray, prediction: np.ndarray) -> float:
    """AJI of two instance label maps (Kumar et al. 2017).

    Every reference nucleus G_i is paired with the predicted instance S_j of highest IoU among those touching it;
    C += |G_i ∩ S_j|, U += |G_i ∪ S_j| (a reference touched by no prediction adds |G_i| to U); predictions paired with
    no reference add their area to U. AJI = C / U; 1.0 when both maps are empty, 0.0 when only one is.
    """
    inter, gt_area, dt_area = _pair_tables(reference, prediction)
    if not len(gt_area) and not len(dt_area):
        return 1.0
    if not len(gt_area) or not len(dt_area):
        return 0.0
    union = gt_area[:, None] + dt_area[None, :] - inter
    iou = inter / union
    c = u = 0.0
    used = np.zeros(len(dt_area), dtype=bool)
    for i in range(len(gt_area)):
        if inter[i].max() <= 0:
            u += gt_area[i]
            continue
        j = int(np.argmax(iou[i]))
        c += inter[i, j]
        u += union[i, j]
        used[j] = True
    u += dt_area[~used].sum()
    return float(c / u)


def panoptic_quality(reference: np.ndarray, prediction: np.ndarray, iou_threshold: float = 0.5) -> Dict[str, float]:
    """Panoptic quality of two instance label maps: pairs with IoU > ``iou_threshold`` (0.5 makes them unique) are
    true positives; SQ = mean IoU of the TPs, DQ = TP / (TP + FP/2 + FN/2), PQ = SQ x DQ (Kirillov et al. 2019).
    Both maps empty: PQ = SQ = DQ = 1.0."""
    inter, gt_area, dt_area = _pair_tables(reference, prediction)
    if not len(gt_area) and not len(dt_area):
        return {"pq": 1.0, "sq": 1.0, "dq": 1.0, "tp": 0, "fp": 0, "fn": 0}
    if len(gt_area) and len(dt_area):
        iou = inter / (gt_area[:, None] + dt_area[None, :] - inter)
    else:
        iou = np.zeros((len(gt_area), len(dt_area)))
    pairs = iou > iou_threshold
    if iou_threshold < 0.5:  # not unique any more: keep a one-to-one greedy matching by IoU
        pairs = np.zeros_like(pairs)
        free_gt = np.ones(len(gt_area), bool)
        free_dt = np.ones(len(dt_area), bool)
        for flat in np.argsort(-iou, axis=None, kind="mergesort"):
            i, j = np.unravel_index(flat, iou.shape)
            if iou[i, j] <= iou_threshold:
                break
            if free_gt[i] and free_dt[j]:
                pairs[i, j] = True
                free_gt[i] = free_dt[j] = False
    tp = int(pairs.sum())
    fn = len(gt_area) - int(pairs.any(axis=1).sum())
    fp = len(dt_area) - int(pairs.any(axis=0).sum())
    sq = float(iou[pairs].sum() / tp) if tp else 0.0
    dq = tp / (tp + 0.5 * fp + 0.5 * fn)
    return {"pq": sq * dq, "sq": sq, "dq": dq, "tp": tp, "fp": fp, "fn": fn}


def instance_segmentation_metrics(
    reference: np.ndarray,
    prediction: Union[np.ndarray, InstanceSet, dict],
    scores: Optional[np.ndarray] = None,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.5,
    max_dets: int = 100,
) -> Dict[str, float]:
    """The MASKYLO table for one image: precision, recall, F1 (IoU >= ``iou_threshold``), mAP@50 and mAP@50-95
    (masks, COCO), box mAP@50, pixel Dice and IoU of the foreground, AJI and PQ/SQ/DQ.

    ``reference``: instance label map. ``prediction``: instance label map (with optional per-label ``scores`` in label
    order), or masks + scores (an :class:`InstanceSet`/dict; overlaps are resolved by score for AJI/PQ/Dice).
    """
    reference = np.asarray(reference)
    if isinstance(prediction, (InstanceSet, dict)):
        dt = _as_instance_set(prediction)
        if dt.label_map is not None:
            pred_map = np.asarray(dt.label_map)
        else:
            masks = np.zeros((0,) + reference.shape, bool) if dt.masks is None else np.asarray(dt.masks, bool)
            pred_map = (label_map_from_masks(masks, dt.get_scores()) if len(masks)
                        else np.zeros(reference.shape, np.int32))
            dt = InstanceSet(masks=masks, boxes=dt.boxes, scores=dt.get_scores())
    else:
        pred_map = np.asarray(prediction)
        dt = InstanceSet.from_label_map(pred_map, None if scores is None else np.asarray(scores, float))
    gt = InstanceSet.from_label_map(reference)
    pr = detection_precision_recall([gt], [dt], iou_threshold, score_threshold)
    ap = coco_average_precision([gt], [dt], "segm", max_dets=max_dets)
    ap_box = coco_average_precision([gt], [dt], "bbox", max_dets=max_dets)
    ref_fg = reference > 0
    pred_fg = pred_map > 0
    inter = np.logical_and(ref_fg, pred_fg).sum()
    total = ref_fg.sum() + pred_fg.sum()
    union = np.logical_or(ref_fg, pred_fg).sum()
    pq = panoptic_quality(reference, pred_map)
    return {
        "precision": pr["precision"], "recall": pr["recall"], "f1": pr["f1"],
        "mAP50": ap["mAP50"], "mAP50_95": ap["mAP"], "box_mAP50": ap_box["mAP50"],
        "dice": float(2 * inter / total) if total else 1.0, "iou": float(inter / union) if union else 1.0,
        "aji": aggregated_jaccard_index(reference, pred_map),
        "pq": pq["pq"], "sq": pq["sq"], "dq": pq["dq"],
        "n_reference": len(gt), "n_predicted": len(dt),
    }
