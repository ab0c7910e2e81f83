"""The command line (python -m NucleiMaskyloLib): predict writes a label map, COCO-JSON and a nucleus table;
evaluate prints/writes the metrics; train writes a loadable checkpoint; bad input exits with status 2 and one line.
Uses a small untrained checkpoint (seeded), so only the plumbing is tested here. About 30 s on 2 CPU cores."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from skimage.io import imsave

from mednets.phantoms.he_nuclei import he_nuclei_phantom
from NucleiMaskyloLib.cli import main
from NucleiMaskyloLib.datasets import read_label_map

MODULE_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).parent))
    from NucleiMaskyloWidgetTest import writeSmallCheckpoint

    return writeSmallCheckpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def test_help_has_examples():
    result = subprocess.run([sys.executable, "-m", "NucleiMaskyloLib", "--help"], cwd=MODULE_DIR,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "examples:" in result.stdout and "predict" in result.stdout


def test_predict_then_evaluate(tmp_path, checkpoint, capsys):
    phantom = he_nuclei_phantom(41, shape=(160, 160))
    image = tmp_path / "tile.png"
    imsave(image, phantom.image, check_contrast=False)
    out = tmp_path / "nuclei.tif"
    code = main(["predict", "--input", str(image), "--output", str(out), "--json", str(tmp_path / "nuclei.json"),
                 "--table", str(tmp_path / "nuclei.csv"), "--model", str(checkpoint), "--device", "cpu",
                 "--tile-size", "96", "--overlap", "32", "--score-threshold", "0.05", "--pixel-size-um", "0.25"])
    assert code == 0
    labels = read_label_map(out)
    assert labels.shape == (160, 160)
    rows = list(csv.DictReader(open(tmp_path / "nuclei.csv")))
    assert len(rows) == labels.max() and set(rows[0]) >= {"label", "area_px", "area_um2", "confidence", "branch"}
    results = json.loads((tmp_path / "nuclei.json").read_text())
    assert len(results["annotations"]) == labels.max()
    reference = tmp_path / "truth.tif"
    tifffile.imwrite(reference, phantom.labels.astype(np.uint16))
    capsys.readouterr()
    assert main(["evaluate", "--prediction", str(reference), "--reference", str(reference), "--csv",
                 str(tmp_path / "m.csv")]) == 0
    printed = capsys.readouterr().out
    assert "mAP50" in printed and "aji" in printed
    metrics = {row["metric"]: float(row["value"]) for row in csv.DictReader(open(tmp_path / "m.csv"))}
    assert metrics["aji"] == 1.0 and metrics["mAP50_95"] == pytest.approx(1.0)
    assert main(["evaluate", "--prediction", str(tmp_path / "nuclei.json"), "--reference", str(reference)]) == 0


def test_train_writes_loadable_checkpoint(tmp_path):
    folder = tmp_path / "tiles" / "organ"
    (folder / "tissue images").mkdir(parents=True)
    (folder / "label masks modify").mkdir(parents=True)
    for seed in range(2):
        case = he_nuclei_phantom(50 + seed, shape=(64, 64))
        imsave(folder / "tissue images" / f"t{seed}.png", case.image, check_contrast=False)
        tifffile.imwrite(folder / "label masks modify" / f"t{seed}.tif", case.labels.astype(np.uint16))
    code = main(["train", "--data", str(tmp_path / "tiles"), "--output", str(tmp_path / "run"), "--architecture",
                 "mask_rcnn_small", "--iterations", "1", "--batch-size", "2", "--micro-batch", "2",
                 "--tile-size", "64"])
    assert code == 0
    from NucleiMaskyloLib.models import load_nuclei_model

    loaded, pipeline = load_nuclei_model(str(tmp_path / "run" / "nucleimaskylo_trained.safetensors"), device="cpu")
    assert loaded.metadata.architecture == "mask_rcnn_small" and pipeline["tile_size"] == 512
    assert json.loads((tmp_path / "run" / "history.json").read_text())["iteration"] == [1.0]


def test_bad_input_exits_2(tmp_path, checkpoint, capsys):
    assert main(["predict", "--input", str(tmp_path / "missing.png"), "--output", str(tmp_path / "o.tif"),
                 "--model", str(checkpoint)]) == 2
    assert "does not exist" in capsys.readouterr().err
    grey = tmp_path / "grey.png"
    imsave(grey, np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8), check_contrast=False)
    assert main(["predict", "--input", str(grey), "--output", str(tmp_path / "o.tif"), "--model",
                 str(checkpoint)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RGB" in err[0]
    other = tmp_path / "other.safetensors"
    other.write_bytes(b"not a checkpoint")
    image = tmp_path / "tile.png"
    imsave(image, he_nuclei_phantom(1, shape=(32, 32)).image, check_contrast=False)
    assert main(["predict", "--input", str(image), "--output", str(tmp_path / "o.tif"), "--model", str(other)]) == 2
