"""Registration losses (torch): normalised cross-correlation, bending energy, Dice of warped contours.

Elmahdy et al., "Joint Registration and Segmentation via Multi-Task Learning for Adaptive Radiotherapy of Prostate
Cancer", IEEE Access 2021: Eq. 5.2 (NCC), Eq. 5.3 (bending energy, the squared Frobenius norm of the Hessian of the
DVF), Eq. 5.1 applied to the warped moving contours (DSC-R).

Displacement fields are (B, 3, D, H, W) with channel c the displacement along spatial axis c (see
:mod:`mednets.spatial_transform`). The bending energy differentiates channel c along all three spatial axes 2, 3, 4 of
the tensor (never along the channel axis), with the voxel ``spacing`` of each axis, and is finite for any finite field:
a field too small for the stencil is an error, not a NaN.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..spatial_transform import warp_one_hot
from .dice import SoftDiceLoss

__all__ = ["ncc", "NCCLoss", "bending_energy", "BendingEnergyLoss", "WarpedContourDiceLoss"]


def ncc(fixed: torch.Tensor, warped: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Global normalised cross-correlation per item and channel, (B, C): mean((f - mean f)(w - mean w)) / (sd_f sd_w)."""
    if fixed.shape != warped.shape:
        raise ValueError(f"fixed {tuple(fixed.shape)} and warped {tuple(warped.shape)} differ in shape")
    f = fixed.flatten(2)
    w = warped.flatten(2)
    f = f - f.mean(-1, keepdim=True)
    w = w - w.mean(-1, keepdim=True)
    cov = (f * w).mean(-1)
    sd = torch.sqrt(f.square().mean(-1) * w.square().mean(-1) + eps * eps)
    return cov / sd


class NCCLoss(torch.nn.Module):
    """1 - NCC (Eq. 5.2), averaged over items and channels. 0 for identical images, 2 for inverted ones."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = float(eps)

    def forward(self, fixed: torch.Tensor, warped: torch.Tensor) -> torch.Tensor:
        return 1.0 - ncc(fixed, warped, self.eps).mean()


def bending_energy(dvf: torch.Tensor, spacing: Optional[Sequence[float]] = None) -> torch.Tensor:
    """Mean over interior voxels of ||H(u)||_F^2 summed over the 3 components (Eq. 5.3), one value per item (B,).

    Second derivatives by central differences (exact for quadratic fields): d2u/dx_a^2 = (u[+1] - 2u + u[-1]) / h_a^2,
    d2u/dx_a dx_b = (u[+1,+1] - u[+1,-1] - u[-1,+1] + u[-1,-1]) / (4 h_a h_b); the mixed terms count twice (the
    Hessian is symmetric). Evaluated where the stencil fits (one voxel in from every face).
    """
    if dvf.dim() != 5 or dvf.shape[1] != 3:
        raise ValueError(f"dvf must be (B, 3, D, H, W), got {tuple(dvf.shape)}")
    if min(dvf.shape[2:]) < 3:
        raise ValueError(f"bending energy needs at least 3 voxels per axis, got {tuple(dvf.shape[2:])}")
    h = [1.0, 1.0, 1.0] if spacing is None else [float(s) for s in spacing]
    if len(h) != 3 or min(h) <= 0:
        raise ValueError(f"spacing must be 3 positive values, got {spacing}")

    def shift(t, axis, step):  # value at offset `step` along spatial axis (0..2), on the interior region
        sl = [slice(None), slice(None), slice(1, -1), slice(1, -1), slice(1, -1)]
        n = t.shape[axis + 2]
        sl[axis + 2] = slice(1 + step, n - 1 + step)
        return t[tuple(sl)]

    def shift2(t, a, sa, b, sb):
        sl = [slice(None), slice(None), slice(1, -1), slice(1, -1), slice(1, -1)]
        sl[a + 2] = slice(1 + sa, t.shape[a + 2] - 1 + sa)
        sl[b + 2] = slice(1 + sb, t.shape[b + 2] - 1 + sb)
        return t[tuple(sl)]

    centre = dvf[:, :, 1:-1, 1:-1, 1:-1]
    total = torch.zeros_like(centre)
    for a in range(3):
        d2 = (shift(dvf, a, 1) - 2.0 * centre + shift(dvf, a, -1)) / (h[a] * h[a])
        total = total + d2.square()
        for b in range(a + 1, 3):
            dab = (shift2(dvf, a, 1, b, 1) - shift2(dvf, a, 1, b, -1) - shift2(dvf, a, -1, b, 1)
                   + shift2(dvf, a, -1, b, -1)) / (4.0 * h[a] * h[b])
            total = total + 2.0 * dab.square()
    return total.sum(1).flatten(1).mean(1)


class BendingEnergyLoss(torch.nn.Module):
    """Batch mean of :func:`bending_energy`."""

    def __init__(self, spacing: Optional[Sequence[float]] = None) -> None:
        super().__init__()
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)

    def forward(self, dvf: torch.Tensor) -> torch.Tensor:
        return bending_energy(dvf, self.spacing).mean()


class WarpedContourDiceLoss(torch.nn.Module):
    """DSC-R: soft Dice (Eq. 5.1, mean over the K foreground structures) of the moving contours warped by the DVF.

    The moving label map is one-hot encoded and warped trilinearly (differentiable in the DVF), then compared with
    the fixed label map on the DVF's grid (``offset``/``stride`` as in :func:`mednets.spatial_transform.sample`).

    Shapes: ``moving_labels`` (B, 1, D, H, W) integers; ``dvf`` (B, 3, d, h, w); ``fixed_labels`` (B, 1, d, h, w).

    ``smooth`` is added to the numerator and the denominator of every Dice ratio (in voxels). It must not be tiny: a
    structure absent from the fixed patch scores loss 0 at the identity, but the slightest displacement that moves a
    mass ``e`` of it into the patch gives ``1 - smooth / (e + smooth)``, a jump to about 1 for ``smooth`` 1e-5 (the
    first version of this loss; its gradient near the identity was that spike, and training on patches where a
    structure lies at the edge pushed the displacement back towards 0). With ``smooth`` 1 the loss grows like ``e``.
    ``batch`` sums over the batch before taking each structure's ratio (fewer absent-structure terms on small patches).
    """

    def __init__(self, num_classes: int, include_background: bool = False, smooth: float = 1.0,
                 batch: bool = False) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.dice = SoftDiceLoss(activation=None, include_background=include_background,
                                 smooth_numerator=float(smooth), smooth_denominator=float(smooth), batch=bool(batch))

    def forward(self, moving_labels: torch.Tensor, dvf: torch.Tensor, fixed_labels: torch.Tensor, offset=0,
                stride=1) -> torch.Tensor:
        warped = warp_one_hot(moving_labels, dvf, self.num_classes, offset, stride)
        return self.dice(warped, fixed_labels.long())
