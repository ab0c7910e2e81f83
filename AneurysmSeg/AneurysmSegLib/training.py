"""Training recipe of GLIA-Net (paper, Supplemental "Input Transformation" and "Training Details") on the mednets
training engine.

* Patches (:class:`GLIAPatchSampler`): each batch holds positive and negative patches in the ratio
  ``positive_fraction`` (1:1, paper and official ``train_pos_neg_ratio``). A positive patch is centred on an
  aneurysm centre (centroid of a connected aneurysm region) moved by a random offset of at most ``jitter`` voxels per
  axis (paper: "a maximum of 38 pixels"; official ``int(0.3 * 96) = 28``); a negative patch has a random position
  (official: its centre inside the head and > 5 % of the patch above 0 HU; here > 5 % above 0 HU, up to 20 draws).
* Augmentation: random flips of each axis and random 90-degree rotations in a random plane (paper: "random flipping and
  rotation"; the official data loader flips only). The patch, its label, the global image and the patch's box in it
  are transformed together so that the global position stays consistent. Optional Gaussian HU noise (official: 1 HU).
* Global label of a patch: more than ``global_label_min_voxels`` (3) aneurysm voxels (official ``data_loader.py``).
* Loss: :class:`mednets.losses.GLIANetLoss` (0.1 global CE + 1.0 local; local 0.8 exp-log Dice + 0.2 pyramid CE,
  gammas 0.3); Adam (lr 2e-4) with the learning rate x0.95 every 10,000 steps; batch 3.
* Validation: the inference pipeline on the validation cases; the monitored metric is the target-wise F1
  ``2 TP / (2 TP + FP + FN)`` (recall and false positives per case are reported too).

The model receives one packed tensor per batch (patch, global image, box; :meth:`GLIANet.pack`), so the training
patch size must equal the global image size (96^3 in the paper configuration, 32^3 in the small one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from mednets.checkpoints import CheckpointMetadata, read_checkpoint_metadata
from mednets.losses import GLIANetLoss
from mednets.progress import CancelCallback, ProgressCallback
from mednets.training import Case, Trainer, TrainingConfig, TrainingResult

from .configs import ANEURYSM, MODULE_NAME, AneurysmSegConfig, config_from_dict
from .inputs import GlobalGeometry, hu_windows

__all__ = ["GLIAPatchSampler", "make_loss", "make_validate_fn", "checkpoint_metadata", "TrainingRequest", "train",
           "aneurysm_centres"]


def aneurysm_centres(label: np.ndarray, min_voxels: int = 1) -> List[Tuple[float, float, float]]:
    """Centroids (voxels) of the connected aneurysm regions with at least ``min_voxels`` voxels."""
    from scipy import ndimage

    mask = np.asarray(label) > 0
    if not mask.any():
        return []
    components, count = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    sizes = ndimage.sum(mask, components, range(1, count + 1))
    centres = ndimage.center_of_mass(mask, components, range(1, count + 1))
    return [tuple(float(c) for c in centre) for centre, size in zip(centres, sizes) if size >= min_voxels]


def _box_mask(box: Sequence[int], size: Sequence[int]) -> np.ndarray:
    mask = np.zeros(tuple(size), dtype=bool)
    mask[box[0]:box[1] + 1, box[2]:box[3] + 1, box[4]:box[5] + 1] = True
    return mask


def _mask_box(mask: np.ndarray) -> Tuple[int, ...]:
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        present = np.nonzero(mask.any(axis=other))[0]
        box.extend([int(present[0]), int(present[-1])])
    return tuple(box)


class GLIAPatchSampler:
    """Balanced positive/negative GLIA-Net training batches with consistent global images and boxes.

    ``next_batch(n)`` -> ``(packed inputs (n, 7, *patch) float32, labels (n, *patch) int64)``. Deterministic for a
    seed; ``state_dict``/``load_state_dict`` make resumed training exact.
    """

    def __init__(self, cases: Sequence[Case], config: AneurysmSegConfig, seed: int = 0) -> None:
        from .pipeline import global_image

        if not cases:
            raise ValueError("no training cases")
        if tuple(config.patch_size) != tuple(config.global_size):
            raise ValueError(f"training packs patch and global image together: patch_size {config.patch_size} must "
                             f"equal global_size {config.global_size}")
        self.config = config
        self.patch = tuple(int(p) for p in config.patch_size)
        self.items = []
        for case in cases:
            if case.label is None:
                raise ValueError(f"training case '{case.name}' has no label map")
            hu = np.asarray(case.image[0], dtype=np.float32)
            glob, geometry = global_image(hu, config)
            self.items.append({"name": case.name, "hu": hu, "label": (case.label > 0).astype(np.int64),
                               "global": glob[0].numpy(), "geometry": geometry,
                               "centres": aneurysm_centres(case.label)})
        self.positive_cases = [i for i, item in enumerate(self.items) if item["centres"]]
        self.rng = np.random.default_rng(seed)
        self.drawn = 0
        #: hand batches over in channels-last layout (oneDNN's fast 3D convolutions on the CPU, 3-4x here)
        self.channels_last = False

    # ---------------------------------------------------------------------------------------------- patches
    def _crop(self, array: np.ndarray, start: Sequence[int], value: float) -> np.ndarray:
        out = np.full(self.patch, value, dtype=array.dtype)
        src, dst = [], []
        for s, p, n in zip(start, self.patch, array.shape):
            a, b = max(s, 0), min(s + p, n)
            src.append(slice(a, b))
            dst.append(slice(a - s, b - s))
        out[tuple(dst)] = array[tuple(src)]
        return out

    def _start(self, item: Dict[str, Any], positive: bool) -> Tuple[int, int, int]:
        shape = item["hu"].shape
        limits = [max(n - p, 0) for n, p in zip(shape, self.patch)]
        if positive:
            centre = item["centres"][int(self.rng.integers(len(item["centres"])))]
            jitter = int(self.config.jitter)
            offset = self.rng.integers(-jitter, jitter + 1, size=3) if jitter > 0 else np.zeros(3, int)
            return tuple(int(min(max(round(c) + o - p // 2, 0), lim) if n >= p else (n - p) // 2)
                         for c, o, p, lim, n in zip(centre, offset, self.patch, limits, shape))
        start = None
        for _ in range(20):
            start = tuple(int(self.rng.integers(0, lim + 1)) if n >= p else (n - p) // 2
                          for lim, p, n in zip(limits, self.patch, shape))
            crop = self._crop(item["hu"], start, float(item["hu"].min()))
            if (crop > 0).mean() > 0.05:
                break
        return start

    def _augment(self, arrays: List[np.ndarray], global_image: np.ndarray, box_mask: np.ndarray):
        """Same flips/rotation for the patch arrays (spatial last 3 axes) and the global image + box mask."""
        def apply(array, op):
            return np.ascontiguousarray(op(array))

        if self.config.flips:
            for axis in range(3):
                if self.rng.random() < 0.5:
                    op = (lambda a, ax=axis: np.flip(a, axis=a.ndim - 3 + ax))
                    arrays = [apply(a, op) for a in arrays]
                    global_image, box_mask = apply(global_image, op), apply(box_mask, op)
        if self.config.rotations:
            k = int(self.rng.integers(0, 4))
            plane = [(0, 1), (0, 2), (1, 2)][int(self.rng.integers(0, 3))]
            if k and self.patch[plane[0]] == self.patch[plane[1]]:
                op = (lambda a, pl=plane, kk=k: np.rot90(a, kk, axes=(a.ndim - 3 + pl[0], a.ndim - 3 + pl[1])))
                arrays = [apply(a, op) for a in arrays]
                global_image, box_mask = apply(global_image, op), apply(box_mask, op)
        return arrays, global_image, box_mask

    def sample(self, positive: bool) -> Tuple[np.ndarray, np.ndarray]:
        """One packed patch (7, *patch) and its label (*patch)."""
        if positive and self.positive_cases:
            item = self.items[self.positive_cases[int(self.rng.integers(len(self.positive_cases)))]]
        else:
            item = self.items[int(self.rng.integers(len(self.items)))]
            positive = False
        start = self._start(item, positive)
        hu = self._crop(item["hu"], start, float(item["hu"].min()))
        label = self._crop(item["label"], start, 0)
        if self.config.noise_hu > 0:
            hu = hu + self.rng.normal(0.0, self.config.noise_hu, hu.shape).astype(np.float32)
        geometry: GlobalGeometry = item["geometry"]
        box_mask = _box_mask(geometry.box(start, self.patch), self.config.global_size)
        (hu, label), glob, box_mask = self._augment([hu, label], item["global"], box_mask)
        local = hu_windows(hu, self.config.hu_windows)
        plane = np.zeros((1,) + self.patch, dtype=np.float32)
        plane.reshape(-1)[:6] = _mask_box(box_mask)
        return np.concatenate([local, glob.astype(np.float32), plane]), label

    def next_batch(self, batch_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
        inputs, labels = [], []
        for _ in range(int(batch_size)):
            # exact balance over the run: patch n is positive when floor((n + 1) f) > floor(n f)
            fraction = float(self.config.positive_fraction)
            positive = math.floor((self.drawn + 1) * fraction + 1e-9) > math.floor(self.drawn * fraction + 1e-9)
            self.drawn += 1
            x, y = self.sample(positive)
            inputs.append(x)
            labels.append(y)
        batch = torch.from_numpy(np.stack(inputs))
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last_3d)
        return batch, torch.from_numpy(np.stack(labels))

    def state_dict(self) -> Dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "drawn": self.drawn}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.drawn = int(state["drawn"])


def make_loss(config: AneurysmSegConfig) -> Callable[..., torch.Tensor]:
    """``loss(output, targets) -> scalar`` for the engine: the GLIA-Net total loss with the configuration's weights."""
    loss = GLIANetLoss(global_weight=config.global_weight, local_weight=config.local_weight,
                       global_min_voxels=config.global_label_min_voxels, dice_weight=config.dice_weight,
                       ce_weight=config.ce_weight, dice_gamma=config.dice_gamma, ce_gamma=config.ce_gamma,
                       activation=config.dice_activation, size_threshold=config.pyramid_threshold,
                       weight_range=config.pyramid_range, negative_weight=config.negative_weight)

    def compute(output: Any, target: torch.Tensor, *extras: torch.Tensor) -> torch.Tensor:
        if isinstance(output, (tuple, list)):
            return loss(output[0], output[1], target)
        return loss(output, None, target)

    compute.loss = loss  # type: ignore[attr-defined]
    return compute


