"""mednets.inputs (shared input checks) and mednets.networks (MODEL_NAMES/build_model tables)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from mednets.image import Volume
from mednets.inputs import InputError, check_image
from mednets.networks import NetworkCatalogue

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("volume, kwargs, message", [
    (Volume(RNG.random((4, 8, 8, 3))), {}, "3 components"),
    (Volume(RNG.random((4, 8, 8))), {"channels": 3}, "needs an RGB image"),
    (Volume(RNG.random((1, 8, 8))), {}, "is 2D"),
    (Volume(RNG.random((4, 8, 8))), {"spatial_dims": 2}, "3D volume"),
    (Volume(RNG.random((4, 8, 8))), {"max_voxels": 100}, "256 voxels"),
    (Volume(np.where(RNG.random((4, 8, 8)) > 0.9, np.inf, 1.0)), {}, "NaN or infinite"),
    (Volume(np.full((4, 8, 8), 7.0)), {"what": "detect lymph nodes in"}, "constant .*nothing to detect"),
])
def test_each_bad_input_is_refused_with_its_reason(volume, kwargs, message):
    with pytest.raises(InputError, match=message) as caught:
        check_image(volume, "TheTool", **kwargs)
    assert isinstance(caught.value, ValueError)


def test_good_inputs_pass():
    check_image(Volume(RNG.random((4, 8, 8))), "TheTool", max_voxels=256)
    check_image(Volume(RNG.random((1, 8, 8, 3))), "TheTool", spatial_dims=2, channels=3)
    check_image(Volume(RNG.random((1, 8, 8))), "TheTool", spatial_dims=None)


def test_network_catalogue_builds_named_networks_with_defaults(monkeypatch):
    package = types.ModuleType("fakelib")
    package.__path__ = []
    network_file = types.ModuleType("fakelib.tiny")

    class Tiny:
        def __init__(self, width: int, depth: int = 1) -> None:
            self.width, self.depth = width, depth

    network_file.Tiny = Tiny
    monkeypatch.setitem(sys.modules, "fakelib", package)
    monkeypatch.setitem(sys.modules, "fakelib.tiny", network_file)
    catalogue = NetworkCatalogue("Fake", "fakelib", {"tiny_net": ("tiny", "Tiny")}, {"width": 8})

    assert catalogue.names == ("tiny_net",)
    built = catalogue.build("Tiny-Net", depth=3)
    assert (built.width, built.depth) == (8, 3)
    assert catalogue.build("tiny_net", width=2).width == 2
    with pytest.raises(ValueError, match="unknown Fake model 'big'; valid names: tiny_net"):
        catalogue.build("big")
    with pytest.raises(TypeError):
        catalogue.build("tiny_net", colour="red")
    per_model = NetworkCatalogue("Fake", "fakelib", {"tiny_net": ("tiny", "Tiny")}, {"tiny_net": {"width": 5}},
                                 per_model_defaults=True)
    assert per_model.build("tiny_net").width == 5
