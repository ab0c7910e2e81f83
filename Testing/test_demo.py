"""The demo runner (``make demo``) and the shared demo rendering in ``mednets.demo``."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from mednets.demo import DemoPanel, DemoResult, overlay_labels, write_summary

ROOT = Path(__file__).resolve().parents[1]


def load_runner():
    spec = importlib.util.spec_from_file_location("run_demo", ROOT / "Scripts" / "run_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_overlay_blends_label_colours_and_keeps_background_grey():
    image = np.tile(np.linspace(0, 100, 8), (6, 1))
    labels = np.zeros((6, 8), np.uint8)
    labels[2:4, 2:5] = 3
    rgb = overlay_labels(image, labels, colors={3: (1.0, 0.0, 0.0)}, window=(0, 100), opacity=0.5)
    assert rgb.shape == (6, 8, 3) and rgb.dtype == np.uint8
    background = rgb[labels == 0]
    assert np.all(background[:, 0] == background[:, 1]) and np.all(background[:, 1] == background[:, 2])
    labelled = rgb[labels == 3].astype(int)
    assert np.all(labelled[:, 0] > labelled[:, 1])  # red added
    outline = overlay_labels(image, labels, colors={3: (0.0, 0.0, 1.0)}, window=(0, 100), outline_only=True)
    assert tuple(outline[2, 2]) == (0, 0, 255) and tuple(outline[2, 3]) == (0, 0, 255)
    with pytest.raises(ValueError, match="shape"):
        overlay_labels(image, labels[:-1])
    with pytest.raises(ValueError, match="2D"):
        overlay_labels(np.zeros((2, 2, 2)))


def test_write_summary_writes_png_and_json(tmp_path):
    panel = DemoPanel("slice", overlay_labels(np.random.default_rng(0).normal(size=(16, 16))))
    result = DemoResult("Example", "ran", {"Dice": 0.9, "nan": float("nan")}, [panel, panel], [tmp_path / "x"], 1.234)
    png, summary = write_summary([result], tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(summary.read_text())
    assert data["modules"][0]["metrics"]["Dice"] == 0.9 and data["modules"][0]["seconds"] == 1.23
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json", "summary.png"]


def test_demo_runner_core_pipeline(tmp_path, slicer_runtime):
    runner = load_runner()
    assert runner.main(["--output", str(tmp_path), "--core-only"]) == 0
    data = json.loads((tmp_path / "summary.json").read_text())
    core = data["modules"][0]
    assert core["module"] == "MedNetsCore"
    assert core["metrics"]["Dice spine"] > 0.95  # bone threshold finds the phantom's spine
    assert (tmp_path / "MedNetsCore" / "bone_threshold.seg.nrrd").is_file()
    assert (tmp_path / "summary.png").is_file()
    with pytest.raises(SystemExit):
        runner.discover(["NoSuchModule"])


def test_a_module_whose_demo_is_unavailable_is_reported_as_skipped_not_failed(tmp_path, slicer_runtime, monkeypatch,
                                                                              capsys):
    """A module whose demo weights are not built yet says so; the demo still succeeds (exit 0) and lists it."""
    from mednets.demo import DemoUnavailable

    runner = load_runner()

    def unavailable(folder, progress=None):
        raise DemoUnavailable("demo weights not built yet")

    monkeypatch.setattr(runner, "core_pipeline_check", unavailable)
    assert runner.main(["--output", str(tmp_path), "--core-only"]) == 0
    assert "skipped: demo weights not built yet" in capsys.readouterr().out
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["skipped"] == {"MedNetsCore": "demo weights not built yet"} and data["modules"] == []
