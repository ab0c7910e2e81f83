"""mednets.jobs.ProcessJob: a module's command line as a child process (JSON-lines progress, results, errors, cancel,
crashes), and mednets.cli's ``--progress json`` protocol."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mednets.jobs import JobState, ProcessJob, ProcessJobError, job_folder
from mednets.progress import OperationCancelled

FAKE_CLI = '''
import argparse, os, signal, sys, time
from mednets.cli import emit_log, emit_result, progress_bar, run_command

def steps(args):
    with progress_bar("working") as progress:
        for step in range(1, args.count + 1):
            time.sleep(args.sleep)
            progress(step / args.count, f"step {step}")
    emit_log("all steps done")
    emit_result(total=args.count, folder=os.getcwd())
    print("plain line on stdout")
    return 0

def bad(args):
    raise ValueError("the input volume is constant\\nsecond line")

def crash(args):
    print("about to die", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

def boom(args):
    raise RuntimeError("a bug")

parser = argparse.ArgumentParser(prog="fakecli")
sub = parser.add_subparsers(dest="command", required=True)
s = sub.add_parser("steps"); s.add_argument("--count", type=int, default=3); s.add_argument("--sleep", type=float, default=0.0)
s.set_defaults(run=steps)
sub.add_parser("bad").set_defaults(run=bad)
sub.add_parser("crash").set_defaults(run=crash)
sub.add_parser("boom").set_defaults(run=boom)
sys.exit(run_command(parser))
'''


@pytest.fixture
def fake_package(tmp_path):
    package = tmp_path / "pkgroot" / "fakecli"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(textwrap.dedent(FAKE_CLI))
    import mednets

    return [str(package.parent), str(Path(mednets.__file__).resolve().parents[1])]


def _job(fake_package, tmp_path, *args):
    return ProcessJob("fakecli", list(args), job_folder("test"), search_path=fake_package)


def test_finished_child_reports_progress_logs_and_results(fake_package, tmp_path):
    job = _job(fake_package, tmp_path, "steps", "--count", "3").start()
    assert job.wait(60)
    events = job.poll()
    kinds = [e.kind for e in events]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    progress = [(e.fraction, e.message) for e in events if e.kind == "progress"]
    assert progress[-1] == (1.0, "step 3") and progress[0][1] == "step 1"
    logs = [e.message for e in events if e.kind == "log"]
    assert "all steps done" in logs and "plain line on stdout" in logs
    result = job.result(timeout=0)
    assert result.last["total"] == 3
    assert Path(result.last["folder"]).resolve() == job.folder.resolve()  # the child runs in the job's folder
    assert job.state is JobState.FINISHED and job.returncode == 0
    folder = job.folder
    assert folder.is_dir()
    job.cleanup()
    assert not folder.exists()


def test_user_error_fails_with_the_commands_one_line_reason(fake_package, tmp_path):
    job = _job(fake_package, tmp_path, "bad").start()
    assert job.wait(60)
    with pytest.raises(ProcessJobError, match="the input volume is constant") as caught:
        job.result(timeout=0)
    assert caught.value.returncode == 2
    job.cleanup()


def test_a_bug_in_the_child_names_its_last_lines(fake_package, tmp_path):
    job = _job(fake_package, tmp_path, "boom").start()
    assert job.wait(60)
    with pytest.raises(ProcessJobError, match="RuntimeError: a bug") as caught:
        job.result(timeout=0)
    assert caught.value.returncode == 1 and any("Traceback" in line for line in caught.value.lines)
    job.cleanup()


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL is POSIX")
def test_child_killed_by_the_os_is_reported_plainly(fake_package, tmp_path):
    job = _job(fake_package, tmp_path, "crash").start()
    assert job.wait(60)
    with pytest.raises(ProcessJobError, match="SIGKILL.*out of memory") as caught:
        job.result(timeout=0)
    assert caught.value.returncode == -signal.SIGKILL and "about to die" in caught.value.lines
    job.cleanup()


def test_cancel_ends_the_child_within_two_seconds(fake_package, tmp_path):
    job = _job(fake_package, tmp_path, "steps", "--count", "1000", "--sleep", "0.05").start()
    deadline = time.monotonic() + 60
    while not any(e.kind == "progress" for e in job.poll()):  # the child runs its loop
        assert time.monotonic() < deadline
        time.sleep(0.05)
    started = time.monotonic()
    job.cancel()
    assert job.wait(5)
    latency = time.monotonic() - started
    assert latency < 2.0, f"cancel took {latency:.2f} s"
    assert job.state is JobState.CANCELLED
    with pytest.raises(OperationCancelled):
        job.result(timeout=0)
    job.cleanup()
    assert not job.folder.exists()


def test_child_that_cannot_start_fails_without_raising(tmp_path):
    job = ProcessJob("fakecli", ["steps"], tmp_path / "job", python=str(tmp_path / "no-such-python")).start()
    assert job.done and job.state is JobState.FAILED
    with pytest.raises(ProcessJobError, match="could not start"):
        job.result(timeout=0)


def test_run_blocking_forwards_progress(fake_package, tmp_path):
    seen = []
    result = _job(fake_package, tmp_path, "steps", "--count", "2").run_blocking(lambda f, m: seen.append((f, m)))
    assert seen[-1] == (1.0, "step 2") and result.last["total"] == 2


def test_cli_progress_json_lines(capsys):
    import argparse
    import json

    from mednets.cli import emit_result, progress_bar, run_command

    def run(args):
        with progress_bar("x") as progress:
            progress(0.5, "half")
            progress(1.0, "")
        emit_result(value=1)

    parser = argparse.ArgumentParser()
    parser.set_defaults(run=run)
    assert run_command(parser, ["--progress", "json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [{"type": "progress", "fraction": 0.5, "message": "half"},
                     {"type": "progress", "fraction": 1.0, "message": "x"}, {"type": "result", "value": 1}]
    assert run_command(parser, []) == 0  # bar mode: nothing on stdout
    assert capsys.readouterr().out == ""
