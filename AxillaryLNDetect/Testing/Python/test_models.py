"""Detector files: bundled demo pair (when built), verification of tampered, truncated and foreign weights."""
import shutil

import pytest
import torch

from mednets.checkpoints import CheckpointError, save_checkpoint

from AxillaryLNDetectLib.configs import DEFAULT_MODEL
from AxillaryLNDetectLib.demo import make_test_detector
from AxillaryLNDetectLib.models import CATALOGUE, available_detectors, detector_from_path, load_detector


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDNETS_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.skipif(not CATALOGUE.is_file(), reason="demo weights not built (python -m AxillaryLNDetectLib.demo)")
def test_bundled_demo_detector():
    detectors = available_detectors()
    assert detectors[0].name == DEFAULT_MODEL and "not for clinical use" in detectors[0].description
    loaded = load_detector(None, device="cpu")
    assert loaded.config.name == "phantom_demo"
    assert loaded.voi.metadata.extra["stage"] == "voi" and loaded.ln.metadata.extra["stage"] == "ln"
    total = sum((CATALOGUE.parent / f"{DEFAULT_MODEL}-{s}.safetensors").stat().st_size for s in ("voi", "ln"))
    assert total < 5_000_000
    assert (CATALOGUE.parent / f"{DEFAULT_MODEL}.md").read_text().count("NOT for clinical use") == 1


def test_tampered_truncated_and_foreign_weights_are_refused(tmp_path):
    detector = make_test_detector(tmp_path / "ok", untrained=True)
    assert load_detector(detector, device="cpu").name == detector.name
    # truncated
    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "ok", broken)
    path = broken / "untrained-test-ln.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError):
        load_detector(detector_from_path(path), device="cpu")
    # tampered (one byte of a tensor changed)
    tampered = tmp_path / "tampered"
    shutil.copytree(tmp_path / "ok", tampered)
    path = tampered / "untrained-test-voi.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_detector(detector_from_path(path), device="cpu")
    # another module's weights
    foreign = tmp_path / "foreign"
    shutil.copytree(tmp_path / "ok", foreign)
    save_checkpoint(foreign / "untrained-test-ln.safetensors", torch.nn.Linear(2, 2),
                    {"architecture": "linear", "module": "OrganCombo"})
    with pytest.raises(CheckpointError, match="OrganCombo"):
        load_detector(detector_from_path(foreign / "untrained-test-ln.safetensors"), device="cpu")
    # stages swapped
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    shutil.copy(tmp_path / "ok" / "untrained-test-voi.safetensors", swapped / "x-ln.safetensors")
    shutil.copy(tmp_path / "ok" / "untrained-test-ln.safetensors", swapped / "x-voi.safetensors")
    with pytest.raises(ValueError, match="stage"):
        load_detector(detector_from_path(swapped / "x-ln.safetensors"), device="cpu")
