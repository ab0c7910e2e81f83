"""Seeded synthetic phantoms for tests, demos and demo-weight training.

Each generator is deterministic for a given ``seed`` and returns a :class:`PhantomCase`: an image in physical units
(Hounsfield units for CT), an integer label map, the voxel spacing in array-axis order (K, J, I for 3D, mm) and the
label names. Shapes are built in millimetres, so a phantom keeps its anatomy when its spacing changes.

The building blocks here (ellipsoids, irregular "lumpy" blobs, correlated texture, scanner-like noise and blur, a CT
torso) are shared; each module adds the phantom of its own task on top of them (lymph nodes in the axilla, aneurysms on
vessels, ...). The Combo-loss phantoms (whole-body PET with five organs, prostate MRI, echocardiography) live here too.
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
    "pet_whole_body_phantom",
    "mri_prostate_phantom",
    "ultrasound_lv_phantom",
    "PET_ORGANS",
    "KJI_LPS_DIRECTIONS",
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


# ---------------------------------------------------------------------------------------------------------------------
# Combo-loss paper phantoms (Taghanaki et al. 2019): whole-body PET with five organs, prostate MRI, echocardiography.

#: Direction cosines (columns: RAS unit vectors of the I, J, K array axes) of the PET and MRI phantoms below: i runs
#: right -> left, j anterior -> posterior, k inferior -> superior (the ``ct_torso_phantom`` convention; "LPS" axes).
#: Pass it as ``mednets.image.Volume(case.image, spacing=case.spacing, directions_ras=KJI_LPS_DIRECTIONS)``.
KJI_LPS_DIRECTIONS = np.diag([-1.0, -1.0, 1.0])

#: Label values of :func:`pet_whole_body_phantom` (the organ order of the Combo-loss paper, Table 4).
PET_ORGANS: Dict[int, str] = {1: "brain", 2: "heart", 3: "left kidney", 4: "right kidney", 5: "bladder"}

# Patient anatomy for a patient of size 1 (about 1.75 m): centre (z mm below the vertex, y mm posterior of the body
# axis, x mm to the patient's LEFT) and semi-axes (z, y, x) in mm. z and the z semi-axis scale with the patient's
# height, x and y with the girth.
_PET_ANATOMY: Dict[str, Tuple[Tuple[float, float, float], Tuple[float, float, float]]] = {
    "brain": ((85.0, 5.0, 0.0), (58.0, 76.0, 60.0)),
    "heart": ((470.0, -30.0, 30.0), (58.0, 45.0, 55.0)),
    "left kidney": ((615.0, 50.0, 65.0), (55.0, 25.0, 28.0)),
    "right kidney": ((635.0, 50.0, -65.0), (55.0, 25.0, 28.0)),  # the right kidney sits lower (liver)
    "bladder": ((830.0, -35.0, 0.0), (32.0, 35.0, 40.0)),
    "lung_left": ((455.0, 10.0, 85.0), (125.0, 75.0, 55.0)),
    "lung_right": ((450.0, 10.0, -85.0), (130.0, 75.0, 60.0)),
    "liver": ((560.0, -5.0, -75.0), (75.0, 80.0, 85.0)),
    "spleen": ((590.0, 50.0, 112.0), (50.0, 40.0, 28.0)),
}
# Trunk outline: (z, lateral semi-axis, antero-posterior semi-axis, AP centre offset) in mm, linearly interpolated.
_PET_TRUNK = np.array([
    (190.0, 45.0, 50.0, 20.0), (280.0, 55.0, 58.0, 20.0), (330.0, 175.0, 110.0, 0.0), (470.0, 160.0, 115.0, 0.0),
    (600.0, 150.0, 110.0, 0.0), (700.0, 145.0, 105.0, 0.0), (820.0, 165.0, 105.0, 0.0), (900.0, 165.0, 100.0, 0.0),
])
_PET_HEAD = ((115.0, 5.0, 0.0), (118.0, 98.0, 80.0))  # centre (z, y, x), semi-axes (z, y, x)
_PET_CROTCH_Z = 900.0


def _box_mask(shape: Sequence[int], spacing: Sequence[float], centre_mm: Sequence[float],
              half_extent_mm: Sequence[float], make) -> np.ndarray:
    """Full-size boolean mask from ``make(sub_shape, sub_centre_mm)`` evaluated only in the box ``centre +- half``.

    Evaluating a shape on its bounding box only keeps the organ phantoms fast; ``make`` must draw the same random
    numbers whatever the box size (the helpers above do), so the anatomy stays independent of the grid.
    """
    mask = np.zeros(tuple(shape), dtype=bool)
    lows = [max(int(np.floor((c - h) / s)), 0) for c, h, s in zip(centre_mm, half_extent_mm, spacing)]
    highs = [min(int(np.ceil((c + h) / s)) + 1, n) for c, h, s, n in zip(centre_mm, half_extent_mm, spacing, shape)]
    sub_centre = [c - low * s for c, low, s in zip(centre_mm, lows, spacing)]
    if any(high <= low for low, high in zip(lows, highs)):  # outside the grid: still draw the same random numbers
        make([1] * len(shape), sub_centre)
        return mask
    mask[tuple(slice(low, high) for low, high in zip(lows, highs))] = make(
        [high - low for low, high in zip(lows, highs)], sub_centre)
    return mask


def _organ_mask(shape, spacing, centre_mm, radii_mm, rng, irregularity=0.1) -> np.ndarray:
    """Lumpy ellipsoid (``lumpy_blob_mask`` with ``elongation = radii``) evaluated on its bounding box."""
    half = [r * (1.0 + irregularity) + s for r, s in zip(radii_mm, spacing)]
    return _box_mask(shape, spacing, centre_mm, half, lambda sub_shape, sub_centre: lumpy_blob_mask(
        sub_shape, sub_centre, 1.0, rng, spacing, irregularity=irregularity, elongation=radii_mm))


def _ellipsoid_in_box(shape, spacing, centre_mm, radii_mm) -> np.ndarray:
    half = [r + s for r, s in zip(radii_mm, spacing)]
    return _box_mask(shape, spacing, centre_mm, half,
                     lambda sub_shape, sub_centre: ellipsoid_mask(sub_shape, sub_centre, radii_mm, spacing))


def _pet_outline(z: np.ndarray, height: float, girth: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trunk/neck semi-axes (lateral, AP) and AP centre offset in mm at depths ``z`` below the vertex (0 outside)."""
    table = _PET_TRUNK
    zs = table[:, 0] * height
    inside = (z >= zs[0]) & (z <= zs[-1])
    lateral, ap, offset = (np.where(inside, np.interp(z, zs, table[:, c]), 0.0) * girth for c in (1, 2, 3))
    return lateral, ap, offset


