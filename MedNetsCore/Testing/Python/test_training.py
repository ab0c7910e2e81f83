"""Tests of mednets.training: cases, patch sampling, augmentation hooks, optimizers/schedules, the Trainer
(checkpoints, exact resume after cancel or SIGKILL, early stopping, history) and a tiny learning test."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import training_scenario
from mednets.checkpoints import load_checkpoint, read_checkpoint_metadata
from mednets.phantoms import blob_phantom
from mednets.progress import CancelToken, OperationCancelled
from mednets.training import (Case, Compose, FolderCases, GaussianNoise, InMemoryCases, PatchSampler, RandomFlip,
                              Trainer, TrainingConfig, TrainingDivergedError, TrainingHistory, build_optimizer,
                              build_schedule, plot_history)
from mednets.training.augment import apply_hook
from mednets.training.engine import STATE_FILE

_CORE = Path(__file__).resolve().parents[2]


@pytest.fixture()
def one_thread():
    """Same thread count in-process and in the subprocesses, so floating-point reductions are identical."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# ------------------------------------------------------------------------------------------------------- cases

def test_case_construction_and_validation():
    volume = np.zeros((4, 5, 6), dtype=np.int16)
    case = Case.from_volume("a", volume, label=np.ones((4, 5, 6)), spacing=(3.0, 1.0, 0.5))
    assert case.image.shape == (1, 4, 5, 6) and case.image.dtype == np.float32
    assert case.label.dtype == np.uint8 and case.spatial_shape == (4, 5, 6) and case.spacing == (3.0, 1.0, 0.5)
    two_channel = Case.from_volume("b", np.zeros((2, 8, 8)), spacing=(1.0, 1.0))
    assert two_channel.num_channels == 2 and two_channel.spatial_ndim == 2 and two_channel.spacing == (1.0, 1.0)
    assert Case("c", np.zeros((1, 8, 8))).spacing == (1.0, 1.0)
    with pytest.raises(ValueError, match=r"label shape \(4, 5\) differs"):
        Case("d", np.zeros((1, 4, 4)), label=np.zeros((4, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match="spacing must be 2 positive numbers"):
        Case("e", np.zeros((1, 4, 4)), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="whole numbers"):
        Case("f", np.zeros((1, 2, 2)), label=np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="shape \\(C, \\*spatial\\)"):
        Case("g", np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"case .i. has 2 channel\(s\) and 2 spatial axes but case .h. has 1"):
        InMemoryCases([Case("h", np.zeros((1, 4, 4))), Case("i", np.zeros((2, 4, 4)))])


def test_folder_cases_pair_files_by_name(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    arrays = {}
    for name in ("case01", "case02"):
        channels = [rng.random((3, 4, 5)).astype(np.float32) for _ in range(2)]
        label = rng.integers(0, 3, (3, 4, 5)).astype(np.uint8)
        for index, channel in enumerate(channels):
            np.save(tmp_path / "images" / f"{name}_{index:04d}.npy", channel)
        np.save(tmp_path / "labels" / f"{name}.npy", label)
        arrays[name] = (channels, label)
    for index in range(2):
        np.save(tmp_path / "images" / f"orphan_{index:04d}.npy", np.zeros((3, 4, 5)))
    reads = []

    def reader(path):
        reads.append(path.name)
        return SimpleNamespace(array=np.load(path), spacing=(2.0, 1.0, 0.5))

    with pytest.raises(ValueError, match=r"1 image\(s\) have no label.*orphan"):
        FolderCases(tmp_path, ["images/*_0000.npy", "images/*_0001.npy"], "labels/*.npy", reader=reader)
    (tmp_path / "images" / "orphan_0001.npy").unlink()
    with pytest.raises(ValueError, match=r"\['orphan'\] have no channel file matching 'images/\*_0001.npy'"):
        FolderCases(tmp_path, ["images/*_0000.npy", "images/*_0001.npy"], "labels/*.npy", reader=reader)
    (tmp_path / "images" / "orphan_0000.npy").unlink()
    cases = FolderCases(tmp_path, ["images/*_0000.npy", "images/*_0001.npy"], "labels/*.npy", reader=reader)
    assert cases.names == ["case01", "case02"] and len(cases) == 2
    second = cases[1]
    assert second.name == "case02" and second.spacing == (2.0, 1.0, 0.5)
    np.testing.assert_array_equal(second.image, np.stack(arrays["case02"][0]))
    np.testing.assert_array_equal(second.label, arrays["case02"][1])
    assert cases[-1] is second and reads.count("case02.npy") == 1  # cached after the first read
    unlabelled = FolderCases(tmp_path / "images", "*_0000.npy", reader=reader)
    assert unlabelled[0].label is None and unlabelled.names == ["case01", "case02"]
    with pytest.raises(ValueError, match="exactly one"):
        FolderCases(tmp_path, "images/*_*.npy", reader=reader)
    (tmp_path / "multi").mkdir()
    channels_last = rng.random((3, 4, 5, 2)).astype(np.float32)
    np.save(tmp_path / "multi" / "case01.npy", channels_last)
    multi = FolderCases(tmp_path, "multi/*.npy", "labels/*.npy", reader=reader)[0]
    np.testing.assert_array_equal(multi.image, np.moveaxis(channels_last, -1, 0))


def test_folder_cases_with_the_default_reader(tmp_path):
    from mednets.image import Volume
    from mednets.io import write_volume

    rng = np.random.default_rng(1)
    image = rng.random((4, 6, 5)).astype(np.float32)
    label = (image > 0.5).astype(np.uint8)
    write_volume(Volume(image, spacing=(3.0, 0.7, 0.6)), tmp_path / "p1_image.nrrd")
    write_volume(Volume(label, spacing=(3.0, 0.7, 0.6)), tmp_path / "p1_label.nrrd")
    case = FolderCases(tmp_path, "*_image.nrrd", "*_label.nrrd")[0]
    assert case.name == "p1" and case.spacing == pytest.approx((3.0, 0.7, 0.6))
    np.testing.assert_array_equal(case.image[0], image)
    np.testing.assert_array_equal(case.label, label)


# ----------------------------------------------------------------------------------------------------- sampling

def _coordinate_case(shape, name="coords") -> Case:
    """Image = flat voxel index, so a patch tells exactly where it came from; label marks one corner voxel."""
    image = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    label = np.zeros(shape, dtype=np.uint8)
    label[(1,) * len(shape)] = 1
    return Case.from_volume(name, image, label)


@pytest.mark.parametrize("shape,patch", [((20, 17), (8, 5)), ((9, 10, 11), (4, 3, 5))])
def test_patches_are_exact_crops(shape, patch):
    case = _coordinate_case(shape)
    sampler = PatchSampler([case], patch, foreground_fraction=0.5, seed=3)
    for _ in range(20):
        image, label = sampler.sample()
        assert image.shape == (1, *patch) and label.shape == patch
        start = np.unravel_index(int(image[(0,) + (0,) * len(shape)]), shape)
        region = tuple(slice(s, s + p) for s, p in zip(start, patch))
        np.testing.assert_array_equal(image[0], case.image[0][region])
        np.testing.assert_array_equal(label, case.label[region])


def test_foreground_patches_contain_the_requested_voxel_and_classes_are_balanced():
    label = np.zeros((40, 40), dtype=np.uint8)
    label[:20, :] = 1          # a large class
    label[35, 35] = 2          # a single-voxel class
    case = Case.from_volume("two classes", np.zeros((40, 40)), label)
    sampler = PatchSampler([case], (6, 6), foreground_fraction=1.0, seed=0)
    seen = [np.unique(sampler.sample()[1]) for _ in range(400)]
    assert all(set(values) - {0} for values in seen)  # every forced patch has foreground
    rare = sum(2 in values for values in seen) / len(seen)
    assert 0.42 < rare < 0.58  # the 1-voxel class is drawn as often as the large one
    random_sampler = PatchSampler([case], (6, 6), foreground_fraction=0.0, seed=0)
    rare_random = sum(2 in np.unique(random_sampler.sample()[1]) for _ in range(400)) / 400
    assert rare_random < 0.1  # expected 36 / 35**2 ~ 3 %


def test_negative_background_patches_avoid_foreground():
    label = np.zeros((40, 40), dtype=np.uint8)
    label[:20, :20] = 1  # a quarter of the image is foreground
    case = Case.from_volume("quarter", np.zeros((40, 40)), label)
    random_patches = PatchSampler([case], (8, 8), foreground_fraction=0.0, seed=3)
    negative_patches = PatchSampler([case], (8, 8), foreground_fraction=0.0, seed=3, background="negative")
    touched_random = sum(random_patches.sample()[1].any() for _ in range(200))
    touched_negative = sum(negative_patches.sample()[1].any() for _ in range(200))
    assert touched_random > 40 and touched_negative == 0
    forced = PatchSampler([case], (8, 8), foreground_fraction=1.0, seed=3, background="negative")
    assert all(forced.sample()[1].any() for _ in range(50))  # foreground patches are unaffected
    with pytest.raises(ValueError, match="background"):
        PatchSampler([case], (8, 8), background="empty")


def test_batches_force_the_exact_foreground_count(monkeypatch):
    sampler = PatchSampler([_coordinate_case((12, 12))], (4, 4), foreground_fraction=0.5, seed=1)
    calls = []
    original = sampler.sample
    monkeypatch.setattr(sampler, "sample", lambda foreground=None: calls.append(foreground) or original(foreground))
    images, labels = sampler.next_batch(4)
    assert calls == [True, True, False, False]
    assert images.shape == (4, 1, 4, 4) and images.dtype == torch.float32
    assert labels.shape == (4, 4, 4) and labels.dtype == torch.int64
    assert all(labels[i].any() for i in range(2))


def test_small_cases_are_padded_and_centred():
    case = _coordinate_case((3, 10))
    sampler = PatchSampler([case], (7, 4), foreground_fraction=0.0, seed=0, image_pad_value=-1.0,
                           label_pad_value=255)
    image, label = sampler.sample()
    # Axis 0: 3 voxels in 7 -> 2 padded rows before, 2 after; axis 1 is a regular crop.
    assert np.all(image[0, :2] == -1.0) and np.all(image[0, 5:] == -1.0) and np.all(label[:2] == 255)
    column = int(image[0, 2, 0]) % 10
    np.testing.assert_array_equal(image[0, 2:5], case.image[0][:, column:column + 4])


def test_sampler_is_seeded_and_resumable():
    case = _coordinate_case((30, 30))

    def draws(sampler, count=5):
        return [sampler.sample()[0].copy() for _ in range(count)]

    a, b = PatchSampler([case], (5, 5), seed=4), PatchSampler([case], (5, 5), seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(draws(a), draws(b)))
    state = a.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    restored_state = torch.load(buffer, weights_only=True)
    continuation = draws(a)
    c = PatchSampler([case], (5, 5), seed=999)
    c.load_state_dict(restored_state)
    assert all(np.array_equal(x, y) for x, y in zip(continuation, draws(c)))
    rank0, rank1, rank1_again = (PatchSampler([case], (5, 5), seed=4) for _ in range(3))
    rank0.set_rank(0), rank1.set_rank(1), rank1_again.set_rank(1)
    first0, first1 = draws(rank0), draws(rank1)
    assert not all(np.array_equal(x, y) for x, y in zip(first0, first1))
    assert all(np.array_equal(x, y) for x, y in zip(first1, draws(rank1_again)))
    with pytest.raises(ValueError, match="patch size"):
        PatchSampler([case], (6, 6)).load_state_dict(state)


# ------------------------------------------------------------------------------------------------- augmentation

def test_random_flip_moves_image_label_and_weight_together():
    rng = np.random.default_rng(0)
    image = rng.random((2, 5, 6)).astype(np.float32)
    label = (image[0] > 0.5).astype(np.uint8)
    weight = image[1] * 3
    flipped_image, flipped_label, flipped_weight = RandomFlip(axes=[1], probability=1.0)(
        image, label, rng, weight=weight)
    np.testing.assert_array_equal(flipped_image, image[:, :, ::-1])
    np.testing.assert_array_equal(flipped_label, label[:, ::-1])
    np.testing.assert_array_equal(flipped_weight, weight[:, ::-1])
    for _ in range(10):  # random flips keep the pairing image <-> label <-> weight
        out_image, out_label, out_weight = RandomFlip()(image, label, rng, weight=weight)
        np.testing.assert_array_equal(out_label, (out_image[0] > 0.5).astype(np.uint8))
        np.testing.assert_array_equal(out_weight, out_image[1] * 3)
        assert out_image.flags["C_CONTIGUOUS"]


def test_noise_and_composition_and_weight_contract():
    rng = np.random.default_rng(1)
    image = np.zeros((1, 64, 64), dtype=np.float32)
    label = np.zeros((64, 64), dtype=np.uint8)
    noisy, same_label = GaussianNoise(std=0.5)(image, label, rng)
    assert same_label is label and noisy.dtype == np.float32
    assert abs(float(noisy.std()) - 0.5) < 0.03 and abs(float(noisy.mean())) < 0.03
    order = []
    first = lambda i, l, r: (order.append("first") or (i + 1, l))  # noqa: E731
    second = lambda i, l, r: (order.append("second") or (i * 10, l))  # noqa: E731
    result, _ = Compose([first, second])(image, label, rng)
    assert order == ["first", "second"] and np.all(result == 10.0)
    weight = np.ones((64, 64), dtype=np.float32)
    with pytest.raises(TypeError, match="weight"):
        apply_hook(first, image, label, rng, weight=weight)
    _, _, kept = apply_hook(GaussianNoise(0.1), image, label, rng, weight=weight)
    assert kept is weight


def test_sampler_applies_augmentation_and_carries_weights():
    case = _coordinate_case((10, 10))
    case.weight = np.arange(100, dtype=np.float32).reshape(10, 10) * 2
    sampler = PatchSampler([case], (4, 4), seed=0, augment=Compose([RandomFlip(probability=0.5)]))
    images, labels, weights = sampler.next_batch(6)
    assert weights.shape == (6, 4, 4)
    torch.testing.assert_close(weights, images[:, 0] * 2, rtol=0, atol=0)  # weights followed every flip


# ------------------------------------------------------------------------------------------ optimizers/schedules

def _parameters():
    return [torch.nn.Parameter(torch.zeros(3))]


def test_optimizers_by_name():
    adadelta = build_optimizer(_parameters(), {"name": "ADADELTA"})
    assert isinstance(adadelta, torch.optim.Adadelta)
    group = adadelta.param_groups[0]
    assert (group["lr"], group["rho"], group["eps"]) == (1.0, 0.95, 1e-8)
    sgd = build_optimizer(_parameters(), {"name": "sgd", "lr": 0.01, "nesterov": True})
    assert sgd.param_groups[0]["momentum"] == 0.9 and sgd.param_groups[0]["nesterov"] is True
    assert isinstance(build_optimizer(_parameters(), "radam"), torch.optim.RAdam)
    assert isinstance(build_optimizer(_parameters(), {"name": "adam", "lr": 3e-4}), torch.optim.Adam)
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        build_optimizer(_parameters(), "lion")
    with pytest.raises(ValueError, match=r"does not accept \['rho'\]"):
        build_optimizer(_parameters(), {"name": "adam", "rho": 0.9})


def _lrs(schedule, iterations):
    return [schedule.lr_at(i)[0] for i in iterations]


def test_step_and_poly_schedules_match_torch():
    iterations = range(40)
    optimizer = build_optimizer(_parameters(), {"name": "sgd", "lr": 0.1})
    ours = build_schedule(optimizer, {"name": "step", "milestones": [10, 25], "gamma": 0.3})
    reference_optimizer = build_optimizer(_parameters(), {"name": "sgd", "lr": 0.1})
    reference = torch.optim.lr_scheduler.MultiStepLR(reference_optimizer, milestones=[10, 25], gamma=0.3)
    expected = []
    for _ in iterations:
        expected.append(reference_optimizer.param_groups[0]["lr"])
        reference_optimizer.step()
        reference.step()
    assert _lrs(ours, iterations) == pytest.approx(expected, rel=1e-12)
    assert _lrs(build_schedule(optimizer, {"name": "step", "step_size": 7, "gamma": 0.5}), [0, 6, 7, 14, 20]) == \
        pytest.approx([0.1, 0.1, 0.05, 0.025, 0.025])
    poly = build_schedule(optimizer, {"name": "poly", "power": 0.9}, total_iterations=40)
    reference_optimizer = build_optimizer(_parameters(), {"name": "sgd", "lr": 0.1})
    reference = torch.optim.lr_scheduler.PolynomialLR(reference_optimizer, total_iters=40, power=0.9)
    expected = []
    for _ in iterations:
        expected.append(reference_optimizer.param_groups[0]["lr"])
        reference_optimizer.step()
        reference.step()
    assert _lrs(poly, iterations) == pytest.approx(expected, rel=1e-9)


def test_warmup_step_schedule_follows_detectron2_formula():
    optimizer = build_optimizer(_parameters(), {"name": "sgd", "lr": 0.1})
    schedule = build_schedule(optimizer, {"name": "warmup_step", "milestones": [20, 30], "gamma": 0.1,
                                          "warmup_iters": 10, "warmup_factor": 0.001})
    # lr = base * (warmup_factor * (1 - i/W) + i/W) * gamma ** bisect_right(milestones, i)
    assert _lrs(schedule, [0, 5, 9, 10, 19, 20, 29, 30]) == pytest.approx(
        [1e-4, 0.1 * (0.001 * 0.5 + 0.5), 0.1 * (0.001 * 0.1 + 0.9), 0.1, 0.1, 0.01, 0.01, 0.001])
    constant = build_schedule(optimizer, {"name": "warmup_step", "warmup_iters": 3, "warmup_method": "constant",
                                          "warmup_factor": 0.5})
    assert _lrs(constant, [0, 2, 3]) == pytest.approx([0.05, 0.05, 0.1])
    schedule.apply(5)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * (0.001 * 0.5 + 0.5))
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'cosine'"):
        build_schedule(optimizer, "cosine")
    with pytest.raises(ValueError, match=r"does not accept \['steps'\]"):
        build_schedule(optimizer, {"name": "warmup_step", "steps": [1]})


def test_plateau_schedule_halves_after_patience_validations():
    optimizer = build_optimizer(_parameters(), {"name": "adam", "lr": 0.01})
    schedule = build_schedule(optimizer, {"name": "plateau", "factor": 0.5, "patience": 2}, monitor_mode="max")
    reductions = [schedule.on_validation(v) for v in [0.5, 0.6, 0.6, 0.59, 0.7, 0.65, 0.64, 0.63, 0.62]]
    assert reductions == [False, False, False, True, False, False, True, False, True]
    assert schedule.lr_at(0) == [pytest.approx(0.01 / 8)]
    restored = build_schedule(build_optimizer(_parameters(), {"name": "adam", "lr": 0.01}), "plateau")
    restored.load_state_dict(schedule.state_dict())
    assert restored.lr_at(0) == schedule.lr_at(0) and restored.on_validation(0.1) == schedule.on_validation(0.1)
    minimum = build_schedule(optimizer, {"name": "plateau", "patience": 1, "min_lr": 0.004, "mode": "min"})
    for value in [1.0, 2.0, 3.0, 4.0]:
        minimum.on_validation(value)
    assert minimum.lr_at(0) == [pytest.approx(0.004)]


# ------------------------------------------------------------------------------------------------------ config

def test_training_config_from_dict_and_json(tmp_path):
    config = TrainingConfig.from_dict({"iterations": 50, "patch_size": [8, 8], "optimizer": "adadelta",
                                       "schedule": {"name": "plateau", "patience": 3}, "monitor": "loss",
                                       "mode": "min"})
    assert config.patch_size == (8, 8) and config.optimizer == {"name": "adadelta"}
    assert config.state_every == 100
    path = tmp_path / "config.json"
    config.save_json(path)
    assert TrainingConfig.from_json(path) == config
    assert TrainingConfig.from_json(path.read_text()) == config
    with pytest.raises(ValueError, match=r"unknown training setting\(s\) \['epochs'\]"):
        TrainingConfig.from_dict({"epochs": 3})
    with pytest.raises(ValueError, match="iterations must be a positive integer"):
        TrainingConfig(iterations=0)
    with pytest.raises(ValueError, match="mode must be 'max' or 'min'"):
        TrainingConfig(mode="best")


# ------------------------------------------------------------------------------------------------------ trainer

def _linear_batches(count=6, batch=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 3, generator=generator), torch.randn(batch, 1, generator=generator))
            for _ in range(count)]


