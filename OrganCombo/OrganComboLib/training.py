"""Training recipe of OrganCombo (Taghanaki et al. 2019, sec. 3) on the mednets training engine.

* Sub-volumes: per training volume and epoch, ``patches_per_organ`` random sub-volumes containing each organ plus
  ``background_patches`` sub-volumes without any organ (100 + 100 per organ for PET, 80^3 voxels). The engine's
  :class:`~mednets.training.PatchSampler` draws organ patches with the organ chosen uniformly among the organs of the
  case and background patches that contain no organ (``background="negative"``), with the organ fraction K / (K + 1),
  so one epoch (``patches_per_volume x volumes`` patches) has the paper's composition in expectation. MRI and
  ultrasound train on whole volumes.
* Each sub-volume is min-max normalised to [0, 1] on its own (sec. 4a) by :func:`normalize_patch`, the same as
  :class:`~OrganComboLib.pipeline.WindowNormalizingPredictor` does at inference.
* Loss: :class:`mednets.losses.ComboLoss` (alpha, beta of the configuration) on the sigmoid outputs; it turns the
  sampler's label maps into the multi-label one-hot target without background channel.
* ADADELTA (lr 1, rho 0.95, eps 1e-8, no decay); validation once per epoch; the best epoch by validation mean Dice is
  kept (``best.safetensors``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from mednets.checkpoints import CheckpointMetadata, read_checkpoint_metadata
from mednets.losses import ComboLoss
from mednets.progress import CancelCallback, ProgressCallback
from mednets.training import Case, PatchSampler, Trainer, TrainingConfig, TrainingResult

from .configs import MODULE_NAME, OrganComboConfig, config_from_dict
from .pipeline import min_max_normalize, predict_probabilities, probabilities_to_labels

__all__ = ["MODULE_NAME", "normalize_patch", "TrainingRequest", "make_validate_fn",
           "checkpoint_metadata", "train"]

def normalize_patch(image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Augmentation hook of the patch sampler: min-max normalise each channel of the patch to [0, 1] (sec. 4a)."""
    return np.stack([min_max_normalize(channel) for channel in image]), label


@dataclass
class TrainingRequest:
    """What to train, on what, and where (plain data: the widget, the CLI and scripts fill it).

    Attributes:
        config: the task configuration (organs, patch size, loss weights, optimizer).
        train_cases / validation_cases: labelled cases (label k+1 = ``config.classes[k]``).
        output_dir: where checkpoints, the history and its plot go.
        epochs: number of epochs (one epoch = ``config.patches_per_volume()`` patches per training volume);
            ``iterations`` overrides it when given.
        iterations: optimizer steps (overrides ``epochs``).
        validate_every: iterations between validations (default: once per epoch).
        validation_stride: sliding-window stride used for validation (default: half the window, faster than the
            test-time stride; the best epoch is chosen on it).
        model_overrides: extra ``build_model`` arguments (e.g. smaller widths).
        device, seed, resume, early_stopping_patience: see :class:`mednets.training.TrainingConfig`.
        initial_weights: checkpoint to fine-tune from (same architecture).
        training_data: description stored in the checkpoint's model card.
    """

    config: OrganComboConfig
    train_cases: Sequence[Case]
    validation_cases: Sequence[Case]
    output_dir: Union[str, Path]
    epochs: Optional[int] = None
    iterations: Optional[int] = None
    validate_every: Optional[int] = None
    validation_stride: Optional[Tuple[int, ...]] = None
    model_overrides: Mapping[str, Any] = field(default_factory=dict)
    device: str = "auto"
    seed: int = 0
    resume: bool = False
    early_stopping_patience: Optional[int] = None
    initial_weights: Optional[str] = None
    training_data: str = ""
    checkpoint_dtype: Optional[str] = None

    def iterations_per_epoch(self) -> int:
        patches = self.config.patches_per_volume() if self.config.patch_size is not None else 1
        return max(1, math.ceil(patches * len(self.train_cases) / self.config.batch_size))


def _check_cases(cases: Sequence[Case], config: OrganComboConfig, what: str) -> None:
    if not cases:
        raise ValueError(f"no {what} cases: give at least one labelled image")
    for case in cases:
        if case.label is None:
            raise ValueError(f"{what} case '{case.name}' has no label map")
        if case.num_channels != 1:
            raise ValueError(f"{what} case '{case.name}' has {case.num_channels} channels; OrganCombo uses one")
        top = int(case.label.max())
        if top > config.num_classes:
            raise ValueError(f"{what} case '{case.name}' has label value {top}, but the '{config.name}' "
                             f"configuration has {config.num_classes} organs ({', '.join(config.class_names)})")


