"""Test helpers for panels whose jobs run as child processes (mednets.jobs.ProcessJob): wait for a job, kill its
child the way the OS would, fingerprint the scene, and fail if model code ran in a Python thread of this process.

Real Slicer keeps the GIL in its main thread while Qt's event loop waits (PythonQt's thread support is off; see
REAL_SLICER_FACTS.md), so a Python worker thread in the Slicer process starves: :func:`no_python_threads` makes a
test fail if a panel starts one. PySide6 (this runtime) would let such a thread run, so only this check can tell.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import threading
import time
from typing import Any, Callable, Iterator, List, Tuple

__all__ = ["wait_until", "no_python_threads", "scene_fingerprint", "kill_job_child", "count_ticks"]


def wait_until(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    """Keep the GUI running (timers fire) until ``condition()`` holds; AssertionError after ``timeout`` s."""
    import slicer

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout} s")
        slicer.app.processEvents()
        time.sleep(0.01)


@contextlib.contextmanager
def no_python_threads() -> Iterator[List[Tuple[str, Any]]]:
    """Fail (AssertionError at exit) if a Python thread is started inside the block. Yields the started threads'
    ``(name, target)`` list."""
    started: List[Tuple[str, Any]] = []
    original = threading.Thread.start

    def recording_start(thread: threading.Thread, *args: Any, **kwargs: Any) -> Any:
        started.append((thread.name, getattr(thread, "_target", None)))
        return original(thread, *args, **kwargs)

    threading.Thread.start = recording_start
    try:
        yield started
    finally:
        threading.Thread.start = original
    assert not started, f"Python threads were started in the Slicer process: {started}"


def _node_content(node: Any) -> str:
    digest = hashlib.sha256()
    if node.IsA("vtkMRMLVolumeNode") and node.GetImageData() is not None:
        import slicer

        digest.update(slicer.util.arrayFromVolume(node).tobytes())
    elif node.IsA("vtkMRMLSegmentationNode"):
        segmentation = node.GetSegmentation()
        for index in range(segmentation.GetNumberOfSegments()):
            segmentId = segmentation.GetNthSegmentID(index)
            digest.update(segmentId.encode())
            digest.update(segmentation.GetSegment(segmentId).GetName().encode())
            import slicer

            try:
                digest.update(slicer.util.arrayFromSegmentBinaryLabelmap(node, segmentId).tobytes())
            except Exception:  # noqa: BLE001 - a segment without a binary labelmap: its name is all
                pass
    elif node.IsA("vtkMRMLMarkupsNode"):
        for index in range(node.GetNumberOfControlPoints()):
            digest.update(repr(tuple(node.GetNthControlPointPositionWorld(index))).encode())
    elif node.IsA("vtkMRMLTableNode"):
        digest.update(repr((node.GetNumberOfRows(), node.GetNumberOfColumns())).encode())
    return digest.hexdigest()


def scene_fingerprint(scene: Any = None) -> List[Tuple[str, str, str]]:
    """``(class, name, content hash)`` of every non-singleton data node of the scene, in scene order."""
    import slicer

    scene = scene or slicer.mrmlScene
    rows = []
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        if node.GetSingletonTag() or node.GetHideFromEditors() and not node.IsA("vtkMRMLTableNode"):
            continue
        rows.append((node.GetClassName(), node.GetName() or "", _node_content(node)))
    return rows


def kill_job_child(job: Any, timeout: float = 120.0) -> None:
    """Wait until the job's child process runs (its first progress or log line), then SIGKILL it as the OS's
    out-of-memory killer would (POSIX only)."""
    deadline = time.monotonic() + timeout
    while job.pid is None or not (job.folder / "stdout.log").exists() or (job.folder / "stdout.log").stat().st_size == 0:
        if time.monotonic() > deadline:
            raise AssertionError("the job's child never wrote anything")
        time.sleep(0.02)
    os.kill(job.pid, signal.SIGKILL)


def count_ticks(interval_ms: int = 50) -> Tuple[Any, List[float]]:
    """Start a qt.QTimer that records the time of each of its ticks; returns ``(timer, ticks)`` (stop the timer)."""
    import qt

    ticks: List[float] = []
    timer = qt.QTimer()
    timer.setInterval(interval_ms)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start()
    return timer, ticks
