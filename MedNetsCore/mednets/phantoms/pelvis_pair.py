"""Planning/daily CT pairs of a male pelvis for adaptive radiotherapy (prostate), with contours on both scans.

Built for the JRS-MTL module (Elmahdy et al., IEEE Access 2021): the planning CT holds the prostate, seminal
vesicles, rectum, bladder and pelvic bones; the daily CT is the same anatomy after a known deformation:

* a bladder filling change (the bladder expands or shrinks by a factor, pushing its neighbours; the paper's section
  5.4.5 studies exactly this),
* a rectum filling change (local expansion/contraction) and new rectal content (gas or stool),
* a smooth random deformation (Gaussian-smoothed random field),
* a small rigid set-up error (rotation about the cranio-caudal axis and a translation),

then fresh scanner noise. The daily image is ``planning(x + u(x))`` with the true displacement ``u`` (mm, array axes
K, J, I) returned in :attr:`PelvisPair.displacement_mm`, so contours propagate with the same warp and a registration
can be scored against the truth.

Orientation as the other CT phantoms: k inferior -> superior, j anterior -> posterior, i right -> left
(:data:`mednets.phantoms.KJI_LPS_DIRECTIONS`). Intensities in HU. Everything is seeded: one seed gives one pair.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from . import HU, KJI_LPS_DIRECTIONS, PhantomCase, add_scanner_noise, correlated_noise, ellipsoid_mask, \
    lumpy_blob_mask, physical_grid

__all__ = ["PELVIS_LABELS", "PelvisPair", "pelvis_planning_phantom", "pelvis_ct_pair", "warp_with_displacement"]

#: Label values of the pelvis phantom (1-4 are the paper's structures; 5 the bones).
PELVIS_LABELS: Dict[int, str] = {1: "prostate", 2: "seminal_vesicles", 3: "rectum", 4: "bladder", 5: "bones"}


@dataclass
class PelvisPair:
    """A planning CT, the daily CT after deformation, and the true displacement (daily(x) = planning(x + u(x)))."""

    planning: PhantomCase
    daily: PhantomCase
    displacement_mm: np.ndarray  # (3, K, J, I), mm along the array axes
    parameters: dict = field(default_factory=dict)


def _rng_pair(seed: int) -> Tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    a, b, c = np.random.SeedSequence(int(seed)).spawn(3)
    return np.random.default_rng(a), np.random.default_rng(b), np.random.default_rng(c)


def pelvis_planning_phantom(seed: int = 0, shape: Sequence[int] = (48, 64, 80),
                            spacing: Sequence[float] = (2.0, 2.0, 2.0), noise_std: float = 15.0,
                            _rngs=None) -> Tuple[PhantomCase, np.ndarray, dict]:
    """The planning CT (with noise), its noise-free image and the anatomy parameters.

    Returns (case, clean_image, params); ``params["lumen"]`` is the rectal lumen mask."""
    if len(shape) != 3 or len(spacing) != 3:
        raise ValueError("the pelvis phantom is 3D")
    shape, spacing = tuple(int(n) for n in shape), tuple(float(s) for s in spacing)
    if min(shape) < 8 or min(spacing) <= 0:
        raise ValueError(f"shape {shape} too small or spacing {spacing} not positive")
    rng, noise_rng, _ = _rngs or _rng_pair(seed)
    k_len, j_len, i_len = [n * s for n, s in zip(shape, spacing)]
    centre = np.array([k_len * 0.42, j_len * 0.5, i_len * 0.5]) + rng.uniform(-4, 4, 3)
    ck, cj, ci = centre

    def at(dk, dj, di):  # superior, posterior, patient-left offsets from the prostate centre (mm)
        return (ck + dk, cj + dj, ci + di)

    texture = correlated_noise(shape, 3.0, noise_rng, spacing)
    image = np.full(shape, HU["air"][0], dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint8)
    grid = physical_grid(shape, spacing)

    def paint(mask, tissue, label=None, mean=None):
        m, s = HU[tissue]
        image[mask] = (m if mean is None else mean) + s * texture[mask]
        if label is not None:
            labels[mask] = label

    # body: elliptic cylinder along k, fat with muscle
    body = ((grid[1] - (cj - 5.0)) / (j_len * 0.47)) ** 2 + ((grid[2] - ci) / (i_len * 0.6)) ** 2 <= 1.0
    body = np.broadcast_to(body, shape)
    paint(body, "fat")
    for side in (-1.0, 1.0):  # obturator internus / levator muscles
        paint(ellipsoid_mask(shape, at(0.0, 5.0, side * 45.0), (60.0, 35.0, 10.0), spacing) & body, "muscle")
    # bones
    bones = np.zeros(shape, dtype=bool)
    for side in (-1.0, 1.0):
        bones |= ellipsoid_mask(shape, at(8.0, -2.0, side * 68.0), (22.0, 22.0, 22.0), spacing)  # femoral heads
        bones |= ellipsoid_mask(shape, at(-22.0, 22.0, side * 48.0), (14.0, 12.0, 9.0), spacing)  # ischial tuberosities
    bones |= ellipsoid_mask(shape, at(-6.0, -36.0, 0.0), (16.0, 9.0, 26.0), spacing)  # pubic symphysis
    bones |= ellipsoid_mask(shape, at(30.0, 58.0, 0.0), (40.0, 9.0, 30.0), spacing, angles=(0.35, 0.0, 0.0))  # sacrum
    bones &= body
    paint(bones, "bone", 5)
    # rectum: a tube along k behind the prostate, wall + lumen (gas or stool)
    size = rng.uniform(0.85, 1.15)
    rect_r = (14.0 * rng.uniform(0.9, 1.15), 16.0 * rng.uniform(0.9, 1.15))
    rect_c = (cj + 15.0 * size + rect_r[0] + rng.uniform(-2, 2), ci + rng.uniform(-3, 3))
    tube = ((grid[1] - rect_c[0]) / rect_r[0]) ** 2 + ((grid[2] - rect_c[1]) / rect_r[1]) ** 2
    rectum = np.broadcast_to(tube <= 1.0, shape) & (grid[0] < ck + 45.0)
    lumen = np.broadcast_to(tube <= 0.35, shape) & (grid[0] < ck + 42.0)
    paint(rectum, "muscle", 3, mean=45.0)
    gas = rng.uniform() < 0.5
    paint(lumen, "air" if gas else "soft_tissue", None, mean=-700.0 if gas else 15.0)
    # bladder: anterior-superior, filling factor
    fill = rng.uniform(0.85, 1.15)
    bl_r = np.array([22.0, 28.0, 34.0]) * fill
    bladder = lumpy_blob_mask(shape, at(17.0 * size + bl_r[0] * 0.8, -10.0, 0.0), 1.0, rng, spacing,
                              irregularity=0.08, elongation=tuple(bl_r)) & ~rectum
    paint(bladder, "bladder", 4)
    # seminal vesicles: two elongated lobes above the prostate, between bladder and rectum
    sv = np.zeros(shape, dtype=bool)
    for side in (-1.0, 1.0):
        sv |= ellipsoid_mask(shape, at(16.0 * size, 10.0 * size, side * 13.0), (6.0, 5.0, 13.0), spacing,
                             angles=(side * 0.3, 0.0, 0.25))
    sv &= ~rectum & ~bladder
    paint(sv, "soft_tissue", 2, mean=30.0)
    # prostate
    prostate = lumpy_blob_mask(shape, (ck, cj, ci), 1.0, rng, spacing, irregularity=0.1,
                               elongation=(17.0 * size, 14.0 * size, 20.0 * size)) & ~rectum & ~bladder
    paint(prostate, "soft_tissue", 1, mean=42.0)
    clean = ndimage.gaussian_filter(image, sigma=[0.6 / s for s in spacing]).astype(np.float32)
    noisy = add_scanner_noise(clean, noise_rng, noise_std)
    params = {"centre_mm": centre.tolist(), "bladder_fill": float(fill), "rectal_gas": bool(gas),
              "bladder_centre_mm": [float(v) for v in at(17.0 * size + bl_r[0] * 0.8, -10.0, 0.0)],
              "bladder_radii_mm": bl_r.tolist(), "rectum_centre_mm": [float(ck), float(rect_c[0]), float(rect_c[1])],
              "lumen": lumen}
    case = PhantomCase(image=noisy, labels=labels, spacing=spacing, label_names=dict(PELVIS_LABELS), modality="CT",
                       extra={"directions_ras": KJI_LPS_DIRECTIONS.copy()})
    return case, clean, params


def _balloon(grid, centre, radius, factor, decay):
    """Backward displacement of a local expansion by ``factor`` about ``centre`` (mm), fading out beyond ``radius``."""
    d = [g - c for g, c in zip(grid, centre)]
    r = np.sqrt(sum(x * x for x in d))
    w = np.exp(-np.maximum(r - radius, 0.0) ** 2 / (2.0 * decay * decay))
    scale = (1.0 / factor - 1.0) * w
    return [x * scale for x in d]


def warp_with_displacement(array: np.ndarray, displacement_mm: np.ndarray, spacing: Sequence[float],
                           order: int = 1) -> np.ndarray:
    """``array(x + u(x))`` with ``u`` in mm (3, K, J, I); ``order`` 0 for label maps, 1 for images."""
    idx = np.indices(array.shape, dtype=np.float32)
    coords = [idx[a] + displacement_mm[a] / spacing[a] for a in range(3)]
    return ndimage.map_coordinates(array, coords, order=order, mode="nearest")


def pelvis_ct_pair(seed: int = 0, shape: Sequence[int] = (48, 64, 80), spacing: Sequence[float] = (2.0, 2.0, 2.0),
                   noise_std: float = 15.0, bladder_change: Tuple[float, float] = (0.75, 1.35),
                   random_amplitude_mm: Tuple[float, float] = (2.0, 5.0), rigid_shift_mm: float = 6.0,
                   rotation_deg: float = 3.0) -> PelvisPair:
    """A seeded planning/daily pair (see the module docstring)."""
    rngs = _rng_pair(seed)
    planning, clean, params = pelvis_planning_phantom(seed, shape, spacing, noise_std, _rngs=rngs)
    rng, noise_rng, def_rng = rngs
    shape, spacing = planning.image.shape, planning.spacing
    grid = [np.asarray(np.broadcast_to(g, shape), dtype=np.float64) for g in physical_grid(shape, spacing)]

    # 1. bladder filling change, 2. rectum filling change
    bladder_factor = float(def_rng.uniform(*bladder_change))
    bl_radius = float(np.mean(params["bladder_radii_mm"]))
    u = _balloon(grid, params["bladder_centre_mm"], bl_radius, bladder_factor, 0.7 * bl_radius)
    rectum_factor = float(def_rng.uniform(0.85, 1.2))
    ur = _balloon(grid, params["rectum_centre_mm"], 15.0, rectum_factor, 12.0)
    u = [a + b for a, b in zip(u, ur)]
    # 3. smooth random field
    amplitude = float(def_rng.uniform(*random_amplitude_mm))
    for a in range(3):
        field_a = correlated_noise(shape, 18.0, def_rng, spacing).astype(np.float64)
        u[a] = u[a] + amplitude * field_a / max(np.abs(field_a).max(), 1e-6)
    # 4. rigid set-up error about the prostate centre: x -> c + R (x + v - c) + t
    angle = np.deg2rad(def_rng.uniform(-rotation_deg, rotation_deg))
    shift = def_rng.uniform(-rigid_shift_mm, rigid_shift_mm, 3)
    c = np.asarray(params["centre_mm"])
    local = [g + v - cc for g, v, cc in zip(grid, u, c)]
    cos, sin = np.cos(angle), np.sin(angle)
    mapped = [local[0], cos * local[1] - sin * local[2], sin * local[1] + cos * local[2]]
    displacement = np.stack([m + cc + t - g for m, cc, t, g in zip(mapped, c, shift, grid)]).astype(np.float32)

    daily_clean = warp_with_displacement(clean, displacement, spacing, order=1)
    daily_labels = warp_with_displacement(planning.labels, displacement, spacing, order=0).astype(np.uint8)
    lumen = warp_with_displacement(params["lumen"].astype(np.uint8), displacement, spacing, order=0) > 0
    daily_gas = bool(rng.uniform() < 0.5)
    texture = correlated_noise(shape, 3.0, noise_rng, spacing)
    daily_clean[lumen] = (-700.0 if daily_gas else 15.0) + 10.0 * texture[lumen]
    daily = PhantomCase(image=add_scanner_noise(daily_clean, noise_rng, noise_std), labels=daily_labels,
                        spacing=spacing, label_names=dict(PELVIS_LABELS), modality="CT",
                        extra={"directions_ras": KJI_LPS_DIRECTIONS.copy()})
    parameters = {k: v for k, v in params.items() if k != "lumen"}
    parameters.update({"bladder_factor": bladder_factor, "rectum_factor": rectum_factor,
                       "random_amplitude_mm": amplitude, "rotation_deg": float(np.rad2deg(angle)),
                       "shift_mm": shift.tolist(), "daily_rectal_gas": daily_gas})
    return PelvisPair(planning=planning, daily=daily, displacement_mm=displacement, parameters=parameters)
