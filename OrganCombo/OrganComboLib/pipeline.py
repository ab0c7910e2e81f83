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
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from mednets.image import Volume
from mednets.inference import sliding_window
from mednets.progress import CancelCallback, ProgressCallback, check_cancel, report, sub_progress
from mednets.resampling import resample_to_reference, resample_to_spacing

from .configs import OrganComboConfig

__all__ = ["InputError", "IntensityWarning", "check_input_volume", "min_max_normalize",
           "WindowNormalizingPredictor", "predict_probabilities", "probabilities_to_labels", "SegmentationResult",
           "segment_volume", "MAX_VOXELS"]

#: Largest input accepted (voxels): 1024 x 1024 x 512, about 2 GB as float32 per organ channel of probabilities.
MAX_VOXELS = 1024 * 1024 * 512


class InputError(ValueError):
    """The input image cannot be segmented as it is; the message says why and what to do."""


class IntensityWarning(UserWarning):
    """The intensities do not look like the configured modality (the result may be poor)."""


def _spatial_dims_of(volume: Volume) -> int:
    return 2 if volume.is_2d else 3


def check_input_volume(volume: Volume, config: OrganComboConfig) -> None:
    """Refuse what the network cannot segment, warn about what it may segment badly.

    Raises :class:`InputError` for: a vector (RGB) image, a 2D image for a 3D configuration or a 3D volume for a 2D
    one, NaN or infinite voxels, a constant (or empty) image, a spacing that is zero or not finite, and a volume larger
    than :data:`MAX_VOXELS`. Warns (:class:`IntensityWarning`) when PET intensities are negative (CT-like values).
    """
    name = config.title
    if volume.is_vector:
        raise InputError(f"the image has {volume.num_channels} components per voxel (RGB or vector image); {name} "
                         "needs a single-component (greyscale) volume")
    dims = _spatial_dims_of(volume)
    if config.spatial_dims == 3 and dims == 2:
        raise InputError(f"the image is 2D (a single slice) but {name} segments 3D volumes; load the whole series")
    if config.spatial_dims == 2 and dims == 3:
        raise InputError(f"the image is a 3D volume but this {name} model segments 2D images; choose a 3D model or "
                         "extract a frame")
    spacing = np.asarray(volume.spacing, dtype=float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(f"the image spacing {tuple(spacing)} is missing or zero; set the voxel size in the Volumes "
                         "module (Volume Information) before segmenting")
    if volume.array.size > MAX_VOXELS:
        raise InputError(f"the image has {volume.array.size:,} voxels, more than the {MAX_VOXELS:,} this module "
                         "processes at once; crop it (Crop Volume module) or resample it to a coarser spacing")
    array = volume.array
    finite = np.isfinite(array)
    if not finite.all():
        raise InputError(f"the image contains {int((~finite).sum()):,} NaN or infinite voxels; fix or mask them "
                         "first (e.g. with the Mask Volume module)")
    low, high = float(array.min()), float(array.max())
    if not high > low:
        raise InputError(f"the image is constant (every voxel is {low:g}); there is nothing to segment")
    if config.modality == "PT" and low < -100:
        warnings.warn(f"the image has strongly negative values (minimum {low:g}), which PET uptake (SUV or Bq/ml) "
                      "never has; is this a CT? The PET model may segment it poorly", IntensityWarning, stacklevel=2)


def min_max_normalize(array: np.ndarray, low: Optional[float] = None, high: Optional[float] = None) -> np.ndarray:
    """``(array - low) / (high - low)`` as float32 (low/high default to the array's min and max; constant -> 0)."""
    array = np.asarray(array, dtype=np.float32)
    low = float(array.min()) if low is None else float(low)
    high = float(array.max()) if high is None else float(high)
    if not high > low:
        return np.zeros_like(array)
    return (array - low) / (high - low)


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
