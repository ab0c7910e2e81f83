"""Multi-process training with PyTorch's own ``torch.distributed`` (DistributedDataParallel, launched by torchrun).

``torchrun --nproc_per_node=N train.py`` (or ``python -m torch.distributed.run ...``) starts N processes and gives
each the environment variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. The
:class:`~mednets.training.engine.Trainer` detects them with :func:`torchrun_environment`, joins the process group
(``nccl`` for CUDA, ``gloo`` for CPU) with :func:`init_distributed`, and uses the helpers below to agree across ranks:
averaged metrics, a shared cancel/failure decision, gathered per-rank resume state and barriers. Without torchrun
every helper degrades to the single-process behaviour, so the same code runs in Slicer, in a CLI and in a cluster job.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

__all__ = [
    "DistributedContext",
    "torchrun_environment",
    "backend_for",
    "init_distributed",
    "shutdown_distributed",
    "all_reduce_mean",
    "any_across_ranks",
    "all_gather_objects",
    "barrier",
    "broadcast_buffers",
]


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None
    initialized_here: bool = False

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files and reports progress."""
        return self.rank == 0


def torchrun_environment() -> Optional[Tuple[int, int, int]]:
    """``(rank, world_size, local_rank)`` from the torchrun environment variables, or ``None`` when not launched so."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    try:
        rank = int(os.environ["RANK"])
        world_size = int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError:
        raise ValueError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (set by torchrun), got "
                         f"{os.environ.get('RANK')!r}, {os.environ.get('WORLD_SIZE')!r}, "
                         f"{os.environ.get('LOCAL_RANK')!r}") from None
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"invalid torchrun environment: RANK={rank}, WORLD_SIZE={world_size}")
    return rank, world_size, local_rank


def backend_for(device_type: str) -> str:
    """``nccl`` for CUDA devices, ``gloo`` otherwise (CPU; MPS has no collective backend, so it uses gloo on CPU)."""
    return "nccl" if device_type == "cuda" else "gloo"


def init_distributed(device_type: str) -> DistributedContext:
    """Join the torchrun process group if this process was launched by torchrun with ``WORLD_SIZE > 1``.

    Reuses an already initialised default group (``initialized_here=False`` then). A group created here stays alive
    for later trainings in the same process (e.g. several folds in one torchrun launch: re-creating the default group
    on the same rendezvous store is not reliable) and is destroyed when the interpreter exits, or earlier with
    :func:`shutdown_distributed`.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size(),
                                  local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())),
                                  backend=str(dist.get_backend()), initialized_here=False)
    environment = torchrun_environment()
    if environment is None or environment[1] == 1:
        return DistributedContext()
    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed support, but the process was launched by "
                           "torchrun with WORLD_SIZE > 1")
    rank, world_size, local_rank = environment
    backend = backend_for(device_type)
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size)
    atexit.register(_destroy_default_group)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, backend=backend,
                              initialized_here=True)


def _destroy_default_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        # Every rank reaches this point before any rank tears its connections down: a rank that destroys the group
        # while a peer still uses it makes the peer's gloo threads abort the process ("terminate called without an
        # active exception", seen on a loaded 2-core machine).
        dist.barrier()
        dist.destroy_process_group()


def shutdown_distributed(context: DistributedContext) -> None:
    """Destroy the process group now if :func:`init_distributed` created it (otherwise done at interpreter exit).

    Call it on every rank, after the last collective operation. PyTorch's gloo backend can still abort a rank during
    interpreter shutdown after all work is done ("terminate called without an active exception",
    pytorch/pytorch#190489); a launcher script that must exit with status 0 can end with ``os._exit(0)`` once its
    files are written, as ``Testing/Python/distributed_training_script.py`` does.
    """
    if context.initialized_here:
        _destroy_default_group()


def _collective_device(context: DistributedContext, device: torch.device) -> torch.device:
    return device if context.backend == "nccl" else torch.device("cpu")


def all_reduce_mean(values: Mapping[str, float], context: DistributedContext,
                    device: torch.device) -> Dict[str, float]:
    """Average scalar values over the ranks (every rank must pass the same keys); identity when not distributed."""
    if not context.is_distributed:
        return {key: float(value) for key, value in values.items()}
    import torch.distributed as dist

    keys = sorted(values)
    tensor = torch.tensor([float(values[key]) for key in keys], dtype=torch.float64,
                          device=_collective_device(context, device))
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return {key: float(value) / context.world_size for key, value in zip(keys, tensor.tolist())}


def any_across_ranks(flags: Sequence[bool], context: DistributedContext, device: torch.device) -> List[bool]:
    """Element-wise logical OR of boolean flags over the ranks, so every rank takes the same decision."""
    if not context.is_distributed:
        return [bool(flag) for flag in flags]
    import torch.distributed as dist

    tensor = torch.tensor([1 if flag else 0 for flag in flags], dtype=torch.int32,
                          device=_collective_device(context, device))
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [bool(value) for value in tensor.tolist()]


def all_gather_objects(obj: Any, context: DistributedContext) -> List[Any]:
    """Every rank's ``obj`` (picklable, produced by our own processes), indexed by rank."""
    if not context.is_distributed:
        return [obj]
    import torch.distributed as dist

    gathered: List[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier(context: DistributedContext) -> None:
    """Wait until every rank arrives here (no-op when not distributed)."""
    if context.is_distributed:
        import torch.distributed as dist

        if context.backend == "nccl":
            dist.barrier(device_ids=[context.local_rank])
        else:
            dist.barrier()


def broadcast_buffers(module: torch.nn.Module, context: DistributedContext) -> None:
    """Copy rank 0's buffers (e.g. BatchNorm running statistics) to every rank.

    DistributedDataParallel keeps parameters identical but only broadcasts buffers at the start of each forward, so
    after a training step every rank holds the statistics of its own batches; call this before evaluating or at the
    end of training so that every rank has the same complete model.
    """
    if not context.is_distributed:
        return
    import torch.distributed as dist

    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)
