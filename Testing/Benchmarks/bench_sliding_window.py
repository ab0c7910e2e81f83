"""Benchmark: mednets.inference.sliding_window against MONAI's sliding_window_inference.

Same model, volume, window (roi), overlap, blending (gaussian) and batch size for both:

* model: ``monai.networks.nets.UNet(spatial_dims=3, in_channels=1, out_channels=14, channels=(8, 16, 32),
  strides=(2, 2), num_res_units=0, norm=<--norm>)`` in eval mode, random weights (seed 0): a small multi-organ
  segmentation UNet (14 classes as in BTCV). ``--norm batch`` (default) keeps channels-last layout through the whole
  network; ``--norm instance`` does not (instance normalisation returns contiguous tensors), so it isolates the
  blending/memory-traffic gains;
* volume: 256^3 float32 uniform noise (seed 0), one channel, batch 1, on the CPU.

Time: wall time of a full call, median of ``--repeats`` runs after one warm-up run of each method, the two methods
alternating (MONAI runs inside ``torch.inference_mode()`` too). The predictor is wrapped in a timer (same wrapper for
both) to split the time into network time and everything else ("stitching").

Peak memory: each method runs once in its own fresh subprocess; peak = high-water mark of the resident set size during
the call minus the resident set size just before it. The high-water mark is reset right before the call through
``/proc/self/clear_refs`` (Linux) and read from ``VmHWM`` in ``/proc/self/status``; where that is not possible the
subprocess falls back to ``resource.getrusage(RUSAGE_SELF).ru_maxrss``. (tracemalloc cannot see torch's allocations.)

Outputs of both methods are compared (max absolute difference) before timing.

The last printed line is ``speedup_vs_monai=<monai_time / our_time> peak_mem_ratio=<our_peak / monai_peak>``.

Run: ``.venv/bin/python Testing/Benchmarks/bench_sliding_window.py [--norm instance] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Tuple

import torch

METHODS = ("monai", "mednets")


def parse_arguments(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="volume edge length (voxels)")
    parser.add_argument("--roi", type=int, default=96, help="window edge length (voxels)")
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--classes", type=int, default=14)
    parser.add_argument("--norm", choices=("batch", "instance"), default="batch")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method after one warm-up")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--memory-of", choices=METHODS, help=argparse.SUPPRESS)  # internal: subprocess mode
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> Tuple[torch.nn.Module, torch.Tensor]:
    from monai.networks.nets import UNet

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = UNet(spatial_dims=3, in_channels=1, out_channels=args.classes, channels=(8, 16, 32), strides=(2, 2),
                 num_res_units=0, norm=args.norm).eval()
    volume = torch.rand((1, 1) + (args.size,) * 3, generator=torch.Generator().manual_seed(0))
    return model, volume


def runner(method: str, args: argparse.Namespace, predictor: Callable) -> Callable[[torch.Tensor], torch.Tensor]:
    if method == "monai":
        from monai.inferers import sliding_window_inference

        def run_monai(volume: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return sliding_window_inference(volume, args.roi, args.batch_size, predictor, overlap=args.overlap,
                                                mode="gaussian")
        return run_monai
    from mednets.inference import sliding_window

    def run_mednets(volume: torch.Tensor) -> torch.Tensor:
        return sliding_window(volume, predictor, args.roi, overlap=args.overlap, blend="gaussian",
                              batch_size=args.batch_size)
    return run_mednets


class TimedPredictor:
    """Calls the model and adds up the time spent inside it."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.seconds = 0.0

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        output = self.model(batch)
        self.seconds += time.perf_counter() - start
        return output


# ------------------------------------------------------------------------------------------------------- memory

def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def measure_memory_in_this_process(args: argparse.Namespace) -> Dict[str, float]:
    model, volume = build(args)
    run = runner(args.memory_of, args, model)
    try:
        baseline_kib = _status_kib("VmRSS")
        exact = _reset_peak_rss()
    except (OSError, KeyError):
        baseline_kib, exact = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, False
    result = run(volume)
    peak_kib = _status_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    output_mib = result.numel() * result.element_size() / 2 ** 20
    return {"peak_growth_mib": (peak_kib - baseline_kib) / 1024, "output_mib": output_mib,
            "method": "VmHWM after clear_refs" if exact else "ru_maxrss"}


def measure_memory(method: str, argv: List[str]) -> Dict[str, float]:
    command = [sys.executable, os.path.abspath(__file__), *argv, "--memory-of", method]
    completed = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------------- main

def main(argv: List[str]) -> None:
    args = parse_arguments(argv)
    if args.memory_of:
        print(json.dumps(measure_memory_in_this_process(args)))
        return
    model, volume = build(args)
    predictors = {method: TimedPredictor(model) for method in METHODS}
    runs = {method: runner(method, args, predictors[method]) for method in METHODS}
    print(f"model: MONAI UNet channels=(8, 16, 32) strides=(2, 2) norm={args.norm}, {args.classes} classes; "
          f"volume {args.size}^3; roi {args.roi}; overlap {args.overlap}; gaussian; batch {args.batch_size}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)

    outputs = {method: runs[method](volume) for method in METHODS}  # warm-up, also the agreement check
    difference = (outputs["mednets"].float() - outputs["monai"].float()).abs().max().item()
    print(f"outputs agree: max |mednets - monai| = {difference:.2e} (shape {tuple(outputs['monai'].shape)})",
          flush=True)
    if not difference < 1e-4:
        raise SystemExit(f"outputs differ by {difference}")
    del outputs

    seconds: Dict[str, List[float]] = {method: [] for method in METHODS}
    network: Dict[str, List[float]] = {method: [] for method in METHODS}
    for repeat in range(args.repeats):
        order = METHODS if repeat % 2 == 0 else METHODS[::-1]
        for method in order:
            predictors[method].seconds = 0.0
            start = time.perf_counter()
            result = runs[method](volume)
            seconds[method].append(time.perf_counter() - start)
            network[method].append(predictors[method].seconds)
            del result
    for method in METHODS:
        wall, net = statistics.median(seconds[method]), statistics.median(network[method])
        print(f"{method:8s} time median {wall:7.3f} s  (runs {', '.join(f'{s:.2f}' for s in seconds[method])}; "
              f"network {net:.2f} s, everything else {wall - net:.2f} s)", flush=True)

    memory = {method: measure_memory(method, argv) for method in METHODS}
    for method in METHODS:
        print(f"{method:8s} peak memory growth {memory[method]['peak_growth_mib']:8.1f} MiB "
              f"(output itself {memory[method]['output_mib']:.1f} MiB; measured with {memory[method]['method']}, "
              f"fresh subprocess)", flush=True)
    speedup = statistics.median(seconds["monai"]) / statistics.median(seconds["mednets"])
    ratio = memory["mednets"]["peak_growth_mib"] / memory["monai"]["peak_growth_mib"]
    print(f"speedup_vs_monai={speedup:.3f} peak_mem_ratio={ratio:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
