"""Which AneurysmSeg weights exist and how to load them (bundled demo weights, the user's own, registered sources),
and the import of checkpoints written by the authors' official code.

Bundled weights are listed in ``Resources/Models/AneurysmSegModels.json`` (a :class:`mednets.sources.ModelRegistry`
catalogue with SHA-256s); the user's weights are mednets checkpoints of this module in the user model folder or in
training output folders. Nothing here downloads anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, List, Optional, Tuple, Union

import torch

from mednets.fileio import PathLike
from mednets.models import LoadedModel
from mednets.sources import ModelSource, ModuleModels

from .configs import DEFAULT_MODEL, MODULE_NAME, PAPER, AneurysmSegConfig, config_from_dict

__all__ = ["CATALOGUE", "MODELS", "available_models", "find_model", "load_aneurysmseg_model",
           "import_official_checkpoint"]

CATALOGUE = Path(__file__).resolve().parents[1] / "Resources" / "Models" / "AneurysmSegModels.json"
#: Bundled catalogue + local checkpoints of this module (mednets.sources.ModuleModels).
MODELS = ModuleModels(MODULE_NAME, CATALOGUE, default=DEFAULT_MODEL)


def available_models(extra_folders: Iterable[PathLike] = ()) -> List[ModelSource]:
    return MODELS.available(extra_folders)


def find_model(name_or_path=None, extra_folders: Iterable[PathLike] = ()) -> ModelSource:
    return MODELS.find(name_or_path, extra_folders)


def load_aneurysmseg_model(model=None, device: Union[str, torch.device] = "auto",
                           report: Optional[Callable[[str], None]] = None,
                           extra_folders: Iterable[PathLike] = ()) -> Tuple[LoadedModel, AneurysmSegConfig]:
    """Load verified weights and the configuration they were trained with (the paper's when none is stored)."""
    from . import build_model

    loaded, _ = MODELS.load(model, build_model, device=device, report=report, extra_folders=extra_folders)
    stored = loaded.metadata.extra.get("config") if isinstance(loaded.metadata.extra, dict) else None
    return loaded, (config_from_dict(stored) if stored else PAPER)


def import_official_checkpoint(path: PathLike, destination: PathLike, name: str = "") -> Path:
    """Convert a checkpoint of the official GLIA-Net code (``torch.save`` dict with ``model_state_dict``, GroupNorm
    model of the paper's configuration) into a verified mednets checkpoint of this module at ``destination``.

    The file is read with ``torch.load(weights_only=True)`` (no code runs). Raises ``ValueError`` for a file that is
    not such a checkpoint.
    """
    from mednets.checkpoints import save_checkpoint

    from . import build_model, convert_official_state_dict
    from .training import checkpoint_metadata

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - pickles with code, truncated files, other formats
        raise ValueError(f"'{path}' is not a PyTorch checkpoint that can be read safely: {error}") from None
    if not isinstance(state, dict):
        raise ValueError(f"'{path}' holds a {type(state).__name__}, not a state dict")
    try:
        converted = convert_official_state_dict(state)
        model = build_model("glia_net")
        model.load_state_dict(converted, strict=True)
    except (KeyError, RuntimeError) as error:
        raise ValueError(f"'{path}' is not a checkpoint of the official GLIA-Net (paper configuration): "
                         f"{error}") from None
    metadata = checkpoint_metadata(PAPER, {}, name or f"official GLIA-Net checkpoint {Path(path).name}")
    save_checkpoint(destination, model, metadata)
    return Path(destination)
