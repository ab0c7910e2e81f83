"""Training masks from sparse point annotations (Altun et al.): kernels, spheres, VOI masks, shell masks, weights.

Every expected value is counted by hand in the comments."""
import numpy as np
import pytest
from scipy import ndimage

from mednets.sparse_annotations import (detection_weights, octagon_kernel, shell_mask, size_normalised_weights,
                                        sphere_instances, sphere_mask, spherical_kernel, voi_mask)


def test_spherical_kernel_counts():
    assert spherical_kernel(1).sum() == 1
    assert spherical_kernel(3).sum() == 7          # centre + 6 face neighbours (|x|^2 <= 1)
    assert spherical_kernel(5).sum() == 33         # |x|^2 <= 4: 1 + 6 + 12 (|x|^2=2) + 8 (=3) + 6 (=4)
    assert spherical_kernel(11).sum() == 515       # lattice points in a ball of radius 5
    assert spherical_kernel(11).shape == (11, 11, 11)
    with pytest.raises(ValueError):
        spherical_kernel(4)


def test_octagon_kernel_counts():
    assert octagon_kernel(3).sum() == 27            # one cube dilation: the full 3x3x3 cube
    assert octagon_kernel(5).sum() == 125 - 44      # cube + cross: no offset with two coordinates at +-2
    two_d = octagon_kernel(5, ndim=2).astype(int)
    assert two_d.tolist() == [[0, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 1, 1, 0]]
    k11 = octagon_kernel(11)
    assert k11.shape == (11, 11, 11) and k11[5, 5, 0] and not k11[0, 0, 0]
    assert np.array_equal(k11, k11[::-1]) and np.array_equal(k11, k11.transpose(1, 2, 0))
    # a 3D octagon lies between the inscribed ball and the cube
    assert spherical_kernel(11).sum() < k11.sum() < 11 ** 3


def test_sphere_instances_hand_case():
    # diameter 2 mm at 1 mm spacing around voxel (2,2,2): centre + 6 neighbours (distance 1 <= r = 1)
    labels = sphere_instances((5, 5, 5), [(2, 2, 2)], [2.0])
    assert labels.sum() == 7 and labels[2, 2, 2] == 1 and labels[1, 2, 2] == 1 and labels[1, 1, 2] == 0
    # anisotropic spacing: 2 mm along axis 0 -> the axis-0 neighbours are 2 mm away, outside r = 1.5
    labels = sphere_instances((5, 5, 5), [(2, 2, 2)], [3.0], spacing=(2.0, 1.0, 1.0))
    assert labels[1, 2, 2] == 0 and labels[2, 1, 2] == 1 and labels[2, 1, 1] == 1  # sqrt(2) <= 1.5
    assert labels.sum() == 9
    # a sphere smaller than a voxel keeps its nearest voxel; later annotations overwrite earlier ones
    labels = sphere_instances((5, 5, 5), [(0.4, 0.4, 0.4), (2, 2, 2), (2, 2, 3)], [0.2, 2.0, 2.0])
    assert labels[0, 0, 0] == 1 and labels[2, 2, 3] == 3 and labels[2, 2, 2] == 3 and labels[2, 2, 1] == 2
    assert sphere_mask((5, 5, 5), [], []).sum() == 0
    with pytest.raises(ValueError):
        sphere_instances((5, 5, 5), [(1, 1, 1)], [-1.0])


def test_voi_mask_thresholds_then_opening():
    image = np.zeros((20, 20, 20), dtype=np.float32)         # soft tissue everywhere ...
    image[:, :, :3] = -1000.0                                 # ... air at one side
    image[10, 10, 10:12] = 800.0                              # a 2-voxel bone chip
    # radius 4 voxels (4 mm at 1 mm spacing) around (10,10,5): no opening -> ball minus air minus bone
    ball = sphere_mask(image.shape, [(10, 10, 5)], [8.0])
    raw = voi_mask(image, [(10, 10, 5)], radius_mm=4.0, opening_size=1)
    assert np.array_equal(raw, ball & (image >= -600) & (image <= 300))
    assert not raw[:, :, :3].any() and raw[10, 10, 5]
    # opening with a 3x3x3 ball removes voxels the kernel cannot fit around (the cut near the air plane keeps a
    # flat face, so the result equals scipy's opening and is a subset of the raw mask)
    opened = voi_mask(image, [(10, 10, 5)], radius_mm=4.0, opening_size=3)
    expected = ndimage.binary_opening(raw, structure=spherical_kernel(3))
    assert np.array_equal(opened, expected) and opened.sum() < raw.sum() and (opened <= raw).all()
    # a single isolated voxel survives no opening
    tiny = np.zeros((9, 9, 9), np.float32)
    assert voi_mask(tiny, [(4, 4, 4)], radius_mm=0.5, opening_size=3).sum() == 0
    assert voi_mask(tiny, [], radius_mm=5.0).sum() == 0


