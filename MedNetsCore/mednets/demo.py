"""What a module's batch demo returns, and the pictures the demo writes (``make demo``).

Every module package may provide ``<Module>Lib/demo.py`` with ``run_demo(output_dir, progress=None) -> DemoResult``:
it runs the module's Logic on bundled sample data with bundled demo weights, writes its result files into
``output_dir`` and returns what it measured plus a few 2D panels (an image slice with the result overlaid).
``Scripts/run_demo.py`` collects the results of all modules present into ``summary.png`` and ``summary.json``.
Rendering uses matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from mednets.fileio import PathLike, atomic_output_path, atomic_write
from mednets.metrics.surface import surface_voxels

__all__ = ["DemoPanel", "DemoResult", "DemoUnavailable", "overlay_labels", "write_summary"]

RGB = Tuple[float, float, float]


@dataclass
class DemoPanel:
    """One picture of the summary: an RGB image ``(H, W, 3)`` uint8 with a title (row 0 is drawn at the top).

    ``aspect`` is the physical height / width of one pixel (e.g. slice spacing / pixel spacing for a coronal view).
    """

    title: str
    rgb: np.ndarray
    aspect: float = 1.0


@dataclass
class DemoResult:
    """The outcome of one module's demo.

    Attributes:
        module: the module name (e.g. ``"OrganCombo"``).
        summary: one line saying what ran on what.
        metrics: the numbers measured (e.g. ``{"mean Dice": 0.91}``), as plain floats.
        panels: pictures for ``summary.png``.
        files: the result files written.
        seconds: wall time of the demo.
    """

    module: str
    summary: str
    metrics: Dict[str, float] = field(default_factory=dict)
    panels: List[DemoPanel] = field(default_factory=list)
    files: List[Path] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> Dict[str, object]:
        return {"module": self.module, "summary": self.summary,
                "metrics": {name: float(value) for name, value in self.metrics.items()},
                "files": [str(path) for path in self.files], "seconds": round(float(self.seconds), 2)}


def _window(image: np.ndarray, window: Optional[Tuple[float, float]]) -> np.ndarray:
    """Map ``image`` to [0, 1] with the window (low, high); default: the 1st to 99th percentile."""
    image = np.asarray(image, dtype=np.float64)
    finite = image[np.isfinite(image)]
    if window is None:
        low, high = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
    else:
        low, high = window
    if not high > low:
        high = low + 1.0
    return np.clip((np.nan_to_num(image, nan=low) - low) / (high - low), 0.0, 1.0)


def overlay_labels(image: np.ndarray, labels: Optional[np.ndarray] = None,
                   colors: Optional[Mapping[int, RGB]] = None, window: Optional[Tuple[float, float]] = None,
                   opacity: float = 0.45, outline_only: bool = False) -> np.ndarray:
    """A greyscale 2D image with a label map blended on top, as an RGB uint8 array ``(H, W, 3)``.

    Args:
        image: 2D array (row 0 at the top of the picture).
        labels: integer label map of the same shape (0 = background), or ``None``.
        colors: ``{label: (r, g, b)}`` in [0, 1]; labels without a colour get a fixed palette colour.
        window: intensity window (low, high); default the 1st-99th percentile of ``image``.
        opacity: blending weight of the label colours.
        outline_only: draw only the label borders (for comparing a result with a reference).
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"overlay_labels needs a 2D image, got shape {image.shape}")
    grey = _window(image, window)
    rgb = np.repeat(grey[..., np.newaxis], 3, axis=2)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != image.shape:
            raise ValueError(f"labels shape {labels.shape} differs from image shape {image.shape}")
        palette = [(0.9, 0.2, 0.2), (0.2, 0.8, 0.2), (0.2, 0.4, 0.95), (0.95, 0.8, 0.1), (0.8, 0.3, 0.9),
                   (0.1, 0.85, 0.85)]
        for index, value in enumerate(v for v in np.unique(labels) if v != 0):
            mask = labels == value
            if outline_only:
                mask = surface_voxels(mask)
            color = np.asarray((colors or {}).get(int(value), palette[index % len(palette)]), dtype=np.float64)
            alpha = 1.0 if outline_only else opacity
            rgb[mask] = (1.0 - alpha) * rgb[mask] + alpha * color
    return np.round(rgb * 255).astype(np.uint8)


class DemoUnavailable(RuntimeError):
    """A module's demo cannot run in this checkout for a known reason (e.g. its demo weights are not built yet).

    The batch demo reports it as skipped, with the reason, instead of failing; any other exception is a failure.
    """


def write_summary(results: Sequence[DemoResult], output_dir: PathLike, title: str = "SlicerMedNets demo",
                  skipped: Optional[Mapping[str, str]] = None) -> Tuple[Path, Path]:
    """Write ``summary.json`` (all results, and ``skipped``: module -> reason) and ``summary.png`` (one row of panels
    per module, metrics in the row title; skipped modules named at the bottom) into ``output_dir``, atomically.
    Returns both paths."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    json_path = output / "summary.json"
    with atomic_write(json_path, "w") as handle:
        json.dump({"title": title, "modules": [result.to_dict() for result in results],
                   "skipped": dict(skipped or {})}, handle, indent=2)

    columns = max([len(result.panels) for result in results] + [1])
    rows = max(len(results), 1)
    figure = plt.figure(figsize=(max(3.4 * columns, 6.8), 4.2 * rows), layout="constrained")
    figure.suptitle(title, fontsize=12, fontweight="bold")
    row_figures = figure.subfigures(rows, 1, squeeze=False)[:, 0] if rows > 1 else [figure.subfigures(1, 1)]
    for row_figure, result in zip(row_figures, results):
        numbers = ", ".join(f"{name} {value:.3g}" for name, value in list(result.metrics.items())[:4]
                            if isinstance(value, (int, float)) and math.isfinite(value))
        row_figure.suptitle(f"{result.module}: {numbers}", fontsize=10)
        axes = row_figure.subplots(1, columns, squeeze=False)[0]
        for column, axis in enumerate(axes):
            axis.axis("off")
            if column < len(result.panels):
                panel = result.panels[column]
                axis.imshow(panel.rgb, interpolation="nearest", aspect=panel.aspect)
                axis.set_title(panel.title, fontsize=8)
    if not results:
        row_figures[0].text(0.5, 0.5, "no module demo ran", ha="center", va="center")
    if skipped:
        figure.text(0.01, 0.001, "not run: " + "; ".join(f"{name} ({reason})" for name, reason in skipped.items()),
                    fontsize=7, ha="left", va="bottom", wrap=True)
    png_path = output / "summary.png"
    with atomic_output_path(png_path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    plt.close(figure)
    return png_path, json_path
