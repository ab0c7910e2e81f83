"""Which AdaptiveRecontour weights exist and how to load them (bundled demo weights, the user's own, registered
sources). Bundled weights are listed in ``Resources/Models/AdaptiveRecontourModels.json`` (a
:class:`mednets.sources.ModelRegistry` catalogue with SHA-256s). Nothing here downloads anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, List, Optional, Tuple, Union

import torch

from mednets.fileio import PathLike
from mednets.models import LoadedModel, load_model
from mednets.sources import ModelRegistry, ModelSource, local_checkpoint_sources, resolve, user_models_dir

from .configs import DEFAULT_MODEL, MODULE_NAME, RecontourConfig, config_from_dict

__all__ = ["CATALOGUE", "catalogue", "available_models", "find_model", "load_recontour_model"]

CATALOGUE = Path(__file__).resolve().parents[1] / "Resources" / "Models" / "AdaptiveRecontourModels.json"


def catalogue() -> ModelRegistry:
    return ModelRegistry.load(CATALOGUE) if CATALOGUE.is_file() else ModelRegistry()


def available_models(extra_folders: Iterable[PathLike] = ()) -> List[ModelSource]:
    sources = catalogue().for_module(MODULE_NAME)
    names = {s.name for s in sources}
    for source in local_checkpoint_sources([user_models_dir(), *extra_folders], MODULE_NAME):
        if source.name not in names:
            sources.append(source)
            names.add(source.name)
    return sources


def find_model(name_or_path: Union[str, PathLike, ModelSource, None] = None,
               extra_folders: Iterable[PathLike] = ()) -> ModelSource:
    if isinstance(name_or_path, ModelSource):
        return name_or_path
    wanted = DEFAULT_MODEL if name_or_path is None else str(name_or_path)
    for source in available_models(extra_folders):
        if source.name == wanted:
            return source
    path = Path(wanted).expanduser()
    if path.suffix == ".safetensors" or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"weights file '{path}' does not exist")
        return ModelSource(name=path.stem, path=str(path.resolve()), module=MODULE_NAME)
    known = [s.name for s in available_models(extra_folders)]
    raise ValueError(f"no AdaptiveRecontour model named {wanted!r}; available: {known or 'none'} "
                     "(or give a .safetensors path)")


def load_recontour_model(model: Union[str, PathLike, ModelSource, None] = None,
                         device: Union[str, torch.device] = "auto", report: Optional[Callable[[str], None]] = None,
                         extra_folders: Iterable[PathLike] = ()) -> Tuple[LoadedModel, RecontourConfig]:
    """Load verified weights and the configuration they were trained with (stored in the checkpoint)."""
    from . import build_model

    source = find_model(model, extra_folders)
    loaded = load_model(resolve(source), build_model, MODULE_NAME, device=device, expected_sha256=source.sha256,
                        report=report)
    extra = loaded.metadata.extra if isinstance(loaded.metadata.extra, dict) else {}
    stored = extra.get("config")
    config = config_from_dict(stored) if stored else RecontourConfig(model=loaded.metadata.architecture)
    return loaded, config
