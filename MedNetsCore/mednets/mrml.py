"""The bridge between MRML nodes (3D Slicer's scene) and mednets data: volumes, segmentations, points, transforms, tables.

This is the only mednets module that imports ``slicer`` and ``vtk``. It runs inside 3D Slicer and with the PyPI
``slicer-core`` package (a bare ``slicer.vtkMRMLScene()``): it never uses ``slicer.app``, ``slicer.mrmlScene`` or
``slicer.modules``. The scene is always taken from a node (``node.GetScene()``) or from an explicit ``scene=`` argument.

Rules every function here follows:

* Creators (``new_*``) always add NEW nodes, named ``scene.GenerateUniqueName(name)``; they never modify an existing
  node. If anything fails half-way, every node they added is removed again and the exception propagates.
* Readers (``*_from_node``, ``*_from_segmentation``, ``table_to_*``) copy data out of a node and leave the scene as it
  was (temporary nodes they need are removed before returning).
* Geometry follows :mod:`mednets.image`: RAS millimetres, arrays in (K, J, I) order, ``ijk_to_ras`` = Slicer's
  ``IJKToRAS``. Volume and point geometry is the node's own (local) coordinate system: a parent transform of the node is
  NOT applied (:func:`points_from_markups` can apply it with ``world=True``). Creators given a reference node put the
  new node under the reference's parent transform and next to it in the subject hierarchy, so it lines up with it.
* A wrong node class raises ``TypeError``; bad arrays or parameters raise ``ValueError``.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple, Union

import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from vtk.util import numpy_support

from mednets.image import Volume, convert_coordinates, coordinate_frame, kji_to_ras

__all__ = [
    "volume_from_node",
    "sitk_image_from_node",
    "new_volume_node",
    "new_segmentation_node",
    "oriented_image",
    "labelmap_from_segmentation",
    "case_from_nodes",
    "new_point_list_node",
    "points_from_markups",
    "new_linear_transform_node",
    "matrix_from_transform_node",
    "new_displacement_field_transform_node",
    "displacement_field_from_node",
    "new_table_node",
    "table_to_columns",
    "table_to_rows",
    "save_node",
    "write_segmentation_file",
    "read_segmentation_file",
]

#: ``node_class`` shorthands of :func:`new_volume_node`.
VOLUME_NODE_CLASSES = {
    "scalar": "vtkMRMLScalarVolumeNode",
    "label": "vtkMRMLLabelMapVolumeNode",
    "labelmap": "vtkMRMLLabelMapVolumeNode",
    "vector": "vtkMRMLVectorVolumeNode",
}

#: A segment description: (label value, name, RGB colour in [0, 1]) or (label value, name, colour, terminology string).
SegmentSpec = Union[Tuple[int, str, Sequence[float]], Tuple[int, str, Sequence[float], str]]

#: Colours given to segments created without one (the first entries of Slicer's generic anatomy colour table).
_DEFAULT_SEGMENT_COLORS = [
    (128, 174, 128), (241, 214, 145), (177, 122, 101), (111, 184, 210), (216, 101, 79),
    (221, 130, 101), (144, 238, 144), (192, 104, 88), (220, 245, 20), (78, 63, 0),
]

#: Points are pushed through VTK transforms in chunks of this many (bounds the temporary memory).
_POINT_CHUNK = 1 << 20


# ------------------------------------------------------------------------------------------------------- helpers
def _require(node: Any, class_name: str, argument: str) -> None:
    if node is None or not hasattr(node, "IsA") or not node.IsA(class_name):
        given = node.GetClassName() if hasattr(node, "GetClassName") else type(node).__name__
        raise TypeError(f"{argument} must be a {class_name}, got {given}")


def _scene_for(scene: Optional[Any], *nodes: Any) -> Any:
    if scene is not None:
        if not isinstance(scene, slicer.vtkMRMLScene):
            raise TypeError(f"scene must be a vtkMRMLScene, got {type(scene).__name__}")
        return scene
    for node in nodes:
        if node is not None and hasattr(node, "GetScene") and node.GetScene() is not None:
            return node.GetScene()
    raise ValueError("no MRML scene: pass scene=... (e.g. slicer.mrmlScene) or a reference node that is in a scene")


def _node_ids(scene: Any) -> Set[str]:
    return {scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())}


def _remove_nodes_not_in(scene: Any, keep: Set[str]) -> None:
    for node_id in sorted(_node_ids(scene) - keep, reverse=True):
        node = scene.GetNodeByID(node_id)
        if node is not None:
            scene.RemoveNode(node)


@contextlib.contextmanager
def _scene_transaction(scene: Any, keep_new_nodes: bool) -> Iterator[None]:
    """Remove the nodes added to ``scene`` inside the block: on error always, on success unless ``keep_new_nodes``."""
    before = _node_ids(scene)
    try:
        yield
    except BaseException:
        _remove_nodes_not_in(scene, before)
        raise
    if not keep_new_nodes:
        _remove_nodes_not_in(scene, before)


def _add_node(scene: Any, class_name: str, name: str) -> Any:
    node = scene.AddNewNodeByClass(class_name, scene.GenerateUniqueName(name))
    if node is None:
        raise ValueError(f"the scene cannot create a node of class {class_name!r}")
    return node


def _vtk_matrix(matrix: np.ndarray) -> vtk.vtkMatrix4x4:
    result = vtk.vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            result.SetElement(row, column, float(matrix[row, column]))
    return result


def _numpy_matrix(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(row, column) for column in range(4)] for row in range(4)])


def _place_with_reference(node: Any, reference_node: Optional[Any]) -> None:
    """Put ``node`` under the reference's parent transform and subject-hierarchy parent (when it has one)."""
    if reference_node is None or not hasattr(reference_node, "GetTransformNodeID"):
        return
    node.SetAndObserveTransformNodeID(reference_node.GetTransformNodeID())
    scene = node.GetScene()
    hierarchy = scene.GetFirstNodeByClass("vtkMRMLSubjectHierarchyNode") if scene is not None else None
    if hierarchy is None:
        return
    reference_item = hierarchy.GetItemByDataNode(reference_node)
    if not reference_item:
        return
    parent = hierarchy.GetItemParent(reference_item)
    item = hierarchy.GetItemByDataNode(node) or hierarchy.CreateItem(parent, node)
    hierarchy.SetItemParent(item, parent)


