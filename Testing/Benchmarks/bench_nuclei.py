#!/usr/bin/env python
"""NucleiMaskylo: throughput of the tiled Mask R-CNN pipeline on a 4096 x 4096 H&E image, and the instance-metric
evaluation time of mednets.metrics.coco_instances against pycocotools on the same data.

1. Pipeline: an H&E phantom of ``--size`` x ``--size`` pixels (default 4096) written as a tiled, compressed TIFF and
   read region by region; Macenko stain estimate from a thumbnail; 512 x 512 tiles with 64 pixels overlap (the
   paper's tiles); Mask R-CNN per tile; seam-free stitching. Network: the bundled demo weights (mask_rcnn_small) when
   present, else a seeded untrained mask_rcnn_small (its speed is the same; ``--paper`` uses the ResNet-50 FPN
   configuration, untrained). Reported: tiles per second (tiles / wall time of the whole pipeline).
2. Evaluation: the nuclei found in ``--eval-tiles`` 512 x 512 phantom tiles (as COCO images) against their reference
   instances: mask mAP@[.5:.95] and mAP@50 with maxDets 100 (COCO's default: it caps recall on tiles with ~290
   nuclei, so these mAPs are not quality figures; see the module README for those). Ours: label maps / masks -> coco_average_precision.
   pycocotools: RLE-encode the masks (needed to use it at all), build the COCO objects, evaluate, accumulate. Both
   must agree to 1e-6. Reported: pycocotools time / our time.

Last line: ``tiles_per_s=<x> eval_speedup_vs_pycocotools=<y>``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "MedNetsCore"))
sys.path.insert(0, str(ROOT / "NucleiMaskylo"))

from mednets.metrics.coco_instances import coco_average_precision  # noqa: E402
from mednets.phantoms.he_nuclei import he_nuclei_phantom  # noqa: E402
from NucleiMaskyloLib import build_model  # noqa: E402
from NucleiMaskyloLib.models import CATALOGUE, load_nuclei_model  # noqa: E402
from NucleiMaskyloLib.pipeline import NucleiPipeline, PipelineSettings, predict_tile  # noqa: E402


def network(paper: bool, device: str):
    if not paper and CATALOGUE.is_file():
        loaded, _ = load_nuclei_model(device=device)
        return loaded.network, "demo weights (mask_rcnn_small)"
    torch.manual_seed(0)
    name = "mask_rcnn" if paper else "mask_rcnn_small"
    return build_model(name).to(device).eval(), f"untrained {name}"


def pycocotools_map(references, detections):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, results = [], [], []
    for index, (labels, found) in enumerate(zip(references, detections)):
        images.append({"id": index + 1, "height": labels.shape[0], "width": labels.shape[1]})
        for value in np.unique(labels[labels > 0]):
            rle = mask_utils.encode(np.asfortranarray((labels == value).astype(np.uint8)))
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1, "category_id": 1, "iscrowd": 0,
                                "segmentation": rle, "area": float(mask_utils.area(rle)),
                                "bbox": mask_utils.toBbox(rle).tolist()})
        if len(found):
            rles = mask_utils.encode(np.asfortranarray(found.masks.transpose(1, 2, 0).astype(np.uint8)))
            for rle, score in zip(rles, found.scores):
                results.append({"image_id": index + 1, "category_id": 1, "segmentation": rle, "score": float(score)})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "nucleus"}]}
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(results), "segm")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats[0], evaluation.stats[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--eval-tiles", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--paper", action="store_true", help="ResNet-50 FPN (untrained) instead of the demo network")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, described = network(args.paper, args.device)
    print(f"network: {described}; device {args.device}; {args.threads} threads")

    import tifffile

    started = time.perf_counter()
    phantom = he_nuclei_phantom(2024, shape=(args.size, args.size))
    print(f"phantom {args.size}x{args.size}: {int(phantom.labels.max())} nuclei ({time.perf_counter() - started:.1f} s)")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "slide.tif"
        tifffile.imwrite(path, phantom.image, photometric="rgb", tile=(256, 256), compression="zlib")
        del phantom
        pipeline = NucleiPipeline(model, PipelineSettings(tile_size=512, overlap=64))
        counts = []
        started = time.perf_counter()
        found = pipeline.predict(str(path), progress=lambda f, m: counts.append(m))
        seconds = time.perf_counter() - started
    tiles = len(counts) - 1
    tiles_per_s = tiles / seconds
    print(f"pipeline: {tiles} tiles of 512x512 in {seconds:.1f} s -> {tiles_per_s:.2f} tiles/s, {len(found)} nuclei")

    from NucleiMaskyloLib.stain import StainNormalizer

    normalizer = StainNormalizer("macenko")  # as the pipeline does (the network was trained on normalised tiles)
    references, detections = [], []
    for seed in range(args.eval_tiles):
        case = he_nuclei_phantom(3000 + seed, shape=(512, 512))
        references.append(case.labels)
        detections.append(predict_tile(model, normalizer.transform(case.image), score_threshold=0.05))
    ours_times, theirs_times = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ours = coco_average_precision(references, [d.to_instance_set() for d in detections], "segm")
        ours_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        theirs = pycocotools_map(references, detections)
        theirs_times.append(time.perf_counter() - t0)
    difference = max(abs(ours["mAP"] - theirs[0]), abs(ours["mAP50"] - theirs[1]))
    print(f"evaluation of {args.eval_tiles} tiles ({sum(int(r.max()) for r in references)} reference nuclei, "
          f"{sum(len(d) for d in detections)} detections): mAP {ours['mAP']:.4f} mAP50 {ours['mAP50']:.4f}; "
          f"|ours - pycocotools| = {difference:.1e}")
    if difference > 1e-6:
        print("RESULTS DIFFER", file=sys.stderr)
        return 1
    ours_median, theirs_median = statistics.median(ours_times), statistics.median(theirs_times)
    print(f"mednets coco_average_precision median {ours_median:.3f} s; pycocotools (encode + evaluate) median "
          f"{theirs_median:.3f} s")
    print(f"tiles_per_s={tiles_per_s:.3f} eval_speedup_vs_pycocotools={theirs_median / ours_median:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
