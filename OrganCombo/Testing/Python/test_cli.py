"""``python -m OrganComboLib``: predict / evaluate / train on files, exit codes and one-line errors on bad input."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mednets.checkpoints import save_checkpoint
from mednets.image import Volume
from mednets.io import read_volume, write_volume
from mednets.phantoms import pet_whole_body_phantom
from mednets.training import write_training_case
from OrganComboLib import build_model
from OrganComboLib.cli import main
from OrganComboLib.configs import get_config
from OrganComboLib.training import checkpoint_metadata

MODULE_DIR = Path(__file__).resolve().parents[2]
SMALL = get_config("pet").replace(patch_size=(16, 16, 16), window_size=(16, 16, 16), window_stride=(8, 8, 8),
                                  batch_size=2)


def small_phantom(seed: int):
    phantom = pet_whole_body_phantom(seed=seed, shape=(48, 24, 32), spacing=(21.0, 13.0, 13.0))
    volume = Volume(phantom.image, spacing=phantom.spacing, directions_ras=phantom.extra["directions_ras"])
    return phantom, volume


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    overrides = {"in_channels": 1, "out_channels": 5, "spatial_dims": 3, "base_channels": 2}
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_checkpoint(path, build_model("combo_net", **overrides), checkpoint_metadata(SMALL, overrides, "test"))
    return path


def test_predict_then_evaluate_label_maps(tmp_path, tiny_weights, capsys):
    phantom, volume = small_phantom(3)
    image = write_volume(volume, tmp_path / "pet.nrrd")
    output = tmp_path / "out" / "labels.nii.gz"
    assert main(["predict", "--input", str(image), "--output", str(output), "--model", str(tiny_weights),
                 "--device", "cpu", "--probabilities", str(tmp_path / "prob.nrrd")]) == 0
    labels = read_volume(output)
    assert labels.shape == volume.shape and np.allclose(labels.ijk_to_ras, volume.ijk_to_ras)
    assert set(np.unique(labels.array)) <= set(range(6))
    assert read_volume(tmp_path / "prob.nrrd").array.shape == volume.shape + (5,)
    assert "brain:" in capsys.readouterr().out
    reference = write_volume(volume.with_array(phantom.labels), tmp_path / "truth.nrrd")
    assert main(["evaluate", "--prediction", str(reference), "--reference", str(reference),
                 "--csv", str(tmp_path / "m.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert [r["organ"] for r in rows] == list(get_config("pet").class_names)
    assert all(float(r["dice"]) == 1.0 and float(r["hd_mm"]) == 0.0 for r in rows)


def test_predict_writes_named_segments(tmp_path, tiny_weights):
    pytest.importorskip("slicer")
    _, volume = small_phantom(4)
    image = write_volume(volume, tmp_path / "pet.nrrd")
    output = tmp_path / "pet_organs.seg.nrrd"
    assert main(["predict", "--input", str(image), "--output", str(output), "--model", str(tiny_weights),
                 "--device", "cpu"]) == 0
    header = output.read_bytes()[:20000].decode("latin-1")
    for name in get_config("pet").class_names:
        assert f"Name:={name}" in header
    assert "SCT^64033007^Kidney" in header
    labels = tmp_path / "labels.nrrd"
    assert main(["predict", "--input", str(image), "--output", str(labels), "--model", str(tiny_weights),
                 "--device", "cpu"]) == 0
    assert main(["evaluate", "--prediction", str(output), "--reference", str(labels),
                 "--csv", str(tmp_path / "m.csv")]) == 0  # the .seg.nrrd reads back as the same label map
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert all(r["dice"] == "1" for r in rows)


def test_train_on_a_folder(tmp_path):
    for seed in range(3):
        phantom, volume = small_phantom(seed)
        write_training_case(tmp_path / "data", f"case{seed}", volume, phantom.labels)
    assert main(["train", "--data", str(tmp_path / "data"), "--output", str(tmp_path / "run"), "--iterations", "4",
                 "--patch-size", "16", "--width", "2", "--device", "cpu"]) == 0
    assert (tmp_path / "run" / "best.safetensors").is_file()


def test_bad_input_gives_one_line_and_exit_code_2(tmp_path, capsys):
    assert main(["predict", "--input", str(tmp_path / "missing.nrrd"), "--output", str(tmp_path / "x.nrrd")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error:") and "\n" not in error
    constant = write_volume(Volume(np.ones((8, 8, 8), np.float32)), tmp_path / "constant.nrrd")
    assert main(["evaluate", "--prediction", str(constant), "--reference", str(tmp_path / "missing.nrrd")]) == 2
    assert main(["train", "--data", str(tmp_path), "--output", str(tmp_path / "run")]) == 2


def test_module_entry_point_help():
    result = subprocess.run([sys.executable, "-m", "OrganComboLib", "--help"], cwd=MODULE_DIR, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "predict" in result.stdout and "examples:" in result.stdout


def test_fine_tuning_keeps_the_starting_network(tmp_path, tiny_weights):
    from mednets.checkpoints import read_checkpoint_metadata

    for seed in range(2):
        phantom, volume = small_phantom(seed)
        write_training_case(tmp_path / "data", f"case{seed}", volume, phantom.labels)
    assert main(["train", "--data", str(tmp_path / "data"), "--output", str(tmp_path / "run"), "--iterations", "2",
                 "--initial-weights", str(tiny_weights), "--device", "cpu"]) == 0
    tuned = read_checkpoint_metadata(tmp_path / "run" / "best.safetensors")
    assert tuned.architecture_config["base_channels"] == 2  # the starting network, not the full-width default
    assert tuned.extra["config"]["window_size"] == [16, 16, 16]
