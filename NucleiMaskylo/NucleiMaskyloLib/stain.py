"""Stain colour normalisation of H&E images: Macenko (stain vectors by SVD of optical density) and Reinhard (LAB
statistics), with a reference tile chosen by the user or the bundled reference.

* Macenko et al., "A method for normalizing histology slides for quantitative analysis", ISBI 2009: convert to optical
  density OD = -ln((I + 1) / I0), drop nearly transparent pixels (any channel OD < beta), project the rest on the plane
  of the two largest eigenvectors of their covariance, take the robust extreme angles (alpha and 100 - alpha
  percentiles) as the two stain vectors (hematoxylin = the one absorbing more red), solve the concentrations by least
  squares, scale them so that their 99th percentiles match the reference, and rebuild the image with the reference
  stain vectors.
* Reinhard et al., "Color transfer between images", IEEE CG&A 21(5), 2001: match the per-channel mean and standard
  deviation in a perceptual colour space (CIE L*a*b* here, via scikit-image).

Bundled reference: Macenko's reference stain vectors and maximal concentrations are the values commonly used with this
method (fact from schaugf/HEnorm_python: HERef and maxCRef); the Reinhard reference is the L*a*b* statistics of the
stain-variation-free H&E phantom tile (seed 0). Users can fit either method to any tile of their own.

For whole slides, estimate the source stain once (:meth:`StainNormalizer.estimate_source` on a thumbnail or on the
tissue of a few tiles) and pass it to :meth:`StainNormalizer.transform` for every tile, so all tiles get the same
mapping and no seams appear.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np

__all__ = ["METHODS", "MACENKO_REFERENCE", "StainNormalizer", "macenko_stains", "reinhard_stats",
           "InsufficientTissueError"]

METHODS = ("macenko", "reinhard", "none")

#: Reference H and E optical density vectors (columns: H, E; rows R, G, B) and 99th-percentile concentrations.
MACENKO_REFERENCE = {
    "stains": [[0.5626, 0.2159], [0.7201, 0.8012], [0.4062, 0.5581]],
    "max_concentrations": [1.9705, 1.0308],
}

_IO = 240.0


class InsufficientTissueError(ValueError):
    """The image has too few stained pixels to estimate its stains (e.g. a blank tile)."""


def _optical_density(rgb: np.ndarray, io: float = _IO) -> np.ndarray:
    return -np.log((rgb.astype(np.float64) + 1.0) / io)


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"stain normalisation needs an RGB image (H, W, 3), got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        if not np.isfinite(rgb).all():
            raise ValueError("the image contains NaN or infinite values")
        rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    return rgb


def macenko_stains(rgb: np.ndarray, beta: float = 0.15, alpha: float = 1.0, io: float = _IO,
                   max_pixels: int = 200_000, seed: int = 0) -> Dict[str, np.ndarray]:
    """Stain matrix (3, 2: columns H, E) and 99th-percentile concentrations (2,) of an RGB image (Macenko 2009).

    Raises :class:`InsufficientTissueError` when fewer than 100 pixels are stained."""
    rgb = _check_rgb(rgb)
    od = _optical_density(rgb.reshape(-1, 3), io)
    tissue = od[np.all(od >= beta, axis=1)]
    if len(tissue) < 100:
        raise InsufficientTissueError(f"only {len(tissue)} stained pixels: too little tissue to estimate the stains")
    if len(tissue) > max_pixels:
        tissue = tissue[np.random.default_rng(seed).choice(len(tissue), max_pixels, replace=False)]
    _, vectors = np.linalg.eigh(np.cov(tissue.T))
    plane = vectors[:, 1:3]
    plane = plane * np.where(plane.sum(axis=0) < 0, -1.0, 1.0)  # point into positive optical density
    projected = tissue @ plane
    angles = np.arctan2(projected[:, 1], projected[:, 0])
    low, high = np.percentile(angles, alpha), np.percentile(angles, 100 - alpha)
    v1 = plane @ np.array([np.cos(low), np.sin(low)])
    v2 = plane @ np.array([np.cos(high), np.sin(high)])
    v1 *= -1 if v1.sum() < 0 else 1
    v2 *= -1 if v2.sum() < 0 else 1
    stains = np.stack([v1, v2], axis=1) if v1[0] > v2[0] else np.stack([v2, v1], axis=1)  # H absorbs more red
    stains = stains / np.linalg.norm(stains, axis=0, keepdims=True)
    concentrations = np.linalg.lstsq(stains, od.T, rcond=None)[0]
    max_c = np.percentile(concentrations, 99, axis=1)
    return {"stains": stains, "max_concentrations": np.maximum(max_c, 1e-6)}


def reinhard_stats(rgb: np.ndarray) -> Dict[str, np.ndarray]:
    """Mean and standard deviation of L*, a*, b* over the image."""
    from skimage.color import rgb2lab

    lab = rgb2lab(_check_rgb(rgb)).reshape(-1, 3)
    return {"mean": lab.mean(axis=0), "std": np.maximum(lab.std(axis=0), 1e-6)}


def _bundled_reinhard() -> Dict[str, np.ndarray]:
    from mednets.phantoms.he_nuclei import he_nuclei_phantom

    return reinhard_stats(he_nuclei_phantom(0, stain_variation=0.0, noise_std=0.0).image)


@dataclass
class StainNormalizer:
    """Maps the stain colours of H&E images onto a reference (``method``: "macenko", "reinhard" or "none")."""

    method: str = "macenko"
    reference: Dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        self.method = str(self.method).lower()
        if self.method not in METHODS:
            raise ValueError(f"unknown stain normalisation {self.method!r}; choose one of {', '.join(METHODS)}")
        if not self.reference:
            if self.method == "macenko":
                self.reference = {k: np.asarray(v, dtype=np.float64) for k, v in MACENKO_REFERENCE.items()}
            elif self.method == "reinhard":
                self.reference = _bundled_reinhard()
        else:
            self.reference = {k: np.asarray(v, dtype=np.float64) for k, v in self.reference.items()}

    def fit(self, reference_rgb: np.ndarray) -> "StainNormalizer":
        """Use ``reference_rgb`` (a well-stained tile) as the target."""
        self.reference = self.estimate_source(reference_rgb) if self.method != "none" else {}
        return self

    def estimate_source(self, rgb: np.ndarray) -> Dict[str, np.ndarray]:
        """The stain description of an image (Macenko stains / Reinhard statistics), e.g. of a slide thumbnail."""
        if self.method == "macenko":
            return macenko_stains(rgb)
        if self.method == "reinhard":
            return reinhard_stats(rgb)
        return {}

    def transform(self, rgb: np.ndarray, source: Optional[Dict[str, np.ndarray]] = None) -> np.ndarray:
        """Normalise an RGB uint8 image; ``source`` is its stain description (estimated from ``rgb`` if None).

        A tile with too little tissue for Macenko (blank glass) is returned unchanged when no ``source`` is given."""
        rgb = _check_rgb(rgb)
        if self.method == "none":
            return rgb.copy()
        if self.method == "reinhard":
            from skimage.color import lab2rgb, rgb2lab

            stats = source or reinhard_stats(rgb)
            lab = rgb2lab(rgb)
            lab = (lab - stats["mean"]) / stats["std"] * self.reference["std"] + self.reference["mean"]
            return np.clip(np.round(lab2rgb(lab) * 255.0), 0, 255).astype(np.uint8)
        if source is None:
            try:
                source = macenko_stains(rgb)
            except InsufficientTissueError:
                return rgb.copy()
        od = _optical_density(rgb.reshape(-1, 3))
        concentrations = np.linalg.lstsq(np.asarray(source["stains"]), od.T, rcond=None)[0]
        concentrations *= (self.reference["max_concentrations"] / np.asarray(source["max_concentrations"]))[:, None]
        out = _IO * np.exp(-(self.reference["stains"] @ concentrations))
        return np.clip(np.round(out.T.reshape(rgb.shape)), 0, 255).astype(np.uint8)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return self.transform(rgb)

    def to_dict(self) -> dict:
        return {"method": self.method, "reference": {k: np.asarray(v).tolist() for k, v in self.reference.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> "StainNormalizer":
        return cls(method=data.get("method", "macenko"), reference=data.get("reference") or {})
