"""Segment classes: terminology strings in Slicer's serialisation, colours, specs for new segmentation nodes."""

from __future__ import annotations

import numpy as np
import pytest

from mednets.terminology import LEFT, STANDARD_CLASSES, segment_specs, standard_class


def test_terminology_string_has_slicers_seven_fields():
    kidney = standard_class("Left Kidney")
    fields = kidney.terminology().split("~")
    assert len(fields) == 7
    assert fields[1] == "SCT^123037004^Anatomical Structure"
    assert fields[2] == "SCT^64033007^Kidney"
    assert fields[3] == f"SCT^{LEFT.value}^Left"
    assert standard_class("brain").terminology().split("~")[3] == "^^"


def test_every_standard_class_is_well_formed():
    for name, entry in STANDARD_CLASSES.items():
        assert name == entry.name == name.lower()
        assert all(0.0 <= c <= 1.0 for c in entry.color) and len(entry.color) == 3
        assert entry.type.value.isdigit() and entry.type.scheme == "SCT"


def test_specs_and_display_names():
    classes = [standard_class("brain"), standard_class("urinary bladder", "bladder")]
    specs = segment_specs(classes)
    assert [(v, n) for v, n, *_ in specs] == [(1, "brain"), (2, "bladder")]
    assert specs[1][3] == standard_class("urinary bladder").terminology()
    assert [v for v, *_ in segment_specs(classes, [4, 7])] == [4, 7]
    with pytest.raises(ValueError):
        segment_specs(classes, [1])
    with pytest.raises(KeyError, match="known"):
        standard_class("spleen?")


def test_specs_make_a_segmentation_with_terminology():
    slicer = pytest.importorskip("slicer")
    import vtk

    from mednets import mrml
    from mednets.image import Volume

    scene = slicer.vtkMRMLScene()
    reference = mrml.new_volume_node(Volume(np.zeros((4, 5, 6), np.int16)), scene, "image")
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[1:3, 1:3, 1:3] = 1
    node = mrml.new_segmentation_node(labels, reference, segment_specs([standard_class("heart")]), name="out")
    segment = node.GetSegmentation().GetSegment(node.GetSegmentation().GetSegmentIdBySegmentName("heart"))
    tag = vtk.reference("")
    assert segment.GetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), tag)
    assert "SCT^80891009^Heart" in str(tag)
    scene.Clear(1)


def test_from_terminology_round_trip():
    from mednets.terminology import SegmentClass

    for entry in STANDARD_CLASSES.values():
        again = SegmentClass.from_terminology(entry.name, entry.color, entry.terminology())
        assert again == entry
    with pytest.raises(ValueError, match="7"):
        SegmentClass.from_terminology("x", (1, 0, 0), "a~b")
