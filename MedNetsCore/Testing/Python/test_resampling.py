"""mednets.resampling: extent-preserving grids, interpolators, labels, vectors and displacement fields."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from mednets.image import Volume, compose_ijk_to_ras, lps_to_ras, ras_to_lps
from mednets.resampling import (INTERPOLATORS, displacement_field_from_sitk, displacement_field_to_sitk,
                                resample_to_reference, resample_to_spacing)


def rotation(axis, angle: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


OBLIQUE = rotation([0.3, -1.0, 2.0], 0.6)
ORIGIN_RAS = (-20.0, 35.0, 12.0)


def smooth_function(points_ras: np.ndarray) -> np.ndarray:
    """A smooth test image defined in physical space (mm), so any grid can be compared with the truth."""
    x, y, z = points_ras[..., 0], points_ras[..., 1], points_ras[..., 2]
    return 100.0 * np.sin(x / 9.0) * np.cos(y / 11.0) + 40.0 * np.sin(z / 13.0 + 0.3)


def voxel_centres(volume: Volume) -> np.ndarray:
    k, j, i = np.meshgrid(*(np.arange(n) for n in volume.shape), indexing="ij")
    return volume.kji_to_ras(np.stack([k, j, i], axis=-1).reshape(-1, 3)).reshape(volume.shape + (3,))


def smooth_volume(shape=(12, 20, 24), spacing=(3.0, 1.5, 1.0)) -> Volume:
    grid = Volume(np.zeros(shape, np.float32), spacing=spacing, origin_ras=ORIGIN_RAS, directions_ras=OBLIQUE)
    return grid.with_array(smooth_function(voxel_centres(grid)).astype(np.float32))


def interior(array: np.ndarray, margin: int) -> np.ndarray:
    return array[margin:-margin, margin:-margin, margin:-margin]


def low_corner_edge(volume: Volume) -> np.ndarray:
    return volume.kji_to_ras([-0.5, -0.5, -0.5])


def high_corner_edge(volume: Volume) -> np.ndarray:
    return volume.kji_to_ras(np.array(volume.shape) - 0.5)


# ------------------------------------------------------------------------------------------------ grid
def test_new_grid_preserves_extent_with_the_documented_size_and_origin():
    volume = Volume(np.zeros((7, 10, 13), np.float32), spacing=(3.0, 1.2, 0.9), origin_ras=ORIGIN_RAS,
                    directions_ras=OBLIQUE)
    result = resample_to_spacing(volume, 1.0)
    extent = np.array([7 * 3.0, 10 * 1.2, 13 * 0.9])  # 21, 12, 11.7
    assert result.shape == (21, 12, 12)  # round(extent / 1)
    assert result.spacing == pytest.approx((1.0, 1.0, 1.0))
    np.testing.assert_allclose(result.directions_ras, OBLIQUE, atol=1e-12)  # oblique direction kept
    np.testing.assert_allclose(low_corner_edge(result), low_corner_edge(volume), atol=1e-9)
    expected_origin = np.asarray(ORIGIN_RAS) + OBLIQUE @ ((np.array([1.0, 1.0, 1.0]) - [0.9, 1.2, 3.0]) / 2.0)
    np.testing.assert_allclose(result.origin_ras, expected_origin, atol=1e-9)
    # the far edge moves by less than half a new voxel along each axis (11.7 mm -> 12 voxels of 1 mm along I)
    shift = OBLIQUE.T @ (high_corner_edge(result) - high_corner_edge(volume))
    np.testing.assert_allclose(shift, [0.3, 0.0, 0.0], atol=1e-9)


def test_far_edge_stays_in_place_when_the_extent_is_a_multiple_of_the_new_spacing():
    volume = Volume(np.zeros((4, 6, 9), np.int16), spacing=(2.5, 1.0, 0.5), origin_ras=ORIGIN_RAS,
                    directions_ras=OBLIQUE)
    result = resample_to_spacing(volume, (0.5, 2.0, 1.5), interpolator="nearest")
    assert result.shape == (20, 3, 3)
    np.testing.assert_allclose(low_corner_edge(result), low_corner_edge(volume), atol=1e-9)
    np.testing.assert_allclose(high_corner_edge(result), high_corner_edge(volume), atol=1e-9)


def test_matches_a_direct_simpleitk_resample_call():
    volume = smooth_volume()
    image = volume.to_sitk()
    new_spacing_xyz = (0.65, 0.9, 2.0)  # 24 / 0.65 = 36.9 voxels: rounds up
    size = [int(np.floor(n * s / t + 0.5)) for n, s, t in zip(image.GetSize(), image.GetSpacing(), new_spacing_xyz)]
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    origin = np.asarray(image.GetOrigin()) + direction @ ((np.asarray(new_spacing_xyz) - image.GetSpacing()) / 2)
    reference = sitk.Image(size, sitk.sitkFloat32)
    reference.SetSpacing(new_spacing_xyz)
    reference.SetOrigin(tuple(origin))
    reference.SetDirection(image.GetDirection())
    expected = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0)
    ours = resample_to_spacing(image, new_spacing_xyz[::-1])  # array-axis order
    assert isinstance(ours, sitk.Image)
    assert ours.GetSize() == expected.GetSize()
    np.testing.assert_allclose(ours.GetOrigin(), expected.GetOrigin(), atol=1e-9)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(expected))
    from_volume = resample_to_spacing(volume, new_spacing_xyz[::-1])
    assert isinstance(from_volume, Volume)
    np.testing.assert_array_equal(from_volume.array, sitk.GetArrayFromImage(expected))


def test_spacing_is_given_in_array_axis_order_for_simpleitk_images_too():
    image = sitk.Image([8, 6, 4], sitk.sitkFloat32)
    image.SetSpacing((0.5, 1.0, 2.0))  # x, y, z
    result = resample_to_spacing(image, (4.0, 1.0, 0.25))  # z, y, x
    assert result.GetSpacing() == pytest.approx((0.25, 1.0, 4.0))
    assert result.GetSize() == (16, 6, 2)
    kept = resample_to_spacing(image, (None, 0.5, None))
    assert kept.GetSpacing() == pytest.approx((0.5, 0.5, 2.0)) and kept.GetSize() == (8, 12, 4)
    flat = sitk.Image([8, 6], sitk.sitkUInt8)
    flat.SetSpacing((0.5, 1.0))
    assert resample_to_spacing(flat, (0.5, 1.0), interpolator="nearest").GetSize() == (4, 12)


def test_single_number_keeps_the_slice_thickness_of_a_2d_image():
    picture = Volume(np.ones((1, 10, 20), np.float32), spacing=(1.0, 0.5, 0.25))
    result = resample_to_spacing(picture, 0.5)
    assert result.shape == (1, 10, 10) and result.spacing == pytest.approx((1.0, 0.5, 0.5))


# ------------------------------------------------------------------------------------------------ accuracy
@pytest.mark.parametrize("interpolator", ["linear", "bspline", "lanczos"])
def test_values_on_the_new_grid_match_the_analytic_image(interpolator):
    volume = smooth_volume()
    result = resample_to_spacing(volume, 1.3, interpolator=interpolator)
    truth = smooth_function(voxel_centres(result))
    # Away from the border the interpolation error stays below 1 (measured 0.47-0.72 on a 280-unit range); a grid
    # off by half a new voxel along one axis gives about 5.5, a wrong axis order or sign tens.
    error = np.abs(interior(result.array, 3) - interior(truth, 3))
    assert error.max() < 1.0


@pytest.mark.parametrize("interpolator, bound", [("linear", 0.2), ("bspline", 0.03), ("lanczos", 0.35)])
def test_round_trip_to_fine_spacing_and_back_is_accurate(interpolator, bound):
    volume = smooth_volume()
    fine = resample_to_spacing(volume, (1.0, 0.5, 0.5), interpolator=interpolator)
    back = resample_to_reference(fine, volume, interpolator=interpolator)
    assert back.same_grid(volume)
    error = np.abs(interior(back.array, 2) - interior(volume.array, 2))
    assert error.max() < bound


def test_nearest_round_trip_through_an_integer_refinement_is_exact():
    labels = np.random.default_rng(0).integers(0, 4, size=(5, 6, 7)).astype(np.uint8)
    volume = Volume(labels, spacing=(2.0, 1.0, 1.5), origin_ras=ORIGIN_RAS, directions_ras=OBLIQUE)
    fine = resample_to_spacing(volume, (1.0, 0.5, 0.5), interpolator="nearest")
    np.testing.assert_array_equal(fine.array[::2, ::2, 1::3], labels)
    np.testing.assert_array_equal(resample_to_reference(fine, volume, interpolator="nearest").array, labels)


# ------------------------------------------------------------------------------------------------ labels and types
@pytest.mark.parametrize("interpolator", ["nearest", "label_gaussian"])
def test_label_interpolators_keep_the_label_set_and_type(interpolator):
    grid = Volume(np.zeros((10, 12, 14), np.int16), spacing=(2.0, 1.0, 1.0), origin_ras=ORIGIN_RAS,
                  directions_ras=OBLIQUE)
    centres = voxel_centres(grid) - grid.kji_to_ras(np.array(grid.shape) / 2.0)
    radius = np.linalg.norm(centres, axis=-1)
    labels = np.where(radius < 4.0, 7, np.where(radius < 7.0, 3, 0)).astype(np.int16)
    volume = grid.with_array(labels)
    for spacing in (0.6, (3.1, 1.7, 0.9)):
        result = resample_to_spacing(volume, spacing, interpolator=interpolator)
        assert result.array.dtype == np.int16
        assert set(np.unique(result.array)) == {0, 3, 7}
        assert set(np.unique(resample_to_reference(result, volume, interpolator=interpolator).array)) <= {0, 3, 7}
    fine = resample_to_spacing(volume, 0.6, interpolator=interpolator)
    assert np.mean(resample_to_reference(fine, volume, interpolator=interpolator).array == labels) > 0.95


def test_label_gaussian_is_simpleitks_label_gaussian():
    labels = np.zeros((9, 9, 9), np.uint8)
    labels[2:7, 3:8, 1:6] = 2
    labels[4:6, 4:6, 4:9] = 5
    image = Volume(labels, spacing=(1.5, 1.0, 1.0)).to_sitk()
    reference = sitk.Image([5, 6, 7], sitk.sitkUInt8)
    reference.SetSpacing((1.7, 1.4, 2.1))
    reference.SetOrigin((0.3, -0.2, 0.4))
    expected = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLabelGaussian, 0)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(resample_to_reference(image, reference, "label_gaussian")),
                                  sitk.GetArrayFromImage(expected))


def test_integer_images_are_rounded_and_clipped_not_wrapped():
    step = np.zeros((6, 6, 12), np.uint8)
    step[..., 6:] = 255  # a sharp edge: cubic and sinc interpolation overshoot below 0 and above 255
    volume = Volume(step)
    for interpolator in ("bspline", "lanczos"):
        result = resample_to_spacing(volume, (1.0, 1.0, 0.3), interpolator=interpolator)
        assert result.array.dtype == np.uint8
        exact = sitk.Resample(volume.to_sitk(), result.to_sitk(), sitk.Transform(), INTERPOLATORS[interpolator], 0.0,
                              sitk.sitkFloat32)
        exact_values = sitk.GetArrayFromImage(exact)
        assert exact_values.min() < -1.0 and exact_values.max() > 256.0  # the overshoot exists
        np.testing.assert_array_equal(result.array, np.clip(np.rint(exact_values), 0, 255))


def test_vector_images_resample_each_channel_like_a_scalar_image():
    volume = smooth_volume(shape=(6, 8, 10))
    channels = np.stack([volume.array, -2.0 * volume.array, volume.array + 5.0], axis=-1)
    vector = volume.with_array(channels)
    result = resample_to_spacing(vector, 1.7, interpolator="linear")
    assert result.array.shape == result.shape + (3,)
    for c in range(3):
        scalar = resample_to_spacing(volume.with_array(channels[..., c]), 1.7, interpolator="linear")
        np.testing.assert_allclose(result.array[..., c], scalar.array, rtol=1e-6, atol=1e-4)
    rgb = Volume(np.random.default_rng(1).integers(0, 256, size=(1, 5, 6, 3), dtype=np.uint8))
    nearest = resample_to_spacing(rgb, (1.0, 0.5, 0.5), interpolator="nearest")
    np.testing.assert_array_equal(nearest.array[0, ::2, ::2], rgb.array[0])
    with pytest.raises(ValueError, match="vector pixels"):
        resample_to_spacing(rgb, 0.5, interpolator="label_gaussian")


def test_resample_to_reference_applies_a_transform():
    volume = smooth_volume()
    shift_lps = (2.0, -1.0, 3.0)
    moved = resample_to_reference(volume, volume, "bspline", transform=sitk.TranslationTransform(3, shift_lps))
    expected = smooth_function(voxel_centres(volume) + lps_to_ras(shift_lps))  # output p samples the input at p + t
    assert np.abs(interior(moved.array, 3) - interior(expected, 3)).max() < 0.6  # the opposite shift gives 60


@pytest.mark.parametrize("kwargs, error, message", [
    ({"spacing": 1.0, "interpolator": "cubic"}, ValueError, "unknown interpolator"),
    ({"spacing": (1.0, 1.0)}, ValueError, "3 values in array-axis order"),
    ({"spacing": (1.0, -1.0, 1.0)}, ValueError, "positive"),
])
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        resample_to_spacing(smooth_volume(shape=(3, 3, 3)), **kwargs)


def test_non_image_input_and_dimension_mismatch():
    with pytest.raises(TypeError, match="Volume or a SimpleITK Image"):
        resample_to_spacing(np.zeros((3, 3, 3)), 1.0)
    with pytest.raises(ValueError, match="2D image onto a 3D grid"):
        resample_to_reference(sitk.Image([3, 3], sitk.sitkUInt8), smooth_volume(shape=(3, 3, 3)))


# ------------------------------------------------------------------------------------------------ displacement fields
def field_reference() -> Volume:
    return Volume(np.zeros((5, 6, 7), np.float32), compose_ijk_to_ras((2.0, 1.5, 1.0), ORIGIN_RAS, OBLIQUE))


def test_displacement_field_to_sitk_moves_voxel_centres_by_the_field():
    reference = field_reference()
    field_ras = np.random.default_rng(3).normal(size=reference.shape + (3,))
    transform = displacement_field_to_sitk(field_ras, reference)
    for index in [(0, 0, 0), (4, 5, 6), (2, 3, 1)]:
        centre = reference.kji_to_ras(index)
        moved_lps = transform.TransformPoint(tuple(ras_to_lps(centre)))
        np.testing.assert_allclose(lps_to_ras(moved_lps), centre + field_ras[index], atol=1e-9)
    same = displacement_field_to_sitk(ras_to_lps(field_ras), reference, coordinates="LPS")
    probe = tuple(ras_to_lps(reference.kji_to_ras([1.5, 2.25, 3.75])))  # between voxel centres: linear interpolation
    np.testing.assert_allclose(same.TransformPoint(probe), transform.TransformPoint(probe), atol=1e-12)


def test_displacement_field_sitk_round_trip_and_sampling_other_transforms():
    reference = field_reference()
    field_ras = np.random.default_rng(4).normal(size=reference.shape + (3,))
    back = displacement_field_from_sitk(displacement_field_to_sitk(field_ras, reference))
    assert back.same_grid(reference)
    np.testing.assert_allclose(back.array, field_ras, atol=1e-12)
    np.testing.assert_allclose(displacement_field_from_sitk(displacement_field_to_sitk(field_ras, reference),
                                                            coordinates="LPS").array, ras_to_lps(field_ras), atol=1e-12)
    translation = sitk.TranslationTransform(3, (1.0, 2.0, -3.0))
    sampled = displacement_field_from_sitk(translation, reference)
    np.testing.assert_allclose(sampled.array, np.broadcast_to([-1.0, -2.0, -3.0], reference.shape + (3,)), atol=1e-9)
    with pytest.raises(ValueError, match="no grid of its own"):
        displacement_field_from_sitk(translation)
    with pytest.raises(ValueError, match="shape"):
        displacement_field_to_sitk(field_ras[:-1], reference)
    with pytest.raises(ValueError, match="'RAS' or 'LPS'"):
        displacement_field_to_sitk(field_ras, reference, coordinates="IJK")
