"""Two-stage inference of AxillaryLNDetect (Altun et al., Fig. 2) and its detection evaluation.

1. Stage 1: the CT is resampled to ``stage1_spacing`` (3 mm, Lanczos-3, :mod:`mednets.lanczos`), normalised, and the
   VOI network runs over it (sliding window with ``output_crop = 20``: 72^3 windows give 32^3 output tiles);
   ``p >= voi_threshold`` is the VOI.
2. Stage 2: the original CT is cropped to the box around the VOI components (plus a margin and the network's
   20-voxel border, so that VOI voxels see real image context rather than padding) and resampled to
   ``stage2_spacing`` (1 mm, Lanczos-3); the LN network runs only on the sliding windows whose output tile holds VOI
   voxels; the LN probability is 0 outside the VOI.
3. Candidates: connected components of ``p >= ln_threshold``, confidence = the maximum probability in the blob
   (:func:`mednets.metrics.froc.detection_candidates`).

Outputs are mapped back onto the input grid (VOI mask and candidate label map by nearest neighbour; candidate centres
in RAS). :func:`single_stage_probability` runs the LN network over the whole volume at ``stage2_spacing`` instead
(the single-stage baseline of the benchmark). Everything here runs without Slicer.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from scipy import ndimage

from mednets.image import Volume
from mednets.inference import sliding_window
from mednets.metrics.froc import (PAPER_SIZE_GROUPS, Candidate, DetectionMatch, detection_candidates,
                                  evaluate_detections, match_detections)
from mednets.progress import CancelCallback, ProgressCallback, check_cancel, report, sub_progress
from mednets.lanczos import resample_to_spacing_lanczos
from mednets.resampling import resample_to_reference
from mednets.sparse_annotations import sphere_instances

from .configs import HU_CLIP, AxillaryConfig, normalise_hu
from .inputs import InputError, IntensityWarning, check_input_volume

__all__ = ["InputError", "IntensityWarning", "check_input_volume", "crop_volume", "resample_ct", "predict_foreground",
           "LymphNodeCandidate", "DetectionResult", "detect_lymph_nodes", "single_stage_probability",
           "reference_instances", "evaluate_results", "OPERATING_POINTS", "metrics_rows"]

#: FP rates per volume at which sensitivity is reported (the paper's Table 2 operating points and 1, 2).
OPERATING_POINTS: Tuple[float, ...] = (1.0, 2.0, 3.3, 4.3, 6.1, 6.7)


def crop_volume(volume: Volume, start: Sequence[int], stop: Sequence[int]) -> Volume:
    """Sub-volume ``array[start:stop]`` (K, J, I) with its own geometry (same directions and spacing): the shared
    :meth:`mednets.image.Volume.crop`."""
    return volume.crop(start, stop)


def resample_ct(volume: Volume, spacing: float) -> Volume:
    """CT resampled to isotropic ``spacing`` with Lanczos-3 interpolation, float32, air outside.

    Uses :func:`mednets.lanczos.resample_to_spacing_lanczos` (separable; radius 3 as in the paper). SimpleITK's
    ``sitkLanczosWindowedSinc`` is the same windowed-sinc kernel with radius 5, point by point, about 50x slower.
    """
    source = Volume(volume.array.astype(np.float32, copy=False), ijk_to_ras=volume.ijk_to_ras)
    if np.allclose(volume.spacing, spacing):
        return source
    return resample_to_spacing_lanczos(source, float(spacing), default_value=HU_CLIP[0])


def predict_foreground(network: torch.nn.Module, hu: np.ndarray, config: AxillaryConfig,
                       device: Union[str, torch.device, None] = None, batch_size: int = 2,
                       progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCallback] = None,
                       report_fallback=None, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Foreground probability (channel 1 of the softmax), float32 of ``hu``'s shape (K, J, I).

    Sliding window of ``config.inference_size`` windows whose ``inference_size - 40`` output tiles cover the image
    with ``config.overlap``; the image is padded with air where windows reach outside it. With ``mask`` (boolean, same
    shape) the network only runs on windows whose output tile contains a mask voxel; the others give 0 (the mask
    travels through the sliding window as a second channel, so tiling, padding and blending stay
    :func:`mednets.inference.sliding_window`'s).
    """
    crop = int(getattr(network, "output_crop", 20))
    if mask is None:
        image = normalise_hu(hu)[np.newaxis]

        def predictor(batch: torch.Tensor) -> torch.Tensor:
            return network(batch)[:, 1:2]
    else:
        if mask.shape != hu.shape:
            raise ValueError(f"mask shape {mask.shape} differs from the image {hu.shape}")
        image = np.stack([normalise_hu(hu), np.asarray(mask, dtype=np.float32)])

        def predictor(batch: torch.Tensor) -> torch.Tensor:
            inner = batch[:, 1, crop:-crop, crop:-crop, crop:-crop]
            keep = (inner > 0.5).flatten(1).any(dim=1)
            shape = (batch.shape[0], 1) + tuple(int(n) - 2 * crop for n in batch.shape[2:])
            if not bool(keep.any()):
                return torch.zeros(shape, dtype=batch.dtype, device=batch.device)
            result = network(batch[keep][:, :1].contiguous())[:, 1:2]
            out = torch.zeros(shape, dtype=result.dtype, device=result.device)
            out[keep] = result
            return out

    network.eval()
    with torch.inference_mode():
        result = sliding_window(image, predictor, config.inference_size, overlap=config.overlap, blend=config.blend,
                                batch_size=batch_size, device=device or _network_device(network), progress=progress,
                                cancel=cancel, output_crop=crop, padding_mode="constant",
                                padding_value=float(normalise_hu(np.float32(HU_CLIP[0]))), report=report_fallback,
                                channels_last=False if mask is not None else None)
    return np.clip(np.asarray(result, dtype=np.float32)[0], 0.0, 1.0)