# ------------------------------------------------------------------------------------------------------- volumes
def _mrml_compatible(array: np.ndarray) -> np.ndarray:
    """Cast arrays to types Slicer displays: bool -> uint8, float16 -> float32, 64-bit integers -> 32-bit when exact."""
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if array.dtype == np.float16:
        return array.astype(np.float32)
    if array.dtype in (np.int64, np.uint64):
        target = np.int32 if array.dtype == np.int64 else np.uint32
        info = np.iinfo(target)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise ValueError(f"{array.dtype} values outside the {np.dtype(target).name} range cannot be shown in "
                             "Slicer; cast the array to float64 first")
        return array.astype(target)
    return array


def _image_data_from_array(array: np.ndarray) -> vtk.vtkImageData:
    """A vtkImageData holding a copy of a (K, J, I) or (K, J, I, C) array (origin 0, spacing 1, as MRML expects)."""
    data = np.ascontiguousarray(_mrml_compatible(array))
    components = data.shape[3] if data.ndim == 4 else 1
    image = vtk.vtkImageData()
    image.SetDimensions(data.shape[2], data.shape[1], data.shape[0])
    image.AllocateScalars(numpy_support.get_vtk_array_type(data.dtype), components)
    target = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    target[:] = data.reshape(target.shape)
    return image


def _grid_of_node(node: Any, argument: str = "node") -> Tuple[np.ndarray, Tuple[int, int, int], Any]:
    """(ijk_to_ras of array index 0, spatial shape (K, J, I), vtkImageData) of a volume node."""
    _require(node, "vtkMRMLVolumeNode", argument)
    image = node.GetImageData()
    if image is None:
        raise ValueError(f"volume node '{node.GetName()}' has no image data")
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    ijk_to_ras = _numpy_matrix(matrix)
    extent = image.GetExtent()
    start = np.array([extent[0], extent[2], extent[4]], dtype=float)
    if np.any(start != 0):  # the array's first voxel is IJK = extent start
        ijk_to_ras[:3, 3] += ijk_to_ras[:3, :3] @ start
    dimensions = image.GetDimensions()
    return ijk_to_ras, (dimensions[2], dimensions[1], dimensions[0]), image


def volume_from_node(node: Any) -> Volume:
    """Copy a volume node (scalar, label map, vector/RGB; 2D = single slice) into a :class:`Volume`.

    The array is ``(K, J, I)`` or ``(K, J, I, C)`` for multi-component image data, in the node's voxel type; the
    geometry is the node's ``IJKToRAS`` (its parent transform is not applied).

    Raises:
        TypeError: ``node`` is not a vtkMRMLVolumeNode, or is a diffusion tensor volume.
        ValueError: the node has no image data.
    """
    _require(node, "vtkMRMLVolumeNode", "node")
    if node.IsA("vtkMRMLDiffusionTensorVolumeNode"):
        raise TypeError("diffusion tensor volumes are not supported (tensor pixels); give a scalar or vector volume")
    ijk_to_ras, shape, image = _grid_of_node(node)
    scalars = image.GetPointData().GetScalars()
    if scalars is None:
        raise ValueError(f"volume node '{node.GetName()}' has image data without voxel values")
    components = scalars.GetNumberOfComponents()
    array = numpy_support.vtk_to_numpy(scalars).reshape(shape + ((components,) if components > 1 else ())).copy()
    return Volume(array, ijk_to_ras)


def sitk_image_from_node(node: Any) -> sitk.Image:
    """A SimpleITK image (LPS geometry) copied from a volume node; see :func:`volume_from_node`."""
    return volume_from_node(node).to_sitk()


def _volume_class(node_class: Optional[str], volume: Volume) -> str:
    if node_class is None:
        return "vtkMRMLVectorVolumeNode" if volume.is_vector else "vtkMRMLScalarVolumeNode"
    class_name = VOLUME_NODE_CLASSES.get(node_class, node_class)
    if class_name not in VOLUME_NODE_CLASSES.values():
        raise ValueError(f"node_class must be one of {sorted(set(VOLUME_NODE_CLASSES.values()))} or "
                         f"{sorted(VOLUME_NODE_CLASSES)}, got {node_class!r}")
    if volume.is_vector and class_name != "vtkMRMLVectorVolumeNode":
        raise ValueError(f"a volume with {volume.num_channels} channels needs a vtkMRMLVectorVolumeNode, "
                         f"not a {class_name}")
    if class_name == "vtkMRMLLabelMapVolumeNode" and not (np.issubdtype(volume.array.dtype, np.integer)
                                                          or volume.array.dtype == np.bool_):
        raise ValueError(f"a label map needs integer voxels, got {volume.array.dtype}")
    return class_name


