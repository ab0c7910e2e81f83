"""A module's network names and ``build_model``: named network classes with the paper's defaults.

Every module package exposes ``MODEL_NAMES`` and ``build_model(name, **overrides)`` (MODULE_CHECKLIST); a
:class:`NetworkCatalogue` gives both from a table, importing a network's file (and torch) only when it is built, so
importing the package stays cheap (Slicer loads the module before PyTorch may be installed).
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, Mapping, Optional, Tuple

__all__ = ["NetworkCatalogue"]


class NetworkCatalogue:
    """A module's ``MODEL_NAMES`` and ``build_model(name, **overrides)``: named network classes with paper defaults.

    Args:
        module: the module's name (for messages).
        package: the package holding the network files (``__name__`` of the module's Lib package).
        classes: ``{model name: (file name in package, class name)}``; files are imported on first use.
        defaults: constructor arguments every network gets unless overridden (the paper's configuration); a mapping
            ``{model name: {...}}`` gives per-network defaults instead when ``per_model_defaults`` is True.

    Names are matched case-insensitively, with ``-`` read as ``_``.
    """

    def __init__(self, module: str, package: str, classes: Mapping[str, Tuple[str, str]],
                 defaults: Optional[Mapping[str, Any]] = None, per_model_defaults: bool = False) -> None:
        self.module = module
        self.package = package
        self.classes = dict(classes)
        self.defaults = dict(defaults or {})
        self.per_model_defaults = per_model_defaults

    @property
    def names(self) -> Tuple[str, ...]:
        return tuple(self.classes)

    def network_class(self, name: str) -> type:
        """The class behind ``name``; ``ValueError`` listing the valid names for an unknown one."""
        key = str(name).strip().lower().replace("-", "_")
        if key not in self.classes:
            raise ValueError(f"unknown {self.module} model {name!r}; valid names: {', '.join(self.names)}")
        file_name, class_name = self.classes[key]
        return getattr(importlib.import_module(f".{file_name}", self.package), class_name)

    def defaults_for(self, name: str) -> Dict[str, Any]:
        key = str(name).strip().lower().replace("-", "_")
        return dict(self.defaults.get(key, {})) if self.per_model_defaults else dict(self.defaults)

    def build(self, name: str, **overrides: Any) -> Any:
        """The network ``name`` with its defaults updated by ``overrides`` (``TypeError`` for an unknown one)."""
        cls = self.network_class(name)
        return cls(**{**self.defaults_for(name), **overrides})