def _pet_body_mask(shape, spacing, vertex_k, centre_j, centre_i, height, girth, arms) -> np.ndarray:
    """Body outline: head ellipsoid, neck and trunk with elliptical cross-sections, two legs, optional arms."""
    grid_k, grid_j, grid_i = physical_grid(shape, spacing)
    z = vertex_k - grid_k  # (K, 1, 1) mm below the vertex
    y, x = grid_j - centre_j, grid_i - centre_i  # posterior / patient-left offsets
    lateral, ap, offset = _pet_outline(z, height, girth)
    body = (x / np.maximum(lateral, 1e-3)) ** 2 + ((y - offset) / np.maximum(ap, 1e-3)) ** 2 <= 1.0
    body &= lateral > 0
    (hz, hy, hx), (rz, ry, rx) = _PET_HEAD
    body |= (((z - hz * height) / (rz * height)) ** 2 + ((y - hy * girth) / (ry * girth)) ** 2
             + ((x - hx * girth) / (rx * girth)) ** 2) <= 1.0
    legs_z = z > _PET_CROTCH_Z * height
    taper = np.clip((z - _PET_CROTCH_Z * height) / (250.0 * height), 0.0, 1.0)
    leg_lateral, leg_ap = (75.0 - 15.0 * taper) * girth, (80.0 - 10.0 * taper) * girth
    for side in (-1.0, 1.0):
        body |= legs_z & (((x - side * 85.0 * girth) / leg_lateral) ** 2 + (y / leg_ap) ** 2 <= 1.0)
    if arms:
        arm_z = (z >= 330.0 * height) & (z <= 950.0 * height)
        for side in (-1.0, 1.0):
            body |= arm_z & (((x - side * 210.0 * girth) / (40.0 * girth)) ** 2 + (y / (45.0 * girth)) ** 2 <= 1.0)
    return body


def _inside_ellipsoid(point, centre, radii, margin=0.0) -> bool:
    return sum(((p - c) / (r + margin)) ** 2 for p, c, r in zip(point, centre, radii)) <= 1.0


