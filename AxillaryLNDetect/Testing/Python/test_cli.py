"""``python -m AxillaryLNDetectLib predict|evaluate|train`` on files."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mednets.image import Volume
from mednets.io import write_volume
from mednets.phantoms.axilla_ct import axilla_ct_phantom

from AxillaryLNDetectLib.cli import main
from AxillaryLNDetectLib.demo import make_test_detector

MODULE_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    case = axilla_ct_phantom(seed=31, shape=(32, 48, 96), spacing=(4.0, 4.0, 4.0), node_diameter_mm=(8.0, 20.0))
    volume = Volume(case.image, spacing=case.spacing, directions_ras=case.extra["directions_ras"])
    ct = write_volume(volume, folder / "ct.nrrd")
    reference = folder / "truth.json"
    reference.write_text(json.dumps({"centres_ras": volume.kji_to_ras(case.extra["centres_kji"]).tolist(),
                                     "diameters_mm": case.extra["short_axis_mm"].tolist()}))
    detector = make_test_detector(folder / "detector")
    return folder, ct, reference, detector, int(case.labels.max())


def test_predict_then_evaluate(files, capsys):
    folder, ct, reference, detector, count = files
    output, labels = folder / "nodes.json", folder / "labels.nrrd"
    assert main(["predict", "--input", str(ct), "--output", str(output), "--labels", str(labels),
                 "--model", detector.ln.path, "--device", "cpu"]) == 0
    payload = json.loads(output.read_text())
    assert payload["detector"] == detector.name and isinstance(payload["lymph_nodes"], list)
    assert labels.is_file()
    csv_path, png = folder / "froc.csv", folder / "froc.png"
    assert main(["evaluate", "--input", str(ct), "--detections", str(output), "--reference", str(reference),
                 "--csv", str(csv_path), "--plot", str(png)]) == 0
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("group,lymph nodes,detected") and lines[1].startswith(f"all,{count},")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "all" in capsys.readouterr().out


def test_bad_input_exits_2_with_one_line(files, capsys):
    folder, ct, reference, detector, _ = files
    assert main(["predict", "--input", str(folder / "missing.nrrd"), "--output", str(folder / "x.json")]) == 2
    flat = write_volume(Volume(np.full((8, 8, 8), 40.0, np.float32)), folder / "flat.nrrd")
    assert main(["predict", "--input", str(flat), "--output", str(folder / "x.json"), "--model",
                 detector.ln.path, "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "constant" in err[-1]
    assert main(["train", "--data", str(folder / "nothing"), "--output", str(folder / "run")]) == 2


def test_help_has_examples():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(MODULE_DIR), str(MODULE_DIR.parent / "MedNetsCore")]))
    done = subprocess.run([sys.executable, "-m", "AxillaryLNDetectLib", "--help"], capture_output=True, text=True,
                          env=env, cwd=str(MODULE_DIR), timeout=120)
    assert done.returncode == 0 and "examples:" in done.stdout and "predict" in done.stdout
