"""mednets.widgets (the panel pieces module widgets share), through the Slicer test runtime."""

from __future__ import annotations

import threading
import time

import pytest


def _wait(condition, timeout: float = 20.0) -> None:
    import slicer

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "still waiting"
        slicer.app.processEvents()
        time.sleep(0.01)


def test_job_poller_delivers_progress_then_the_outcome_and_stops_its_timer(slicer_runtime):
    from mednets.jobs import BackgroundJob
    from mednets.progress import OperationCancelled, check_cancel
    from mednets.widgets import JobPoller

    release = threading.Event()

    def work(steps, progress=None, cancel=None):
        for step in range(steps):
            progress((step + 1) / steps, f"step {step + 1}")
            release.wait(5.0)
            check_cancel(cancel)
        return steps * 10

    poller = JobPoller(interval_ms=5)
    seen, finished = [], []
    poller.start("a", BackgroundJob(work, 3), lambda event: seen.append(event.message),
                 lambda job: finished.append(job.result(timeout=0)))
    with pytest.raises(RuntimeError, match="already running"):
        poller.start("a", BackgroundJob(work, 1), None, lambda job: None)
    assert poller.running("a") and poller._timer.isActive()
    release.set()
    _wait(lambda: finished)
    assert finished == [30] and seen[-1] == "step 3" and not poller.running("a")
    assert not poller._timer.isActive()

    release.clear()
    outcomes = []

    def on_finish(job):
        try:
            job.result(timeout=0)
        except OperationCancelled:
            outcomes.append("cancelled")

    poller.start("b", BackgroundJob(work, 100), None, on_finish)
    poller.cancel("b")
    release.set()
    _wait(lambda: outcomes)
    assert outcomes == ["cancelled"] and not poller._timer.isActive()

    release.clear()
    poller.start("c", BackgroundJob(work, 100), None, on_finish)
    release.set()
    poller.stop_all(timeout=10.0)  # scene close: finished synchronously
    assert outcomes == ["cancelled", "cancelled"] and not poller.running("c")


def test_model_selector_keeps_the_selection_and_falls_back_to_the_default(slicer_runtime, tmp_path):
    import qt

    from mednets.sources import ModelSource
    from mednets.widgets import ModelSelector

    first = tmp_path / "first.safetensors"
    first.write_bytes(b"x")
    sources = [ModelSource(name="demo", path=str(first), description="bundled", license="Apache-2.0"),
               ModelSource(name="mine", path=str(tmp_path / "mine.safetensors"), description="trained")]
    combo = qt.QComboBox()
    selector = ModelSelector(combo, lambda: list(sources), default_name="demo")
    selector.refresh()
    assert selector.selected().name == "demo"
    assert selector.tooltip("none") == "demo: bundled; licence: Apache-2.0"
    assert selector.select(name="mine") is True and selector.selected().name == "mine"
    selector.refresh()  # re-listing keeps the user's choice
    assert selector.selected().name == "mine"
    selector.refresh(select_path=first)
    assert selector.selected().name == "demo"
    sources.pop(0)  # the default disappeared: the first remaining one
    selector.refresh(select_name="demo")
    assert selector.selected().name == "mine"
    errors = []
    broken = ModelSelector(qt.QComboBox(), lambda: 1 / 0, "demo", errors.append)
    broken.refresh()
    assert broken.selected() is None and errors == ["division by zero"]
    assert broken.tooltip("no model") == "no model"


def test_chosen_folder_reads_unset_path_parameters_as_none(slicer_runtime, tmp_path):
    from pathlib import Path

    from mednets.widgets import chosen_folder

    assert chosen_folder(None) is None and chosen_folder("") is None and chosen_folder(".") is None
    assert chosen_folder("  ") is None
    assert chosen_folder(tmp_path) == tmp_path
    assert chosen_folder("~/runs") == Path("~/runs").expanduser()
