"""Benchmark: HD95 and mean surface distance on 256^3 masks, mednets vs MONAI vs medpy, in one run.

Overlapping, irregular organ-sized blobs (semi-axes of about 40 to 60 voxels) on an anisotropic grid stand for a
prediction and its reference, in two cases: a good prediction (Dice about 0.92, the ratio line) and a poor one (Dice
about 0.73, most surface voxels far from the other surface: the slowest case for the tree queries). Each
implementation is run once to warm up, then timed over a few repeats taken in turns (median).
Values are checked: ours must equal MONAI's to 1e-6 (relative); medpy pools both directions before taking the 95th
percentile, so its hd95 is compared with the pooled percentile of our directed distances instead, and its assd
(medpy >= 0.5 pools the same way as MONAI) with our mean surface distance.

Run by hand:  .venv/bin/python Testing/Benchmarks/bench_metrics.py [--repeats N]
The last line is ``hd95_speedup_vs_monai=<x> hd95_speedup_vs_medpy=<y>`` (their time / our time, good case).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch
from medpy.metric import binary as medpy_binary
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

from mednets import metrics
from mednets.phantoms import lumpy_blob_mask

MEDPY_REPEATS = 3  # medpy takes seconds per call

SHAPE = (256, 256, 256)
SPACING = (1.25, 0.8, 0.8)  # mm, array-axis order (K, J, I)
RADIUS_MM = 50.0  # semi-axes of 40 voxels along K and 62 along J and I before the lobes


def make_cases() -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Prediction/reference pairs: the reference is an irregular blob; the "good" prediction has the same lobes but
    is shifted, smaller and more irregular (Dice about 0.92), the "poor" one has other lobes (Dice about 0.73)."""
    centre = np.array(SHAPE) / 2.0 * np.array(SPACING)

    def blob(shift_mm, radius_mm, irregularity, seed):
        return lumpy_blob_mask(SHAPE, centre + np.array(shift_mm), radius_mm, np.random.default_rng(seed),
                               spacing=SPACING, irregularity=irregularity)

    ref = blob((0.0, 0.0, 0.0), RADIUS_MM, 0.3, seed=7)
    return {
        "good": (blob((4.0, -3.0, 3.0), RADIUS_MM - 4.0, 0.5, seed=7), ref),
        "poor": (blob((2.5, -2.0, 1.5), RADIUS_MM - 2.0, 0.3, seed=8), ref),
    }


def timed_round_robin(runs: Dict[Tuple[str, str], Tuple[Callable[[], float], int]]
                      ) -> Dict[Tuple[str, str], Tuple[float, float]]:
    """Median wall time and value of each run: one warm-up each, then the timed repeats taken in turns, so that a
    change of load on a shared machine falls on every implementation alike."""
    values = {key: function() for key, (function, _) in runs.items()}
    times: Dict[Tuple[str, str], List[float]] = {key: [] for key in runs}
    for round_index in range(max(count for _, count in runs.values())):
        for key, (function, count) in runs.items():
            if round_index < count:
                start = time.perf_counter()
                function()
                times[key].append(time.perf_counter() - start)
    return {key: (statistics.median(times[key]), values[key]) for key in runs}


