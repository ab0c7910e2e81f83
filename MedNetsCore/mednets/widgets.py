"""Panel pieces every SlicerMedNets module widget shares (Slicer side: imports ``qt`` and ``slicer``).

Only module *widgets* import this file; the Logic, the CLI and the batch demo never do. The pieces:

* :class:`JobPoller` runs a panel's jobs (:class:`mednets.jobs.ProcessJob`: segmentation, evaluation, training, each
  a child process of the module's command line) and polls them on one Qt timer, so the interface never freezes:
  progress events go to a callback, the finished job to another, the job's private folder is removed after that,
  and the timer stops when nothing runs. :func:`start_cli_job` builds and starts such a job.
* :class:`ModelSelector` fills a combo box with the module's model sources (bundled, imported, trained), keeps the
  selection across refreshes and describes each source in its tooltip.
* :class:`TrainingCurve` shows the training engine's ``history.png`` in a label while a run writes it.
* :func:`show_error` puts a plain-words error in the panel and in Slicer's error dialog.

Written for PythonQt (Slicer) and PySide6 (the test runtime) alike: methods are called rather than Qt properties
assigned, signals connected with ``signal.connect``.
"""

from __future__ import annotations

import enum
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import qt
import slicer
from slicer.i18n import tr as _

from mednets.jobs import BackgroundJob, ProcessJob, job_folder

__all__ = ["DeviceChoice", "JobPoller", "ModelSelector", "TrainingCurve", "show_error", "describe_source", "chosen_folder",
           "start_cli_job", "ensure_packages"]

AnyJob = Union[BackgroundJob, ProcessJob]
ProgressHandler = Callable[[Any], None]
FinishHandler = Callable[[AnyJob], None]


class DeviceChoice(enum.Enum):
    """Where a module's network runs: the device combo box of every panel (stored by member name in the parameter
    node; the values are those of :func:`mednets.device.choose_device`)."""

    AUTO = "auto"
    CUDA = "cuda"
    MPS = "mps"
    CPU = "cpu"

    def label(self) -> str:  # shown in the device combo box by the parameter node's GUI connector
        return {"auto": _("Auto (GPU if available)"), "cuda": _("CUDA (NVIDIA GPU)"), "mps": _("MPS (Apple GPU)"),
                "cpu": _("CPU")}[self.value]


def chosen_folder(path: Any) -> Optional[Path]:
    """The folder of a directory parameter (parameter node / ctkPathLineEdit), or None when none was chosen (empty or
    ".", what an unset path parameter reads as)."""
    text = str(path) if path is not None else ""
    return Path(text).expanduser() if text.strip() not in ("", ".") else None


def show_error(label: Any, message: str, title: str) -> None:
    """Show ``message`` (first letter capitalised) as "Error: ..." in ``label`` and in an error dialog titled ``title``.

    In Slicer the dialog is modal; under the test runtime it is recorded, never blocking.
    """
    message = (message[:1].upper() + message[1:]) if message else "Unknown error."
    label.setText(f"Error: {message}")
    slicer.util.errorDisplay(f"{title}: {message}")