def make_validate_fn(cases: Sequence[Case], config: AneurysmSegConfig,
                     overlap: Optional[Tuple[int, int, int]] = None) -> Callable[[torch.nn.Module], Dict[str, float]]:
    """``validate(model) -> metrics`` over the validation cases (monitor ``target_f1``)."""
    from .pipeline import evaluate_case, predict_probabilities, summarize_cases
    from mednets.metrics.targetwise import find_targets

    validation_config = config if overlap is None else config.replace(window_overlap=tuple(overlap))

    def validate(model: torch.nn.Module) -> Dict[str, float]:
        device = next(model.parameters()).device
        results = []
        for case in cases:
            probability, _ = predict_probabilities(model, case.image[0], validation_config, device=device,
                                                   batch_size=4)
            components, _ = find_targets(probability > config.threshold, case.spacing,
                                         min_voxels=config.min_target_voxels)
            results.append(evaluate_case(probability, case.label > 0, case.spacing, config.threshold,
                                         labels=components > 0))
        summary = summarize_cases(results)
        tp, fp, fn = summary["target_tp"], summary["target_fp"], summary["target_fn"]
        f1 = 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 1.0
        return {"target_f1": float(f1), "target_recall": float(summary["target_recall"]),
                "fp_per_case": float(summary["fp_per_case"]), "dsc": float(summary["voxel_dsc"])}

    return validate