def _network_device(network: torch.nn.Module) -> torch.device:
    for parameter in network.parameters():
        return parameter.device
    return torch.device("cpu")


@dataclass
class LymphNodeCandidate:
    """One detected lymph node: centre (RAS mm), confidence (max probability), short axis (mm), volume (mm^3)."""

    centre_ras: Tuple[float, float, float]
    confidence: float
    short_axis_mm: float
    volume_mm3: float

    def description(self) -> str:
        return (f"confidence={self.confidence:.3f}; short_axis_mm={self.short_axis_mm:.1f}; "
                f"volume_mm3={self.volume_mm3:.0f}")


@dataclass
class DetectionResult:
    """Output of :func:`detect_lymph_nodes` on the input grid.

    Attributes:
        voi_mask: boolean VOI (K, J, I).
        candidate_labels: int32 label map, candidate ``n`` (1-based, in ``candidates`` order) has value ``n``.
        candidates: sorted by decreasing confidence.
        timings: seconds per step ("stage1", "stage2", "total").
        voi_fraction: fraction of the input volume inside the VOI.
    """

    voi_mask: np.ndarray
    candidate_labels: np.ndarray
    candidates: List[LymphNodeCandidate]
    timings: Dict[str, float] = field(default_factory=dict)
    voi_fraction: float = 0.0

    def froc_candidates(self, volume: Volume) -> List[Candidate]:
        """The candidates as :class:`mednets.metrics.froc.Candidate` on the input grid (for matching)."""
        result = []
        for index, candidate in enumerate(self.candidates, start=1):
            centre = tuple(float(c) for c in volume.ras_to_kji(np.asarray(candidate.centre_ras)[None])[0])
            voxels = int((self.candidate_labels == index).sum())
            result.append(Candidate(index, candidate.confidence, centre, voxels, candidate.short_axis_mm))
        return result


def _component_boxes(mask: np.ndarray, min_voxels: int) -> List[Tuple[np.ndarray, Tuple[slice, ...]]]:
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    boxes = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        component = labels == index
        if int(component.sum()) >= min_voxels:
            boxes.append((component, box))
    return boxes


def _box_on_grid(source: Volume, box: Tuple[slice, ...], target: Volume, margin_mm: float
                 ) -> Tuple[List[int], List[int]]:
    """Index box (start, stop) on ``target``'s grid covering ``box`` of ``source`` plus ``margin_mm``."""
    corners = []
    for k in (box[0].start - 0.5, box[0].stop - 0.5):
        for j in (box[1].start - 0.5, box[1].stop - 0.5):
            for i in (box[2].start - 0.5, box[2].stop - 0.5):
                corners.append((k, j, i))
    ras = source.kji_to_ras(np.asarray(corners, dtype=float))
    kji = target.ras_to_kji(ras)
    margin = margin_mm / np.asarray(target.spacing)
    start = np.floor(kji.min(axis=0) - margin).astype(int)
    stop = np.ceil(kji.max(axis=0) + margin).astype(int) + 1
    return start.tolist(), stop.tolist()


