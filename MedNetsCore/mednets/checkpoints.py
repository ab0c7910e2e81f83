"""mednets checkpoints: safetensors weights with verified, self-describing metadata.

A mednets checkpoint is a `safetensors <https://huggingface.co/docs/safetensors>`_ file (no pickle, so loading it can
never run code) whose header metadata holds, under the key ``"mednets"``, a JSON block described by
:class:`CheckpointMetadata`: the architecture name and its ``build_model`` keyword arguments, the SlicerMedNets module
the weights belong to, the training spacing (array-axis order), the intensity normalisation, the class names and
colours, a description of the training data, the mednets version, the creation time and ``content_sha256``.

``content_sha256`` is the SHA-256 of a canonical serialisation of the content: for every tensor in sorted-name order its
name, dtype, shape and raw bytes, followed by the metadata JSON (sorted keys, compact separators) without the
``content_sha256`` field itself. :func:`load_checkpoint` recomputes it, so a checkpoint whose tensors or metadata were
edited after saving (or damaged in a way the container format does not notice) is refused with
:class:`CheckpointModifiedError`. It is an integrity check, not a signature: who needs authenticity pins the whole-file
SHA-256 (``expected_sha256``, as the model registry does).

Legacy PyTorch files (``.pt``/``.pth``) are accepted only when ``torch.load(path, weights_only=True)`` accepts them,
i.e. when they hold nothing but tensors and plain containers; :func:`convert_legacy_checkpoint` turns them into mednets
checkpoints. Full unpickling is never used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from mednets import __version__ as _MEDNETS_VERSION
from mednets.fileio import ChecksumMismatchError, PathLike, atomic_write, normalize_sha256

__all__ = [
    "CHECKPOINT_FORMAT_VERSION",
    "METADATA_KEY",
    "CheckpointError",
    "CheckpointCorruptedError",
    "CheckpointModifiedError",
    "CheckpointChecksumError",
    "WrongModuleError",
    "ArchitectureMismatchError",
    "LegacyCheckpointError",
    "CheckpointMetadata",
    "state_dict_of",
    "unwrap_model",
    "content_sha256",
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint_metadata",
    "describe_state_dict_mismatch",
    "load_into_model",
    "load_state_dict_into",
    "load_legacy_state_dict",
    "convert_legacy_checkpoint",
]

#: Version of the metadata layout written by :func:`save_checkpoint`; files of a newer version are refused.
CHECKPOINT_FORMAT_VERSION = 1
#: Key of the JSON block inside the safetensors ``__metadata__`` header.
METADATA_KEY = "mednets"

_HASH_DOMAIN = b"mednets-checkpoint-content-v1\x00"
_MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors reference implementation refuses larger headers too
_LEGACY_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "network_weights", "net", "weights", "params")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(ValueError):
    """Base class of every checkpoint problem; the message says what is wrong with which file."""


class CheckpointCorruptedError(CheckpointError):
    """The file is not a readable safetensors checkpoint: truncated, damaged, or another kind of file."""


class CheckpointModifiedError(CheckpointError):
    """The tensors or metadata no longer match the checkpoint's ``content_sha256``: the file was modified or corrupted."""


class CheckpointChecksumError(CheckpointError, ChecksumMismatchError):
    """The whole-file SHA-256 differs from the one published for these weights (registry or model card)."""


class WrongModuleError(CheckpointError):
    """The checkpoint belongs to another SlicerMedNets module."""


class ArchitectureMismatchError(CheckpointError):
    """The checkpoint was made for another network architecture (name or tensor names/shapes differ)."""


class LegacyCheckpointError(CheckpointError):
    """A legacy PyTorch file was refused: it holds more than tensors, so reading it would need full unpickling."""


def _utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _as_float_tuple(values: Optional[Sequence[Any]], what: str) -> Optional[Tuple[float, ...]]:
    if values is None:
        return None
    result = tuple(float(v) for v in values)
    if not all(math.isfinite(v) and v > 0 for v in result):
        raise ValueError(f"{what} must contain positive finite numbers, got {list(values)}")
    return result


