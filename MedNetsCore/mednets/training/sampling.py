"""Class-balanced random patch sampling (2D and 3D) with a resumable, seeded random generator.

:class:`PatchSampler` draws fixed-size patches from training cases. With probability ``foreground_fraction`` a patch is
forced to contain a voxel of a foreground class; the class is drawn uniformly among the classes present in the chosen
case, so rare structures are seen as often as large ones (the "oversampling" of nnU-Net, Isensee et al., Nature
Methods 2021). The other patches are placed uniformly at random. Cases smaller than the patch are padded (image with
``image_pad_value``, label with ``label_pad_value``, weight map with 0) and centred in the padded grid.

All randomness (case, class, location, augmentation) comes from one :class:`numpy.random.Generator` whose state is part
of :meth:`PatchSampler.state_dict`, so an interrupted training resumes with exactly the patches it would have drawn.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from mednets.training.augment import apply_hook
from mednets.training.data import Case, check_compatible_cases

__all__ = ["PatchSampler", "rank_seed_sequence"]


def rank_seed_sequence(seed: int, rank: Optional[int] = None) -> np.random.SeedSequence:
    """Seed sequence of a sampler: ``seed`` alone, or ``seed`` with ``spawn_key=(rank,)`` for a distributed rank.

    Ranks get statistically independent but reproducible streams.
    """
    if rank is None:
        return np.random.SeedSequence(int(seed))
    return np.random.SeedSequence(int(seed), spawn_key=(int(rank),))


def _evenly_spaced(indices: np.ndarray, limit: int) -> np.ndarray:
    if len(indices) <= limit:
        return indices
    return indices[np.linspace(0, len(indices) - 1, limit).round().astype(np.int64)]


class PatchSampler:
    """Draw class-balanced training patches from labelled cases.

    Args:
        cases: labelled :class:`~mednets.training.data.Case` objects (same channels and dimensionality).
        patch_size: patch shape, one entry per spatial axis (array-axis order).
        foreground_fraction: fraction of patches forced to contain a foreground voxel (0 = purely random).
        classes: label values counted as foreground (default: every non-zero value found in the cases).
        seed: seed of the random generator.
        augment: optional hook ``(image, label, rng) -> (image, label)`` applied to each patch (see
            :mod:`mednets.training.augment`).
        image_pad_value / label_pad_value: values used where a patch extends past a case smaller than the patch.
        max_locations_per_class: foreground voxels remembered per case and class (evenly subsampled beyond that).
        background: where the patches that are not foreground-forced go: ``"random"`` (anywhere, default) or
            ``"negative"`` (patches without any foreground voxel, as the "negative background sub-volumes" of
            Taghanaki et al., Combo loss, 2019, sec. 3a; up to ``negative_attempts`` random draws are tried, then the
            draw with the fewest foreground voxels is kept).
        output_crop: voxels a valid-convolution network loses at each side (int or one per axis; default 0): a
            foreground-forced patch then holds its foreground voxel inside the central region the network predicts
            (the patch minus ``output_crop`` at each side) instead of anywhere in the patch.

    Patches: image ``(C, *patch_size)`` float32, label ``(*patch_size)`` of the cases' label dtype and, when the cases
    have weight maps, weight ``(*patch_size)`` float32. :meth:`next_batch` stacks them into torch tensors
    ``(B, C, *patch_size)`` float32, ``(B, *patch_size)`` int64 [, ``(B, *patch_size)`` float32].
    """

    def __init__(self, cases: Sequence[Case], patch_size: Sequence[int], foreground_fraction: float = 0.5,
                 classes: Optional[Sequence[int]] = None, seed: int = 0, augment: Optional[Callable] = None,
                 image_pad_value: float = 0.0, label_pad_value: int = 0, max_locations_per_class: int = 10000,
                 background: str = "random", negative_attempts: int = 20,
                 output_crop: Union[int, Sequence[int]] = 0) -> None:
        self.cases: List[Case] = list(cases)
        check_compatible_cases(self.cases, require_labels=True)
        self.patch_size = tuple(int(p) for p in patch_size)
        ndim = self.cases[0].spatial_ndim
        if len(self.patch_size) != ndim or not all(p > 0 for p in self.patch_size):
            raise ValueError(f"patch_size must be {ndim} positive integers (one per spatial axis of the cases), "
                             f"got {tuple(patch_size)}")
        if not 0.0 <= foreground_fraction <= 1.0:
            raise ValueError(f"foreground_fraction must be in [0, 1], got {foreground_fraction}")
        weighted = [case.weight is not None for case in self.cases]
        if any(weighted) and not all(weighted):
            raise ValueError("either every case or no case must have a weight map")
        self.has_weights = all(weighted)
        if background not in ("random", "negative"):
            raise ValueError(f"background must be 'random' or 'negative', got {background!r}")
        if negative_attempts < 1:
            raise ValueError(f"negative_attempts must be >= 1, got {negative_attempts}")
        self.background = background
        crops = (output_crop,) * ndim if isinstance(output_crop, (int, np.integer)) else tuple(output_crop)
        if len(crops) != ndim or any(int(c) < 0 or 2 * int(c) >= p for c, p in zip(crops, self.patch_size)):
            raise ValueError(f"output_crop must be {ndim} values >= 0 leaving part of the patch {self.patch_size}, "
                             f"got {output_crop!r}")
        self.output_crop = tuple(int(c) for c in crops)
        self.negative_attempts = int(negative_attempts)
        self.foreground_fraction = float(foreground_fraction)
        self.augment = augment
        self.image_pad_value = float(image_pad_value)
        self.label_pad_value = int(label_pad_value)
        if classes is None:
            found = set()
            for case in self.cases:
                found.update(int(v) for v in np.unique(case.label))
            classes = sorted(found - {0})
        self.classes = tuple(int(c) for c in classes)
        # Per case: {class: flat indices of (a subsample of) its voxels}; classes absent from a case are left out.
        self._locations: List[Dict[int, np.ndarray]] = []
        for case in self.cases:
            flat = case.label.reshape(-1)
            per_class = {}
            for value in self.classes:
                indices = np.flatnonzero(flat == value)
                if len(indices):
                    per_class[value] = _evenly_spaced(indices, max_locations_per_class)
            self._locations.append(per_class)
        self.seed = int(seed)
        self.rank: Optional[int] = None
        self._rng = np.random.Generator(np.random.PCG64(rank_seed_sequence(self.seed)))

    # ------------------------------------------------------------------------------------------------- randomness
    @property
    def rng(self) -> np.random.Generator:
        return self._rng

    def set_rank(self, rank: Optional[int]) -> None:
        """Re-seed for a distributed rank (``None``: the plain seed). The Trainer calls this under torchrun."""
        self.rank = None if rank is None else int(rank)
        self._rng = np.random.Generator(np.random.PCG64(rank_seed_sequence(self.seed, self.rank)))

    def state_dict(self) -> Dict[str, Any]:
        """Plain-data state (ints, strings, lists): loads with ``torch.load(weights_only=True)``."""
        return {"seed": self.seed, "rank": self.rank, "rng": self._rng.bit_generator.state,
                "num_cases": len(self.cases), "patch_size": list(self.patch_size)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if int(state["num_cases"]) != len(self.cases) or tuple(state["patch_size"]) != self.patch_size:
            raise ValueError(f"sampler state was saved for {state['num_cases']} cases and patch size "
                             f"{tuple(state['patch_size'])}, this sampler has {len(self.cases)} cases and patch size "
                             f"{self.patch_size}")
        self.seed = int(state["seed"])
        self.rank = state["rank"]
        generator = np.random.PCG64()
        generator.state = state["rng"]
        self._rng = np.random.Generator(generator)

    # ---------------------------------------------------------------------------------------------------- sampling
    def _patch_start(self, case: Case, centre: Optional[Tuple[int, ...]]) -> Tuple[int, ...]:
        """Patch start in case coordinates (may be negative when padding) for a random or voxel-containing patch."""
        starts = []
        for axis, (size, patch) in enumerate(zip(case.spatial_shape, self.patch_size)):
            padded = max(size, patch)
            before = (padded - size) // 2
            if centre is None:
                low, high = 0, padded - patch
            else:
                voxel = centre[axis] + before
                crop = self.output_crop[axis]
                low, high = max(0, voxel - patch + 1 + crop), min(voxel - crop, padded - patch)
                if low > high:  # near the border: the closest placement
                    low = high = min(max(voxel - patch // 2, 0), padded - patch)
            starts.append(int(self._rng.integers(low, high + 1)) - before)
        return tuple(starts)

    def _crop(self, array: np.ndarray, start: Sequence[int], fill: float, leading: int) -> np.ndarray:
        """Crop ``array[..., start:start+patch]`` over the last spatial axes, filling outside with ``fill``."""
        spatial = array.shape[leading:]
        out = np.full(array.shape[:leading] + self.patch_size, fill, dtype=array.dtype)
        src, dst = [slice(None)] * leading, [slice(None)] * leading
        for begin, patch, size in zip(start, self.patch_size, spatial):
            lo, hi = max(begin, 0), min(begin + patch, size)
            src.append(slice(lo, hi))
            dst.append(slice(lo - begin, hi - begin))
        out[tuple(dst)] = array[tuple(src)]
        return out

    def _foreground_count(self, case: Case, start: Sequence[int]) -> int:
        label = self._crop(case.label, start, self.label_pad_value, leading=0)
        return int(np.count_nonzero(np.isin(label, self.classes)))

    def _negative_start(self, case: Case, start: Tuple[int, ...]) -> Tuple[int, ...]:
        """A patch start without foreground: the first of up to ``negative_attempts`` random draws that has none,
        else the draw with the fewest foreground voxels."""
        best, best_count = start, self._foreground_count(case, start)
        for _ in range(self.negative_attempts - 1):
            if best_count == 0:
                break
            candidate = self._patch_start(case, None)
            count = self._foreground_count(case, candidate)
            if count < best_count:
                best, best_count = candidate, count
        return best

    def sample(self, foreground: Optional[bool] = None) -> Tuple[np.ndarray, ...]:
        """Draw one patch: ``(image, label)`` or ``(image, label, weight)``.

        Args:
            foreground: force (True) or forbid (False) a foreground-centred patch; ``None`` draws it with probability
                ``foreground_fraction``.
        """
        if foreground is None:
            foreground = bool(self._rng.random() < self.foreground_fraction)
        index = int(self._rng.integers(len(self.cases)))
        case = self.cases[index]
        centre = None
        present = sorted(self._locations[index])
        if foreground and present:
            value = present[int(self._rng.integers(len(present)))]
            locations = self._locations[index][value]
            flat = int(locations[int(self._rng.integers(len(locations)))])
            centre = tuple(int(i) for i in np.unravel_index(flat, case.spatial_shape))
        start = self._patch_start(case, centre)
        if not foreground and self.background == "negative":
            start = self._negative_start(case, start)
        image = self._crop(case.image, start, self.image_pad_value, leading=1)
        label = self._crop(case.label, start, self.label_pad_value, leading=0)
        weight = self._crop(case.weight, start, 0.0, leading=0) if self.has_weights else None
        if self.augment is not None:
            return apply_hook(self.augment, image, label, self._rng, weight=weight)
        return (image, label) if weight is None else (image, label, weight)

    def next_batch(self, batch_size: int) -> Tuple[torch.Tensor, ...]:
        """A batch of ``batch_size`` patches as torch tensors (see the class documentation for shapes).

        Exactly ``floor(batch_size * foreground_fraction)`` patches are foreground-forced, plus one more with
        probability equal to the fractional remainder, so the expected fraction is exact and its variance minimal.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        expected = batch_size * self.foreground_fraction
        forced = int(math.floor(expected))
        if self._rng.random() < expected - forced:
            forced += 1
        patches = [self.sample(foreground=i < forced) for i in range(batch_size)]
        images = torch.from_numpy(np.stack([p[0] for p in patches]).astype(np.float32, copy=False))
        labels = torch.from_numpy(np.stack([p[1] for p in patches]).astype(np.int64, copy=False))
        if self.has_weights:
            weights = torch.from_numpy(np.stack([p[2] for p in patches]).astype(np.float32, copy=False))
            return images, labels, weights
        return images, labels
