"""Jobs for module widgets: :class:`ProcessJob` (a child process of the module's command line: what every panel and
the Segment Editor effect use inside Slicer) and :class:`BackgroundJob` (a function in a worker thread or blocking).

Panels use :class:`ProcessJob` only: in real Slicer a Python worker thread starves (see the comment above
:class:`ProcessJob`). :class:`BackgroundJob` stays for batch code and for the test-only HarnessThreshold module;
its description follows.

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
    "ProcessJob",
    "ProcessJobError",
    "ProcessResult",
    "job_folder",
    "slicer_python_executable",
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

    ``kind`` is ``"started"``, ``"progress"``, ``"log"`` (a line a child process wrote) or a terminal kind: ``"finished"``, ``"failed"``, ``"cancelled"``.
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


class _Timed:
    """``elapsed`` for a job that sets ``_started_at`` / ``_ended_at`` (``time.monotonic()``)."""

    _started_at: Optional[float] = None
    _ended_at: Optional[float] = None

    @property
    def elapsed(self) -> float:
        """Seconds since the job started (until it ended, once it did); 0 before it started."""
        if self._started_at is None:
            return 0.0
        end = self._ended_at if self._ended_at is not None else time.monotonic()
        return end - self._started_at


class BackgroundJob(_Timed):
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


# ===================================================================================================== child processes
#
# Why a child process (REAL_SLICER_FACTS.md, "Python threads"): neither Slicer nor CTK turns on PythonQt's thread
# support (PythonQt's PythonQtThreadSupport.cpp: _enableGILScope = false; no setEnableThreadSupport call anywhere in
# Slicer or CTK), so Slicer's main thread keeps the GIL while Qt's event loop waits and a Python worker thread only
# advances in the slivers when the main thread runs Python. Slicer's own heavy work runs in other processes (CLI
# modules; SlicerTotalSegmentator / SlicerMONAIAuto3DSeg start ``PythonSlicer`` scripts). A :class:`ProcessJob` runs the
# module's own command line (``PythonSlicer -m <Module>Lib ...`` in Slicer, ``sys.executable -m ...`` elsewhere) with
# ``--progress json``: the child writes one JSON object per line on stdout (see :mod:`mednets.cli`).
#
# The child's stdout and stderr go to files in the job's private folder and are read by offset at each poll (a QTimer
# tick). Reading a pipe would need either a reader thread (which starves under PythonQt, the very problem above) or
# non-blocking pipes (not portable to Windows before Python 3.12); a file never blocks the child either, however much
# it writes.

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Iterable, Mapping, Sequence, Union

#: Seconds between terminate() and kill() when a job is cancelled (the issue's bound is 2 s for the child to end).
CANCEL_GRACE_SECONDS = 1.0
#: Lines of the child's stderr (and non-JSON stdout) kept for the error message of a failed job.
LOG_TAIL_LINES = 200


class ProcessJobError(RuntimeError):
    """A child process ended with an error. ``returncode`` is its exit status (negative: killed by that signal),
    ``lines`` the last lines it wrote; ``str(error)`` is one plain sentence for the panel."""

    def __init__(self, message: str, returncode: Optional[int] = None, lines: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.lines = list(lines)


@dataclass(frozen=True)
class ProcessResult:
    """What a finished child left: its private ``folder`` (inputs and outputs; removed by :meth:`ProcessJob.cleanup`),
    the ``results`` objects it emitted (``{"type": "result", ...}`` lines, in order) and its ``log`` tail."""

    folder: Path
    results: List[Dict[str, Any]]
    log: List[str]

    @property
    def last(self) -> Dict[str, Any]:
        """The last result object (an empty dict when the command emitted none)."""
        return self.results[-1] if self.results else {}


def slicer_python_executable() -> str:
    """The Python that runs the child: ``PythonSlicer`` inside 3D Slicer, ``sys.executable`` elsewhere.

    Slicer's ``slicer.util.executePythonModule`` (Base/Python/slicer/util.py) finds it the same way: ``PythonSlicer``
    is on ``PATH`` inside Slicer (``shutil.which``), else next to ``sys.executable``.
    """
    from mednets.dependencies import running_in_slicer

    if running_in_slicer():
        found = shutil.which("PythonSlicer")
        if found:
            return found
        candidate = os.path.join(os.path.dirname(sys.executable), "PythonSlicer" + (".exe" if os.name == "nt" else ""))
        if os.path.exists(candidate):
            return candidate
        raise ProcessJobError("Slicer's Python launcher 'PythonSlicer' was not found next to Slicer; the job cannot "
                              "start. Please reinstall 3D Slicer.")
    return sys.executable


def package_search_path(*packages: str) -> List[str]:
    """The folders that hold the named (already imported) packages, e.g. ``["OrganComboLib", "mednets"]`` ->
    ``[".../OrganCombo", ".../MedNetsCore"]``: what the child's ``PYTHONPATH`` needs so that ``-m <Module>Lib`` and
    ``import mednets`` work there (Slicer puts only module folders on ``sys.path``, and only in its own process)."""
    folders: List[str] = []
    for name in packages:
        module = sys.modules.get(name)
        if module is None:
            module = __import__(name)
        location = getattr(module, "__file__", None)
        if location is None:
            paths = list(getattr(module, "__path__", []))
            if not paths:
                raise ProcessJobError(f"cannot locate the package '{name}' for the job's process")
            location = os.path.join(paths[0], "__init__.py")
        folder = str(Path(location).resolve().parent.parent)
        if folder not in folders:
            folders.append(folder)
    return folders


def child_environment(search_path: Sequence[str], extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The child's environment: Slicer's start-up environment inside Slicer (``slicer.util.startupEnvironment``, what
    ``launchConsoleProcess`` uses: the launcher's own settings are set again by ``PythonSlicer``), ``os.environ``
    elsewhere; ``search_path`` is put in front of ``PYTHONPATH``; output unbuffered, UTF-8."""
    from mednets.dependencies import running_in_slicer

    environment: Dict[str, str] = {}
    if running_in_slicer():
        try:
            environment = dict(sys.modules["slicer"].util.startupEnvironment())
        except Exception:  # noqa: BLE001 - an old Slicer without it: the current environment still works
            environment = {}
    if not environment:
        environment = dict(os.environ)
    existing = [p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p]
    environment["PYTHONPATH"] = os.pathsep.join(list(search_path) + [p for p in existing if p not in search_path])
    environment["PYTHONUNBUFFERED"] = "1"
    environment["PYTHONIOENCODING"] = "utf-8"
    environment.setdefault("MPLBACKEND", "Agg")
    environment.update(extra or {})
    return environment