def _mse(output, target):
    return torch.nn.functional.mse_loss(output, target)


def _linear_model():
    torch.manual_seed(5)
    return torch.nn.Linear(3, 1)


def test_tiny_network_learns_to_segment_blobs(tmp_path, one_thread):
    def case(seed):
        phantom = blob_phantom(shape=(48, 48), num_blobs=3, radius_range_mm=(6.0, 10.0), noise_std=0.3, seed=seed)
        return Case.from_volume(f"blob{seed}", phantom.image, phantom.labels, phantom.spacing)

    training, validation = [case(s) for s in range(4)], [case(s) for s in (20, 21)]

    def dice(model):
        scores = []
        for item in validation:
            predicted = model(torch.from_numpy(item.image[None])).argmax(1)[0].numpy() > 0
            truth = item.label > 0
            scores.append(2.0 * np.logical_and(predicted, truth).sum() / (predicted.sum() + truth.sum()))
        return {"dice": float(np.mean(scores))}

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 1))
    with torch.no_grad():
        before = dice(model.eval())["dice"]
    config = TrainingConfig(iterations=60, batch_size=4, patch_size=(32, 32), validate_every=20, device="cpu",
                            optimizer={"name": "adam", "lr": 0.01}, seed=0, output_dir=str(tmp_path))
    started = time.perf_counter()
    result = Trainer(model, lambda out, target: torch.nn.functional.cross_entropy(out, target), training, dice,
                     config).fit()
    elapsed = time.perf_counter() - started
    assert before < 0.5
    assert result.best_metric > 0.8, result.history.validation  # seeds 0-2 reach 0.88-0.89 in 60 iterations
    assert elapsed < 20.0
    state_dict, meta = load_checkpoint(result.best_checkpoint)
    assert meta.extra["training"]["iteration"] == result.best_iteration
    assert meta.extra["training"]["metrics"]["dice"] == pytest.approx(result.best_metric)


