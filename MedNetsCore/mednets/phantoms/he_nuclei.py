"""Synthetic H&E-like histology tiles with nuclei instance masks (for NucleiMaskylo tests, demos and demo weights).

An H&E image is simulated with the Beer-Lambert stain model used by stain-separation methods (Ruifrok & Johnston
2001; Macenko et al. 2009): optical density OD = -log(I / I0) = C_H * h + C_E * e, with h and e the hematoxylin and
eosin OD vectors and C_H, C_E per-pixel stain concentrations. The tile is

* pink stroma: eosin with a smooth, fibrous texture and little hematoxylin, with a few pale lumen/fat holes;
* purple nuclei: ellipses of varying size, elongation and orientation, strong hematoxylin with chromatin texture,
  placed at random, in small clusters where they touch, and partly overlapping (the later nucleus lies on top; every
  nucleus keeps most of its area visible);
* stain variation per tile: the stain vectors are rotated a little, concentrations and brightness scaled, so the
  same tissue looks different from tile to tile (what stain normalisation removes);
* mild blur and noise of a scanner.

Everything is seeded: the same ``seed`` gives the same tile. Sizes are in pixels at roughly 40x (0.25 um/pixel):
nucleus radii 4-11 pixels by default.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from . import PhantomCase, correlated_noise, ellipsoid_mask

__all__ = ["HE_STAIN_VECTORS", "he_nuclei_phantom", "he_nuclei_dataset"]

#: Unit optical-density vectors (R, G, B) of hematoxylin and eosin: the reference stain vectors commonly used with
#: Macenko's normalisation, measured on real H&E slides (fact from schaugf/HEnorm_python, HERef).
HE_STAIN_VECTORS = np.array([[0.5626, 0.7201, 0.4062], [0.2159, 0.8012, 0.5581]], dtype=np.float64)
HE_STAIN_VECTORS = HE_STAIN_VECTORS / np.linalg.norm(HE_STAIN_VECTORS, axis=1, keepdims=True)

_MIN_VISIBLE = 0.6  # fraction of its area a nucleus keeps when others lie on top of it


def _rotate_vector(vector: np.ndarray, rng: np.random.Generator, max_angle: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis -= axis.dot(vector) * vector
    axis /= np.linalg.norm(axis)
    angle = rng.uniform(-max_angle, max_angle)
    rotated = np.cos(angle) * vector + np.sin(angle) * axis
    rotated = np.abs(rotated)
    return rotated / np.linalg.norm(rotated)


def he_nuclei_phantom(
    seed: int = 0,
    shape: Sequence[int] = (256, 256),
    n_nuclei: Optional[int] = None,
    radius_range: Tuple[float, float] = (4.0, 11.0),
    cluster_fraction: float = 0.35,
    overlap_fraction: float = 0.15,
    stain_variation: float = 1.0,
    noise_std: float = 4.0,
) -> PhantomCase:
    """One H&E-like tile with its instance label map.

    Args:
        seed: random seed (same seed, same tile).
        shape: (H, W) in pixels.
        n_nuclei: nuclei to place (default: about one per 900 pixels); fewer if the tile is full.
        radius_range: smallest and largest semi-axis in pixels.
        cluster_fraction: share of nuclei placed touching an earlier nucleus.
        overlap_fraction: share of nuclei placed partly over an earlier nucleus (each keeps >= 60 % visible).
        stain_variation: 0 gives the reference stain; 1 the default tile-to-tile variation.
        noise_std: scanner noise in 8-bit grey levels.

    Returns:
        :class:`mednets.phantoms.PhantomCase` with ``image`` uint8 RGB (H, W, 3), ``labels`` int32 instance map
        (0 background, 1..N nuclei, in placement order), ``spacing`` (0.00025, 0.00025) mm, ``modality`` "SM"
        (slide microscopy) and ``extra``: ``stain_vectors`` (2, 3), ``centres`` (N, 2), ``radii`` (N, 2), ``angles``,
        ``placement`` ("free" / "touching" / "overlapping" per nucleus).
    """
    height, width = int(shape[0]), int(shape[1])
    if height < 16 or width < 16:
        raise ValueError(f"an H&E phantom needs at least 16x16 pixels, got {tuple(shape)}")
    shape_rng, texture_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    if n_nuclei is None:
        n_nuclei = max(1, int(round(height * width / 900.0)))
    r_min, r_max = float(radius_range[0]), float(radius_range[1])

    labels = np.zeros((height, width), dtype=np.int32)
    centres, radii, angles, placement = [], [], [], []
    areas = [0]  # visible pixels per label value, kept up to date (no full-image count per nucleus)
    attempts = 0
    while len(centres) < n_nuclei and attempts < n_nuclei * 30:
        attempts += 1
        ry = shape_rng.uniform(r_min, r_max)
        rx = float(np.clip(ry * shape_rng.uniform(0.55, 1.0), r_min * 0.7, r_max))
        angle = shape_rng.uniform(0, np.pi)
        mode = "free"
        draw = shape_rng.random()
        if centres and draw < cluster_fraction + overlap_fraction:
            mode = "overlapping" if draw < overlap_fraction else "touching"
            anchor_index = int(shape_rng.integers(len(centres)))
            anchor, anchor_r = centres[anchor_index], radii[anchor_index]
            distance = (max(anchor_r) + max(ry, rx)) * (0.65 if mode == "overlapping" else 0.98)
            direction = shape_rng.uniform(0, 2 * np.pi)
            cy, cx = anchor[0] + distance * np.sin(direction), anchor[1] + distance * np.cos(direction)
        else:
            cy, cx = shape_rng.uniform(0, height), shape_rng.uniform(0, width)
        if not (0 <= cy < height and 0 <= cx < width):
            continue
        reach = int(np.ceil(max(ry, rx))) + 1
        y0, y1 = max(0, int(cy) - reach), min(height, int(cy) + reach + 1)
        x0, x1 = max(0, int(cx) - reach), min(width, int(cx) + reach + 1)
        local = ellipsoid_mask((y1 - y0, x1 - x0), (cy - y0, cx - x0), (ry, rx), angles=(angle,))
        if local.sum() < 6:
            continue
        window = labels[y0:y1, x0:x1]
        covered = window[local]
        if mode == "free" and covered.any():
            continue
        if mode == "touching" and covered.any():
            continue
        if mode == "overlapping":
            # the new nucleus lies on top; the ones below must keep most of their area
            hidden = np.bincount(covered, minlength=len(centres) + 1)[1:]
            visible = np.asarray(areas[1:])
            if np.any((hidden > 0) & (visible - hidden < _MIN_VISIBLE * np.maximum(visible, 1))):
                continue
        value = len(centres) + 1
        hidden_all = np.bincount(covered, minlength=value)
        for below in np.flatnonzero(hidden_all[1:]) + 1:
            areas[below] -= int(hidden_all[below])
        window[local] = value
        areas.append(int(local.sum()))
        centres.append((cy, cx))
        radii.append((ry, rx))
        angles.append(angle)
        placement.append(mode)
    # drop nuclei that became too small at the border or under others, then relabel 1..N in placement order
    areas = np.bincount(labels.ravel(), minlength=len(centres) + 1)
    keep = [v for v in range(1, len(centres) + 1) if areas[v] >= 6]
    relabel = np.zeros(len(centres) + 1, dtype=np.int32)
    relabel[keep] = np.arange(1, len(keep) + 1)
    labels = relabel[labels]
    index = [v - 1 for v in keep]

    # stain concentrations
    nuclei = labels > 0
    fibres = correlated_noise((height, width), 2.0, texture_rng)
    coarse = correlated_noise((height, width), 12.0, texture_rng)
    eosin = np.clip(0.75 + 0.2 * coarse + 0.15 * fibres, 0.05, None)
    hema = np.clip(0.06 + 0.03 * coarse, 0.0, None)
    holes = ndimage.gaussian_filter((correlated_noise((height, width), 10.0, texture_rng) > 1.6).astype(np.float32), 1.5)
    eosin *= 1.0 - 0.85 * holes
    hema *= 1.0 - 0.85 * holes
    chromatin = correlated_noise((height, width), 1.0, texture_rng)
    # each nucleus has its own darkness; a soft edge of one pixel
    darkness = np.concatenate([[0.0], texture_rng.uniform(0.75, 1.25, size=len(keep))])
    nucleus_h = 1.1 * darkness[labels] * (1.0 + 0.18 * chromatin)
    soft = ndimage.gaussian_filter(nuclei.astype(np.float32), 0.7)
    boundary = np.zeros_like(nuclei)
    boundary[:, 1:] |= (labels[:, 1:] != labels[:, :-1]) & nuclei[:, 1:] & nuclei[:, :-1]
    boundary[1:, :] |= (labels[1:, :] != labels[:-1, :]) & nuclei[1:, :] & nuclei[:-1, :]
    hema = hema * (1 - soft) + np.where(nuclei, nucleus_h, 0.0) * np.maximum(soft, nuclei)
    hema = np.where(boundary, hema * 1.25, hema)  # touching membranes a little darker
    eosin = eosin * (1 - 0.7 * soft)

    # stain variation
    rng = texture_rng
    variation = float(stain_variation)
    vectors = HE_STAIN_VECTORS.copy()
    if variation > 0:
        vectors = np.stack([_rotate_vector(v, rng, 0.12 * variation) for v in vectors])
        hema = hema * (1.0 + variation * rng.uniform(-0.25, 0.25))
        eosin = eosin * (1.0 + variation * rng.uniform(-0.3, 0.3))
    background = 240.0 + (rng.uniform(-8, 8) * variation if variation > 0 else 0.0)
    density = hema[..., None] * vectors[0] + eosin[..., None] * vectors[1]
    image = background * np.exp(-density)
    image = ndimage.gaussian_filter(image, sigma=(0.6, 0.6, 0))
    if noise_std > 0:
        image = image + rng.normal(0.0, noise_std, size=image.shape)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)

    return PhantomCase(
        image=image,
        labels=labels.astype(np.int32),
        spacing=(0.00025, 0.00025),
        label_names={v: "nucleus" for v in range(1, len(keep) + 1)},
        modality="SM",
        extra={
            "stain_vectors": vectors,
            "centres": np.asarray(centres, dtype=np.float64).reshape(-1, 2)[index],
            "radii": np.asarray(radii, dtype=np.float64).reshape(-1, 2)[index],
            "angles": np.asarray(angles, dtype=np.float64)[index],
            "placement": [placement[i] for i in index],
            "background": background,
        },
    )


def he_nuclei_dataset(n: int, seed: int = 0, **kwargs) -> list:
    """``n`` independent tiles (seeds ``seed``, ``seed + 1``, ...)."""
    return [he_nuclei_phantom(seed + i, **kwargs) for i in range(n)]
