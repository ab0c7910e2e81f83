"""Tests of AneurysmSeg input handling (AneurysmSegLib.inputs, configs): HU windows, global-image geometry and patch
boxes, the input checks (each bad input gives a plain-language error or warning), configurations as data. No torch."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

from mednets.image import Volume

from AneurysmSegLib.configs import OFFICIAL_TRAINING, PAPER, SMALL, config_from_dict, get_config
from AneurysmSegLib.inputs import GlobalGeometry, InputError, IntensityWarning, check_input_volume, hu_windows


def cta_like(shape=(20, 24, 24), seed=0):
    rng = np.random.default_rng(seed)
    image = rng.normal(35, 5, shape).astype(np.float32)
    image[:, :2] = -1000
    image[5:8, 10:12, 10:12] = 400
    return image


def test_hu_windows_values():
    hu = np.array([-1000, 0, 50, 100, 150, 200, 500, 800, 3000], dtype=np.float32)
    out = hu_windows(hu)
    assert out.shape == (3, 9) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], [0, 0, 0.5, 1, 1, 1, 1, 1, 1])
    np.testing.assert_allclose(out[1], [0, 0, 0, 0, 0.5, 1, 1, 1, 1])
    np.testing.assert_allclose(out[2], [0, 0, 0, 0, 0, 0, 0.5, 1, 1])
    assert hu_windows(hu, [(-100, 100)])[0, 1] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="empty"):
        hu_windows(hu, [(5, 5)])
    assert PAPER.hu_windows == ((0.0, 100.0), (100.0, 200.0), (200.0, 800.0))


def test_global_geometry_keeps_aspect_and_centres():
    geo = GlobalGeometry.of((200, 256, 256), (96, 96, 96))
    assert geo.padded_shape == (256, 256, 256) and geo.pad_before == (28, 0, 0) and geo.pad_after == (28, 0, 0)
    # the whole volume maps to the centred slab of the global image
    assert geo.box((0, 0, 0), (200, 256, 256)) == (10, 85, 0, 95, 0, 95)
    # a 96^3 patch at the start covers 36 global voxels per full axis
    d0, d1, h0, h1, w0, w1 = geo.box((0, 0, 0), (96, 96, 96))
    assert (h0, h1, w0, w1) == (0, 35, 0, 35) and d0 == round(28 * 96 / 256)
    small = GlobalGeometry.of((40, 50, 60), (96, 96, 96))  # smaller than the global image: up-sampled
    assert small.padded_shape == (60, 60, 60)
    assert small.box((0, 0, 0), (40, 50, 60))[4:] == (0, 95)
    padded = small.pad(np.zeros((40, 50, 60)) + 5.0, value=-1000)
    assert padded.shape == (60, 60, 60) and padded[0, 0, 0] == -1000 and padded[30, 30, 30] == 5
    # boxes outside the image are clipped into the global image
    assert min(geo.box((-50, -50, -50), (10, 10, 10))) >= 0
    assert max(geo.box((400, 400, 400), (96, 96, 96))) <= 95


def test_check_input_accepts_cta_and_oblique_volumes():
    check_input_volume(Volume(cta_like(), spacing=(0.7, 0.5, 0.5)))
    angle = 0.3
    oblique = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    check_input_volume(Volume(cta_like(), spacing=(1, 1, 1), directions_ras=oblique))


@pytest.mark.parametrize("case, message", [
    ("rgb", "components"), ("2d", "2D"), ("nan", "NaN"), ("inf", "NaN or infinite"), ("constant", "constant"),
    ("zero_spacing", "spacing"), ("nan_spacing", "spacing")])
def test_check_input_refuses_bad_volumes(case, message):
    image = cta_like()
    spacing = (1.0, 1.0, 1.0)
    if case == "rgb":
        volume = Volume(np.stack([image] * 3, axis=-1), spacing=spacing)
    elif case == "2d":
        volume = Volume(image[:1], spacing=spacing)
    elif case == "nan":
        image[3, 3, 3] = np.nan
        volume = Volume(image, spacing=spacing)
    elif case == "inf":
        image[3, 3, 3] = np.inf
        volume = Volume(image, spacing=spacing)
    elif case == "constant":
        volume = Volume(np.full((8, 8, 8), 40.0), spacing=spacing)
    else:  # a Volume refuses such spacing itself; a node's geometry can still carry it (set after construction)
        volume = Volume(image, spacing=(1.0, 1.0, 1.0))
        matrix = volume.ijk_to_ras.copy()
        matrix[:3, 2] = 0.0 if case == "zero_spacing" else np.nan
        volume.ijk_to_ras = matrix
    with pytest.raises(InputError, match=message):
        check_input_volume(volume)


def test_too_large_volume_is_refused(monkeypatch):
    import AneurysmSegLib.inputs as inputs

    monkeypatch.setattr(inputs, "MAX_VOXELS", 1000)
    with pytest.raises(InputError, match="Crop Volume"):
        inputs.check_input_volume(Volume(cta_like(), spacing=(1, 1, 1)))


def test_non_ct_intensities_warn():
    with pytest.warns(IntensityWarning, match="Hounsfield"):
        check_input_volume(Volume(np.random.default_rng(0).random((10, 10, 10)), spacing=(1, 1, 1)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_input_volume(Volume(cta_like(), spacing=(1, 1, 1)))


def test_configs_as_data():
    assert (PAPER.batch_size, PAPER.jitter, PAPER.window_overlap, PAPER.dice_weight, PAPER.ce_weight) == \
        (3, 38, (64, 64, 64), 0.8, 0.2)
    assert PAPER.optimizer["lr"] == 2e-4 and PAPER.lr_step == 10_000 and PAPER.lr_gamma == 0.95
    assert (PAPER.global_weight, PAPER.local_weight, PAPER.dice_gamma, PAPER.ce_gamma) == (0.1, 1.0, 0.3, 0.3)
    assert PAPER.overlap_fraction == pytest.approx((2 / 3,) * 3)
    assert (OFFICIAL_TRAINING.dice_weight, OFFICIAL_TRAINING.ce_weight, OFFICIAL_TRAINING.jitter) == (0.2, 0.8, 28)
    assert OFFICIAL_TRAINING.window_overlap == (48, 48, 48)
    assert get_config("SMALL") is SMALL
    with pytest.raises(ValueError, match="paper"):
        get_config("nope")
    import json
    again = config_from_dict(json.loads(json.dumps(SMALL.to_dict())))
    assert again == SMALL


def test_inputs_module_is_torch_free():
    code = ("import sys; import AneurysmSegLib.inputs, AneurysmSegLib.configs, AneurysmSegLib; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    import os

    env = dict(os.environ)
    here = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
    env["PYTHONPATH"] = os.pathsep.join([here, env.get("PYTHONPATH", "")])
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
