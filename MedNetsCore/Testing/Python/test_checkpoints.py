"""Tests of mednets.checkpoints (safetensors checkpoints with verified metadata) and mednets.fileio."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mednets import __version__
from mednets.checkpoints import (ArchitectureMismatchError, CheckpointChecksumError, CheckpointCorruptedError,
                                 CheckpointError, CheckpointMetadata, CheckpointModifiedError, LegacyCheckpointError,
                                 WrongModuleError, content_sha256, convert_legacy_checkpoint,
                                 describe_state_dict_mismatch, load_checkpoint, load_into_model,
                                 load_legacy_state_dict, read_checkpoint_metadata, save_checkpoint, state_dict_of)
from mednets.fileio import ChecksumMismatchError, atomic_write, sha256_file, verify_sha256


def _model(channels: int = 4) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv3d(1, channels, 3), torch.nn.BatchNorm3d(channels),
                               torch.nn.Conv3d(channels, 2, 1))


def _metadata(**changes) -> CheckpointMetadata:
    values = dict(architecture="tiny_cnn", architecture_config={"channels": 4, "depth": 2},
                  module="LiverSegmentation", spacing=(2.5, 0.8, 0.8),
                  intensity_normalization={"method": "window", "min": -160, "max": 240},
                  class_names=["background", "liver"], class_colors=[(0.0, 0.0, 0.0), (0.86, 0.45, 0.3)],
                  training_data="10 synthetic CT phantoms", extra={"patch_size": [32, 32, 32]},
                  created="2024-01-02T03:04:05+00:00")
    values.update(changes)
    return CheckpointMetadata(**values)


@pytest.fixture()
def saved(tmp_path):
    model = _model()
    path = tmp_path / "weights.safetensors"
    meta = save_checkpoint(path, model, _metadata())
    return path, model, meta


def _header_bounds(path: Path):
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    return data, 8, 8 + length


# ---------------------------------------------------------------------------------------------------- round trip

def test_round_trip_preserves_tensors_and_metadata(saved):
    path, model, meta = saved
    state_dict, loaded = load_checkpoint(path, expected_sha256=sha256_file(path), expected_module="LiverSegmentation",
                                         expected_architecture="tiny_cnn")
    reference = model.state_dict()
    assert sorted(state_dict) == sorted(reference)
    for name, tensor in reference.items():
        assert torch.equal(state_dict[name], tensor), name
        assert state_dict[name].dtype == tensor.dtype
    assert loaded == meta
    assert loaded.spacing == (2.5, 0.8, 0.8)
    assert loaded.class_colors == [(0.0, 0.0, 0.0), (0.86, 0.45, 0.3)]
    assert loaded.mednets_version == __version__
    assert len(loaded.content_sha256) == 64
    assert read_checkpoint_metadata(path) == loaded


def test_metadata_is_plain_json_inside_safetensors_header(saved):
    path, _, meta = saved
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
    block = json.loads(header["mednets"])
    assert block["architecture"] == "tiny_cnn"
    assert block["architecture_config"] == {"channels": 4, "depth": 2}
    assert block["module"] == "LiverSegmentation"
    assert block["format_version"] == 1
    assert block["content_sha256"] == meta.content_sha256
    assert header["format"] == "pt"


def test_load_into_model_copies_weights(saved):
    path, model, _ = saved
    fresh = _model(channels=4)
    with torch.no_grad():
        for parameter in fresh.parameters():
            parameter.zero_()
    meta = load_into_model(fresh, path, expected_module="LiverSegmentation")
    assert meta.architecture == "tiny_cnn"
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name


def test_wrapped_models_are_saved_without_wrapper_prefix(tmp_path):
    model = _model()
    wrapped = torch.nn.DataParallel(model)
    assert sorted(state_dict_of(wrapped)) == sorted(model.state_dict())
    path = tmp_path / "w.safetensors"
    save_checkpoint(path, wrapped, _metadata())
    target = torch.nn.DataParallel(_model())
    load_into_model(target, path)
    assert torch.equal(target.module[0].weight, model[0].weight)


# -------------------------------------------------------------------------------------------------------- fp16

def test_float16_storage_halves_size_and_keeps_integer_buffers(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.BatchNorm1d(64))
    model[1].num_batches_tracked.fill_(7)
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    save_checkpoint(full, model, _metadata())
    save_checkpoint(half, model, _metadata(), dtype="float16")
    state_dict, _ = load_checkpoint(half)
    assert state_dict["0.weight"].dtype == torch.float16
    assert torch.equal(state_dict["0.weight"], model[0].weight.detach().half())
    assert state_dict["1.num_batches_tracked"].dtype == torch.int64
    assert int(state_dict["1.num_batches_tracked"]) == 7
    assert half.stat().st_size < 0.6 * full.stat().st_size
    target = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.BatchNorm1d(64))
    load_into_model(target, half)
    assert target[0].weight.dtype == torch.float32
    assert torch.equal(target[0].weight, model[0].weight.detach().half().float())


def test_unknown_storage_dtype_is_refused(tmp_path):
    with pytest.raises(ValueError, match="storage dtype"):
        save_checkpoint(tmp_path / "x.safetensors", _model(), _metadata(), dtype="int3")


# ------------------------------------------------------------------------------------------------ content hash

def test_content_hash_is_canonical_and_covers_names_dtypes_shapes_and_metadata():
    meta = _metadata().to_dict()
    a = {"x": torch.arange(6, dtype=torch.float32), "y": torch.ones(2, dtype=torch.int64)}
    reference = content_sha256(a, meta)
    assert content_sha256({"y": a["y"], "x": a["x"]}, meta) == reference  # insertion order is irrelevant
    assert content_sha256(a, {**meta, "content_sha256": "f" * 64}) == reference  # the hash field is excluded
    assert content_sha256({"x": a["x"].reshape(2, 3), "y": a["y"]}, meta) != reference  # shape
    assert content_sha256({"x": a["x"].view(torch.int32), "y": a["y"]}, meta) != reference  # same bytes, dtype
    assert content_sha256({"z": a["x"], "y": a["y"]}, meta) != reference  # name
    changed = a["x"].clone()
    changed[5] = 5.0000005
    assert content_sha256({"x": changed, "y": a["y"]}, meta) != reference  # one value
    assert content_sha256(a, {**meta, "module": "Other"}) != reference  # metadata


# ------------------------------------------------------------------------------------------- tampering / damage

def test_modified_tensor_bytes_are_detected(saved):
    path, _, _ = saved
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # one bit of the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointModifiedError, match="modified or corrupted"):
        load_checkpoint(path)


def test_modified_metadata_is_detected(saved):
    path, _, _ = saved
    data, start, end = _header_bounds(path)
    header = data[start:end]
    assert b"LiverSegmentation" in header
    tampered = header.replace(b"LiverSegmentation", b"LungSegmentation0")  # same length: container stays valid
    path.write_bytes(data[:start] + tampered + data[end:])
    with pytest.raises(CheckpointModifiedError, match="modified or corrupted"):
        load_checkpoint(path)


def test_whole_file_checksum(saved):
    path, _, _ = saved
    good = sha256_file(path)
    assert good == hashlib.sha256(path.read_bytes()).hexdigest()
    load_checkpoint(path, expected_sha256="sha256:" + good.upper())
    with pytest.raises(CheckpointChecksumError) as info:
        load_checkpoint(path, expected_sha256="0" * 64)
    assert isinstance(info.value, ChecksumMismatchError) and isinstance(info.value, CheckpointError)
    assert good in str(info.value) and "0" * 64 in str(info.value)


@pytest.mark.parametrize("keep", [5, 100, -10])
def test_truncated_files_are_reported(saved, keep):
    path, _, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    with pytest.raises(CheckpointCorruptedError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "truncated" in message or "not a safetensors" in message


def test_trailing_garbage_and_random_files_are_reported(saved, tmp_path):
    path, _, _ = saved
    path.write_bytes(path.read_bytes() + b"extra")
    with pytest.raises(CheckpointCorruptedError, match="unexpected bytes"):
        load_checkpoint(path)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointCorruptedError, match="not a safetensors file"):
        load_checkpoint(garbage)


def test_legacy_torch_file_is_not_loaded_as_checkpoint(tmp_path):
    legacy = tmp_path / "model.pth"
    torch.save(_model().state_dict(), legacy)
    with pytest.raises(CheckpointCorruptedError, match="legacy PyTorch.*convert_legacy_checkpoint"):
        load_checkpoint(legacy)


def test_plain_safetensors_without_mednets_metadata(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(3)}, str(plain))
    with pytest.raises(CheckpointError, match="not a mednets checkpoint"):
        load_checkpoint(plain)


# --------------------------------------------------------------------------------------------- expectations

def test_weights_of_another_module_are_refused(saved):
    path, _, _ = saved
    with pytest.raises(WrongModuleError, match="'LiverSegmentation', not of 'AneurysmDetection'"):
        load_checkpoint(path, expected_module="AneurysmDetection")


def test_wrong_architecture_name_is_refused(saved):
    path, _, _ = saved
    with pytest.raises(ArchitectureMismatchError, match="'tiny_cnn', not 'unet3d'"):
        load_checkpoint(path, expected_architecture="unet3d")


def test_weights_that_do_not_fit_the_model_are_summarised(saved):
    path, _, _ = saved
    other = torch.nn.Sequential(torch.nn.Conv3d(1, 8, 3), torch.nn.BatchNorm3d(8), torch.nn.Conv3d(8, 2, 1),
                                torch.nn.Conv3d(2, 2, 1))
    with pytest.raises(ArchitectureMismatchError) as info:
        load_into_model(other, path)
    message = str(info.value)
    assert "tiny_cnn" in message
    assert "2 missing key(s): 3.bias, 3.weight" in message
    assert "0.weight (checkpoint (4, 1, 3, 3, 3) vs model (8, 1, 3, 3, 3))" in message
    assert "key(s) with different shapes" in message


def test_non_strict_loading_allows_missing_keys_but_not_shapes(saved):
    path, model, _ = saved
    bigger = torch.nn.Sequential(*_model(), torch.nn.Conv3d(2, 2, 1))
    load_into_model(bigger, path, strict=False)
    assert torch.equal(bigger[0].weight, model[0].weight)
    assert describe_state_dict_mismatch(bigger.state_dict(), model.state_dict(), strict=False) is None
    problem = describe_state_dict_mismatch(bigger.state_dict(), model.state_dict(), strict=True)
    assert problem == "2 missing key(s): 3.bias, 3.weight"


# ------------------------------------------------------------------------------------------------- metadata

def test_metadata_json_round_trip_and_validation():
    meta = _metadata(content_sha256="a" * 64)
    assert CheckpointMetadata.from_json(meta.to_json()) == meta
    newer = {**meta.to_dict(), "format_version": 99}
    with pytest.raises(CheckpointError, match="newer"):
        CheckpointMetadata.from_dict(newer)
    future = CheckpointMetadata.from_dict({**meta.to_dict(), "licence_url": "https://example.org"})
    assert future.extra["licence_url"] == "https://example.org"
    with pytest.raises(ValueError, match="RGB"):
        _metadata(class_colors=[(0, 0, 0), (300, 0, 0)])
    with pytest.raises(ValueError, match="one colour per class"):
        _metadata(class_colors=[(0, 0, 0)])
    with pytest.raises(ValueError, match="positive"):
        _metadata(spacing=(1.0, 0.0, 1.0))
    with pytest.raises(TypeError, match="JSON"):
        _metadata(extra={"array": torch.ones(2)}).to_json()


# ---------------------------------------------------------------------------------------------------- legacy

class _Exploit:
    """Pickles to a call of exec(): full unpickling of a file containing it would run code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def test_legacy_state_dict_is_converted(tmp_path):
    model = _model()
    legacy = tmp_path / "model.pt"
    torch.save({"epoch": 12, "state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, legacy)
    assert sorted(load_legacy_state_dict(legacy)) == sorted(model.state_dict())
    converted = tmp_path / "model.safetensors"
    meta = convert_legacy_checkpoint(legacy, converted, _metadata(), dtype=torch.float16)
    state_dict, loaded = load_checkpoint(converted)
    assert loaded == meta
    assert torch.equal(state_dict["0.weight"], model[0].weight.detach().half())


def test_legacy_pickle_with_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    malicious = tmp_path / "model.pth"
    torch.save({"weight": torch.ones(2), "payload": _Exploit(marker)}, malicious)
    with pytest.raises(LegacyCheckpointError, match="weights_only=True"):
        convert_legacy_checkpoint(malicious, tmp_path / "out.safetensors", _metadata())
    assert not marker.exists()
    assert not (tmp_path / "out.safetensors").exists()


def test_legacy_file_without_state_dict_is_refused(tmp_path):
    legacy = tmp_path / "odd.pt"
    torch.save({"epoch": 3, "notes": "nothing here"}, legacy)
    with pytest.raises(LegacyCheckpointError, match="no recognisable state dict|without a recognisable"):
        load_legacy_state_dict(legacy)


# ---------------------------------------------------------------------------------------------- file helpers

def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    with atomic_write(target, "w") as handle:
        handle.write("first")
    assert target.read_text() == "first"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    os.chmod(target, 0o600)
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as handle:
            handle.write("second, half written")
            raise RuntimeError("boom")
    assert target.read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.txt"]  # no temporary file left
    with atomic_write(target, "wb") as handle:
        handle.write(b"third")
    assert target.read_bytes() == b"third"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # permissions of the replaced file are kept
    with pytest.raises(ValueError, match="write modes"):
        with atomic_write(target, "a"):
            pass


def test_failed_save_keeps_previous_checkpoint(saved):
    path, _, _ = saved
    before = path.read_bytes()
    with pytest.raises(TypeError, match="tensor"):
        save_checkpoint(path, {"w": [1, 2, 3]}, _metadata())
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_sha256_helpers(tmp_path):
    path = tmp_path / "data.bin"
    payload = os.urandom(3 * (1 << 20) + 17)  # spans several read chunks
    path.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    assert sha256_file(path) == digest
    assert verify_sha256(path, digest.upper()) == digest
    with pytest.raises(ChecksumMismatchError, match="expected 0{64}"):
        verify_sha256(path, "0" * 64)
    with pytest.raises(ValueError, match="64 hexadecimal"):
        verify_sha256(path, "abc")
