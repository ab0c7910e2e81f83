"""Training recipe of AxillaryLNDetect (Altun et al., sec. 2.2-2.3, 3.2) on top of :mod:`mednets.training`.

* Targets from sparse annotations (centre + short-axis diameter per lymph node), :mod:`mednets.sparse_annotations`:
  stage 1 ("voi") the VOI mask (5 cm spheres, air/bone removed, spherical opening) at ``stage1_spacing``; stage 2
  ("ln") LN spheres at ``stage2_spacing`` with shell masking (weight 0) and size-normalised weights, cropped to the
  reference VOI (so background patches come from the axillary region, where the network is applied).
* Losses: stage 1 soft Dice on the foreground probability; stage 2 weighted categorical cross-entropy
  ``-sum_i w_i log(p_i + eps)`` (Appendix A, eq. 3/5) through :class:`mednets.losses.VoxelWeightedCrossEntropyLoss`
  (given ``log(p)``, whose log-softmax is ``log p`` again).
* Batches 50 % foreground / 50 % background patches of ``input_size``^3 (:class:`mednets.training.PatchSampler`);
  the valid network's output is ``input_size - 40``: targets and weights are centre-cropped to it.
* Adam 1e-3; validation every 100 iterations (Jaccard of the thresholded prediction, weight-0 voxels ignored);
  learning rate halved after 10 validations without improvement; stop after 50; best checkpoint by Jaccard
  (:class:`mednets.training.Trainer`, ``schedule={"name": "plateau"}``).
* Augmentation (:class:`AxillaryAugment`): rotation about the axial (K) axis ~ N(0, 5 deg), zoom 1 + U(-0.2, 0.2) on
  all axes, sagittal flip (I axis, p = 0.5), Gaussian noise N(0, 5 HU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from scipy import ndimage

from mednets.checkpoints import CheckpointMetadata
from mednets.image import Volume
from mednets.losses import SoftDiceLoss, VoxelWeightedCrossEntropyLoss
from mednets.progress import CancelCallback, ProgressCallback
from mednets.sparse_annotations import detection_weights, sphere_instances, voi_mask
from mednets.training import Case, PatchSampler, Trainer, TrainingConfig, TrainingResult

from .configs import HU_SCALE, MODULE_NAME, AxillaryConfig, normalise_hu
from .pipeline import crop_volume, predict_foreground, resample_ct

__all__ = ["STAGES", "AnnotatedCT", "AxillaryAugment", "stage_case", "stage_loss", "make_validate_fn",
           "train_stage", "checkpoint_metadata"]

STAGES = ("voi", "ln")


@dataclass
class AnnotatedCT:
    """A CT volume (HU) with sparse lymph-node annotations: centres in RAS (mm) and short-axis diameters (mm)."""

    name: str
    volume: Volume
    centres_ras: np.ndarray
    diameters_mm: np.ndarray

    @classmethod
    def from_phantom(cls, name: str, case) -> "AnnotatedCT":
        volume = Volume(case.image, spacing=case.spacing, directions_ras=case.extra["directions_ras"])
        centres = volume.kji_to_ras(np.asarray(case.extra["centres_kji"], dtype=float).reshape(-1, 3))
        return cls(name, volume, centres, np.asarray(case.extra["short_axis_mm"], dtype=float))


def _centres_kji(volume: Volume, centres_ras: np.ndarray) -> np.ndarray:
    return volume.ras_to_kji(np.asarray(centres_ras, dtype=float).reshape(-1, 3))


def stage_case(item: AnnotatedCT, stage: str, config: AxillaryConfig) -> Case:
    """The training/validation :class:`Case` of one annotated CT for ``stage`` ("voi" or "ln")."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    coarse = resample_ct(item.volume, config.stage1_spacing)
    voi = voi_mask(coarse.array, _centres_kji(coarse, item.centres_ras), coarse.spacing, config.voi_radius_mm,
                   config.air_below_hu, config.bone_above_hu, config.voi_opening_size)
    if stage == "voi":
        return _padded_case(item.name, coarse, voi.astype(np.uint8), np.ones(coarse.shape, np.float32), config,
                            {"volume": coarse})
    # stage 2: crop the original to the reference VOI (plus margin), resample to the fine spacing
    region = voi if voi.any() else np.ones(coarse.shape, bool)
    box = ndimage.find_objects(region.astype(np.uint8))[0]
    from .pipeline import _box_on_grid

    start, stop = _box_on_grid(coarse, box, item.volume, config.voi_margin_mm + 10.0)
    fine = resample_ct(crop_volume(item.volume, start, stop), config.stage2_spacing)
    instances = sphere_instances(fine.shape, _centres_kji(fine, item.centres_ras), item.diameters_mm, fine.spacing)
    weights = detection_weights(instances, config.shell_size, normalise=config.size_normalised)
    return _padded_case(item.name, fine, (instances > 0).astype(np.uint8), weights, config,
                        {"volume": fine, "instances": instances})


