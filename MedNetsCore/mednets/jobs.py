"""Background jobs for module widgets: compute in a worker thread, publish results on the GUI thread.

Every SlicerMedNets widget runs long work (inference, training, evaluation) the same way, so that the interface never
freezes and the user can cancel:

1. **GUI thread** - validate the inputs and copy what the computation needs out of MRML into plain data
   (``numpy.array(slicer.util.arrayFromVolume(node))``, spacing tuples, settings). No MRML object crosses to the worker.
2. **Worker thread** - ``BackgroundJob(compute, data, ...).start()`` runs ``compute(data, ..., progress=..., cancel=...)``.
   ``compute`` uses numpy/torch only: VTK and MRML objects are not thread-safe and the scene must only ever be touched
   from the GUI thread. It reports ``progress(fraction, message)`` and calls ``check_cancel(cancel)`` at safe points.
3. **GUI thread** - a ``qt.QTimer`` (every 100 ms or so) calls :meth:`BackgroundJob.poll` to show progress; once
   :attr:`BackgroundJob.done`, it calls :meth:`BackgroundJob.result`, which returns the value or re-raises the worker's
   exception, and creates the output nodes from the returned arrays. A cancelled or failed job returns nothing to
   publish, so the scene never holds a half-made node.

Batch scripts (``logic.run(..., waitForCompletion=True)``, command lines) use :meth:`BackgroundJob.run_blocking`: the
same function, the same progress/cancel contract, run in the calling thread.

Example (widget)::

    self._job = BackgroundJob(self.logic.computeMask, inputArray, threshold).start()
    self._timer.start()                      # qt.QTimer connected to self._onPoll

    def _onPoll(self):
        finished = self._job.done           # read before poll(): then poll() holds the terminal event
        for event in self._job.poll():
            if event.kind == "progress":
                self.ui.statusLabel.setText(f"{event.message} ({event.fraction:.0%})")
        if finished:
            self._timer.stop()
            try:
                mask = self._job.result()
            except OperationCancelled:
                ...                             # nothing to publish
            else:
                self.logic.createSegmentation(inputVolume, mask)   # back on the GUI thread

This module is pure Python (no Qt, VTK or Slicer import), so the same code runs in Slicer, under the test runtime and in
command-line tools.
"""

from __future__ import annotations

import collections
import enum
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Deque, List, Optional

from mednets.progress import CancelToken, OperationCancelled, ProgressCallback, report

__all__ = [
    "JobState",
    "JobEvent",
    "BackgroundJob",
]


class JobState(str, enum.Enum):
    """Life cycle of a :class:`BackgroundJob`; ``FINISHED``, ``FAILED`` and ``CANCELLED`` are terminal."""

    PENDING = "pending"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.FINISHED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class JobEvent:
    """One thing that happened in a job, in the order it happened.

    ``kind`` is ``"started"``, ``"progress"`` or a terminal kind: ``"finished"``, ``"failed"``, ``"cancelled"``.
    ``fraction`` is in [0, 1] for progress events (1.0 for ``"finished"``), ``None`` otherwise. ``error`` is the
    exception for ``"failed"`` and ``"cancelled"`` events.
    """

    kind: str
    fraction: Optional[float] = None
    message: str = ""
    error: Optional[BaseException] = None

    @property
    def terminal(self) -> bool:
        return self.kind in ("finished", "failed", "cancelled")


