"""Model sources: where a module's weights come from, and a verified download cache.

A :class:`ModelSource` is either a local file (weights shipped with the extension, or imported by the user) or a URL
with its SHA-256, plus what the user needs to choose it (description, licence, module, architecture). A
:class:`ModelRegistry` holds named sources and is stored as a JSON catalogue::

    {"format_version": 1,
     "sources": [{"name": "lymph-nodes-demo", "path": "LymphNodesDemo.safetensors", "sha256": "...",
                  "module": "LymphNodeSegmentation", "architecture": "unet3d", "license": "Apache-2.0",
                  "description": "Demo weights trained on synthetic phantoms"},
                 {"name": "lymph-nodes-full", "url": "https://.../weights.safetensors", "sha256": "...", ...}]}

Relative paths in a catalogue are relative to the catalogue's folder.

:func:`resolve` turns a source into a local file: local paths are checked (and their SHA-256 verified when the source
gives one); URLs are downloaded once into the cache folder (:func:`default_cache_dir`, overridable with the
``MEDNETS_CACHE_DIR`` environment variable) with :mod:`urllib` only, written atomically, verified against the SHA-256
(a mismatching download is deleted and reported), with progress and cancellation. Nothing here touches the network
unless :func:`resolve` is called on a URL source that is not cached yet.

:func:`import_weights` copies a user-chosen weights file into the user model folder after checking that it loads as a
mednets checkpoint of the right module (legacy ``.pt``/``.pth`` files are converted with ``weights_only=True``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional

from mednets import __version__ as _MEDNETS_VERSION
from mednets.fileio import ChecksumMismatchError, PathLike, atomic_write, normalize_sha256, sha256_file
from mednets.progress import CancelCallback, ProgressCallback, check_cancel, report

__all__ = [
    "CACHE_ENV_VAR",
    "CATALOGUE_FORMAT_VERSION",
    "ModelSourceError",
    "DownloadError",
    "ModelSource",
    "ModelRegistry",
    "default_cache_dir",
    "user_models_dir",
    "cached_path",
    "resolve",
    "import_weights",
    "local_checkpoint_sources",
    "ModuleModels",
]

#: Environment variable that overrides the cache folder.
CACHE_ENV_VAR = "MEDNETS_CACHE_DIR"
#: Version of the JSON catalogue layout.
CATALOGUE_FORMAT_VERSION = 1

_CHUNK_SIZE = 1 << 20
_URL_SCHEMES = ("https", "http", "file")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class ModelSourceError(ValueError):
    """A model source or catalogue is invalid (missing fields, unknown name, unsupported URL, ...)."""


class DownloadError(OSError):
    """Downloading weights failed (network error, HTTP error, incomplete transfer)."""


def _safe_filename(name: str) -> str:
    cleaned = _SAFE_NAME.sub("_", name).strip("._")
    return cleaned or "weights"


@dataclass(frozen=True)
class ModelSource:
    """One named set of weights: a local ``path`` OR a ``url`` with its ``sha256``.

    Attributes:
        name: unique name in the registry (shown to the user).
        path: local file (absolute, or relative to the current folder; catalogues resolve relative paths).
        url: ``https://``, ``http://`` or ``file://`` address; requires ``sha256``.
        sha256: SHA-256 of the whole file (64 hex digits); optional for local paths, verified when given.
        license: licence of the weights (e.g. ``"CC-BY-4.0"``).
        description: one-line description for the user interface.
        module: the SlicerMedNets module the weights belong to.
        architecture: the network architecture name.
        filename: file name in the cache (default: the last component of the URL path).
        size: size in bytes, used for progress when the server does not send a length.
    """

    name: str
    path: Optional[str] = None
    url: Optional[str] = None
    sha256: Optional[str] = None
    license: str = ""
    description: str = ""
    module: str = ""
    architecture: str = ""
    filename: Optional[str] = None
    size: Optional[int] = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ModelSourceError("a model source needs a non-empty name")
        if (self.path is None) == (self.url is None):
            raise ModelSourceError(f"model source '{self.name}' must have exactly one of 'path' or 'url' "
                                   f"(got path={self.path!r}, url={self.url!r})")
        if self.path is not None:
            object.__setattr__(self, "path", str(self.path))
        if self.sha256 is not None:
            try:
                object.__setattr__(self, "sha256", normalize_sha256(self.sha256))
            except (TypeError, ValueError) as error:
                raise ModelSourceError(f"model source '{self.name}': {error}") from None
        if self.url is not None:
            scheme = urllib.parse.urlsplit(self.url).scheme.lower()
            if scheme not in _URL_SCHEMES:
                raise ModelSourceError(f"model source '{self.name}': unsupported URL scheme '{scheme}' in {self.url!r}; "
                                       f"use one of {', '.join(_URL_SCHEMES)}")
            if self.sha256 is None:
                raise ModelSourceError(f"model source '{self.name}': a URL source needs the file's sha256 so the "
                                       "download can be verified")
        if self.size is not None and (not isinstance(self.size, int) or self.size < 0):
            raise ModelSourceError(f"model source '{self.name}': size must be a non-negative integer, got {self.size!r}")

    @property
    def is_remote(self) -> bool:
        return self.url is not None

    @property
    def cache_filename(self) -> str:
        """File name used in the cache for a URL source."""
        if self.filename:
            return _safe_filename(self.filename)
        url_name = Path(urllib.parse.unquote(urllib.parse.urlsplit(self.url or "").path)).name
        return _safe_filename(url_name or self.name)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-compatible dictionary without the empty optional fields."""
        return {key: value for key, value in dataclasses.asdict(self).items() if value not in (None, "")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelSource":
        if not isinstance(data, Mapping):
            raise ModelSourceError(f"a model source must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ModelSourceError(f"model source {data.get('name', '?')!r} has unknown field(s) {unknown}; "
                                   f"known fields: {sorted(names)}")
        return cls(**dict(data))


class ModelRegistry:
    """Named :class:`ModelSource` entries, loaded from and saved to a JSON catalogue."""

    def __init__(self, sources: Iterable[ModelSource] = ()) -> None:
        self._sources: Dict[str, ModelSource] = {}
        for source in sources:
            self.add(source)

    def add(self, source: ModelSource, replace: bool = False) -> None:
        """Add ``source``; an existing name is an error unless ``replace``."""
        if not isinstance(source, ModelSource):
            raise TypeError(f"expected a ModelSource, got {type(source).__name__}")
        if source.name in self._sources and not replace:
            raise ModelSourceError(f"a model source named '{source.name}' already exists; pass replace=True to "
                                   "replace it")
        self._sources[source.name] = source

    def remove(self, name: str) -> ModelSource:
        return self._sources.pop(self.get(name).name)

    def get(self, name: str) -> ModelSource:
        try:
            return self._sources[name]
        except KeyError:
            known = ", ".join(sorted(self._sources)) or "none"
            raise KeyError(f"no model source named '{name}' (known: {known})") from None

    def names(self) -> List[str]:
        return list(self._sources)

    def for_module(self, module: str) -> List[ModelSource]:
        """The sources whose weights belong to ``module``."""
        return [source for source in self._sources.values() if source.module == module]

    def __contains__(self, name: object) -> bool:
        return name in self._sources

    def __iter__(self) -> Iterator[ModelSource]:
        return iter(list(self._sources.values()))

    def __len__(self) -> int:
        return len(self._sources)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModelRegistry) and list(self) == list(other)

    def to_dict(self, base_dir: Optional[PathLike] = None) -> Dict[str, Any]:
        """Catalogue dictionary; local paths inside ``base_dir`` are written relative to it."""
        entries = []
        for source in self:
            entry = source.to_dict()
            if source.path is not None and base_dir is not None:
                entry["path"] = _relative_if_inside(Path(source.path), Path(base_dir))
            entries.append(entry)
        return {"format_version": CATALOGUE_FORMAT_VERSION, "sources": entries}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base_dir: Optional[PathLike] = None) -> "ModelRegistry":
        """Build from a catalogue dictionary; relative local paths are resolved against ``base_dir`` when given."""
        if not isinstance(data, Mapping) or not isinstance(data.get("sources"), list):
            raise ModelSourceError("a model catalogue must be a JSON object with a 'sources' list")
        version = data.get("format_version", CATALOGUE_FORMAT_VERSION)
        if not isinstance(version, int) or version > CATALOGUE_FORMAT_VERSION:
            raise ModelSourceError(f"model catalogue format version {version!r} is newer than this mednets "
                                   f"({_MEDNETS_VERSION}) understands; update SlicerMedNets")
        registry = cls()
        for entry in data["sources"]:
            source = ModelSource.from_dict(entry)
            if source.path is not None and base_dir is not None and not Path(source.path).expanduser().is_absolute():
                source = dataclasses.replace(source, path=str(Path(base_dir) / source.path))
            registry.add(source)
        return registry

    @classmethod
    def load(cls, path: PathLike) -> "ModelRegistry":
        """Read a JSON catalogue; relative local paths are relative to the catalogue's folder."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ModelSourceError(f"model catalogue '{path}' is not valid JSON: {error}") from None
        return cls.from_dict(data, base_dir=path.parent.resolve())

    def save(self, path: PathLike) -> None:
        """Write the catalogue atomically (local paths inside the catalogue's folder are stored relative to it)."""
        path = Path(path)
        text = json.dumps(self.to_dict(base_dir=path.parent.resolve()), indent=2, ensure_ascii=False)
        with atomic_write(path, "w") as handle:
            handle.write(text + "\n")

    def resolve(self, name: str, cache_dir: Optional[PathLike] = None, progress: Optional[ProgressCallback] = None,
                cancel: Optional[CancelCallback] = None) -> Path:
        """:func:`resolve` the source called ``name``."""
        return resolve(self.get(name), cache_dir=cache_dir, progress=progress, cancel=cancel)


def _relative_if_inside(path: Path, base: Path) -> str:
    try:
        return path.expanduser().resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(path)


# ------------------------------------------------------------------------------------------------------------- cache

def default_cache_dir() -> Path:
    """The mednets cache folder: ``$MEDNETS_CACHE_DIR`` if set, else the platform's per-user cache folder.

    Linux: ``$XDG_CACHE_HOME/mednets`` (``~/.cache/mednets``); macOS: ``~/Library/Caches/mednets``;
    Windows: ``%LOCALAPPDATA%\\mednets\\Cache``.
    """
    override = os.environ.get(CACHE_ENV_VAR)
    if override:
        return Path(override).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local") / "mednets" / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "mednets"
    return Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / "mednets"


def user_models_dir(cache_dir: Optional[PathLike] = None) -> Path:
    """Folder where :func:`import_weights` keeps the user's own weights (``<cache>/user-models``)."""
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / "user-models"


def cached_path(source: ModelSource, cache_dir: Optional[PathLike] = None) -> Path:
    """Where a URL source is (or will be) stored: ``<cache>/models/<first 16 hex of sha256>/<file name>``."""
    if not source.is_remote:
        raise ModelSourceError(f"model source '{source.name}' is a local file; it has no cache location")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / "models" / str(source.sha256)[:16] / source.cache_filename


def _megabytes(count: int) -> str:
    return f"{count / (1 << 20):.1f} MB"


def _download(source: ModelSource, destination: Path, progress: Optional[ProgressCallback],
              cancel: Optional[CancelCallback], timeout: float) -> None:
    """Stream ``source.url`` into ``destination`` atomically, hashing on the way; nothing is left on failure."""
    url = str(source.url)
    request = urllib.request.Request(url, headers={"User-Agent": f"mednets/{_MEDNETS_VERSION}"})
    check_cancel(cancel)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        raise DownloadError(f"could not download '{source.name}' from {url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(f"could not download '{source.name}' from {url}: {reason}") from None
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else source.size
        digest = hashlib.sha256()
        received = 0
        report(progress, 0.0, f"Downloading {source.name}")
        with atomic_write(destination, "wb") as handle:
            while True:
                check_cancel(cancel)
                try:
                    chunk = response.read(_CHUNK_SIZE)
                except OSError as error:
                    raise DownloadError(f"downloading '{source.name}' from {url} failed after "
                                        f"{_megabytes(received)}: {error}") from None
                if not chunk:
                    break
                handle.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                size_text = _megabytes(received) + (f" / {_megabytes(total)}" if total else "")
                report(progress, received / total if total else 0.0, f"Downloading {source.name}: {size_text}")
            if total is not None and received != total:
                raise DownloadError(f"download of '{source.name}' from {url} is incomplete: received {received} of "
                                    f"{total} bytes; try again")
            actual = digest.hexdigest()
            if actual != source.sha256:
                raise ChecksumMismatchError(url, str(source.sha256), actual,
                                            "The downloaded file was deleted; the server may have changed the "
                                            "file or the transfer was corrupted.")
    report(progress, 1.0, f"Downloaded {source.name}")


def resolve(source: ModelSource, cache_dir: Optional[PathLike] = None, progress: Optional[ProgressCallback] = None,
            cancel: Optional[CancelCallback] = None, timeout: float = 60.0) -> Path:
    """Return a verified local file for ``source``.

    * Local path: must exist; its SHA-256 is verified when the source gives one.
    * URL: returned from the cache when present and intact (a cached file whose SHA-256 no longer matches is
      downloaded again); otherwise downloaded once into :func:`cached_path` (atomic, SHA-256 verified).

    Args:
        source: the :class:`ModelSource`.
        cache_dir: cache root (default :func:`default_cache_dir`).
        progress: ``progress(fraction, message)`` during the download.
        cancel: polled between chunks; cancelling raises :class:`~mednets.progress.OperationCancelled` and leaves
            no partial file.
        timeout: network timeout in seconds for connecting and for each read.

    Raises:
        FileNotFoundError (missing local file), :class:`~mednets.fileio.ChecksumMismatchError` (the file is not the
        expected one; a bad download is deleted), :class:`DownloadError`, ``OperationCancelled``.
    """
    if not isinstance(source, ModelSource):
        raise TypeError(f"expected a ModelSource, got {type(source).__name__}")
    if not source.is_remote:
        path = Path(str(source.path)).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"the weights of model source '{source.name}' were not found at '{path}'")
        if source.sha256 is not None:
            actual = sha256_file(path)
            if actual != source.sha256:
                raise ChecksumMismatchError(path, source.sha256, actual,
                                            f"The local weights of '{source.name}' were modified or replaced.")
        report(progress, 1.0, f"{source.name}: local weights")
        return path
    destination = cached_path(source, cache_dir)
    if destination.is_file():
        if sha256_file(destination) == source.sha256:
            report(progress, 1.0, f"{source.name}: cached")
            return destination
        destination.unlink()
    _download(source, destination, progress, cancel, timeout)
    return destination


# ------------------------------------------------------------------------------------------------------------ import

def _copy_verified(source_file: Path, destination: Path, expected_sha256: str,
                   progress: Optional[ProgressCallback], cancel: Optional[CancelCallback]) -> None:
    total = max(source_file.stat().st_size, 1)
    digest = hashlib.sha256()
    copied = 0
    with open(source_file, "rb") as reader, atomic_write(destination, "wb") as writer:
        for chunk in iter(lambda: reader.read(_CHUNK_SIZE), b""):
            check_cancel(cancel)
            writer.write(chunk)
            digest.update(chunk)
            copied += len(chunk)
            report(progress, copied / total, f"Copying {source_file.name}")
        if digest.hexdigest() != expected_sha256:
            raise ChecksumMismatchError(source_file, expected_sha256, digest.hexdigest(),
                                        "The file changed while it was being imported; try again.")


def import_weights(file: PathLike, name: Optional[str] = None, destination_dir: Optional[PathLike] = None,
                   expected_module: Optional[str] = None, expected_architecture: Optional[str] = None,
                   metadata: Any = None, registry: Optional[ModelRegistry] = None, replace: bool = False,
                   progress: Optional[ProgressCallback] = None,
                   cancel: Optional[CancelCallback] = None) -> ModelSource:
    """Validate a user-chosen weights file and copy it into the user model folder.

    * A mednets checkpoint (``.safetensors`` with mednets metadata) is fully verified with
      :func:`mednets.checkpoints.load_checkpoint` (container, content checksum, ``expected_module`` and
      ``expected_architecture``) and copied unchanged.
    * A legacy PyTorch file or a plain safetensors file needs ``metadata`` (a
      :class:`~mednets.checkpoints.CheckpointMetadata` or dict): it is read with ``weights_only=True`` and written as a
      mednets checkpoint.

    Args:
        file: the chosen file.
        name: source name (default: the file's stem); the copy is ``<destination_dir>/<name>.safetensors``.
        destination_dir: default :func:`user_models_dir`.
        registry: when given, the new source is added to it (``replace`` also applies there).
        replace: overwrite an existing different file / registry entry of the same name.

    Returns:
        A local :class:`ModelSource` with the copy's path and SHA-256, module, architecture and description.
    """
    from mednets import checkpoints

    file = Path(file)
    if not file.is_file():
        raise FileNotFoundError(f"weights file '{file}' does not exist")
    name = name or file.stem
    folder = Path(destination_dir) if destination_dir is not None else user_models_dir()
    destination = folder / (_safe_filename(name) + ".safetensors")
    if registry is not None and name in registry and not replace:
        raise ModelSourceError(f"a model source named '{name}' already exists; pass replace=True to replace it")
    check_cancel(cancel)
    try:
        checkpoints.read_checkpoint_metadata(file)
        is_mednets_checkpoint = True
    except checkpoints.CheckpointError:
        is_mednets_checkpoint = False

    if is_mednets_checkpoint:
        file_sha = sha256_file(file)
        _, meta = checkpoints.load_checkpoint(file, expected_sha256=file_sha, expected_module=expected_module,
                                              expected_architecture=expected_architecture)
        if destination.exists() and not replace and sha256_file(destination) != file_sha:
            raise ModelSourceError(f"'{destination}' already exists with other weights; choose another name or pass "
                                   "replace=True")
        _copy_verified(file, destination, file_sha, progress, cancel)
    else:
        if metadata is None:
            raise checkpoints.LegacyCheckpointError(
                f"'{file}' is not a mednets checkpoint; importing it needs the metadata that describes it "
                "(architecture, module, classes, ...)")
        state_dict = checkpoints.load_legacy_state_dict(file)
        if destination.exists() and not replace:
            raise ModelSourceError(f"'{destination}' already exists; choose another name or pass replace=True")
        meta = metadata if isinstance(metadata, checkpoints.CheckpointMetadata) else \
            checkpoints.CheckpointMetadata.from_dict(metadata)
        if expected_module is not None and meta.module != expected_module:
            raise checkpoints.WrongModuleError(f"the metadata given for '{file}' names module '{meta.module}', not "
                                               f"'{expected_module}'")
        if expected_architecture is not None and meta.architecture != expected_architecture:
            raise checkpoints.ArchitectureMismatchError(f"the metadata given for '{file}' names architecture "
                                                        f"'{meta.architecture}', not '{expected_architecture}'")
        meta = checkpoints.save_checkpoint(destination, state_dict, meta)
        file_sha = sha256_file(destination)
    report(progress, 1.0, f"Imported {name}")
    source = ModelSource(name=name, path=str(destination), sha256=file_sha, module=meta.module,
                         architecture=meta.architecture, description=meta.training_data or f"Imported from {file.name}",
                         license=str(meta.extra.get("license", "")))
    if registry is not None:
        registry.add(source, replace=replace)
    return source


def local_checkpoint_sources(folders: Iterable[PathLike], module: str) -> List[ModelSource]:
    """Local mednets checkpoints of ``module`` found in ``folders`` (``*.safetensors``, not recursive).

    Only the metadata block is read (fast, no tensors); files of other modules and files that are not mednets
    checkpoints are skipped. Training outputs (``best.safetensors`` in a run folder) are named after their folder.
    Missing folders are ignored. Sources come sorted by name.
    """
    from mednets.checkpoints import CheckpointError, read_checkpoint_metadata  # lazy: pulls in torch

    found: Dict[str, ModelSource] = {}
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.safetensors")):
            try:
                meta = read_checkpoint_metadata(path)
            except (CheckpointError, OSError, ValueError):
                continue
            if meta.module != module:
                continue
            name = f"{folder.name}/{path.stem}" if path.stem in ("best", "last") else path.stem
            training = meta.extra.get("training", {}) if isinstance(meta.extra, dict) else {}
            details = ", ".join(f"{k} {v:.3g}" for k, v in (training.get("metrics") or {}).items()
                                if isinstance(v, (int, float)))
            found.setdefault(name, ModelSource(
                name=name, path=str(path.resolve()), module=module, architecture=meta.architecture,
                description=meta.training_data or (f"trained weights ({details})" if details else "user weights")))
    return [found[name] for name in sorted(found)]


class ModuleModels:
    """The weights one module can use: its bundled catalogue, then local checkpoints (user folder, training outputs).

    Every module has the same three questions -- which models can the user pick, which one did they name, and load
    it -- so each module creates one of these instead of writing them again::

        MODELS = ModuleModels("OrganCombo", Path(__file__).parents[1] / "Resources/Models/OrganComboModels.json",
                              default="organcombo-pet-demo")

    Torch-free (only checkpoint metadata is read, lazily); :meth:`load` imports :mod:`mednets.models`.
    """

    def __init__(self, module: str, catalogue_path: PathLike, default: str) -> None:
        self.module = module
        self.catalogue_path = Path(catalogue_path)
        self.default = default

    def catalogue(self) -> ModelRegistry:
        """The bundled catalogue (empty when the file is missing, e.g. in a stripped-down install)."""
        return ModelRegistry.load(self.catalogue_path) if self.catalogue_path.is_file() else ModelRegistry()

    def available(self, extra_folders: Iterable[PathLike] = ()) -> List[ModelSource]:
        """Bundled and registered sources of the module first, then local checkpoints (user folder, ``extra_folders``);
        a local checkpoint never hides a catalogue entry of the same name."""
        sources = self.catalogue().for_module(self.module)
        names = {source.name for source in sources}
        for source in local_checkpoint_sources([user_models_dir(), *extra_folders], self.module):
            if source.name not in names:
                sources.append(source)
                names.add(source.name)
        return sources

    def find(self, name_or_path: Any = None, extra_folders: Iterable[PathLike] = ()) -> ModelSource:
        """A source by name (see :meth:`available`) or a checkpoint file path; ``None`` is the default model.

        Raises ``FileNotFoundError`` for a ``.safetensors`` path that does not exist and ``ValueError`` (listing the
        available names) for an unknown name.
        """
        if isinstance(name_or_path, ModelSource):
            return name_or_path
        wanted = self.default if name_or_path is None else str(name_or_path)
        available = self.available(extra_folders)
        for source in available:
            if source.name == wanted:
                return source
        path = Path(wanted).expanduser()
        if path.suffix == ".safetensors" or path.is_file():
            if not path.is_file():
                raise FileNotFoundError(f"weights file '{path}' does not exist")
            return ModelSource(name=path.stem, path=str(path.resolve()), module=self.module)
        known = [source.name for source in available]
        raise ValueError(f"no {self.module} model named {wanted!r}; available: {known or 'none'} "
                         "(or give a .safetensors path)")

    def load(self, model: Any, build_model: Any, device: Any = "auto", report: Any = None,
             extra_folders: Iterable[PathLike] = ()) -> Any:
        """Find ``model`` (name, path, source or None), resolve it to a verified local file and load it with
        :func:`mednets.models.load_model`; returns ``(LoadedModel, ModelSource)``."""
        from mednets.models import load_model  # lazy: pulls in torch

        source = self.find(model, extra_folders)
        loaded = load_model(resolve(source), build_model, self.module, device=device, expected_sha256=source.sha256,
                            report=report)
        return loaded, source
