"""Which AxillaryLNDetect detectors exist and how to load them.

A detector is a PAIR of mednets checkpoints of the same ``unet3d_3level`` network, one per stage (VOI localisation
and lymph-node detection), each recording its stage (``extra["stage"]``) and the :class:`AxillaryConfig` it was
trained with. Pairs are found as

* bundled: catalogue sources ``<name>-voi`` and ``<name>-ln`` in ``Resources/Models/AxillaryLNDetectModels.json``;
* a training output folder holding ``voi/`` and ``ln/`` run folders (``best.safetensors``, else ``last``);
* two files ``<name>-voi.safetensors`` / ``<name>-ln.safetensors`` side by side (user folder or anywhere).

Nothing here downloads anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Tuple, Union

from mednets.fileio import PathLike
from mednets.sources import ModelRegistry, ModelSource, user_models_dir

from .configs import DEFAULT_MODEL, MODULE_NAME, AxillaryConfig, config_from_dict, get_config

__all__ = ["CATALOGUE", "DetectorSource", "catalogue", "available_detectors", "find_detector", "detector_from_path",
           "load_detector", "LoadedDetector"]

CATALOGUE = Path(__file__).resolve().parents[1] / "Resources" / "Models" / "AxillaryLNDetectModels.json"
_STAGE_SUFFIX = {"voi": "-voi", "ln": "-ln"}


@dataclass(frozen=True)
class DetectorSource:
    """A named pair of stage checkpoints."""

    name: str
    voi: ModelSource
    ln: ModelSource
    description: str = ""
    license: str = ""

    @property
    def path(self) -> Optional[str]:  # the model selector selects by path
        return self.ln.path


def catalogue() -> ModelRegistry:
    return ModelRegistry.load(CATALOGUE) if CATALOGUE.is_file() else ModelRegistry()


def _bundled() -> List[DetectorSource]:
    registry = catalogue()
    sources = {source.name: source for source in registry.for_module(MODULE_NAME)}
    pairs = []
    for name, source in sorted(sources.items()):
        if name.endswith("-voi") and name[:-4] + "-ln" in sources:
            ln = sources[name[:-4] + "-ln"]
            pairs.append(DetectorSource(name[:-4], source, ln, ln.description, ln.license))
    return pairs


def _run_checkpoint(folder: Path) -> Optional[Path]:
    for stem in ("best", "last"):
        candidate = folder / f"{stem}.safetensors"
        if candidate.is_file():
            return candidate
    return None


def detector_from_path(path: PathLike) -> DetectorSource:
    """A detector from a training output folder (``voi/`` + ``ln/``) or from one file of a ``-voi``/``-ln`` pair."""
    path = Path(path).expanduser()
    if path.is_dir():
        voi, ln = _run_checkpoint(path / "voi"), _run_checkpoint(path / "ln")
        if voi is None or ln is None:
            raise ValueError(f"'{path}' is not an AxillaryLNDetect training folder: it needs voi/ and ln/ run folders "
                             "with best.safetensors or last.safetensors")
        name = path.name
    else:
        if not path.is_file():
            raise FileNotFoundError(f"weights file '{path}' does not exist")
        stem = path.name[:-len(".safetensors")] if path.name.endswith(".safetensors") else path.stem
        if stem.endswith("-voi") or stem.endswith("-ln"):
            name = stem.rsplit("-", 1)[0]
        else:
            raise ValueError(f"'{path.name}' is not one of a detector's pair of files; name them "
                             "'<name>-voi.safetensors' and '<name>-ln.safetensors' side by side")
        voi, ln = path.parent / f"{name}-voi.safetensors", path.parent / f"{name}-ln.safetensors"
        missing = [p.name for p in (voi, ln) if not p.is_file()]
        if missing:
            raise ValueError(f"the detector '{name}' needs both stage files; missing: {', '.join(missing)}")
    return DetectorSource(name, ModelSource(name=f"{name}-voi", path=str(Path(voi).resolve()), module=MODULE_NAME),
                          ModelSource(name=f"{name}-ln", path=str(Path(ln).resolve()), module=MODULE_NAME),
                          "user weights")


def available_detectors(extra_folders: Iterable[PathLike] = ()) -> List[DetectorSource]:
    """Bundled detectors first, then pairs in the user model folder and in ``extra_folders`` (training outputs)."""
    detectors = _bundled()
    names = {d.name for d in detectors}
    folders = [user_models_dir(), *extra_folders]
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        candidates = [folder] + sorted(p for p in folder.iterdir() if p.is_dir())
        candidates += sorted(folder.glob("*-ln.safetensors"))
        for candidate in candidates:
            try:
                detector = detector_from_path(candidate)
            except (ValueError, FileNotFoundError, OSError):
                continue
            if detector.name not in names:
                detectors.append(detector)
                names.add(detector.name)
    return detectors


def find_detector(name_or_path: Union[str, PathLike, DetectorSource, None] = None,
                  extra_folders: Iterable[PathLike] = ()) -> DetectorSource:
    """A detector by name (:func:`available_detectors`), by path, or the default (None)."""
    if isinstance(name_or_path, DetectorSource):
        return name_or_path
    wanted = DEFAULT_MODEL if name_or_path is None else str(name_or_path)
    for detector in available_detectors(extra_folders):
        if detector.name == wanted:
            return detector
    if Path(wanted).expanduser().exists():
        return detector_from_path(wanted)
    known = [d.name for d in available_detectors(extra_folders)]
    raise ValueError(f"no AxillaryLNDetect detector named {wanted!r}; available: {known or 'none'} (or give a "
                     "training folder or a '<name>-voi/-ln.safetensors' file)")


@dataclass
class LoadedDetector:
    name: str
    voi: "object"  # mednets.models.LoadedModel
    ln: "object"
    config: AxillaryConfig


def load_detector(detector: Union[str, PathLike, DetectorSource, None] = None, device="auto",
                  report: Optional[Callable[[str], None]] = None,
                  extra_folders: Iterable[PathLike] = ()) -> LoadedDetector:
    """Load and verify both stage checkpoints; the configuration comes from the LN checkpoint's metadata."""
    from mednets.models import load_model
    from mednets.sources import resolve

    from . import build_model

    source = find_detector(detector, extra_folders)
    loaded = {}
    for stage, model_source in (("voi", source.voi), ("ln", source.ln)):
        loaded[stage] = load_model(resolve(model_source), build_model, MODULE_NAME, device=device,
                                   expected_sha256=model_source.sha256, report=report)
        extra = loaded[stage].metadata.extra if isinstance(loaded[stage].metadata.extra, dict) else {}
        if extra.get("stage", stage) != stage:
            raise ValueError(f"the file given for the {stage.upper()} stage of '{source.name}' holds the "
                             f"{extra.get('stage')!r} stage network")
    stored = loaded["ln"].metadata.extra.get("config") if isinstance(loaded["ln"].metadata.extra, dict) else None
    config = config_from_dict(stored) if stored else get_config("paper")
    return LoadedDetector(source.name, loaded["voi"], loaded["ln"], config)
