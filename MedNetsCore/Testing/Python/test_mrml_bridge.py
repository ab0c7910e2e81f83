"""mednets.mrml against a real MRML scene (slicer-core): volumes, segmentations, markups, transforms, tables."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")

from mednets import io, mrml  # noqa: E402
from mednets.image import Volume, compose_ijk_to_ras, lps_to_ras, ras_to_lps  # noqa: E402
from mednets.resampling import displacement_field_to_sitk  # noqa: E402


def rotation(axis, angle: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


OBLIQUE = rotation([2.0, -1.0, 0.5], 0.7)
SPACING_KJI = (2.5, 1.25, 0.6)
ORIGIN_RAS = (-31.0, 14.5, 60.25)
SHAPE = (6, 7, 8)


@pytest.fixture
def scene():
    """A fresh MRML scene per test (cleared afterwards)."""
    mrml_scene = slicer.vtkMRMLScene()
    yield mrml_scene
    mrml_scene.Clear(1)


def node_ids(scene) -> list:
    return sorted(scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes()))


def oblique_volume(dtype=np.int16) -> Volume:
    values = (np.arange(np.prod(SHAPE)).reshape(SHAPE) * 13 % 997 - 200).astype(dtype)
    return Volume(values, spacing=SPACING_KJI, origin_ras=ORIGIN_RAS, directions_ras=OBLIQUE)


def node_corner_points(node, shape) -> np.ndarray:
    """RAS centres of the corner voxels from the node's own origin, spacing and directions (not its IJKToRAS)."""
    origin = np.array(node.GetOrigin())
    spacing_ijk = np.array(node.GetSpacing())
    directions = vtk.vtkMatrix4x4()
    node.GetIJKToRASDirectionMatrix(directions)
    columns = np.array([[directions.GetElement(r, c) for c in range(3)] for r in range(3)])
    points = []
    for k in (0, shape[0] - 1):
        for j in (0, shape[1] - 1):
            for i in (0, shape[2] - 1):
                points.append(origin + columns @ (np.array([i, j, k]) * spacing_ijk))
    return np.array(points)


def corner_indices(shape) -> np.ndarray:
    return np.array([[k, j, i] for k in (0, shape[0] - 1) for j in (0, shape[1] - 1) for i in (0, shape[2] - 1)])


# ------------------------------------------------------------------------------------------------ volumes
def test_file_volume_node_volume_file_round_trip_on_an_oblique_anisotropic_grid(scene, tmp_path):
    original = oblique_volume()
    read = io.read_volume(io.write_volume(original, tmp_path / "in.nrrd"))
    node = mrml.new_volume_node(read, scene, "CT")
    assert node.GetClassName() == "vtkMRMLScalarVolumeNode"
    assert node.GetSpacing() == pytest.approx(SPACING_KJI[::-1])  # Slicer's spacing is (I, J, K)
    assert node.GetOrigin() == pytest.approx(ORIGIN_RAS)
    np.testing.assert_allclose(node_corner_points(node, SHAPE), original.kji_to_ras(corner_indices(SHAPE)), atol=1e-9)
    from_node = mrml.volume_from_node(node)
    np.testing.assert_array_equal(from_node.array, original.array)
    assert from_node.array.dtype == np.int16
    np.testing.assert_allclose(from_node.ijk_to_ras, original.ijk_to_ras, atol=1e-9)
    back = io.read_volume(io.write_volume(from_node, tmp_path / "out.nii.gz"))
    np.testing.assert_array_equal(back.array, original.array)
    np.testing.assert_allclose(back.ijk_to_ras, original.ijk_to_ras, atol=1e-4)


def test_hand_computed_voxel_position_through_a_node(scene):
    array = np.zeros((2, 3, 4), np.float32)
    array[1, 2, 3] = 99.0
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "by hand")  # built with Slicer's own API
    node.SetOrigin(10.0, 20.0, 30.0)
    node.SetSpacing(2.0, 3.0, 5.0)
    node.SetIJKToRASDirections(-1, 0, 0, 0, 1, 0, 0, 0, 1)
    image = vtk.vtkImageData()
    image.SetDimensions(4, 3, 2)
    image.AllocateScalars(vtk.VTK_FLOAT, 1)
    image.GetPointData().GetScalars().Fill(0.0)
    image.SetScalarComponentFromFloat(3, 2, 1, 0, 99.0)  # (i, j, k)
    node.SetAndObserveImageData(image)
    volume = mrml.volume_from_node(node)
    np.testing.assert_array_equal(volume.array, array)
    assert volume.kji_to_ras([1, 2, 3]) == pytest.approx([4.0, 26.0, 35.0])  # 10 - 2*3, 20 + 3*2, 30 + 5*1
    assert tuple(np.rint(volume.ras_to_kji([4.0, 26.0, 35.0])).astype(int)) == (1, 2, 3)
    itk_image = mrml.sitk_image_from_node(node)
    index = itk_image.TransformPhysicalPointToIndex(tuple(ras_to_lps([4.0, 26.0, 35.0])))
    assert index == (3, 2, 1) and itk_image.GetPixel(index) == 99.0


