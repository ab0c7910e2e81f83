"""Training folders of planning/daily pairs (torch-free).

Layout: ``<case>_planning.nrrd``, ``<case>_planning_label.nrrd``, ``<case>_daily.nrrd``, ``<case>_daily_label.nrrd``
(label values: 1 prostate, 2 seminal vesicles, 3 rectum, 4 bladder; others are ignored).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import List, Tuple

import numpy as np

from mednets.image import Volume
from mednets.io import read_volume, write_volume

__all__ = ["PAIR_SUFFIXES", "write_pair_case", "list_pair_cases", "read_pair_case"]

PAIR_SUFFIXES = ("_planning.nrrd", "_planning_label.nrrd", "_daily.nrrd", "_daily_label.nrrd")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "case"


def write_pair_case(folder, name: str, planning: Volume, planning_labels: np.ndarray, daily: Volume,
                    daily_labels: np.ndarray) -> List[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    base = _safe(name)
    paths = [folder / (base + s) for s in PAIR_SUFFIXES]
    write_volume(planning, paths[0])
    write_volume(planning.with_array(np.asarray(planning_labels, dtype=np.uint8)), paths[1])
    write_volume(daily, paths[2])
    write_volume(daily.with_array(np.asarray(daily_labels, dtype=np.uint8)), paths[3])
    return paths


def list_pair_cases(folder) -> List[str]:
    folder = Path(folder)
    names = sorted(p.name[:-len(PAIR_SUFFIXES[0])] for p in folder.glob("*" + PAIR_SUFFIXES[0]))
    return [n for n in names if all((folder / (n + s)).is_file() for s in PAIR_SUFFIXES)]


def read_pair_case(folder, name: str) -> Tuple[Volume, np.ndarray, Volume, np.ndarray]:
    folder = Path(folder)
    p, pl, d, dl = (read_volume(folder / (name + s)) for s in PAIR_SUFFIXES)
    return p, np.asarray(pl.array).astype(np.uint8), d, np.asarray(dl.array).astype(np.uint8)
