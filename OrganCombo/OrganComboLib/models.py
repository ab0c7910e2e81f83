"""Which OrganCombo weights exist and how to load them (bundled demo weights, the user's own, registered sources).

Bundled weights are listed in ``Resources/Models/OrganComboModels.json`` (a :class:`mednets.sources.ModelRegistry`
catalogue with SHA-256s) next to the module file; the user's weights are mednets checkpoints of this module in
:func:`mednets.sources.user_models_dir` (imported with :func:`mednets.sources.import_weights`) or in training output
folders. Nothing here downloads anything unless a URL source is resolved explicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, List, Optional, Tuple, Union

import torch

from mednets.fileio import PathLike
from mednets.models import LoadedModel
from mednets.sources import ModelRegistry, ModelSource, ModuleModels

from .configs import DEFAULT_MODEL, MODULE_NAME, OrganComboConfig, config_from_dict, get_config

__all__ = ["MODULE_NAME", "CATALOGUE", "DEFAULT_MODEL", "MODELS", "catalogue", "available_models", "find_model",
           "load_organcombo_model"]

CATALOGUE = Path(__file__).resolve().parents[1] / "Resources" / "Models" / "OrganComboModels.json"
#: Bundled catalogue + local checkpoints of this module (mednets.sources.ModuleModels).
MODELS = ModuleModels(MODULE_NAME, CATALOGUE, default=DEFAULT_MODEL)


def catalogue() -> ModelRegistry:
    """The bundled catalogue (empty when the file is missing, e.g. in a stripped-down install)."""
    return MODELS.catalogue()


def available_models(extra_folders: Iterable[PathLike] = ()) -> List[ModelSource]:
    """Bundled and registered sources of this module first, then local checkpoints (user folder, ``extra_folders``)."""
    return MODELS.available(extra_folders)


def find_model(name_or_path: Union[str, PathLike, ModelSource, None] = None,
               extra_folders: Iterable[PathLike] = ()) -> ModelSource:
    """A source by name (see :func:`available_models`) or a checkpoint file path; ``None`` is the default model."""
    return MODELS.find(name_or_path, extra_folders)


def load_organcombo_model(model: Union[str, PathLike, ModelSource, None] = None, device: Union[str, torch.device] = "auto",
                          report: Optional[Callable[[str], None]] = None,
                          extra_folders: Iterable[PathLike] = ()) -> Tuple[LoadedModel, OrganComboConfig]:
    """Load verified weights and rebuild the task configuration they were trained for."""
    from . import build_model

    loaded, source = MODELS.load(model, build_model, device=device, report=report, extra_folders=extra_folders)
    stored = loaded.metadata.extra.get("config") if isinstance(loaded.metadata.extra, dict) else None
    config = config_from_dict(stored) if stored else get_config("pet")
    if config.num_classes != _output_channels(loaded.network, config):
        raise ValueError(f"the weights '{source.name}' have {_output_channels(loaded.network, config)} output "
                         f"channels but their configuration names {config.num_classes} organs")
    return loaded, config


def _output_channels(network: torch.nn.Module, config: OrganComboConfig) -> int:
    return int(getattr(network, "out_channels", config.num_classes))
