"""Detections of one image from any branch: boxes, scores, optional masks and the branch that produced each."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np

__all__ = ["BRANCHES", "Detections"]

#: Branch names used in results tables.
BRANCHES = ("mask_rcnn", "yolo_det", "yolo_seg", "fused")


@dataclass
class Detections:
    """N instances in one image (pixel coordinates of that image).

    Attributes:
        boxes: (N, 4) float ``x1, y1, x2, y2`` (COCO convention: ``x2 = x1 + width``).
        scores: (N,) confidences in [0, 1].
        masks: (N, H, W) bool, or None for a detection-only branch.
        branch: per instance, the branch name (see :data:`BRANCHES`).
    """

    boxes: np.ndarray
    scores: np.ndarray
    masks: Optional[np.ndarray] = None
    branch: List[str] = field(default_factory=list)

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if len(self.scores) != len(self.boxes):
            raise ValueError(f"{len(self.boxes)} boxes but {len(self.scores)} scores")
        if self.masks is not None:
            self.masks = np.asarray(self.masks, dtype=bool)
            if self.masks.ndim != 3 or len(self.masks) != len(self.boxes):
                raise ValueError(f"masks must be (N, H, W) with N = {len(self.boxes)}, got {self.masks.shape}")
        if not self.branch:
            self.branch = ["mask_rcnn"] * len(self.boxes)
        elif isinstance(self.branch, str):
            self.branch = [self.branch] * len(self.boxes)
        self.branch = list(self.branch)
        if len(self.branch) != len(self.boxes):
            raise ValueError(f"{len(self.boxes)} boxes but {len(self.branch)} branch names")

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls, shape: Optional[Sequence[int]] = None, branch: str = "mask_rcnn") -> "Detections":
        masks = None if shape is None else np.zeros((0,) + tuple(shape), dtype=bool)
        return cls(np.zeros((0, 4)), np.zeros(0), masks, [])

    def select(self, index) -> "Detections":
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return Detections(self.boxes[index], self.scores[index], None if self.masks is None else self.masks[index],
                          [self.branch[i] for i in index])

    def above(self, score_threshold: float) -> "Detections":
        return self.select(self.scores >= score_threshold)

    def to_instance_set(self):
        from mednets.metrics.coco_instances import InstanceSet

        return InstanceSet(masks=self.masks, boxes=self.boxes, scores=self.scores)

    def label_map(self, dtype=np.int32) -> np.ndarray:
        """Instance label map (1..N in the order of the instances; overlaps go to the higher score)."""
        from mednets.metrics.coco_instances import label_map_from_masks

        if self.masks is None:
            raise ValueError("these detections have no masks (detection-only branch)")
        return label_map_from_masks(self.masks, self.scores, dtype=dtype)
