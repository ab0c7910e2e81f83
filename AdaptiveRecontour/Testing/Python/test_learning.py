"""Learning test: seeded CPU training on pelvis phantom pairs must beat the affine-only baseline on held-out pairs.

Bar (issue 7): the mean DSC (prostate, seminal vesicles, rectum, bladder) of the planning contours warped by the
network's DVF exceeds that of the affine-only contours by >= 0.05, with a folding fraction < 1 %. Configuration
``cpu_jrs_reg`` (64^3 patches at 3 mm, filters 8/16/32, RAdam 1e-2, 1000 iterations); the paper's full configuration
is the training default. The toy-shift test below checks the sign and units of the whole training/inference path.
The numerics depend on the thread count: the learning test runs on 1 thread (as measured), the toy test on 2; both
restore the caller's count.
"""

import contextlib
import time

import numpy as np
import pytest
import torch

from AdaptiveRecontourLib.configs import get_config
from AdaptiveRecontourLib.demo import phantom_pairs
from AdaptiveRecontourLib.pipeline import normalise_ct, predict_arrays
from AdaptiveRecontourLib.training import TrainingPair, evaluate_pairs, train_network

MODEL = "jrs_reg"
ITERATIONS = 1000
PATCH = 64
LR = 1e-2
TRAIN_SEEDS = tuple(range(100, 106))
HELD_OUT = (900, 901, 902)


@contextlib.contextmanager
def torch_threads(count: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.mark.long  # ~20 CPU-minutes: run by `make test-learning` (MEDNETS_LONG_TESTS=1), not in CI
@pytest.mark.timeout(5400)  # a hang guard, not a timing target
def test_training_beats_affine_only():
    """Measured (1 thread, shared 2-core machine): warped 0.706 vs affine 0.650 (+0.056), folding 0, Jacobian
    std 0.14, 42 min wall with two other jobs on the machine (~20 min of CPU). With seed 1 instead of 0: 0.760
    (+0.110), folding 0. At 48^3 patches (the earlier configuration) the same seeds gave 0.651 and 0.687."""
    with torch_threads(1):
        _train_and_check()


def _train_and_check() -> None:
    config = get_config("cpu_jrs_reg")
    assert (config.model, config.patch_size, config.optimizer["lr"]) == (MODEL, PATCH, LR)
    started = time.monotonic()
    train, held_out = phantom_pairs(TRAIN_SEEDS, config), phantom_pairs(HELD_OUT, config)
    network, _, loss = train_network(config, train, iterations=ITERATIONS, seed=0)
    scores = evaluate_pairs(network.eval(), held_out, config.inference_patch_size, config.num_classes,
                            spacing=(config.spacing_mm,) * 3)
    minutes = (time.monotonic() - started) / 60
    print(f"learning test: {MODEL}, {ITERATIONS} iterations, {PATCH}^3, lr {LR}, {minutes:.1f} min; DSC affine "
          f"{scores['dice_affine']:.3f}, warped {scores['dice_reg']:.3f}; folding {scores['folding']:.4f}")
    assert np.isfinite(loss.history[-1]["ncc"])
    assert scores["folding"] < 0.01
    assert scores["dice_reg"] >= scores["dice_affine"] + 0.05, scores


def test_training_learns_a_one_voxel_shift_and_inference_applies_it():
    """Toy pair (the planning CT of phantom seed 100 at 3 mm; moving = fixed shifted by one voxel along J, contours
    too): JRS-reg must learn u_J = +1 (warped(p) = moving(p + u(p))), and whole-volume inference must apply it with
    the training's sign and units (both checked here end to end). The earlier diagnostic (lr 3e-3, 60 iterations) did
    not learn it; at lr 1e-2 it does. Measured: DSC 0.789 -> 0.912, mean u_J 0.85, 25 s (2 threads, shared machine)."""
    with torch_threads(2):
        _learn_one_voxel_shift()


def _learn_one_voxel_shift() -> None:
    from AdaptiveRecontourLib.demo import phantom_volumes

    planning, labels, _, _, _ = phantom_volumes(100, 3.0)
    fixed = normalise_ct(planning.array)
    pair = TrainingPair(fixed, np.roll(fixed, 1, axis=1), labels, np.roll(labels, 1, axis=1), "toy-shift")
    config = get_config("cpu_small", model="jrs_reg", weighting="equal", patch_size=48,
                        optimizer={"name": "radam", "lr": 1e-2})
    network, _, _ = train_network(config, [pair], iterations=120, seed=0)
    network.eval()
    scores = evaluate_pairs(network, [pair], 48, config.num_classes, spacing=(3.0,) * 3)
    dvf = predict_arrays(network, pair.fixed, pair.moving, pair.moving_labels, 96)["dvf"]
    inside = labels > 0
    shift = [float(dvf[a][inside].mean()) for a in range(3)]
    print(f"toy shift: DSC affine {scores['dice_affine']:.3f} warped {scores['dice_reg']:.3f}, mean u {shift}")
    assert 0.4 < shift[1] < 1.5 and abs(shift[0]) < 0.2 and abs(shift[2]) < 0.2, shift
    assert scores["dice_reg"] >= scores["dice_affine"] + 0.05, scores
    assert scores["folding"] < 0.01
