"""Device choice and graceful degradation when a GPU runs out of memory.

SlicerMedNets runs on whatever the user's computer offers: an NVIDIA GPU (CUDA), an Apple-silicon GPU (MPS) or only
the CPU. This module

* picks a device (:func:`choose_device`: CUDA, then MPS, then CPU; an unavailable request falls back to the CPU and says
  so in plain words),
* describes it for the user (:func:`describe_device`: GPU name and free memory),
* recognises out-of-memory failures of every backend (:func:`is_out_of_memory_error`), and
* retries a job after such a failure (:func:`run_with_fallback`): with half the batch size, down to 1, then on the CPU;
  an operator that Apple's MPS backend does not implement (``NotImplementedError``) also moves the job to the CPU.

Messages meant for the user go through a ``report(message)`` callback (e.g. the module's status line in Slicer); when
no callback is given they are emitted as :class:`DeviceFallbackWarning` warnings.

MPS: PyTorch can run MPS-unsupported operators on the CPU by itself when the environment variable
``PYTORCH_ENABLE_MPS_FALLBACK=1`` is set *before torch is imported*. Importing this module sets it (on macOS, without
overriding a value the user chose) when torch is not imported yet; :func:`run_with_fallback` still moves a job to the
CPU when the variable came too late and an operator raises ``NotImplementedError``.
"""

from __future__ import annotations

import gc
import os
import sys
import warnings
from typing import Callable, Optional, TypeVar, Union

_MPS_FALLBACK_VARIABLE = "PYTORCH_ENABLE_MPS_FALLBACK"


def enable_mps_cpu_fallback() -> bool:
    """Ask PyTorch to run operators that MPS lacks on the CPU (``PYTORCH_ENABLE_MPS_FALLBACK=1``).

    The variable is only read when torch is imported, so this has an effect only if torch is not imported yet. A
    value already set by the user is kept. Returns True when the variable is "1" and torch will read it.
    """
    if sys.platform == "darwin":
        os.environ.setdefault(_MPS_FALLBACK_VARIABLE, "1")
    return os.environ.get(_MPS_FALLBACK_VARIABLE) == "1" and "torch" not in sys.modules


enable_mps_cpu_fallback()

import torch  # noqa: E402  (after the MPS environment variable, on purpose)

__all__ = [
    "DeviceFallbackWarning",
    "ReportCallback",
    "choose_device",
    "describe_device",
    "enable_mps_cpu_fallback",
    "free_cached_memory",
    "is_out_of_memory_error",
    "mps_available",
    "run_with_fallback",
]

ReportCallback = Callable[[str], None]
T = TypeVar("T")

# Phrases of out-of-memory RuntimeErrors raised by the allocators (CUDA, cuDNN/cuBLAS workspaces, MPS, CPU).
_OUT_OF_MEMORY_PHRASES = (
    "out of memory",
    "cuda error: out of memory",
    "cudnn_status_alloc_failed",
    "cublas_status_alloc_failed",
    "cusolver_status_alloc_failed",
    "mps backend out of memory",
    "defaultcpuallocator: can't allocate memory",
    "defaultcpuallocator: not enough memory",
)


class DeviceFallbackWarning(UserWarning):
    """A device was unavailable or ran out of memory and the job continued another way."""


def _notify(report: Optional[ReportCallback], message: str) -> None:
    if report is not None:
        report(message)
    else:
        warnings.warn(message, DeviceFallbackWarning, stacklevel=3)


