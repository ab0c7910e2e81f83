"""Quality of a deformation: Jacobian determinant, its standard deviation, folding fraction (numpy).

Elmahdy et al., IEEE Access 2021, section 5.3.3 and Table 5.5: a Jacobian determinant of 1 keeps volume, > 1 expands,
in (0, 1) shrinks, <= 0 folds; the DVF is judged by the standard deviation of the determinant and the fraction of
voxels that fold.

``dvf`` is (3, K, J, I) (or (3, *spatial) in any dimension d with d components): component c is the displacement in
mm along array axis c; ``spacing`` is the voxel size per axis (mm). The transform is x -> x + u(x); its Jacobian is
I + grad u, with grad u by central differences (one-sided at the faces, numpy.gradient).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

__all__ = ["jacobian_determinant", "jacobian_std", "folding_fraction", "deformation_metrics"]


def _check(dvf: np.ndarray) -> np.ndarray:
    dvf = np.asarray(dvf, dtype=np.float64)
    if dvf.ndim < 2 or dvf.shape[0] != dvf.ndim - 1:
        raise ValueError(f"dvf must be (d, *spatial) with d spatial axes, got {dvf.shape}")
    if min(dvf.shape[1:]) < 2:
        raise ValueError("dvf needs at least 2 voxels per axis")
    if not np.all(np.isfinite(dvf)):
        raise ValueError("dvf contains NaN or infinite values")
    return dvf


def jacobian_determinant(dvf: np.ndarray, spacing: Optional[Sequence[float]] = None) -> np.ndarray:
    """det(I + grad u) per voxel, shape ``dvf.shape[1:]``."""
    dvf = _check(dvf)
    d = dvf.shape[0]
    spacing = (1.0,) * d if spacing is None else tuple(float(s) for s in spacing)
    if len(spacing) != d or min(spacing) <= 0:
        raise ValueError(f"spacing must be {d} positive values")
    jac = np.empty(dvf.shape[1:] + (d, d))
    for c in range(d):
        grads = np.gradient(dvf[c], *spacing)
        for a in range(d):
            jac[..., c, a] = grads[a] + (1.0 if a == c else 0.0)
    return np.linalg.det(jac)


def jacobian_std(dvf: np.ndarray, spacing: Optional[Sequence[float]] = None, mask: Optional[np.ndarray] = None
                 ) -> float:
    det = jacobian_determinant(dvf, spacing)
    return float(np.std(det[mask.astype(bool)] if mask is not None else det))


def folding_fraction(dvf: np.ndarray, spacing: Optional[Sequence[float]] = None, mask: Optional[np.ndarray] = None
                     ) -> float:
    """Fraction of voxels with a Jacobian determinant <= 0."""
    det = jacobian_determinant(dvf, spacing)
    values = det[mask.astype(bool)] if mask is not None else det
    return float(np.mean(values <= 0)) if values.size else 0.0


def deformation_metrics(dvf: np.ndarray, spacing: Optional[Sequence[float]] = None,
                        mask: Optional[np.ndarray] = None) -> dict:
    det = jacobian_determinant(dvf, spacing)
    values = det[mask.astype(bool)] if mask is not None else det
    return {"jacobian_std": float(np.std(values)), "folding_fraction": float(np.mean(values <= 0)),
            "jacobian_mean": float(np.mean(values)), "jacobian_min": float(np.min(values))}
