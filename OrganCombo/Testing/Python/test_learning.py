"""Learning test: a short seeded CPU training of the paper's recipe on PET phantoms must learn the five organs.

Recipe of the demo weights (``OrganComboLib.demo``: combo_net at base width 8, 32^3 sub-volumes, organ/background
patches 5:1, Combo loss with the PET preset, ADADELTA lr 1 / rho 0.95 / eps 1e-8).
Issue 4's bar: mean Dice >= 0.80 on held-out phantoms (validation seeds 900 and 901, never trained on), through the
full pipeline (per-window normalisation, max aggregation of windows at stride 16, t = 0.5). Measured with this file's
settings (seed 0, 2 threads): mean Dice 0.422 / 0.569 / 0.666 / 0.701 / 0.795 / 0.830 at 1,000 ... 6,000 steps; the
demo-weights run took 19.8 min on the idle 2-core machine (65.6 min when three training jobs shared it). Shorter runs do
not reach the bar (1,000 steps: 0.42; Adam: 0.42; the 3D U-Net baseline at 1,200 steps: 0.49), hence the length,
too long for CI: the full run is the `long` test (`make test-learning`), CI runs its first 1,000 steps.
"""

from __future__ import annotations

import time

import pytest
import torch

from OrganComboLib.demo import DEMO_CONFIG, DEMO_MODEL_OVERRIDES, TRAIN_SEEDS, VALIDATION_SEEDS, phantom_case
from OrganComboLib.training import TrainingRequest, train

#: (iterations, mean Dice over the five organs on the held-out phantoms that the best validation must exceed).
#: The issue's bar needs 6,000 steps (~20 min on 2 idle cores): a `long` test, run by `make test-learning`. CI runs
#: the first 1,000 steps of the same trajectory (measured 0.422 there) against a lower bar.
ISSUE_BAR = (6000, 0.80)
CI_CHECK = (1000, 0.35)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a hang guard, not a timing target
def test_short_training_learns_the_organs(tmp_path):
    _train_and_check(tmp_path, *CI_CHECK)


@pytest.mark.long
@pytest.mark.timeout(5400)
def test_training_reaches_the_issue_bar(tmp_path):
    _train_and_check(tmp_path, *ISSUE_BAR)


def _train_and_check(tmp_path, iterations: int, bar: float) -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(2)  # the measured trajectory is for 2 threads (the numerics depend on the thread count)
    try:
        _train(tmp_path, iterations, bar)
    finally:
        torch.set_num_threads(previous)


def _train(tmp_path, iterations: int, bar: float) -> None:
    started = time.monotonic()
    validation = [phantom_case(seed) for seed in VALIDATION_SEEDS]
    request = TrainingRequest(config=DEMO_CONFIG, train_cases=[phantom_case(seed) for seed in TRAIN_SEEDS],
                              validation_cases=validation, output_dir=tmp_path, iterations=iterations,
                              validate_every=1000, model_overrides=DEMO_MODEL_OVERRIDES,
                              device="cpu", seed=0)
    result = train(request)
    minutes = (time.monotonic() - started) / 60
    first = result.history.validation[0]["dice"]
    print(f"learning test: best mean Dice {result.best_metric:.3f} at iteration {result.best_iteration} "
          f"in {minutes:.1f} min (first validation {first:.3f})")
    assert result.best_checkpoint is not None and result.best_checkpoint.is_file()
    assert (tmp_path / "history.png").is_file()
    assert result.best_metric > bar