def test_image_data_whose_extent_does_not_start_at_zero(scene):
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "cropped")
    matrix = vtk.vtkMatrix4x4()
    matrix.DeepCopy(compose_ijk_to_ras(SPACING_KJI, ORIGIN_RAS, OBLIQUE).ravel())
    node.SetIJKToRASMatrix(matrix)
    image = vtk.vtkImageData()
    image.SetExtent(2, 5, 1, 3, 0, 1)  # I from 2, J from 1, K from 0
    image.AllocateScalars(vtk.VTK_SHORT, 1)
    image.GetPointData().GetScalars().Fill(0)
    image.SetScalarComponentFromDouble(2, 1, 0, 0, 17)
    node.SetAndObserveImageData(image)
    volume = mrml.volume_from_node(node)
    assert volume.shape == (2, 3, 4) and volume.array[0, 0, 0] == 17
    expected = compose_ijk_to_ras(SPACING_KJI, ORIGIN_RAS, OBLIQUE) @ [2, 1, 0, 1]
    np.testing.assert_allclose(volume.kji_to_ras([0, 0, 0]), expected[:3], atol=1e-9)


def test_label_vector_and_2d_nodes(scene):
    labels = Volume(np.random.default_rng(0).integers(0, 5, size=SHAPE).astype(np.int16), oblique_volume().ijk_to_ras)
    label_node = mrml.new_volume_node(labels, scene, "labels", node_class="label")
    assert label_node.GetClassName() == "vtkMRMLLabelMapVolumeNode"
    assert label_node.GetDisplayNode().GetClassName() == "vtkMRMLLabelMapVolumeDisplayNode"
    np.testing.assert_array_equal(mrml.volume_from_node(label_node).array, labels.array)

    rgb = Volume.from_image2d(np.random.default_rng(1).integers(0, 256, size=(5, 6, 3), dtype=np.uint8), (0.3, 0.2))
    rgb_node = mrml.new_volume_node(rgb, scene, "slide")
    assert rgb_node.GetClassName() == "vtkMRMLVectorVolumeNode"
    assert rgb_node.GetImageData().GetDimensions() == (6, 5, 1)
    assert rgb_node.GetImageData().GetNumberOfScalarComponents() == 3
    back = mrml.volume_from_node(rgb_node)
    assert back.is_2d and back.num_channels == 3
    np.testing.assert_array_equal(back.image2d, rgb.image2d)
    assert back.spacing == pytest.approx((1.0, 0.3, 0.2))

    image = sitk.GetImageFromArray(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    image.SetSpacing((0.5, 1.0, 2.0))
    sitk_node = mrml.new_volume_node(image, scene, "from sitk")
    assert sitk_node.GetSpacing() == pytest.approx((0.5, 1.0, 2.0))
    back_image = mrml.sitk_image_from_node(sitk_node)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back_image), sitk.GetArrayFromImage(image))
    assert back_image.GetOrigin() == image.GetOrigin() and back_image.GetDirection() == image.GetDirection()


def test_bare_array_takes_the_reference_grid_transform_and_hierarchy(scene):
    reference = mrml.new_volume_node(oblique_volume(), scene, "CT")
    transform = mrml.new_linear_transform_node(np.eye(4), scene)
    reference.SetAndObserveTransformNodeID(transform.GetID())
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    study = hierarchy.CreateStudyItem(hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "patient"), "study")
    hierarchy.CreateItem(study, reference)
    probabilities = np.random.default_rng(2).random(SHAPE).astype(np.float32)
    node = mrml.new_volume_node(probabilities, name="probability", reference_node=reference)
    assert node.GetScene() is scene
    np.testing.assert_array_equal(mrml.volume_from_node(node).array, probabilities)
    np.testing.assert_allclose(mrml.volume_from_node(node).ijk_to_ras, oblique_volume().ijk_to_ras, atol=1e-9)
    assert node.GetTransformNodeID() == transform.GetID()
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == study
    with pytest.raises(ValueError, match="does not match the reference"):
        mrml.new_volume_node(probabilities[:-1], reference_node=reference)
    with pytest.raises(ValueError, match="no geometry"):
        mrml.new_volume_node(probabilities, scene)


