"""mednets.models.load_model: rebuild from metadata, verified weights, cache, clear errors."""

from __future__ import annotations

import pytest
import torch

from mednets.checkpoints import (ArchitectureMismatchError, CheckpointMetadata, CheckpointModifiedError,
                                 WrongModuleError, save_checkpoint)
from mednets.models import clear_model_cache, load_model


def build(name: str, width: int = 4) -> torch.nn.Module:
    if name != "tiny":
        raise ValueError(f"unknown model {name!r}")
    return torch.nn.Sequential(torch.nn.Conv2d(1, width, 3), torch.nn.BatchNorm2d(width))


@pytest.fixture(autouse=True)
def fresh_cache():
    clear_model_cache()
    yield
    clear_model_cache()


def save(path, width=4, module="Demo", architecture="tiny"):
    torch.manual_seed(0)
    model = build("tiny", width)
    save_checkpoint(path, model, CheckpointMetadata(architecture=architecture, architecture_config={"width": width},
                                                    module=module), dtype="float16")
    return model


def test_loads_rebuilds_and_caches(tmp_path):
    path = tmp_path / "w.safetensors"
    original = save(path)
    loaded = load_model(path, build, "Demo", device="cpu")
    assert not loaded.network.training and loaded.device.type == "cpu"
    assert loaded.metadata.architecture_config == {"width": 4}
    weight = loaded.network[0].weight
    assert weight.dtype == torch.float32
    torch.testing.assert_close(weight, original[0].weight.half().float())
    assert load_model(path, build, "Demo", device="cpu") is loaded
    assert load_model(path, build, "Demo", device="cpu", use_cache=False) is not loaded


def test_refuses_foreign_tampered_and_unbuildable_weights(tmp_path):
    path = tmp_path / "w.safetensors"
    save(path, module="Other")
    with pytest.raises(WrongModuleError):
        load_model(path, build, "Demo", device="cpu")
    save(path, architecture="huge")
    with pytest.raises(ArchitectureMismatchError, match="cannot build"):
        load_model(path, build, "Demo", device="cpu")
    save(path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointModifiedError):
        load_model(path, build, "Demo", device="cpu")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.safetensors", build, "Demo", device="cpu")