def _run_scenario(output_dir, **kwargs):
    trainer = training_scenario.make_trainer(str(output_dir), **kwargs)
    return trainer, trainer.fit(resume=True)


def _assert_same_run(trainer_a, result_a, trainer_b, result_b):
    for (name, a), b in zip(trainer_a.model.state_dict().items(), trainer_b.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert result_a.history == result_b.history
    assert (result_a.best_iteration, result_a.best_metric, result_a.iterations) == \
        (result_b.best_iteration, result_b.best_metric, result_b.iterations)
    last_a, _ = load_checkpoint(result_a.last_checkpoint)
    last_b, _ = load_checkpoint(result_b.last_checkpoint)
    assert all(torch.equal(last_a[k], last_b[k]) for k in last_a)


def test_resume_after_cancel_is_identical(tmp_path, one_thread):
    reference_trainer, reference = _run_scenario(tmp_path / "reference")
    assert len(reference.history.validation) == 3 and len(reference.history.train) == 6

    token = CancelToken()

    def progress(fraction, message):
        if message.startswith("iteration 7/"):
            token.request()

    with pytest.raises(OperationCancelled):
        _run_scenario(tmp_path / "interrupted", progress=progress, cancel=token)
    # The files left behind are valid: LAST holds iteration 7, the state loads without unpickling objects.
    assert read_checkpoint_metadata(tmp_path / "interrupted" / "last.safetensors").extra["training"]["iteration"] == 7
    state = torch.load(tmp_path / "interrupted" / STATE_FILE, weights_only=True)
    assert state["iteration"] == 7 and isinstance(state["ranks"][0]["rng"]["numpy"][1], list)
    resumed_trainer, resumed = _run_scenario(tmp_path / "interrupted")
    _assert_same_run(reference_trainer, reference, resumed_trainer, resumed)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_resume_after_sigkill_is_identical(tmp_path, one_thread):
    output = tmp_path / "killed"
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_CORE), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, training_scenario.__file__, str(output), "12", "8"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    try:
        line = process.stdout.readline()
        assert line.strip() == "PAUSED 8", process.stderr.read() if not line else line
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    state = torch.load(output / STATE_FILE, weights_only=True)
    assert state["iteration"] == 6  # the last periodic save before the kill (checkpoint_every=3)
    reference_trainer, reference = _run_scenario(tmp_path / "reference")
    resumed_trainer, resumed = _run_scenario(output)
    _assert_same_run(reference_trainer, reference, resumed_trainer, resumed)


