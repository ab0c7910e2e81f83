"""Training recipe of section 5.3.2 on top of :mod:`mednets.training` (Trainer, RAdam, checkpoints, history).

* batches of ``batch_size`` (2) planning/daily patch pairs, doubled by swapping fixed and moving (each pair is used in
  both directions in the same iteration);
* patch centres drawn with equal probability from the targets (prostate, seminal vesicles), the organs at risk
  (bladder, rectum) and the torso (any voxel inside the body) of the fixed scan;
* loss (Eq. 5.6): weighting(NCC, DSC-R, DSC-S) + 0.5 * bending energy, each term the 1/3-weighted mean over the three
  deep-supervised resolutions; ground truths and warps live on the output grids of
  :func:`AdaptiveRecontourLib.blocks.output_grids` (crop + stride);
* the loss-weighting module (homoscedastic log-variances) is a sub-module of the trained module, so its parameters
  are in ``model.parameters()`` and reach the optimizer the Trainer builds.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from mednets.checkpoints import CheckpointMetadata, save_checkpoint
from mednets.losses import NCCLoss, SoftDiceLoss, WarpedContourDiceLoss, bending_energy, make_weighting
from mednets.metrics import dice, folding_fraction
from mednets.spatial_transform import warp_image
from mednets.training import Trainer, TrainingConfig

from . import build_model
from .blocks import output_grids
from .configs import MODULE_NAME, OAR_LABELS, STRUCTURES, TARGET_LABELS, RecontourConfig
from .pipeline import AIR, normalise_ct, predict_arrays, largest_component_per_label

__all__ = ["TrainingPair", "PairPatchSampler", "JRSTrainingModule", "JRSLoss", "evaluate_pairs", "train_network",
           "task_names", "recalibrate_batch_norm", "checkpoint_metadata", "pairs_from_volumes", "train_from_folder"]


@dataclass
class TrainingPair:
    """One affinely aligned pair on a common grid: normalised images and label maps (0..num_classes-1)."""

    fixed: np.ndarray
    moving: np.ndarray
    fixed_labels: np.ndarray
    moving_labels: np.ndarray
    name: str = ""

    @classmethod
    def from_hu(cls, fixed_hu, moving_hu, fixed_labels, moving_labels, num_classes=5, hu_clip=(-1000, 1000),
                name=""):
        def clean(l):
            l = np.asarray(l).astype(np.int64)
            return np.where((l >= 0) & (l < num_classes), l, 0).astype(np.uint8)

        return cls(normalise_ct(fixed_hu, hu_clip), normalise_ct(moving_hu, hu_clip), clean(fixed_labels),
                   clean(moving_labels), name)


class PairPatchSampler:
    """``next_batch(b)`` -> (inputs (2b, 3, n, n, n) = [fixed, moving, moving labels], fixed labels (2b, 1, n, n, n))."""

    def __init__(self, pairs: Sequence[TrainingPair], patch_size: int, sampling: Mapping[str, float], seed: int = 0,
                 swap: bool = True) -> None:
        if not pairs:
            raise ValueError("no training pairs")
        self.n = int(patch_size)
        output_grids(self.n)
        self.swap = bool(swap)
        keys = ("target", "oar", "torso")
        weights = np.array([float(sampling.get(k, 0.0)) for k in keys])
        if weights.sum() <= 0:
            raise ValueError("sampling weights must not all be 0")
        self.weights = weights / weights.sum()
        h = self.n // 2
        self.padded = []
        for p in pairs:
            pad = [(h, h)] * 3
            self.padded.append((np.pad(p.fixed, pad, constant_values=AIR), np.pad(p.moving, pad, constant_values=AIR),
                                np.pad(p.fixed_labels, pad), np.pad(p.moving_labels, pad)))
        self.candidates = []
        for p in pairs:
            lab = p.fixed_labels
            cand = {"target": np.argwhere(np.isin(lab, TARGET_LABELS)), "oar": np.argwhere(np.isin(lab, OAR_LABELS)),
                    "torso": np.argwhere(p.fixed > -0.6)}
            if len(cand["torso"]) == 0:
                cand["torso"] = np.argwhere(np.ones_like(lab, dtype=bool))
            self.candidates.append(cand)
        self.rng = np.random.default_rng(seed)

    def _one(self):
        index = int(self.rng.integers(len(self.padded)))
        kind = ("target", "oar", "torso")[int(self.rng.choice(3, p=self.weights))]
        cand = self.candidates[index][kind]
        if len(cand) == 0:
            cand = self.candidates[index]["torso"]
        centre = cand[int(self.rng.integers(len(cand)))]
        sl = tuple(slice(int(c), int(c) + self.n) for c in centre)  # padded by n/2: centre c -> start c
        f, m, fl, ml = (a[sl] for a in self.padded[index])
        return f, m, fl, ml

    def next_batch(self, batch_size: int):
        items = [self._one() for _ in range(int(batch_size))]
        inputs, targets = [], []
        for f, m, fl, ml in items:
            inputs.append(np.stack([f, m, ml.astype(np.float32)]))
            targets.append(fl[None])
        if self.swap:  # fixed <-> moving: the network also warps the daily patch onto the planning patch
            for f, m, fl, ml in items:
                inputs.append(np.stack([m, f, fl.astype(np.float32)]))
                targets.append(ml[None])
        return (torch.from_numpy(np.stack(inputs).astype(np.float32)),
                torch.from_numpy(np.stack(targets).astype(np.int64)))

    def state_dict(self) -> Dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


def task_names(network: torch.nn.Module) -> List[str]:
    tasks = getattr(network, "tasks", ())
    names = []
    if "dvf" in tasks:
        names.append("ncc")
        if getattr(network, "uses_contour_loss", False):
            names.append("dsc_r")
    if "seg" in tasks:
        names.append("dsc_s")
    return names


class JRSTrainingModule(torch.nn.Module):
    """The network plus its loss weighting (so the weighting's parameters are trained too)."""

    def __init__(self, network: torch.nn.Module, weighting: str = "equal") -> None:
        super().__init__()
        self.network = network
        self.weighting = make_weighting(weighting, task_names(network))

    def forward(self, inputs: torch.Tensor) -> Dict[str, Any]:
        out = self.network(inputs[:, 0:1], inputs[:, 1:2], inputs[:, 2:3])
        return {**out, "inputs": inputs}


class JRSLoss:
    """Eq. 5.6 with deep supervision; ``last`` holds the latest term values and weights (floats)."""

    def __init__(self, module: JRSTrainingModule, config: RecontourConfig) -> None:
        self.module = module
        self.config = config
        self.ncc = NCCLoss()
        # Dice smoothing of 1 voxel and one ratio per structure over the batch: with the earlier 1e-5 per item, a
        # structure absent from a patch's output grid turned the slightest displacement that brought some of it in
        # into a loss jump of about 1 (see mednets.losses.WarpedContourDiceLoss), a spike that dominated DSC-R.
        smooth, batch = config.dice_smooth, config.dice_batch
        self.dsc_r = WarpedContourDiceLoss(config.num_classes, smooth=smooth, batch=batch)
        self.dsc_s = SoftDiceLoss(activation="softmax", include_background=False, smooth_numerator=smooth,
                                  smooth_denominator=smooth, batch=batch)
        self.last: Dict[str, float] = {}
        self.history: List[Dict[str, float]] = []  # one entry per call (training iteration)

    def __call__(self, output: Mapping[str, Any], targets: torch.Tensor) -> torch.Tensor:
        inputs = output["inputs"]
        n = inputs.shape[-1]
        fixed, moving, moving_labels = inputs[:, 0:1], inputs[:, 1:2], inputs[:, 2:3].round().long()
        terms: Dict[str, torch.Tensor] = {}
        bending = inputs.new_zeros(())
        for w, grid, r in zip(self.config.deep_supervision, output_grids(n), range(3)):
            sl = (slice(None), slice(None)) + (slice(grid.offset, grid.offset + grid.stride * grid.size, grid.stride),) * 3
            fixed_r, labels_r = fixed[sl], targets[sl]
            if "dvf" in output:
                dvf = output["dvf"][r]
                warped = warp_image(moving, dvf, grid.offset, grid.stride)
                terms["ncc"] = terms.get("ncc", 0.0) + w * self.ncc(fixed_r, warped)
                bending = bending + w * bending_energy(dvf, (grid.stride,) * 3).mean()
                if "dsc_r" in self.module.weighting.names:
                    terms["dsc_r"] = terms.get("dsc_r", 0.0) + w * self.dsc_r(moving_labels, dvf, labels_r,
                                                                               grid.offset, grid.stride)
            if "seg" in output:
                terms["dsc_s"] = terms.get("dsc_s", 0.0) + w * self.dsc_s(output["seg"][r], labels_r)
        total = self.module.weighting(terms)
        if "dvf" in output:
            total = total + self.config.bending_weight * bending
            self.last["bending"] = float(bending.detach())
        self.last.update({k: float(v.detach()) for k, v in terms.items()})
        self.last.update({f"w_{k}": v for k, v in self.module.weighting.weights().items()})
        self.history.append(dict(self.last))
        return total


def recalibrate_batch_norm(network: torch.nn.Module, sampler: "PairPatchSampler", batches: int = 16,
                           batch_size: int = 2, device: Optional[torch.device] = None) -> int:
    """Re-estimate every batch-norm layer's running mean and variance as plain averages over ``batches`` training
    batches with the final weights ("precise BN"); returns the number of layers.

    Why: in eval mode BN uses running statistics, an exponential average (momentum 0.1) over batches seen while the
    weights were still moving. After a few hundred iterations at a high learning rate they lag the weights: the
    displacement predicted in eval mode differed from the train-mode one by up to ~0.5 voxel on a toy pair, and on
    held-out phantom pairs one run scored a mean DSC of 0.315 in eval mode against 0.613 with recalibrated
    statistics at the same weights. Nothing is learned here: no gradients."""
    layers = [m for m in network.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not layers:
        return 0
    was_training = network.training
    momenta = [m.momentum for m in layers]
    device = device or next(network.parameters()).device
    try:
        for m in layers:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        network.train()
        with torch.no_grad():
            for _ in range(int(batches)):
                inputs, _ = sampler.next_batch(batch_size)
                inputs = inputs.to(device)
                network(inputs[:, 0:1], inputs[:, 1:2], inputs[:, 2:3])
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        network.train(was_training)
    return len(layers)


def evaluate_pairs(network: torch.nn.Module, pairs: Sequence[TrainingPair], patch_size: int, num_classes: int = 5,
                   device: torch.device = torch.device("cpu"), spacing: Sequence[float] = (1.0, 1.0, 1.0),
                   largest_component: bool = True) -> Dict[str, float]:
    """Mean DSC over structures and pairs: segmentation head, warped contours, affine only; folding of the DVF."""
    from mednets.spatial_transform import warp_labels

    values = list(range(1, num_classes))
    scores: Dict[str, List[float]] = {"dice_seg": [], "dice_reg": [], "dice_affine": [], "folding": [],
                                      "jacobian_std": []}
    for p in pairs:
        out = predict_arrays(network, p.fixed, p.moving, p.moving_labels, patch_size, device, batch_size=1)

        def mean_dice(labels):
            return float(np.mean([dice(labels == v, p.fixed_labels == v) for v in values]))

        scores["dice_affine"].append(mean_dice(p.moving_labels))
        if "seg" in out:
            seg = largest_component_per_label(out["seg"], values) if largest_component else out["seg"]
            scores["dice_seg"].append(mean_dice(seg))
        if "dvf" in out:
            warped = warp_labels(torch.from_numpy(p.moving_labels.astype(np.int64))[None, None],
                                 torch.from_numpy(out["dvf"])[None], num_classes)[0, 0].numpy()
            if largest_component:
                warped = largest_component_per_label(warped, values)
            scores["dice_reg"].append(mean_dice(warped))
            from mednets.metrics import jacobian_std
            dvf_mm = out["dvf"] * np.asarray(spacing, dtype=np.float32)[:, None, None, None]
            scores["folding"].append(folding_fraction(dvf_mm, spacing))
            scores["jacobian_std"].append(jacobian_std(dvf_mm, spacing))
    result = {k: float(np.mean(v)) for k, v in scores.items() if v}
    result["dice"] = max(result.get("dice_seg", 0.0), result.get("dice_reg", 0.0))
    return result


def checkpoint_metadata(config: RecontourConfig, training_data: str = "", extra: Optional[dict] = None
                        ) -> CheckpointMetadata:
    names = ["background"] + [STRUCTURES[v] for v in sorted(STRUCTURES)]
    return CheckpointMetadata(architecture=config.model, architecture_config=config.architecture_config(),
                              module=MODULE_NAME, spacing=(config.spacing_mm,) * 3,
                              intensity_normalization={"method": "window", "min": config.hu_clip[0],
                                                       "max": config.hu_clip[1]},
                              class_names=names[:config.num_classes], training_data=training_data,
                              extra={"config": config.to_dict(), **(extra or {})})


def train_network(config: RecontourConfig, train_pairs: Sequence[TrainingPair],
                  val_pairs: Sequence[TrainingPair] = (), output_dir: Optional[str] = None,
                  iterations: Optional[int] = None, validate_every: int = 0, seed: int = 0, device: str = "cpu",
                  progress: Optional[Callable[[float, str], None]] = None, cancel: Optional[Callable[[], bool]] = None,
                  network: Optional[torch.nn.Module] = None, log_every: int = 10, training_data: str = ""):
    """Train one network; returns (network, TrainingResult, JRSLoss). ``output_dir`` gets the mednets Trainer files
    and ``model.safetensors`` (the network alone, loadable with :func:`mednets.models.load_model`)."""
    torch.manual_seed(seed)
    if network is None:
        network = build_model(config.model, **config.architecture_config())
    module = JRSTrainingModule(network, config.weighting)
    loss = JRSLoss(module, config)
    sampler = PairPatchSampler(train_pairs, config.patch_size, config.sampling, seed=seed,
                               swap=config.swap_fixed_moving)
    iters = int(iterations if iterations is not None else config.iterations)
    spacing = (config.spacing_mm,) * 3
    calibration = PairPatchSampler(train_pairs, config.patch_size, config.sampling, seed=seed + 1,
                                   swap=config.swap_fixed_moving)

    def calibrate(net):
        calibration.rng = np.random.default_rng(seed + 1)  # the same batches at every call
        recalibrate_batch_norm(net, calibration, config.bn_recalibration_batches, config.batch_size)

    validate = None
    if val_pairs:
        def validate(m):
            calibrate(m.network)
            return evaluate_pairs(m.network, val_pairs, config.inference_patch_size, config.num_classes,
                                  spacing=spacing)
    tc = TrainingConfig(iterations=iters, batch_size=config.batch_size, optimizer=dict(config.optimizer),
                        schedule=dict(config.schedule),
                        validate_every=validate_every if val_pairs else 0, monitor="dice", mode="max", seed=seed,
                        output_dir=output_dir, device=device, log_every=log_every, plot=False,
                        deterministic=False)
    meta = checkpoint_metadata(config, training_data)
    trainer = Trainer(module, loss, sampler, validate_fn=validate, config=tc, progress=progress, cancel=cancel,
                      metadata=meta)
    result = trainer.fit()
    if config.bn_recalibration_batches > 0:
        calibrate(network)
    if output_dir is not None:
        _export_network_checkpoints(Path(output_dir), meta)
        save_checkpoint(Path(output_dir) / "model.safetensors", network, meta)
    return network, result, loss


def _export_network_checkpoints(folder: Path, meta: CheckpointMetadata) -> None:
    """The Trainer saves the training module (network + loss weighting); rewrite its BEST/LAST checkpoints with the
    network alone so that they load with :func:`mednets.models.load_model` like any other weights."""
    from mednets.checkpoints import load_checkpoint

    for name in ("best.safetensors", "last.safetensors"):
        path = folder / name
        if not path.is_file():
            continue
        state, stored = load_checkpoint(path)
        network_state = {k[len("network."):]: v for k, v in state.items() if k.startswith("network.")}
        if network_state:
            save_checkpoint(path, network_state, dataclasses.replace(meta, extra={**meta.extra, **{
                k: v for k, v in stored.extra.items() if k != "config"}}))


def pairs_from_volumes(items, config: RecontourConfig, affine_iterations: int = 100) -> List[TrainingPair]:
    """TrainingPairs from (planning Volume, planning labels, daily Volume, daily labels, name) tuples: resampling to
    the working spacing and affine pre-registration as at inference (:func:`pipeline.prepare_pair`)."""
    from mednets.resampling import resample_to_reference

    from .pipeline import prepare_pair

    pairs = []
    for planning, planning_labels, daily, daily_labels, name in items:
        prep = prepare_pair(planning, planning_labels, daily, config.spacing_mm, config.affine_preregistration,
                            affine_iterations)
        fixed_labels = resample_to_reference(daily.with_array(np.asarray(daily_labels, dtype=np.uint8)), prep.fixed,
                                             "nearest", 0).array
        pairs.append(TrainingPair.from_hu(prep.fixed.array, prep.moving.array, fixed_labels, prep.moving_labels,
                                          config.num_classes, config.hu_clip, name))
    return pairs


def train_from_folder(folder, output_dir, configName: str = "cpu_small", iterations: Optional[int] = None,
                      device: str = "auto", progress=None, cancel=None, seed: int = 0,
                      initial_network: Optional[torch.nn.Module] = None,
                      initial_config: Optional[RecontourConfig] = None, **overrides) -> Path:
    """Train on a folder of pairs (:mod:`.data`); one pair in five (at least one, when there are two or more)
    validates. Returns the path of ``model.safetensors``.

    ``initial_network`` with its ``initial_config`` (as :func:`.models.load_recontour_model` returns them): fine-tune
    a copy of that network with that configuration (``configName`` is then not used; ``overrides`` still apply)."""
    from .configs import get_config
    from .data import list_pair_cases, read_pair_case

    if initial_network is not None:
        config = dataclasses.replace(initial_config or RecontourConfig(), **overrides)
        network = build_model(config.model, **config.architecture_config())
        network.load_state_dict(initial_network.state_dict())  # a copy: the cached network stays as it was
    else:
        config, network = get_config(configName, **overrides), None
    names = list_pair_cases(folder)
    if not names:
        raise ValueError(f"no planning/daily pairs in '{folder}' (expected <case>_planning.nrrd, "
                         "<case>_planning_label.nrrd, <case>_daily.nrrd, <case>_daily_label.nrrd)")
    items = []
    for name in names:
        p, pl, d, dl = read_pair_case(folder, name)
        items.append((p, pl, d, dl, name))
    pairs = pairs_from_volumes(items, config)
    n_val = max(1, len(pairs) // 5) if len(pairs) >= 2 else 0
    train, val = pairs[n_val:] or pairs, pairs[:n_val]
    iters = int(iterations if iterations is not None else config.iterations)
    train_network(config, train, val, output_dir=str(output_dir), iterations=iters,
                  validate_every=max(1, iters // 4) if val else 0, seed=seed, device=device, progress=progress,
                  cancel=cancel, network=network, training_data=f"{len(pairs)} pairs from {folder}")
    return Path(output_dir) / "model.safetensors"