def measure(pred: np.ndarray, ref: np.ndarray, repeats: int) -> Dict[Tuple[str, str], Tuple[float, float]]:
    """(metric, library) -> (median seconds, value) for HD95 and the mean surface distance; values cross-checked."""
    pred_t, ref_t = (torch.from_numpy(m)[None, None] for m in (pred, ref))
    runs = {
        ("hd95", "mednets"): (lambda: metrics.hausdorff_distance(pred, ref, SPACING, percentile=95), repeats),
        ("hd95", "MONAI"): (lambda: compute_hausdorff_distance(
            pred_t, ref_t, include_background=True, percentile=95, spacing=list(SPACING)).item(), repeats),
        ("hd95", "ours-1t"): (lambda: metrics.surface_distances(pred, ref, SPACING, parallel=False).hausdorff(95.0),
                              repeats),
        ("hd95", "medpy"): (lambda: medpy_binary.hd95(pred, ref, voxelspacing=SPACING), MEDPY_REPEATS),
        ("msd", "mednets"): (lambda: metrics.mean_surface_distance(pred, ref, SPACING), repeats),
        ("msd", "MONAI"): (lambda: compute_average_surface_distance(
            pred_t, ref_t, include_background=True, symmetric=True, spacing=list(SPACING)).item(), repeats),
        ("msd", "ours-1t"): (lambda: metrics.surface_distances(pred, ref, SPACING, parallel=False).mean(), repeats),
        ("msd", "medpy"): (lambda: medpy_binary.assd(pred, ref, voxelspacing=SPACING), MEDPY_REPEATS),
    }
    results = timed_round_robin(runs)

    distances = metrics.surface_distances(pred, ref, SPACING)
    pooled_hd95 = float(np.percentile(np.concatenate([distances.pred_to_ref, distances.ref_to_pred]), 95))
    for metric in ("hd95", "msd"):
        ours = results[(metric, "mednets")][1]
        np.testing.assert_allclose(ours, results[(metric, "MONAI")][1], rtol=1e-6, err_msg=f"{metric} vs MONAI")
        assert results[(metric, "ours-1t")][1] == ours, f"{metric}: threads changed the value"
        medpy_expected = pooled_hd95 if metric == "hd95" else ours
        np.testing.assert_allclose(results[(metric, "medpy")][1], medpy_expected, rtol=1e-9, err_msg=f"{metric} medpy")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help=f"timed repeats for ours and MONAI (medpy: "
                                                                f"{MEDPY_REPEATS})")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # MONAI deprecation chatter

    print(f"masks {SHAPE}, spacing {SPACING} mm, torch threads {torch.get_num_threads()}; "
          f"median of {args.repeats} runs ({MEDPY_REPEATS} for medpy) after one warm-up")
    print(f"{'case':<5} {'metric':<6} {'library':<8} {'median s':>9} {'value mm':>10} {'ours faster':>12}")
    speedups: Dict[str, Dict[str, float]] = {}
    for case, (pred, ref) in make_cases().items():
        results = measure(pred, ref, args.repeats)
        print(f"{case}: {int(pred.sum())} and {int(ref.sum())} voxels, Dice {metrics.dice(pred, ref):.3f}")
        for (metric, library), (seconds, value) in results.items():
            speedup = seconds / results[(metric, "mednets")][0]
            print(f"{case:<5} {metric:<6} {library:<8} {seconds:>9.4f} {value:>10.4f} {speedup:>11.2f}x")
        hd95_seconds = {library: results[("hd95", library)][0] for library in ("mednets", "ours-1t", "MONAI", "medpy")}
        speedups[case] = {
            "vs_monai": hd95_seconds["MONAI"] / hd95_seconds["mednets"],
            "vs_monai_single_thread": hd95_seconds["MONAI"] / hd95_seconds["ours-1t"],
            "vs_medpy": hd95_seconds["medpy"] / hd95_seconds["mednets"],
        }
    print("mednets: default (the two directions in two threads); ours-1t: mednets in the calling thread only")
    print("values: mednets == MONAI (rtol 1e-6); medpy hd95 == pooled 95th percentile of our directed distances, "
          "medpy assd == our mean surface distance (rtol 1e-9)")
    for case, ratios in speedups.items():
        print(f"{case}: hd95 speed-up vs MONAI {ratios['vs_monai']:.2f} "
              f"(single thread {ratios['vs_monai_single_thread']:.2f}), vs medpy {ratios['vs_medpy']:.2f}")
    main_case = speedups["good"]
    print(f"hd95_speedup_vs_monai={main_case['vs_monai']:.2f} hd95_speedup_vs_medpy={main_case['vs_medpy']:.2f}")


if __name__ == "__main__":
    main()