def test_early_stopping_keeps_the_best_weights(tmp_path):
    scores = iter([0.50, 0.70, 0.60, 0.65, 0.69, 0.99])
    snapshots = {}

    def validate(model):
        snapshots[len(snapshots) + 1] = {k: v.clone() for k, v in model.state_dict().items()}
        return {"dice": next(scores)}

    config = TrainingConfig(iterations=100, batch_size=4, validate_every=2, early_stopping_patience=3,
                            optimizer={"name": "sgd", "lr": 0.1}, device="cpu", output_dir=str(tmp_path),
                            checkpoint_dtype="float16")
    result = Trainer(_linear_model(), _mse, _linear_batches(), validate, config).fit()
    assert result.stopped_reason == "early_stopping"
    assert result.iterations == 10 and len(result.history.validation) == 5
    assert (result.best_iteration, result.best_metric) == (4, 0.70)
    best, meta = load_checkpoint(result.best_checkpoint)
    assert best["weight"].dtype == torch.float16
    assert torch.equal(best["weight"], snapshots[2]["weight"].half())
    assert meta.extra["training"] == {"iteration": 4, "monitor": "dice", "metrics": {"dice": 0.70}}
    # Resuming a run that stopped early does not train further.
    again = Trainer(_linear_model(), _mse, _linear_batches(), validate, config).fit(resume=True)
    assert again.iterations == 10 and again.stopped_reason == "early_stopping" and again.history == result.history


