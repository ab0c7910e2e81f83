"""Fusion of the detections of several branches (Mask R-CNN, YOLO-seg, YOLO detection) into one instance set.

The MASKYLO paper combines its branches "through IoU voting or confidence weighting" (section 1, contributions)
without formulas; the rules here are our concrete reading, plus weighted box fusion:

* Clustering (all methods): detections of all branches are pooled and visited by decreasing score; each one joins the
  first existing cluster whose representative it overlaps with IoU >= ``iou_threshold`` (box IoU) and that has no
  member of its branch yet, otherwise it opens a new cluster.
* ``"iou_voting"``: a cluster survives when at least ``min_votes`` branches voted for it (default: a majority of the
  branches). Box and mask are those of its best-scoring member that has a mask (a segmentation branch refines a
  detection-only box); score = sum of member scores / number of branches.
* ``"confidence_weighting"``: every cluster survives; the box is the confidence-weighted mean of member boxes, the mask
  the confidence-weighted mean of member masks thresholded at 0.5; score = sum of member scores / number of branches.
* ``"wbf"``: weighted box fusion (Solovyev, Wang, Gabruseva, "Weighted boxes fusion", Image Vis. Comput. 107, 2021):
  members are clustered against the running fused box (IoU > threshold), the fused box is the confidence-weighted
  mean of the cluster's boxes, the fused score is the mean member score scaled by min(members, branches) / branches.
  Masks: confidence-weighted mask average thresholded at 0.5.

Clusters with no mask-bearing member (found by a detection-only branch alone) keep ``masks`` rows that are empty when
``box_only_masks="drop"`` (the default removes them) or filled boxes with ``"box"``.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from mednets.metrics.coco_instances import box_iou

from .detections import Detections

__all__ = ["FUSION_METHODS", "fuse"]

FUSION_METHODS = ("iou_voting", "confidence_weighting", "wbf")


def _pool(branches: Sequence[Detections]):
    boxes, scores, branch_index, masks = [], [], [], []
    shape = None
    for b, found in enumerate(branches):
        for i in range(len(found)):
            boxes.append(found.boxes[i])
            scores.append(found.scores[i])
            branch_index.append(b)
            mask = None if found.masks is None else found.masks[i]
            masks.append(mask)
            if mask is not None:
                shape = mask.shape
    return (np.asarray(boxes, float).reshape(-1, 4), np.asarray(scores, float), np.asarray(branch_index, int), masks,
            shape)


def fuse(branches: Sequence[Detections], method: str = "iou_voting", iou_threshold: float = 0.5,
         min_votes: Optional[int] = None, box_only_masks: str = "drop",
         image_shape: Optional[Sequence[int]] = None) -> Detections:
    """Fuse the detections of several branches of the same image (see the module docstring for the rules)."""
    if method not in FUSION_METHODS:
        raise ValueError(f"unknown fusion method {method!r}; choose one of {', '.join(FUSION_METHODS)}")
    if not 0.0 < float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    n_branches = max(1, len(branches))
    votes_needed = (n_branches // 2 + 1) if min_votes is None else int(min_votes)
    boxes, scores, branch_index, masks, shape = _pool(branches)
    if image_shape is not None:
        shape = tuple(image_shape)[:2]
    order = np.argsort(-scores, kind="mergesort")
    clusters: List[List[int]] = []
    representative: List[np.ndarray] = []
    for i in order:
        best = -1
        if clusters:
            ious = box_iou(boxes[i:i + 1], np.asarray(representative))[0]
            for c in np.argsort(-ious, kind="mergesort"):
                overlap_ok = ious[c] > iou_threshold if method == "wbf" else ious[c] >= iou_threshold
                if not overlap_ok:
                    break
                if branch_index[i] not in {branch_index[m] for m in clusters[c]}:
                    best = int(c)
                    break
        if best < 0:
            clusters.append([int(i)])
            representative.append(boxes[i].copy())
        else:
            clusters[best].append(int(i))
            if method == "wbf":
                members = clusters[best]
                weights = scores[members]
                representative[best] = (boxes[members] * weights[:, None]).sum(axis=0) / weights.sum()
    out_boxes, out_scores, out_masks, out_branch = [], [], [], []
    for members, fused_box in zip(clusters, representative):
        members = np.asarray(members)
        weights = scores[members]
        distinct = len(set(branch_index[members].tolist()))
        if method == "iou_voting" and distinct < votes_needed:
            continue
        with_mask = [m for m in members if masks[m] is not None]
        if method == "iou_voting":
            lead = with_mask[0] if with_mask else members[0]  # members are in score order
            box = boxes[lead]
            mask = masks[lead] if with_mask else None
            score = weights.sum() / n_branches
        else:
            box = fused_box if method == "wbf" else (boxes[members] * weights[:, None]).sum(0) / weights.sum()
            mask = None
            if with_mask:
                w = scores[with_mask]
                mean = sum(wi * masks[m].astype(np.float64) for wi, m in zip(w, with_mask)) / w.sum()
                mask = mean >= 0.5
            if method == "wbf":
                score = weights.mean() * min(len(members), n_branches) / n_branches
            else:
                score = weights.sum() / n_branches
        if mask is None and shape is not None:
            if box_only_masks == "drop":
                continue
            mask = np.zeros(shape, bool)
            x0, y0, x1, y1 = np.round(box).astype(int)
            mask[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = True
        out_boxes.append(box)
        out_scores.append(min(1.0, float(score)))
        out_masks.append(mask)
        out_branch.append("fused" if distinct > 1 else _branch_name(branches, branch_index[members[0]]))
    has_masks = shape is not None
    mask_array = np.asarray(out_masks, bool).reshape((-1,) + tuple(shape)) if has_masks else None
    return Detections(np.asarray(out_boxes, float).reshape(-1, 4), np.asarray(out_scores, float), mask_array,
                      out_branch)


def _branch_name(branches: Sequence[Detections], index: int) -> str:
    found = branches[index]
    return found.branch[0] if len(found) else "fused"