def detect_lymph_nodes(volume: Volume, voi_network: torch.nn.Module, ln_network: torch.nn.Module,
                       config: AxillaryConfig, device: Union[str, torch.device, None] = None, batch_size: int = 2,
                       voi_threshold: Optional[float] = None, ln_threshold: Optional[float] = None,
                       progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCallback] = None,
                       report_fallback=None, voi_override: Optional[np.ndarray] = None) -> DetectionResult:
    """Run both stages on a CT ``volume`` (HU); see the module docstring.

    ``voi_override``: a boolean VOI on the stage-1 grid used instead of the thresholded VOI network output (the VOI
    network still runs unless ``voi_network`` is None); for benchmarks and experiments with a reference VOI.

    Raises :class:`InputError` for unusable input and :class:`mednets.progress.OperationCancelled` on cancel; the
    input is never modified.
    """
    check_input_volume(volume)
    voi_threshold = config.voi_threshold if voi_threshold is None else float(voi_threshold)
    ln_threshold = config.ln_threshold if ln_threshold is None else float(ln_threshold)
    started = time.perf_counter()
    report(progress, 0.0, "Stage 1: resampling to {:g} mm".format(config.stage1_spacing))
    coarse = resample_ct(volume, config.stage1_spacing)
    check_cancel(cancel)
    voi_coarse = None
    if voi_network is not None:
        voi_probability = predict_foreground(voi_network, coarse.array, config, device, batch_size,
                                             sub_progress(progress, 0.02, 0.3, "Stage 1 (VOI): "), cancel,
                                             report_fallback)
        voi_coarse = voi_probability >= voi_threshold
    if voi_override is not None:
        if voi_override.shape != coarse.shape:
            raise ValueError(f"voi_override has shape {voi_override.shape}, the stage-1 grid is {coarse.shape}")
        voi_coarse = np.asarray(voi_override, dtype=bool)
    if voi_coarse is None:
        raise ValueError("give a VOI network or a voi_override")
    stage1_done = time.perf_counter()
    voi_volume = Volume(voi_coarse.astype(np.uint8), ijk_to_ras=coarse.ijk_to_ras)
    voi_mask = resample_to_reference(voi_volume, volume, interpolator="nearest").array.astype(bool)

    candidate_labels = np.zeros(volume.shape, dtype=np.int32)
    candidates: List[LymphNodeCandidate] = []
    boxes = _component_boxes(voi_coarse, config.voi_min_voxels)
    if boxes:
        check_cancel(cancel)
        # one crop around every VOI component: margin + the network's border (20 voxels at the stage-2 spacing), so
        # VOI voxels see real context; windows without VOI voxels are skipped (predict_foreground's mask)
        context_mm = config.voi_margin_mm + int(getattr(ln_network, "output_crop", 20)) * config.stage2_spacing
        corners = [_box_on_grid(coarse, box, volume, context_mm) for _component, box in boxes]
        start = np.min([c[0] for c in corners], axis=0)
        stop = np.max([c[1] for c in corners], axis=0)
        fine = resample_ct(crop_volume(volume, start, stop), config.stage2_spacing)
        kept = np.zeros(coarse.shape, dtype=np.uint8)
        for component, _box in boxes:
            kept[component] = 1
        inside = resample_to_reference(Volume(kept, ijk_to_ras=coarse.ijk_to_ras), fine,
                                       interpolator="nearest").array.astype(bool)
        probability = predict_foreground(ln_network, fine.array, config, device, batch_size,
                                         sub_progress(progress, 0.3, 0.95, "Stage 2 (lymph nodes): "), cancel,
                                         report_fallback, mask=inside)
        probability[~inside] = 0.0
        labels, found = detection_candidates(probability, ln_threshold, spacing=fine.spacing,
                                             min_voxels=config.candidate_min_voxels)
        voxel_mm3 = float(np.prod(fine.spacing))
        remap = np.zeros(len(found) + 1, dtype=np.int32)
        for order, candidate in enumerate(found, start=1):
            remap[candidate.label] = order
            ras = fine.kji_to_ras(np.asarray(candidate.centre)[None])[0]
            candidates.append(LymphNodeCandidate(tuple(float(c) for c in ras), candidate.confidence,
                                                 candidate.short_axis_mm, candidate.voxels * voxel_mm3))
        if found:
            candidate_labels = resample_to_reference(Volume(remap[labels], ijk_to_ras=fine.ijk_to_ras), volume,
                                                     interpolator="nearest").array.astype(np.int32)
    # global order by decreasing confidence
    order = sorted(range(len(candidates)), key=lambda n: -candidates[n].confidence)
    remap = np.zeros(len(candidates) + 1, dtype=np.int32)
    for new, old in enumerate(order, start=1):
        remap[old + 1] = new
    candidate_labels = remap[candidate_labels]
    candidates = [candidates[n] for n in order]
    finished = time.perf_counter()
    report(progress, 1.0, f"Found {len(candidates)} lymph-node candidate(s)")
    return DetectionResult(voi_mask=voi_mask, candidate_labels=candidate_labels, candidates=candidates,
                           timings={"stage1": stage1_done - started, "stage2": finished - stage1_done,
                                    "total": finished - started},
                           voi_fraction=float(voi_mask.mean()))


