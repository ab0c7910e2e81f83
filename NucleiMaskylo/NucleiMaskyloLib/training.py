"""Training of the Mask R-CNN branch with the paper's recipe (Table I), as data.

Paper (Table I): SGD with momentum 0.9, learning rate 0.0025 with warmup and a step-decay schedule, batch size 16,
losses cross-entropy (classes), smooth L1 (boxes), binary cross-entropy (masks) - torchvision's Mask R-CNN losses.
Not in the paper (Detectron2 defaults used): weight decay 1e-4, linear warmup from 0.001 x lr, decay by 0.1 at
75 % and 90 % of the iterations. On small machines the batch of 16 is reached by gradient accumulation over
micro-batches (``micro_batch``). Augmentation (ours): flips, 90-degree rotations and a mild stain jitter.

One *iteration* is one optimizer step (one batch of ``batch_size`` tiles).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from mednets.progress import OperationCancelled, check_cancel

__all__ = ["TrainingRecipe", "PAPER_RECIPE", "DEMO_RECIPE", "targets_from_label_map", "augment", "learning_rate",
           "save_nuclei_checkpoint", "normalise_cases",
           "train_mask_rcnn", "evaluate_map"]


@dataclass(frozen=True)
class TrainingRecipe:
    """How a Mask R-CNN is trained (all JSON-serialisable)."""

    lr: float = 0.0025
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 16
    micro_batch: int = 2
    iterations: int = 2000
    warmup_iterations: int = 100
    warmup_factor: float = 0.001
    decay_at: Tuple[float, ...] = (0.75, 0.9)
    gamma: float = 0.1
    tile_size: int = 512
    augment: bool = True
    stain_jitter: float = 0.05
    gradient_clip: float = 10.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainingRecipe":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: (tuple(v) if k == "decay_at" else v) for k, v in data.items() if k in known}
        return cls(**values)


#: The paper's recipe for the "mask_rcnn" configuration (512x512 tiles, batch 16 as 8 micro-batches of 2).
PAPER_RECIPE = TrainingRecipe()

#: The demo configuration (mask_rcnn_small) on small phantom tiles: the paper's optimizer, momentum, warmup and step
#: decay, batch 16 (4 micro-batches of 4 tiles of 128x128 pixels); a learning rate of 0.02 instead of 0.0025 because
#: the small network is trained from scratch for a few hundred iterations on a CPU.
DEMO_RECIPE = TrainingRecipe(lr=0.02, micro_batch=4, iterations=120, warmup_iterations=10, tile_size=128,
                             stain_jitter=0.05)


def targets_from_label_map(labels: np.ndarray) -> Dict[str, torch.Tensor]:
    """torchvision Mask R-CNN targets (boxes x1 y1 x2 y2, labels 1, uint8 masks) of an instance label map."""
    from mednets.metrics.coco_instances import boxes_from_masks, masks_from_label_map

    masks, _ = masks_from_label_map(np.asarray(labels))
    boxes = boxes_from_masks(masks)
    return {"boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.ones(len(masks), dtype=torch.int64),
            "masks": torch.from_numpy(masks.astype(np.uint8))}


def augment(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator, stain_jitter: float = 0.05
            ) -> Tuple[np.ndarray, np.ndarray]:
    """Random flips, 90-degree rotations and a multiplicative per-channel optical-density jitter."""
    k = int(rng.integers(4))
    image, labels = np.rot90(image, k), np.rot90(labels, k)
    if rng.random() < 0.5:
        image, labels = image[:, ::-1], labels[:, ::-1]
    if stain_jitter > 0:
        density = -np.log((image.astype(np.float32) + 1.0) / 256.0)
        density *= rng.uniform(1 - stain_jitter * 3, 1 + stain_jitter * 3, size=3).astype(np.float32)
        image = np.clip(256.0 * np.exp(-density) - 1.0, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image), np.ascontiguousarray(labels)


def _random_crop(image, labels, size, rng):
    height, width = labels.shape
    if height < size or width < size:
        pad = ((0, max(0, size - height)), (0, max(0, size - width)))
        image = np.pad(image, pad + ((0, 0),), constant_values=240)
        labels = np.pad(labels, pad)
        height, width = labels.shape
    y = int(rng.integers(0, height - size + 1))
    x = int(rng.integers(0, width - size + 1))
    return image[y:y + size, x:x + size], labels[y:y + size, x:x + size]


def learning_rate(recipe: TrainingRecipe, iteration: int) -> float:
    """Linear warmup from ``warmup_factor * lr`` over ``warmup_iterations``, then steps of ``gamma`` at
    ``decay_at`` fractions of ``iterations``."""
    lr = recipe.lr * recipe.gamma ** sum(iteration >= int(f * recipe.iterations) for f in recipe.decay_at)
    if iteration < recipe.warmup_iterations:
        alpha = iteration / max(1, recipe.warmup_iterations)
        lr *= recipe.warmup_factor * (1 - alpha) + alpha
    return lr


def evaluate_map(model: torch.nn.Module, cases: Sequence[Tuple[np.ndarray, np.ndarray]],
                 score_threshold: float = 0.05) -> Dict[str, float]:
    """COCO mask mAP@50 / mAP@50-95 and P/R (score >= 0.5, IoU >= 0.5) of ``model`` on whole (image, labels) tiles."""
    from mednets.metrics.coco_instances import coco_average_precision, detection_precision_recall

    from .pipeline import predict_tile

    references, detections = [], []
    for image, labels in cases:
        found = predict_tile(model, image, score_threshold)
        references.append(np.asarray(labels))
        detections.append(found.to_instance_set())
    ap = coco_average_precision(references, detections, "segm", max_dets=300)
    pr = detection_precision_recall(references, detections)
    return {"mAP50": ap["mAP50"], "mAP50_95": ap["mAP"], "precision": pr["precision"], "recall": pr["recall"]}


def train_mask_rcnn(model: torch.nn.Module, train_cases: Sequence[Tuple[np.ndarray, np.ndarray]],
                    recipe: TrainingRecipe = PAPER_RECIPE,
                    val_cases: Sequence[Tuple[np.ndarray, np.ndarray]] = (), seed: int = 0,
                    eval_every: int = 0, progress: Optional[Callable[[float, str], None]] = None,
                    cancel: Optional[Callable[[], bool]] = None,
                    on_iteration: Optional[Callable[[int, Dict[str, float]], None]] = None,
                    device: Optional[torch.device] = None, time_limit_s: Optional[float] = None) -> Dict[str, list]:
    """Train ``model`` in place on (RGB uint8 image, instance label map) pairs; returns the history.

    Every iteration draws ``batch_size`` random crops of ``tile_size`` (augmented), accumulates gradients over
    micro-batches, clips the gradient norm and takes one SGD step. With ``val_cases`` and ``eval_every`` > 0 the
    mask mAP@50 is measured every ``eval_every`` iterations and at the end, and the best weights are restored at the
    end. ``time_limit_s`` stops early (after the current iteration) when the time is spent.
    """
    if not train_cases:
        raise ValueError("no training tiles")
    device = device or next(model.parameters()).device
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    accumulation = max(1, math.ceil(recipe.batch_size / recipe.micro_batch))
    history: Dict[str, list] = {"iteration": [], "loss": [], "lr": [], "val_iteration": [], "val_mAP50": []}
    best = (-1.0, None)
    start = time.perf_counter()
    model.train()

    def validate(iteration):
        nonlocal best
        scores = evaluate_map(model, val_cases)
        model.train()
        history["val_iteration"].append(iteration)
        history["val_mAP50"].append(scores["mAP50"])
        if scores["mAP50"] > best[0]:
            best = (scores["mAP50"], {k: v.detach().clone() for k, v in model.state_dict().items()})
        return scores

    for iteration in range(recipe.iterations):
        check_cancel(cancel)
        lr = learning_rate(recipe, iteration)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(accumulation):
            images, targets = [], []
            for _ in range(recipe.micro_batch):
                image, labels = train_cases[int(rng.integers(len(train_cases)))]
                image, labels = _random_crop(np.asarray(image), np.asarray(labels), recipe.tile_size, rng)
                if recipe.augment:
                    image, labels = augment(image, labels, rng, recipe.stain_jitter)
                images.append(torch.from_numpy(image).permute(2, 0, 1).float().div(255.0).to(device))
                targets.append({k: v.to(device) for k, v in targets_from_label_map(labels).items()})
            losses = model(images, targets)
            loss = sum(losses.values()) / accumulation
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the training loss became {float(loss)} at iteration {iteration}; "
                                         "lower the learning rate")
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(params, recipe.gradient_clip)
        optimizer.step()
        history["iteration"].append(iteration + 1)
        history["loss"].append(total)
        history["lr"].append(lr)
        if on_iteration is not None:
            on_iteration(iteration + 1, {"loss": total, "lr": lr})
        if progress is not None:
            progress((iteration + 1) / recipe.iterations, f"iteration {iteration + 1}/{recipe.iterations} "
                                                         f"loss {total:.3f}")
        if val_cases and eval_every and (iteration + 1) % eval_every == 0 and iteration + 1 < recipe.iterations:
            validate(iteration + 1)
        if time_limit_s is not None and time.perf_counter() - start > time_limit_s:
            break
    if val_cases:
        validate(history["iteration"][-1] if history["iteration"] else 0)
        if best[1] is not None:
            model.load_state_dict(best[1])
            history["best_val_mAP50"] = [best[0]]
    history["seconds"] = [time.perf_counter() - start]
    model.eval()
    return history


def save_nuclei_checkpoint(path, model: torch.nn.Module, architecture: str, overrides: Optional[dict] = None,
                           pipeline: Optional[dict] = None, training_data: str = "", extra: Optional[dict] = None,
                           dtype=None):
    """Write a NucleiMaskylo checkpoint (mednets safetensors + metadata: architecture, overrides, pipeline settings
    such as tile size and stain normalisation, training description, scores)."""
    from mednets.checkpoints import CheckpointMetadata, save_checkpoint

    from .models import MODULE_NAME

    info = dict(extra or {})
    info["pipeline"] = dict(pipeline or {})
    metadata = CheckpointMetadata(architecture=architecture, architecture_config=dict(overrides or {}),
                                  module=MODULE_NAME, spacing=None,
                                  intensity_normalization={"method": "rgb_unit", "mean": [0.485, 0.456, 0.406],
                                                           "std": [0.229, 0.224, 0.225]},
                                  class_names=["background", "nucleus"],
                                  class_colors=[(0.0, 0.0, 0.0), (0.5, 0.2, 0.7)], training_data=training_data,
                                  extra=info)
    return save_checkpoint(path, model, metadata, dtype=dtype)


def normalise_cases(cases: Sequence[Tuple[np.ndarray, np.ndarray]], method: str = "macenko",
                    reference: Optional[dict] = None) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Stain-normalise training tiles (each with its own stain estimate) as the paper does before training; the
    same normalisation is applied at inference (:class:`NucleiMaskyloLib.pipeline.NucleiPipeline`)."""
    from .stain import StainNormalizer

    normalizer = StainNormalizer(method, reference or {})
    return [(normalizer.transform(np.asarray(image)), np.asarray(labels)) for image, labels in cases]
