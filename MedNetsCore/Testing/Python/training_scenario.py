"""A tiny seeded training shared by test_training.py: run in-process, and as a subprocess that the test kills.

Every source of randomness the Trainer must restore on resume is exercised: the patch sampler with augmentation
(sampler RNG), dropout (torch RNG), and a validation score that draws from numpy's and python's global generators.

Run as a script: ``python training_scenario.py OUTPUT_DIR ITERATIONS PAUSE_AT`` trains with ``resume=True``; when the
iteration ``PAUSE_AT`` is reported it prints ``PAUSED <iteration>`` and sleeps, waiting to be killed.
"""

from __future__ import annotations

import random
import sys
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from mednets.phantoms import blob_phantom
from mednets.training import (Case, Compose, GaussianNoise, PatchSampler, RandomFlip, Trainer, TrainingConfig)

ITERATIONS = 12


def make_cases() -> List[Case]:
    cases = []
    for seed in range(2):
        phantom = blob_phantom(shape=(24, 24), num_blobs=2, radius_range_mm=(3.0, 5.0), noise_std=0.3, seed=seed)
        cases.append(Case.from_volume(f"blob{seed}", phantom.image, phantom.labels, phantom.spacing))
    return cases


def make_model() -> torch.nn.Module:
    torch.manual_seed(123)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.Dropout2d(0.2), torch.nn.Conv2d(4, 2, 1))


def cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(output, target)


def make_trainer(output_dir: str, iterations: int = ITERATIONS, progress: Optional[Callable] = None,
                 cancel: Optional[Callable] = None) -> Trainer:
    cases = make_cases()
    sampler = PatchSampler(cases, (16, 16), foreground_fraction=0.5, seed=7,
                           augment=Compose([RandomFlip(probability=0.5), GaussianNoise(std=0.05, probability=0.5)]))
    validation_image = torch.from_numpy(cases[0].image[None])
    validation_label = torch.from_numpy(cases[0].label[None].astype(np.int64))

    def validate(model: torch.nn.Module) -> Dict[str, float]:
        loss = float(cross_entropy(model(validation_image), validation_label))
        # Draws from the global generators, so the history depends on their restored states.
        return {"score": -loss + 1e-3 * float(np.random.rand()) + 1e-3 * random.random(), "loss": loss}

    config = TrainingConfig(iterations=iterations, batch_size=2, validate_every=4, checkpoint_every=3, log_every=2,
                            monitor="score", mode="max", optimizer={"name": "sgd", "lr": 0.05, "momentum": 0.9},
                            schedule={"name": "step", "step_size": 5, "gamma": 0.5}, seed=11, device="cpu",
                            output_dir=output_dir, plot=False)
    return Trainer(make_model(), cross_entropy, sampler, validate, config, progress=progress, cancel=cancel)


def main(argv: List[str]) -> None:
    torch.set_num_threads(1)
    output_dir, iterations, pause_at = argv[0], int(argv[1]), int(argv[2])

    def progress(fraction: float, message: str) -> None:
        if message.startswith(f"iteration {pause_at}/"):
            print(f"PAUSED {pause_at}", flush=True)
            time.sleep(600)

    make_trainer(output_dir, iterations, progress=progress).fit(resume=True)


if __name__ == "__main__":
    main(sys.argv[1:])