def single_stage_probability(volume: Volume, ln_network: torch.nn.Module, config: AxillaryConfig,
                             device: Union[str, torch.device, None] = None, batch_size: int = 2,
                             progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCallback] = None
                             ) -> Tuple[Volume, np.ndarray]:
    """The LN network over the WHOLE volume at ``stage2_spacing`` (no VOI): ``(resampled volume, probability)``."""
    check_input_volume(volume)
    fine = resample_ct(volume, config.stage2_spacing)
    return fine, predict_foreground(ln_network, fine.array, config, device, batch_size, progress, cancel)


# ------------------------------------------------------------------------------------------------------- evaluation

def reference_instances(volume: Volume, points_ras: np.ndarray, diameters_mm: Sequence[float]) -> np.ndarray:
    """Sphere label map (1..N) on ``volume``'s grid from reference points (RAS) and short-axis diameters (mm)."""
    points = np.asarray(points_ras, dtype=float).reshape(-1, 3)
    if not len(points):
        return np.zeros(volume.shape, dtype=np.int32)
    centres = volume.ras_to_kji(points)
    return sphere_instances(volume.shape, centres, diameters_mm, volume.spacing)


def instance_sizes_mm(instances: np.ndarray, spacing: Sequence[float]) -> List[float]:
    """Short-axis diameter of each reference object 1..N of a label map (0 for a missing label)."""
    from mednets.metrics.froc import object_short_axis_mm

    sizes = []
    for index in range(1, int(instances.max(initial=0)) + 1):
        coordinates = np.argwhere(instances == index)
        sizes.append(object_short_axis_mm(coordinates, spacing) if len(coordinates) else 0.0)
    return sizes


__all__.append("instance_sizes_mm")


def evaluate_results(volumes: Sequence[Volume], results: Sequence[DetectionResult],
                     references: Sequence[np.ndarray], reference_sizes_mm: Sequence[Sequence[float]],
                     criterion: str = "overlap", operating_points: Sequence[float] = OPERATING_POINTS
                     ) -> Dict[str, dict]:
    """FROC over several volumes, overall and per size group (:data:`mednets.metrics.froc.PAPER_SIZE_GROUPS`).

    ``references[n]`` is a label map (1..R) on ``volumes[n]``'s grid, ``reference_sizes_mm[n]`` the R short-axis
    diameters; ``criterion`` is "overlap" (eq. 1) or "centre" (eq. 2).
    """
    matches: List[DetectionMatch] = []
    for volume, result, reference in zip(volumes, results, references):
        matches.append(match_detections(result.candidate_labels, result.froc_candidates(volume), reference,
                                        criterion))
    return evaluate_detections(matches, reference_sizes_mm, PAPER_SIZE_GROUPS, operating_points)


def metrics_rows(metrics: Dict[str, dict]) -> List[Dict[str, object]]:
    """One table row per size group: targets, detected, FPs, FROC score and sensitivity at each operating point."""
    rows = []
    for group, values in metrics.items():
        row: Dict[str, object] = {"group": group, "lymph nodes": int(values["targets"]),
                                  "detected": int(values["detected"]),
                                  "false positives": int(values.get("false_positives", 0)),
                                  "FROC score": _round(values["froc_score"])}
        for point, sensitivity in values["sensitivity_at"].items():
            row[f"sensitivity @{point:g} FP/vol"] = _round(sensitivity)
        rows.append(row)
    return rows


def _round(value: float) -> float:
    return float("nan") if value is None or math.isnan(value) else round(float(value), 4)