def new_volume_node(volume: Union[Volume, sitk.Image, np.ndarray], scene: Optional[Any] = None,
                    name: str = "Volume", node_class: Optional[str] = None,
                    reference_node: Optional[Any] = None) -> Any:
    """Add a NEW volume node holding a copy of ``volume``, with default display nodes.

    Args:
        volume: a :class:`Volume`, a SimpleITK image, or a bare ``(K, J, I[, C])`` numpy array on the grid of
            ``reference_node`` (a bare array has no geometry of its own).
        scene: the scene; defaults to ``reference_node``'s scene.
        name: base name (made unique in the scene).
        node_class: ``"vtkMRMLScalarVolumeNode"``, ``"vtkMRMLLabelMapVolumeNode"`` or ``"vtkMRMLVectorVolumeNode"``
            (or ``"scalar"``, ``"label"``, ``"vector"``); by default vector for channels-last arrays, else scalar.
            A label map needs integer voxels.
        reference_node: optional volume node whose grid a bare array uses; the new node also goes under its parent
            transform and next to it in the subject hierarchy.

    Voxel types Slicer cannot display are converted: bool -> uint8, float16 -> float32, int64/uint64 -> 32-bit
    (``ValueError`` if values do not fit). Display nodes are Slicer's defaults for the class (grey scale with automatic
    window/level, label colours, RGB); no storage node is added — Slicer adds its default one (compressed NRRD) on save.

    Returns:
        The new volume node.
    """
    if isinstance(volume, sitk.Image):
        volume = Volume.from_sitk(volume)
    elif isinstance(volume, np.ndarray):
        if reference_node is None:
            raise ValueError("a bare numpy array has no geometry: pass a Volume, a SimpleITK image or reference_node")
        ijk_to_ras, shape, _ = _grid_of_node(reference_node, "reference_node")
        volume = Volume(volume, ijk_to_ras)
        if volume.shape != shape:
            raise ValueError(f"array of spatial shape {volume.shape} does not match the reference volume "
                             f"'{reference_node.GetName()}' of shape {shape}")
    elif not isinstance(volume, Volume):
        raise TypeError(f"volume must be a Volume, a SimpleITK image or a numpy array, got {type(volume).__name__}")
    if reference_node is not None:
        _require(reference_node, "vtkMRMLVolumeNode", "reference_node")
    class_name = _volume_class(node_class, volume)
    target_scene = _scene_for(scene, reference_node)
    image = _image_data_from_array(volume.array)
    with _scene_transaction(target_scene, keep_new_nodes=True):
        node = _add_node(target_scene, class_name, name)
        node.SetIJKToRASMatrix(_vtk_matrix(volume.ijk_to_ras))
        node.SetAndObserveImageData(image)
        node.CreateDefaultDisplayNodes()
        _place_with_reference(node, reference_node)
    return node


# ------------------------------------------------------------------------------------------------------- segmentations
def _reference_grid(reference: Any) -> Tuple[np.ndarray, Tuple[int, int, int], Optional[Any]]:
    """(ijk_to_ras, shape, node or None) of a Volume or a volume node."""
    if isinstance(reference, Volume):
        return reference.ijk_to_ras, reference.shape, None
    if hasattr(reference, "IsA") and reference.IsA("vtkMRMLVolumeNode"):
        ijk_to_ras, shape, _ = _grid_of_node(reference)
        return ijk_to_ras, shape, reference
    raise TypeError(f"reference must be a Volume or a vtkMRMLVolumeNode, got "
                    f"{reference.GetClassName() if hasattr(reference, 'GetClassName') else type(reference).__name__}")


def _ensure_segmentation_converters(scene: Any) -> None:
    """Register the segmentation converter rules if nobody did (bare slicer-core; Slicer does it at start-up).

    Registering happens when a segmentations logic gets a scene; doing it only when missing avoids duplicated rules.
    """
    if not slicer.vtkSegmentationConverterFactory.GetInstance().GetConverterRules():
        logic = slicer.vtkSlicerSegmentationsModuleLogic()
        logic.SetMRMLScene(scene)


