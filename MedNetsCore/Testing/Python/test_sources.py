"""Tests of mednets.sources: the model registry, the verified download cache (file:// URLs only) and weight import."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request
from pathlib import Path

import pytest
import torch

from mednets.checkpoints import (CheckpointMetadata, CheckpointModifiedError, LegacyCheckpointError, WrongModuleError, load_checkpoint,
                                 save_checkpoint)
from mednets.fileio import ChecksumMismatchError, sha256_file
from mednets.progress import CancelToken, OperationCancelled
from mednets.sources import (CACHE_ENV_VAR, DownloadError, ModelRegistry, ModelSource, ModelSourceError, cached_path,
                             default_cache_dir, import_weights, resolve, user_models_dir)

_MODULE = "LymphNodeSegmentation"


def _metadata(module: str = _MODULE) -> CheckpointMetadata:
    return CheckpointMetadata(architecture="tiny_cnn", module=module, class_names=["background", "node"],
                              training_data="synthetic phantoms", extra={"license": "Apache-2.0"})


@pytest.fixture()
def weights(tmp_path) -> Path:
    """A 3 MB mednets checkpoint (several download chunks)."""
    path = tmp_path / "remote" / "node weights.safetensors"
    save_checkpoint(path, {"w": torch.arange(750_000, dtype=torch.float32)}, _metadata())
    return path


def _url_source(path: Path, name: str = "nodes", sha256: str = None) -> ModelSource:
    return ModelSource(name=name, url=path.as_uri(), sha256=sha256 or sha256_file(path), module=_MODULE,
                       architecture="tiny_cnn", license="CC-BY-4.0", description="test weights")


def _no_temporary_files(folder: Path) -> bool:
    return not any(p.name.endswith(".tmp") for p in folder.rglob("*"))


# ------------------------------------------------------------------------------------------------------- sources

def test_source_validation():
    digest = "ab" * 32
    with pytest.raises(ModelSourceError, match="exactly one of 'path' or 'url'"):
        ModelSource(name="x")
    with pytest.raises(ModelSourceError, match="exactly one of 'path' or 'url'"):
        ModelSource(name="x", path="a", url="https://h/a", sha256=digest)
    with pytest.raises(ModelSourceError, match="needs the file's sha256"):
        ModelSource(name="x", url="https://h/a.safetensors")
    with pytest.raises(ModelSourceError, match="unsupported URL scheme 'ftp'"):
        ModelSource(name="x", url="ftp://h/a", sha256=digest)
    with pytest.raises(ModelSourceError, match="64 hexadecimal"):
        ModelSource(name="x", path="a", sha256="123")
    with pytest.raises(ModelSourceError, match="non-empty name"):
        ModelSource(name=" ", path="a")
    source = ModelSource(name="x", url="https://h/dir/My%20Model.safetensors?download=1", sha256="AB" * 32)
    assert source.sha256 == digest
    assert source.cache_filename == "My_Model.safetensors"
    with pytest.raises(ModelSourceError, match=r"unknown field\(s\) \['sha'\]"):
        ModelSource.from_dict({"name": "x", "path": "a", "sha": digest})


def test_registry_round_trip_with_relative_paths(tmp_path):
    folder = tmp_path / "Resources"
    local = ModelSource(name="demo", path=str(folder / "models" / "demo.safetensors"), module=_MODULE,
                        description="demo weights")
    elsewhere = ModelSource(name="shared", path=str(tmp_path / "shared.safetensors"))
    remote = ModelSource(name="full", url="https://example.org/w.safetensors", sha256="cd" * 32, module="Other",
                         size=123)
    registry = ModelRegistry([local, elsewhere, remote])
    catalogue = folder / "models.json"
    registry.save(catalogue)
    data = json.loads(catalogue.read_text())
    assert data["format_version"] == 1
    assert data["sources"][0] == {"name": "demo", "path": "models/demo.safetensors", "module": _MODULE,
                                  "description": "demo weights"}
    assert data["sources"][1]["path"] == str(tmp_path / "shared.safetensors")
    loaded = ModelRegistry.load(catalogue)
    assert loaded == registry
    assert [s.name for s in loaded.for_module(_MODULE)] == ["demo"]
    assert "full" in loaded and len(loaded) == 3
    with pytest.raises(KeyError, match="no model source named 'missing'.*demo, full, shared"):
        loaded.get("missing")
    with pytest.raises(ModelSourceError, match="already exists"):
        loaded.add(local)
    loaded.add(ModelSource(name="demo", path="other.safetensors"), replace=True)
    assert loaded.get("demo").path == "other.safetensors"
    assert loaded.remove("full").name == "full" and "full" not in loaded


def test_catalogue_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ModelSourceError, match="not valid JSON"):
        ModelRegistry.load(bad)
    with pytest.raises(ModelSourceError, match="newer"):
        ModelRegistry.from_dict({"format_version": 7, "sources": []})
    with pytest.raises(ModelSourceError, match="'sources' list"):
        ModelRegistry.from_dict({"format_version": 1})


# ----------------------------------------------------------------------------------------------- local sources

def test_local_source_is_verified(weights):
    source = ModelSource(name="local", path=str(weights), sha256=sha256_file(weights))
    assert resolve(source) == weights
    tampered = ModelSource(name="local", path=str(weights), sha256="0" * 64)
    with pytest.raises(ChecksumMismatchError, match="modified or replaced"):
        resolve(tampered)
    with pytest.raises(FileNotFoundError, match="'gone'"):
        resolve(ModelSource(name="gone", path=str(weights.parent / "nothing.safetensors")))


# ------------------------------------------------------------------------------------------------- downloads

def test_download_once_into_cache_with_progress(weights, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    source = _url_source(weights)
    opened = []
    real_urlopen = urllib.request.urlopen

    def counting_urlopen(*args, **kwargs):
        opened.append(args[0].full_url)
        return real_urlopen(*args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", counting_urlopen)
    events = []
    path = resolve(source, cache_dir=cache, progress=lambda f, m: events.append((f, m)))
    assert path == cached_path(source, cache) == cache / "models" / source.sha256[:16] / "node_weights.safetensors"
    assert path.read_bytes() == weights.read_bytes()
    assert opened == [weights.as_uri()]
    fractions = [f for f, _ in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) >= 4
    assert any(0.0 < f < 1.0 for f in fractions)  # the length is known, so the bar moves during the download
    assert any("MB" in message for _, message in events)
    # Second resolve: served from the cache, even when the remote file is gone.
    weights.unlink()
    assert resolve(source, cache_dir=cache) == path
    assert opened == [weights.as_uri()]
    state_dict, meta = load_checkpoint(path, expected_sha256=source.sha256, expected_module=_MODULE)
    assert meta.module == _MODULE and state_dict["w"].shape == (750_000,)


def test_corrupted_cache_entry_is_downloaded_again(weights, tmp_path):
    cache = tmp_path / "cache"
    source = _url_source(weights)
    path = resolve(source, cache_dir=cache)
    path.write_bytes(b"damaged")
    assert resolve(source, cache_dir=cache) == path
    assert sha256_file(path) == source.sha256


def test_checksum_mismatch_removes_download(weights, tmp_path):
    cache = tmp_path / "cache"
    source = _url_source(weights, sha256="1" * 64)
    with pytest.raises(ChecksumMismatchError, match="The downloaded file was deleted") as info:
        resolve(source, cache_dir=cache)
    assert info.value.actual == sha256_file(weights)
    assert not cached_path(source, cache).exists()
    assert _no_temporary_files(cache)


def test_cancelled_download_leaves_nothing(weights, tmp_path):
    cache = tmp_path / "cache"
    token = CancelToken()

    def progress(fraction, message):
        if fraction > 0.3:
            token.request()

    with pytest.raises(OperationCancelled):
        resolve(_url_source(weights), cache_dir=cache, progress=progress, cancel=token)
    assert not cached_path(_url_source(weights), cache).exists()
    assert _no_temporary_files(cache)


def test_unreachable_url_is_a_download_error(tmp_path):
    missing = tmp_path / "missing.safetensors"
    source = ModelSource(name="missing", url=missing.as_uri(), sha256="2" * 64)
    with pytest.raises(DownloadError, match="could not download 'missing'"):
        resolve(source, cache_dir=tmp_path / "cache")


def test_cache_folder_environment_override(weights, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    assert user_models_dir() == tmp_path / "env-cache" / "user-models"
    path = resolve(_url_source(weights))
    assert path.parent.parent.parent == tmp_path / "env-cache"
    monkeypatch.delenv(CACHE_ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if os.name == "posix" and os.uname().sysname == "Linux":
        assert default_cache_dir() == tmp_path / "xdg" / "mednets"


def test_registry_resolve_by_name(weights, tmp_path):
    registry = ModelRegistry([_url_source(weights, name="remote")])
    path = registry.resolve("remote", cache_dir=tmp_path / "cache")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == registry.get("remote").sha256


# ---------------------------------------------------------------------------------------------------- import

def test_import_checkpoint_into_user_folder(weights, tmp_path):
    registry = ModelRegistry()
    destination = tmp_path / "user-models"
    source = import_weights(weights, name="my nodes", destination_dir=destination, expected_module=_MODULE,
                            registry=registry)
    copy = destination / "my_nodes.safetensors"
    assert source.path == str(copy) and copy.read_bytes() == weights.read_bytes()
    assert source.sha256 == sha256_file(weights)
    assert (source.module, source.architecture, source.license) == (_MODULE, "tiny_cnn", "Apache-2.0")
    assert registry.get("my nodes") == source
    assert resolve(source) == copy
    with pytest.raises(ModelSourceError, match="already exists"):
        import_weights(weights, name="my nodes", destination_dir=destination, registry=registry)


def test_import_refuses_invalid_files_without_copying(weights, tmp_path):
    destination = tmp_path / "user-models"
    with pytest.raises(WrongModuleError):
        import_weights(weights, destination_dir=destination, expected_module="AneurysmDetection")
    damaged = tmp_path / "damaged.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(CheckpointModifiedError, match="modified or corrupted"):
        import_weights(damaged, destination_dir=destination)
    legacy = tmp_path / "legacy.pth"
    torch.save({"w": torch.ones(3)}, legacy)
    with pytest.raises(LegacyCheckpointError, match="needs the metadata"):
        import_weights(legacy, destination_dir=destination)
    assert not destination.exists() or not any(destination.iterdir())


def test_import_converts_legacy_weights_with_metadata(tmp_path):
    legacy = tmp_path / "legacy.pth"
    torch.save({"model": {"module.w": torch.full((3,), 2.0)}}, legacy)
    source = import_weights(legacy, destination_dir=tmp_path / "user", metadata=_metadata(), expected_module=_MODULE)
    state_dict, meta = load_checkpoint(source.path, expected_sha256=source.sha256)
    assert torch.equal(state_dict["w"], torch.full((3,), 2.0))
    assert meta.module == _MODULE and source.architecture == "tiny_cnn"


def test_local_checkpoint_sources_lists_only_the_modules_checkpoints(tmp_path):
    import torch

    from mednets.checkpoints import CheckpointMetadata, save_checkpoint
    from mednets.sources import local_checkpoint_sources

    model = torch.nn.Linear(2, 1)
    run = tmp_path / "run-1"
    save_checkpoint(run / "best.safetensors", model,
                    CheckpointMetadata(architecture="lin", module="OrganCombo",
                                       extra={"training": {"metrics": {"dice": 0.91}}}))
    save_checkpoint(tmp_path / "mine.safetensors", model,
                    CheckpointMetadata(architecture="lin", module="OrganCombo", training_data="my 12 cases"))
    save_checkpoint(tmp_path / "other.safetensors", model, CheckpointMetadata(architecture="x", module="Other"))
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    sources = local_checkpoint_sources([tmp_path, run, tmp_path / "missing"], "OrganCombo")
    assert [s.name for s in sources] == ["mine", "run-1/best"]
    assert sources[0].description == "my 12 cases" and "dice 0.91" in sources[1].description
    assert all(Path(s.path).is_file() and s.architecture == "lin" for s in sources)


# ------------------------------------------------------------------------------------------------- module models
class _TinyNet(torch.nn.Module):
    def __init__(self, width: int = 2) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(width, 1)


def test_module_models_lists_finds_and_loads(tmp_path, monkeypatch):
    from mednets.sources import ModuleModels

    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))
    bundled = tmp_path / "Models" / "demo.safetensors"
    network = _TinyNet(3)
    save_checkpoint(bundled, network, CheckpointMetadata(architecture="tiny", architecture_config={"width": 3},
                                                          module=_MODULE))
    catalogue = tmp_path / "Models" / "Catalogue.json"
    ModelRegistry([ModelSource(name="demo", path=str(bundled), sha256=sha256_file(bundled), module=_MODULE),
                   ModelSource(name="other-module", path=str(bundled), module="SomethingElse")]).save(catalogue)
    runs = tmp_path / "runs" / "run1"
    save_checkpoint(runs / "best.safetensors", _TinyNet(3), CheckpointMetadata(
        architecture="tiny", architecture_config={"width": 3}, module=_MODULE, training_data="my cases"))
    models = ModuleModels(_MODULE, catalogue, default="demo")

    assert [source.name for source in models.available([runs])] == ["demo", "run1/best"]
    assert models.find().name == "demo"
    assert models.find("run1/best", [runs]).path == str((runs / "best.safetensors").resolve())
    assert models.find(str(bundled)).name == "demo"  # a path not in the catalogue under that name: its stem
    with pytest.raises(ValueError, match="no LymphNodeSegmentation model named 'nope'; available: \\['demo'\\]"):
        models.find("nope")
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        models.find(str(tmp_path / "missing.safetensors"))

    loaded, source = models.load(None, lambda name, **kwargs: _TinyNet(**kwargs), device="cpu")
    assert source.name == "demo"
    torch.testing.assert_close(loaded.network.layer.weight, network.layer.weight)
    empty = ModuleModels(_MODULE, tmp_path / "absent.json", default="demo")
    assert empty.available() == [] and len(empty.catalogue()) == 0
