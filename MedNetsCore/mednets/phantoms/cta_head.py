"""CT angiography head phantom with saccular aneurysms at vessel bifurcations (AneurysmSeg, GLIA-Net).

A seeded CTA-like head in Hounsfield units: air, scalp, skull (bone, with a skull base), brain (grey and white matter,
ventricles) and a contrast-filled arterial tree shaped like the circle of Willis: both internal carotid arteries and
the basilar artery enter from below; each carotid ends in a bifurcation into the middle and anterior cerebral arteries;
each middle cerebral artery splits in two; the anterior cerebral arteries are joined by the anterior communicating
artery; the basilar tip splits into the two posterior cerebral arteries. Vessel paths are jittered and curved by the
seed. Saccular aneurysms (spheres of 2-15 mm by default, pointing along the parent artery's flow direction beyond the
bifurcation apex, the usual site) sit on randomly chosen bifurcations.

Array axes: K inferior -> superior, J anterior -> posterior, I patient right -> left (the orientation of
:data:`mednets.phantoms.KJI_LPS_DIRECTIONS`). Anatomy is laid out in fractions of the head's semi-axes (the head fills
about 90 % of the field of view); vessel radii (1-2 mm, those of adult arteries, floored at 0.6 voxel so that
vessels stay visible on coarse grids) and aneurysm diameters are absolute (mm), so a small field of view gives a small
head with adult-sized arteries.

Labels: 1 aneurysm, 2 vessel, 3 bone, 4 brain. ``extra["aneurysms"]`` lists each aneurysm (centre in voxels and mm,
diameter in mm, bifurcation name); ``extra["bifurcations"]`` all bifurcation points (voxels).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import HU, KJI_LPS_DIRECTIONS, PhantomCase, _anatomy_and_noise_rngs, add_scanner_noise, correlated_noise, \
    ellipsoid_mask

__all__ = ["cta_head_phantom", "CTA_HEAD_LABELS", "CTA_HU", "BIFURCATIONS"]

#: Label values of :func:`cta_head_phantom`.
CTA_HEAD_LABELS: Dict[int, str] = {1: "aneurysm", 2: "vessel", 3: "bone", 4: "brain"}

#: CT numbers (mean, texture standard deviation) of the head phantom.
CTA_HU: Dict[str, Tuple[float, float]] = {
    "scalp": (45.0, 8.0),
    "bone": (900.0, 180.0),
    "grey_matter": (38.0, 4.0),
    "white_matter": (28.0, 4.0),
    "csf": (8.0, 3.0),
    "contrast": (380.0, 25.0),
}

#: Bifurcations where aneurysms can sit (the common sites).
BIFURCATIONS: Tuple[str, ...] = ("ica_terminus_right", "ica_terminus_left", "mca_right", "mca_left", "acom",
                                 "basilar_tip")

# Arterial tree in head coordinates u = (k, j, i) in [-1, 1] (k superior, j posterior, i patient-left), radius in mm. Each entry: name, start point name, end point name, radius.
_POINTS: Dict[str, Tuple[float, float, float]] = {
    "ica_entry_right": (-1.05, -0.12, -0.24), "ica_entry_left": (-1.05, -0.12, 0.24),
    "ica_terminus_right": (-0.28, -0.14, -0.22), "ica_terminus_left": (-0.28, -0.14, 0.22),
    "mca_right": (-0.24, -0.08, -0.52), "mca_left": (-0.24, -0.08, 0.52),
    "m2_sup_right": (0.05, -0.22, -0.72), "m2_sup_left": (0.05, -0.22, 0.72),
    "m2_inf_right": (-0.32, 0.18, -0.74), "m2_inf_left": (-0.32, 0.18, 0.74),
    "a1_right": (-0.24, -0.46, -0.07), "a1_left": (-0.24, -0.46, 0.07),
    "a2_right": (0.45, -0.50, -0.05), "a2_left": (0.45, -0.50, 0.05),
    "basilar_entry": (-1.05, 0.16, 0.0), "basilar_tip": (-0.32, 0.12, 0.0),
    "p1_right": (-0.30, 0.30, -0.30), "p1_left": (-0.30, 0.30, 0.30),
    "p2_right": (-0.12, 0.70, -0.32), "p2_left": (-0.12, 0.70, 0.32),
}
_SEGMENTS: Tuple[Tuple[str, str, float], ...] = (
    ("ica_entry_right", "ica_terminus_right", 2.2), ("ica_entry_left", "ica_terminus_left", 2.2),
    ("ica_terminus_right", "mca_right", 1.6), ("ica_terminus_left", "mca_left", 1.6),
    ("mca_right", "m2_sup_right", 1.1), ("mca_left", "m2_sup_left", 1.1),
    ("mca_right", "m2_inf_right", 1.1), ("mca_left", "m2_inf_left", 1.1),
    ("ica_terminus_right", "a1_right", 1.2), ("ica_terminus_left", "a1_left", 1.2),
    ("a1_right", "a2_right", 1.1), ("a1_left", "a2_left", 1.1),
    ("a1_right", "a1_left", 0.8),
    ("basilar_entry", "basilar_tip", 1.8),
    ("basilar_tip", "p1_right", 1.2), ("basilar_tip", "p1_left", 1.2),
    ("p1_right", "p2_right", 1.1), ("p1_left", "p2_left", 1.1),
)
# Parent artery (flow into the bifurcation) of each aneurysm site; the acom site is the middle of the ACom artery
# with the flow direction taken from the right A1 to the A2s (an aneurysm pointing upward-forward).
_PARENTS: Dict[str, Tuple[str, str]] = {
    "ica_terminus_right": ("ica_entry_right", "ica_terminus_right"),
    "ica_terminus_left": ("ica_entry_left", "ica_terminus_left"),
    "mca_right": ("ica_terminus_right", "mca_right"), "mca_left": ("ica_terminus_left", "mca_left"),
    "basilar_tip": ("basilar_entry", "basilar_tip"),
}


def _capsule_distance(shape, spacing, p0, p1, reach):
    """Distance (mm) to the segment p0-p1 on the crop within ``reach`` mm of it: (crop slices, distances)."""
    low = np.minimum(p0, p1) - reach
    high = np.maximum(p0, p1) + reach
    box = tuple(slice(max(int(np.floor(lo / s)), 0), min(int(np.ceil(hi / s)) + 1, n))
                for lo, hi, s, n in zip(low, high, spacing, shape))
    if any(b.start >= b.stop for b in box):
        return None, None
    grid = np.meshgrid(*[np.arange(b.start, b.stop, dtype=np.float32) * s for b, s in zip(box, spacing)],
                       indexing="ij", sparse=True)
    d = p1 - p0
    length2 = float(d @ d) or 1e-9
    t = sum((g - a) * b for g, a, b in zip(grid, p0, d)) / length2
    t = np.clip(t, 0.0, 1.0)
    distance2 = sum((g - (a + t * b)) ** 2 for g, a, b in zip(grid, p0, d))
    return box, np.sqrt(distance2)


def cta_head_phantom(
    shape: Sequence[int] = (64, 80, 80),
    spacing: Sequence[float] = (1.25, 1.25, 1.25),
    seed: int = 0,
    num_aneurysms: Optional[int] = None,
    aneurysm_diameter_mm: Tuple[float, float] = (2.0, 15.0),
    noise_std: float = 10.0,
    blur_mm: float = 0.5,
) -> PhantomCase:
    """A CTA head in HU with ``num_aneurysms`` saccular aneurysms (None: 1 or 2, chosen by the seed; 0 gives a
    negative case) of diameters drawn uniformly from ``aneurysm_diameter_mm`` at distinct bifurcations.

    The default grid (64 x 80 x 80 voxels of 1.25 mm) is small enough for CPU training; anatomy is defined relative
    to the field of view, so larger grids give the same head at a finer resolution.
    """
    if len(shape) != 3 or len(spacing) != 3:
        raise ValueError(f"cta_head_phantom is 3D: got shape {tuple(shape)} and spacing {tuple(spacing)}")
    low_d, high_d = (float(v) for v in aneurysm_diameter_mm)
    if not 0 < low_d <= high_d:
        raise ValueError(f"aneurysm_diameter_mm must be (low, high) with 0 < low <= high, got {aneurysm_diameter_mm}")
    shape = tuple(int(n) for n in shape)
    spacing_arr = np.asarray(spacing, dtype=np.float64)
    rng, noise_rng = _anatomy_and_noise_rngs(seed)
    if num_aneurysms is None:
        num_aneurysms = int(rng.integers(1, 3))
    if not 0 <= num_aneurysms <= len(BIFURCATIONS):
        raise ValueError(f"num_aneurysms must be between 0 and {len(BIFURCATIONS)}, got {num_aneurysms}")

    extent = np.asarray(shape) * spacing_arr
    centre = extent / 2.0 - spacing_arr / 2.0
    semi = extent * np.array([0.46, 0.46, 0.44]) * rng.uniform(0.95, 1.0, 3)
    min_radius = 0.6 * float(spacing_arr.min())

    def to_mm(u):
        return centre + np.asarray(u, dtype=np.float64) * semi

    # ---- anatomy: head, skull, brain
    image = np.full(shape, HU["air"][0], dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint8)
    texture = correlated_noise(shape, 2.0, noise_rng, tuple(spacing_arr))
    head = ellipsoid_mask(shape, centre, semi, tuple(spacing_arr))
    thickness = max(0.07 * semi.min(), 1.5 * spacing_arr.min())
    skull_outer = ellipsoid_mask(shape, centre, semi - 0.4 * thickness, tuple(spacing_arr))
    brain = ellipsoid_mask(shape, centre, semi - 1.4 * thickness, tuple(spacing_arr))
    # skull base: a bony slab under the brain with holes where the arteries pass
    base_k = to_mm((-0.5, 0, 0))[0]
    grid_k = (np.arange(shape[0]) * spacing_arr[0])[:, None, None]
    skull_base = skull_outer & (np.abs(grid_k - base_k - 0.06 * semi[0]) < max(0.06 * semi[0], spacing_arr[0]))
    white = ellipsoid_mask(shape, to_mm((0.1, 0.05, 0)), semi * np.array([0.55, 0.6, 0.6]), tuple(spacing_arr))
    ventricles = (ellipsoid_mask(shape, to_mm((0.15, 0.05, -0.12)), semi * np.array([0.18, 0.35, 0.07]),
                                 tuple(spacing_arr))
                  | ellipsoid_mask(shape, to_mm((0.15, 0.05, 0.12)), semi * np.array([0.18, 0.35, 0.07]),
                                   tuple(spacing_arr)))

    def paint(mask, tissue, label=None):
        mean, std = CTA_HU[tissue]
        image[mask] = mean + std * texture[mask]
        if label is not None:
            labels[mask] = label

    paint(head, "scalp")
    paint(skull_outer, "bone", 3)
    paint(brain, "grey_matter", 4)
    paint(brain & white, "white_matter", 4)
    paint(brain & ventricles, "csf", 4)
    paint(skull_base & ~brain | (skull_base & (grid_k < base_k)), "bone", 3)

    # ---- arterial tree (jittered, each segment bent at its middle)
    points = {name: to_mm(np.asarray(u) + rng.normal(0, 0.025, 3)) for name, u in _POINTS.items()}
    vessel = np.zeros(shape, dtype=bool)
    for start, end, radius in _SEGMENTS:
        p0, p1 = points[start], points[end]
        middle = (p0 + p1) / 2 + rng.normal(0, 0.04, 3) * semi
        r = max(radius * rng.uniform(0.9, 1.1), min_radius)
        for a, b in ((p0, middle), (middle, p1)):
            box, distance = _capsule_distance(shape, spacing_arr, a, b, r + spacing_arr.max())
            if box is not None:
                vessel[box] |= distance <= r
    vessel &= head
    # the arteries cross the skull base through foramina (no bone around them)
    paint(vessel, "contrast", 2)

    # ---- aneurysms at distinct bifurcations
    sites = list(rng.choice(len(BIFURCATIONS), size=num_aneurysms, replace=False)) if num_aneurysms else []
    aneurysms: List[dict] = []
    for site_index in sites:
        site = BIFURCATIONS[int(site_index)]
        diameter = float(rng.uniform(low_d, high_d))
        radius = diameter / 2.0
        if site == "acom":
            apex = (points["a1_right"] + points["a1_left"]) / 2.0
            direction = (points["a2_right"] + points["a2_left"]) / 2.0 - apex
        else:
            parent_start, parent_end = _PARENTS[site]
            apex = points[parent_end]
            direction = points[parent_end] - points[parent_start]
        direction = direction / np.linalg.norm(direction)
        direction = direction + rng.normal(0, 0.2, 3)
        direction = direction / np.linalg.norm(direction)
        sac_centre = apex + direction * (0.8 * radius)
        radii = radius * rng.uniform(0.85, 1.15, 3)
        sac = ellipsoid_mask(shape, sac_centre, radii, tuple(spacing_arr),
                             angles=tuple(rng.uniform(0, np.pi, 3))) & brain
        # the neck: a short tube from the apex into the sac so that the sac is attached to the artery
        neck_radius = max(0.45 * radius, min_radius)
        box, distance = _capsule_distance(shape, spacing_arr, apex, sac_centre, neck_radius + spacing_arr.max())
        if box is not None:
            sac[box] |= (distance <= neck_radius) & brain[box] & ~vessel[box]
        if not sac.any():
            continue
        mean, std = CTA_HU["contrast"]
        image[sac] = mean - 20.0 + std * texture[sac]
        labels[sac] = 1
        centre_kji = np.argwhere(sac).mean(axis=0)
        aneurysms.append({"site": site, "diameter_mm": diameter, "centre_kji": tuple(float(c) for c in centre_kji),
                          "centre_mm": tuple(float(c) for c in centre_kji * spacing_arr),
                          "voxels": int(sac.sum())})

    image = add_scanner_noise(image, noise_rng, noise_std=noise_std, blur_mm=blur_mm, spacing=tuple(spacing_arr))
    bifurcations = {name: tuple(float(c) for c in points[name] / spacing_arr)
                    for name in BIFURCATIONS if name != "acom"}
    bifurcations["acom"] = tuple(float(c) for c in (points["a1_right"] + points["a1_left"]) / 2.0 / spacing_arr)
    return PhantomCase(image=image.astype(np.float32), labels=labels, spacing=tuple(float(s) for s in spacing_arr),
                       label_names=dict(CTA_HEAD_LABELS), modality="CT",
                       extra={"aneurysms": aneurysms, "bifurcations": bifurcations,
                              "directions_ras": KJI_LPS_DIRECTIONS.copy()})