def job_folder(prefix: str) -> Path:
    """A new private folder (mode 0700) for one job's inputs and outputs: under Slicer's temporary path inside Slicer,
    the system's temporary folder elsewhere."""
    base = None
    slicer = sys.modules.get("slicer")
    app = getattr(slicer, "app", None) if slicer is not None else None
    if app is not None:
        try:
            base = str(app.temporaryPath)
        except Exception:  # noqa: BLE001
            base = None
    if base:
        os.makedirs(base, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in prefix) or "job"
    return Path(tempfile.mkdtemp(prefix=f"MedNets-{safe}-", dir=base or None))


class _LineReader:
    """New complete lines of a growing file, read by offset (a partial last line waits for its newline)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def read(self, final: bool = False) -> List[str]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except OSError:
            return []
        self._offset += len(data)
        data = self._partial + data
        parts = data.split(b"\n")
        self._partial = b"" if final else parts.pop()
        return [part.decode("utf-8", errors="replace").rstrip("\r") for part in parts if part.strip() or not final]


class ProcessJob(_Timed):
    """Run ``<python> -m <package> --progress json <args...>`` as a child process; same interface as
    :class:`BackgroundJob` (``start``, ``poll``, ``done``, ``cancel``, ``wait``, ``result``), so
    :class:`mednets.widgets.JobPoller` runs either.

    Args:
        package: the module's command-line package, e.g. ``"OrganComboLib"``.
        args: the sub-command and its options, as a user would type them (the same command runs in batch).
        folder: the job's private folder (see :func:`job_folder`); the child's ``stdout.log`` / ``stderr.log`` are
            written there, inputs and outputs usually too. Removed by :meth:`cleanup` when ``owns_folder``.
        search_path: folders for the child's ``PYTHONPATH`` (default: those holding ``package`` and ``mednets``).
        environment: extra environment variables for the child.
        name: shown in messages (default: ``package`` and the sub-command).

    Protocol on the child's stdout (written by :mod:`mednets.cli` with ``--progress json``), one JSON object a line:
    ``{"type": "progress", "fraction": f, "message": m}``, ``{"type": "log", "message": m}``,
    ``{"type": "result", ...}`` (kept in :attr:`ProcessResult.results`), ``{"type": "error", "message": m}``.
    Other lines (and stderr) are log lines. The job ends when the child exits: status 0 -> finished; after
    :meth:`cancel` -> cancelled; otherwise failed, with the child's error line (or its last lines) as the message.
    """

    def __init__(self, package: str, args: Sequence[str], folder: Union[str, Path], *,
                 search_path: Optional[Sequence[str]] = None, environment: Optional[Mapping[str, str]] = None,
                 name: Optional[str] = None, owns_folder: bool = True,
                 python: Optional[str] = None) -> None:
        self.package = package
        self.args = [str(a) for a in args]
        self.folder = Path(folder)
        self.search_path = list(search_path) if search_path is not None else None
        self.environment = dict(environment or {})
        self.name = name or f"{package} {self.args[0] if self.args else ''}".strip()
        self.owns_folder = owns_folder
        self.python = python
        self.cancel_grace_seconds = CANCEL_GRACE_SECONDS
        self._process: Optional[subprocess.Popen] = None
        self._events: Deque[JobEvent] = collections.deque()
        self._state = JobState.PENDING
        self._cancel_requested = False
        self._cancel_at: Optional[float] = None
        self._killed = False
        self._results: List[Dict[str, Any]] = []
        self._errors: List[str] = []
        self._log: Deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self._error: Optional[BaseException] = None
        self._started_at: Optional[float] = None
        self._ended_at: Optional[float] = None
        self._stdout: Optional[_LineReader] = None
        self._stderr: Optional[_LineReader] = None
        self._files: List[Any] = []
        self.returncode: Optional[int] = None

    def __repr__(self) -> str:
        return f"<ProcessJob {self.name} {self._state.value}>"

    @property
    def command(self) -> List[str]:
        """The child's command line (the executable is resolved when the job starts)."""
        return [self.python or slicer_python_executable(), "-m", self.package, "--progress", "json", *self.args]

    # ----------------------------------------------------------------------------------------------- running
    def start(self) -> "ProcessJob":
        """Start the child and return ``self`` at once. A child that cannot start fails the job (no exception)."""
        if self._state is not JobState.PENDING:
            raise RuntimeError(f"{self!r} was already started; create a new ProcessJob to run again")
        self._state = JobState.RUNNING
        self._started_at = time.monotonic()
        self._events.append(JobEvent("started"))
        self.folder.mkdir(parents=True, exist_ok=True)
        out_path, err_path = self.folder / "stdout.log", self.folder / "stderr.log"
        self._stdout, self._stderr = _LineReader(out_path), _LineReader(err_path)
        try:
            search_path = self.search_path if self.search_path is not None else package_search_path(
                self.package, "mednets")
            environment = child_environment(search_path, self.environment)
            command = self.command
            stdout, stderr = open(out_path, "wb"), open(err_path, "wb")
            self._files = [stdout, stderr]
            options: Dict[str, Any] = {}
            if os.name == "nt":
                options["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0) | getattr(
                    subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
            else:
                options["start_new_session"] = True  # its own process group: cancel ends its helpers too
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                             env=environment, cwd=str(self.folder), **options)
        except (OSError, ImportError, ProcessJobError) as error:
            self._close_files()
            self._end(JobState.FAILED, ProcessJobError(f"The job's process could not start: {error}"))
        return self

    def run_blocking(self, progress: Optional[ProgressCallback] = None, interval: float = 0.05) -> ProcessResult:
        """Start (if needed), wait for the end while forwarding progress, and return the result (or raise)."""
        if self._state is JobState.PENDING:
            self.start()
        while True:
            finished = self.done
            for event in self.poll():
                if event.kind == "progress" and progress is not None:
                    report(progress, event.fraction or 0.0, event.message)
            if finished:
                return self.result(timeout=0)
            time.sleep(interval)

    def _check(self) -> None:
        """Read the child's new output; end the job if the child exited; escalate a pending cancel to kill."""
        if self._state is not JobState.RUNNING or self._process is None:
            return
        self._read()
        if self._cancel_at is not None and self._process.poll() is None:
            if time.monotonic() - self._cancel_at >= self.cancel_grace_seconds and not self._killed:
                self._signal(kill=True)
        code = self._process.poll()
        if code is None:
            return
        self.returncode = code
        self._read(final=True)
        self._close_files()
        if self._cancel_requested:
            self._end(JobState.CANCELLED, OperationCancelled())
        elif code == 0:
            self._end(JobState.FINISHED)
        else:
            self._end(JobState.FAILED, self._failure(code))

    def _read(self, final: bool = False) -> None:
        for line in self._stdout.read(final) if self._stdout else []:
            self._handle_stdout(line)
        for line in self._stderr.read(final) if self._stderr else []:
            if line.strip():
                self._log.append(line)
                self._events.append(JobEvent("log", None, line))

    def _handle_stdout(self, line: str) -> None:
        text = line.strip()
        message: Any = None
        if text.startswith("{"):
            try:
                message = json.loads(text)
            except ValueError:
                message = None
        if not isinstance(message, dict) or "type" not in message:
            if text:
                self._log.append(line)
                self._events.append(JobEvent("log", None, line))
            return
        kind = message.get("type")
        if kind == "progress":
            self._events.append(JobEvent("progress", min(1.0, max(0.0, float(message.get("fraction", 0.0)))),
                                         str(message.get("message", ""))))
        elif kind == "result":
            self._results.append({k: v for k, v in message.items() if k != "type"})
        elif kind == "error":
            self._errors.append(str(message.get("message", "")))
            self._log.append(f"error: {message.get('message', '')}")
        elif kind == "log":
            self._log.append(str(message.get("message", "")))
            self._events.append(JobEvent("log", None, str(message.get("message", ""))))

    def _failure(self, code: int) -> ProcessJobError:
        lines = list(self._log)
        if self._errors:
            message = self._errors[-1]
        elif code < 0 or (os.name != "nt" and code in (137, 139)):
            number = -code if code < 0 else code - 128
            try:
                signame = signal.Signals(number).name
            except ValueError:
                signame = f"signal {number}"
            message = (f"The job's process was ended by {signame}"
                       + (" (the operating system may have run out of memory)" if number == 9 else "")
                       + ". Nothing was added to the scene.")
        else:
            tail = [line for line in lines if line.strip()][-3:]
            message = f"The job's process failed (exit status {code})" + (": " + " | ".join(tail) if tail else ".")
        return ProcessJobError(message, code, lines[-20:])

    def _close_files(self) -> None:
        for handle in self._files:
            try:
                handle.close()
            except OSError:
                pass
        self._files = []

    def _end(self, state: JobState, error: Optional[BaseException] = None) -> None:
        self._state = state
        self._error = error
        self._ended_at = time.monotonic()
        if state is JobState.FINISHED:
            self._events.append(JobEvent("finished", 1.0, "Done"))
        else:
            self._events.append(JobEvent(state.value, None, str(error) or type(error).__name__, error))

    # ----------------------------------------------------------------------------------------------- control
    def cancel(self) -> None:
        """End the child: terminate now, kill after :attr:`cancel_grace_seconds` (checked at each poll/wait)."""
        if self._state is not JobState.RUNNING or self._cancel_requested:
            return
        self._cancel_requested = True
        self._cancel_at = time.monotonic()
        self._signal(kill=False)

    def _signal(self, kill: bool) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        try:
            if os.name != "nt":
                os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
            elif kill:
                process.kill()
            else:
                process.terminate()
        except (OSError, ProcessLookupError):
            pass
        self._killed = self._killed or kill

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until the child ended (a pending cancel still escalates to kill); True once the job ended."""
        if self._state is JobState.PENDING:
            raise RuntimeError(f"{self!r} was never started")
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            self._check()
            if self.done:
                break
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def cleanup(self) -> None:
        """End the child if it still runs and remove the job's folder (when this job owns it)."""
        if self._process is not None and self._process.poll() is None:
            self._signal(kill=True)
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._close_files()
        if self.owns_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    # ----------------------------------------------------------------------------------------------- reading
    @property
    def pid(self) -> Optional[int]:
        return self._process.pid if self._process is not None else None

    @property
    def state(self) -> JobState:
        self._check()
        return self._state

    @property
    def done(self) -> bool:
        self._check()
        return self._state.terminal

    @property
    def running(self) -> bool:
        return self.state is JobState.RUNNING

    @property
    def log(self) -> List[str]:
        """The last lines the child wrote (stderr, non-JSON stdout, log and error messages)."""
        return list(self._log)

    def poll(self) -> List[JobEvent]:
        """Read the child's new output and return (and forget) the events since the last call. Never blocks."""
        self._check()
        events = list(self._events)
        self._events.clear()
        return events

    def result(self, timeout: Optional[float] = None) -> ProcessResult:
        """The :class:`ProcessResult` of a finished job; raises the job's error (:class:`ProcessJobError`,
        ``OperationCancelled``), or ``TimeoutError`` if still running after ``timeout`` seconds."""
        if not self.wait(timeout):
            raise TimeoutError(f"{self!r} still running after {timeout} s")
        if self._error is not None:
            raise self._error
        return ProcessResult(self.folder, list(self._results), list(self._log))

    @property
    def error(self) -> Optional[BaseException]:
        return self._error
