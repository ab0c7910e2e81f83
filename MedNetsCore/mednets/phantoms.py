"""Seeded synthetic phantoms for tests, demos and demo-weight training.

Each generator is deterministic for a given ``seed`` and returns a :class:`PhantomCase`: an image in physical units
(Hounsfield units for CT), an integer label map, the voxel spacing in array-axis order (K, J, I for 3D, mm) and the
label names. Shapes are built in millimetres, so a phantom keeps its anatomy when its spacing changes.

The building blocks here (ellipsoids, irregular "lumpy" blobs, correlated texture, scanner-like noise and blur, a CT
torso) are shared; each module adds the phantom of its own task on top of them (lymph nodes in the axilla, aneurysms on
vessels, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

__all__ = [
    "PhantomCase",
    "physical_grid",
    "ellipsoid_mask",
    "lumpy_blob_mask",
    "correlated_noise",
    "add_scanner_noise",
    "ct_torso_phantom",
    "blob_phantom",
    "HU",
]

Spacing = Tuple[float, ...]

#: Typical CT numbers (HU) used by the CT phantoms (mean, texture standard deviation).
HU: Dict[str, Tuple[float, float]] = {
    "air": (-1000.0, 0.0),
    "lung": (-850.0, 40.0),
    "fat": (-100.0, 15.0),
    "soft_tissue": (40.0, 10.0),
    "muscle": (50.0, 10.0),
    "blood": (45.0, 5.0),
    "liver": (60.0, 8.0),
    "kidney": (35.0, 8.0),
    "bladder": (5.0, 5.0),
    "bone": (700.0, 150.0),
}


@dataclass
class PhantomCase:
    """A synthetic image with its ground truth.

    Attributes:
        image: float32 array, array-axis order (K, J, I) in 3D, in physical units (HU for CT).
        labels: integer label map of the same shape (0 = background).
        spacing: voxel size in mm, array-axis order.
        label_names: label value -> name.
        modality: "CT", "MR", "PET", "US", ...
        extra: generator-specific ground truth (e.g. point lists in voxel coordinates).
    """

    image: np.ndarray
    labels: np.ndarray
    spacing: Spacing
    label_names: Dict[int, str]
    modality: str = "CT"
    extra: dict = field(default_factory=dict)

    def mask(self, name: str) -> np.ndarray:
        """Boolean mask of the label called ``name``."""
        for value, label_name in self.label_names.items():
            if label_name == name:
                return self.labels == value
        raise KeyError(f"No label named {name!r}; this phantom has {sorted(self.label_names.values())}.")


def physical_grid(shape: Sequence[int], spacing: Sequence[float]) -> Tuple[np.ndarray, ...]:
    """Coordinates in mm of voxel centres along each axis (open grids, broadcastable), origin at voxel 0."""
    if len(shape) != len(spacing):
        raise ValueError(f"shape {tuple(shape)} and spacing {tuple(spacing)} have different lengths.")
    axes = [np.arange(n, dtype=np.float32) * float(s) for n, s in zip(shape, spacing)]
    return tuple(np.meshgrid(*axes, indexing="ij", sparse=True))


def _rotation_matrix(angles: Sequence[float]) -> np.ndarray:
    """Rotation matrix in array-axis space (3D: three angles in radians about axes 0, 1, 2; 2D: one angle)."""
    if len(angles) == 1:
        c, s = np.cos(angles[0]), np.sin(angles[0])
        return np.array([[c, -s], [s, c]])
    rotation = np.eye(3)
    for axis, angle in enumerate(angles):
        c, s = np.cos(angle), np.sin(angle)
        i, j = [a for a in range(3) if a != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        rotation = rotation @ r
    return rotation


def _normalised_offsets(grid, center_mm, radii_mm, angles):
    offsets = [g - c for g, c in zip(grid, center_mm)]
    if angles is not None and any(a != 0 for a in angles):
        rotation = _rotation_matrix(angles).T
        offsets = [sum(rotation[i, j] * offsets[j] for j in range(len(offsets))) for i in range(len(offsets))]
    return [o / r for o, r in zip(offsets, radii_mm)]


def ellipsoid_mask(
    shape: Sequence[int],
    center_mm: Sequence[float],
    radii_mm: Sequence[float],
    spacing: Sequence[float] = None,
    angles: Optional[Sequence[float]] = None,
) -> np.ndarray:
    """Boolean ellipsoid (ellipse in 2D) with centre and semi-axes in mm, optionally rotated (``angles`` in radians)."""
    spacing = spacing or (1.0,) * len(shape)
    grid = physical_grid(shape, spacing)
    normalised = _normalised_offsets(grid, center_mm, radii_mm, angles)
    return sum(n * n for n in normalised) <= 1.0


def lumpy_blob_mask(
    shape: Sequence[int],
    center_mm: Sequence[float],
    radius_mm: float,
    rng: np.random.Generator,
    spacing: Sequence[float] = None,
    irregularity: float = 0.25,
    elongation: Sequence[float] = None,
) -> np.ndarray:
    """An irregular, lesion/organ-like blob: an ellipsoid whose boundary is modulated by smooth random lobes.

    The boundary radius in direction ``u`` is ``radius * (1 + irregularity * f(u))`` where ``f`` is a sum of a few
    random low-order cosine lobes normalised to [-1, 1]; the result is connected and star-shaped around its centre.
    """
    spacing = spacing or (1.0,) * len(shape)
    elongation = elongation or (1.0,) * len(shape)
    grid = physical_grid(shape, spacing)
    offsets = [(g - c) / e for g, c, e in zip(grid, center_mm, elongation)]
    distance = np.sqrt(sum(o * o for o in offsets)) + 1e-6
    modulation = 0.0
    for _ in range(4):
        direction = rng.normal(size=len(shape))
        direction /= np.linalg.norm(direction)
        cosine = sum(d * o for d, o in zip(direction, offsets)) / distance
        frequency = rng.integers(1, 4)
        modulation = modulation + np.cos(frequency * np.arccos(np.clip(cosine, -1, 1)) + rng.uniform(0, 2 * np.pi))
    modulation = modulation / 4.0
    return distance <= radius_mm * (1.0 + irregularity * modulation)


def correlated_noise(shape: Sequence[int], correlation_mm: float, rng: np.random.Generator,
                     spacing: Sequence[float] = None) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian noise smoothed over ``correlation_mm`` (tissue texture)."""
    spacing = spacing or (1.0,) * len(shape)
    white = rng.standard_normal(size=tuple(shape)).astype(np.float32)
    sigma = [correlation_mm / s for s in spacing]
    smooth = ndimage.gaussian_filter(white, sigma=sigma, mode="reflect")
    std = float(smooth.std())
    return smooth / std if std > 0 else smooth