def test_creators_never_overwrite_and_make_unique_names(scene):
    first = mrml.new_volume_node(oblique_volume(), scene, "Result")
    second = mrml.new_volume_node(oblique_volume().with_array(np.zeros(SHAPE, np.int16)), scene, "Result")
    assert first.GetID() != second.GetID()
    assert (first.GetName(), second.GetName()) == ("Result", "Result_1")
    np.testing.assert_array_equal(mrml.volume_from_node(first).array, oblique_volume().array)
    assert first.GetDisplayNode() is not None and second.GetDisplayNode() is not first.GetDisplayNode()


def test_voxel_types_slicer_cannot_show_are_converted_or_refused(scene):
    node = mrml.new_volume_node(Volume(np.arange(8, dtype=np.int64).reshape(2, 2, 2)), scene)
    assert mrml.volume_from_node(node).array.dtype == np.int32
    node = mrml.new_volume_node(Volume(np.ones((2, 2, 2), bool)), scene)
    assert mrml.volume_from_node(node).array.dtype == np.uint8
    count = scene.GetNumberOfNodes()
    with pytest.raises(ValueError, match="outside the int32 range"):
        mrml.new_volume_node(Volume(np.full((2, 2, 2), 2**40, np.int64)), scene)
    with pytest.raises(ValueError, match="integer voxels"):
        mrml.new_volume_node(Volume(np.zeros((2, 2, 2), np.float32)), scene, node_class="label")
    with pytest.raises(ValueError, match="needs a vtkMRMLVectorVolumeNode"):
        mrml.new_volume_node(Volume(np.zeros((2, 2, 2, 3), np.uint8)), scene, node_class="scalar")
    with pytest.raises(ValueError, match="node_class must be one of"):
        mrml.new_volume_node(Volume(np.zeros((2, 2, 2))), scene, node_class="vtkMRMLModelNode")
    assert scene.GetNumberOfNodes() == count


def test_a_failure_half_way_removes_what_was_created(scene, monkeypatch):
    reference = mrml.new_volume_node(oblique_volume(), scene, "CT")
    before = node_ids(scene)

    def broken(node, reference_node):
        raise RuntimeError("simulated failure after the node was added")

    monkeypatch.setattr(mrml, "_place_with_reference", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        mrml.new_volume_node(np.zeros(SHAPE, np.int16), reference_node=reference)
    with pytest.raises(RuntimeError, match="simulated"):
        mrml.new_segmentation_node(np.zeros(SHAPE, np.uint8), reference, [(1, "a", (1, 0, 0))])
    assert node_ids(scene) == before


def test_wrong_node_classes_are_refused(scene):
    table = mrml.new_table_node({"a": [1]}, scene)
    volume = mrml.new_volume_node(oblique_volume(), scene)
    with pytest.raises(TypeError, match="must be a vtkMRMLVolumeNode, got vtkMRMLTableNode"):
        mrml.volume_from_node(table)
    with pytest.raises(TypeError, match="vtkMRMLSegmentationNode"):
        mrml.labelmap_from_segmentation(volume, volume)
    with pytest.raises(TypeError, match="vtkMRMLMarkupsNode"):
        mrml.points_from_markups(volume)
    with pytest.raises(TypeError, match="vtkMRMLTransformNode"):
        mrml.matrix_from_transform_node(volume)
    with pytest.raises(TypeError, match="vtkMRMLTableNode"):
        mrml.table_to_rows(volume)
    with pytest.raises(TypeError, match="Volume or a vtkMRMLVolumeNode"):
        mrml.new_segmentation_node(np.zeros(SHAPE, np.uint8), table)
    with pytest.raises(TypeError, match="must be a vtkMRMLVolumeNode, got ndarray"):
        mrml.volume_from_node(np.zeros(SHAPE))
    with pytest.raises(ValueError, match="no image data"):
        mrml.volume_from_node(scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode"))
    with pytest.raises(ValueError, match="no MRML scene"):
        mrml.new_table_node({"a": [1]})
    with pytest.raises(TypeError, match="reference_volume_node must be a vtkMRMLVolumeNode"):
        mrml.labelmap_from_segmentation(scene.AddNewNodeByClass("vtkMRMLSegmentationNode"), table)


# ------------------------------------------------------------------------------------------------ segmentations
SEGMENTS = [(2, "liver", (0.8, 0.3, 0.2)), (5, "spleen", (0.2, 0.6, 0.9), "SCT^123^Spleen~SCT^456^Organ"),
            (9, "tumour", (1.0, 1.0, 0.0))]


def label_map() -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint8)
    labels[1:4, 2:6, 1:5] = 2
    labels[3:5, 0:3, 5:8] = 5
    return labels  # label 9 (tumour) is absent


def segment_summary(segmentation_node) -> list:
    segmentation = segmentation_node.GetSegmentation()
    return [(segmentation.GetNthSegment(i).GetLabelValue(), segmentation.GetNthSegment(i).GetName(),
             tuple(round(c, 6) for c in segmentation.GetNthSegment(i).GetColor()))
            for i in range(segmentation.GetNumberOfSegments())]


def test_segmentation_from_labels_and_back(scene):
    reference = mrml.new_volume_node(oblique_volume(), scene, "CT")
    labels = label_map()
    segmentation_node = mrml.new_segmentation_node(labels, reference, SEGMENTS, name="Organs")
    assert segment_summary(segmentation_node) == [(v, n, tuple(c)) for v, n, c, *_ in SEGMENTS]
    segmentation = segmentation_node.GetSegmentation()
    spleen = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("spleen"))
    terminology = vtk.reference("")
    assert spleen.GetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), terminology)
    assert str(terminology) == SEGMENTS[1][3]
    assert segmentation_node.GetNodeReferenceID(
        slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()) == reference.GetID()
    assert segmentation_node.GetDisplayNode() is not None

    before = node_ids(scene)
    exported, mapping = mrml.labelmap_from_segmentation(segmentation_node, reference)
    assert node_ids(scene) == before  # temporary label map, colour table and display nodes removed
    assert exported.shape == SHAPE
    for label, segment_id in mapping.items():
        value = {n: v for v, n, *_ in SEGMENTS}[segmentation.GetSegment(segment_id).GetName()]
        np.testing.assert_array_equal(exported == label, labels == value)
    assert not np.any(exported == [k for k, s in mapping.items()
                                   if segmentation.GetSegment(s).GetName() == "tumour"][0])  # the empty segment
    ids = [segmentation.GetSegmentIdBySegmentName(name) for name in ("spleen", "liver")]
    subset, subset_mapping = mrml.labelmap_from_segmentation(segmentation_node, reference, ids)
    assert subset_mapping == {1: ids[0], 2: ids[1]}
    np.testing.assert_array_equal(subset, np.select([labels == 5, labels == 2], [1, 2], 0))