def checkpoint_metadata(config: AneurysmSegConfig, model_overrides: Mapping[str, Any],
                        training_data: str = "") -> CheckpointMetadata:
    """Model card of AneurysmSeg weights."""
    overrides = {k: list(v) if isinstance(v, tuple) else v for k, v in dict(model_overrides).items()}
    return CheckpointMetadata(
        architecture="glia_net", architecture_config=overrides, module=MODULE_NAME, spacing=None,
        intensity_normalization={"method": "hu windows", "windows": [list(w) for w in config.hu_windows]},
        class_names=["background", ANEURYSM.name], class_colors=[(0.0, 0.0, 0.0), tuple(ANEURYSM.color)],
        training_data=training_data or "not stated",
        extra={"config": config.to_dict(), "not_for_clinical_use": True})


@dataclass
class TrainingRequest:
    """What to train, on what, and where (plain data: the widget, the CLI and scripts fill it).

    ``train_cases`` / ``validation_cases``: :class:`mednets.training.Case` with the CTA in HU (1 channel) and the
    aneurysm label (> 0). ``iterations`` defaults to ``config.steps``; ``validate_every`` to a tenth of the run.
    """

    config: AneurysmSegConfig
    train_cases: Sequence[Case]
    validation_cases: Sequence[Case]
    output_dir: Union[str, Path, None]
    iterations: Optional[int] = None
    validate_every: Optional[int] = None
    validation_overlap: Optional[Tuple[int, int, int]] = None
    model_overrides: Mapping[str, Any] = field(default_factory=dict)
    device: str = "auto"
    seed: int = 0
    resume: bool = False
    early_stopping_patience: Optional[int] = None
    initial_weights: Optional[str] = None
    training_data: str = ""
    checkpoint_dtype: Optional[str] = None


