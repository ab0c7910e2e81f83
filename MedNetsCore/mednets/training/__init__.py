"""The mednets training engine: cases, patch sampling, augmentation hooks, optimizers and schedules, the Trainer
(checkpoints, resume, early stopping, history) and DistributedDataParallel scale-out under torchrun.

Typical use::

    from mednets.training import Case, PatchSampler, Trainer, TrainingConfig

    cases = [Case.from_volume(name, image, label, spacing) for name, image, label, spacing in data]
    config = TrainingConfig(iterations=2000, batch_size=2, patch_size=(96, 96, 96), validate_every=200,
                            monitor="dice", early_stopping_patience=5, output_dir="run1")
    result = Trainer(model, loss_fn, cases, validate_fn, config, progress=progress, cancel=cancel).fit()
"""

from __future__ import annotations

from mednets.training.augment import AugmentHook, Compose, GaussianNoise, RandomFlip
from mednets.training.data import (TRAINING_IMAGE_PATTERN, TRAINING_LABEL_PATTERN, Case, FolderCases, InMemoryCases,
                                   training_folder_cases, write_training_case)
from mednets.training.engine import (BEST_CHECKPOINT, LAST_CHECKPOINT, STATE_FILE, Trainer, TrainingConfig,
                                     TrainingDivergedError, TrainingResult)
from mednets.training.history import TrainingHistory, plot_history
from mednets.training.optim import build_optimizer, build_schedule
from mednets.training.sampling import PatchSampler

__all__ = [
    "AugmentHook",
    "Compose",
    "GaussianNoise",
    "RandomFlip",
    "Case",
    "FolderCases",
    "InMemoryCases",
    "TRAINING_IMAGE_PATTERN",
    "TRAINING_LABEL_PATTERN",
    "training_folder_cases",
    "write_training_case",
    "BEST_CHECKPOINT",
    "LAST_CHECKPOINT",
    "STATE_FILE",
    "Trainer",
    "TrainingConfig",
    "TrainingDivergedError",
    "TrainingResult",
    "TrainingHistory",
    "plot_history",
    "build_optimizer",
    "build_schedule",
    "PatchSampler",
]
