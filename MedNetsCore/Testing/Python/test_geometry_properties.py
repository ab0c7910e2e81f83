"""Property-based tests (hypothesis) of the geometry conversions: random oblique grids (orthonormal directions of
either handedness, anisotropic spacing, far origins) through ``mednets.image``, SimpleITK, files and the real MRML
scene must keep every voxel at the same physical place.

Oracles: SimpleITK's own index-to-physical-point mapping (LPS), and MRML's ``GetIJKToRASMatrix``.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mednets import io
from mednets.image import (Volume, compose_ijk_to_ras, convert_coordinates, directions_from_ijk_to_ras, kji_to_ras,
                           lps_to_ras, ras_to_kji, ras_to_lps, spacing_from_ijk_to_ras)

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
finite = st.floats(-500.0, 500.0, allow_nan=False)
spacings = st.tuples(*[st.floats(0.2, 5.0)] * 3)
origins = st.tuples(finite, finite, finite)
shapes = st.tuples(*[st.integers(2, 7)] * 3)


@st.composite
def directions(draw) -> np.ndarray:
    """A random orthonormal 3x3 matrix (QR of a random matrix), proper or improper (a mirrored grid)."""
    entries = draw(st.lists(st.floats(-1.0, 1.0), min_size=9, max_size=9))
    matrix = np.array(entries).reshape(3, 3) + np.diag([1.5, 1.3, 1.1])  # keeps the matrix well conditioned
    q, r = np.linalg.qr(matrix)
    q = q * np.sign(np.diag(r))
    if draw(st.booleans()):
        q[:, 0] = -q[:, 0]
    return q


@st.composite
def grids(draw):
    return draw(shapes), draw(spacings), draw(origins), draw(directions())


def _volume(grid, seed: int = 0) -> Volume:
    shape, spacing, origin, direction = grid
    array = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    return Volume(array, compose_ijk_to_ras(spacing, origin, direction))


def _indices(shape, count: int = 6) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.uniform(0, np.array(shape) - 1, size=(count, 3))


@SETTINGS
@given(grids())
def test_matrix_decomposes_into_the_grid_it_was_built_from(grid):
    shape, spacing, origin, direction = grid
    matrix = compose_ijk_to_ras(spacing, origin, direction)
    np.testing.assert_allclose(spacing_from_ijk_to_ras(matrix), spacing, rtol=1e-9)
    np.testing.assert_allclose(directions_from_ijk_to_ras(matrix), direction, atol=1e-9)
    indices = _indices(shape)
    np.testing.assert_allclose(ras_to_kji(kji_to_ras(indices, matrix), matrix), indices, atol=1e-7)


@SETTINGS
@given(st.lists(st.tuples(finite, finite, finite), min_size=1, max_size=5))
def test_lps_and_ras_are_each_others_inverse(points):
    points = np.array(points)
    np.testing.assert_array_equal(lps_to_ras(ras_to_lps(points)), points)
    np.testing.assert_array_equal(convert_coordinates(points, "RAS", "LPS"), ras_to_lps(points))
    np.testing.assert_array_equal(ras_to_lps(points)[:, 2], points[:, 2])  # S is shared


@SETTINGS
@given(grids())
def test_volume_places_voxels_where_simpleitk_does(grid):
    volume = _volume(grid)
    image = volume.to_sitk()
    for k, j, i in _indices(volume.shape):
        lps = image.TransformContinuousIndexToPhysicalPoint((float(i), float(j), float(k)))  # ITK: (i, j, k), LPS
        np.testing.assert_allclose(volume.kji_to_ras([k, j, i]), lps_to_ras(lps), atol=1e-6)
    back = Volume.from_sitk(image)
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.ijk_to_ras, volume.ijk_to_ras, atol=1e-9)


@SETTINGS
@given(grids())
def test_file_round_trip_keeps_the_grid(tmp_path_factory, grid):
    volume = _volume(grid, seed=2)
    path = io.write_volume(volume, tmp_path_factory.mktemp("geometry") / "volume.nrrd")
    back = io.read_volume(path)
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.ijk_to_ras, volume.ijk_to_ras, atol=1e-6)


slicer = pytest.importorskip("slicer")


@pytest.fixture(scope="module")
def scene():
    mrml_scene = slicer.vtkMRMLScene()
    yield mrml_scene
    mrml_scene.Clear(1)


def _matrix_of(node) -> np.ndarray:
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


@SETTINGS
@given(grids())
def test_volume_node_round_trip_keeps_voxels_in_place(scene, grid):
    from mednets import mrml

    volume = _volume(grid, seed=3)
    node = mrml.new_volume_node(volume, scene, "geometry")
    try:
        np.testing.assert_allclose(_matrix_of(node), volume.ijk_to_ras, atol=1e-6)
        back = mrml.volume_from_node(node)
        np.testing.assert_array_equal(back.array, volume.array)
        np.testing.assert_allclose(back.ijk_to_ras, volume.ijk_to_ras, atol=1e-6)
    finally:
        scene.RemoveNode(node)


@SETTINGS
@given(grids(), st.integers(0, 1000))
def test_segmentation_node_round_trip_keeps_labels_in_place(scene, grid, seed):
    from mednets import mrml

    volume = _volume(grid, seed=4)
    labels = np.random.default_rng(seed).integers(0, 3, size=volume.shape).astype(np.uint8)
    node = mrml.new_volume_node(volume, scene, "reference")
    segmentation = mrml.new_segmentation_node(labels, node, name="labels")
    try:
        before = scene.GetNumberOfNodes()
        exported, mapping = mrml.labelmap_from_segmentation(segmentation, node)
        assert scene.GetNumberOfNodes() == before  # the export left no temporary node behind
        names = {value: segmentation.GetSegmentation().GetSegment(segment).GetName()
                 for value, segment in mapping.items()}
        expected = np.zeros_like(labels)
        for value, name in names.items():
            expected[labels == int(name.split()[-1])] = value  # default names are "Label <value>"
        np.testing.assert_array_equal(exported, expected)
    finally:
        for created in (segmentation, node):
            scene.RemoveNode(created)


@SETTINGS
@given(st.lists(st.tuples(finite, finite, finite), min_size=0, max_size=6))
def test_point_list_round_trip(scene, points):
    from mednets import mrml

    node = mrml.new_point_list_node(np.array(points, dtype=float).reshape(-1, 3), scene=scene, name="points")
    try:
        back, _labels, _descriptions = mrml.points_from_markups(node)
        np.testing.assert_allclose(back.reshape(-1, 3), np.array(points, dtype=float).reshape(-1, 3), atol=1e-9)
    finally:
        scene.RemoveNode(node)


@SETTINGS
@given(grids(), st.tuples(*[st.integers(-2, 4)] * 3), st.tuples(*[st.integers(1, 9)] * 3))
def test_crop_keeps_voxels_at_their_physical_place(grid, start, size):
    volume = _volume(grid, seed=5)
    stop = [begin + extent for begin, extent in zip(start, size)]
    first = [max(0, begin) for begin in start]
    last = [min(n, end) for n, end in zip(volume.shape, stop)]
    if any(end <= begin for begin, end in zip(first, last)):
        with pytest.raises(ValueError, match="empty crop"):
            volume.crop(start, stop)
        return
    crop = volume.crop(start, stop)
    assert crop.shape == tuple(end - begin for begin, end in zip(first, last))
    np.testing.assert_array_equal(crop.array, volume.array[first[0]:last[0], first[1]:last[1], first[2]:last[2]])
    np.testing.assert_allclose(crop.kji_to_ras([0, 0, 0]), volume.kji_to_ras(first), atol=1e-9)
    assert crop.spacing == pytest.approx(volume.spacing)