class JobPoller:
    """Background jobs of one panel, polled on a Qt timer (the jobs' events are consumed on the main thread).

    ``start(name, job, on_progress, on_finish)`` starts ``job`` (not started yet) under ``name`` ("segmentation",
    "evaluation", "training"...). At each tick, progress events of a job whose cancellation was not requested go to
    ``on_progress(event)``; once the job is done it is forgotten and ``on_finish(job)`` runs (read the outcome with
    ``job.result(timeout=0)``: it re-raises the job's error or ``OperationCancelled``). The timer runs only while a
    job runs.
    """

    def __init__(self, interval_ms: int = 100) -> None:
        self._jobs: Dict[str, Tuple[AnyJob, Optional[ProgressHandler], FinishHandler]] = {}
        self._log_handlers: Dict[str, Callable[[str], None]] = {}
        self.ticks = 0
        self._timer = qt.QTimer()
        self._timer.setInterval(int(interval_ms))
        self._timer.timeout.connect(self.poll)

    def start(self, name: str, job: AnyJob, on_progress: Optional[ProgressHandler],
              on_finish: FinishHandler, on_log: Optional[Callable[[str], None]] = None) -> AnyJob:
        if name in self._jobs:
            raise RuntimeError(f"a '{name}' job is already running")
        self._jobs[name] = (job, on_progress, on_finish)
        if on_log is not None:
            self._log_handlers[name] = on_log
        job.start()
        self._timer.start()
        return job

    def job(self, name: str) -> Optional[AnyJob]:
        entry = self._jobs.get(name)
        return entry[0] if entry else None

    def running(self, name: str) -> bool:
        return name in self._jobs

    def cancel(self, name: str) -> None:
        """Ask the job to stop (it finishes, as cancelled, at a later tick)."""
        job = self.job(name)
        if job is not None:
            job.cancel()

    def stop(self, name: str, timeout: float = 10.0) -> None:
        """Cancel the job, wait up to ``timeout`` seconds and finish it now (scene closing, module unloading)."""
        job = self.job(name)
        if job is None:
            return
        job.cancel()
        job.wait(timeout)
        self._finish(name)

    def stop_all(self, timeout: float = 10.0) -> None:
        for name in list(self._jobs):
            self.stop(name, timeout)

    def poll(self) -> None:
        """Deliver pending events; finish the jobs that are done (the timer's slot; tests may call it directly)."""
        self.ticks += 1
        for name in list(self._jobs):
            job, on_progress, _ = self._jobs[name]
            finished = job.done  # read first: once done, poll() returns the final event too
            on_log = self._log_handlers.get(name)
            for event in job.poll():
                if event.kind == "progress" and on_progress is not None and not job.cancel_requested:
                    on_progress(event)
                elif event.kind == "log" and on_log is not None:
                    on_log(event.message)
            if finished:
                self._finish(name)
        if not self._jobs:
            self._timer.stop()

    def _finish(self, name: str) -> None:
        job, _, on_finish = self._jobs.pop(name)
        self._log_handlers.pop(name, None)
        if not self._jobs:
            self._timer.stop()
        try:
            on_finish(job)
        finally:
            cleanup = getattr(job, "cleanup", None)
            if cleanup is not None:
                cleanup()


def start_cli_job(poller: JobPoller, name: str, package: str, args: Sequence[Any], on_progress: Optional[ProgressHandler],
                  on_finish: FinishHandler, folder: Optional[Union[str, Path]] = None,
                  on_log: Optional[Callable[[str], None]] = None) -> ProcessJob:
    """Start ``python -m <package> --progress json <args>`` (``PythonSlicer`` in Slicer) as the panel's job ``name``.

    ``folder`` is the job's private folder, made with :func:`mednets.jobs.job_folder` (write the inputs there first
    and name its files in ``args``); a new one is made when None. It is removed once ``on_finish`` ran.
    """
    folder = Path(folder) if folder is not None else job_folder(f"{package}-{name}")
    job = ProcessJob(package, [str(a) for a in args], folder, name=f"{package} {name}")
    poller.start(name, job, on_progress, on_finish, on_log)
    return job


def describe_source(source: Any) -> str:
    """"name: description; licence: ..." for a model source's tooltip."""
    details = [source.description or "no description"]
    if source.license:
        details.append(f"licence: {source.license}")
    return f"{source.name}: " + "; ".join(details)