def _segment_specs(labels: np.ndarray, segments: Optional[Sequence[SegmentSpec]]
                   ) -> List[Tuple[int, str, Tuple[float, float, float], Optional[str]]]:
    present = [int(v) for v in np.unique(labels) if v != 0]
    if segments is None:
        return [(value, f"Label {value}", tuple(c / 255.0 for c in _DEFAULT_SEGMENT_COLORS[index % 10]), None)
                for index, value in enumerate(present)]  # type: ignore[misc]
    specs = []
    for spec in segments:
        if len(spec) not in (3, 4):
            raise ValueError(f"a segment is (label value, name, (r, g, b)[, terminology]), got {spec!r}")
        value, name, color = spec[0], spec[1], spec[2]
        terminology = spec[3] if len(spec) == 4 else None  # type: ignore[misc]
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
            raise ValueError(f"segment label values must be positive integers, got {value!r} for {name!r}")
        rgb = tuple(float(c) for c in color)
        if len(rgb) != 3 or any(not 0.0 <= c <= 1.0 for c in rgb):
            raise ValueError(f"segment colours are (r, g, b) in [0, 1], got {color!r} for {name!r}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"segment names must be non-empty strings, got {name!r}")
        specs.append((int(value), name, rgb, terminology))
    values = [spec[0] for spec in specs]
    if len(set(values)) != len(values):
        raise ValueError(f"segment label values must be unique, got {values}")
    missing = sorted(set(present) - set(values))
    if missing:
        raise ValueError(f"label values {missing} are in the label map but not in `segments`")
    return specs  # type: ignore[return-value]


def _label_image(labels: np.ndarray, ijk_to_ras: np.ndarray) -> Any:
    """A vtkOrientedImageData of the label map in the smallest unsigned type Slicer segmentations accept."""
    top = int(labels.max()) if labels.size else 0
    dtype = np.uint8 if top < 256 else np.uint16 if top < 65536 else np.int32
    data = np.ascontiguousarray(labels.astype(dtype))
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(data.shape[2], data.shape[1], data.shape[0])
    image.AllocateScalars(numpy_support.get_vtk_array_type(data.dtype), 1)
    numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = data.ravel()
    image.SetImageToWorldMatrix(_vtk_matrix(ijk_to_ras))
    return image


def oriented_image(labels: np.ndarray, ijk_to_ras: Any) -> Any:
    """A ``vtkOrientedImageData`` holding the ``(K, J, I)`` label map (or mask) ``labels`` on the grid ``ijk_to_ras``
    (what Segment Editor effects pass to ``modifySelectedSegmentByLabelmap``)."""
    return _label_image(np.asarray(labels), np.asarray(ijk_to_ras, dtype=float))


def new_segmentation_node(labels: np.ndarray, reference: Any, segments: Optional[Sequence[SegmentSpec]] = None,
                          scene: Optional[Any] = None, name: str = "Segmentation") -> Any:
    """Add a NEW segmentation node with one segment per label value of a label map.

    Args:
        labels: ``(K, J, I)`` non-negative integer (or bool) label map on the reference grid; 0 is background.
        reference: the image the labels belong to: a volume node (the usual case; the segmentation gets its reference
            geometry with ``SetReferenceImageGeometryParameterFromVolumeNode``, its parent transform and its
            subject-hierarchy parent) or a :class:`Volume` (reference geometry set from its grid).
        segments: ``(label value, name, (r, g, b) in [0, 1][, terminology])`` per segment, in the order they appear in
            Slicer; ``terminology`` is Slicer's terminology entry string (``vtkSegment`` tag ``TerminologyEntry``).
            By default one segment per non-zero value present, named ``"Label <value>"``, with standard colours.
            EVERY listed segment is created, also when its label is absent from ``labels`` (an empty segment: the
            structure was looked for and not found); a non-zero value present in ``labels`` but not listed is an error.
        scene: the scene; defaults to the reference node's scene.
        name: base node name (made unique).

    Segments share one labelmap layer (as the Segment Editor stores them), each with its own label value, so exporting
    and saving as ``.seg.nrrd`` keep the values. Segment IDs are generated from the names.

    Returns:
        The new vtkMRMLSegmentationNode (binary labelmap source representation, default display node).
    """
    ijk_to_ras, shape, reference_node = _reference_grid(reference)
    label_array = np.asarray(labels)
    if label_array.ndim == 2 and shape[0] == 1:
        label_array = label_array[np.newaxis]
    if label_array.shape != shape:
        raise ValueError(f"label map of shape {label_array.shape} does not match the reference grid {shape}")
    if not (np.issubdtype(label_array.dtype, np.integer) or label_array.dtype == np.bool_):
        raise ValueError(f"a label map needs integer voxels, got {label_array.dtype}")
    if label_array.size and label_array.min() < 0:
        raise ValueError("label values must be non-negative (0 = background)")
    specs = _segment_specs(label_array, segments)
    target_scene = _scene_for(scene, reference_node)
    image = _label_image(label_array, ijk_to_ras)
    binary = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    with _scene_transaction(target_scene, keep_new_nodes=True):
        _ensure_segmentation_converters(target_scene)
        node = _add_node(target_scene, "vtkMRMLSegmentationNode", name)
        node.CreateDefaultDisplayNodes()
        segmentation = node.GetSegmentation()
        if reference_node is not None:
            node.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
        else:
            segmentation.SetConversionParameter(
                slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(),
                slicer.vtkSegmentationConverter.SerializeImageGeometry(image))
        for value, segment_name, color, terminology in specs:
            segment = slicer.vtkSegment()
            segment.SetName(segment_name)
            segment.SetColor(*color)
            segment.SetLabelValue(value)
            if terminology:
                segment.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), terminology)
            segment.AddRepresentation(binary, image)
            if not segmentation.AddSegment(segment, segmentation.GenerateUniqueSegmentID(segment_name)):
                raise ValueError(f"could not add segment {segment_name!r} to the segmentation")
        _place_with_reference(node, reference_node)
    return node


def labelmap_from_segmentation(segmentation_node: Any, reference_volume_node: Any,
                               segment_ids: Optional[Sequence[str]] = None) -> Tuple[np.ndarray, Dict[int, str]]:
    """Rasterise segments into a label map on the grid of a reference volume (Slicer's "export to labelmap").

    Args:
        segmentation_node: the vtkMRMLSegmentationNode (not modified; a closed-surface-only segmentation is converted
            on a temporary copy).
        reference_volume_node: the volume whose grid (and parent transform) the label map follows.
        segment_ids: the segments to export, in order; all segments by default.

    Returns:
        ``(labels, mapping)``: ``labels`` is a ``(K, J, I)`` integer array on the reference grid where the i-th
        exported segment has value ``i + 1`` (0 = background; where segments overlap the later one wins);
        ``mapping`` is ``{label value: segment ID}`` (names: ``segmentation.GetSegment(id).GetName()``).

    The export goes through ``vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode`` into a temporary label
    map node; it and every other node the export adds (colour table, display nodes) are removed before returning.
    """
    _require(segmentation_node, "vtkMRMLSegmentationNode", "segmentation_node")
    if isinstance(segment_ids, str):
        raise TypeError("segment_ids must be a list of segment IDs, not a single string")
    segmentation = segmentation_node.GetSegmentation()
    available = [segmentation.GetNthSegmentID(index) for index in range(segmentation.GetNumberOfSegments())]
    wanted = list(available if segment_ids is None else segment_ids)
    unknown = [segment_id for segment_id in wanted if segment_id not in available]
    if unknown:
        raise ValueError(f"segment IDs {unknown} are not in segmentation '{segmentation_node.GetName()}'; "
                         f"available: {available}")
    _, shape, _ = _grid_of_node(reference_volume_node, "reference_volume_node")
    if not wanted:
        return np.zeros(shape, dtype=np.uint8), {}
    scene = _scene_for(None, segmentation_node)
    binary = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    with _scene_transaction(scene, keep_new_nodes=False):
        source = segmentation_node
        if not segmentation.ContainsRepresentation(binary):
            _ensure_segmentation_converters(scene)
            source = _add_node(scene, "vtkMRMLSegmentationNode", "mednets temporary segmentation")
            source.GetSegmentation().DeepCopy(segmentation)
            source.SetAndObserveTransformNodeID(segmentation_node.GetTransformNodeID())
        labelmap_node = _add_node(scene, "vtkMRMLLabelMapVolumeNode", "mednets temporary labelmap")
        ids = vtk.vtkStringArray()
        for segment_id in wanted:
            ids.InsertNextValue(segment_id)
        if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                source, ids, labelmap_node, reference_volume_node):
            raise ValueError(f"Slicer could not export segments {wanted} of '{segmentation_node.GetName()}' "
                             "to a label map")
        labels = volume_from_node(labelmap_node).array
    if labels.shape != shape:
        raise ValueError(f"exported label map has shape {labels.shape}, expected the reference grid {shape}")
    return labels, {index + 1: segment_id for index, segment_id in enumerate(wanted)}