def pet_whole_body_phantom(
    seed: int = 0,
    shape: Sequence[int] = (128, 52, 72),
    spacing: Sequence[float] = (8.0, 6.0, 6.0),
    num_hot_spots: int = 6,
    missing_organ_probability: float = 0.0,
    noise_level: float = 0.15,
    resolution_fwhm_mm: float = 8.0,
    arms: bool = False,
) -> PhantomCase:
    """A whole-body FDG-PET-like volume in SUV with the five organs of the Combo-loss paper labelled.

    Orientation: array axes (K, J, I) with k inferior -> superior (the head at high k), j anterior -> posterior and
    i right -> left (:data:`KJI_LPS_DIRECTIONS`, also in ``extra["directions_ras"]``): the patient's LEFT kidney has
    the larger i. The default grid, 128 x 52 x 72 voxels of 8 x 6 x 6 mm (1024 x 312 x 432 mm), covers the vertex to
    the upper thighs and is small enough for CPU training; anatomy is defined in mm, so other grids show the same
    patient (organs outside a smaller field of view are cut off; at the largest patient sizes the bladder reaches
    the lower edge of the default field).

    Content (SUV ranges are per-patient random draws):

    * labels 1..5 (:data:`PET_ORGANS`): brain 8-12, heart 4-8 (myocardium; a 1.2-2 SUV blood pool inside the label),
      left and right kidney 4-6 (the right one lower, both posterior at the lumbar level), bladder 10-30 (pelvis);
    * unlabelled: body background 0.5-1, lungs 0.3-0.5, liver 2-3 (right upper abdomen), spleen 1.5-2.2, spine
      (marrow) 1.2-1.8, and ``num_hot_spots`` small hot spots (4-9 mm radius, 3-12 SUV: lesions / normal activity)
      in the neck and trunk, kept away from the labelled organs: the false positives a PET organ model must reject;
    * ``missing_organ_probability``: each organ independently shows no uptake (painted as background) and is then
      NOT labelled (the paper's "missing organs"); names in ``extra["missing_organs"]``.

    Pose and size: a patient scale U(0.85, 1.15) (height; girth the same +-5 %), organ sizes +-10 % (bladder filling
    0.7-1.3 per axis), organ positions +-8 mm, table shifts of +-15 mm (left-right) and +-10 mm (antero-posterior),
    and the vertex 5-40 mm below the top of the field of view (less when the patient would not fit). No rotation.
    ``arms=False`` (default) is the arms-up acquisition (arm-less trunk); ``arms=True`` adds arms alongside the trunk
    (they need a field of view of about 520 mm, wider than the default 432 mm, else they are cut).

    Image formation: multiplicative tissue texture (10 %), Gaussian point-spread blur of FWHM ``resolution_fwhm_mm``,
    then Poisson-like noise whose standard deviation is ``noise_level * sqrt(SUV)`` (spatially correlated over about
    half the FWHM), clipped at 0.

    Returns:
        PhantomCase (modality "PET") with extra: ``directions_ras``, ``hot_spots_mm`` (centres, array-axis mm),
        ``hot_spot_mask``, ``body_mask``, ``unlabelled_masks`` (liver, spleen, lungs), ``missing_organs``,
        ``uptake_suv`` (organ -> SUV drawn), ``patient_scale``.
    """
    if len(shape) != 3 or len(spacing) != 3:
        raise ValueError(f"pet_whole_body_phantom is 3D: got shape {tuple(shape)} and spacing {tuple(spacing)}.")
    if not 0.0 <= missing_organ_probability <= 1.0:
        raise ValueError(f"missing_organ_probability must lie in [0, 1], got {missing_organ_probability}")
    if num_hot_spots < 0:
        raise ValueError(f"num_hot_spots must be >= 0, got {num_hot_spots}")
    shape, spacing = tuple(int(n) for n in shape), tuple(float(s) for s in spacing)
    rng, noise_rng = _anatomy_and_noise_rngs(seed)
    k_len, j_len, i_len = [n * s for n, s in zip(shape, spacing)]

    # Patient size and position on the table.
    height = rng.uniform(0.85, 1.15)
    girth = height * rng.uniform(0.95, 1.05)
    needed = (_PET_ANATOMY["bladder"][0][0] + 2.0 * _PET_ANATOMY["bladder"][1][0]) * height
    top_margin = min(rng.uniform(5.0, 40.0), max(k_len - needed, 0.0))
    vertex_k = k_len - spacing[0] - top_margin
    centre_j = j_len / 2.0 + rng.uniform(-10.0, 10.0)
    centre_i = i_len / 2.0 + rng.uniform(-15.0, 15.0)

    def to_array(z, y, x):
        return (vertex_k - z, centre_j + y, centre_i + x)

    def placed(name, size_range=(0.9, 1.1), shift=8.0):
        (z, y, x), (rz, ry, rx) = _PET_ANATOMY[name]
        centre = to_array(z * height + rng.uniform(-shift, shift), y * girth + rng.uniform(-shift, shift) * 0.6,
                          x * girth + rng.uniform(-shift, shift) * 0.6)
        radii = (rz * height * rng.uniform(*size_range), ry * girth * rng.uniform(*size_range),
                 rx * girth * rng.uniform(*size_range))
        return centre, radii

    layout = {name: placed(name) for name in _PET_ANATOMY if name != "bladder"}
    layout["bladder"] = placed("bladder", size_range=(0.7, 1.3))
    uptake = {
        "background": rng.uniform(0.5, 1.0), "lung": rng.uniform(0.3, 0.5), "liver": rng.uniform(2.0, 3.0),
        "spleen": rng.uniform(1.5, 2.2), "spine": rng.uniform(1.2, 1.8), "blood": rng.uniform(1.2, 2.0),
        "brain": rng.uniform(8.0, 12.0), "heart": rng.uniform(4.0, 8.0), "left kidney": rng.uniform(4.0, 6.0),
        "right kidney": rng.uniform(4.0, 6.0), "bladder": rng.uniform(10.0, 30.0),
    }
    missing = [name for name in PET_ORGANS.values() if rng.uniform() < missing_organ_probability]

    body = _pet_body_mask(shape, spacing, vertex_k, centre_j, centre_i, height, girth, arms)
    (head_z, head_y, head_x), (head_rz, head_ry, head_rx) = _PET_HEAD
    head_centre = to_array(head_z * height, head_y * girth, head_x * girth)
    head_radii = (head_rz * height, head_ry * girth, head_rx * girth)
    image = np.zeros(shape, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint8)
    image[body] = uptake["background"]

    unlabelled = {}
    for name, tissue in (("lung_left", "lung"), ("lung_right", "lung"), ("liver", "liver"), ("spleen", "spleen")):
        centre, radii = layout[name]
        mask = _organ_mask(shape, spacing, centre, radii, rng, irregularity=0.1) & body
        image[mask] = uptake[tissue]
        unlabelled[name] = mask
    spine_top, spine_bottom = vertex_k - 300.0 * height, vertex_k - 880.0 * height
    spine = _ellipsoid_in_box(shape, spacing, ((spine_top + spine_bottom) / 2, centre_j + 70.0 * girth, centre_i),
                              ((spine_top - spine_bottom) / 2, 15.0 * girth, 15.0 * girth)) & body
    image[spine] = uptake["spine"]

    organ_centres = {}
    for value, name in PET_ORGANS.items():
        centre, radii = layout[name]
        organ_centres[name] = (centre, radii)
        mask = _organ_mask(shape, spacing, centre, radii, rng, irregularity=0.08) & body & (labels == 0)
        if name == "brain":  # inside the skull: at least 12 mm from the head's surface
            mask &= _ellipsoid_in_box(shape, spacing, head_centre, [r - 12.0 for r in head_radii])
        if name in missing:
            image[mask] = uptake["background"]
            continue
        image[mask] = uptake[name]
        if name == "heart":  # blood pool inside the myocardium
            pool = _ellipsoid_in_box(shape, spacing, centre, [0.6 * r for r in radii]) & mask
            image[pool] = uptake["blood"]
        labels[mask] = value
    for name, mask in unlabelled.items():
        unlabelled[name] = mask & (labels == 0)

    # Hot spots: inside the neck/trunk, at least 10 mm (plus their radius) away from every labelled organ.
    hot_spots, hot_mask = [], np.zeros(shape, dtype=bool)
    for _ in range(num_hot_spots):
        for _attempt in range(50):
            radius, suv = rng.uniform(4.0, 9.0), rng.uniform(3.0, 12.0)
            z = rng.uniform(180.0, 880.0) * height
            lateral, ap, offset = (float(v) for v in _pet_outline(np.array(z), height, girth))
            angle, fraction = rng.uniform(0.0, 2.0 * np.pi), np.sqrt(rng.uniform(0.0, 0.7 ** 2))
            point = to_array(z, offset + fraction * ap * np.sin(angle), fraction * lateral * np.cos(angle))
            if lateral <= 0 or any(_inside_ellipsoid(point, c, r, margin=radius + 10.0)
                                   for c, r in organ_centres.values()):
                continue
            spot = _organ_mask(shape, spacing, point, (radius,) * 3, rng, irregularity=0.15) & body & (labels == 0)
            image[spot] = suv
            hot_mask |= spot
            hot_spots.append(tuple(float(p) for p in point))
            break

    texture = correlated_noise(shape, 10.0, noise_rng, spacing)
    image *= 1.0 + 0.1 * texture
    image = add_scanner_noise(image, noise_rng, noise_std=0.0, blur_mm=resolution_fwhm_mm / 2.3548, spacing=spacing)
    if noise_level > 0:
        counts_noise = correlated_noise(shape, 0.5 * resolution_fwhm_mm / 2.3548, noise_rng, spacing)
        image += noise_level * np.sqrt(np.clip(image, 0.0, None)) * counts_noise
    image = np.clip(image, 0.0, None).astype(np.float32)
    return PhantomCase(image=image, labels=labels, spacing=spacing, label_names=dict(PET_ORGANS), modality="PET",
                       extra={"directions_ras": KJI_LPS_DIRECTIONS.copy(), "hot_spots_mm": hot_spots,
                              "hot_spot_mask": hot_mask, "body_mask": body, "unlabelled_masks": unlabelled,
                              "missing_organs": missing, "uptake_suv": uptake, "patient_scale": float(height)})