def test_plateau_schedule_inside_training(tmp_path):
    config = TrainingConfig(iterations=12, batch_size=4, validate_every=2, log_every=2, monitor="loss", mode="min",
                            optimizer={"name": "sgd", "lr": 0.1}, schedule={"name": "plateau", "patience": 2},
                            device="cpu")
    result = Trainer(_linear_model(), _mse, _linear_batches(), lambda model: {"loss": 1.0}, config).fit()
    # Validations at 2, 4, ..., 12: first one is the best, every 2 further ones halve the learning rate.
    lrs = [row["lr"] for row in result.history.train]
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.025])


def test_history_files_and_plot(tmp_path):
    config = TrainingConfig(iterations=6, batch_size=4, validate_every=3, log_every=2, monitor="m",
                            optimizer={"name": "sgd", "lr": 0.05}, device="cpu", output_dir=str(tmp_path))
    values = iter([0.25, 0.5])
    result = Trainer(_linear_model(), _mse, _linear_batches(), lambda model: {"m": next(values), "other": 1.5},
                     config).fit()
    assert json.loads((tmp_path / "history.json").read_text()) == result.history.to_dict()
    assert TrainingHistory.load_json(tmp_path / "history.json") == result.history
    rows = list(csv.DictReader(io.StringIO((tmp_path / "history.csv").read_text())))
    assert [row["iteration"] for row in rows] == ["2", "3", "4", "6"]
    train = {row["iteration"]: row for row in result.history.train}
    assert float(rows[0]["loss"]) == train[2]["loss"] and rows[1]["loss"] == "" and rows[1]["m"] == "0.25"
    assert rows[3]["m"] == "0.5" and rows[3]["other"] == "1.5" and float(rows[3]["loss"]) == train[6]["loss"]
    png = (tmp_path / "history.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) == (900, 400)
    assert json.loads((tmp_path / "training_config.json").read_text())["iterations"] == 6
    custom = plot_history(TrainingHistory(train=[{"iteration": 1, "loss": 1.0, "lr": 0.1}]), tmp_path / "c.png",
                          title="run")
    assert custom.read_bytes()[:4] == b"\x89PNG"


def test_gradient_accumulation_equals_a_larger_batch():
    batches = _linear_batches(count=3, batch=4)
    halves = [half for x, y in batches for half in ((x[:2], y[:2]), (x[2:], y[2:]))]
    common = dict(iterations=3, validate_every=0, optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.0},
                  device="cpu")
    large = Trainer(_linear_model(), _mse, batches, config=TrainingConfig(batch_size=4, **common))
    large.fit()
    accumulated = Trainer(_linear_model(), _mse, halves,
                          config=TrainingConfig(batch_size=2, grad_accumulation=2, **common))
    accumulated.fit()
    torch.testing.assert_close(large.model.weight, accumulated.model.weight, rtol=0, atol=1e-6)
    assert not torch.equal(large.model.weight, _linear_model().weight)