@dataclass
class CheckpointMetadata:
    """Everything needed to rebuild, verify and use a set of weights, stored as JSON inside the checkpoint.

    Attributes:
        architecture: name of the network architecture (the name ``build_model`` knows it by).
        architecture_config: keyword arguments for ``build_model`` (channels, classes, depth, ...); JSON values only.
        module: the SlicerMedNets module the weights belong to (e.g. ``"LymphNodeSegmentation"``).
        spacing: voxel size in mm the network was trained at, in ARRAY-AXIS order (K, J, I for 3D), or ``None``.
        intensity_normalization: how input intensities are normalised, e.g. ``{"method": "zscore"}`` or
            ``{"method": "window", "min": -160, "max": 240}``.
        class_names: name of each output class, index = label value (index 0 is usually ``"background"``).
        class_colors: RGB colour of each class, components in [0, 1], same indexing as ``class_names``.
        training_data: free-text description of the training data (data set, number of cases, licence).
        extra: any further JSON-serialisable information (validation scores, patch size, iteration, ...).
        mednets_version: version of mednets that wrote the file.
        created: creation time, ISO 8601 in UTC.
        format_version: metadata layout version (:data:`CHECKPOINT_FORMAT_VERSION`).
        content_sha256: filled in by :func:`save_checkpoint`; see the module documentation.
    """

    architecture: str = ""
    architecture_config: Dict[str, Any] = field(default_factory=dict)
    module: str = ""
    spacing: Optional[Tuple[float, ...]] = None
    intensity_normalization: Dict[str, Any] = field(default_factory=dict)
    class_names: List[str] = field(default_factory=list)
    class_colors: List[Tuple[float, float, float]] = field(default_factory=list)
    training_data: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)
    mednets_version: str = _MEDNETS_VERSION
    created: str = field(default_factory=_utc_now)
    format_version: int = CHECKPOINT_FORMAT_VERSION
    content_sha256: str = ""

    def __post_init__(self) -> None:
        self.spacing = _as_float_tuple(self.spacing, "CheckpointMetadata.spacing")
        self.class_names = [str(name) for name in self.class_names]
        colors = []
        for color in self.class_colors:
            rgb = tuple(float(c) for c in color)
            if len(rgb) != 3 or not all(0.0 <= c <= 1.0 for c in rgb):
                raise ValueError(f"each class colour must be 3 RGB components in [0, 1], got {list(color)}")
            colors.append(rgb)
        self.class_colors = colors
        if self.class_names and self.class_colors and len(self.class_names) != len(self.class_colors):
            raise ValueError(f"class_names has {len(self.class_names)} entries but class_colors has "
                             f"{len(self.class_colors)}; give one colour per class")

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-compatible dictionary (tuples become lists)."""
        return json.loads(self.to_json())

    def to_json(self, indent: Optional[int] = None) -> str:
        """Serialise to JSON with sorted keys (NaN/Infinity refused: they are not JSON)."""
        try:
            return json.dumps(dataclasses.asdict(self), sort_keys=True, indent=indent, allow_nan=False,
                              ensure_ascii=False)
        except (TypeError, ValueError) as error:
            raise TypeError(f"checkpoint metadata must contain JSON values only (str, number, bool, None, lists, "
                            f"dicts with string keys): {error}") from error

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CheckpointMetadata":
        """Build from a dictionary; unknown keys are kept in ``extra``; a newer ``format_version`` is refused."""
        if not isinstance(data, Mapping):
            raise TypeError(f"checkpoint metadata must be a JSON object, got {type(data).__name__}")
        version = data.get("format_version", CHECKPOINT_FORMAT_VERSION)
        if not isinstance(version, int) or version > CHECKPOINT_FORMAT_VERSION:
            raise CheckpointError(f"checkpoint metadata format version {version!r} is newer than this mednets "
                                  f"({_MEDNETS_VERSION}) understands (up to {CHECKPOINT_FORMAT_VERSION}); "
                                  "update SlicerMedNets")
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        unknown = {k: v for k, v in data.items() if k not in names}
        if unknown:
            known["extra"] = {**unknown, **dict(known.get("extra") or {})}
        return cls(**known)

    @classmethod
    def from_json(cls, text: str) -> "CheckpointMetadata":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise CheckpointError(f"checkpoint metadata is not valid JSON: {error}") from error
        return cls.from_dict(data)


# ------------------------------------------------------------------------------------------------ state dictionaries

def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """Return the network inside DistributedDataParallel / DataParallel / ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, torch.nn.Module):
            model = model._orig_mod
        else:
            return model