def _rician(image: np.ndarray, rng: np.random.Generator, noise_std: float) -> np.ndarray:
    """Magnitude of the image plus complex white Gaussian noise (Rician statistics of magnitude MR images)."""
    if noise_std <= 0:
        return image
    real = image + rng.normal(0.0, noise_std, size=image.shape).astype(np.float32)
    imaginary = rng.normal(0.0, noise_std, size=image.shape).astype(np.float32)
    return np.sqrt(real * real + imaginary * imaginary)


def mri_prostate_phantom(
    seed: int = 0,
    shape: Sequence[int] = (24, 80, 80),
    spacing: Sequence[float] = (3.0, 2.0, 2.0),
    noise_std: float = 0.03,
    bias_field: float = 0.2,
) -> PhantomCase:
    """A T2-weighted-like axial prostate MRI (arbitrary units, fat about 0.7, urine 1.0) with the prostate labelled.

    Orientation as :func:`pet_whole_body_phantom` (k inferior -> superior, j anterior -> posterior, i right -> left;
    ``extra["directions_ras"]``). The default 24 x 80 x 80 grid of 3 x 2 x 2 mm (72 x 160 x 160 mm, a small-field
    pelvic acquisition) is centred near the prostate.

    Content: the prostate (label 1, about 15-45 ml) as a bright peripheral zone around a darker, nodular transition zone
    (benign hyperplasia) with a dark capsule rim, flattened posteriorly by the rectum (dark wall, gas lumen); the
    bladder (bright urine) above it, the seminal vesicles (bright, superior-posterior), the pubic bones anteriorly,
    the obturator internus muscles laterally and the femoral heads at the edges of the field, all in bright pelvic fat.
    The prostate border against the dark muscles and rectal wall is weak in places, which is why the paper weighs
    false negatives more for MRI.

    Image formation: multiplicative texture, a slice-profile / in-plane blur, a smooth multiplicative coil bias field
    (``exp(bias_field * smooth field)`` with a posterior-to-anterior gradient) and Rician noise of ``noise_std``.
    """
    if len(shape) != 3 or len(spacing) != 3:
        raise ValueError(f"mri_prostate_phantom is 3D: got shape {tuple(shape)} and spacing {tuple(spacing)}.")
    shape, spacing = tuple(int(n) for n in shape), tuple(float(s) for s in spacing)
    rng, noise_rng = _anatomy_and_noise_rngs(seed)
    k_len, j_len, i_len = [n * s for n, s in zip(shape, spacing)]
    size = rng.uniform(0.85, 1.25)  # prostate linear scale: about 15-45 ml
    radii = tuple(r * size * rng.uniform(0.92, 1.08) for r in (16.0, 14.0, 21.0))  # (SI, AP, LR) semi-axes
    centre = (k_len * 0.42 + rng.uniform(-6.0, 6.0), j_len * 0.5 + rng.uniform(-6.0, 6.0),
              i_len * 0.5 + rng.uniform(-5.0, 5.0))
    ck, cj, ci = centre

    def at(dk, dj, di):  # offsets: superior, posterior, patient-left (mm)
        return (ck + dk, cj + dj, ci + di)

    fat, muscle, fluid, marrow, cortex = 0.7, 0.25, 1.0, 0.5, 0.05
    image = np.full(shape, fat, dtype=np.float32)
    texture = correlated_noise(shape, 2.0, noise_rng, spacing)
    image *= 1.0 + 0.06 * texture

    def paint(mask, value, heterogeneity=0.06):
        image[mask] = value * (1.0 + heterogeneity * texture[mask])

    for side in (-1.0, 1.0):  # femoral heads and obturator internus muscles
        head_centre, head_radius = at(12.0, -8.0, side * 88.0), (24.0,) * 3
        paint(_ellipsoid_in_box(shape, spacing, head_centre, head_radius), cortex)
        paint(_ellipsoid_in_box(shape, spacing, head_centre, [r - 3.0 for r in head_radius]), marrow)
        paint(_organ_mask(shape, spacing, at(0.0, -2.0, side * 58.0), (45.0, 38.0, 11.0), rng, 0.08), muscle)
    pubis_centre, pubis_radii = at(-6.0, -(radii[1] + 32.0), 0.0), (20.0, 11.0, 38.0)
    paint(_ellipsoid_in_box(shape, spacing, pubis_centre, pubis_radii), cortex)
    paint(_ellipsoid_in_box(shape, spacing, pubis_centre, [r - 3.0 for r in pubis_radii]), marrow)

    bladder_fill = rng.uniform(0.8, 1.2)
    bladder_centre = at(radii[0] + 30.0 * bladder_fill, -8.0, 0.0)
    bladder_radii = tuple(r * bladder_fill for r in (26.0, 35.0, 45.0))
    paint(_organ_mask(shape, spacing, bladder_centre, [r + 3.0 for r in bladder_radii], rng, 0.05), muscle)
    paint(_ellipsoid_in_box(shape, spacing, bladder_centre, bladder_radii), fluid, 0.02)
    for side in (-1.0, 1.0):  # seminal vesicles
        paint(_organ_mask(shape, spacing, at(radii[0] + 6.0, radii[1] + 2.0, side * 17.0), (8.0, 6.0, 15.0), rng,
                          0.25), 0.85, 0.2)

    rectum_centre = at(0.0, radii[1] + 15.0 * rng.uniform(0.9, 1.1), rng.uniform(-3.0, 3.0))
    rectum_radii = (60.0, 15.0, 18.0)
    rectum_wall = _ellipsoid_in_box(shape, spacing, rectum_centre, rectum_radii)
    paint(rectum_wall, muscle * 1.1)
    paint(_ellipsoid_in_box(shape, spacing, rectum_centre, (60.0, 10.0, 13.0)), 0.06, 0.3)

    prostate = _organ_mask(shape, spacing, centre, radii, rng, irregularity=0.1) & ~rectum_wall
    transition_scale = rng.uniform(0.5, 0.75)
    transition = _organ_mask(shape, spacing, at(radii[0] * 0.15, -radii[1] * 0.2, 0.0),
                             [r * transition_scale for r in radii], rng, irregularity=0.15) & prostate
    paint(prostate, 0.75, 0.08)  # peripheral zone: bright
    paint(transition, 0.38, 0.2)  # transition zone: darker, nodular
    capsule = prostate & ~ndimage.binary_erosion(prostate, structure=np.ones((1, 3, 3), dtype=bool))
    image[capsule] *= rng.uniform(0.45, 0.7)
    labels = prostate.astype(np.uint8)

    # Slice profile (0.4 slice) and in-plane point spread (0.6 mm), in voxels.
    image = ndimage.gaussian_filter(image, sigma=[0.4, 0.6 / spacing[1], 0.6 / spacing[2]])
    field = correlated_noise(shape, 60.0, noise_rng, spacing)
    grid_k, grid_j, grid_i = physical_grid(shape, spacing)
    gradient = (grid_j - j_len / 2.0) / j_len  # brighter posteriorly (endorectal / posterior coil elements)
    image = image * np.exp(bias_field * (0.5 * field + gradient)).astype(np.float32)
    image = _rician(image, noise_rng, noise_std)
    return PhantomCase(image=image.astype(np.float32), labels=labels, spacing=spacing,
                       label_names={1: "prostate"}, modality="MR",
                       extra={"directions_ras": KJI_LPS_DIRECTIONS.copy(), "prostate_volume_ml":
                              float(labels.sum() * np.prod(spacing) / 1000.0), "transition_zone": transition})