def test_gradient_clipping_bounds_the_step():
    model = _linear_model()
    before = model.weight.detach().clone(), model.bias.detach().clone()
    config = TrainingConfig(iterations=1, batch_size=4, validate_every=0, grad_clip_norm=1e-3, device="cpu",
                            optimizer={"name": "sgd", "lr": 1.0, "momentum": 0.0})
    Trainer(model, lambda out, target: 1000 * _mse(out, target), _linear_batches(), config=config).fit()
    step = torch.cat([(model.weight.detach() - before[0]).flatten(), (model.bias.detach() - before[1]).flatten()])
    assert float(step.norm()) == pytest.approx(1e-3, rel=1e-4)


def test_iterable_batches_resume_by_replay(tmp_path):
    config = dict(iterations=8, batch_size=4, validate_every=0, checkpoint_every=2, device="cpu",
                  optimizer={"name": "adam", "lr": 0.01})
    reference = Trainer(_linear_model(), _mse, _linear_batches(), config=TrainingConfig(**config))
    reference.fit()
    token = CancelToken()
    interrupted = Trainer(_linear_model(), _mse, _linear_batches(), config=TrainingConfig(
        output_dir=str(tmp_path), **config), progress=lambda f, m: token.request() if f >= 0.5 else None, cancel=token)
    with pytest.raises(OperationCancelled):
        interrupted.fit()
    resumed = Trainer(_linear_model(), _mse, _linear_batches(), config=TrainingConfig(output_dir=str(tmp_path),
                                                                                      resume=True, **config))
    result = resumed.fit()
    assert result.iterations == 8
    assert torch.equal(resumed.model.weight, reference.model.weight)