def make_validate_fn(cases: Sequence[Case], config: OrganComboConfig, stride: Optional[Tuple[int, ...]] = None
                     ) -> Callable[[torch.nn.Module], Dict[str, float]]:
    """``validate_fn(model) -> {"dice": mean, "dice_<organ>": ...}`` over the validation cases.

    Each case goes through the inference pipeline (per-window normalisation, max aggregation, threshold); the mean
    Dice is over organs present in the reference or predicted (an organ absent from both is skipped).
    """
    from mednets.metrics import dice

    validation_config = config
    if config.window_size is not None:
        stride = tuple(stride) if stride is not None else tuple(max(1, w // 2) for w in config.window_size)
        validation_config = config.replace(window_stride=stride)

    def validate(model: torch.nn.Module) -> Dict[str, float]:
        device = next(model.parameters()).device
        per_organ: Dict[str, List[float]] = {name: [] for name in config.class_names}
        for case in cases:
            image = min_max_normalize(case.image[0])
            probabilities = predict_probabilities(model, image, validation_config, device=device)
            labels = probabilities_to_labels(probabilities, config.threshold)
            for index, name in enumerate(config.class_names):
                predicted, reference = labels == index + 1, case.label == index + 1
                if predicted.any() or reference.any():
                    per_organ[name].append(dice(predicted, reference))
        scores = {f"dice_{name.replace(' ', '_')}": float(np.mean(values)) if values else float("nan")
                  for name, values in per_organ.items()}
        finite = [value for value in scores.values() if math.isfinite(value)]
        return {"dice": float(np.mean(finite)) if finite else 0.0, **scores}

    return validate


def checkpoint_metadata(config: OrganComboConfig, model_overrides: Mapping[str, Any], training_data: str = ""
                        ) -> CheckpointMetadata:
    """Model card of OrganCombo weights: architecture + overrides, organs with colours, normalisation, config."""
    return CheckpointMetadata(
        architecture=config.model, architecture_config=dict(model_overrides), module=MODULE_NAME,
        spacing=config.target_spacing,
        intensity_normalization={"method": "min-max per window", "range": [0.0, 1.0]},
        class_names=list(config.class_names), class_colors=[list(c.color) for c in config.classes],
        training_data=training_data or "not stated",
        extra={"config": config.to_dict(), "not_for_clinical_use": True})


def train(request: TrainingRequest, progress: Optional[ProgressCallback] = None,
          cancel: Optional[CancelCallback] = None, log: Optional[Callable[[str], None]] = None) -> TrainingResult:
    """Train an OrganCombo network with the paper's recipe; returns the engine's result (best/last checkpoints)."""
    from . import build_model
    from mednets.checkpoints import load_into_model

    config = request.config
    _check_cases(request.train_cases, config, "training")
    _check_cases(request.validation_cases, config, "validation")
    overrides = {"in_channels": 1, "out_channels": config.num_classes, "spatial_dims": config.spatial_dims,
                 **dict(config.model_overrides), **dict(request.model_overrides)}
    if request.initial_weights:  # fine-tuning: the network is the one the weights were trained as
        start = read_checkpoint_metadata(request.initial_weights)
        if start.module != MODULE_NAME:
            raise ValueError(f"'{request.initial_weights}' holds weights of {start.module or 'an unknown module'}, "
                             f"not {MODULE_NAME}")
        if list(start.class_names) != list(config.class_names):
            raise ValueError(f"the starting weights segment {start.class_names}, the training data "
                             f"{list(config.class_names)}; choose weights of the same configuration")
        stored = start.extra.get("config") if isinstance(start.extra, dict) else None
        config = config_from_dict(stored) if stored else config.replace(model=start.architecture)
        overrides = {**dict(start.architecture_config), **dict(request.model_overrides)}
    torch.manual_seed(request.seed)
    model = build_model(config.model, **overrides)
    if request.initial_weights:
        load_into_model(model, request.initial_weights, expected_module=MODULE_NAME,
                        expected_architecture=config.model)
    if config.patch_size is not None:
        patch_size = tuple(config.patch_size[-config.spatial_dims:])
    else:  # whole volumes, padded to the network's down-sampling factor
        factor = int(getattr(model, "size_factor", 1))
        largest = np.max([case.spatial_shape for case in request.train_cases], axis=0)
        patch_size = tuple(int(math.ceil(s / factor) * factor) for s in largest)
    sampler = PatchSampler(list(request.train_cases), patch_size,
                           foreground_fraction=config.foreground_fraction if config.patch_size is not None else 0.0,
                           classes=list(range(1, config.num_classes + 1)), seed=request.seed,
                           augment=normalize_patch, background="negative")
    per_epoch = request.iterations_per_epoch()
    iterations = request.iterations or per_epoch * int(request.epochs or config.epochs)
    training_config = TrainingConfig(
        iterations=int(iterations), batch_size=config.batch_size, patch_size=patch_size,
        optimizer=dict(config.optimizer), schedule={"name": "constant"},
        validate_every=int(request.validate_every or per_epoch), monitor="dice", mode="max",
        early_stopping_patience=request.early_stopping_patience, seed=request.seed,
        output_dir=str(request.output_dir), resume=request.resume, device=request.device,
        log_every=max(1, min(10, per_epoch)), checkpoint_dtype=request.checkpoint_dtype)
    trainer = Trainer(model, ComboLoss(alpha=config.alpha, beta=config.beta), sampler,
                      make_validate_fn(request.validation_cases, config, request.validation_stride),
                      training_config, progress=progress, cancel=cancel, log=log,
                      metadata=checkpoint_metadata(config, overrides, request.training_data))
    return trainer.fit()