def test_segmentation_on_a_volume_reference_and_default_segments(scene):
    volume = oblique_volume()
    labels = label_map()
    segmentation_node = mrml.new_segmentation_node(labels, volume, scene=scene)
    assert [(value, name) for value, name, _ in segment_summary(segmentation_node)] == [(2, "Label 2"),
                                                                                          (5, "Label 5")]
    colors = [color for *_, color in segment_summary(segmentation_node)]
    assert len(set(colors)) == 2 and all(0 <= c <= 1 for color in colors for c in color)
    geometry = segmentation_node.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    reference = mrml.new_volume_node(volume, scene, "same grid")
    expected_image = slicer.vtkOrientedImageData()
    expected_image.SetDimensions(SHAPE[2], SHAPE[1], SHAPE[0])
    matrix = vtk.vtkMatrix4x4()
    reference.GetIJKToRASMatrix(matrix)
    expected_image.SetImageToWorldMatrix(matrix)
    assert geometry == slicer.vtkSegmentationConverter.SerializeImageGeometry(expected_image)
    exported, mapping = mrml.labelmap_from_segmentation(segmentation_node, reference)
    assert mapping == {1: segmentation_node.GetSegmentation().GetNthSegmentID(0),
                       2: segmentation_node.GetSegmentation().GetNthSegmentID(1)}
    np.testing.assert_array_equal(exported, np.select([labels == 2, labels == 5], [1, 2], 0))


def test_segmentation_input_errors(scene):
    reference = mrml.new_volume_node(oblique_volume(), scene, "CT")
    count = scene.GetNumberOfNodes()
    with pytest.raises(ValueError, match=r"label values \[5\] are in the label map but not in `segments`"):
        mrml.new_segmentation_node(label_map(), reference, SEGMENTS[:1])
    with pytest.raises(ValueError, match="integer voxels"):
        mrml.new_segmentation_node(label_map().astype(np.float32), reference)
    with pytest.raises(ValueError, match="does not match the reference grid"):
        mrml.new_segmentation_node(label_map()[:-1], reference)
    with pytest.raises(ValueError, match="unique"):
        mrml.new_segmentation_node(label_map(), reference, [(2, "a", (1, 0, 0)), (2, "b", (0, 1, 0))])
    with pytest.raises(ValueError, match="colours"):
        mrml.new_segmentation_node(label_map(), reference, [(2, "a", (255, 0, 0)), (5, "b", (0, 1, 0))])
    with pytest.raises(ValueError, match="non-negative"):
        mrml.new_segmentation_node(-label_map().astype(np.int16), reference)
    assert scene.GetNumberOfNodes() == count
    segmentation_node = mrml.new_segmentation_node(label_map(), reference, SEGMENTS)
    with pytest.raises(ValueError, match=r"segment IDs \['nope'\] are not in segmentation"):
        mrml.labelmap_from_segmentation(segmentation_node, reference, ["nope"])
    with pytest.raises(TypeError, match="not a single string"):
        mrml.labelmap_from_segmentation(segmentation_node, reference, "liver")
    empty, mapping = mrml.labelmap_from_segmentation(segmentation_node, reference, [])
    assert mapping == {} and empty.shape == SHAPE and not empty.any()