# ------------------------------------------------------------------------------------------------------- markups
def new_point_list_node(points_ras: Any, labels: Optional[Sequence[str]] = None,
                        descriptions: Optional[Sequence[str]] = None, scene: Optional[Any] = None,
                        name: str = "Points") -> Any:
    """Add a NEW point list (vtkMRMLMarkupsFiducialNode) with one control point per row of ``points_ras``.

    Args:
        points_ras: ``(N, 3)`` RAS positions in mm (N may be 0).
        labels: N control point labels; Slicer's defaults (``"<node name>-1"``, ...) when omitted.
        descriptions: N descriptions (e.g. a detection's confidence as text); empty when omitted.
        scene: the scene (required: a point list has no reference node).
        name: base node name (made unique).
    """
    points = np.asarray(points_ras, dtype=float)
    if points.size == 0:
        points = points.reshape(0, 3)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points_ras must be an (N, 3) array, got shape {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError("points_ras contains NaN or infinite coordinates")
    for argument, values in (("labels", labels), ("descriptions", descriptions)):
        if values is not None and len(values) != len(points):
            raise ValueError(f"{argument} has {len(values)} entries for {len(points)} points")
    target_scene = _scene_for(scene)
    with _scene_transaction(target_scene, keep_new_nodes=True):
        node = _add_node(target_scene, "vtkMRMLMarkupsFiducialNode", name)
        node.CreateDefaultDisplayNodes()
        was_modifying = node.StartModify()
        try:
            for index, point in enumerate(points):
                label = "" if labels is None else str(labels[index])
                node.AddControlPoint(vtk.vtkVector3d(*point), label)
                if descriptions is not None:
                    node.SetNthControlPointDescription(index, str(descriptions[index]))
        finally:
            node.EndModify(was_modifying)
    return node


def points_from_markups(node: Any, world: bool = False) -> Tuple[np.ndarray, List[str], List[str]]:
    """Control points of any markups node (point list, line, curve, ...): ``(points (N, 3) RAS, labels, descriptions)``.

    Args:
        world: apply the node's parent transforms (world coordinates) instead of returning its local coordinates.
    """
    _require(node, "vtkMRMLMarkupsNode", "node")
    count = node.GetNumberOfControlPoints()
    points = np.zeros((count, 3))
    position = [0.0, 0.0, 0.0]
    for index in range(count):
        if world:
            node.GetNthControlPointPositionWorld(index, position)
        else:
            node.GetNthControlPointPosition(index, position)
        points[index] = position
    labels = [node.GetNthControlPointLabel(index) for index in range(count)]
    descriptions = [node.GetNthControlPointDescription(index) for index in range(count)]
    return points, labels, descriptions


# ------------------------------------------------------------------------------------------------------- transforms
def new_linear_transform_node(matrix: Any, scene: Optional[Any] = None, name: str = "Transform") -> Any:
    """Add a NEW vtkMRMLLinearTransformNode whose ``TransformToParent`` is the 4x4 RAS ``matrix``.

    A node placed under this transform moves by ``matrix``: a point ``p`` of the node is shown at ``matrix @ p``.
    """
    affine = np.asarray(matrix, dtype=float)
    if affine.shape != (4, 4) or not np.allclose(affine[3], [0, 0, 0, 1]) or not np.all(np.isfinite(affine)):
        raise ValueError(f"matrix must be a finite 4x4 affine matrix with last row [0, 0, 0, 1], got {affine.tolist()}")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError("matrix is singular (not invertible)")
    target_scene = _scene_for(scene)
    with _scene_transaction(target_scene, keep_new_nodes=True):
        node = _add_node(target_scene, "vtkMRMLLinearTransformNode", name)
        node.SetMatrixTransformToParent(_vtk_matrix(affine))
    return node


def matrix_from_transform_node(node: Any) -> np.ndarray:
    """The 4x4 RAS ``TransformToParent`` matrix of a linear transform node (its own, without its parents)."""
    _require(node, "vtkMRMLTransformNode", "node")
    if not node.IsLinear():
        raise ValueError(f"transform node '{node.GetName()}' is not linear; use displacement_field_from_node")
    matrix = vtk.vtkMatrix4x4()
    node.GetMatrixTransformToParent(matrix)
    return _numpy_matrix(matrix)


def new_displacement_field_transform_node(field: np.ndarray, reference: Any, scene: Optional[Any] = None,
                                          name: str = "Displacement field", coordinates: str = "RAS") -> Any:
    """Add a NEW vtkMRMLGridTransformNode from a displacement field on a reference grid.

    Args:
        field: ``(K, J, I, 3)`` displacements in mm at the voxel centres of ``reference`` (resampling convention, as in
            :mod:`mednets.resampling`): the node's ``TransformFromParent`` maps the centre ``p`` of voxel ``[k, j, i]``
            to ``p + field[k, j, i]``, linearly interpolated in between. A moving image placed under this transform is
            shown warped: at ``p`` Slicer displays the moving image's value at ``p + d(p)``.
        reference: the grid, a :class:`Volume` or a volume node (then the node is also placed under its parent
            transform).
        scene: the scene; defaults to the reference node's scene.
        coordinates: frame of the vectors in ``field``: ``"RAS"`` (default) or ``"LPS"``.
    """
    coordinate_frame(coordinates)
    ijk_to_ras, shape, reference_node = _reference_grid(reference)
    vectors = np.asarray(field, dtype=np.float64)
    if vectors.shape != shape + (3,):
        raise ValueError(f"displacement field must have shape {shape + (3,)} (reference grid + 3), got {vectors.shape}")
    if not np.all(np.isfinite(vectors)):
        raise ValueError("displacement field contains NaN or infinite values")
    vectors = convert_coordinates(vectors, coordinates, "RAS")
    grid = vtk.vtkImageData()
    grid.SetDimensions(shape[2], shape[1], shape[0])
    spacing_ijk = np.linalg.norm(ijk_to_ras[:3, :3], axis=0)
    grid.SetSpacing(*spacing_ijk)
    grid.SetOrigin(*ijk_to_ras[:3, 3])
    grid.AllocateScalars(vtk.VTK_DOUBLE, 3)
    numpy_support.vtk_to_numpy(grid.GetPointData().GetScalars())[:] = vectors.reshape(-1, 3)
    directions = np.eye(4)
    directions[:3, :3] = ijk_to_ras[:3, :3] / spacing_ijk
    transform = slicer.vtkOrientedGridTransform()
    transform.SetDisplacementGridData(grid)
    transform.SetGridDirectionMatrix(_vtk_matrix(directions))
    transform.SetInterpolationModeToLinear()
    target_scene = _scene_for(scene, reference_node)
    with _scene_transaction(target_scene, keep_new_nodes=True):
        node = _add_node(target_scene, "vtkMRMLGridTransformNode", name)
        node.SetAndObserveTransformFromParent(transform)
        _place_with_reference(node, reference_node)
    return node


def _transform_points(transform: Any, points: np.ndarray) -> np.ndarray:
    source = vtk.vtkPoints()
    source.SetDataTypeToDouble()
    source.SetData(numpy_support.numpy_to_vtk(np.ascontiguousarray(points, dtype=np.float64), deep=True))
    target = vtk.vtkPoints()
    target.SetDataTypeToDouble()
    transform.TransformPoints(source, target)
    return numpy_support.vtk_to_numpy(target.GetData()).astype(np.float64).reshape(-1, 3)


def displacement_field_from_node(node: Any, reference: Any, coordinates: str = "RAS") -> np.ndarray:
    """Sample any transform node as a ``(K, J, I, 3)`` displacement field on a reference grid (mm).

    ``field[k, j, i] = T(p) - p`` where ``p`` is the RAS centre of voxel ``[k, j, i]`` of ``reference`` and ``T`` the
    node's own ``TransformFromParent`` (the resampling convention of :func:`new_displacement_field_transform_node`,
    which this inverts exactly on the node's grid). Works for linear, grid, B-spline and composite transforms.

    Args:
        node: a vtkMRMLTransformNode.
        reference: a :class:`Volume` or a volume node defining the grid.
        coordinates: frame of the returned vectors, ``"RAS"`` (default) or ``"LPS"``.
    """
    coordinate_frame(coordinates)
    _require(node, "vtkMRMLTransformNode", "node")
    ijk_to_ras, shape, _ = _reference_grid(reference)
    transform = node.GetTransformFromParent()
    if transform is None:
        raise ValueError(f"transform node '{node.GetName()}' holds no transform")
    transform.Update()
    count = int(np.prod(shape))
    field = np.empty((count, 3))
    for start in range(0, count, _POINT_CHUNK):
        flat = np.arange(start, min(start + _POINT_CHUNK, count))
        points = kji_to_ras(np.stack(np.unravel_index(flat, shape), axis=1), ijk_to_ras)
        field[flat] = _transform_points(transform, points) - points
    return convert_coordinates(field, "RAS", coordinates).reshape(shape + (3,))


# ------------------------------------------------------------------------------------------------------- tables
def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, (bool, np.bool_))