def add_scanner_noise(image: np.ndarray, rng: np.random.Generator, noise_std: float,
                      blur_mm: float = 0.0, spacing: Sequence[float] = None) -> np.ndarray:
    """Point-spread blur (Gaussian, FWHM-free sigma ``blur_mm``) followed by white Gaussian noise of ``noise_std``."""
    spacing = spacing or (1.0,) * image.ndim
    out = image.astype(np.float32, copy=True)
    if blur_mm > 0:
        out = ndimage.gaussian_filter(out, sigma=[blur_mm / s for s in spacing])
    if noise_std > 0:
        out += rng.normal(0.0, noise_std, size=out.shape).astype(np.float32)
    return out


def _anatomy_and_noise_rngs(seed: int) -> Tuple[np.random.Generator, np.random.Generator]:
    """Two independent generators from one seed: one for shapes (grid-independent), one for noise/texture."""
    anatomy, noise = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(anatomy), np.random.default_rng(noise)


def _paint(image, labels, mask, tissue, texture, label_value=None):
    mean, std = HU[tissue]
    image[mask] = mean + std * texture[mask]
    if label_value is not None:
        labels[mask] = label_value


def ct_torso_phantom(
    shape: Sequence[int] = (48, 96, 96),
    spacing: Sequence[float] = (4.0, 3.5, 3.5),
    seed: int = 0,
    noise_std: float = 20.0,
) -> PhantomCase:
    """A CT-like torso in HU (array axes K=inferior→superior, J=anterior→posterior, I=right→left).

    Body (fat shell over soft tissue), two lungs, heart, liver, two kidneys, bladder and a vertebral column, each with
    its own correlated texture, then scanner blur and quantum noise. Organ sizes and positions are jittered by the seed.
    Labels: 1 lung_left, 2 lung_right, 3 heart, 4 liver, 5 kidney_left, 6 kidney_right, 7 bladder, 8 spine.
    """
    if len(shape) != 3 or len(spacing) != 3:
        raise ValueError(f"ct_torso_phantom is 3D: got shape {tuple(shape)} and spacing {tuple(spacing)}.")
    # Separate streams: anatomy draws do not depend on the grid size, so the same seed gives the same anatomy in mm.
    rng, noise_rng = _anatomy_and_noise_rngs(seed)
    extent = [n * s for n, s in zip(shape, spacing)]
    k_len, j_len, i_len = extent
    jitter = lambda scale: rng.uniform(-scale, scale)  # noqa: E731 (tiny local helper)
    texture = correlated_noise(shape, 3.0, noise_rng, spacing)

    image = np.full(tuple(shape), HU["air"][0], dtype=np.float32)
    labels = np.zeros(tuple(shape), dtype=np.uint8)
    centre_j, centre_i = j_len * 0.5, i_len * 0.5
    body_radii = (k_len * 2.0, j_len * 0.36, i_len * 0.45)
    body = ellipsoid_mask(shape, (k_len * 0.5, centre_j, centre_i), body_radii, spacing)
    inner = ellipsoid_mask(shape, (k_len * 0.5, centre_j, centre_i),
                           (body_radii[0], body_radii[1] - 8.0, body_radii[2] - 8.0), spacing)
    _paint(image, labels, body, "fat", texture)
    _paint(image, labels, inner, "muscle", texture)

    top = k_len * 0.72
    organs = [
        ("lung_left", "lung", (top + jitter(6), centre_j - 4, centre_i + i_len * 0.18), (k_len * 0.28, j_len * 0.2, i_len * 0.12)),
        ("lung_right", "lung", (top + jitter(6), centre_j - 4, centre_i - i_len * 0.18), (k_len * 0.28, j_len * 0.2, i_len * 0.12)),
        ("heart", "blood", (top - k_len * 0.1, centre_j - j_len * 0.08, centre_i + i_len * 0.04), (k_len * 0.12, j_len * 0.12, i_len * 0.1)),
        ("liver", "liver", (k_len * 0.45 + jitter(4), centre_j, centre_i - i_len * 0.14), (k_len * 0.12, j_len * 0.2, i_len * 0.16)),
        ("kidney_left", "kidney", (k_len * 0.35 + jitter(4), centre_j + j_len * 0.12, centre_i + i_len * 0.2), (k_len * 0.1, j_len * 0.06, i_len * 0.045)),
        ("kidney_right", "kidney", (k_len * 0.33 + jitter(4), centre_j + j_len * 0.12, centre_i - i_len * 0.2), (k_len * 0.1, j_len * 0.06, i_len * 0.045)),
        ("bladder", "bladder", (k_len * 0.1 + jitter(3), centre_j - j_len * 0.06, centre_i), (k_len * 0.07, j_len * 0.09, i_len * 0.09)),
    ]
    label_names: Dict[int, str] = {}
    for value, (name, tissue, centre, radii) in enumerate(organs, start=1):
        radii = tuple(r * rng.uniform(0.9, 1.1) for r in radii)
        mask = lumpy_blob_mask(shape, centre, 1.0, rng, spacing, irregularity=0.12, elongation=radii) & inner
        _paint(image, labels, mask, tissue, texture, label_value=value)
        label_names[value] = name
    spine = ellipsoid_mask(shape, (k_len * 0.5, centre_j + j_len * 0.24, centre_i), (k_len * 2, 9.0, 9.0), spacing)
    spine_value = len(organs) + 1
    _paint(image, labels, spine, "bone", texture, label_value=spine_value)
    label_names[spine_value] = "spine"

    image = add_scanner_noise(image, noise_rng, noise_std=noise_std, blur_mm=1.0, spacing=spacing)
    return PhantomCase(image=image, labels=labels, spacing=tuple(float(s) for s in spacing),
                       label_names=label_names, modality="CT")


