"""Training folders of AxillaryLNDetect: CT volumes with sparse lymph-node annotations.

One case is ``<name>_image.nrrd`` (the CT in HU) and ``<name>_nodes.json``: ``{"centres_ras": [[r, a, s], ...],
"diameters_mm": [d, ...]}`` (the paper's annotation form: centre point and short-axis diameter per node). Writes are
atomic and never overwrite an existing case (a numbered name is chosen).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

from mednets.fileio import PathLike
from mednets.image import Volume

__all__ = ["write_annotated_case", "read_annotated_folder"]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", str(name)) or "case"


def write_annotated_case(folder: PathLike, name: str, volume: Volume, centres_ras: Sequence[Sequence[float]],
                         diameters_mm: Sequence[float]) -> Tuple[Path, Path]:
    """Write one annotated case; returns ``(image path, annotation path)``."""
    from mednets.fileio import atomic_output_path
    from mednets.io import write_volume

    centres = np.asarray(centres_ras, dtype=float).reshape(-1, 3)
    diameters = np.asarray(diameters_mm, dtype=float).reshape(-1)
    if len(centres) != len(diameters):
        raise ValueError(f"{len(centres)} centres but {len(diameters)} diameters")
    if np.any(diameters <= 0) or not np.all(np.isfinite(centres)):
        raise ValueError("annotations need finite centres and positive diameters")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    base, candidate, number = _safe(name), _safe(name), 1
    while (folder / f"{candidate}_image.nrrd").exists() or (folder / f"{candidate}_nodes.json").exists():
        number += 1
        candidate = f"{base}_{number}"
    image_path = write_volume(volume, folder / f"{candidate}_image.nrrd")
    nodes_path = folder / f"{candidate}_nodes.json"
    with atomic_output_path(nodes_path) as temporary:
        Path(temporary).write_text(json.dumps({"centres_ras": centres.tolist(), "diameters_mm": diameters.tolist()},
                                              indent=1))
    return image_path, nodes_path


def read_annotated_folder(folder: PathLike) -> List["AnnotatedCT"]:
    """Every complete case of a training folder, sorted by name."""
    from mednets.io import read_volume

    from .training import AnnotatedCT

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"the training folder '{folder}' does not exist")
    items = []
    for nodes_path in sorted(folder.glob("*_nodes.json"), key=lambda p: p.name[:-len("_nodes.json")]):
        name = nodes_path.name[:-len("_nodes.json")]
        image_path = folder / f"{name}_image.nrrd"
        if not image_path.is_file():
            continue
        try:
            data = json.loads(nodes_path.read_text())
            centres = np.asarray(data["centres_ras"], dtype=float).reshape(-1, 3)
            diameters = np.asarray(data["diameters_mm"], dtype=float).reshape(-1)
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"'{nodes_path.name}' is not a valid annotation file: {error}") from None
        items.append(AnnotatedCT(name, read_volume(image_path), centres, diameters))
    return items