def test_diverging_loss_and_bad_validation_are_reported(tmp_path):
    config = TrainingConfig(iterations=5, batch_size=4, validate_every=0, device="cpu")
    with pytest.raises(TrainingDivergedError, match="NaN or infinite at iteration 1"):
        Trainer(_linear_model(), lambda out, target: _mse(out, target) * float("nan"), _linear_batches(),
                config=config).fit()
    with pytest.raises(ValueError, match="'dice', got \\['loss'\\]"):
        Trainer(_linear_model(), _mse, _linear_batches(), lambda m: {"loss": 1.0},
                TrainingConfig(iterations=2, validate_every=1, device="cpu")).fit()
    with pytest.raises(ValueError, match="early stopping needs validation"):
        Trainer(_linear_model(), _mse, _linear_batches(), config=TrainingConfig(early_stopping_patience=2))
    with pytest.raises(ValueError, match="patch_size is needed"):
        Trainer(_linear_model(), _mse, [_coordinate_case((8, 8))], config=TrainingConfig())


def test_fit_restores_global_determinism_setting():
    before = torch.are_deterministic_algorithms_enabled()
    seen = []
    config = TrainingConfig(iterations=1, batch_size=4, validate_every=1, monitor="x", device="cpu")
    Trainer(_linear_model(), _mse, _linear_batches(),
            lambda model: {"x": float(seen.append(torch.are_deterministic_algorithms_enabled()) or 0)}, config).fit()
    assert seen == [True]
    assert torch.are_deterministic_algorithms_enabled() == before


