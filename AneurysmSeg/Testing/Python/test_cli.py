"""Tests of the AneurysmSeg command line (python -m AneurysmSegLib): predict writes the label map, risk map and target
table; evaluate prints voxel/target/case metrics; train runs a few iterations; bad input exits with 2 and a one-line
reason; --help shows examples; official checkpoints are converted by models.import_official_checkpoint."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mednets.image import Volume
from mednets.io import read_volume, write_volume
from mednets.phantoms.cta_head import cta_head_phantom

from AneurysmSegLib import build_model
from AneurysmSegLib.cli import main
from AneurysmSegLib.configs import SMALL
from AneurysmSegLib.training import checkpoint_metadata

MODULE_DIR = Path(__file__).resolve().parents[2]
TINY = SMALL.replace(model_overrides={"widths": (4, 8, 16, 32), "global_channels": 8}, patch_size=(16, 16, 16),
                     global_size=(16, 16, 16), window_overlap=(8, 8, 8), jitter=4, min_target_voxels=0)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from mednets.checkpoints import save_checkpoint

    folder = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    checkpoint = folder / "tiny.safetensors"
    save_checkpoint(checkpoint, build_model("glia_net", **TINY.model_overrides),
                    checkpoint_metadata(TINY, TINY.model_overrides, "untrained test network"))
    phantom = cta_head_phantom(shape=(24, 32, 32), spacing=(2.5, 2.5, 2.5), seed=1, aneurysm_diameter_mm=(8, 10))
    image = write_volume(Volume(phantom.image, spacing=phantom.spacing), folder / "cta.nrrd")
    truth = write_volume(Volume((phantom.labels == 1).astype(np.uint8), spacing=phantom.spacing), folder / "truth.nrrd")
    return {"folder": folder, "checkpoint": checkpoint, "image": image, "truth": truth}


def test_predict_writes_labels_risk_map_and_table(files, capsys):
    folder = files["folder"]
    code = main(["predict", "--input", str(files["image"]), "--output", str(folder / "labels.nrrd"), "--model",
                 str(files["checkpoint"]), "--device", "cpu", "--threshold", "0.4", "--risk-map",
                 str(folder / "risk.nrrd"), "--table", str(folder / "targets.csv")])
    assert code == 0
    labels = read_volume(folder / "labels.nrrd").array
    risk = read_volume(folder / "risk.nrrd").array
    assert labels.shape == risk.shape == (24, 32, 32)
    np.testing.assert_array_equal(labels > 0, risk > 0.4)
    rows = list(csv.DictReader(open(folder / "targets.csv")))
    assert sum(int(r["voxels"]) for r in rows) == int((labels > 0).sum())
    assert "aneurysm candidate" in capsys.readouterr().out


def test_evaluate_prints_metrics(files, capsys):
    folder = files["folder"]
    code = main(["evaluate", "--prediction", str(files["truth"]), "--reference", str(files["truth"]),
                 "--csv", str(folder / "metrics.csv")])
    assert code == 0
    rows = {(r["level"], r["metric"]): float(r["value"]) for r in csv.DictReader(open(folder / "metrics.csv"))}
    assert rows[("voxel", "dsc")] == 1.0 and rows[("target", "recall")] == 1.0 and rows[("target", "fp")] == 0.0
    assert "voxel,auc" in capsys.readouterr().out


def test_train_runs_a_few_iterations(files, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for seed in (1, 2):
        phantom = cta_head_phantom(shape=(24, 32, 32), spacing=(2.5, 2.5, 2.5), seed=seed,
                                   aneurysm_diameter_mm=(8, 10))
        write_volume(Volume(phantom.image, spacing=phantom.spacing), data / f"c{seed}_image.nrrd")
        write_volume(Volume((phantom.labels == 1).astype(np.uint8), spacing=phantom.spacing),
                     data / f"c{seed}_label.nrrd")
    from AneurysmSegLib import configs

    original = configs.CONFIGS["small"]
    configs.CONFIGS["small"] = TINY.replace(batch_size=2)
    try:
        code = main(["train", "--data", str(data), "--output", str(tmp_path / "run"), "--config", "small",
                     "--iterations", "2", "--device", "cpu"])
    finally:
        configs.CONFIGS["small"] = original
    assert code == 0 and (tmp_path / "run" / "best.safetensors").is_file()


def test_bad_input_exits_with_a_reason(files, tmp_path, capsys):
    flat = write_volume(Volume(np.full((8, 8, 8), 40.0, np.float32)), tmp_path / "flat.nrrd")
    code = main(["predict", "--input", str(flat), "--output", str(tmp_path / "x.nrrd"), "--model",
                 str(files["checkpoint"]), "--device", "cpu"])
    assert code == 2 and "constant" in capsys.readouterr().err
    code = main(["predict", "--input", str(tmp_path / "missing.nrrd"), "--output", str(tmp_path / "x.nrrd")])
    assert code == 2
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(files["checkpoint"].read_bytes()[:200])
    code = main(["predict", "--input", str(files["image"]), "--output", str(tmp_path / "x.nrrd"), "--model",
                 str(broken), "--device", "cpu"])
    assert code == 2


def test_help_shows_examples():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(MODULE_DIR), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-m", "AneurysmSegLib", "--help"], capture_output=True, text=True, env=env,
                         cwd=MODULE_DIR)
    assert out.returncode == 0 and "examples:" in out.stdout and "predict" in out.stdout


def test_official_checkpoint_import(tmp_path):
    """A checkpoint in the official layout (written here) converts into a verified mednets checkpoint."""
    from AneurysmSegLib.models import import_official_checkpoint
    from mednets.checkpoints import load_into_model

    sys.path.insert(0, str(Path(__file__).parent))
    from test_networks import random_official_state_dict

    official = tmp_path / "checkpoint-0245700.pt"
    torch.save({"model_state_dict": random_official_state_dict(1), "step": 1}, official)
    converted = import_official_checkpoint(official, tmp_path / "converted.safetensors")
    model = build_model("glia_net")
    load_into_model(model, converted, expected_module="AneurysmSeg")
    assert torch.equal(model.head.bias, random_official_state_dict(1)["output_conv.bias"])
    bad = tmp_path / "other.pt"
    torch.save({"model_state_dict": {"fc.weight": torch.zeros(2)}}, bad)
    with pytest.raises(ValueError, match="official GLIA-Net"):
        import_official_checkpoint(bad, tmp_path / "x.safetensors")
