"""Inference pipeline of OrganCombo: input checks, min-max normalisation, max-aggregated sliding window, threshold.

Paper rule (Taghanaki et al. 2019, sec. 2 "Training", last paragraph): the volume is covered by sub-volumes of the
training size with a stride (20 voxels per axis for PET); a voxel belongs to an organ when the activation of ANY
sub-volume covering it exceeds the threshold t, i.e. ``max over windows > t``. We compute exactly that: per organ
channel the maximum over the windows (``mednets.inference.sliding_window(blend="max")``), then ``> t``.

Normalisation (sec. 4a): intensities are min-max normalised to [0, 1] and every sub-volume is normalised by its own
minimum and maximum before it enters the network; :class:`WindowNormalizingPredictor` does that per window.

Everything here is numpy/torch and runs without Slicer; the module's Logic and the CLI call :func:`segment_volume`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from mednets.image import Volume
from mednets.inference import sliding_window
from mednets.progress import CancelCallback, ProgressCallback, check_cancel, report, sub_progress
from mednets.resampling import resample_to_reference, resample_to_spacing

from .configs import OrganComboConfig
from .inputs import MAX_VOXELS, InputError, IntensityWarning, check_input_volume, min_max_normalize

__all__ = ["InputError", "IntensityWarning", "check_input_volume", "min_max_normalize",
           "WindowNormalizingPredictor", "predict_probabilities", "probabilities_to_labels", "SegmentationResult",
           "segment_volume", "evaluate_labels", "MAX_VOXELS"]

class WindowNormalizingPredictor(torch.nn.Module):
    """Wrap a network so that each input window is min-max normalised to [0, 1] on its own (paper sec. 4a).

    Input ``(B, C, *spatial)``; every (window, channel) is scaled by its own min and max; a constant window becomes 0.
    The wrapped network returns sigmoid probabilities ``(B, K, *spatial)``.
    """

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    @staticmethod
    def normalize(batch: torch.Tensor) -> torch.Tensor:
        flat = batch.flatten(2)
        low = flat.amin(dim=2).view(*batch.shape[:2], *([1] * (batch.dim() - 2)))
        high = flat.amax(dim=2).view_as(low)
        scale = torch.where(high > low, high - low, torch.ones_like(high))
        return (batch - low) / scale * (high > low)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.network(self.normalize(batch))


def predict_probabilities(network: torch.nn.Module, image: np.ndarray, config: OrganComboConfig,
                          device: Union[str, torch.device, None] = None, batch_size: int = 1,
                          progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCallback] = None,
                          report_fallback=None) -> np.ndarray:
    """Organ probabilities ``(K, *spatial)`` float32 of a single-channel ``image`` ``(*spatial)``.

    With a window size (PET) the maximum over the sliding windows of ``config.window_size`` with stride
    ``config.window_stride``; without one (MRI, ultrasound) one pass over the whole image (padded to a multiple of the
    network's down-sampling factor by the network wrapper's caller). Windows larger than the image are centred on
    it and padded with the image minimum.
    """
    predictor = WindowNormalizingPredictor(network).eval()
    batch = np.asarray(image, dtype=np.float32)[np.newaxis]
    padding_value = float(batch.min())
    if config.window_size is not None:
        roi = tuple(config.window_size[-batch.ndim + 1:])
        overlap = tuple(config.window_overlap[-batch.ndim + 1:])
    else:
        factor = int(getattr(network, "size_factor", 1))
        roi = tuple(int(math.ceil(s / factor) * factor) for s in batch.shape[1:])
        overlap = 0.0
    with torch.inference_mode():
        result = sliding_window(batch, predictor, roi, overlap=overlap, blend="max", batch_size=batch_size,
                                device=device, progress=progress, cancel=cancel, padding_mode="constant",
                                padding_value=padding_value, report=report_fallback)
    return np.asarray(result, dtype=np.float32)


def probabilities_to_labels(probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Label map (0 = background, k = organ k) from organ probabilities ``(K, *spatial)``.

    A voxel is organ k when its probability exceeds ``threshold`` (the paper's rule); where several organs exceed it
    (sigmoid outputs are independent) the most probable one wins.
    """
    probabilities = np.asarray(probabilities)
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    best = probabilities.argmax(axis=0)
    above = probabilities.max(axis=0) > threshold
    dtype = np.uint8 if probabilities.shape[0] < 255 else np.int32
    return np.where(above, best + 1, 0).astype(dtype)


