"""Contrast-enhanced CT of the upper torso and both axillae with lymph nodes, for the AxillaryLNDetect module.

Built for Altun et al., "Feasibility of end-to-end trainable two-stage U-Net for detection of axillary lymph nodes in
contrast-enhanced CT based scans on sparse annotations": a slab of the upper chest (k inferior -> superior,
j anterior -> posterior, i right -> left, :data:`mednets.phantoms.KJI_LPS_DIRECTIONS`) in HU with

* air around the body, subcutaneous fat, chest-wall muscle, lungs, ribs, sternum and spine (bone);
* both upper arms (fat, muscle, humerus) beside the chest, and the axillary fat pads between chest wall and arm;
* contrast-enhanced axillary artery (~250 HU) and vein (~160 HU) running from the chest into each arm, plus small
  branch vessels in the axillary fat (tubular look-alikes of small nodes);
* lymph nodes: soft-tissue (~35 HU) ellipsoids with short-axis diameters in ``node_diameter_mm`` (3-25 mm by default,
  log-uniform, so most are small as in the paper's Fig. 7), long axis up to 1.6x the short one, random orientation,
  a fatty hilum in the larger ones, placed wholly inside the axillary fat pads (surrounded by fat, not touching the
  skin or the chest wall), away from the vessels and from each other;

then correlated tissue texture, scanner blur and noise. ``labels`` holds one instance label per node (1..N); the
annotation the paper works from (centre + short-axis diameter) is in ``extra``. Everything is seeded.
"""

from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

import numpy as np
from scipy import ndimage

from . import HU, KJI_LPS_DIRECTIONS, PhantomCase, add_scanner_noise, correlated_noise, ellipsoid_mask, physical_grid

__all__ = ["AXILLA_TISSUES", "CONTRAST_HU", "axilla_ct_phantom", "KJI_LPS_DIRECTIONS"]

#: Tissue map values in ``extra["tissues"]``.
AXILLA_TISSUES: Dict[int, str] = {0: "air", 1: "fat", 2: "muscle", 3: "lung", 4: "bone", 5: "artery", 6: "vein",
                                  7: "lymph_node"}
#: Contrast-enhanced vessels (mean HU, texture sd).
CONTRAST_HU: Dict[str, Tuple[float, float]] = {"artery": (250.0, 15.0), "vein": (160.0, 12.0),
                                               "lymph_node": (35.0, 8.0)}


