"""Inference and evaluation pipeline of AneurysmSeg (numpy/torch, no Slicer): GLIA-Net over sliding windows.

1. Checks (:func:`~AneurysmSegLib.inputs.check_input_volume`).
2. Global image: the whole volume resized to ``config.global_size`` (96^3) keeping the voxel aspect ratio, padded with
   air, in the HU windows; the global feature map is computed ONCE per volume (it does not depend on the patch).
3. Sliding windows of ``config.patch_size`` (96^3) with ``config.window_overlap`` (64 voxels, paper) through
   :func:`mednets.inference.sliding_window` with plain averaging of overlapping windows (the official inference sums
   the patch probabilities and divides by the overlap count, fact from MeteorsHub/GLIA-Net ``core.py``). Each window's
   position is needed for the ROI pooling of the global feature: the image handed to the sliding window carries, next
   to the HU channel, one channel per axis with the voxel index + 1 (int16, 0 = padding outside the image), from which
   :class:`GLIAWindowPredictor` reads the window's start. This keeps the shared sliding window untouched (batching,
   out-of-memory fallback, cancel) and costs 8 bytes per voxel.
4. Outputs: the aneurysm probability (softmax) per voxel (the "risk map"), the global head's patch probability averaged
   over the windows covering each voxel (the paper's Figure 6 "global risk distribution map"), the segmentation
   ``probability > threshold`` and a per-target table (volume mm^3, maximal diameter mm, centre, mean probability).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from mednets.image import Volume
from mednets.inference import sliding_window
from mednets.progress import CancelCallback, ProgressCallback, check_cancel, report, sub_progress

from .configs import PAPER, AneurysmSegConfig
from .inputs import InputError, IntensityWarning, GlobalGeometry, check_input_volume, hu_windows

__all__ = ["InputError", "IntensityWarning", "global_image", "window_hu", "GLIAWindowPredictor", "positioned_image",
           "predict_probabilities", "SegmentationResult", "segment_volume", "target_table", "evaluate_case",
           "summarize_cases", "TABLE_COLUMNS"]

#: Columns of the per-target table.
TABLE_COLUMNS: Tuple[str, ...] = ("target", "voxels", "volume_mm3", "max_diameter_mm", "centre_r", "centre_a",
                                  "centre_s", "mean_probability", "max_probability")


def window_hu(hu: torch.Tensor, windows: Sequence[Sequence[float]]) -> torch.Tensor:
    """(B, 1, ...) HU -> (B, len(windows), ...) channels ``(clip(HU, lo, hi) - lo) / (hi - lo)`` (torch version)."""
    return torch.cat([(hu.clamp(float(lo), float(hi)) - float(lo)) / (float(hi) - float(lo)) for lo, hi in windows],
                     dim=1)


def global_image(hu: np.ndarray, config: AneurysmSegConfig = PAPER) -> Tuple[torch.Tensor, GlobalGeometry]:
    """The global image (1, C, *global_size) float32 of an HU volume and the geometry that maps patches onto it.

    The volume is resized (trilinear) into the centred part of the global image that keeps its voxel aspect ratio;
    the rest is air (padding with the volume minimum, as the official ``GlobalLocalizer.reshape_keep_ratio``).
    """
    geometry = GlobalGeometry.of(hu.shape, config.global_size)
    size = geometry.size
    inner = tuple(max(1, int(round(o * n / p))) for o, n, p in zip(geometry.shape, size, geometry.padded_shape))
    offset = tuple(min(max(int(round(b * n / p)), 0), n - i)
                   for b, n, p, i in zip(geometry.pad_before, size, geometry.padded_shape, inner))
    tensor = torch.from_numpy(np.ascontiguousarray(hu, dtype=np.float32))[None, None]
    resized = F.interpolate(tensor, size=inner, mode="trilinear", align_corners=False)
    out = torch.full((1, 1) + size, float(np.min(hu)), dtype=torch.float32)
    out[(slice(None), slice(None)) + tuple(slice(o, o + i) for o, i in zip(offset, inner))] = resized
    return window_hu(out, config.hu_windows), geometry


def positioned_image(hu: np.ndarray) -> torch.Tensor:
    """(1, 4, K, J, I) int16: HU (rounded, clipped to int16) and the voxel index + 1 along K, J and I."""
    shape = hu.shape
    if max(shape) >= 32767:
        raise InputError(f"the image has {max(shape)} voxels along one axis, more than this module handles")
    out = torch.empty((1, 4) + tuple(shape), dtype=torch.int16)
    out[0, 0] = torch.from_numpy(np.clip(np.rint(hu), -32768, 32767).astype(np.int16))
    for axis in range(3):
        index = torch.arange(1, shape[axis] + 1, dtype=torch.int16)
        view = [1, 1, 1]
        view[axis] = shape[axis]
        out[0, 1 + axis] = index.view(view).expand(shape)
    return out


class GLIAWindowPredictor(torch.nn.Module):
    """GLIA-Net on windows of a :func:`positioned_image`, with the global feature map of the volume precomputed.

    ``forward(batch (n, 4, *patch))`` -> ``{"probability": (n, 1, *patch), "global": (n, 1, *patch)}``: the softmax
    aneurysm probability and the global head's patch probability (constant over the window).
    """

    def __init__(self, network: torch.nn.Module, global_features: Optional[torch.Tensor], geometry: GlobalGeometry,
                 windows: Sequence[Sequence[float]]) -> None:
        super().__init__()
        self.network = network
        self.geometry = geometry
        self.windows = tuple(tuple(float(v) for v in w) for w in windows)
        if global_features is not None:
            self.register_buffer("global_features", global_features)
        else:
            self.global_features = None

    @staticmethod
    def window_starts(batch: torch.Tensor) -> List[Tuple[int, int, int]]:
        """Start (voxel index in the image, may be negative when padded) of each window of a positioned batch."""
        starts = []
        for item in batch:
            start = []
            for axis in range(3):
                channel = item[1 + axis]
                other = tuple(a for a in range(3) if a != axis)
                profile = channel.amax(dim=other)
                inside = torch.nonzero(profile > 0)
                if inside.numel() == 0:
                    raise ValueError("a window lies entirely outside the image")
                first = int(inside[0])
                start.append(int(round(float(profile[first]))) - 1 - first)
            starts.append(tuple(start))
        return starts

    def forward(self, batch: torch.Tensor) -> Dict[str, torch.Tensor]:
        hu = batch[:, :1].float()
        local = window_hu(hu, self.windows)
        if batch.dim() == 5 and batch.is_contiguous(memory_format=torch.channels_last_3d):
            local = local.contiguous(memory_format=torch.channels_last_3d)  # keep oneDNN's fast layout
        if self.global_features is None:  # network without global branch
            logits = self.network(local)
            probability = torch.softmax(logits.float(), dim=1)[:, 1:2]
            return {"probability": probability, "global": torch.ones_like(probability)}
        extent = batch.shape[2:]
        boxes = torch.tensor([self.geometry.box(start, extent) for start in self.window_starts(batch)],
                             dtype=torch.float32)
        logits, global_logits = self.network(local, boxes=boxes, global_features=self.global_features)
        probability = torch.softmax(logits.float(), dim=1)[:, 1:2]
        patch = torch.softmax(global_logits.float(), dim=1)[:, 1]
        return {"probability": probability,
                "global": patch.view(-1, 1, 1, 1, 1).expand_as(probability).contiguous()}


def predict_probabilities(network: torch.nn.Module, hu: np.ndarray, config: AneurysmSegConfig = PAPER,
                          device: Union[str, torch.device, None] = None, batch_size: int = 1,
                          progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCallback] = None,
                          report_fallback=None, channels_last: Optional[bool] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Aneurysm probability and global risk maps (K, J, I) float32 of an HU volume (``channels_last``: see
    :func:`mednets.inference.sliding_window`)."""
    network = network.eval()
    device = torch.device(device) if device is not None else next(network.parameters()).device
    with torch.inference_mode():
        features = None
        geometry = GlobalGeometry.of(hu.shape, config.global_size)
        if getattr(network, "with_global", False):
            image, geometry = global_image(hu, config)
            features = network.global_feature_map(image.to(device))
        check_cancel(cancel)
        predictor = GLIAWindowPredictor(network, features, geometry, config.hu_windows)
        result = sliding_window(positioned_image(hu), predictor, tuple(config.patch_size),
                                overlap=config.overlap_fraction, blend="constant", batch_size=batch_size,
                                device=device, progress=progress, cancel=cancel, padding_mode="constant",
                                padding_value=0.0, report=report_fallback, channels_last=channels_last)
    probability = result["probability"][0, 0].float().cpu().numpy()
    risk = result["global"][0, 0].float().cpu().numpy()
    return probability.astype(np.float32), risk.astype(np.float32)