def _column_array(name: str, values: Sequence[Any]) -> Any:
    """A VTK array for one column: bit (all bools), int (all integers within int32), double (numbers, None = NaN),
    otherwise string (``str(value)``, None = "")."""
    present = [value for value in values if value is not None]
    if present and all(isinstance(value, (bool, np.bool_)) for value in present) and len(present) == len(values):
        array: Any = vtk.vtkBitArray()
        converted: List[Any] = [int(value) for value in values]
    elif present and len(present) == len(values) and all(isinstance(value, numbers.Integral) and _is_number(value)
                                                         and -2**31 <= int(value) < 2**31 for value in values):
        array = vtk.vtkIntArray()
        converted = [int(value) for value in values]
    elif present and all(_is_number(value) for value in present):
        array = vtk.vtkDoubleArray()
        converted = [math.nan if value is None else float(value) for value in values]
    else:
        array = vtk.vtkStringArray()
        converted = ["" if value is None else str(value) for value in values]
    array.SetName(name)
    array.SetNumberOfValues(len(converted))
    for index, value in enumerate(converted):
        array.SetValue(index, value)
    return array


def _columns_of(data: Union[Mapping[str, Sequence[Any]], Sequence[Mapping[str, Any]]]) -> Dict[str, List[Any]]:
    if isinstance(data, Mapping):
        columns = {str(key): list(values) for key, values in data.items()}
        lengths = {len(values) for values in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"all columns must have the same length, got lengths "
                             f"{ {key: len(values) for key, values in columns.items()} }")
        return columns
    rows = list(data)
    if not all(isinstance(row, Mapping) for row in rows):
        raise TypeError("table data must be a dict of columns or a list of dict rows")
    names: Dict[str, None] = {}
    for row in rows:
        for key in row:
            names.setdefault(str(key), None)
    return {name: [row.get(name) for row in rows] for name in names}


