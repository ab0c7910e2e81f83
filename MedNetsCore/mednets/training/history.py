"""Training history: the loss and learning-rate curve and the validation metrics, saved as JSON, CSV and PNG."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from mednets.fileio import PathLike, atomic_write

__all__ = ["TrainingHistory", "plot_history"]


@dataclass
class TrainingHistory:
    """What happened during a training run.

    Attributes:
        train: one row per logging window: ``{"iteration": i, "loss": mean loss over the window, "lr": lr}``
            (``iteration`` is the number of optimizer steps done at the end of the window).
        validation: one row per validation: ``{"iteration": i, <metric>: value, ...}``.
    """

    train: List[Dict[str, float]] = field(default_factory=list)
    validation: List[Dict[str, float]] = field(default_factory=list)

    def add_train(self, iteration: int, loss: float, lr: float) -> None:
        self.train.append({"iteration": int(iteration), "loss": float(loss), "lr": float(lr)})

    def add_validation(self, iteration: int, metrics: Mapping[str, float]) -> None:
        if "iteration" in metrics:
            raise ValueError("a validation metric may not be called 'iteration'")
        self.validation.append({"iteration": int(iteration), **{k: float(v) for k, v in metrics.items()}})

    def metric_names(self) -> List[str]:
        names: List[str] = []
        for row in self.validation:
            names.extend(key for key in row if key != "iteration" and key not in names)
        return names

    def to_dict(self) -> Dict[str, Any]:
        return {"train": [dict(row) for row in self.train], "validation": [dict(row) for row in self.validation]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainingHistory":
        return cls(train=[dict(row) for row in data.get("train", [])],
                   validation=[dict(row) for row in data.get("validation", [])])

    def save_json(self, path: PathLike) -> None:
        with atomic_write(path, "w") as handle:
            json.dump(self.to_dict(), handle, indent=1)

    @classmethod
    def load_json(cls, path: PathLike) -> "TrainingHistory":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def to_csv(self) -> str:
        """One row per iteration that has a training log or a validation: ``iteration, loss, lr, <metrics...>``."""
        metrics = self.metric_names()
        rows: Dict[int, Dict[str, Any]] = {}
        for row in self.train:
            rows.setdefault(int(row["iteration"]), {}).update(loss=row["loss"], lr=row["lr"])
        for row in self.validation:
            rows.setdefault(int(row["iteration"]), {}).update({k: v for k, v in row.items() if k != "iteration"})
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["iteration", "loss", "lr", *metrics])
        for iteration in sorted(rows):
            values = rows[iteration]
            writer.writerow([iteration, *(repr(values[k]) if k in values else "" for k in ["loss", "lr", *metrics])])
        return buffer.getvalue()

    def save_csv(self, path: PathLike) -> None:
        with atomic_write(path, "w", newline="") as handle:
            handle.write(self.to_csv())


def plot_history(history: TrainingHistory, path: PathLike, title: Optional[str] = None) -> Path:
    """Plot the training loss (and learning rate) and the validation metrics against iterations into a PNG.

    Uses matplotlib's object API with the Agg canvas (imported lazily), so no GUI backend is selected or changed
    (safe inside 3D Slicer). The file is written atomically. Returns ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 4), dpi=100)
    FigureCanvasAgg(figure)
    loss_axes, metric_axes = figure.subplots(1, 2)
    if history.train:
        iterations = [row["iteration"] for row in history.train]
        loss_axes.plot(iterations, [row["loss"] for row in history.train], color="tab:blue", label="training loss")
        lr_axes = loss_axes.twinx()
        lr_axes.plot(iterations, [row["lr"] for row in history.train], color="tab:gray", linestyle="--",
                     linewidth=1, label="learning rate")
        lr_axes.set_ylabel("learning rate")
        lr_axes.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    loss_axes.set_xlabel("iteration")
    loss_axes.set_ylabel("loss")
    loss_axes.set_title("Training")
    loss_axes.grid(True, alpha=0.3)
    for name in history.metric_names():
        points = [(row["iteration"], row[name]) for row in history.validation if name in row]
        metric_axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=name)
    metric_axes.set_xlabel("iteration")
    metric_axes.set_title("Validation")
    metric_axes.grid(True, alpha=0.3)
    if history.validation:
        metric_axes.legend(loc="best", fontsize="small")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png")
    return path