def _padded_case(name: str, volume: Volume, label: np.ndarray, weight: np.ndarray, config: AxillaryConfig,
                 extra: Dict[str, Any]) -> Case:
    """A training case padded by half a patch on every side (air, background, weight 0), so that a patch can be
    centred on any voxel of the image: the valid network's output is the patch centre, and the sampler's
    foreground-forced patches must have their foreground there. The unpadded arrays stay in ``extra`` for
    validation."""
    pad = int(config.input_size) // 2
    air = float(normalise_hu(np.float32(-1000.0)))
    image = np.pad(normalise_hu(volume.array), pad, mode="constant", constant_values=air)
    extra = dict(extra, label=label, weight=weight, pad=pad)
    return Case.from_volume(name, image, np.pad(label, pad), volume.spacing,
                            weight=np.pad(weight.astype(np.float32), pad), extra=extra)


class AxillaryAugment:
    """Patch augmentation of the paper (see the module docstring); works on normalised patches (C, K, J, I).

    Geometric changes (rotation, zoom, flip) act on image (linear interpolation), label and weight map (nearest)
    alike, about the patch centre; voxels mapped from outside the patch take air / background / weight 0.
    """

    def __init__(self, rotation_sd_deg: float = 5.0, zoom_range: float = 0.2, flip_sagittal: bool = True,
                 noise_sd_hu: float = 5.0) -> None:
        self.rotation_sd = math.radians(float(rotation_sd_deg))
        self.zoom_range = float(zoom_range)
        self.flip_sagittal = bool(flip_sagittal)
        self.noise_sd = float(noise_sd_hu) / HU_SCALE

    @classmethod
    def from_config(cls, settings: Dict[str, Any]) -> "AxillaryAugment":
        return cls(**settings)

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator,
                 weight: Optional[np.ndarray] = None):
        angle = rng.normal(0.0, self.rotation_sd) if self.rotation_sd > 0 else 0.0
        zoom = 1.0 + rng.uniform(-self.zoom_range, self.zoom_range) if self.zoom_range > 0 else 1.0
        flip = self.flip_sagittal and rng.random() < 0.5
        if angle != 0.0 or zoom != 1.0:
            c, s = math.cos(angle), math.sin(angle)
            # output -> input mapping: rotate in the (J, I) plane about K, scale by 1/zoom
            matrix = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]]) / zoom
            centre = (np.asarray(label.shape, dtype=float) - 1) / 2.0
            offset = centre - matrix @ centre
            air = float(normalise_hu(np.float32(-1000.0)))
            image = np.stack([ndimage.affine_transform(channel, matrix, offset, order=1, mode="constant", cval=air)
                              for channel in image]).astype(np.float32)
            label = ndimage.affine_transform(label, matrix, offset, order=0, mode="constant", cval=0)
            if weight is not None:
                weight = ndimage.affine_transform(weight, matrix, offset, order=0, mode="constant", cval=0.0)
        if flip:
            image, label = image[..., ::-1], label[..., ::-1]
            weight = weight[..., ::-1] if weight is not None else None
        if self.noise_sd > 0:
            image = image + rng.normal(0.0, self.noise_sd, size=image.shape).astype(np.float32)
        image, label = np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(label)
        if weight is None:
            return image, label
        return image, label, np.ascontiguousarray(weight, dtype=np.float32)


