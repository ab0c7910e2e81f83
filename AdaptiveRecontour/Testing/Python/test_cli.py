"""The command line on files: predict -> evaluate round trip with a small network, help, bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from AdaptiveRecontourLib import build_model
from AdaptiveRecontourLib.cli import main
from AdaptiveRecontourLib.configs import get_config
from AdaptiveRecontourLib.training import checkpoint_metadata
from mednets.checkpoints import save_checkpoint
from mednets.image import Volume
from mednets.io import read_volume, write_volume
from mednets.phantoms import KJI_LPS_DIRECTIONS
from mednets.phantoms.pelvis_pair import pelvis_ct_pair

MODULE_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    p = pelvis_ct_pair(77, shape=(28, 40, 48), spacing=(3.0, 3.0, 3.0))
    vol = lambda a, c: Volume(a, spacing=c.spacing, directions_ras=KJI_LPS_DIRECTIONS)
    paths = {}
    for key, array, case in (("planning", p.planning.image, p.planning), ("daily", p.daily.image, p.daily),
                             ("planning_label", np.where(p.planning.labels <= 4, p.planning.labels, 0), p.planning),
                             ("daily_label", np.where(p.daily.labels <= 4, p.daily.labels, 0), p.daily)):
        paths[key] = write_volume(vol(np.asarray(array), case), folder / f"{key}.nrrd")
    config = get_config("cpu_small", filters=(4, 6, 8), spacing_mm=3.0)
    torch.manual_seed(0)
    net = build_model(config.model, **config.architecture_config())
    paths["model"] = folder / "tiny.safetensors"
    save_checkpoint(paths["model"], net, checkpoint_metadata(config, "untrained test network"))
    paths["folder"] = folder
    return paths


def test_predict_then_evaluate(files, capsys):
    out, field = files["folder"] / "result.nrrd", files["folder"] / "field.nrrd"
    code = main(["predict", "--planning", str(files["planning"]), "--planning-label", str(files["planning_label"]),
                 "--daily", str(files["daily"]), "--output", str(out), "--field", str(field), "--model",
                 str(files["model"]), "--device", "cpu", "--use", "registration"])
    assert code == 0
    result = read_volume(out)
    assert result.shape == read_volume(files["daily"]).shape
    assert read_volume(field).array.shape[-1] == 3
    capsys.readouterr()
    assert main(["evaluate", "--result", str(out), "--reference", str(files["daily_label"]), "--field", str(field),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["name"] for r in report["structures"]] == ["prostate", "seminal vesicles", "rectum", "urinary bladder"]
    assert report["deformation"]["folding_fraction"] < 0.01
    assert np.mean([r["dice"] for r in report["structures"]]) > 0.4


def test_bad_input_exit_code(files, capsys):
    code = main(["predict", "--planning", str(files["folder"] / "missing.nrrd"), "--planning-label",
                 str(files["planning_label"]), "--daily", str(files["daily"]), "--output", "x.nrrd"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:")
    code = main(["evaluate", "--result", str(files["planning_label"]), "--reference",
                 str(files["folder"] / "field_missing.nrrd")])
    assert code == 2


def test_help_runs_as_module():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(MODULE_DIR), str(MODULE_DIR.parent / "MedNetsCore")]))
    out = subprocess.run([sys.executable, "-m", "AdaptiveRecontourLib", "--help"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0 and "predict" in out.stdout and "Examples" in out.stdout