def target_table(labels: np.ndarray, probability: np.ndarray, volume: Volume,
                 min_voxels: int = 0) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """Component map and one row per predicted aneurysm (columns :data:`TABLE_COLUMNS`; centre in RAS mm)."""
    from mednets.metrics.targetwise import find_targets

    components, targets = find_targets(labels > 0, volume.spacing, min_voxels=min_voxels)
    rows = []
    for target in targets:
        region = components == target.label
        values = probability[region]
        ras = volume.kji_to_ras(np.asarray(target.centre_kji))
        rows.append({"target": target.label, "voxels": target.voxels, "volume_mm3": float(target.volume_mm3),
                     "max_diameter_mm": float(target.max_diameter_mm), "centre_r": float(ras[0]),
                     "centre_a": float(ras[1]), "centre_s": float(ras[2]),
                     "mean_probability": float(values.mean()), "max_probability": float(values.max())})
    return components, rows


@dataclass
class SegmentationResult:
    """Output of :func:`segment_volume` on the input's grid.

    Attributes:
        labels: segmentation (K, J, I) uint8, 1 = aneurysm.
        probability: aneurysm probability (K, J, I) float32 (the risk map).
        global_risk: global head's patch probability averaged over the covering windows (K, J, I) float32.
        targets: per-target rows (:data:`TABLE_COLUMNS`).
        threshold: the threshold used.
    """

    labels: np.ndarray
    probability: np.ndarray
    global_risk: np.ndarray
    targets: List[Dict[str, Any]] = field(default_factory=list)
    threshold: float = 0.5