def blob_phantom(
    shape: Sequence[int] = (64, 64, 64),
    spacing: Sequence[float] = None,
    num_blobs: int = 3,
    radius_range_mm: Tuple[float, float] = (5.0, 10.0),
    contrast: float = 1.0,
    noise_std: float = 0.3,
    seed: int = 0,
) -> PhantomCase:
    """Bright irregular blobs on a textured background (2D or 3D): the smallest learnable segmentation task.

    Intensities are unitless (background 0, blobs ``contrast``); label 1 marks every blob. Blob centres are recorded in
    ``extra["centers_mm"]``.
    """
    spacing = tuple(float(s) for s in (spacing or (1.0,) * len(shape)))
    rng, noise_rng = _anatomy_and_noise_rngs(seed)
    extent = np.array(shape) * np.array(spacing)
    labels = np.zeros(tuple(shape), dtype=np.uint8)
    centers = []
    for _ in range(num_blobs):
        radius = rng.uniform(*radius_range_mm)
        centre = [rng.uniform(radius + s, e - radius - s) for e, s in zip(extent, spacing)]
        labels |= lumpy_blob_mask(shape, centre, radius, rng, spacing, irregularity=0.2).astype(np.uint8)
        centers.append(centre)
    image = 0.2 * correlated_noise(shape, 4.0, noise_rng, spacing) + contrast * labels
    image = add_scanner_noise(image, noise_rng, noise_std=noise_std, blur_mm=min(spacing), spacing=spacing)
    return PhantomCase(image=image.astype(np.float32), labels=labels, spacing=spacing,
                       label_names={1: "blob"}, modality="synthetic", extra={"centers_mm": centers})
