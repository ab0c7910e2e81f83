"""Loading a module's network from verified weights, once: the ``build_model`` + checkpoint + device step every module
shares.

A module package exposes ``build_model(name, **overrides)``; its checkpoints record the architecture name and the
overrides (:class:`mednets.checkpoints.CheckpointMetadata`). :func:`load_model` rebuilds the network from the
metadata, loads the verified weights (module, architecture and SHA-256 checks of :mod:`mednets.checkpoints`), puts it
in eval mode on the chosen device and keeps it in a small cache, so pressing Apply twice does not read the file twice.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Tuple, Union

import torch

from mednets.checkpoints import (ArchitectureMismatchError, CheckpointMetadata, load_state_dict_into,
                                 load_checkpoint)
from mednets.device import choose_device
from mednets.fileio import PathLike

__all__ = ["LoadedModel", "load_model", "clear_model_cache"]

BuildModel = Callable[..., torch.nn.Module]


@dataclass
class LoadedModel:
    """A network ready for inference, with the model card it came with.

    Attributes:
        network: the ``torch.nn.Module`` in eval mode on ``device``.
        metadata: the checkpoint's metadata (architecture, classes, spacing, normalisation, training data, ...).
        device: where the network is.
        path: the weights file.
    """

    network: torch.nn.Module
    metadata: CheckpointMetadata
    device: torch.device
    path: Path


_CACHE: "OrderedDict[Tuple[str, int, int, str, Optional[str]], LoadedModel]" = OrderedDict()
_CACHE_SIZE = 2
_LOCK = threading.Lock()


def clear_model_cache() -> None:
    """Forget the cached networks (frees their memory once no one else holds them)."""
    with _LOCK:
        _CACHE.clear()


def load_model(path: PathLike, build_model: BuildModel, module: str, device: Union[str, torch.device] = "auto",
               expected_sha256: Optional[str] = None, report: Optional[Callable[[str], None]] = None,
               use_cache: bool = True) -> LoadedModel:
    """Build the network a checkpoint describes and load its verified weights.

    Args:
        path: the ``.safetensors`` checkpoint.
        build_model: the module package's ``build_model(name, **overrides)``.
        module: the module name the weights must belong to (weights of another module are refused with a clear error).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``... (:func:`mednets.device.choose_device`; an
            unavailable device falls back to the CPU and ``report`` says so).
        expected_sha256: the published SHA-256 of the file (checked when given).
        report: receives plain-language device messages.
        use_cache: reuse a network loaded before from the same unchanged file on the same device.

    Raises:
        mednets.checkpoints.CheckpointError (a ValueError) for corrupted, tampered, foreign or mismatching weights;
        FileNotFoundError when the file is missing.
    """
    path = Path(path)
    stat = path.stat()
    chosen = choose_device(device, report=report)
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, str(chosen), expected_sha256)
    if use_cache:
        with _LOCK:
            if key in _CACHE:
                _CACHE.move_to_end(key)
                return _CACHE[key]
    state_dict, metadata = load_checkpoint(path, expected_sha256=expected_sha256, expected_module=module)
    try:
        network = build_model(metadata.architecture, **dict(metadata.architecture_config))
    except (TypeError, ValueError) as error:
        raise ArchitectureMismatchError(f"the weights in '{path}' describe architecture '{metadata.architecture}' "
                                        f"with {metadata.architecture_config}, which this version of {module} cannot "
                                        f"build: {error}") from None
    load_state_dict_into(network, state_dict, str(path), metadata)
    network = network.float().to(chosen).eval()
    loaded = LoadedModel(network=network, metadata=metadata, device=chosen, path=path)
    if use_cache:
        with _LOCK:
            _CACHE[key] = loaded
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
    return loaded