def test_write_training_case_round_trip_and_never_overwrites(tmp_path):
    from mednets.image import Volume
    from mednets.training import training_folder_cases, write_training_case

    rng = np.random.default_rng(0)
    volume = Volume(rng.normal(size=(4, 5, 6)).astype(np.float32), spacing=(3.0, 1.5, 1.0))
    labels = (rng.random((4, 5, 6)) > 0.7).astype(np.int64) * 2
    first = write_training_case(tmp_path, "patient 1/a", volume, labels)
    second = write_training_case(tmp_path, "patient 1/a", volume, labels)
    assert [p.name for p in first] == ["patient_1_a_image.nrrd", "patient_1_a_label.nrrd"]
    assert [p.name for p in second] == ["patient_1_a_2_image.nrrd", "patient_1_a_2_label.nrrd"]
    cases = training_folder_cases(tmp_path)
    assert cases.names == ["patient_1_a", "patient_1_a_2"]
    case = cases[0]
    np.testing.assert_allclose(case.image[0], volume.array)
    np.testing.assert_array_equal(case.label, labels)
    np.testing.assert_allclose(case.spacing, (3.0, 1.5, 1.0))
    with pytest.raises(ValueError, match="shape"):
        write_training_case(tmp_path, "bad", volume, labels[:-1])
    with pytest.raises(ValueError, match="integer"):
        write_training_case(tmp_path, "bad", volume, labels.astype(float))
