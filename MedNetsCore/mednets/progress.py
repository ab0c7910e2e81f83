"""Progress reporting and cancellation shared by every long-running step.

Conventions used across SlicerMedNets (Logic classes, the training engine, sliding-window inference, CLIs):

* ``progress`` is an optional callable ``progress(fraction: float, message: str) -> None`` with ``fraction`` in [0, 1].
* ``cancel`` is an optional callable ``cancel() -> bool``; when it returns True the running step raises
  :class:`OperationCancelled` at the next safe point, after which no partial result has been published.
* :class:`CancelToken` is the usual ``cancel`` object: the GUI thread calls :meth:`CancelToken.request`, the worker polls it.
* :func:`sub_progress` maps a stage of a longer job onto a sub-range of the overall bar, so nested steps report
  a single monotone fraction ("stage + percentage" as Slicer users expect).
"""

from __future__ import annotations

import threading
from typing import Callable, Optional

ProgressCallback = Callable[[float, str], None]
CancelCallback = Callable[[], bool]

__all__ = [
    "ProgressCallback",
    "CancelCallback",
    "OperationCancelled",
    "CancelToken",
    "check_cancel",
    "report",
    "sub_progress",
]


class OperationCancelled(Exception):
    """Raised when the user cancelled a running operation. Nothing half-written is left behind."""

    def __init__(self, message: str = "Operation cancelled by the user.") -> None:
        super().__init__(message)


class CancelToken:
    """Thread-safe cancellation flag; calling the token returns whether cancellation was requested."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def request(self) -> None:
        self._event.set()

    def reset(self) -> None:
        self._event.clear()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def __call__(self) -> bool:
        return self._event.is_set()


def check_cancel(cancel: Optional[CancelCallback]) -> None:
    """Raise :class:`OperationCancelled` if ``cancel`` says so (``None`` never cancels)."""
    if cancel is not None and cancel():
        raise OperationCancelled()


def report(progress: Optional[ProgressCallback], fraction: float, message: str = "") -> None:
    """Call ``progress`` with ``fraction`` clamped to [0, 1]; a ``None`` callback is ignored."""
    if progress is not None:
        progress(min(1.0, max(0.0, float(fraction))), message)


def sub_progress(progress: Optional[ProgressCallback], start: float, stop: float,
                 prefix: str = "") -> Optional[ProgressCallback]:
    """Return a callback that maps [0, 1] of a sub-step onto [start, stop] of ``progress``.

    ``prefix`` (e.g. ``"Stage 1/2: "``) is prepended to the sub-step's messages.
    """
    if progress is None:
        return None
    if not 0.0 <= start <= stop <= 1.0:
        raise ValueError(f"sub_progress range must satisfy 0 <= start <= stop <= 1, got [{start}, {stop}]")

    def mapped(fraction: float, message: str = "") -> None:
        fraction = min(1.0, max(0.0, float(fraction)))
        report(progress, start + (stop - start) * fraction, prefix + message)

    return mapped
