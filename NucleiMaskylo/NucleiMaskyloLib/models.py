"""Which NucleiMaskylo weights exist and how to load them (bundled demo weights, the user's own, training runs).

Bundled weights are listed in ``Resources/Models/NucleiMaskyloModels.json`` (a :class:`mednets.sources.ModelRegistry`
catalogue with SHA-256s); nothing here downloads anything. Torch-free until :func:`load_nuclei_model` is called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Tuple

from mednets.sources import ModuleModels

__all__ = ["MODULE_NAME", "DEFAULT_MODEL", "CATALOGUE", "MODELS", "available_models", "find_model",
           "load_nuclei_model"]

MODULE_NAME = "NucleiMaskylo"
DEFAULT_MODEL = "nucleimaskylo-he-demo"
CATALOGUE = Path(__file__).resolve().parents[1] / "Resources" / "Models" / "NucleiMaskyloModels.json"
MODELS = ModuleModels(MODULE_NAME, CATALOGUE, DEFAULT_MODEL)


def available_models(extra_folders: Iterable = ()):
    return MODELS.available(extra_folders)


def find_model(name_or_path: Any = None, extra_folders: Iterable = ()):
    return MODELS.find(name_or_path, extra_folders)


def load_nuclei_model(model: Any = None, device: Any = "auto", report: Optional[Callable[[str], None]] = None,
                      extra_folders: Iterable = ()) -> Tuple[Any, dict]:
    """Load verified Mask R-CNN weights; returns ``(LoadedModel, pipeline settings stored with them)``."""
    from . import build_model

    loaded, _source = MODELS.load(model, build_model, device=device, report=report, extra_folders=extra_folders)
    extra = loaded.metadata.extra if isinstance(loaded.metadata.extra, dict) else {}
    return loaded, dict(extra.get("pipeline", {}))