def new_table_node(data: Union[Mapping[str, Sequence[Any]], Sequence[Mapping[str, Any]]],
                   scene: Optional[Any] = None, name: str = "Table") -> Any:
    """Add a NEW vtkMRMLTableNode from columns (``{"name": [values]}``) or rows (``[{"name": value}, ...]``).

    Column order: the dict's order, or first appearance in the rows (a key missing from a row is ``None``). Column
    types: all bool -> bit; all integers within int32 -> int; numbers (``None`` -> NaN) -> double; anything else ->
    string (``str(value)``, ``None`` -> ``""``).
    """
    columns = _columns_of(data)
    arrays = [_column_array(column, values) for column, values in columns.items()]
    target_scene = _scene_for(scene)
    with _scene_transaction(target_scene, keep_new_nodes=True):
        node = _add_node(target_scene, "vtkMRMLTableNode", name)
        was_modifying = node.StartModify()
        try:
            for array in arrays:
                node.AddColumn(array)
        finally:
            node.EndModify(was_modifying)
    return node


def _python_value(array: Any, index: int) -> Any:
    if isinstance(array, vtk.vtkStringArray):
        return array.GetValue(index)
    if isinstance(array, vtk.vtkBitArray):
        return bool(array.GetValue(index))
    value = array.GetValue(index)
    if array.GetDataType() in (vtk.VTK_FLOAT, vtk.VTK_DOUBLE):
        return float(value)
    return int(value)


def table_to_columns(node: Any) -> Dict[str, List[Any]]:
    """Columns of a table node as ``{name: [python values]}`` (str, int, float or bool per column type)."""
    _require(node, "vtkMRMLTableNode", "node")
    table = node.GetTable()
    columns: Dict[str, List[Any]] = {}
    for column_index in range(table.GetNumberOfColumns()):
        array = table.GetColumn(column_index)
        if array.GetNumberOfComponents() != 1:
            raise ValueError(f"column {array.GetName()!r} has {array.GetNumberOfComponents()} components per row")
        columns[array.GetName()] = [_python_value(array, row) for row in range(table.GetNumberOfRows())]
    return columns


def table_to_rows(node: Any) -> List[Dict[str, Any]]:
    """Rows of a table node as a list of ``{column name: python value}`` dicts; see :func:`table_to_columns`."""
    columns = table_to_columns(node)
    count = len(next(iter(columns.values()))) if columns else 0
    return [{name: values[row] for name, values in columns.items()} for row in range(count)]


