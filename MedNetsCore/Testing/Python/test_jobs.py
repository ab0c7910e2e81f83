"""mednets.jobs: background jobs for widgets (worker thread + polled events) and the blocking batch mode."""

from __future__ import annotations

import threading
import time
import traceback

import pytest

from mednets.jobs import BackgroundJob, JobEvent, JobState
from mednets.progress import OperationCancelled, check_cancel

TIMEOUT = 10.0


def _kinds(events):
    return [event.kind for event in events]


def steps(count, scale=1, progress=None, cancel=None):
    """A well-behaved job: reports each step, honours cancel, returns the sum of the steps."""
    total = 0
    for step in range(1, count + 1):
        check_cancel(cancel)
        total += step * scale
        progress(step / count, f"step {step}")
    return total


def test_finished_job_delivers_events_in_order_and_its_result():
    job = BackgroundJob(steps, 4, scale=10).start()
    assert job.wait(TIMEOUT)
    assert job.done and job.state is JobState.FINISHED and job.state.terminal
    events = job.poll()
    assert _kinds(events) == ["started", "progress", "progress", "progress", "progress", "finished"]
    assert [e.fraction for e in events[1:5]] == [0.25, 0.5, 0.75, 1.0]
    assert [e.message for e in events[1:5]] == ["step 1", "step 2", "step 3", "step 4"]
    assert events[-1] == JobEvent("finished", 1.0, "Done") and events[-1].terminal
    assert job.result() == 100 and job.error is None
    assert job.poll() == []  # poll forgets what it returned
    assert job.elapsed > 0.0


def test_worker_runs_while_the_caller_keeps_going():
    release, reached = threading.Event(), threading.Event()
    callerThread = threading.get_ident()

    def blocked(progress=None, cancel=None):
        progress(0.5, "halfway")
        reached.set()
        assert release.wait(TIMEOUT)
        return threading.get_ident()

    job = BackgroundJob(blocked).start()
    assert reached.wait(TIMEOUT)
    assert job.running and not job.done
    assert _kinds(job.poll()) == ["started", "progress"]  # poll never blocks
    with pytest.raises(TimeoutError):
        job.result(timeout=0.01)
    assert not job.wait(0.01)
    release.set()
    assert job.result(timeout=TIMEOUT) != callerThread


def test_exception_is_reraised_in_the_caller_with_its_traceback():
    def failing(progress=None, cancel=None):
        progress(0.3, "about to fail")
        raise ValueError("the input volume is empty")

    job = BackgroundJob(failing).start()
    assert job.wait(TIMEOUT)
    assert job.state is JobState.FAILED
    events = job.poll()
    assert _kinds(events) == ["started", "progress", "failed"]
    assert isinstance(events[-1].error, ValueError) and events[-1].message == "the input volume is empty"
    with pytest.raises(ValueError, match="the input volume is empty") as raised:
        job.result()
    assert "failing" in "".join(traceback.format_tb(raised.value.__traceback__))  # the worker's frame is kept


def test_cancel_mid_run_ends_as_cancelled_without_result():
    running = threading.Event()

    def untilCancelled(progress=None, cancel=None):
        running.set()
        while True:
            check_cancel(cancel)
            time.sleep(0.001)

    job = BackgroundJob(untilCancelled).start()
    assert running.wait(TIMEOUT)
    job.cancel()
    assert job.cancel_requested
    assert job.wait(TIMEOUT)
    assert job.state is JobState.CANCELLED
    assert _kinds(job.poll())[-1] == "cancelled"
    with pytest.raises(OperationCancelled):
        job.result()


def test_result_computed_after_cancel_was_requested_is_discarded():
    cancelled = threading.Event()

    def ignoresCancel(progress=None, cancel=None):
        assert cancelled.wait(TIMEOUT)
        return "complete anyway"

    job = BackgroundJob(ignoresCancel).start()
    job.cancel()
    cancelled.set()
    assert job.wait(TIMEOUT)
    assert job.state is JobState.CANCELLED
    with pytest.raises(OperationCancelled):
        job.result()


def test_run_blocking_runs_in_the_calling_thread_and_forwards_progress():
    seen = []

    def whereAmI(progress=None, cancel=None):
        progress(2.0, "clamped high")
        progress(-1.0, "clamped low")
        return threading.get_ident()

    job = BackgroundJob(whereAmI)
    assert job.run_blocking(progress=lambda fraction, message: seen.append((fraction, message))) == threading.get_ident()
    assert seen == [(1.0, "clamped high"), (0.0, "clamped low")]
    assert _kinds(job.poll()) == ["started", "progress", "progress", "finished"]
    assert job.state is JobState.FINISHED


def test_run_blocking_raises_the_function_error():
    with pytest.raises(ZeroDivisionError):
        BackgroundJob(lambda progress=None, cancel=None: 1 / 0).run_blocking()


def test_unpolled_progress_is_bounded_and_keeps_the_newest():
    job = BackgroundJob(steps, 50)
    job.max_pending_progress = 10
    job.run_blocking()
    events = job.poll()
    assert _kinds(events) == ["started"] + ["progress"] * 10 + ["finished"]
    assert [e.message for e in events[1:-1]] == [f"step {i}" for i in range(41, 51)]


def test_misuse_is_refused_with_clear_errors():
    with pytest.raises(TypeError, match="callable"):
        BackgroundJob(42)
    with pytest.raises(TypeError, match="'progress'"):
        BackgroundJob(steps, 3, progress=print)
    job = BackgroundJob(steps, 1)
    with pytest.raises(RuntimeError, match="never started"):
        job.wait(0)
    assert job.state is JobState.PENDING and job.elapsed == 0.0
    job.run_blocking()
    with pytest.raises(RuntimeError, match="already started"):
        job.start()