class BackgroundJob:
    """Run ``fn(*args, progress=..., cancel=..., **kwargs)`` in a worker thread (or blocking) and collect its events.

    ``fn`` must accept the keyword arguments ``progress`` (a ``progress(fraction, message)`` callable) and ``cancel``
    (a :class:`~mednets.progress.CancelToken`, callable, true once cancellation was requested); it should raise
    :class:`~mednets.progress.OperationCancelled` (e.g. through ``check_cancel(cancel)``) when asked to stop.
    It must not touch VTK/MRML objects when run with :meth:`start` (see the module documentation).

    A job runs once. Its outcome is one of:

    * finished - ``fn`` returned; :meth:`result` returns its value;
    * failed - ``fn`` raised; :meth:`result` re-raises that exception (with its traceback);
    * cancelled - ``fn`` raised :class:`OperationCancelled`, or :meth:`cancel` was called before ``fn`` returned
      (a result computed after the user pressed Cancel is discarded); :meth:`result` raises ``OperationCancelled``.

    Events are queued for :meth:`poll`. Only the most recent ``max_pending_progress`` progress events are kept
    between two polls (older ones are dropped first), so a job that nobody polls cannot grow memory without bound;
    ``"started"`` and the terminal event are never dropped.
    """

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if not callable(fn):
            raise TypeError(f"BackgroundJob needs a callable, got {type(fn).__name__}")
        for reserved in ("progress", "cancel"):
            if reserved in kwargs:
                raise TypeError(f"BackgroundJob passes '{reserved}' to the function itself; do not give it as an argument")
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.name = getattr(fn, "__qualname__", repr(fn))
        self.max_pending_progress = 1000
        self.cancel_token = CancelToken()
        self._lock = threading.Lock()
        self._events: Deque[JobEvent] = collections.deque()
        self._pending_progress = 0
        self._state = JobState.PENDING
        self._result: Any = None
        self._error: Optional[BaseException] = None
        self._done = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._started_at: Optional[float] = None
        self._ended_at: Optional[float] = None
        self._forward: Optional[ProgressCallback] = None

    def __repr__(self) -> str:
        return f"<BackgroundJob {self.name} {self.state.value}>"

    # ----------------------------------------------------------------------------------------------- running

    def start(self) -> "BackgroundJob":
        """Run the job in a new daemon worker thread and return ``self`` at once."""
        self._begin()
        self._thread = threading.Thread(target=self._run, name=f"mednets job {self.name}", daemon=True)
        self._thread.start()
        return self

    def run_blocking(self, progress: Optional[ProgressCallback] = None) -> Any:
        """Run the job in the calling thread (batch mode) and return its result or raise its exception.

        ``progress``, if given, is also called directly with every progress report. Events are queued as with
        :meth:`start`, and :meth:`cancel` (e.g. from another thread) stops the run the same way.
        """
        self._begin()
        self._forward = progress
        self._run()
        return self.result()

    def _begin(self) -> None:
        with self._lock:
            if self._state is not JobState.PENDING:
                raise RuntimeError(f"{self!r} was already started; create a new BackgroundJob to run again")
            self._state = JobState.RUNNING
            self._started_at = time.monotonic()
            self._events.append(JobEvent("started"))

    def _run(self) -> None:
        try:
            value = self.fn(*self.args, progress=self._report, cancel=self.cancel_token, **self.kwargs)
        except OperationCancelled as error:
            self._end(JobState.CANCELLED, error=error)
        except BaseException as error:  # noqa: B902 - every failure must reach the GUI thread, not vanish in the worker
            self._end(JobState.FAILED, error=error)
        else:
            if self.cancel_token.requested:
                self._end(JobState.CANCELLED, error=OperationCancelled())
            else:
                self._end(JobState.FINISHED, value=value)

    def _report(self, fraction: float, message: str = "") -> None:
        report(self._enqueue_progress, fraction, message)
        if self._forward is not None:
            report(self._forward, fraction, message)

    def _enqueue_progress(self, fraction: float, message: str) -> None:
        with self._lock:
            self._events.append(JobEvent("progress", fraction, str(message)))
            self._pending_progress += 1
            if self._pending_progress > self.max_pending_progress:
                self._drop_oldest_progress()

    def _drop_oldest_progress(self) -> None:
        for index, event in enumerate(self._events):
            if event.kind == "progress":
                del self._events[index]
                self._pending_progress -= 1
                return

    def _end(self, state: JobState, value: Any = None, error: Optional[BaseException] = None) -> None:
        if state is JobState.FINISHED:
            event = JobEvent("finished", 1.0, "Done")
        else:
            event = JobEvent(state.value, None, str(error) or type(error).__name__, error)
        with self._lock:
            self._result = value
            self._error = error
            self._state = state
            self._ended_at = time.monotonic()
            self._events.append(event)
        self._done.set()

    # ----------------------------------------------------------------------------------------------- control

    def cancel(self) -> None:
        """Ask the job to stop at its next ``check_cancel``; returns at once (use :meth:`wait` to wait)."""
        self.cancel_token.request()

    @property
    def cancel_requested(self) -> bool:
        return self.cancel_token.requested

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the job ended or ``timeout`` seconds passed; return whether it ended."""
        if self._state is JobState.PENDING:
            raise RuntimeError(f"{self!r} was never started")
        return self._done.wait(timeout)

    # ----------------------------------------------------------------------------------------------- reading

    @property
    def state(self) -> JobState:
        return self._state

    @property
    def done(self) -> bool:
        """True once the job ended (finished, failed or cancelled); its terminal event is then already queued."""
        return self._done.is_set()

    @property
    def running(self) -> bool:
        return self._state is JobState.RUNNING

    @property
    def elapsed(self) -> float:
        """Seconds since the job started (until it ended, once it did); 0 before it started."""
        if self._started_at is None:
            return 0.0
        end = self._ended_at if self._ended_at is not None else time.monotonic()
        return end - self._started_at

    def poll(self) -> List[JobEvent]:
        """Return (and forget) the events queued since the last call, oldest first. Never blocks."""
        with self._lock:
            events = list(self._events)
            self._events.clear()
            self._pending_progress = 0
        return events

    def result(self, timeout: Optional[float] = None) -> Any:
        """Return the job's value, waiting up to ``timeout`` seconds (``None``: as long as it takes).

        Raises the worker's exception if it failed, :class:`OperationCancelled` if it was cancelled, and
        ``TimeoutError`` if it is still running when the timeout expires.
        """
        if not self.wait(timeout):
            raise TimeoutError(f"{self!r} still running after {timeout} s")
        if self._error is not None:
            raise self._error
        return self._result

    @property
    def error(self) -> Optional[BaseException]:
        """The exception that ended the job (``OperationCancelled`` for a cancelled job), ``None`` otherwise."""
        return self._error