# ------------------------------------------------------------------------------------------------------- files
def save_node(node: Any, path: Any) -> Any:
    """Write a storable node (volume, segmentation, markups, table, transform) to ``path`` atomically.

    The format follows the extension (``.nrrd``, ``.nii.gz``, ``.seg.nrrd``, ``.mrk.json``, ``.tsv``/``.csv``,
    ``.h5``/``.tfm``). A temporary storage node of the node's default class writes into a temporary folder next to
    ``path``; only when writing succeeded are the files moved into place (side files first, such as a table's
    ``.schema.csv``, then ``path`` itself), so a reader never sees a half-written file. The storage node is removed
    again: the node's own storage settings and the scene are unchanged. Returns ``pathlib.Path(path)``; raises
    ``ValueError`` when the node cannot be stored or the writer fails (nothing is left behind).
    """
    storage = node.CreateDefaultStorageNode() if hasattr(node, "CreateDefaultStorageNode") else None
    if storage is None:
        raise ValueError(f"node '{node.GetName()}' ({node.GetClassName()}) cannot be written to a file")
    scene = _scene_for(None, node)
    destination = Path(path)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=str(destination.parent)))
    try:
        with _scene_transaction(scene, keep_new_nodes=False):
            scene.AddNode(storage)
            storage.SetFileName(str(staging / destination.name))
            if hasattr(storage, "SetUseCompression"):
                storage.SetUseCompression(1)
            if not storage.WriteData(node) or not (staging / destination.name).is_file():
                raise ValueError(f"could not write '{node.GetName()}' ({node.GetClassName()}) to {destination}")
        written = sorted(staging.iterdir(), key=lambda file: file.name == destination.name)
        for file in written:
            with open(file, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(file, destination.parent / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


# ------------------------------------------------------------------------------------------------ training cases
def _segment_ids_by_name(segmentation_node: Any) -> Dict[str, str]:
    """``{lower-case segment name: segment ID}`` of a segmentation node."""
    segmentation = segmentation_node.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(index) for index in range(segmentation.GetNumberOfSegments())]
    return {segmentation.GetSegment(segment_id).GetName().strip().lower(): segment_id for segment_id in ids}


def case_from_nodes(volume_node: Any, segmentation_node: Optional[Any], class_names: Sequence[str],
                    name: Optional[str] = None, allow_missing: bool = False) -> Any:
    """A training :class:`~mednets.training.Case` from a volume node and a segmentation node of the scene.

    The segments are matched to ``class_names`` BY NAME (case-insensitive, surrounding spaces ignored), so a
    segmentation produced by a module and corrected in the Segment Editor maps back to the same label values:
    ``class_names[i]`` gets label ``i + 1`` and everything else is background (0). Segments whose names are not in
    ``class_names`` are ignored.

    Args:
        volume_node: the image (scalar or vector volume node); its grid is the case's grid.
        segmentation_node: the reference segmentation, or ``None`` for an unlabelled case (prediction only).
        class_names: the model's class names, in label order.
        name: the case name (default: the volume node's name).
        allow_missing: when False (default), a class without a segment raises ``ValueError`` naming it; when True the
            class is simply absent (its voxels stay background), e.g. a kidney removed by nephrectomy.

    Returns:
        A ``Case`` with ``image`` ``(C, K, J, I)`` float32, ``label`` ``(K, J, I)``, spacing in array-axis order, and
        ``extra`` holding the source node IDs and the volume's ``ijk_to_ras``. The scene is not modified.
    """
    from mednets.training.data import Case  # the training package imports torch: keep it off the import path

    _require(volume_node, "vtkMRMLVolumeNode", "volume_node")
    volume = volume_from_node(volume_node)
    image = volume.array
    image = np.moveaxis(image, -1, 0) if volume.is_vector else image[np.newaxis]
    label = None
    if segmentation_node is not None:
        _require(segmentation_node, "vtkMRMLSegmentationNode", "segmentation_node")
        by_name = _segment_ids_by_name(segmentation_node)
        wanted = [(value + 1, by_name.get(str(class_name).strip().lower())) for value, class_name in
                  enumerate(class_names)]
        missing = [class_names[value - 1] for value, segment_id in wanted if segment_id is None]
        if missing and not allow_missing:
            raise ValueError(f"segmentation '{segmentation_node.GetName()}' has no segment named "
                             f"{', '.join(repr(m) for m in missing)}; segments present: {sorted(by_name)}. "
                             "Rename the segments to the model's class names or allow missing classes.")
        present = [(value, segment_id) for value, segment_id in wanted if segment_id is not None]
        exported, mapping = labelmap_from_segmentation(segmentation_node, volume_node,
                                                       [segment_id for _, segment_id in present])
        label = np.zeros(exported.shape, dtype=np.uint8 if len(class_names) < 256 else np.int32)
        exported_to_class = {index + 1: value for index, (value, _) in enumerate(present)}
        for exported_value, class_value in exported_to_class.items():
            label[exported == exported_value] = class_value
    return Case(name=name or volume_node.GetName(), image=image, label=label, spacing=volume.spacing,
                extra={"volume_node_id": volume_node.GetID(),
                       "segmentation_node_id": None if segmentation_node is None else segmentation_node.GetID(),
                       "ijk_to_ras": volume.ijk_to_ras.copy(), "class_names": list(class_names)})


# ------------------------------------------------------------------------------------------- segmentation files
def _geometry_from_string(text: str) -> Tuple[np.ndarray, Tuple[int, ...]]:
    """Parse Slicer's "Reference image geometry" conversion parameter.

    The string holds the 16 numbers of the IJK-to-RAS matrix (row by row) then the 6 numbers of the extent
    (i0, i1, j0, j1, k0, k1), separated by ``;`` (format of vtkSegmentationConverter::SerializeImageGeometry).
    """
    values = [float(value) for value in text.replace(";", " ").split()]
    if len(values) != 22:
        raise ValueError(f"unexpected segmentation reference geometry {text!r} (expected 16 matrix + 6 extent numbers)")
    return np.array(values[:16]).reshape(4, 4), tuple(int(round(value)) for value in values[16:])


def _readable_nrrd(path: Any) -> bool:
    """Whether ITK can read the image header and the voxel data of a NRRD file (no exception escapes)."""
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        reader.Execute()
    except RuntimeError:
        return False
    return True


def write_segmentation_file(labels: np.ndarray, reference: Union[Volume, np.ndarray], path: Any,
                            segments: Optional[Sequence[SegmentSpec]] = None) -> Path:
    """Write a label map as a Slicer ``.seg.nrrd`` with named, coloured segments, without touching any scene.

    Args:
        labels: ``(K, J, I)`` integer label map (0 = background) on the grid of ``reference``.
        reference: the image grid (a :class:`~mednets.image.Volume`, or a 4x4 IJK-to-RAS matrix).
        path: destination (written atomically, see :func:`save_node`).
        segments: segment descriptions as in :func:`new_segmentation_node` (default: one per label value present).

    Returns ``pathlib.Path(path)``. A private scene is used and cleared again.
    """
    matrix = reference.ijk_to_ras if isinstance(reference, Volume) else np.asarray(reference, dtype=float)
    scene = slicer.vtkMRMLScene()
    try:
        grid = Volume(np.zeros(np.asarray(labels).shape, dtype=np.uint8), matrix)
        volume_node = new_volume_node(grid, scene, "reference")
        node = new_segmentation_node(np.asarray(labels), volume_node, segments, name=Path(path).name.split(".")[0])
        return save_node(node, path)
    finally:
        scene.Clear(1)


def read_segmentation_file(path: Any, class_names: Sequence[str], allow_missing: bool = True
                           ) -> Tuple[np.ndarray, Volume]:
    """Read a Slicer ``.seg.nrrd`` as a label map on its own reference grid.

    Segments are matched to ``class_names`` by name as in :func:`case_from_nodes` (``class_names[i]`` gets label
    ``i + 1``). Returns ``(labels, grid)``: ``labels`` ``(K, J, I)`` int64 and ``grid`` a :class:`Volume` of zeros that
    carries the geometry (spacing, origin, directions). Raises ``ValueError`` when the file cannot be read, and when a
    class has no segment unless ``allow_missing``. A private scene is used and cleared again.
    """
    scene = slicer.vtkMRMLScene()
    try:
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
        storage.SetFileName(str(path))
        # The MRML reader aborts the whole process on some malformed files: check the header with ITK first.
        if not Path(path).is_file() or not _readable_nrrd(path) or not storage.ReadData(node):
            raise ValueError(f"could not read the segmentation file '{path}'")
        node.CreateBinaryLabelmapRepresentation()
        matrix, extent = _geometry_from_string(
            node.GetSegmentation().GetConversionParameter("Reference image geometry"))
        shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
        if min(shape) < 1:
            raise ValueError(f"the segmentation file '{path}' has an empty reference geometry")
        # An extent that does not start at 0 shifts the grid origin by that many voxels.
        start = np.array([extent[0], extent[2], extent[4], 1.0])
        matrix = matrix.copy()
        matrix[:3, 3] = (matrix @ start)[:3]
        grid = Volume(np.zeros(shape, dtype=np.uint8), matrix)
        reference = new_volume_node(grid, scene, "reference")
        case = case_from_nodes(reference, node, class_names, allow_missing=allow_missing)
        return case.label.astype(np.int64), grid
    finally:
        scene.Clear(1)