def test_voi_mask_default_is_5cm_sphere_and_11_kernel():
    spacing = (3.0, 3.0, 3.0)
    image = np.full((40, 40, 40), 40.0, np.float32)
    mask = voi_mask(image, [(20, 20, 20)], spacing=spacing)
    # homogeneous tissue: opening a ball of radius 50 mm (16.7 voxels) by an 11-voxel ball keeps it up to a few
    # lattice bumps on its surface
    ball = sphere_mask(image.shape, [(20, 20, 20)], [100.0], spacing)
    assert (mask <= ball).all() and mask.sum() > 0.99 * ball.sum()
    assert mask[ndimage.binary_erosion(ball)].all()
    # an 11-voxel kernel does not fit in a 5 cm sphere at 10 mm voxels (5 voxels radius -> 11 wide: just fits)
    coarse = voi_mask(np.zeros((21, 21, 21), np.float32), [(10, 10, 10)], spacing=(10.0, 10.0, 10.0))
    assert np.array_equal(coarse, ndimage.binary_opening(sphere_mask((21,) * 3, [(10, 10, 10)], [100.0], (10.0,) * 3),
                                                        structure=spherical_kernel(11)))


def test_shell_mask_is_external_gradient_with_octagon():
    fg = np.zeros((11, 11, 11), bool)
    fg[5, 5, 5] = True
    shell = shell_mask(fg, size=5)
    assert shell.sum() == 81 - 1 and not shell[5, 5, 5]       # the 5x5x5 octagon around one voxel, minus the voxel
    assert not shell[3, 3, 5] and shell[3, 4, 5]              # two coordinates at distance 2: cut corner
    shell11 = shell_mask(fg, size=11)
    assert shell11.sum() == octagon_kernel(11).sum() - 1
    assert shell_mask(np.zeros((4, 4, 4), bool)).sum() == 0
    ball_shell = shell_mask(fg, size=3, kernel="sphere")
    assert ball_shell.sum() == 6


def test_size_normalised_weights_hand_case():
    instances = np.zeros((4, 10), np.int32)
    instances[0, :2] = 1          # 2 voxels
    instances[2, :6] = 2          # 6 voxels
    weights = size_normalised_weights(instances)
    # mean size 4: node 1 -> 4/2 = 2, node 2 -> 4/6
    assert np.allclose(weights[0, :2], 2.0) and np.allclose(weights[2, :6], 4.0 / 6.0)
    assert np.allclose(weights[instances == 0], 1.0)
    # each node's total weight equals the mean size (eq. 5): equal contribution
    assert np.isclose(weights[instances == 1].sum(), 4.0) and np.isclose(weights[instances == 2].sum(), 4.0)
    assert np.allclose(size_normalised_weights(instances, mean_size=6.0)[2, :6], 1.0)


def test_detection_weights_combine_shell_and_size():
    instances = np.zeros((15, 15, 15), np.int32)
    instances[7, 7, 7] = 1
    weights = detection_weights(instances, shell_size=3)
    assert weights[7, 7, 7] == 1.0                       # single node: mean size = its size
    assert (weights == 0).sum() == 26                    # the 3x3x3 shell
    assert (weights == 1).sum() == 15 ** 3 - 26
    assert (detection_weights(instances, shell=False) == 1).all()


def test_patch_sampler_output_crop_centres_foreground_for_valid_networks():
    """mednets.training.PatchSampler(output_crop=c): foreground-forced patches hold their voxel in the central region
    a valid-convolution network predicts (added for AxillaryLNDetect)."""
    from mednets.training import Case, PatchSampler

    label = np.zeros((40, 40, 40), np.uint8)
    label[20, 20, 20] = 1
    case = Case.from_volume("c", np.zeros((40, 40, 40), np.float32), label, (1.0, 1.0, 1.0))
    sampler = PatchSampler([case], (24, 24, 24), foreground_fraction=1.0, seed=0, output_crop=8)
    for _ in range(20):
        patch_label = sampler.sample(foreground=True)[1]
        assert patch_label[8:16, 8:16, 8:16].sum() == 1
    plain = PatchSampler([case], (24, 24, 24), foreground_fraction=1.0, seed=0)
    assert sum(plain.sample(foreground=True)[1][8:16, 8:16, 8:16].sum() for _ in range(20)) < 20
    with pytest.raises(ValueError):
        PatchSampler([case], (24, 24, 24), output_crop=12)