def state_dict_of(model_or_state_dict: Union[torch.nn.Module, Mapping[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """The tensors to store: a module's (unwrapped) ``state_dict()`` or a mapping of names to tensors."""
    if isinstance(model_or_state_dict, torch.nn.Module):
        items = unwrap_model(model_or_state_dict).state_dict()
    elif isinstance(model_or_state_dict, Mapping):
        items = model_or_state_dict
    else:
        raise TypeError(f"expected a torch.nn.Module or a mapping of names to tensors, "
                        f"got {type(model_or_state_dict).__name__}")
    result: Dict[str, torch.Tensor] = {}
    for name, value in items.items():
        if not isinstance(name, str):
            raise TypeError(f"state dict keys must be strings, got {name!r}")
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state dict entry '{name}' is a {type(value).__name__}, not a tensor")
        result[name] = value
    return result


def _strip_wrapper_prefixes(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Remove a ``module.``/``_orig_mod.`` prefix shared by every key (DDP/DataParallel/compile artefacts)."""
    changed = True
    while changed and state_dict:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(key.startswith(prefix) for key in state_dict):
                state_dict = {key[len(prefix):]: value for key, value in state_dict.items()}
                changed = True
    return state_dict


def _storage_dtype(dtype: Union[None, str, torch.dtype]) -> Optional[torch.dtype]:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    aliases = {"float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
               "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
               "float32": torch.float32, "fp32": torch.float32, "float": torch.float32}
    key = str(dtype).lower().replace("torch.", "")
    if key not in aliases:
        raise ValueError(f"unsupported checkpoint storage dtype {dtype!r}; use one of {sorted(aliases)}")
    return aliases[key]


def _tensor_bytes(tensor: torch.Tensor) -> memoryview:
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())


def _canonical_metadata_bytes(metadata: Mapping[str, Any]) -> bytes:
    without_hash = {k: v for k, v in metadata.items() if k != "content_sha256"}
    return json.dumps(without_hash, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def content_sha256(state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]) -> str:
    """SHA-256 over the tensors (sorted by name: name, dtype, shape, bytes) and the metadata without its hash field.

    Every item is length-prefixed, so no two different contents serialise to the same byte stream.
    """
    digest = hashlib.sha256(_HASH_DOMAIN)

    def add(chunk: Union[bytes, memoryview]) -> None:
        digest.update(len(chunk).to_bytes(8, "little"))
        digest.update(chunk)

    for name in sorted(state_dict):
        tensor = state_dict[name]
        add(json.dumps([name, str(tensor.dtype).replace("torch.", ""), list(tensor.shape)]).encode("utf-8"))
        add(_tensor_bytes(tensor))
    add(_canonical_metadata_bytes(metadata))
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------------------ saving

def save_checkpoint(path: PathLike, model_or_state_dict: Union[torch.nn.Module, Mapping[str, torch.Tensor]],
                    metadata: Union[CheckpointMetadata, Mapping[str, Any]],
                    dtype: Union[None, str, torch.dtype] = None) -> CheckpointMetadata:
    """Write a mednets checkpoint (safetensors + verified metadata) atomically.

    Args:
        path: destination, conventionally ``*.safetensors``.
        model_or_state_dict: a ``torch.nn.Module`` (DDP/compile wrappers are removed) or a ``{name: tensor}`` mapping.
        metadata: a :class:`CheckpointMetadata` or a dictionary of its fields; ``content_sha256`` is recomputed.
        dtype: storage dtype of floating-point tensors, e.g. ``torch.float16`` / ``"float16"`` to halve the size of
            demo weights (integer buffers such as BatchNorm's ``num_batches_tracked`` are never converted).
            ``None`` keeps every tensor's dtype.

    Returns:
        The metadata as written, with ``content_sha256`` filled in.
    """
    meta = metadata if isinstance(metadata, CheckpointMetadata) else CheckpointMetadata.from_dict(metadata)
    storage = _storage_dtype(dtype)
    tensors: Dict[str, torch.Tensor] = {}
    for name, tensor in state_dict_of(model_or_state_dict).items():
        tensor = tensor.detach().to("cpu")
        if storage is not None and tensor.is_floating_point():
            tensor = tensor.to(storage)
        tensors[name] = tensor.contiguous().clone()  # own storage: safetensors refuses tensors sharing memory
    meta = dataclasses.replace(meta, content_sha256="")
    meta_dict = meta.to_dict()
    meta = dataclasses.replace(meta, content_sha256=content_sha256(tensors, meta_dict))

    from safetensors.torch import save as safetensors_save

    payload = safetensors_save(tensors, metadata={"format": "pt", METADATA_KEY: meta.to_json()})
    with atomic_write(path, "wb") as handle:
        handle.write(payload)
    return meta


# ----------------------------------------------------------------------------------------------------------- loading

def _safetensors_header_length(head: bytes) -> Optional[int]:
    """Header length if ``head`` (the first 9+ bytes) starts like a safetensors file, else ``None``."""
    if len(head) < 9 or head[8:9] != b"{":
        return None
    length = int.from_bytes(head[:8], "little")
    return length if 2 <= length <= _MAX_HEADER_BYTES else None


def _looks_like_legacy_torch(head: bytes) -> bool:
    return head.startswith(b"PK\x03\x04") or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


def _parse_header(data: bytes, path: Path) -> Dict[str, Any]:
    """Validate the safetensors container (header and size) and return its header, with clear errors."""
    size = len(data)
    header_length = _safetensors_header_length(data[:9])
    if header_length is None:
        if _looks_like_legacy_torch(data[:8]):
            raise CheckpointCorruptedError(
                f"'{path}' is not a safetensors file: it looks like a legacy PyTorch file (torch.save). Convert it "
                "with mednets.checkpoints.convert_legacy_checkpoint (it is read with weights_only=True).")
        if size < 9:
            raise CheckpointCorruptedError(f"'{path}' is not a safetensors checkpoint: only {size} bytes long "
                                           "(truncated or empty)")
        raise CheckpointCorruptedError(f"'{path}' is not a safetensors file (it does not start with a safetensors "
                                       "header)")
    if 8 + header_length > size:
        raise CheckpointCorruptedError(f"'{path}' is truncated: the header needs {8 + header_length} bytes but the "
                                       f"file has {size}; download or copy it again")
    try:
        header = json.loads(data[8:8 + header_length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointCorruptedError(f"'{path}' is not a safetensors file or its header is corrupted "
                                       "(the header is not valid JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointCorruptedError(f"'{path}' is not a safetensors file (its header is not a JSON object)")
    data_end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise CheckpointCorruptedError(f"'{path}' has a corrupted safetensors header (entry '{name}')")
        data_end = max(data_end, offsets[1])
    expected_size = 8 + header_length + data_end
    if size < expected_size:
        raise CheckpointCorruptedError(f"'{path}' is truncated: {size} bytes instead of {expected_size}; "
                                       "download or copy it again")
    if size > expected_size:
        raise CheckpointCorruptedError(f"'{path}' is corrupted: {size - expected_size} unexpected bytes after the "
                                       "tensor data")
    return header


def _metadata_from_header(header: Mapping[str, Any], path: Path) -> Dict[str, Any]:
    raw = (header.get("__metadata__") or {}).get(METADATA_KEY)
    if raw is None:
        raise CheckpointError(f"'{path}' is a safetensors file but not a mednets checkpoint (it has no "
                              f"'{METADATA_KEY}' metadata); import it with "
                              "mednets.checkpoints.convert_legacy_checkpoint and the metadata it needs")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise CheckpointModifiedError(f"'{path}' was modified or corrupted: its mednets metadata is not valid "
                                      "JSON") from None
    if not isinstance(meta, dict):
        raise CheckpointModifiedError(f"'{path}' was modified or corrupted: its mednets metadata is not a JSON object")
    return meta


def _check_expectations(meta: CheckpointMetadata, path: Path, expected_module: Optional[str],
                        expected_architecture: Optional[str]) -> None:
    if expected_module is not None and meta.module != expected_module:
        raise WrongModuleError(f"'{path}' holds weights of the module '{meta.module or '(unspecified)'}', "
                               f"not of '{expected_module}'; choose weights made for '{expected_module}'")
    if expected_architecture is not None and meta.architecture != expected_architecture:
        raise ArchitectureMismatchError(f"'{path}' holds weights of the architecture "
                                        f"'{meta.architecture or '(unspecified)'}', not '{expected_architecture}'")


def read_checkpoint_metadata(path: PathLike) -> CheckpointMetadata:
    """Read only the metadata of a checkpoint (fast: tensors are not read and NOT verified; use for listings)."""
    path = Path(path)
    header: Any = None
    with open(path, "rb") as handle:
        head = handle.read(9)
        length = _safetensors_header_length(head)
        if length is not None:
            try:
                header = json.loads((head[8:] + handle.read(length - 1)).decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                header = None
    if not isinstance(header, dict):
        raise CheckpointCorruptedError(f"'{path}' is not a safetensors checkpoint or its header is corrupted")
    return CheckpointMetadata.from_dict(_metadata_from_header(header, path))


def load_checkpoint(path: PathLike, expected_sha256: Optional[str] = None, expected_module: Optional[str] = None,
                    expected_architecture: Optional[str] = None,
                    map_location: Union[str, torch.device, None] = "cpu",
                    ) -> Tuple[Dict[str, torch.Tensor], CheckpointMetadata]:
    """Load and verify a mednets checkpoint.

    Checks, in order: the safetensors container (truncation, garbage, legacy pickle files), the whole-file SHA-256
    when ``expected_sha256`` is given, the ``content_sha256`` of tensors + metadata, then the expected module and
    architecture names.

    Args:
        path: the ``.safetensors`` file.
        expected_sha256: SHA-256 of the whole file as published (registry, model card); ``None`` skips this check.
        expected_module: refuse weights belonging to another SlicerMedNets module.
        expected_architecture: refuse weights of another architecture.
        map_location: device for the returned tensors (``"cpu"`` by default; ``None`` also means CPU).

    Returns:
        ``(state_dict, metadata)``; tensors keep their stored dtype (e.g. float16 for compact demo weights;
        ``model.load_state_dict`` converts them).

    Raises:
        CheckpointCorruptedError, CheckpointChecksumError, CheckpointModifiedError, WrongModuleError,
        ArchitectureMismatchError (all :class:`CheckpointError`, a ``ValueError``); ``FileNotFoundError``.
    """
    path = Path(path)
    data = path.read_bytes()
    header = _parse_header(data, path)
    if expected_sha256 is not None:
        expected = normalize_sha256(expected_sha256)
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise CheckpointChecksumError(path, expected, actual,
                                          "Download or copy the weights again, or check which file was chosen.")
    raw_meta = _metadata_from_header(header, path)
    from safetensors import SafetensorError
    from safetensors.torch import load as safetensors_load

    try:
        state_dict = safetensors_load(data)
    except SafetensorError as error:
        raise CheckpointCorruptedError(f"'{path}' is corrupted and cannot be read as safetensors: {error}") from None
    del data
    stored_hash = raw_meta.get("content_sha256", "")
    if content_sha256(state_dict, raw_meta) != stored_hash:
        raise CheckpointModifiedError(f"'{path}' was modified or corrupted after it was saved: its tensors or "
                                      "metadata do not match the content checksum recorded in it. Do not use it; "
                                      "download or copy the original again")
    meta = CheckpointMetadata.from_dict(raw_meta)
    _check_expectations(meta, path, expected_module, expected_architecture)
    if map_location is not None and torch.device(map_location).type != "cpu":
        state_dict = {name: tensor.to(map_location) for name, tensor in state_dict.items()}
    return state_dict, meta


def _summarise(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def describe_state_dict_mismatch(model_state: Mapping[str, torch.Tensor], checkpoint_state: Mapping[str, torch.Tensor],
                                 strict: bool = True) -> Optional[str]:
    """Describe why ``checkpoint_state`` does not fit ``model_state``; ``None`` when it fits.

    Mis-shaped tensors always count; missing and unexpected keys only when ``strict``.
    """
    missing = sorted(set(model_state) - set(checkpoint_state))
    unexpected = sorted(set(checkpoint_state) - set(model_state))
    misshaped = sorted(name for name in set(model_state) & set(checkpoint_state)
                       if tuple(model_state[name].shape) != tuple(checkpoint_state[name].shape))
    problems = []
    if strict and missing:
        problems.append(f"{len(missing)} missing key(s): {_summarise(missing)}")
    if strict and unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_summarise(unexpected)}")
    if misshaped:
        details = [f"{name} (checkpoint {tuple(checkpoint_state[name].shape)} vs model "
                   f"{tuple(model_state[name].shape)})" for name in misshaped]
        problems.append(f"{len(misshaped)} key(s) with different shapes: {_summarise(details)}")
    return "; ".join(problems) if problems else None


def load_state_dict_into(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str,
                         meta: Optional[CheckpointMetadata] = None, strict: bool = True) -> None:
    """Load an already verified ``state_dict`` into ``model`` (wrappers removed), or explain why it does not fit.

    Raises :class:`ArchitectureMismatchError` naming ``source`` (and the checkpoint's architecture when ``meta`` is
    given) and summarising the missing, unexpected (when ``strict``) and mis-shaped keys. The model is untouched then.
    """
    target = unwrap_model(model)
    problem = describe_state_dict_mismatch(target.state_dict(), state_dict, strict=strict)
    if problem is not None:
        described = "" if meta is None else (f" (architecture '{meta.architecture or 'unspecified'}', config "
                                             f"{meta.architecture_config})")
        raise ArchitectureMismatchError(
            f"the weights in '{source}'{described} do not fit the model {type(target).__name__}: {problem}")
    target.load_state_dict(state_dict, strict=strict)


def load_into_model(model: torch.nn.Module, path: PathLike, expected_sha256: Optional[str] = None,
                    expected_module: Optional[str] = None, expected_architecture: Optional[str] = None,
                    strict: bool = True) -> CheckpointMetadata:
    """Load a verified checkpoint into ``model`` (wrappers removed; tensors converted to the model's dtype/device).

    Raises :class:`ArchitectureMismatchError` naming the checkpoint's architecture and summarising the missing,
    unexpected (when ``strict``) and mis-shaped keys when the weights do not fit the model. Returns the metadata.
    """
    state_dict, meta = load_checkpoint(path, expected_sha256=expected_sha256, expected_module=expected_module,
                                       expected_architecture=expected_architecture)
    load_state_dict_into(model, state_dict, str(path), meta, strict=strict)
    return meta


# ------------------------------------------------------------------------------------------------------------ legacy

def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _is_tensor_mapping(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def _extract_state_dict(obj: Any, path: Path) -> Dict[str, torch.Tensor]:
    if _is_tensor_mapping(obj):
        return _strip_wrapper_prefixes(dict(obj))
    if isinstance(obj, Mapping):
        for key in _LEGACY_CONTAINER_KEYS:
            if _is_tensor_mapping(obj.get(key)):
                return _strip_wrapper_prefixes(dict(obj[key]))
        keys = ", ".join(repr(k) for k in list(obj)[:10])
        raise LegacyCheckpointError(f"'{path}' holds a dictionary without a recognisable state dict (keys: {keys}); "
                                    "save the weights with torch.save(model.state_dict(), path)")
    raise LegacyCheckpointError(f"'{path}' holds a {type(obj).__name__}, not a state dict of tensors")


def load_legacy_state_dict(path: PathLike) -> Dict[str, torch.Tensor]:
    """Read tensors from a legacy PyTorch file with ``torch.load(weights_only=True)`` only (never full unpickling).

    Accepts a plain state dict, or a dictionary holding one under a usual key (``state_dict``, ``model_state_dict``,
    ``model``, ``network_weights``, ...); a ``module.`` prefix left by DataParallel/DDP is removed. Plain safetensors
    files without mednets metadata are read too.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(9)
    if _safetensors_header_length(head) is not None:
        # Not a torch.save file: try plain safetensors (e.g. weights published without mednets metadata).
        data = path.read_bytes()
        _parse_header(data, path)
        from safetensors import SafetensorError
        from safetensors.torch import load as safetensors_load

        try:
            return _extract_state_dict(safetensors_load(data), path)
        except SafetensorError as error:
            raise CheckpointCorruptedError(f"'{path}' is corrupted: {error}") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError, RuntimeError, ...: all mean "refused"
        raise LegacyCheckpointError(
            f"refused to read '{path}': torch.load(weights_only=True) rejected it ({_first_line(error)}). "
            "Either it is not a PyTorch weights file, or it contains Python objects besides tensors, which mednets "
            "never unpickles because that can run arbitrary code. Re-save the weights as a state dict (torch.save(model.state_dict(), path)) "
            "or as safetensors.") from None
    return _extract_state_dict(obj, path)


def convert_legacy_checkpoint(source: PathLike, destination: PathLike,
                              metadata: Union[CheckpointMetadata, Mapping[str, Any]],
                              dtype: Union[None, str, torch.dtype] = None) -> CheckpointMetadata:
    """Convert a legacy ``.pt``/``.pth`` state dict (or a plain safetensors file) into a mednets checkpoint.

    The source is read with :func:`load_legacy_state_dict` (``weights_only=True``); ``metadata`` supplies what the
    legacy file cannot (architecture, module, classes, ...). Returns the metadata written.
    """
    return save_checkpoint(destination, load_legacy_state_dict(source), metadata, dtype=dtype)