def _segment_distance(grid, start, end) -> np.ndarray:
    """Distance (mm) of every grid point to the segment start-end."""
    start = np.asarray(start, dtype=np.float64)
    direction = np.asarray(end, dtype=np.float64) - start
    length2 = float(direction @ direction)
    offsets = [g - s for g, s in zip(grid, start)]
    t = sum(o * d for o, d in zip(offsets, direction)) / max(length2, 1e-9)
    t = np.clip(t, 0.0, 1.0)
    return np.sqrt(sum((o - t * d) ** 2 for o, d in zip(offsets, direction)))


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    a, b, c, d = q
    return np.array([[a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
                     [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
                     [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d]])


def _oriented_ellipsoid(grid, centre, semi_axes, rotation) -> np.ndarray:
    offsets = [g - c for g, c in zip(grid, centre)]
    total = 0.0
    for axis in range(3):
        projected = sum(rotation[j, axis] * offsets[j] for j in range(3))
        total = total + (projected / semi_axes[axis]) ** 2
    return total <= 1.0


def axilla_ct_phantom(shape: Sequence[int] = (80, 100, 180), spacing: Sequence[float] = (2.0, 2.0, 2.0),
                      seed: int = 0, num_nodes: Tuple[int, int] = (3, 8),
                      node_diameter_mm: Tuple[float, float] = (3.0, 25.0), noise_std: float = 12.0,
                      branches_per_side: int = 2) -> PhantomCase:
    """An upper-chest CT slab with both axillae and lymph nodes (see the module docstring).

    Args:
        shape: voxels (K, J, I); the default covers 160 x 200 x 360 mm at 2 mm.
        spacing: voxel size (mm), (K, J, I).
        seed: one seed, one case (for a given grid).
        num_nodes: inclusive range of the number of nodes (spread over both sides).
        node_diameter_mm: range of the short-axis diameters (log-uniform draw).
        noise_std: white noise (HU) after a 0.8 mm blur.
        branches_per_side: small contrast-enhanced side branches in each axillary fat pad.

    Returns:
        :class:`PhantomCase` with ``labels`` = node instances (1..N, uint16), ``label_names`` {n: "lymph_node_n"} and
        ``extra``: ``centres_kji`` (N, 3) voxel indices, ``centres_mm``, ``short_axis_mm``, ``long_axis_mm``,
        ``side`` ("right"/"left"), ``tissues`` (uint8 map, :data:`AXILLA_TISSUES`), ``axilla_mask`` (the fat pads),
        ``directions_ras`` (:data:`KJI_LPS_DIRECTIONS`).
    """
    if len(shape) != 3 or len(spacing) != 3:
        raise ValueError(f"axilla_ct_phantom is 3D: got shape {tuple(shape)} and spacing {tuple(spacing)}")
    low, high = (float(v) for v in node_diameter_mm)
    if not 0 < low <= high:
        raise ValueError(f"node_diameter_mm must be 0 < low <= high, got {node_diameter_mm}")
    if num_nodes[0] < 0 or num_nodes[1] < num_nodes[0]:
        raise ValueError(f"num_nodes must be a range 0 <= low <= high, got {num_nodes}")
    shape = tuple(int(s) for s in shape)
    spacing = tuple(float(s) for s in spacing)
    anatomy_seq, noise_seq = np.random.SeedSequence(seed).spawn(2)
    rng, noise_rng = np.random.default_rng(anatomy_seq), np.random.default_rng(noise_seq)
    grid = physical_grid(shape, spacing)
    lk, lj, li = (n * s for n, s in zip(shape, spacing))
    cj, ci = lj * 0.5, li * 0.5
    jitter = lambda scale: float(rng.uniform(-scale, scale))  # noqa: E731

    tissues = np.zeros(shape, dtype=np.uint8)
    long_k = lk * 4.0  # cylinders along k: semi-axis far beyond the slab
    chest_r = (lj * 0.33 * (1 + jitter(0.05)), li * 0.29 * (1 + jitter(0.05)))
    chest = ellipsoid_mask(shape, (lk / 2, cj, ci), (long_k,) + chest_r, spacing)
    fat_depth = 8.0 + jitter(3.0)
    chest_inner = ellipsoid_mask(shape, (lk / 2, cj, ci), (long_k, chest_r[0] - fat_depth, chest_r[1] - fat_depth),
                                 spacing)
    cage = ellipsoid_mask(shape, (lk / 2, cj, ci), (long_k, chest_r[0] - fat_depth - 14, chest_r[1] - fat_depth - 14),
                          spacing)
    tissues[chest] = 1
    tissues[chest_inner] = 2

    arm_offset = li * 0.405
    arm_r = li * 0.085 * (1 + jitter(0.05))
    sides = {"right": -1.0, "left": 1.0}
    axilla = np.zeros(shape, dtype=bool)
    vessels_art = np.zeros(shape, dtype=bool)
    vessels_vein = np.zeros(shape, dtype=bool)
    for side, sign in sides.items():
        arm_c = (cj + jitter(6), ci + sign * arm_offset)
        arm = ellipsoid_mask(shape, (lk / 2,) + arm_c, (long_k, arm_r * 1.1, arm_r), spacing)
        arm_inner = ellipsoid_mask(shape, (lk / 2,) + arm_c, (long_k, arm_r * 1.1 - 6, arm_r - 6), spacing)
        humerus = ellipsoid_mask(shape, (lk / 2, arm_c[0] + jitter(3), arm_c[1] + sign * 4), (long_k, 10.0, 10.0),
                                 spacing)
        tissues[arm] = 1
        tissues[arm_inner] = 2
        tissues[humerus] = 4
        # axillary fat pad: between the lateral chest wall and the arm, upper part of the slab
        pad_c = (lk * (0.58 + jitter(0.04)), cj + jitter(8), ci + sign * (chest_r[1] - 4 + jitter(4)))
        pad_r = (lk * 0.36, lj * 0.2 * (1 + jitter(0.1)), li * 0.11 * (1 + jitter(0.1)))
        pad = ellipsoid_mask(shape, pad_c, pad_r, spacing) & ~cage & ~humerus & (
            chest | arm | ellipsoid_mask(shape, pad_c, (pad_r[0] * 0.8, pad_r[1] * 0.75, pad_r[2]), spacing))
        tissues[pad] = 1
        axilla |= pad
        # axillary artery and vein: from inside the chest (apex, medial) out into the arm
        start = (lk * (0.80 + jitter(0.05)), cj - lj * 0.05, ci + sign * li * 0.13)
        end = (lk * (0.55 + jitter(0.05)), arm_c[0] - 6, arm_c[1])
        vessels_art |= _segment_distance(grid, start, end) <= 3.5 + jitter(0.8)
        vein_start = (start[0] - 4, start[1] + 12, start[2])
        vein_end = (end[0] - 4, end[1] + 12, end[2])
        vessels_vein |= _segment_distance(grid, vein_start, vein_end) <= 5.0 + jitter(1.0)
        for _ in range(branches_per_side):  # small side branches descending into the fat pad
            t = rng.uniform(0.3, 0.8)
            origin = tuple(s + t * (e - s) for s, e in zip(start, end))
            tip = (origin[0] - rng.uniform(25, 55), origin[1] + rng.uniform(-25, 25), origin[2] + sign * jitter(12))
            vessels_art |= _segment_distance(grid, origin, tip) <= rng.uniform(1.2, 2.2)

    lungs = np.zeros(shape, dtype=bool)
    for sign in (-1.0, 1.0):
        lungs |= ellipsoid_mask(shape, (lk / 2, cj - 4, ci + sign * li * 0.13),
                                (long_k, chest_r[0] * 0.62, li * 0.105 * (1 + jitter(0.05))), spacing)
    lungs &= cage
    tissues[lungs] = 3
    # ribs: the cage rim, bone in bands every ~25 mm along k; sternum and spine
    rim = ellipsoid_mask(shape, (lk / 2, cj, ci), (long_k, chest_r[0] - fat_depth - 10, chest_r[1] - fat_depth - 10),
                         spacing) & ~cage
    phase = rng.uniform(0, 25)
    bands = (np.mod(grid[0] + phase, 25.0) < 8.0)
    tissues[rim & bands & ~axilla] = 4
    tissues[ellipsoid_mask(shape, (lk / 2, cj - chest_r[0] + fat_depth + 10, ci), (long_k, 6.0, 14.0), spacing)] = 4
    tissues[ellipsoid_mask(shape, (lk / 2, cj + chest_r[0] - fat_depth - 22, ci), (long_k, 14.0, 14.0), spacing)] = 4
    tissues[vessels_vein & (tissues > 0)] = 6
    tissues[vessels_art & (tissues > 0)] = 5

    nodes = _place_nodes(rng, grid, shape, spacing, axilla & (tissues == 1), tissues, num_nodes, (low, high))
    labels = np.zeros(shape, dtype=np.uint16)
    centres_mm, short_axes, long_axes, node_sides = [], [], [], []
    hilum = np.zeros(shape, dtype=bool)
    for index, (centre, semi_axes, rotation) in enumerate(nodes, start=1):
        mask = _oriented_ellipsoid(grid, centre, semi_axes, rotation)
        if not mask.any():  # smaller than a voxel: mark the nearest one
            nearest = tuple(min(max(int(round(c / s)), 0), n - 1) for c, s, n in zip(centre, spacing, shape))
            mask = np.zeros(shape, dtype=bool)
            mask[nearest] = True
        labels[mask] = index
        tissues[mask] = 7
        if min(semi_axes) * 2 >= 12.0:
            hilum |= _oriented_ellipsoid(grid, centre, tuple(0.35 * a for a in semi_axes), rotation)
        centres_mm.append(centre)
        short_axes.append(2.0 * min(semi_axes))
        long_axes.append(2.0 * max(semi_axes))
        node_sides.append("left" if centre[2] > ci else "right")

    texture = correlated_noise(shape, 2.5, noise_rng, spacing)
    image = np.full(shape, HU["air"][0], dtype=np.float32)
    values = {1: HU["fat"], 2: HU["muscle"], 3: HU["lung"], 4: HU["bone"], 5: CONTRAST_HU["artery"],
              6: CONTRAST_HU["vein"], 7: CONTRAST_HU["lymph_node"]}
    for value, (mean, std) in values.items():
        region = tissues == value
        image[region] = mean + std * texture[region]
    image[hilum & (labels > 0)] = HU["fat"][0] * 0.6 + 10.0 * texture[hilum & (labels > 0)]
    image = add_scanner_noise(image, noise_rng, noise_std=noise_std, blur_mm=0.8, spacing=spacing)

    centres_mm_arr = np.asarray(centres_mm, dtype=np.float64).reshape(-1, 3)
    return PhantomCase(
        image=image.astype(np.float32), labels=labels, spacing=spacing,
        label_names={n: f"lymph_node_{n}" for n in range(1, len(nodes) + 1)}, modality="CT",
        extra={"centres_mm": centres_mm_arr, "centres_kji": centres_mm_arr / np.asarray(spacing),
               "short_axis_mm": np.asarray(short_axes), "long_axis_mm": np.asarray(long_axes), "side": node_sides,
               "tissues": tissues, "tissue_names": dict(AXILLA_TISSUES), "axilla_mask": axilla,
               "directions_ras": KJI_LPS_DIRECTIONS.copy()})


def _place_nodes(rng, grid, shape, spacing, region, tissues, num_nodes, diameter_range
                 ) -> List[Tuple[Tuple[float, float, float], Tuple[float, float, float], np.ndarray]]:
    count = int(rng.integers(num_nodes[0], num_nodes[1] + 1))
    if count == 0 or not region.any():
        return []
    vessels = (tissues == 5) | (tissues == 6) | (tissues == 4)
    vessel_distance = ndimage.distance_transform_edt(~vessels, sampling=spacing)
    outside = ndimage.distance_transform_edt(region, sampling=spacing)  # depth inside the fat pad
    candidates = np.argwhere(region)
    placed: List[Tuple[Tuple[float, float, float], Tuple[float, float, float], np.ndarray]] = []
    low, high = diameter_range
    for _ in range(count):
        short = float(math.exp(rng.uniform(math.log(low), math.log(high))))
        semi = np.array([short / 2, short / 2 * rng.uniform(1.0, 1.3), short / 2 * rng.uniform(1.0, 1.6)])
        rotation = _rotation(rng)
        for _attempt in range(200):
            index = candidates[int(rng.integers(len(candidates)))]
            centre = tuple(float(i * s) for i, s in zip(index, spacing))
            margin = semi.max()
            # wholly inside the fat pad (depth >= the long semi-axis + one voxel): a node touching the skin (air) or
            # the chest-wall muscle is not a node the fat contrast can show (the pad bulges out of the body contour)
            if vessel_distance[tuple(index)] < margin + 3.0 or outside[tuple(index)] < margin + max(spacing):
                continue
            if any(np.linalg.norm(np.subtract(centre, c)) < margin + max(a) + 4.0 for c, a, _ in placed):
                continue
            placed.append((centre, tuple(float(a) for a in semi), rotation))
            break
    return placed
