"""Tests of mednets.device: device choice, out-of-memory recognition and the fallback chain."""

from __future__ import annotations

import os
import sys
from typing import List, Tuple

import pytest
import torch

from mednets import device as mdevice
from mednets.device import (DeviceFallbackWarning, choose_device, describe_device, enable_mps_cpu_fallback,
                            is_out_of_memory_error, run_with_fallback)


@pytest.fixture
def no_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(mdevice, "mps_available", lambda: False)


# ---------------------------------------------------------------------------------------------------- choose_device

def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, no_accelerator):
    assert choose_device("auto") == torch.device("cpu")
    assert choose_device(None) == torch.device("cpu")
    monkeypatch.setattr(mdevice, "mps_available", lambda: True)
    assert choose_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_device(" AUTO ") == torch.device("cuda")


@pytest.mark.parametrize("preference, words", [("cuda", "CUDA"), ("cuda:1", "CUDA"), ("mps", "Apple GPU")])
def test_unavailable_request_falls_back_to_cpu_and_says_so(no_accelerator, preference, words):
    messages: List[str] = []
    assert choose_device(preference, report=messages.append) == torch.device("cpu")
    assert len(messages) == 1 and words in messages[0] and "CPU" in messages[0]
    with pytest.warns(DeviceFallbackWarning, match="CPU"):
        assert choose_device(torch.device(preference)) == torch.device("cpu")


def test_missing_gpu_index_falls_back_to_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    messages: List[str] = []
    assert choose_device("cuda:3", report=messages.append) == torch.device("cpu")
    assert "number 3" in messages[0] and "1 CUDA GPU" in messages[0]
    assert choose_device("cuda:0", report=messages.append) == torch.device("cuda:0") and len(messages) == 1


def test_available_requests_are_honoured_silently(monkeypatch, no_accelerator):
    messages: List[str] = []
    assert choose_device("cpu", report=messages.append) == torch.device("cpu")
    monkeypatch.setattr(mdevice, "mps_available", lambda: True)
    assert choose_device("mps", report=messages.append) == torch.device("mps")
    assert messages == []


@pytest.mark.parametrize("preference", ["tpu", "gpu", 3.5])
def test_unknown_preference_is_rejected(preference):
    with pytest.raises(ValueError, match="'auto', 'cuda'"):
        choose_device(preference)


# ---------------------------------------------------------------------------------------------------- descriptions

def test_describe_cpu_and_unavailable_devices(no_accelerator):
    assert describe_device("cpu") == f"CPU ({torch.get_num_threads()} threads)"
    assert describe_device("cuda") == "cuda (CUDA is not available)"
    assert describe_device("mps") == "Apple GPU (mps)"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_describe_cuda_names_the_gpu_and_its_free_memory():
    text = describe_device("cuda:0")
    assert text.startswith(torch.cuda.get_device_name(0)) and "(cuda:0)" in text and "GiB free of" in text
    assert choose_device("auto") == torch.device("cuda")


# ---------------------------------------------------------------------------------------------- out-of-memory tests

@pytest.mark.parametrize("error", [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB"),
    RuntimeError("CUDA out of memory. Tried to allocate 1.50 GiB (GPU 0; 7.79 GiB total capacity)"),
    RuntimeError("MPS backend out of memory (MPS allocated: 17.00 GB, other allocations: 1.2 GB)"),
    RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried "
                 "to allocate 68719476736 bytes"),
    MemoryError(),
])
def test_out_of_memory_errors_are_recognised(error):
    assert is_out_of_memory_error(error)


@pytest.mark.parametrize("error", [RuntimeError("Given groups=1, weight of size [4, 1, 3, 3]"), ValueError("memory"),
                                   NotImplementedError("aten::foo is not implemented for MPS"), KeyError("x")])
def test_other_errors_are_not_out_of_memory(error):
    assert not is_out_of_memory_error(error)


def test_out_of_memory_is_found_in_the_cause_chain():
    try:
        try:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory.")
        except RuntimeError as inner:
            raise ValueError("inference failed") from inner
    except ValueError as outer:
        assert is_out_of_memory_error(outer)


# ------------------------------------------------------------------------------------------------ run_with_fallback