class ModelSelector:
    """A combo box listing model sources (:class:`mednets.sources.ModelSource`), one item per source.

    Args:
        combo: the ``QComboBox``.
        list_sources: returns the sources to show (e.g. ``logic.availableModels``).
        default_name: selected when nothing else is asked for (the bundled demo weights).
        on_list_error: called with the error message when ``list_sources`` fails (the list is then empty).
    """

    def __init__(self, combo: Any, list_sources: Callable[[], Sequence[Any]], default_name: str,
                 on_list_error: Optional[Callable[[str], None]] = None) -> None:
        self.combo = combo
        self.list_sources = list_sources
        self.default_name = default_name
        self.on_list_error = on_list_error
        self.sources: List[Any] = []

    def selected(self) -> Optional[Any]:
        index = self.combo.currentIndex
        return self.sources[index] if 0 <= index < len(self.sources) else None

    def refresh(self, select_path: Optional[Union[str, Path]] = None, select_name: str = "") -> bool:
        """Re-list the sources without emitting selection signals; then select ``select_path`` or ``select_name``
        or keep the current selection (see :meth:`select`, whose return value this returns)."""
        try:
            sources = list(self.list_sources())
        except Exception as error:  # noqa: BLE001 - a broken catalogue must not break the panel
            logging.exception("listing the models failed")
            sources = []
            if self.on_list_error is not None:
                self.on_list_error(str(error))
        current = self.selected()
        was_blocked = self.combo.blockSignals(True)
        self.combo.clear()
        self.sources = sources
        for index, source in enumerate(sources):
            self.combo.addItem(source.name, source.name)
            self.combo.setItemData(index, describe_source(source), qt.Qt.ToolTipRole)
        self.combo.blockSignals(was_blocked)
        return self.select(name=select_name or (current.name if current is not None else ""), path=select_path)

    def index_of(self, name: str = "", path: Optional[Union[str, Path]] = None) -> int:
        """Index of the source stored at ``path``, else called ``name``, else the default, else the first (-1: none)."""
        if path is not None:
            wanted = Path(path).resolve()
            for index, source in enumerate(self.sources):
                if source.path and Path(source.path).resolve() == wanted:
                    return index
        for candidate in (name, self.default_name):
            for index, source in enumerate(self.sources):
                if candidate and source.name == candidate:
                    return index
        return 0 if self.sources else -1

    def select(self, name: str = "", path: Optional[Union[str, Path]] = None) -> bool:
        """Select a source (see :meth:`index_of`). Returns True when the index changed (the combo box then emitted
        ``currentIndexChanged``); on False the caller refreshes what depends on the selection itself."""
        index = self.index_of(name, path)
        if self.combo.currentIndex == index:
            return False
        self.combo.setCurrentIndex(index)
        return True

    def tooltip(self, empty_text: str) -> str:
        source = self.selected()
        return describe_source(source) if source is not None else empty_text

    def fine_tuning_start(self, fine_tune: bool) -> Optional[Any]:
        """The source a training run starts from: the selected one when 'Fine-tune the selected model' is checked,
        None (a new network) otherwise. Raises ValueError when fine-tuning is asked for but nothing is selected."""
        if not fine_tune:
            return None
        source = self.selected()
        if source is None:
            raise ValueError(_("Select the model to fine-tune, or uncheck 'Fine-tune the selected model'."))
        return source


class TrainingCurve:
    """Shows ``<output>/history.png`` (loss and validation metric, rewritten at each validation) in a label."""

    def __init__(self, label: Any, width: Callable[[], int]) -> None:
        self.label = label
        self.width = width
        self.folder: Optional[Path] = None
        self._stamp: Optional[float] = None

    def watch(self, folder: Union[str, Path]) -> None:
        """Follow a new run writing into ``folder``; a plot left there by an earlier run is not shown."""
        self.folder = Path(folder)
        curve = self.folder / "history.png"
        self._stamp = curve.stat().st_mtime if curve.is_file() else None

    def refresh(self) -> bool:
        """Show the plot if it changed since last time; True when a new picture was shown."""
        if self.folder is None:
            return False
        curve = self.folder / "history.png"
        try:
            stamp = curve.stat().st_mtime
        except OSError:
            return False
        if self._stamp is not None and stamp <= self._stamp:
            return False
        pixmap = qt.QPixmap(str(curve))
        if pixmap.isNull():  # caught while being written: try again at the next poll
            return False
        self._stamp = stamp
        width = max(200, min(480, int(self.width()) - 20))
        self.label.setPixmap(pixmap.scaledToWidth(width, qt.Qt.SmoothTransformation))
        self.label.show()
        return True


def ensure_packages(label: Any, requester: str) -> bool:
    """Ask for (and install, with consent) every runtime package a job needs, on the GUI thread, before it starts.

    Returns False, with the reason in ``label`` (no dialog, no traceback), when a package is missing and was not
    installed (declined, failed, or a package that Slicer ships and must not be replaced).
    """
    from mednets.dependencies import MissingDependencyError, ensure_runtime

    try:
        ensure_runtime(requester)
    except MissingDependencyError as error:
        label.setText(_("Error: {message}").format(message=str(error)))
        return False
    return True
