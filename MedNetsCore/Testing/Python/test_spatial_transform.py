"""Warping on analytic displacements: translations, output grids with offset/stride, labels nearest and one-hot."""

import numpy as np
import pytest
import torch

from mednets.spatial_transform import identity_grid, sample, warp_image, warp_labels, warp_one_hot


def _ramp(shape=(10, 11, 12)):
    k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
    return torch.tensor((2.0 * k + 3.0 * j - 1.5 * i)[None, None])


def test_zero_displacement_is_identity():
    img = torch.randn(2, 2, 6, 7, 8, dtype=torch.float64)
    out = warp_image(img, torch.zeros(2, 3, 6, 7, 8, dtype=torch.float64))
    assert torch.allclose(out, img, atol=1e-10)


def test_linear_image_under_fractional_translation_is_exact():
    img = _ramp()
    dvf = torch.zeros(1, 3, 10, 11, 12, dtype=torch.float64)
    dvf[:, 0], dvf[:, 1], dvf[:, 2] = 0.5, -0.25, 1.0  # along K, J, I
    out = warp_image(img, dvf)
    want = img + 2.0 * 0.5 + 3.0 * -0.25 - 1.5 * 1.0
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1), slice(1, -2))  # away from the clamped border
    assert torch.allclose(out[inner], want[inner], atol=1e-9)


def test_offset_and_stride_grid():
    img = _ramp()
    dvf = torch.zeros(1, 3, 3, 4, 2, dtype=torch.float64)
    out = warp_image(img, dvf, offset=(1, 2, 3), stride=(2, 2, 4))
    want = img[:, :, 1:7:2, 2:10:2, 3:11:4]
    assert torch.allclose(out, want, atol=1e-9)
    grid = identity_grid((3, 4, 2), (1, 2, 3), (2, 2, 4))
    assert grid[0, :, 2, 3, 1].tolist() == [5.0, 8.0, 7.0]


def test_label_warps_integer_shift():
    lab = torch.zeros(1, 1, 9, 9, 9, dtype=torch.long)
    lab[:, :, 2:5, 3:6, 1:4] = 1
    lab[:, :, 5:7, 5:7, 5:7] = 2
    dvf = torch.zeros(1, 3, 9, 9, 9)
    dvf[:, 2] = -1.0  # sample one voxel lower along I: content moves +1 along I
    want = torch.roll(lab, 1, dims=4)
    want[..., 0] = lab[..., 0]  # border repeated
    for method in ("nearest", "one_hot"):
        out = warp_labels(lab, dvf, 3, method=method)
        assert out.dtype == torch.int64 and torch.equal(out, want)


def test_one_hot_warp_sums_to_one_and_rotation():
    lab = torch.zeros(1, 1, 9, 9, 9, dtype=torch.long)
    lab[:, :, 4, 2:7, 4] = 1  # a bar along J
    # 90 degree rotation about K around the centre: sample point (k, 4 + (i-4), 4 - (j-4))
    grid = identity_grid((9, 9, 9), dtype=torch.float32)
    k, j, i = grid[0]
    target = torch.stack([k, 4 + (i - 4), 4 - (j - 4)])[None]
    dvf = target - grid
    out = warp_labels(lab, dvf, 2, method="nearest")
    assert torch.equal(out[0, 0, 4, 4, 2:7], torch.ones(5, dtype=torch.long))  # the bar now lies along I
    probs = warp_one_hot(lab, dvf + 0.3, 2)
    assert torch.allclose(probs.sum(1), torch.ones(1, 9, 9, 9), atol=1e-6)


def test_bad_shapes():
    with pytest.raises(ValueError):
        warp_image(torch.zeros(1, 1, 4, 4, 4), torch.zeros(1, 2, 4, 4, 4))
    with pytest.raises(ValueError):
        sample(torch.zeros(1, 4, 4, 4), torch.zeros(1, 3, 2, 2, 2))