def segment_volume(volume: Volume, network: torch.nn.Module, config: AneurysmSegConfig = PAPER,
                   device: Union[str, torch.device, None] = None, threshold: Optional[float] = None,
                   batch_size: int = 1, progress: Optional[ProgressCallback] = None,
                   cancel: Optional[CancelCallback] = None, report_fallback=None) -> SegmentationResult:
    """Segment the aneurysms of a CTA ``volume`` (HU). Raises InputError / OperationCancelled; never modifies input."""
    check_input_volume(volume)
    threshold = config.threshold if threshold is None else float(threshold)
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    report(progress, 0.0, "Preparing the image")
    hu = np.asarray(volume.array, dtype=np.float32)
    probability, risk = predict_probabilities(network, hu, config, device=device, batch_size=batch_size,
                                              progress=sub_progress(progress, 0.02, 0.95), cancel=cancel,
                                              report_fallback=report_fallback)
    check_cancel(cancel)
    labels = (probability > threshold).astype(np.uint8)
    components, rows = target_table(labels, probability, volume, config.min_target_voxels)
    labels = (components > 0).astype(np.uint8)
    report(progress, 1.0, f"Segmentation done: {len(rows)} aneurysm candidate(s)")
    return SegmentationResult(labels=labels, probability=probability, global_risk=risk, targets=rows,
                              threshold=threshold)


def evaluate_case(probability: np.ndarray, reference: np.ndarray, spacing: Sequence[float], threshold: float = 0.5,
                  labels: Optional[np.ndarray] = None, min_voxels: int = 0) -> Dict[str, Any]:
    """The paper's metrics of one case: voxel-wise (precision, recall, dsc, hd95, auc, ap), target-wise (tp, fp, fn,
    recall) and case-wise flags (predicted / reference positive). ``labels`` defaults to ``probability > threshold``."""
    from mednets.metrics.targetwise import match_targets, voxel_detection_metrics

    reference = np.asarray(reference) > 0
    voxel = voxel_detection_metrics(probability, reference, spacing, threshold)
    predicted = (probability > threshold) if labels is None else (np.asarray(labels) > 0)
    if labels is not None:
        from mednets.metrics import confusion_counts

        counts = confusion_counts(predicted, reference)
        voxel.update(precision=counts.precision, recall=counts.recall, dsc=counts.dice)
    match = match_targets(predicted, reference, spacing, min_voxels=min_voxels)
    return {"voxel": voxel, "target": {"tp": match.tp, "fp": match.fp, "fn": match.fn, "recall": match.recall},
            "case": {"predicted_positive": bool(match.predicted), "reference_positive": bool(match.reference)}}


def summarize_cases(results: Sequence[Dict[str, Any]]) -> Dict[str, float]:
    """Pool several :func:`evaluate_case` results: mean voxel metrics (finite values), target-wise recall and false
    positives per case, case-wise sensitivity/specificity."""
    from mednets.metrics.targetwise import case_wise_metrics

    summary: Dict[str, float] = {}
    for key in ("precision", "recall", "dsc", "hd95", "auc", "ap"):
        values = [r["voxel"][key] for r in results if np.isfinite(r["voxel"][key])]
        summary[f"voxel_{key}"] = float(np.mean(values)) if values else float("nan")
    tp = sum(r["target"]["tp"] for r in results)
    fn = sum(r["target"]["fn"] for r in results)
    fp = sum(r["target"]["fp"] for r in results)
    summary.update({"target_tp": tp, "target_fp": fp, "target_fn": fn,
                    "target_recall": tp / (tp + fn) if tp + fn else float("nan"),
                    "fp_per_case": fp / len(results) if results else float("nan")})
    case = case_wise_metrics([r["case"]["predicted_positive"] for r in results],
                             [r["case"]["reference_positive"] for r in results])
    summary.update({f"case_{k}": v for k, v in case.items()})
    summary["cases"] = len(results)
    return summary