def _speckle(shape: Sequence[int], spacing: Sequence[float], rng: np.random.Generator,
             resolution_mm: Sequence[float]) -> np.ndarray:
    """Fully developed speckle: the envelope of a complex Gaussian field blurred by the point-spread function
    (Gaussian, sigma ``resolution_mm`` per array axis), i.e. spatially correlated Rayleigh noise of mean 1."""
    sigma = [r / s for r, s in zip(resolution_mm, spacing)]
    real, imaginary = (ndimage.gaussian_filter(rng.standard_normal(size=tuple(shape)).astype(np.float32), sigma)
                       for _ in range(2))
    envelope = np.sqrt(real * real + imaginary * imaginary)
    return envelope / max(float(envelope.mean()), 1e-12)


def ultrasound_lv_phantom(
    seed: int = 0,
    ndim: int = 2,
    shape: Optional[Sequence[int]] = None,
    spacing: Optional[Sequence[float]] = None,
    dynamic_range_db: float = 45.0,
) -> PhantomCase:
    """An echocardiography-like B-mode image (log-compressed, values in [0, 1]) with the left-ventricular myocardium
    labelled (label 1).

    Geometry: array axis J is the depth along the beam (row 0 at the transducer), I the lateral direction and, in 3D,
    K the elevation; the image is only defined inside the imaging sector (``extra["sector_mask"]``; 0 outside), a fan
    of +-40 degrees (2D) or a cone of 38 degrees half-angle (3D) from an apex just above row 0. Image axes, not patient
    axes (echo views are not aligned with the body).

    * ``ndim=2`` (default 128 x 128 pixels of 1 mm, arrays of shape (J, I) like the other 2D phantoms; wrap them with
      ``mednets.image.Volume(image, spacing=spacing)`` for a single-slice (1, J, I) volume): a parasternal short-axis
      view, the myocardium a ring (epicardial radius 24-30 mm, wall 8-12 mm, mildly elliptical and irregular) around
      the dark blood pool with two papillary muscles (unlabelled), the right-ventricular cavity beside it.
    * ``ndim=3`` (default 64 x 80 x 64 voxels of 2 mm, axes (K, J, I)): an apical full-volume view, the myocardium a
      half prolate-spheroidal shell (apex towards the transducer, open at the mitral base plane).

    Image formation: tissue reflectivities (blood 0.01 with a faint clutter haze, myocardium up to 0.45, surrounding
    tissue 0.25, a bright posterior pericardium), weaker echoes where the wall runs along the beam (specular
    reflection: the lateral walls are faint and blend into the surrounding tissue, which makes under-segmentation the
    typical error), depth attenuation, fully developed speckle (correlated Rayleigh noise, axial 0.5 mm / lateral
    1.2 mm resolution, elevation 1.5 mm) and log compression over ``dynamic_range_db``.
    """
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim}")
    shape = tuple(int(n) for n in (shape or ((128, 128) if ndim == 2 else (64, 80, 64))))
    spacing = tuple(float(s) for s in (spacing or ((1.0, 1.0) if ndim == 2 else (2.0, 2.0, 2.0))))
    if len(shape) != ndim or len(spacing) != ndim:
        raise ValueError(f"ndim={ndim} needs {ndim} shape and spacing values, got shape {shape} and spacing {spacing}")
    rng, noise_rng = _anatomy_and_noise_rngs(seed)
    extent = [n * s for n, s in zip(shape, spacing)]
    grid = physical_grid(shape, spacing)
    depth_axis = ndim - 2  # J
    apex = [e / 2.0 for e in extent]
    apex[depth_axis] = -5.0
    offsets = [g - a for g, a in zip(grid, apex)]
    radial = np.sqrt(sum(o * o for o in offsets)) + 1e-6
    along_beam = offsets[depth_axis] / radial  # cosine of the angle to the central beam
    half_angle = np.deg2rad(40.0 if ndim == 2 else 38.0)
    sector = along_beam >= np.cos(half_angle)

    image = np.full(shape, 0.25, dtype=np.float32)
    image *= (1.0 + 0.3 * correlated_noise(shape, 6.0, noise_rng, spacing)).clip(0.2, None)
    blood = 0.01
    if ndim == 2:
        depth, lateral = extent[0] * rng.uniform(0.5, 0.58), extent[1] / 2.0 + rng.uniform(-6.0, 6.0)
        centre = (depth, lateral)
        outer = rng.uniform(24.0, 30.0)
        thickness = rng.uniform(8.0, 12.0)
        ellipticity = rng.uniform(0.9, 1.1)
        outer_radii = (outer * ellipticity, outer / ellipticity)
        inner_radii = tuple(r - thickness for r in outer_radii)
        epicardium = lumpy_blob_mask(shape, centre, 1.0, rng, spacing, irregularity=0.04, elongation=outer_radii)
        cavity = lumpy_blob_mask(shape, centre, 1.0, rng, spacing, irregularity=0.08, elongation=inner_radii)
        myocardium = epicardium & ~cavity
        # Right ventricle: a crescent of blood on the image-left side, wrapped around the septum.
        rv_centre = (depth - 4.0, lateral - outer - rng.uniform(8.0, 14.0))
        rv = ellipsoid_mask(shape, rv_centre, (outer * 1.05, rng.uniform(14.0, 20.0)), spacing) & ~epicardium
        rv &= ~ellipsoid_mask(shape, centre, [r + 3.0 for r in outer_radii], spacing)
        image[rv] = blood
        pericardium = ellipsoid_mask(shape, centre, [r + 4.0 for r in outer_radii], spacing) & ~epicardium & ~rv
        image[pericardium] = np.broadcast_to(np.where(grid[0] > depth, 1.0, 0.4), shape)[pericardium]  # bright behind
        image[cavity] = blood
        for angle in (rng.uniform(0.6, 1.0) * np.pi, rng.uniform(1.2, 1.6) * np.pi):  # papillary muscles
            r = inner_radii[0] - 3.5
            spot = (depth + r * np.sin(angle), lateral + r * np.cos(angle))
            image[lumpy_blob_mask(shape, spot, rng.uniform(3.0, 4.5), rng, spacing, 0.2) & cavity] = 0.45
        # Wall normal: radial from the ventricle centre.
        normal = [(g - c) for g, c in zip(grid, centre)]
    else:
        base_depth = extent[1] * rng.uniform(0.66, 0.74)
        centre = (extent[0] / 2.0 + rng.uniform(-4.0, 4.0), base_depth, extent[2] / 2.0 + rng.uniform(-4.0, 4.0))
        length = rng.uniform(65.0, 80.0)  # endocardial long semi-axis, base to apex
        short = rng.uniform(20.0, 25.0)
        thickness = rng.uniform(8.0, 12.0)
        endo_radii = (short * rng.uniform(0.92, 1.08), length, short * rng.uniform(0.92, 1.08))
        epi_radii = (endo_radii[0] + thickness, length + 0.7 * thickness, endo_radii[2] + thickness)
        towards_probe = grid[1] <= base_depth
        epicardium = lumpy_blob_mask(shape, centre, 1.0, rng, spacing, irregularity=0.03,
                                     elongation=epi_radii) & towards_probe
        chambers = lumpy_blob_mask(shape, centre, 1.0, rng, spacing, irregularity=0.06, elongation=endo_radii)
        myocardium = epicardium & ~chambers
        pericardium = ellipsoid_mask(shape, centre, [r + 4.0 for r in epi_radii], spacing) & ~epicardium \
            & towards_probe
        image[pericardium] = 0.7
        image[chambers] = blood  # the left-ventricular cavity, and the atrium beyond the base plane
        cavity = chambers & towards_probe
        normal = [(g - c) / r ** 2 for g, c, r in zip(grid, centre, epi_radii)]  # ellipsoid gradient
    # Specular reflection: echoes are strongest where the wall is perpendicular to the beam.
    normal_length = np.sqrt(sum(n * n for n in normal)) + 1e-6
    incidence = np.abs(sum(n * o for n, o in zip(normal, offsets)) / (normal_length * radial))
    image[myocardium] = 0.45 * (0.45 + 0.55 * incidence[myocardium]) * (1.0 + 0.15 * rng.uniform(-1, 1))
    haze = (image == blood)
    image[haze] += 0.02 * (1.0 + correlated_noise(shape, 4.0, noise_rng, spacing)[haze]).clip(0.0, None)

    attenuation = np.exp(-0.004 * np.maximum(offsets[depth_axis], 0.0))
    resolution = (0.5, 1.2) if ndim == 2 else (1.5, 0.5, 1.2)
    envelope = image * attenuation * _speckle(shape, spacing, noise_rng, resolution)
    decibels = 20.0 * np.log10(np.maximum(envelope, 1e-6) / 1.0)
    b_mode = np.clip(1.0 + decibels / dynamic_range_db, 0.0, 1.0) * sector
    labels = (myocardium & sector).astype(np.uint8)
    return PhantomCase(image=b_mode.astype(np.float32), labels=labels, spacing=spacing,
                       label_names={1: "left ventricular myocardium"}, modality="US",
                       extra={"sector_mask": sector, "cavity_mask": cavity & sector,
                              "view": "parasternal short axis" if ndim == 2 else "apical 3D"})