def test_segmentation_round_trip_through_seg_nrrd(scene, tmp_path):
    reference = mrml.new_volume_node(oblique_volume(), scene, "CT")
    labels = label_map()
    original = mrml.new_segmentation_node(labels, reference, SEGMENTS)
    path = str(tmp_path / "organs.seg.nrrd")
    writer = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(writer)
    writer.SetFileName(path)
    assert writer.WriteData(original) == 1
    loaded = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "loaded")
    reader = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(reader)
    reader.SetFileName(path)
    assert reader.ReadData(loaded) == 1
    assert segment_summary(loaded) == segment_summary(original)
    exported, mapping = mrml.labelmap_from_segmentation(loaded, reference)
    by_name = {loaded.GetSegmentation().GetSegment(s).GetName(): label for label, s in mapping.items()}
    np.testing.assert_array_equal(exported == by_name["liver"], labels == 2)
    np.testing.assert_array_equal(exported == by_name["spleen"], labels == 5)
    # the file itself is a NRRD on the reference grid: mednets.io reads it (labels are the segments' label values)
    on_disk = io.read_volume(path)
    np.testing.assert_array_equal(np.squeeze(on_disk.array), labels)
    np.testing.assert_allclose(on_disk.ijk_to_ras, oblique_volume().ijk_to_ras, atol=1e-6)


def test_closed_surface_segmentation_is_exported_without_modifying_it(scene):
    grid = Volume(np.zeros((20, 20, 20), np.int16), spacing=(1.0, 1.0, 1.0), origin_ras=(-9.5, -9.5, -9.5))
    reference = mrml.new_volume_node(grid, scene, "grid")
    sphere = vtk.vtkSphereSource()
    sphere.SetRadius(6.0)
    sphere.SetThetaResolution(64)
    sphere.SetPhiResolution(64)
    sphere.Update()
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "surface")
    segmentation = segmentation_node.GetSegmentation()
    surface_name = slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName()
    segmentation.SetSourceRepresentationName(surface_name)
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference)
    segment = slicer.vtkSegment()
    segment.SetName("ball")
    segment.AddRepresentation(surface_name, sphere.GetOutput())
    segmentation.AddSegment(segment, "ball")
    before = node_ids(scene)
    labels, mapping = mrml.labelmap_from_segmentation(segmentation_node, reference)
    assert mapping == {1: "ball"}
    assert node_ids(scene) == before
    assert not segmentation.ContainsRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    radius = np.linalg.norm(grid.kji_to_ras(np.argwhere(np.ones(grid.shape))), axis=1).reshape(grid.shape)
    assert np.all(labels[radius < 5.0] == 1) and np.all(labels[radius > 7.0] == 0)


# ------------------------------------------------------------------------------------------------ markups
def test_point_list_round_trip_and_kji_indices(scene):
    volume = oblique_volume()
    indices = np.array([[0, 0, 0], [5, 6, 7], [2, 3, 4]])
    points = volume.kji_to_ras(indices)
    node = mrml.new_point_list_node(points, ["a", "b", "c"], ["0.9", "0.5", "0.7"], scene, "Nodes")
    assert node.GetClassName() == "vtkMRMLMarkupsFiducialNode" and node.GetDisplayNode() is not None
    back, labels, descriptions = mrml.points_from_markups(node)
    np.testing.assert_allclose(back, points, atol=1e-12)
    assert labels == ["a", "b", "c"] and descriptions == ["0.9", "0.5", "0.7"]
    np.testing.assert_array_equal(np.rint(volume.ras_to_kji(back)).astype(int), indices)
    default = mrml.new_point_list_node(points[:2], scene=scene, name="P")
    assert mrml.points_from_markups(default)[1] == ["P-1", "P-2"]
    empty = mrml.new_point_list_node(np.zeros((0, 3)), scene=scene)
    assert mrml.points_from_markups(empty)[0].shape == (0, 3)


