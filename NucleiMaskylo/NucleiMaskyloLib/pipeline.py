"""Inference: an H&E image (array, memmap or TIFF path) -> stain normalisation -> overlapping 512x512 tiles -> Mask
R-CNN (and optionally YOLO branches, fused) per tile -> seam-free stitched nuclei -> label map + per-nucleus table.

Only one tile is in memory at a time (plus the nuclei found so far, as box-cropped masks), so slides larger than
memory can be processed from a TIFF. The stain of the whole image is estimated once (from a thumbnail) and applied
identically to every tile, so normalisation adds no seams.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from mednets.progress import check_cancel

from .detections import Detections
from .fusion import fuse
from .stain import InsufficientTissueError, StainNormalizer
from .tiling import RegionReader, StitchedInstances, predict_tiled, tile_grid

__all__ = ["PipelineSettings", "predict_tile", "NucleiPipeline", "instance_table", "labels_and_table",
           "check_rgb_image", "thumbnail"]


@dataclass
class PipelineSettings:
    """What the pipeline does (the paper's defaults: 512x512 tiles; the rest are ours where the paper says nothing)."""

    tile_size: int = 512
    overlap: int = 64
    score_threshold: float = 0.5
    mask_threshold: float = 0.5
    stain_method: str = "macenko"  # "macenko", "reinhard", "none"
    stain_reference: Dict[str, list] = field(default_factory=dict)  # empty: the bundled reference
    fusion: str = "iou_voting"  # used when YOLO branches are present
    fusion_iou: float = 0.5
    min_votes: Optional[int] = None
    batch_size: int = 1


def check_rgb_image(image: np.ndarray) -> np.ndarray:
    """An H&E image as RGB uint8 (H, W, 3), or a plain-language ValueError."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] == 1 and image.shape[-1] == 3:
        image = image[0]
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == 1):
        raise ValueError("NucleiMaskylo needs a colour (RGB) H&E image; this image has a single (grey) channel")
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError(f"NucleiMaskylo needs a 2D RGB H&E image (one slice, 3 colour components), got shape "
                         f"{image.shape}")
    image = image[..., :3]
    if image.dtype != np.uint8:
        if not np.isfinite(image).all():
            raise ValueError("the image contains NaN or infinite values")
        top = float(image.max(initial=0))
        image = np.clip(image * (255.0 if top <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if image.shape[0] < 16 or image.shape[1] < 16:
        raise ValueError(f"the image is too small ({image.shape[0]}x{image.shape[1]} pixels; at least 16x16)")
    if int(image.max()) == int(image.min()):
        raise ValueError("the image is constant (a single colour): there is nothing to segment")
    return image


def thumbnail(reader: RegionReader, max_pixels: int = 1_000_000) -> np.ndarray:
    """A subsampled copy of the image (every k-th pixel) for whole-image statistics, read region by region."""
    height, width = reader.shape[:2]
    step = max(1, int(np.ceil(np.sqrt(height * width / max_pixels))))
    rows = []
    band = max(step, (4096 // step) * step)
    for y in range(0, height, band):
        block = reader.read(y, 0, min(height, y + band), width)
        rows.append(block[::step, ::step])
    return np.concatenate(rows, axis=0)


def predict_tile(model: torch.nn.Module, tile: np.ndarray, score_threshold: float = 0.05,
                 mask_threshold: float = 0.5, device: Optional[torch.device] = None) -> Detections:
    """Mask R-CNN on one RGB uint8 tile (H, W, 3): detections with boolean masks in tile coordinates."""
    device = device or next(model.parameters()).device
    tensor = torch.from_numpy(np.ascontiguousarray(tile)).to(device).permute(2, 0, 1).float().div_(255.0)
    model.eval()
    heads = getattr(model, "roi_heads", None)
    previous = getattr(heads, "score_thresh", None)
    if previous is not None:  # let the network drop low scores before pasting full-size masks (the costly part)
        heads.score_thresh = max(float(previous), float(score_threshold))
    try:
        with torch.inference_mode():
            out = model([tensor])[0]
    finally:
        if previous is not None:
            heads.score_thresh = previous
    keep = out["scores"] >= score_threshold
    boxes = out["boxes"][keep].cpu().numpy()
    scores = out["scores"][keep].cpu().numpy()
    masks = (out["masks"][keep, 0] >= mask_threshold).cpu().numpy()
    non_empty = masks.reshape(len(masks), -1).any(axis=1)
    return Detections(boxes[non_empty], scores[non_empty], masks[non_empty], "mask_rcnn")


class NucleiPipeline:
    """The MASKYLO pipeline around a Mask R-CNN network and optional YOLO models (see module docstring)."""

    def __init__(self, model: torch.nn.Module, settings: Optional[PipelineSettings] = None,
                 yolo_models: Sequence = (), device: Optional[torch.device] = None):
        self.model = model
        self.settings = settings or PipelineSettings()
        self.yolo_models = list(yolo_models)
        self.device = device or next(model.parameters()).device
        self.normalizer = StainNormalizer(self.settings.stain_method, self.settings.stain_reference)

    def _tile_detections(self, source_stain):
        settings = self.settings

        def run(pixels: np.ndarray) -> Detections:
            if settings.stain_method != "none":
                pixels = self.normalizer.transform(pixels, source_stain)
            found = predict_tile(self.model, pixels, settings.score_threshold, settings.mask_threshold, self.device)
            if not self.yolo_models:
                return found
            from .yolo import predict_yolo

            branches = [found] + [predict_yolo(m, pixels, settings.score_threshold,
                                               device=str(self.device)) for m in self.yolo_models]
            return fuse(branches, settings.fusion, settings.fusion_iou, settings.min_votes,
                        image_shape=pixels.shape[:2])
        return run

    def predict(self, image, progress: Optional[Callable[[float, str], None]] = None,
                cancel: Optional[Callable[[], bool]] = None) -> StitchedInstances:
        """Nuclei of an RGB image (array, or a TIFF path read region by region)."""
        if isinstance(image, np.ndarray):
            image = check_rgb_image(image)
        reader = image if isinstance(image, RegionReader) else RegionReader(image)
        if len(reader.shape) != 3 or reader.shape[2] not in (3, 4):
            raise ValueError(f"NucleiMaskylo needs an RGB H&E image, got shape {reader.shape}")
        check_cancel(cancel)
        source_stain = None
        if self.settings.stain_method != "none":
            try:
                source_stain = self.normalizer.estimate_source(thumbnail(reader)[..., :3])
            except InsufficientTissueError:
                source_stain = None  # too little tissue: tiles are left as they are (see StainNormalizer.transform)
        n_tiles = len(tile_grid(reader.shape, self.settings.tile_size, self.settings.overlap))
        if progress is not None:
            progress(0.0, f"{n_tiles} tiles of {self.settings.tile_size}x{self.settings.tile_size} pixels")
        return predict_tiled(reader, self._tile_detections(source_stain), self.settings.tile_size,
                             self.settings.overlap, progress=progress, cancel=cancel)


def instance_table(instances: StitchedInstances, pixel_size_um: Optional[float] = None) -> Dict[str, list]:
    """Per-nucleus rows: label (in :meth:`StitchedInstances.label_map`), area in pixels (and um^2 when the pixel size
    is known), centroid (row, column), confidence, branch."""
    centroids = instances.centroids()
    areas = instances.areas()
    table: Dict[str, list] = {
        "label": list(range(1, len(instances) + 1)),
        "area_px": [int(a) for a in areas],
        "centroid_row": [float(c[0]) for c in centroids],
        "centroid_col": [float(c[1]) for c in centroids],
        "confidence": [float(s) for s in instances.scores],
        "branch": list(instances.branch),
    }
    if pixel_size_um:
        table["area_um2"] = [float(a) * float(pixel_size_um) ** 2 for a in areas]
    return table


def labels_and_table(instances: StitchedInstances, pixel_size_um: Optional[float] = None
                     ) -> Tuple[np.ndarray, Dict[str, list]]:
    """Instance label map (1..N, consecutive) and its per-nucleus table, consistent with each other: where nuclei
    overlap the more confident one is shown, a nucleus hidden completely is dropped, and area/centroid are those of
    the visible pixels."""
    from scipy import ndimage

    painted = instances.label_map()
    visible = np.bincount(painted.ravel(), minlength=len(instances) + 1)
    keep = np.flatnonzero(visible[1:] > 0)
    relabel = np.zeros(len(instances) + 1, dtype=np.int32)
    relabel[keep + 1] = np.arange(1, len(keep) + 1, dtype=np.int32)
    labels = relabel[painted]
    index = np.arange(1, len(keep) + 1)
    centroids = np.asarray(ndimage.center_of_mass(np.ones_like(labels), labels, index)).reshape(-1, 2)
    areas = visible[1:][keep]
    table: Dict[str, list] = {
        "label": index.tolist(),
        "area_px": [int(a) for a in areas],
        "centroid_row": [float(c[0]) for c in centroids],
        "centroid_col": [float(c[1]) for c in centroids],
        "confidence": [float(instances.scores[i]) for i in keep],
        "branch": [instances.branch[i] for i in keep],
    }
    if pixel_size_um:
        table["area_um2"] = [float(a) * float(pixel_size_um) ** 2 for a in areas]
    return labels, table