def _check_cases(cases: Sequence[Case], what: str) -> None:
    if not cases:
        raise ValueError(f"no {what} cases: give at least one labelled CTA")
    for case in cases:
        if case.label is None:
            raise ValueError(f"{what} case '{case.name}' has no label map")
        if case.num_channels != 1 or case.spatial_ndim != 3:
            raise ValueError(f"{what} case '{case.name}' must be a single-channel 3D CTA")


def train(request: TrainingRequest, progress: Optional[ProgressCallback] = None,
          cancel: Optional[CancelCallback] = None, log: Optional[Callable[[str], None]] = None) -> TrainingResult:
    """Train GLIA-Net with the configuration's recipe; returns the engine's result (best/last checkpoints)."""
    from . import build_model
    from mednets.checkpoints import load_into_model

    config = request.config
    _check_cases(request.train_cases, "training")
    _check_cases(request.validation_cases, "validation")
    overrides = {**dict(config.model_overrides), **dict(request.model_overrides)}
    if request.initial_weights:
        start = read_checkpoint_metadata(request.initial_weights)
        if start.module != MODULE_NAME:
            raise ValueError(f"'{request.initial_weights}' holds weights of {start.module or 'an unknown module'}, "
                             f"not {MODULE_NAME}")
        stored = start.extra.get("config") if isinstance(start.extra, dict) else None
        if stored:
            config = config_from_dict(stored).replace(steps=config.steps)
        overrides = {**{k: tuple(v) if isinstance(v, list) else v for k, v in start.architecture_config.items()},
                     **dict(request.model_overrides)}
    torch.manual_seed(request.seed)
    model = build_model("glia_net", **overrides)
    if request.initial_weights:
        load_into_model(model, request.initial_weights, expected_module=MODULE_NAME, expected_architecture="glia_net")
    sampler = GLIAPatchSampler(list(request.train_cases), config, seed=request.seed)
    from mednets.device import choose_device

    sampler.channels_last = choose_device(request.device, report=lambda message: None).type == "cpu"
    iterations = int(request.iterations or config.steps)
    training_config = TrainingConfig(
        iterations=iterations, batch_size=config.batch_size, patch_size=tuple(config.patch_size),
        optimizer=dict(config.optimizer), schedule={"name": "step", "step_size": int(config.lr_step),
                                                    "gamma": float(config.lr_gamma)},
        validate_every=int(request.validate_every or max(1, iterations // 10)), monitor="target_f1", mode="max",
        early_stopping_patience=request.early_stopping_patience, seed=request.seed,
        output_dir=str(request.output_dir) if request.output_dir is not None else None, resume=request.resume,
        device=request.device, log_every=max(1, min(10, iterations // 10)),
        checkpoint_dtype=request.checkpoint_dtype)
    trainer = Trainer(model, make_loss(config), sampler,
                      make_validate_fn(request.validation_cases, config, request.validation_overlap),
                      training_config, progress=progress, cancel=cancel, log=log,
                      metadata=checkpoint_metadata(config, overrides, request.training_data))
    return trainer.fit()
