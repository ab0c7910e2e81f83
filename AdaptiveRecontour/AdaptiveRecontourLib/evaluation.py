"""Evaluation of a re-contouring result (torch-free): DSC, MSD, HD per structure and, for a deformation, the standard
deviation of the Jacobian determinant and the folding fraction. One function for the Logic (in-process scripting
API) and the command line (``python -m AdaptiveRecontourLib evaluate``, which the panel runs as a child process:
surface distances and Hausdorff distances of four structures take seconds on a full-size CT)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np

from .configs import SEGMENT_NAMES

__all__ = ["evaluation_rows", "field_along_ijk"]


def field_along_ijk(displacement_ras: np.ndarray, directions_ras: np.ndarray) -> np.ndarray:
    """(3, K, J, I) components along K, J, I of a (K, J, I, 3) RAS displacement field on a grid with those
    ``directions_ras`` (columns: RAS unit vectors of I, J, K)."""
    along_ijk = np.asarray(displacement_ras, dtype=np.float64) @ np.asarray(directions_ras, dtype=np.float64)
    return np.stack([along_ijk[..., 2], along_ijk[..., 1], along_ijk[..., 0]])


def evaluation_rows(labels: np.ndarray, reference: np.ndarray, spacing, field: Optional[np.ndarray] = None,
                    progress=None, cancel=None) -> List[Dict[str, Any]]:
    """One row per structure (``structure``, ``dice``, ``msd_mm``, ``hd_mm``, NaN deformation columns) and, with a
    ``field`` (3, K, J, I) in voxels along K, J, I, a ``deformation`` row (``jacobian_std``, ``folding_fraction``)."""
    from mednets.metrics import deformation_metrics, per_label_metrics

    names = {i + 1: n for i, n in enumerate(SEGMENT_NAMES)}
    rows = []
    for row in per_label_metrics(labels, reference, names, spacing,
                                 metrics=("dice", "mean_surface_distance", "hausdorff_distance"),
                                 progress=progress, cancel=cancel):
        rows.append({"structure": row["name"], "dice": float(row["dice"]),
                     "msd_mm": float(row["mean_surface_distance"]), "hd_mm": float(row["hausdorff_distance"]),
                     "jacobian_std": float("nan"), "folding_fraction": float("nan")})
    if field is not None:
        d = deformation_metrics(field, spacing)
        rows.append({"structure": "deformation", "dice": float("nan"), "msd_mm": float("nan"),
                     "hd_mm": float("nan"), "jacobian_std": float(d["jacobian_std"]),
                     "folding_fraction": float(d["folding_fraction"])})
    return rows
