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


@pytest.mark.skipif(not yolo.ultralytics_available(), reason="ultralytics (optional, AGPL-3.0) is not installed")
def test_yolo_branch_fused_in_pipeline_and_trains_offline(tmp_path):
    import torch

    from mednets.phantoms.he_nuclei import he_nuclei_phantom
    from NucleiMaskyloLib import build_model
    from NucleiMaskyloLib.pipeline import NucleiPipeline, PipelineSettings

    torch.manual_seed(0)
    mask_rcnn = build_model("mask_rcnn_small", box_detections_per_img=30).eval()
    segmenter = yolo.build_yolo("yolov8n-seg")
    image = he_nuclei_phantom(3, shape=(128, 128)).image
    settings = PipelineSettings(tile_size=128, overlap=0, score_threshold=0.01, fusion="confidence_weighting")
    found = NucleiPipeline(mask_rcnn, settings, yolo_models=[segmenter]).predict(image)
    assert set(found.branch) <= {"mask_rcnn", "yolo_seg", "fused"}
    tiles = [he_nuclei_phantom(s, shape=(64, 64)) for s in range(4)]
    dataset = yolo.write_yolo_dataset(tmp_path / "data", [t.image for t in tiles], [t.labels for t in tiles], 0.25)
    yolo.train_yolo(segmenter, dataset, epochs=1, imgsz=64, batch=2, output_dir=tmp_path / "runs")
    assert any((tmp_path / "runs").rglob("*.pt"))
