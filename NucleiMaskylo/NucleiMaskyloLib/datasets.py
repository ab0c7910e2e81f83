"""Datasets of H&E tiles with nuclei instance masks: the NuInsSeg layout, COCO-JSON, and export of results.

NuInsSeg (Mahbod et al., Scientific Data 11, 2024; 665 tiles of 512x512 pixels, 0.25 um/pixel, 31 human and mouse
organs) is distributed as one folder per organ (facts from the dataset's public description, masih4/NuInsSeg README
and loaders that read it)::

    <root>/<organ>/tissue images/<name>.png           RGB H&E tile
    <root>/<organ>/label masks modify/<name>.tif      instance label map (0 background, one value per nucleus)
    <root>/<organ>/label masks/<name>.tif             older instance label maps (used when "modify" is absent)
    <root>/<organ>/vague areas/mask binary/<name>.png ambiguous regions (optional)

COCO-JSON (instance segmentation, one category "nucleus"): segmentations are run-length encoded (compressed strings,
as pycocotools writes them) on export; compressed/uncompressed RLE and polygons are read. The RLE string codec follows
the COCO format description (column-major runs starting with background; counts after the third stored as the
difference to the count two before, in 5-bit groups offset by 48; fact from cocodataset/cocoapi common/maskApi.c);
pycocotools is used in the tests only, as the oracle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from mednets.fileio import atomic_output_path

__all__ = [
    "NuInsSegCase", "scan_nuinsseg", "load_nuinsseg_case", "rle_encode", "rle_decode", "label_map_to_coco",
    "write_coco", "load_coco", "write_label_map", "read_label_map",
]

PathLike = Union[str, Path]
_IMAGE_FOLDER = "tissue images"
_LABEL_FOLDERS = ("label masks modify", "label masks")
_VAGUE_FOLDER = Path("vague areas") / "mask binary"


@dataclass(frozen=True)
class NuInsSegCase:
    organ: str
    name: str
    image_path: Path
    label_path: Path
    vague_path: Optional[Path] = None


def scan_nuinsseg(root: PathLike, organs: Optional[Iterable[str]] = None) -> List[NuInsSegCase]:
    """All tiles with an instance label map under ``root`` (NuInsSeg layout), sorted by organ and name."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"NuInsSeg folder '{root}' does not exist")
    wanted = None if organs is None else set(organs)
    cases = []
    for organ_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if wanted is not None and organ_dir.name not in wanted:
            continue
        images = organ_dir / _IMAGE_FOLDER
        if not images.is_dir():
            continue
        for image_path in sorted(images.glob("*.png")):
            label_path = next((organ_dir / folder / f"{image_path.stem}.tif" for folder in _LABEL_FOLDERS
                               if (organ_dir / folder / f"{image_path.stem}.tif").is_file()), None)
            if label_path is None:
                continue
            vague = organ_dir / _VAGUE_FOLDER / f"{image_path.stem}.png"
            cases.append(NuInsSegCase(organ_dir.name, image_path.stem, image_path, label_path,
                                      vague if vague.is_file() else None))
    if not cases:
        raise ValueError(f"no NuInsSeg tiles under '{root}' (expected <organ>/tissue images/*.png with "
                         f"<organ>/label masks modify/*.tif)")
    return cases


def load_nuinsseg_case(case: NuInsSegCase) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """(RGB uint8 image, int32 instance label map, boolean vague-area mask or None)."""
    import tifffile
    from skimage.io import imread

    image = np.asarray(imread(str(case.image_path)))
    if image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]
    labels = np.asarray(tifffile.imread(str(case.label_path))).astype(np.int32)
    if labels.shape != image.shape[:2]:
        raise ValueError(f"{case.label_path.name}: label map {labels.shape} does not match the image {image.shape}")
    vague = None if case.vague_path is None else np.asarray(imread(str(case.vague_path))) > 0
    return image.astype(np.uint8), labels, vague


# ---------------------------------------------------------------------------------------------------------------------
# COCO run-length encoding

def _runs(mask: np.ndarray) -> List[int]:
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    changes = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        runs = [0] + runs
    return [int(r) for r in runs]


