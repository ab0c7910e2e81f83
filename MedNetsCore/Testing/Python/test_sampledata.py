"""mednets.sampledata: the arguments handed to Slicer's Sample Data module for bundled files."""

from __future__ import annotations

import hashlib
import urllib.request

import pytest

from mednets.sampledata import SAMPLE_DATA_CATEGORY, SampleDataSet, SampleFile, register_sample_data, sample_data_arguments


def test_arguments_are_offline_file_uris_with_sha256(tmp_path):
    image = tmp_path / "Phantom.nrrd"
    image.write_bytes(b"image bytes")
    reference = tmp_path / "Phantom-reference.seg.nrrd"
    reference.write_bytes(b"segmentation bytes")
    sample = SampleDataSet("Phantom", (SampleFile(image, "Phantom"), SampleFile(reference, "Phantom reference")))

    arguments = sample_data_arguments(sample)

    assert arguments["category"] == SAMPLE_DATA_CATEGORY
    assert arguments["fileNames"] == ["Phantom.nrrd", "Phantom-reference.seg.nrrd"]
    assert arguments["nodeNames"] == ["Phantom", "Phantom reference"]
    assert arguments["loadFileType"] == ["VolumeFile", "SegmentationFile"]
    assert arguments["thumbnailFileName"] is None
    for uri, checksum, path in zip(arguments["uris"], arguments["checksums"], (image, reference)):
        copied = tmp_path / ("copy-" + path.name)
        urllib.request.urlretrieve(uri, copied)
        assert copied.read_bytes() == path.read_bytes()
        assert checksum == "SHA256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_register_calls_the_sample_data_logic_once_per_sample(tmp_path):
    calls = []

    class Logic:
        @staticmethod
        def registerCustomSampleDataSource(**arguments):
            calls.append(arguments)

    files = []
    for name in ("A.nrrd", "B.mrk.json"):
        (tmp_path / name).write_text(name)
        files.append(SampleFile(tmp_path / name, name.split(".")[0]))
    register_sample_data(Logic, [SampleDataSet("A", files[:1]), SampleDataSet("B", files[1:])])
    assert [call["sampleName"] for call in calls] == ["A", "B"]
    assert calls[1]["loadFileType"] == ["MarkupsFile"]


def test_missing_file_and_unknown_type_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="gone.nrrd"):
        sample_data_arguments(SampleDataSet("X", (SampleFile(tmp_path / "gone.nrrd", "X"),)))
    (tmp_path / "notes.txt").write_text("?")
    with pytest.raises(ValueError, match="notes.txt"):
        sample_data_arguments(SampleDataSet("X", (SampleFile(tmp_path / "notes.txt", "X"),)))
    with pytest.raises(ValueError, match="no files"):
        sample_data_arguments(SampleDataSet("X", ()))


def test_reader_properties_are_passed_only_when_given(tmp_path):
    labels = tmp_path / "Phantom-labels.nrrd"
    labels.write_bytes(b"label map bytes")
    plain = sample_data_arguments(SampleDataSet("Plain", (SampleFile(labels, "Plain"),)))
    assert "loadFileProperties" not in plain  # Slicer's default (no properties) stays in force
    labelmap = sample_data_arguments(SampleDataSet("Labels", (SampleFile(labels, "Labels"),),
                                                   load_file_properties={"labelmap": True}))
    assert labelmap["loadFileProperties"] == {"labelmap": True}
    assert labelmap["loadFileType"] == ["VolumeFile"]


def test_register_with_slicer_uses_the_sample_data_module_when_there_is_one(tmp_path, monkeypatch):
    import sys
    import types

    from mednets.sampledata import register_with_slicer

    (tmp_path / "A.nrrd").write_text("A")
    samples = [SampleDataSet("A", [SampleFile(tmp_path / "A.nrrd", "A")])]
    monkeypatch.setitem(sys.modules, "SampleData", None)  # Slicer started without the Sample Data module
    assert register_with_slicer(samples) == []
    calls = []
    logic = types.SimpleNamespace(registerCustomSampleDataSource=lambda **arguments: calls.append(arguments))
    monkeypatch.setitem(sys.modules, "SampleData", types.SimpleNamespace(SampleDataLogic=logic))
    assert [a["sampleName"] for a in register_with_slicer(samples)] == ["A"] == [c["sampleName"] for c in calls]
