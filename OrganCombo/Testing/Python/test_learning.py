"""Learning test: a short seeded CPU training of the paper's recipe on PET phantoms must learn the five organs.

Recipe of the demo weights (``OrganComboLib.demo``: combo_net at base width 8, 32^3 sub-volumes, organ/background
patches 5:1, Combo loss with the PET preset, ADADELTA lr 1 / rho 0.95 / eps 1e-8), shortened to LEARNING_ITERATIONS
steps. Issue 4 asks for mean Dice >= 0.80; that takes about 6,000 steps (the demo-weights run); 1,000 steps give 0.42
(Adam: 0.42; the 3D U-Net baseline at 1,200 steps: 0.49), so this CI test holds the lower bar below. Validation is
the full pipeline (per-window normalisation, max aggregation, t = 0.5) on held-out phantoms. Measured time:
OrganCombo/README.md.
"""

from __future__ import annotations

import time

import pytest
import torch

from OrganComboLib.demo import DEMO_CONFIG, DEMO_MODEL_OVERRIDES, TRAIN_SEEDS, VALIDATION_SEEDS, phantom_case
from OrganComboLib.training import TrainingRequest, train

LEARNING_ITERATIONS = 1000
#: Mean Dice over the five organs on the held-out phantoms after LEARNING_ITERATIONS steps must exceed this.
LEARNING_BAR = 0.35


@pytest.mark.slow
@pytest.mark.timeout(3600)  # a hang guard, not a timing target
def test_short_training_learns_the_organs(tmp_path):
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    started = time.monotonic()
    validation = [phantom_case(seed) for seed in VALIDATION_SEEDS]
    request = TrainingRequest(config=DEMO_CONFIG, train_cases=[phantom_case(seed) for seed in TRAIN_SEEDS],
                              validation_cases=validation, output_dir=tmp_path, iterations=LEARNING_ITERATIONS,
                              validate_every=LEARNING_ITERATIONS // 2, model_overrides=DEMO_MODEL_OVERRIDES,
                              device="cpu", seed=0)
    result = train(request)
    minutes = (time.monotonic() - started) / 60
    first = result.history.validation[0]["dice"]
    print(f"learning test: best mean Dice {result.best_metric:.3f} at iteration {result.best_iteration} "
          f"in {minutes:.1f} min (first validation {first:.3f})")
    assert result.best_checkpoint is not None and result.best_checkpoint.is_file()
    assert (tmp_path / "history.png").is_file()
    assert result.best_metric > LEARNING_BAR