@dataclass
class SegmentationResult:
    """Output of :func:`segment_volume` on the input's grid.

    Attributes:
        labels: label map ``(K, J, I)`` (value k+1 = ``class_names[k]``).
        probabilities: organ probabilities ``(num_classes, K, J, I)`` float32.
        class_names: organ names in channel order.
        volumes_ml: organ volume in millilitres (from the label map).
    """

    labels: np.ndarray
    probabilities: np.ndarray
    class_names: Tuple[str, ...]
    volumes_ml: Dict[str, float]


def segment_volume(volume: Volume, network: torch.nn.Module, config: OrganComboConfig,
                   device: Union[str, torch.device, None] = None, threshold: Optional[float] = None,
                   batch_size: int = 1, progress: Optional[ProgressCallback] = None,
                   cancel: Optional[CancelCallback] = None, report_fallback=None) -> SegmentationResult:
    """Segment the organs of ``config`` in ``volume`` (checks, resampling, normalisation, inference, threshold).

    Raises :class:`InputError` for unusable input and :class:`mednets.progress.OperationCancelled` on cancel; the
    input ``volume`` is never modified.
    """
    check_input_volume(volume, config)
    threshold = config.threshold if threshold is None else float(threshold)
    report(progress, 0.0, "Preparing the image")
    working = volume
    if config.target_spacing is not None and not np.allclose(volume.spacing[-config.spatial_dims:],
                                                             config.target_spacing[-config.spatial_dims:], rtol=1e-3):
        spacing: Sequence[Optional[float]] = (None,) + tuple(config.target_spacing[1:]) if volume.is_2d \
            else config.target_spacing
        working = resample_to_spacing(volume.with_array(volume.array.astype(np.float32)), spacing, "linear")
    check_cancel(cancel)
    image = min_max_normalize(working.array)
    if volume.is_2d:
        image = image[0]
    probabilities = predict_probabilities(network, image, config, device=device, batch_size=batch_size,
                                          progress=sub_progress(progress, 0.02, 0.95), cancel=cancel,
                                          report_fallback=report_fallback)
    if volume.is_2d:
        probabilities = probabilities[:, np.newaxis]
    if working is not volume:
        probabilities = np.stack([resample_to_reference(working.with_array(channel), volume, "linear").array
                                  for channel in probabilities]).astype(np.float32)
    check_cancel(cancel)
    labels = probabilities_to_labels(probabilities, threshold)
    voxel_ml = float(np.prod(volume.spacing)) / 1000.0
    names = config.class_names
    volumes_ml = {name: float(np.count_nonzero(labels == index + 1)) * voxel_ml for index, name in enumerate(names)}
    report(progress, 1.0, "Segmentation done")
    return SegmentationResult(labels=labels, probabilities=probabilities, class_names=names, volumes_ml=volumes_ml)


def evaluate_labels(labels: np.ndarray, reference: np.ndarray, class_names: Sequence[str],
                    spacing: Sequence[float], progress: Optional[ProgressCallback] = None,
                    cancel: Optional[CancelCallback] = None) -> List[Dict[str, Union[int, str, float]]]:
    """The paper's per-organ metrics (Jaccard, Dice, FPR, FNR) plus the spacing-aware Hausdorff distance (mm).

    ``labels`` and ``reference`` are label maps with value k+1 for ``class_names[k]``. FPR is FP / (FP + TN) over the
    whole image (the scale of the paper's Table 5); FNR is FN / (FN + TP).
    """
    from mednets.metrics import per_label_metrics

    return per_label_metrics(labels, reference, {index + 1: name for index, name in enumerate(class_names)},
                             spacing=spacing, metrics=("jaccard", "dice", "false_positive_rate",
                                                       "false_negative_rate", "hausdorff_distance"),
                             progress=progress, cancel=cancel)
