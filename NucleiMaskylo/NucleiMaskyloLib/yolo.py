"""The YOLO branch of MASKYLO (YOLOv11 detection, YOLOv8-seg instance segmentation) through ``ultralytics``.

``ultralytics`` is licensed under AGPL-3.0. SlicerMedNets never vendors or imports it at module load: it is an OPTIONAL
dependency, installed only on demand and only with the user's consent (:func:`ensure_ultralytics`, through
:func:`mednets.dependencies.ensure_requirements`). Without it, NucleiMaskylo runs the Mask R-CNN branch alone.

Facts used (verified on this project's machines, see shared VERIFIED_FACTS): models are built from their yaml
(``YOLO("yolo11n-seg.yaml")``, random weights, no download), ``YOLO_OFFLINE=1`` keeps it offline, and training on CPU
needs ``plots=False, amp=False, workers=0, device="cpu"``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from .detections import Detections

__all__ = ["ULTRALYTICS_REQUIREMENT", "LICENCE_NOTE", "ultralytics_available", "ensure_ultralytics", "build_yolo",
           "predict_yolo", "write_yolo_dataset", "train_yolo"]

ULTRALYTICS_REQUIREMENT = "ultralytics>=8.3"
LICENCE_NOTE = ("The YOLO branch uses the ultralytics package, licensed under AGPL-3.0. It is optional and is installed "
                "only if you agree; the Mask R-CNN branch works without it.")


def ultralytics_available() -> bool:
    return importlib.util.find_spec("ultralytics") is not None


def ensure_ultralytics(confirm: Optional[Callable[[str], bool]] = None, installer=None):
    """Import ``ultralytics`` (offline mode), installing it first only if the user agrees (inside Slicer).

    Raises :class:`mednets.dependencies.MissingDependencyError` with the pip command when it is missing and cannot or
    may not be installed.
    """
    from mednets.dependencies import ensure_requirements

    os.environ.setdefault("YOLO_OFFLINE", "1")
    if not ultralytics_available():
        ask = None
        if confirm is not None:
            ask = lambda question: confirm(f"{LICENCE_NOTE}\n\n{question}")  # noqa: E731
        ensure_requirements([ULTRALYTICS_REQUIREMENT], requester="NucleiMaskylo (YOLO branch)", confirm=ask,
                            installer=installer)
    import ultralytics

    return ultralytics


def build_yolo(name: str = "yolov8n-seg", weights: Optional[str] = None):
    """A YOLO model from its yaml name (random weights, nothing downloaded) or from a local ``.pt`` file."""
    from . import YOLO_MODEL_NAMES

    ultralytics = ensure_ultralytics()
    if weights:
        if not Path(weights).is_file():
            raise FileNotFoundError(f"YOLO weights '{weights}' do not exist (nothing is downloaded)")
        return ultralytics.YOLO(str(weights))
    stem = str(name).removesuffix(".yaml")
    if stem not in YOLO_MODEL_NAMES:
        raise ValueError(f"unknown YOLO model {name!r}; valid names: {', '.join(YOLO_MODEL_NAMES)}")
    return ultralytics.YOLO(f"{stem}.yaml")


def predict_yolo(model, image_rgb: np.ndarray, score_threshold: float = 0.05, device: str = "cpu",
                 max_det: int = 300) -> Detections:
    """Run a YOLO model on one RGB uint8 tile (H, W, 3); returns boxes, scores and (for -seg models) masks."""
    image = np.asarray(image_rgb)
    height, width = image.shape[:2]
    results = model.predict(image[..., ::-1].copy(), conf=score_threshold, device=device, verbose=False,
                            imgsz=max(32, int(np.ceil(max(height, width) / 32) * 32)), max_det=max_det,
                            retina_masks=True)
    result = results[0]
    boxes = result.boxes.xyxy.cpu().numpy() if result.boxes is not None else np.zeros((0, 4))
    scores = result.boxes.conf.cpu().numpy() if result.boxes is not None else np.zeros(0)
    masks = None
    branch = "yolo_det"
    if getattr(result, "masks", None) is not None:
        masks = result.masks.data.cpu().numpy() > 0.5
        if masks.shape[1:] != (height, width):
            import torch

            masks = torch.nn.functional.interpolate(torch.from_numpy(masks[None].astype(np.float32)),
                                                    size=(height, width), mode="nearest")[0].numpy() > 0.5
        branch = "yolo_seg"
    elif hasattr(model, "task") and model.task == "segment":
        masks = np.zeros((0, height, width), bool)
        branch = "yolo_seg"
    return Detections(boxes, scores, masks, [branch] * len(boxes))


def _polygon(mask: np.ndarray) -> Optional[np.ndarray]:
    from skimage import measure

    contours = measure.find_contours(np.pad(mask, 1).astype(np.float32), 0.5)
    if not contours:
        return None
    contour = max(contours, key=len) - 1.0  # (row, col), undo the padding
    return np.clip(contour[:, ::-1], 0, None)  # (x, y)


def write_yolo_dataset(folder, images: Sequence[np.ndarray], label_maps: Sequence[np.ndarray],
                       val_fraction: float = 0.2) -> Path:
    """Write tiles and instance label maps in the ultralytics segmentation layout (images/, labels/ with one line
    ``0 x1 y1 x2 y2 ...`` of normalised polygon points per nucleus) and return the dataset yaml path."""
    from skimage.io import imsave

    folder = Path(folder)
    n_val = max(1, int(round(len(images) * val_fraction))) if len(images) > 1 else 0
    for index, (image, labels) in enumerate(zip(images, label_maps)):
        split = "val" if index >= len(images) - n_val else "train"
        (folder / "images" / split).mkdir(parents=True, exist_ok=True)
        (folder / "labels" / split).mkdir(parents=True, exist_ok=True)
        imsave(folder / "images" / split / f"tile_{index:05d}.png", np.asarray(image, np.uint8), check_contrast=False)
        height, width = labels.shape
        lines = []
        for value in np.unique(labels[labels > 0]):
            polygon = _polygon(labels == value)
            if polygon is None or len(polygon) < 3:
                continue
            coords = np.stack([polygon[:, 0] / width, polygon[:, 1] / height], axis=1).clip(0, 1).reshape(-1)
            lines.append("0 " + " ".join(f"{c:.6f}" for c in coords))
        (folder / "labels" / split / f"tile_{index:05d}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    if n_val == 0:
        (folder / "images" / "val").mkdir(parents=True, exist_ok=True)
    yaml_path = folder / "dataset.yaml"
    yaml_path.write_text(f"path: {folder.resolve()}\ntrain: images/train\nval: images/val\nnames:\n  0: nucleus\n")
    return yaml_path


def train_yolo(model, dataset_yaml, epochs: int = 1, imgsz: int = 512, batch: int = 16, output_dir=None, **kwargs):
    """Train a YOLO model offline on the CPU or GPU (see module docstring for the options that keep it offline)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    options = dict(data=str(dataset_yaml), epochs=int(epochs), imgsz=int(imgsz), batch=int(batch), plots=False,
                   amp=False, workers=0, device=kwargs.pop("device", "cpu"), verbose=False, val=True)
    if output_dir is not None:
        options.update(project=str(output_dir), name="yolo", exist_ok=True)
    options.update(kwargs)
    return model.train(**options)