def test_points_in_world_coordinates_follow_the_parent_transform(scene):
    node = mrml.new_point_list_node([[1.0, 2.0, 3.0]], scene=scene)
    matrix = np.array([[0.0, -1.0, 0.0, 10.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, -5.0], [0, 0, 0, 1]])
    node.SetAndObserveTransformNodeID(mrml.new_linear_transform_node(matrix, scene).GetID())
    np.testing.assert_allclose(mrml.points_from_markups(node)[0], [[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(mrml.points_from_markups(node, world=True)[0], [[8.0, 1.0, -2.0]])


def test_point_list_round_trip_through_mrk_json(scene, tmp_path):
    points = np.array([[1.5, -2.0, 3.25], [-4.0, 5.5, -6.0]])
    node = mrml.new_point_list_node(points, ["n1", "n2"], ["first", "second"], scene)
    path = str(tmp_path / "points.mrk.json")
    writer = slicer.vtkMRMLMarkupsJsonStorageNode()
    scene.AddNode(writer)
    writer.SetFileName(path)
    assert writer.WriteData(node) == 1
    content = json.loads(open(path).read())["markups"][0]
    assert content["coordinateSystem"] == "LPS"
    np.testing.assert_allclose([p["position"] for p in content["controlPoints"]], ras_to_lps(points))
    loaded = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "loaded")
    reader = slicer.vtkMRMLMarkupsJsonStorageNode()
    scene.AddNode(reader)
    reader.SetFileName(path)
    assert reader.ReadData(loaded) == 1
    back, labels, descriptions = mrml.points_from_markups(loaded)
    np.testing.assert_allclose(back, points, atol=1e-9)
    assert labels == ["n1", "n2"] and descriptions == ["first", "second"]


def test_point_list_errors(scene):
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        mrml.new_point_list_node(np.zeros((2, 2)), scene=scene)
    with pytest.raises(ValueError, match="labels has 1 entries for 2 points"):
        mrml.new_point_list_node(np.zeros((2, 3)), ["x"], scene=scene)
    with pytest.raises(ValueError, match="NaN"):
        mrml.new_point_list_node([[np.nan, 0, 0]], scene=scene)
    assert scene.GetNumberOfNodes() == 0


# ------------------------------------------------------------------------------------------------ transforms
def test_linear_transform_node_round_trip(scene):
    matrix = np.eye(4)
    matrix[:3, :3] = rotation([1, 1, 0], 0.3) * 1.1
    matrix[:3, 3] = (4.0, -2.0, 7.5)
    node = mrml.new_linear_transform_node(matrix, scene, "Registration")
    np.testing.assert_allclose(mrml.matrix_from_transform_node(node), matrix, atol=1e-12)
    point = np.array([3.0, -1.0, 2.0])
    np.testing.assert_allclose(node.GetTransformToParent().TransformPoint(point), matrix[:3, :3] @ point + matrix[:3, 3])
    with pytest.raises(ValueError, match="last row"):
        mrml.new_linear_transform_node(np.ones((4, 4)), scene)
    with pytest.raises(ValueError, match="singular"):
        mrml.new_linear_transform_node(np.diag([1.0, 0.0, 1.0, 1.0]), scene)


def field_reference() -> Volume:
    return Volume(np.zeros((5, 6, 7), np.float32), compose_ijk_to_ras((2.0, 1.5, 1.0), ORIGIN_RAS, OBLIQUE))


def test_displacement_field_node_moves_points_like_the_field_and_like_itk(scene):
    reference = field_reference()
    field = np.random.default_rng(5).normal(scale=2.0, size=reference.shape + (3,))
    node = mrml.new_displacement_field_transform_node(field, reference, scene, "DVF")
    assert node.GetClassName() == "vtkMRMLGridTransformNode"
    from_parent = node.GetTransformFromParent()
    for index in [(0, 0, 0), (4, 5, 6), (2, 1, 3)]:
        centre = reference.kji_to_ras(index)
        np.testing.assert_allclose(from_parent.TransformPoint(centre), centre + field[index], atol=1e-9)
    itk_transform = displacement_field_to_sitk(field, reference)
    for fractional in ([0.5, 2.25, 3.75], [3.2, 4.9, 1.1], [1.0, 0.4, 5.5]):
        point = reference.kji_to_ras(fractional)  # between voxel centres: both interpolate linearly
        itk_moved = lps_to_ras(itk_transform.TransformPoint(tuple(ras_to_lps(point))))
        # VTK's grid transform locates points in single precision: agreement to 1e-4 mm (the field is ~2 mm)
        np.testing.assert_allclose(from_parent.TransformPoint(point), itk_moved, atol=1e-4)
    np.testing.assert_allclose(mrml.displacement_field_from_node(node, reference), field, atol=1e-9)
    np.testing.assert_allclose(mrml.displacement_field_from_node(node, reference, coordinates="LPS"),
                               ras_to_lps(field), atol=1e-9)
    lps_node = mrml.new_displacement_field_transform_node(ras_to_lps(field), reference, scene, coordinates="LPS")
    np.testing.assert_allclose(mrml.displacement_field_from_node(lps_node, reference), field, atol=1e-9)


def test_displacement_field_of_any_transform_node_on_a_volume_node_grid(scene):
    reference_node = mrml.new_volume_node(field_reference(), scene, "grid")
    matrix = np.eye(4)
    matrix[:3, :3] = rotation([0, 0, 1], 0.2)
    matrix[:3, 3] = (1.0, -3.0, 2.0)
    linear = mrml.new_linear_transform_node(matrix, scene)
    field = mrml.displacement_field_from_node(linear, reference_node)
    centres = field_reference().kji_to_ras(np.argwhere(np.ones(field_reference().shape)))
    inverse = np.linalg.inv(matrix)  # "from parent" of a to-parent matrix
    expected = centres @ inverse[:3, :3].T + inverse[:3, 3] - centres
    np.testing.assert_allclose(field.reshape(-1, 3), expected, atol=1e-9)
    with pytest.raises(ValueError, match="not linear"):
        mrml.matrix_from_transform_node(mrml.new_displacement_field_transform_node(field, reference_node))
    with pytest.raises(ValueError, match="shape"):
        mrml.new_displacement_field_transform_node(field[:-1], reference_node)


# ------------------------------------------------------------------------------------------------ tables
def test_table_round_trip_from_rows_and_columns(scene, tmp_path):
    rows = [{"id": 1, "name": "node A", "volume_mm3": 12.5, "malignant": True},
            {"id": 2, "name": "node B", "volume_mm3": None, "malignant": False, "note": "small"}]
    node = mrml.new_table_node(rows, scene, "Findings")
    table = node.GetTable()
    assert [table.GetColumn(i).GetClassName() for i in range(table.GetNumberOfColumns())] == [
        "vtkIntArray", "vtkStringArray", "vtkDoubleArray", "vtkBitArray", "vtkStringArray"]
    back = mrml.table_to_rows(node)
    assert back[0] == {"id": 1, "name": "node A", "volume_mm3": 12.5, "malignant": True, "note": ""}
    assert back[1]["volume_mm3"] != back[1]["volume_mm3"]  # NaN for the missing number
    assert {k: v for k, v in back[1].items() if k != "volume_mm3"} == {"id": 2, "name": "node B", "malignant": False,
                                                                      "note": "small"}
    columns = {"case": ["a", "b", "c"], "dice": [0.9, 0.85, 1.0], "count": [3, 0, 2**40]}
    column_node = mrml.new_table_node(columns, scene)
    assert mrml.table_to_columns(column_node) == {"case": ["a", "b", "c"], "dice": [0.9, 0.85, 1.0],
                                                  "count": [3.0, 0.0, float(2**40)]}  # beyond int32: double
    with pytest.raises(ValueError, match="same length"):
        mrml.new_table_node({"a": [1, 2], "b": [1]}, scene)
    with pytest.raises(TypeError, match="dict of columns or a list of dict rows"):
        mrml.new_table_node([[1, 2]], scene)
    writer = slicer.vtkMRMLTableStorageNode()
    scene.AddNode(writer)
    writer.SetFileName(os.path.join(str(tmp_path), "findings.tsv"))
    assert writer.WriteData(node) == 1
    loaded = scene.AddNewNodeByClass("vtkMRMLTableNode", "loaded")
    reader = slicer.vtkMRMLTableStorageNode()
    scene.AddNode(reader)
    reader.SetFileName(os.path.join(str(tmp_path), "findings.tsv"))
    assert reader.ReadData(loaded) == 1
    assert mrml.table_to_rows(loaded)[0] == back[0]


def test_case_from_nodes_maps_segments_by_name(scene):
    reference = mrml.new_volume_node(oblique_volume(), scene, "CT")
    labels = label_map()
    segmentation_node = mrml.new_segmentation_node(labels, reference, SEGMENTS, name="Organs")
    values = {name: value for value, name, *_ in SEGMENTS}
    before = node_ids(scene)
    case = mrml.case_from_nodes(reference, segmentation_node, ["Liver", " spleen "])
    assert node_ids(scene) == before
    assert case.name == "CT" and case.image.shape == (1,) + SHAPE and case.label.shape == SHAPE
    np.testing.assert_allclose(case.spacing, mrml.volume_from_node(reference).spacing)
    np.testing.assert_array_equal(case.label == 1, labels == values["liver"])
    np.testing.assert_array_equal(case.label == 2, labels == values["spleen"])
    assert set(np.unique(case.label)) <= {0, 1, 2}
    assert case.extra["volume_node_id"] == reference.GetID()

    with pytest.raises(ValueError, match="no segment named 'kidney'"):
        mrml.case_from_nodes(reference, segmentation_node, ["liver", "kidney"])
    partial = mrml.case_from_nodes(reference, segmentation_node, ["kidney", "liver"], allow_missing=True)
    assert not np.any(partial.label == 1)
    np.testing.assert_array_equal(partial.label == 2, labels == values["liver"])
    unlabelled = mrml.case_from_nodes(reference, None, ["liver"], name="new case")
    assert unlabelled.label is None and unlabelled.name == "new case"
    with pytest.raises(TypeError):
        mrml.case_from_nodes(segmentation_node, None, ["liver"])


def test_save_node_writes_atomically_and_leaves_scene_unchanged(scene, tmp_path):
    reference = mrml.new_volume_node(oblique_volume(), scene, "CT")
    segmentation_node = mrml.new_segmentation_node(label_map(), reference, SEGMENTS, name="Organs")
    table = mrml.new_table_node({"organ": ["liver"], "dice": [0.9]}, scene=scene)
    before = node_ids(scene)
    seg_path = mrml.save_node(segmentation_node, tmp_path / "out" / "organs.seg.nrrd")
    vol_path = mrml.save_node(reference, tmp_path / "out" / "ct.nrrd")
    table_path = mrml.save_node(table, tmp_path / "out" / "metrics.csv")
    assert node_ids(scene) == before
    assert segmentation_node.GetStorageNode() is None
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ct.nrrd", "metrics.csv", "metrics.schema.csv", "organs.seg.nrrd"]
    assert "liver" in table_path.read_text()
    loaded = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "loaded")
    reader = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(reader)
    reader.SetFileName(str(seg_path))
    assert reader.ReadData(loaded) == 1
    assert segment_summary(loaded) == segment_summary(segmentation_node)
    np.testing.assert_array_equal(mrml.volume_from_node(reference).array, io.read_volume(vol_path).array)


def test_segmentation_file_round_trip_keeps_labels_names_and_geometry(tmp_path):
    rng = np.random.default_rng(3)
    labels = np.zeros((6, 7, 8), dtype=np.uint8)
    labels[1:4, 2:5, 1:6] = 1
    labels[4:6, 0:3, 5:8] = 2
    labels[0, 6, 0] = 3  # a single voxel in a corner survives too
    angles = rng.normal(size=3) * 0.3
    from scipy.spatial.transform import Rotation

    directions = Rotation.from_euler("xyz", angles).as_matrix()
    grid = Volume(np.zeros(labels.shape), spacing=(2.5, 1.0, 0.75), origin_ras=(10.0, -4.0, 3.0),
                  directions_ras=directions)
    path = mrml.write_segmentation_file(labels, grid, tmp_path / "out.seg.nrrd",
                                        [(1, "liver", (1, 0, 0)), (2, "spleen", (0, 1, 0)), (3, "tiny", (0, 0, 1))])
    assert path.is_file() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    # Classes are matched by name: a different order renumbers them.
    read, read_grid = mrml.read_segmentation_file(path, ["spleen", "liver", "tiny", "absent"])
    expected = np.select([labels == 2, labels == 1, labels == 3], [1, 2, 3], 0)
    # The stored labelmap may be cropped to the segments' extent: compare on the reference grid of the file.
    assert read.shape == labels.shape
    np.testing.assert_array_equal(read, expected)
    np.testing.assert_allclose(read_grid.ijk_to_ras, grid.ijk_to_ras, atol=1e-6)
    with pytest.raises(ValueError, match="absent"):
        mrml.read_segmentation_file(path, ["liver", "absent"], allow_missing=False)


def test_read_segmentation_file_names_an_unreadable_file(tmp_path):
    broken = tmp_path / "broken.seg.nrrd"
    broken.write_bytes(b"NRRD0004\nnot really\n")
    whole = mrml.write_segmentation_file(np.ones((4, 5, 6), np.uint8), np.eye(4), tmp_path / "whole.seg.nrrd",
                                         [(1, "liver", (1, 0, 0))])
    truncated = tmp_path / "truncated.seg.nrrd"
    truncated.write_bytes(whole.read_bytes()[:-20])
    assert mrml.read_segmentation_file(whole, ["liver"])[0].sum() == 4 * 5 * 6
    for path in (broken, truncated, tmp_path / "missing.seg.nrrd"):
        with pytest.raises(ValueError, match="could not read the segmentation file"):
            mrml.read_segmentation_file(path, ["liver"])