def mps_available() -> bool:
    """True when this PyTorch build can use an Apple-silicon GPU (MPS)."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def choose_device(preference: Union[str, torch.device, None] = "auto",
                  report: Optional[ReportCallback] = None) -> torch.device:
    """Return the device to compute on.

    Args:
        preference: ``"auto"`` (or None) picks CUDA when available, else MPS, else the CPU. ``"cuda"``, ``"cuda:<n>"``,
            ``"mps"`` and ``"cpu"`` (strings or :class:`torch.device`) request that device; when it is not available
            the CPU is returned and ``report`` is told why.
        report: callback receiving a plain-language message when the request cannot be honoured; None emits a
            :class:`DeviceFallbackWarning`.

    Raises:
        ValueError: ``preference`` names no known device type.
    """
    if preference is None or (isinstance(preference, str) and preference.strip().lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        requested = torch.device(preference.strip().lower() if isinstance(preference, str) else preference)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device preference must be 'auto', 'cuda', 'cuda:<index>', 'mps' or 'cpu', "
                         f"got {preference!r}") from error
    if requested.type == "cpu":
        return requested
    if requested.type == "cuda":
        if not torch.cuda.is_available():
            _notify(report, "A CUDA (NVIDIA) GPU was requested but none is available to PyTorch; using the CPU "
                            "instead (slower).")
            return torch.device("cpu")
        if requested.index is not None and requested.index >= torch.cuda.device_count():
            _notify(report, f"GPU number {requested.index} was requested but only {torch.cuda.device_count()} "
                            f"CUDA GPU(s) exist; using the CPU instead (slower).")
            return torch.device("cpu")
        return requested
    if requested.type == "mps":
        if not mps_available():
            _notify(report, "An Apple GPU (MPS) was requested but it is not available to PyTorch; using the CPU "
                            "instead (slower).")
            return torch.device("cpu")
        return requested
    raise ValueError(f"device preference must be 'auto', 'cuda', 'cuda:<index>', 'mps' or 'cpu', got {preference!r}")


def _gibibytes(num_bytes: float) -> str:
    return f"{num_bytes / 2 ** 30:.1f} GiB"


def describe_device(device: Union[str, torch.device]) -> str:
    """One line for the user naming ``device``, e.g. ``"NVIDIA RTX A5000 (cuda:0), 21.3 GiB free of 23.7 GiB"``."""
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return f"{device} (CUDA is not available)"
        index = device.index if device.index is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(index)
        try:
            free, total = torch.cuda.mem_get_info(index)
        except RuntimeError:
            return f"{name} (cuda:{index})"
        return f"{name} (cuda:{index}), {_gibibytes(free)} free of {_gibibytes(total)}"
    if device.type == "mps":
        text = "Apple GPU (mps)"
        recommended = getattr(getattr(torch, "mps", None), "recommended_max_memory", None)
        if mps_available() and recommended is not None:
            text += f", up to {_gibibytes(recommended())} usable"
        return text
    if device.type == "cpu":
        return f"CPU ({torch.get_num_threads()} threads)"
    return str(device)


def is_out_of_memory_error(error: BaseException) -> bool:
    """True when ``error`` (or an exception it was raised from) reports that a device ran out of memory.

    Recognised: ``torch.cuda.OutOfMemoryError`` / ``torch.OutOfMemoryError``, Python's :class:`MemoryError`, and
    RuntimeErrors from the CUDA, cuDNN/cuBLAS, MPS and CPU allocators ("CUDA out of memory", "MPS backend out of
    memory", "CUDNN_STATUS_ALLOC_FAILED", "DefaultCPUAllocator: can't allocate memory", ...).
    """
    oom_types = tuple(t for t in (getattr(torch.cuda, "OutOfMemoryError", None),
                                  getattr(torch, "OutOfMemoryError", None)) if isinstance(t, type))
    seen = set()
    current: Optional[BaseException] = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MemoryError) or (oom_types and isinstance(current, oom_types)):
            return True
        if isinstance(current, RuntimeError):
            text = str(current).lower()
            if any(phrase in text for phrase in _OUT_OF_MEMORY_PHRASES):
                return True
        current = current.__cause__ or current.__context__
    return False


def free_cached_memory(device: Union[str, torch.device, None] = None) -> None:
    """Collect garbage and return cached allocator blocks of ``device`` (all accelerators when None) to the system."""
    gc.collect()
    kind = torch.device(device).type if device is not None else None
    if kind in (None, "cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()
    if kind in (None, "mps") and mps_available():
        torch.mps.empty_cache()


def _device_words(device: torch.device) -> str:
    return {"cuda": "The GPU", "mps": "The Apple GPU", "cpu": "The computer"}.get(device.type, f"Device {device}")


def run_with_fallback(fn: Callable[[torch.device, int], T], device: Union[str, torch.device], batch_size: int,
                      report: Optional[ReportCallback] = None, allow_cpu: bool = True) -> T:
    """Call ``fn(device, batch_size)`` and retry in cheaper ways when it runs out of memory.

    Order of attempts after an out-of-memory error (:func:`is_out_of_memory_error`): the same device with half the
    batch size (rounded down) until 1; then, if ``allow_cpu`` and the device is not the CPU, the CPU with the original
    batch size. On MPS a ``NotImplementedError`` (an operator MPS lacks) moves the job to the CPU at once. Every change
    is told to the user through ``report`` in plain words (or a :class:`DeviceFallbackWarning`). Cached accelerator
    memory is released before each retry. ``fn`` must start from scratch on every call (nothing of a failed attempt
    may leak into the result).

    Args:
        fn: the job; called with the device and batch size to use.
        device: the preferred device.
        batch_size: the preferred batch size (>= 1).
        report: receives one message per fallback; None emits warnings.
        allow_cpu: whether moving to the CPU is possible (the job's model can be moved there).

    Returns:
        What ``fn`` returns.

    Raises:
        The last error when no cheaper attempt is left, and any error that is not an out-of-memory error.
    """
    device = torch.device(device)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    original_batch_size = batch_size
    while True:
        next_attempt = None
        try:
            return fn(device, batch_size)
        except Exception as error:  # noqa: BLE001 - classified just below, re-raised when not recoverable
            if is_out_of_memory_error(error):
                if batch_size > 1:
                    smaller = batch_size // 2
                    next_attempt = (device, smaller,
                                    f"{_device_words(device)} ran out of memory with {batch_size} windows at a "
                                    f"time; retrying with {smaller}.")
                elif allow_cpu and device.type != "cpu":
                    next_attempt = (torch.device("cpu"), original_batch_size,
                                    f"{_device_words(device)} ran out of memory even with 1 window at a time; "
                                    f"continuing on the CPU (slower).")
            elif isinstance(error, NotImplementedError) and device.type == "mps" and allow_cpu:
                next_attempt = (torch.device("cpu"), original_batch_size,
                                "An operation of this model is not supported on the Apple GPU (MPS); continuing on "
                                "the CPU (slower).")
            if next_attempt is None:
                raise
        # Outside the except block: the failed attempt's traceback (and the tensors its frames hold) is released.
        free_cached_memory(device)
        device, batch_size, message = next_attempt
        _notify(report, message)