class FakeJob:
    """Fails with ``error`` while ``fails(device, batch_size)``; records every attempt."""

    def __init__(self, fails, error: BaseException) -> None:
        self.fails = fails
        self.error = error
        self.attempts: List[Tuple[str, int]] = []

    def __call__(self, device: torch.device, batch_size: int) -> str:
        self.attempts.append((device.type, batch_size))
        if self.fails(device, batch_size):
            raise self.error
        return f"done on {device.type} with {batch_size}"


def test_batch_size_is_halved_until_the_job_fits():
    job = FakeJob(lambda d, b: b > 3, torch.cuda.OutOfMemoryError("CUDA out of memory."))
    messages: List[str] = []
    assert run_with_fallback(job, "cuda", 16, report=messages.append) == "done on cuda with 2"
    assert job.attempts == [("cuda", 16), ("cuda", 8), ("cuda", 4), ("cuda", 2)]
    assert messages == [f"The GPU ran out of memory with {b} windows at a time; retrying with {b // 2}."
                        for b in (16, 8, 4)]


def test_after_batch_size_one_the_job_moves_to_the_cpu_with_the_original_batch_size():
    job = FakeJob(lambda d, b: d.type == "cuda", RuntimeError("CUDA out of memory. Tried to allocate 8 GiB"))
    messages: List[str] = []
    assert run_with_fallback(job, torch.device("cuda"), 3, report=messages.append) == "done on cpu with 3"
    assert job.attempts == [("cuda", 3), ("cuda", 1), ("cpu", 3)]
    assert "even with 1 window" in messages[-1] and "on the CPU" in messages[-1] and len(messages) == 2


def test_cpu_fallback_can_be_forbidden_and_then_the_error_surfaces():
    job = FakeJob(lambda d, b: True, torch.cuda.OutOfMemoryError("CUDA out of memory."))
    with pytest.warns(DeviceFallbackWarning):
        with pytest.raises(torch.cuda.OutOfMemoryError):
            run_with_fallback(job, "cuda", 2, allow_cpu=False)
    assert job.attempts == [("cuda", 2), ("cuda", 1)]


def test_out_of_memory_on_the_cpu_only_halves():
    job = FakeJob(lambda d, b: True, MemoryError())
    with pytest.raises(MemoryError):
        run_with_fallback(job, "cpu", 4, report=lambda message: None)
    assert job.attempts == [("cpu", 4), ("cpu", 2), ("cpu", 1)]


def test_operator_missing_on_mps_moves_to_the_cpu_at_once():
    job = FakeJob(lambda d, b: d.type == "mps", NotImplementedError("The operator 'aten::foo' is not currently "
                                                                    "implemented for the MPS device."))
    messages: List[str] = []
    assert run_with_fallback(job, "mps", 4, report=messages.append) == "done on cpu with 4"
    assert job.attempts == [("mps", 4), ("cpu", 4)] and "Apple GPU (MPS)" in messages[0]
    cpu_job = FakeJob(lambda d, b: True, NotImplementedError("not on the CPU either"))
    with pytest.raises(NotImplementedError):
        run_with_fallback(cpu_job, "cpu", 4)
    assert cpu_job.attempts == [("cpu", 4)]


def test_other_errors_propagate_without_retry():
    job = FakeJob(lambda d, b: True, ValueError("bad input shape"))
    with pytest.raises(ValueError, match="bad input shape"):
        run_with_fallback(job, "cuda", 8)
    assert job.attempts == [("cuda", 8)]


@pytest.mark.parametrize("batch_size", [0, -2, 1.5, True])
def test_batch_size_must_be_a_positive_integer(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        run_with_fallback(lambda d, b: None, "cpu", batch_size)


# ----------------------------------------------------------------------------------------------------- MPS variable

def test_mps_fallback_variable_is_set_on_macos_only_and_never_overridden(monkeypatch):
    monkeypatch.delenv("PYTORCH_ENABLE_MPS_FALLBACK", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert enable_mps_cpu_fallback() is False and "PYTORCH_ENABLE_MPS_FALLBACK" not in os.environ
    monkeypatch.setattr(sys, "platform", "darwin")
    assert enable_mps_cpu_fallback() is False  # set, but torch is already imported: too late to take effect
    assert os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] == "1"
    monkeypatch.setenv("PYTORCH_ENABLE_MPS_FALLBACK", "0")
    enable_mps_cpu_fallback()
    assert os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] == "0"