def _counts_to_string(counts: Sequence[int]) -> str:
    out = []
    for i, value in enumerate(counts):
        x = int(value) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def _counts_from_string(text: str) -> List[int]:
    counts: List[int] = []
    p = 0
    while p < len(text):
        x = k = 0
        more = True
        while more:
            c = ord(text[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_encode(mask: np.ndarray) -> Dict[str, object]:
    """COCO compressed RLE ``{"size": [H, W], "counts": str}`` of a boolean mask (H, W)."""
    mask = np.asarray(mask, dtype=bool)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": _counts_to_string(_runs(mask))}


def rle_decode(rle: Dict[str, object]) -> np.ndarray:
    """Boolean mask of a COCO RLE (compressed string or uncompressed list of counts)."""
    height, width = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    counts = _counts_from_string(counts) if isinstance(counts, str) else [int(c) for c in counts]
    if sum(counts) != height * width:
        raise ValueError(f"RLE counts cover {sum(counts)} pixels, expected {height * width}")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((height, width), order="F")


def _polygon_mask(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    from skimage.draw import polygon as fill_polygon

    mask = np.zeros((height, width), dtype=bool)
    for poly in polygons:
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        rows, cols = fill_polygon(xy[:, 1] - 0.5, xy[:, 0] - 0.5, shape=(height, width))
        mask[rows, cols] = True
    return mask


# ---------------------------------------------------------------------------------------------------------------------
# COCO-JSON

def label_map_to_coco(labels: np.ndarray, image_id: int, first_annotation_id: int = 1,
                      scores: Optional[Sequence[float]] = None) -> List[dict]:
    """COCO annotations (one per instance of the label map, in increasing label order); with ``scores`` they are
    results (``score`` field added)."""
    from mednets.metrics.coco_instances import boxes_from_masks, masks_from_label_map

    masks, _ = masks_from_label_map(np.asarray(labels))
    boxes = boxes_from_masks(masks)
    annotations = []
    for i, (mask, box) in enumerate(zip(masks, boxes)):
        entry = {"id": first_annotation_id + i, "image_id": int(image_id), "category_id": 1, "iscrowd": 0,
                 "segmentation": rle_encode(mask), "area": float(mask.sum()),
                 "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]}
        if scores is not None:
            entry["score"] = float(scores[i])
        annotations.append(entry)
    return annotations


def write_coco(path: PathLike, label_maps: Sequence[np.ndarray], file_names: Optional[Sequence[str]] = None,
               scores: Optional[Sequence[Sequence[float]]] = None) -> Path:
    """Write instance label maps as a COCO-JSON dataset (category 1 "nucleus"), atomically. ``scores``: per image,
    one confidence per instance (label order), written as ``score`` fields."""
    images, annotations = [], []
    for index, labels in enumerate(label_maps):
        labels = np.asarray(labels)
        name = file_names[index] if file_names is not None else f"tile_{index:05d}.png"
        images.append({"id": index + 1, "file_name": name, "height": int(labels.shape[0]),
                       "width": int(labels.shape[1])})
        annotations += label_map_to_coco(labels, index + 1, len(annotations) + 1,
                                         None if scores is None else scores[index])
    data = {"info": {"description": "SlicerMedNets NucleiMaskylo nuclei instances"}, "images": images,
            "annotations": annotations, "categories": [{"id": 1, "name": "nucleus", "supercategory": "cell"}]}
    path = Path(path)
    with atomic_output_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data))
    return path


def load_coco(path: PathLike, image_root: Optional[PathLike] = None, load_images: bool = False
              ) -> List[Dict[str, object]]:
    """Read a COCO-JSON instance dataset: per image a dict with ``file_name``, ``labels`` (int32 instance label map,
    later annotations on top), ``scores`` (when present) and, with ``load_images``, ``image`` (RGB uint8 read from
    ``image_root`` or the JSON's folder)."""
    path = Path(path)
    data = json.loads(path.read_text())
    for key in ("images", "annotations"):
        if key not in data:
            raise ValueError(f"'{path.name}' is not COCO-JSON: no '{key}' list")
    by_image: Dict[int, List[dict]] = {}
    for annotation in data["annotations"]:
        by_image.setdefault(int(annotation["image_id"]), []).append(annotation)
    out = []
    root = Path(image_root) if image_root is not None else path.parent
    for image in data["images"]:
        height, width = int(image["height"]), int(image["width"])
        labels = np.zeros((height, width), dtype=np.int32)
        scores = []
        for value, annotation in enumerate(by_image.get(int(image["id"]), []), start=1):
            segmentation = annotation["segmentation"]
            if isinstance(segmentation, dict):
                mask = rle_decode(segmentation)
            else:
                mask = _polygon_mask(segmentation, height, width)
            if mask.shape != (height, width):
                raise ValueError(f"annotation {annotation.get('id')} has size {mask.shape}, image is "
                                 f"{(height, width)}")
            labels[mask] = value
            if "score" in annotation:
                scores.append(float(annotation["score"]))
        entry: Dict[str, object] = {"id": int(image["id"]), "file_name": image.get("file_name", ""),
                                    "labels": labels}
        if scores:
            entry["scores"] = np.asarray(scores)
        if load_images:
            from skimage.io import imread

            entry["image"] = np.asarray(imread(str(root / image["file_name"])))[..., :3].astype(np.uint8)
        out.append(entry)
    return out


def write_label_map(path: PathLike, labels: np.ndarray) -> Path:
    """Write an instance label map as a compressed TIFF (uint16 when it fits, else uint32), atomically."""
    import tifffile

    labels = np.asarray(labels)
    dtype = np.uint16 if labels.max(initial=0) < 65536 else np.uint32
    path = Path(path)
    with atomic_output_path(path) as tmp:
        tifffile.imwrite(str(tmp), labels.astype(dtype), compression="zlib")
    return path


def read_label_map(path: PathLike) -> np.ndarray:
    import tifffile

    return np.asarray(tifffile.imread(str(path))).astype(np.int32)