def _centre_crop(tensor: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    slices = [slice(None)] * (tensor.dim() - len(shape))
    for size, target in zip(tensor.shape[-len(shape):], shape):
        start = (size - target) // 2
        slices.append(slice(start, start + target))
    return tensor[tuple(slices)]


def stage_loss(stage: str) -> Callable[..., torch.Tensor]:
    """``loss(probabilities, target, [weight])`` for the valid network: targets are centre-cropped to the output.

    "voi": soft Dice of the foreground channel; "ln": weighted categorical cross-entropy on ``log(p + 1e-7)``.
    """
    if stage == "voi":
        dice = SoftDiceLoss(activation=None, include_background=False, batch=True)

        def voi_loss(output: torch.Tensor, target: torch.Tensor, *extras: torch.Tensor) -> torch.Tensor:
            return dice(output, _centre_crop(target, output.shape[2:]))
        return voi_loss
    if stage == "ln":
        cross_entropy = VoxelWeightedCrossEntropyLoss()

        def ln_loss(output: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None
                    ) -> torch.Tensor:
            shape = output.shape[2:]
            crop_weight = None if weight is None else _centre_crop(weight, shape)
            return cross_entropy(torch.log(output + 1e-7), _centre_crop(target, shape), crop_weight)
        return ln_loss
    raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")


def make_validate_fn(cases: Sequence[Case], config: AxillaryConfig, batch_size: int = 2):
    """``validate(model) -> {"jaccard", "dice"}`` over whole validation cases (weight-0 voxels ignored)."""

    def validate(model: torch.nn.Module) -> Dict[str, float]:
        intersection = union = predicted = reference = 0.0
        for case in cases:
            probability = predict_foreground(model, case.extra["volume"].array, config, batch_size=batch_size)
            prediction = probability >= 0.5
            truth = case.extra["label"] > 0
            valid = case.extra["weight"] > 0
            intersection += float((prediction & truth & valid).sum())
            union += float(((prediction | truth) & valid).sum())
            predicted += float((prediction & valid).sum())
            reference += float((truth & valid).sum())
        jaccard = intersection / union if union > 0 else 1.0
        dice = 2 * intersection / (predicted + reference) if predicted + reference > 0 else 1.0
        return {"jaccard": jaccard, "dice": dice}
    return validate


def checkpoint_metadata(stage: str, config: AxillaryConfig, network: torch.nn.Module,
                        training_data: str = "") -> CheckpointMetadata:
    spacing = config.stage1_spacing if stage == "voi" else config.stage2_spacing
    return CheckpointMetadata(
        architecture="unet3d_3level", architecture_config=_json_config(network.config), module=MODULE_NAME,
        spacing=(spacing,) * 3, intensity_normalization={"method": "clip_scale", "min": -1000, "max": 1000,
                                                         "scale": HU_SCALE},
        class_names=["background", "axillary VOI" if stage == "voi" else "lymph node"],
        training_data=training_data, extra={"stage": stage, "config": _json_config(config.to_dict())})


def _json_config(values: Dict[str, Any]) -> Dict[str, Any]:
    out = {}
    for key, value in values.items():
        out[key] = list(value) if isinstance(value, tuple) else _json_config(value) if isinstance(value, dict) \
            else value
    return out


def train_stage(stage: str, train_items: Sequence[AnnotatedCT], validation_items: Sequence[AnnotatedCT],
                config: AxillaryConfig, output_dir: str, iterations: Optional[int] = None, seed: int = 0,
                initial_network: Optional[torch.nn.Module] = None, device: str = "auto", augment: bool = True,
                progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCallback] = None,
                log: Optional[Callable[[str], None]] = None, training_changes: Optional[Dict[str, Any]] = None
                ) -> Tuple[TrainingResult, torch.nn.Module]:
    """Train one stage; returns the engine's result and the network with the best weights loaded.

    ``initial_network``: start from these weights (e.g. the VOI network for stage 2, the paper's fine-tuning variant;
    dropout then becomes ``config.dropout_finetune``). ``training_changes`` overrides recipe entries.
    """
    from . import build_model
    from mednets.checkpoints import load_into_model

    recipe = dict(config.training)
    recipe.update(training_changes or {})
    torch.manual_seed(seed)
    if initial_network is not None:
        network = build_model("unet3d_3level", **dict(initial_network.config))
        network.load_state_dict(initial_network.state_dict())
        network.set_dropout(config.dropout_finetune)
    else:
        overrides = dict(config.model_overrides)
        overrides.setdefault("dropout", config.dropout_scratch)
        network = build_model("unet3d_3level", **overrides)
    train_cases = [stage_case(item, stage, config) for item in train_items]
    validation_cases = [stage_case(item, stage, config) for item in validation_items]
    hook = AxillaryAugment.from_config(recipe.get("augmentation", {})) if augment else None
    sampler = PatchSampler(train_cases, (config.input_size,) * 3, foreground_fraction=recipe["foreground_fraction"],
                           seed=seed, augment=hook, image_pad_value=float(normalise_hu(np.float32(-1000.0))),
                           background="random", output_crop=20)
    engine_config = TrainingConfig(
        iterations=int(iterations or recipe["iterations"]), batch_size=int(recipe["batch_size"]),
        patch_size=(config.input_size,) * 3, foreground_fraction=recipe["foreground_fraction"],
        optimizer=dict(recipe["optimizer"]), schedule=dict(recipe["schedule"]),
        validate_every=int(recipe["validate_every"]), monitor=recipe["monitor"], mode=recipe["mode"],
        early_stopping_patience=recipe.get("early_stopping_patience"), seed=seed, output_dir=str(output_dir),
        device=device, log_every=10, plot=True, deterministic=False)
    trainer = Trainer(network, stage_loss(stage), sampler, make_validate_fn(validation_cases, config),
                      engine_config, progress=progress, cancel=cancel, log=log,
                      metadata=checkpoint_metadata(stage, config, network,
                                                   f"{len(train_cases)} annotated CT volumes"))
    result = trainer.fit()
    best = result.best_checkpoint or result.last_checkpoint
    if best is not None:
        network = network.cpu()
        load_into_model(network, best, expected_module=MODULE_NAME)
    return result, network.eval()
