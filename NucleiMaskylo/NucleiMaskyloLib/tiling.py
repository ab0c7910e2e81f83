"""Whole-slide tiling: overlapping 512x512 tiles, region reads of images larger than memory, and seam-free stitching
of the instances found in each tile into one instance set / label map.

Stitching rule (every nucleus counted once and never cut in two): the tiles overlap by ``overlap`` pixels and each
tile owns its *core*, the part of the tile nearer to its own centre than to a neighbour's (the overlap is split in
the middle; at the image border the core reaches the border). An instance found in a tile is kept only if the centre
of its box lies in that tile's core. The cores partition the image, so a nucleus is kept by exactly one tile, and that
tile saw the whole nucleus whenever the nucleus extends at most ``overlap / 2`` pixels beyond the core, i.e. for
nuclei smaller than ``overlap / 2`` in radius (64 px overlap: up to 32 px radius; NuInsSeg nuclei at 40x are about
5-20 px). Instances cut by a tile edge have their centre outside the core (within their radius of that edge) and are
dropped there; the neighbouring tile sees them whole. Remaining duplicates (a nucleus whose detected box centre moves
across a core border between two tiles) are removed by mask IoU with the higher-scoring one kept.

Region reads (:class:`RegionReader`): numpy arrays (and ``numpy.memmap``) are sliced; TIFF files are read with
``tifffile`` chunk by chunk: only the tiles/strips of the TIFF page that intersect the requested region are read and
decoded, so a slide much larger than memory can be processed tile after tile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .detections import Detections

__all__ = ["Tile", "tile_grid", "RegionReader", "StitchedInstances", "stitch_tiles", "predict_tiled"]


@dataclass(frozen=True)
class Tile:
    """One tile: its pixel window ``[y0, y1) x [x0, x1)`` and its core (the part it owns) in image coordinates."""

    y0: int
    x0: int
    y1: int
    x1: int
    core: Tuple[int, int, int, int]  # cy0, cx0, cy1, cx1

    @property
    def shape(self) -> Tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0


def _starts(length: int, tile: int, step: int) -> List[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)  # the last tile ends on the border
    return sorted(set(starts))


def tile_grid(shape: Sequence[int], tile_size: int = 512, overlap: int = 64) -> List[Tile]:
    """Overlapping tiles covering an image of ``shape`` (H, W[, C]); tiles are ``tile_size`` square (smaller only if
    the image is), consecutive tiles overlap by at least ``overlap`` pixels, and their cores partition the image."""
    height, width = int(shape[0]), int(shape[1])
    if tile_size <= 0 or overlap < 0 or overlap >= tile_size:
        raise ValueError(f"need 0 <= overlap < tile_size, got tile_size={tile_size}, overlap={overlap}")
    if height <= 0 or width <= 0:
        raise ValueError(f"empty image of shape {tuple(shape)}")
    step = tile_size - overlap
    ys, xs = _starts(height, tile_size, step), _starts(width, tile_size, step)

    def cores(starts, length):
        ends = [min(s + tile_size, length) for s in starts]
        lows = [0] + [(ends[i - 1] + starts[i]) // 2 for i in range(1, len(starts))]
        highs = lows[1:] + [length]
        return lows, highs

    ylo, yhi = cores(ys, height)
    xlo, xhi = cores(xs, width)
    tiles = []
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            tiles.append(Tile(y, x, min(y + tile_size, height), min(x + tile_size, width),
                              (ylo[i], xlo[j], yhi[i], xhi[j])))
    return tiles


class RegionReader:
    """Read rectangular regions of a 2D (H, W[, C]) image without loading all of it.

    ``source``: a numpy array / memmap, or the path of a TIFF file (``page``: which page, e.g. a pyramid level).
    """

    def __init__(self, source: Union[np.ndarray, str, Path], page: int = 0):
        self._array = None
        self._tiff = None
        if isinstance(source, (str, Path)):
            import tifffile

            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"image file '{path}' does not exist")
            if path.suffix.lower() not in (".tif", ".tiff", ".svs", ".btf", ".ome.tif"):
                from skimage.io import imread

                self._array = np.asarray(imread(str(path)))
            else:
                self._tiff = tifffile.TiffFile(str(path))
                self._page = self._tiff.pages[page]
                if self._page.is_memmappable:
                    self._array = self._page.asarray(out="memmap")
        else:
            self._array = np.asarray(source) if not isinstance(source, np.memmap) else source
        shape = self._array.shape if self._array is not None else self._page.shape
        if len(shape) not in (2, 3):
            raise ValueError(f"expected a 2D image (H, W) or (H, W, C), got shape {tuple(shape)}")
        self.shape: Tuple[int, ...] = tuple(int(s) for s in shape)

    @property
    def dtype(self):
        return self._array.dtype if self._array is not None else self._page.dtype

    def close(self) -> None:
        if self._tiff is not None:
            self._tiff.close()
            self._tiff = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def read(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        """The region ``[y0, y1) x [x0, x1)`` as an in-memory array."""
        if not (0 <= y0 < y1 <= self.shape[0] and 0 <= x0 < x1 <= self.shape[1]):
            raise ValueError(f"region {(y0, x0, y1, x1)} is outside the image of shape {self.shape}")
        if self._array is not None:
            return np.array(self._array[y0:y1, x0:x1])
        return self._read_tiff_chunks(y0, x0, y1, x1)

    def _read_tiff_chunks(self, y0, x0, y1, x1) -> np.ndarray:
        page = self._page
        chunk_h, chunk_w = page.chunks[0], page.chunks[1]
        grid_rows, grid_cols = page.chunked[0], page.chunked[1]
        out = np.zeros((y1 - y0, x1 - x0) + tuple(self.shape[2:]), dtype=page.dtype)
        handle = self._tiff.filehandle
        for row in range(y0 // chunk_h, min(grid_rows, (y1 - 1) // chunk_h + 1)):
            for col in range(x0 // chunk_w, min(grid_cols, (x1 - 1) // chunk_w + 1)):
                index = row * grid_cols + col
                handle.seek(page.dataoffsets[index])
                data = handle.read(page.databytecounts[index])
                segment = page.decode(data, index)[0]
                segment = np.asarray(segment)
                samples = int(np.prod(self.shape[2:])) if len(self.shape) > 2 else 1
                # the last strip of a striped page may be shorter than the others
                segment = segment.reshape((segment.size // (chunk_w * samples), chunk_w) + tuple(self.shape[2:]))
                cy0, cx0 = row * chunk_h, col * chunk_w
                sy0, sy1 = max(y0, cy0), min(y1, cy0 + chunk_h, self.shape[0])
                sx0, sx1 = max(x0, cx0), min(x1, cx0 + chunk_w, self.shape[1])
                out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = segment[sy0 - cy0:sy1 - cy0, sx0 - cx0:sx1 - cx0]
        return out


@dataclass
class StitchedInstances:
    """Instances of a whole image, each kept as a box-cropped mask (memory grows with the nuclei, not the image).

    ``boxes`` (N, 4) x1, y1, x2, y2 in image pixels; ``crops[i]`` the boolean mask inside ``boxes[i]``; ``scores``;
    ``branch``; ``shape`` the image shape (H, W).
    """

    shape: Tuple[int, int]
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    crops: List[np.ndarray] = field(default_factory=list)
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    branch: List[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.crops)

    def label_map(self, out: Optional[np.ndarray] = None, dtype=np.int32) -> np.ndarray:
        """Instance label map (label i + 1 = instance i; overlaps go to the higher score). ``out`` may be a
        preallocated (e.g. memmapped) array of the image shape."""
        label_map = np.zeros(self.shape, dtype=dtype) if out is None else out
        for i in np.argsort(self.scores, kind="mergesort"):  # lowest first, best painted last
            x0, y0, x1, y1 = (int(v) for v in self.boxes[i])
            view = label_map[y0:y1, x0:x1]
            view[self.crops[i]] = i + 1
        return label_map

    def full_masks(self) -> np.ndarray:
        """(N, H, W) boolean masks (only for images that fit in memory)."""
        masks = np.zeros((len(self),) + tuple(self.shape), dtype=bool)
        for i, crop in enumerate(self.crops):
            x0, y0, x1, y1 = (int(v) for v in self.boxes[i])
            masks[i, y0:y1, x0:x1] = crop
        return masks

    def centroids(self) -> np.ndarray:
        """(N, 2) centroids (row, column) in image pixels."""
        out = np.zeros((len(self), 2))
        for i, crop in enumerate(self.crops):
            rows, cols = np.nonzero(crop)
            if len(rows):
                out[i] = rows.mean() + self.boxes[i][1], cols.mean() + self.boxes[i][0]
        return out

    def areas(self) -> np.ndarray:
        return np.array([int(c.sum()) for c in self.crops], dtype=np.int64)


def _crop_instances(detections: Detections, tile: Tile) -> Tuple[list, list, list, list]:
    boxes, crops, scores, branch = [], [], [], []
    cy0, cx0, cy1, cx1 = tile.core
    for i in range(len(detections)):
        mask = detections.masks[i]
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        if not len(rows):
            continue
        by0, by1, bx0, bx1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        centre_y = tile.y0 + (by0 + by1) / 2.0
        centre_x = tile.x0 + (bx0 + bx1) / 2.0
        if not (cy0 <= centre_y < cy1 and cx0 <= centre_x < cx1):
            continue
        boxes.append((tile.x0 + bx0, tile.y0 + by0, tile.x0 + bx1, tile.y0 + by1))
        crops.append(mask[by0:by1, bx0:bx1].copy())
        scores.append(float(detections.scores[i]))
        branch.append(detections.branch[i])
    return boxes, crops, scores, branch


def _crop_iou(a_box, a_crop, b_box, b_crop) -> float:
    x0, y0 = max(a_box[0], b_box[0]), max(a_box[1], b_box[1])
    x1, y1 = min(a_box[2], b_box[2]), min(a_box[3], b_box[3])
    if x1 <= x0 or y1 <= y0:
        return 0.0
    a = a_crop[y0 - a_box[1]:y1 - a_box[1], x0 - a_box[0]:x1 - a_box[0]]
    b = b_crop[y0 - b_box[1]:y1 - b_box[1], x0 - b_box[0]:x1 - b_box[0]]
    inter = float(np.logical_and(a, b).sum())
    union = float(a_crop.sum() + b_crop.sum()) - inter
    return inter / union if union else 0.0


class _Collector:
    """Accumulates the owned instances of each tile as crops, then removes cross-tile duplicates."""

    def __init__(self, shape: Sequence[int]):
        self.shape = (int(shape[0]), int(shape[1]))
        self.boxes: list = []
        self.crops: list = []
        self.scores: list = []
        self.branch: list = []
        self.tile: list = []

    def add(self, tile_index: int, tile: Tile, found: Detections) -> None:
        if found.masks is None:
            raise ValueError("stitching needs instance masks (a detection-only branch cannot be stitched)")
        b, c, s, r = _crop_instances(found, tile)
        self.boxes += b
        self.crops += c
        self.scores += s
        self.branch += r
        self.tile += [tile_index] * len(b)

    def finish(self, duplicate_iou: float) -> StitchedInstances:
        boxes = np.asarray(self.boxes, dtype=np.int64).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float64)
        tiles = np.asarray(self.tile, dtype=np.int64)
        kept = np.zeros(len(boxes), dtype=bool)
        for i in np.argsort(-scores, kind="mergesort"):
            box = boxes[i]
            near = np.flatnonzero(kept & (tiles != tiles[i]) & (boxes[:, 0] < box[2]) & (box[0] < boxes[:, 2])
                                  & (boxes[:, 1] < box[3]) & (box[1] < boxes[:, 3]))
            if not any(_crop_iou(box, self.crops[i], boxes[j], self.crops[j]) > duplicate_iou for j in near):
                kept[i] = True
        keep = np.flatnonzero(kept)
        return StitchedInstances(shape=self.shape, boxes=boxes[keep], crops=[self.crops[i] for i in keep],
                                 scores=scores[keep], branch=[self.branch[i] for i in keep])


def stitch_tiles(shape: Sequence[int], tiles: Sequence[Tile], detections: Sequence[Detections],
                 duplicate_iou: float = 0.3) -> StitchedInstances:
    """Join per-tile detections (masks in tile coordinates) into the instances of the whole image (see module doc)."""
    collector = _Collector(shape)
    for index, (tile, found) in enumerate(zip(tiles, detections)):
        collector.add(index, tile, found)
    return collector.finish(duplicate_iou)


def iterate_tiles(reader: RegionReader, tiles: Sequence[Tile]) -> Iterator[Tuple[Tile, np.ndarray]]:
    for tile in tiles:
        yield tile, reader.read(tile.y0, tile.x0, tile.y1, tile.x1)


def predict_tiled(source, predict_tile: Callable[[np.ndarray], Detections], tile_size: int = 512, overlap: int = 64,
                  duplicate_iou: float = 0.3,
                  progress: Optional[Callable[[float, str], None]] = None,
                  cancel: Optional[Callable[[], bool]] = None) -> StitchedInstances:
    """Run ``predict_tile`` (RGB tile -> Detections with masks in tile coordinates) over overlapping tiles of
    ``source`` (array, memmap or TIFF path) and stitch the instances. Only one tile is in memory at a time."""
    from mednets.progress import OperationCancelled

    reader = source if isinstance(source, RegionReader) else RegionReader(source)
    tiles = tile_grid(reader.shape, tile_size, overlap)
    collector = _Collector(reader.shape[:2])
    for index, (tile, pixels) in enumerate(iterate_tiles(reader, tiles)):
        if cancel is not None and cancel():
            raise OperationCancelled("cancelled while processing tiles")
        collector.add(index, tile, predict_tile(pixels))  # only the owned instances are kept, as crops
        if progress is not None:
            progress((index + 1) / len(tiles), f"tile {index + 1}/{len(tiles)}")
    return collector.finish(duplicate_iou)
