"""The optional YOLO branch (ultralytics, AGPL-3.0): absent -> a clear error naming the pip command and no install
without consent; the dataset export works without it; with ultralytics installed, a YOLO-seg model builds from its
yaml offline and predicts Detections on an RGB tile (those tests skip cleanly when ultralytics is absent)."""

from __future__ import annotations

import numpy as np
import pytest

from NucleiMaskyloLib import yolo
from NucleiMaskyloLib.detections import Detections


def test_yolo_dataset_export(tmp_path):
    labels = np.zeros((64, 64), np.int32)
    labels[10:20, 10:22] = 1
    labels[40:52, 30:38] = 2
    image = np.full((64, 64, 3), 200, np.uint8)
    yaml_path = yolo.write_yolo_dataset(tmp_path, [image, image], [labels, labels], val_fraction=0.5)
    text = yaml_path.read_text()
    assert "train: images/train" in text and "0: nucleus" in text
    lines = (tmp_path / "labels" / "train" / "tile_00000.txt").read_text().strip().splitlines()
    assert len(lines) == 2
    first = np.array(lines[0].split()[1:], float).reshape(-1, 2) * 64
    assert lines[0].startswith("0 ") and first[:, 0].min() == pytest.approx(9.5, abs=0.6)
    assert first[:, 0].max() == pytest.approx(21.5, abs=0.6) and first[:, 1].max() == pytest.approx(19.5, abs=0.6)
    assert (tmp_path / "images" / "val" / "tile_00001.png").is_file()


@pytest.mark.skipif(yolo.ultralytics_available(), reason="ultralytics is installed")
def test_missing_ultralytics_is_not_installed_without_consent():
    from mednets.dependencies import MissingDependencyError

    with pytest.raises(MissingDependencyError, match="pip install"):
        yolo.ensure_ultralytics()
    asked = []
    installed = []
    with pytest.raises(MissingDependencyError, match="declined"):
        yolo.ensure_ultralytics(confirm=lambda q: asked.append(q) or False, installer=installed.append)
    assert "AGPL-3.0" in asked[0] and installed == []
    with pytest.raises(MissingDependencyError):
        yolo.build_yolo("yolov8n-seg")


@pytest.mark.skipif(not yolo.ultralytics_available(), reason="ultralytics (optional, AGPL-3.0) is not installed")
def test_yolo_seg_builds_offline_and_predicts():
    model = yolo.build_yolo("yolov8n-seg")
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    found = yolo.predict_yolo(model, image, score_threshold=0.0)
    assert isinstance(found, Detections)
    assert found.masks is not None and found.masks.shape[1:] == (96, 128)
    with pytest.raises(ValueError, match="valid names"):
        yolo.build_yolo("yolov99")
