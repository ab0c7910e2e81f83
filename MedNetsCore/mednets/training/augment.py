"""Augmentation hooks applied to training patches.

An augmentation hook is any callable ``hook(image, label, rng) -> (image, label)`` where ``image`` is a float32 patch
``(C, *spatial)``, ``label`` the integer label patch ``(*spatial)`` and ``rng`` the sampler's
:class:`numpy.random.Generator` (use only it for randomness, so training stays reproducible and resumable). Hooks are
composed in order with :class:`Compose`. The generic hooks here (:class:`RandomFlip`, :class:`GaussianNoise`) are
examples of the contract; each module adds the augmentations of its paper.

Weight maps: when cases carry a per-voxel weight map, the map must follow every geometric change. A hook declares
``spatial = False`` when it never moves voxels (intensity changes only; the weight map passes through unchanged);
a spatial hook that supports weight maps accepts a ``weight`` keyword and then returns ``(image, label, weight)``.
"""

from __future__ import annotations

import inspect
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

__all__ = ["AugmentHook", "apply_hook", "Compose", "RandomFlip", "GaussianNoise"]

AugmentHook = Callable[[np.ndarray, np.ndarray, np.random.Generator], Tuple[np.ndarray, np.ndarray]]


def _accepts_weight(hook: Callable) -> bool:
    try:
        parameters = inspect.signature(hook).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "weight" or p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters)


def apply_hook(hook: Callable, image: np.ndarray, label: np.ndarray, rng: np.random.Generator,
               weight: Optional[np.ndarray] = None) -> Tuple[np.ndarray, ...]:
    """Apply one hook; returns ``(image, label)`` or, when ``weight`` is given, ``(image, label, weight)``."""
    if weight is None:
        image, label = hook(image, label, rng)
        return image, label
    if getattr(hook, "spatial", True) is False:
        image, label = hook(image, label, rng)
        return image, label, weight
    if _accepts_weight(hook):
        image, label, weight = hook(image, label, rng, weight=weight)
        return image, label, weight
    raise TypeError(f"augmentation {hook!r} may move voxels but does not accept a 'weight' keyword, so it cannot keep "
                    "the cases' weight maps aligned; give it a weight keyword or set its attribute spatial = False")


class Compose:
    """Apply hooks in order (each receives the previous one's output)."""

    def __init__(self, hooks: Sequence[Callable]) -> None:
        self.hooks = list(hooks)
        for hook in self.hooks:
            if not callable(hook):
                raise TypeError(f"augmentation hooks must be callables (image, label, rng), got {hook!r}")
        self.spatial = any(getattr(hook, "spatial", True) for hook in self.hooks)

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator,
                 weight: Optional[np.ndarray] = None) -> Tuple[np.ndarray, ...]:
        result: Tuple[np.ndarray, ...] = (image, label) if weight is None else (image, label, weight)
        for hook in self.hooks:
            result = apply_hook(hook, *result[:2], rng, weight=result[2] if len(result) == 3 else None)
        return result

    def __repr__(self) -> str:
        return f"Compose({self.hooks!r})"


class RandomFlip:
    """Mirror the patch along each of ``axes`` (spatial axis indices, default all) with probability ``probability``.

    Image, label and weight map are flipped together. Only valid for tasks without left/right-specific labels.
    """

    spatial = True

    def __init__(self, axes: Optional[Sequence[int]] = None, probability: float = 0.5) -> None:
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"flip probability must be in [0, 1], got {probability}")
        self.axes = None if axes is None else tuple(int(a) for a in axes)
        self.probability = float(probability)

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator,
                 weight: Optional[np.ndarray] = None) -> Tuple[np.ndarray, ...]:
        axes = self.axes if self.axes is not None else tuple(range(label.ndim))
        for axis in axes:
            if not -label.ndim <= axis < label.ndim:
                raise ValueError(f"flip axis {axis} is out of range for a {label.ndim}D patch")
            if rng.random() < self.probability:
                axis %= label.ndim
                image = np.flip(image, axis=axis + 1)
                label = np.flip(label, axis=axis)
                if weight is not None:
                    weight = np.flip(weight, axis=axis)
        if weight is None:
            return np.ascontiguousarray(image), np.ascontiguousarray(label)
        return np.ascontiguousarray(image), np.ascontiguousarray(label), np.ascontiguousarray(weight)

    def __repr__(self) -> str:
        return f"RandomFlip(axes={self.axes}, probability={self.probability})"


class GaussianNoise:
    """Add zero-mean Gaussian noise of standard deviation ``std`` to the image with probability ``probability``."""

    spatial = False

    def __init__(self, std: float = 0.1, probability: float = 1.0) -> None:
        if std < 0:
            raise ValueError(f"noise standard deviation must be >= 0, got {std}")
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"noise probability must be in [0, 1], got {probability}")
        self.std = float(std)
        self.probability = float(probability)

    def __call__(self, image: np.ndarray, label: np.ndarray,
                 rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        if rng.random() < self.probability:
            image = (image + rng.normal(0.0, self.std, size=image.shape)).astype(np.float32)
        return image, label

    def __repr__(self) -> str:
        return f"GaussianNoise(std={self.std}, probability={self.probability})"
