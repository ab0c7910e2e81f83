"""Tests of the DistributedDataParallel scale-out: 2 CPU processes (gloo) launched by torch.distributed.run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mednets.checkpoints import load_checkpoint
from mednets.training.distributed import (DistributedContext, all_gather_objects, all_reduce_mean, any_across_ranks,
                                          backend_for, init_distributed, torchrun_environment)

_HERE = Path(__file__).resolve().parent
_CORE = _HERE.parents[1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_single_process_helpers(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert torchrun_environment() is None
    context = init_distributed("cpu")
    assert context == DistributedContext() and context.is_main and not context.is_distributed
    cpu = torch.device("cpu")
    assert all_reduce_mean({"dice": 0.25, "loss": 2}, context, cpu) == {"dice": 0.25, "loss": 2.0}
    assert any_across_ranks([True, False], context, cpu) == [True, False]
    assert all_gather_objects({"a": 1}, context) == [{"a": 1}]
    assert (backend_for("cuda"), backend_for("cpu"), backend_for("mps")) == ("nccl", "gloo", "gloo")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert torchrun_environment() == (1, 4, 0)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="RANK=4, WORLD_SIZE=4"):
        torchrun_environment()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="must be integers"):
        torchrun_environment()


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """Launch the 2-process CPU run once; return its output folder and the two rank reports."""
    output = tmp_path_factory.mktemp("ddp")
    environment = {**os.environ, "OMP_NUM_THREADS": "1",
                   "PYTHONPATH": os.pathsep.join([str(_CORE), os.environ.get("PYTHONPATH", "")])}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        environment.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
               "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
               str(_HERE / "distributed_training_script.py"), str(output)]
    # A session of its own, so that a hang can be ended together with the worker processes the launcher started.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment,
                               cwd=str(_HERE), start_new_session=True)
    try:
        log, _ = process.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        log, _ = process.communicate()
        pytest.fail("the 2-process training did not finish within 90 s:\n" + log[-4000:])
    assert process.returncode == 0, log[-4000:]
    reports = [json.loads((output / f"rank{rank}.json").read_text()) for rank in range(2)]
    return output, reports


def _weights(path: Path):
    return torch.load(path, weights_only=True)


def _assert_equal_state(a, b):
    assert sorted(a) == sorted(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_both_ranks_end_with_identical_weights(ddp_run):
    output, reports = ddp_run
    assert [r["world_size"] for r in reports] == [2, 2]
    rank0, rank1 = _weights(output / "rank0_reference.pt"), _weights(output / "rank1_reference.pt")
    _assert_equal_state(rank0, rank1)
    # The weights moved away from rank 0's initialisation (seed 100) and match the LAST checkpoint.
    torch.manual_seed(100)
    initial = torch.nn.Conv2d(1, 4, 3, padding=1).weight
    assert not torch.equal(rank0["0.weight"], initial)
    last, _ = load_checkpoint(output / "reference" / "last.safetensors")
    _assert_equal_state(last, rank0)


def test_ranks_sample_different_patches_and_average_metrics(ddp_run):
    output, reports = ddp_run
    assert reports[0]["first_patch_sum"] != reports[1]["first_patch_sum"]
    history = json.loads((output / "reference" / "history.json").read_text())
    assert [row["score"] for row in history["validation"]] == [0.5, 0.5]  # mean of rank 0's 0.0 and rank 1's 1.0
    assert [row["iteration"] for row in history["train"]] == [5, 10]
    assert reports[0]["reference"]["history"] == reports[1]["reference"]["history"] == history


def test_only_rank_zero_writes_files(ddp_run):
    output, reports = ddp_run
    assert reports[1]["writes"] == {}
    # LAST + state: reference at 2, 4, 6, 8, 10; interrupted at 2, 4 and the cancel at 5; resumed at 6, 8, 10 (11).
    # BEST: at iteration 5 in the reference and the interrupted run (the score never improves afterwards).
    # atomic_write: 11 state files + 3 training_config.json.
    assert reports[0]["writes"] == {"save_checkpoint": 13, "atomic_write": 14}
    files = sorted(p.name for p in (output / "reference").iterdir())
    assert files == ["best.safetensors", "history.csv", "history.json", "last.safetensors", "training_config.json",
                     "training_state.pt"]
    state = torch.load(output / "reference" / "training_state.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["ranks"]) == 2
    assert state["ranks"][0]["batches"]["sampler"]["rank"] == 0 and state["ranks"][1]["batches"]["sampler"]["rank"] == 1
    assert all(Path(r["reference"]["last_checkpoint"]) == output / "reference" / "last.safetensors" for r in reports)


def test_cancel_on_one_rank_stops_all_and_resume_is_identical(ddp_run):
    output, reports = ddp_run
    assert [r["cancelled"] for r in reports] == [True, True]
    assert [r["cancelled_at"] for r in reports] == [5, 5] and reports[0]["state_ranks"] == 2
    assert all(r["group_after_fit"] == [True, "gloo"] for r in reports)
    resumed0, resumed1 = _weights(output / "rank0_resumed.pt"), _weights(output / "rank1_resumed.pt")
    _assert_equal_state(resumed0, resumed1)
    _assert_equal_state(resumed0, _weights(output / "rank0_reference.pt"))
    assert reports[0]["resumed"]["history"] == reports[0]["reference"]["history"]
    assert reports[0]["resumed"]["iterations"] == 10
