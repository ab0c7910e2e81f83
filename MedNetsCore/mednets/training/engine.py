"""The training engine shared by the SlicerMedNets modules, their CLIs and the tests.

:class:`Trainer` runs an iteration-based training loop (one iteration = one optimizer step, optionally accumulating
gradients over several batches) with periodic validation, early stopping on a monitored metric, BEST and LAST
checkpoints (mednets safetensors checkpoints, :mod:`mednets.checkpoints`), a resumable training-state file, a
history (JSON, CSV, PNG), progress reporting and cancellation (:mod:`mednets.progress`), and multi-process scale-out
with DistributedDataParallel when launched by torchrun (:mod:`mednets.training.distributed`).

Reproducibility: with the same seed a run is deterministic on CPU (``torch.use_deterministic_algorithms`` is enabled
for the duration of :meth:`Trainer.fit` and restored afterwards), and a run interrupted at any point (cancelled, or
killed) and resumed with ``resume=True`` ends with exactly the weights and history of the uninterrupted run, because
the training state holds the model, optimizer, schedule, AMP scaler, the python/numpy/torch random states, the patch
sampler state of every rank, the loss-window accumulators and the early-stopping counters. The state file contains
only tensors and plain Python data, so it loads with ``torch.load(weights_only=True)``.

Files written to ``output_dir`` (by rank 0 only, each atomically): ``best.safetensors``, ``last.safetensors``,
``training_state.pt``, ``history.json``, ``history.csv``, ``history.png`` and ``training_config.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from mednets.checkpoints import CheckpointMetadata, save_checkpoint, unwrap_model
from mednets.device import choose_device
from mednets.fileio import PathLike, atomic_write
from mednets.progress import CancelCallback, OperationCancelled, ProgressCallback, report
from mednets.training.data import Case
from mednets.training.distributed import (DistributedContext, all_gather_objects, all_reduce_mean, any_across_ranks,
                                          barrier, broadcast_buffers, init_distributed)
from mednets.training.history import TrainingHistory, plot_history
from mednets.training.optim import LRSchedule, build_optimizer, build_schedule
from mednets.training.sampling import PatchSampler

__all__ = [
    "BEST_CHECKPOINT",
    "LAST_CHECKPOINT",
    "STATE_FILE",
    "TrainingConfig",
    "TrainingResult",
    "TrainingDivergedError",
    "Trainer",
    "deterministic_algorithms",
    "capture_rng_state",
    "restore_rng_state",
]

BEST_CHECKPOINT = "best.safetensors"
LAST_CHECKPOINT = "last.safetensors"
STATE_FILE = "training_state.pt"
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
HISTORY_PNG = "history.png"
CONFIG_JSON = "training_config.json"
_STATE_FORMAT_VERSION = 1

_logger = logging.getLogger("mednets.training")


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite; the last saved checkpoint and state are still valid."""


@dataclass
class TrainingConfig:
    """Settings of a training run (plain data: build it from a dict or a JSON file).

    Attributes:
        iterations: number of optimizer steps.
        batch_size: patches per step and per process (the effective batch is ``batch_size * grad_accumulation *
            world_size``).
        patch_size: patch shape (array-axis order); used when the Trainer builds the patch sampler from cases.
        foreground_fraction: fraction of foreground-forced patches when the Trainer builds the sampler.
        optimizer: optimizer configuration (:func:`mednets.training.optim.build_optimizer`).
        schedule: learning-rate schedule configuration (:func:`mednets.training.optim.build_schedule`).
        validate_every: iterations between validations (0: never; the last iteration is always validated).
        monitor: name of the validation metric that selects the best checkpoint and drives early stopping.
        mode: ``"max"`` when a larger ``monitor`` is better, ``"min"`` otherwise.
        min_delta: smallest change of ``monitor`` that counts as an improvement.
        early_stopping_patience: stop after this many validations in a row without improvement (``None``: never).
        seed: seed of python, numpy and torch random generators (and of the sampler built from cases).
        output_dir: folder for checkpoints, training state and history (``None``: nothing is written).
        resume: continue from ``output_dir/training_state.pt`` when it exists.
        amp: automatic mixed precision (float16 autocast + gradient scaling) on CUDA; ignored on other devices.
        device: ``"auto"`` (CUDA, then Apple MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``
            (:func:`mednets.device.choose_device`; an unavailable device falls back to the CPU with a message).
        grad_accumulation: batches whose gradients are summed (averaged) per optimizer step.
        grad_clip_norm: clip the global gradient norm to this value (``None``: no clipping).
        log_every: iterations per row of the training-loss history (mean loss over the window).
        checkpoint_every: iterations between saves of the LAST checkpoint and the training state (``None``: at each
            validation, or every 100 iterations without validation).
        checkpoint_dtype: storage dtype of the BEST/LAST checkpoints' floating-point tensors (e.g. ``"float16"``);
            the training state always keeps full precision.
        deterministic: enable ``torch.use_deterministic_algorithms`` (warn-only) during training.
        plot: write ``history.png`` at validations and at the end.
    """

    iterations: int = 1000
    batch_size: int = 2
    patch_size: Optional[Tuple[int, ...]] = None
    foreground_fraction: float = 0.5
    optimizer: Dict[str, Any] = field(default_factory=lambda: {"name": "adam", "lr": 1e-3})
    schedule: Dict[str, Any] = field(default_factory=lambda: {"name": "constant"})
    validate_every: int = 100
    monitor: str = "dice"
    mode: str = "max"
    min_delta: float = 0.0
    early_stopping_patience: Optional[int] = None
    seed: int = 0
    output_dir: Optional[str] = None
    resume: bool = False
    amp: bool = False
    device: str = "auto"
    grad_accumulation: int = 1
    grad_clip_norm: Optional[float] = None
    log_every: int = 10
    checkpoint_every: Optional[int] = None
    checkpoint_dtype: Optional[str] = None
    deterministic: bool = True
    plot: bool = True

    def __post_init__(self) -> None:
        positive = {"iterations": self.iterations, "batch_size": self.batch_size,
                    "grad_accumulation": self.grad_accumulation, "log_every": self.log_every}
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainingConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.validate_every, int) or self.validate_every < 0:
            raise ValueError(f"TrainingConfig.validate_every must be an integer >= 0, got {self.validate_every!r}")
        if self.checkpoint_every is not None and (not isinstance(self.checkpoint_every, int)
                                                  or self.checkpoint_every < 1):
            raise ValueError(f"TrainingConfig.checkpoint_every must be a positive integer or None, "
                             f"got {self.checkpoint_every!r}")
        if self.mode not in ("max", "min"):
            raise ValueError(f"TrainingConfig.mode must be 'max' or 'min', got {self.mode!r}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ValueError(f"TrainingConfig.early_stopping_patience must be >= 1 or None, "
                             f"got {self.early_stopping_patience!r}")
        if not 0.0 <= self.foreground_fraction <= 1.0:
            raise ValueError(f"TrainingConfig.foreground_fraction must be in [0, 1], got {self.foreground_fraction}")
        if self.patch_size is not None:
            self.patch_size = tuple(int(p) for p in self.patch_size)
        if self.output_dir is not None:
            self.output_dir = str(self.output_dir)
        if isinstance(self.optimizer, str):
            self.optimizer = {"name": self.optimizer}
        if isinstance(self.schedule, str):
            self.schedule = {"name": self.schedule}

    @property
    def state_every(self) -> int:
        """Iterations between training-state saves (see ``checkpoint_every``)."""
        if self.checkpoint_every is not None:
            return self.checkpoint_every
        return self.validate_every if self.validate_every > 0 else 100

    def to_dict(self) -> Dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainingConfig":
        """Build from a dictionary; unknown keys are an error naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown training setting(s) {unknown}; known settings: {sorted(names)}")
        return cls(**dict(data))

    @classmethod
    def from_json(cls, path_or_text: Union[PathLike, str]) -> "TrainingConfig":
        """Build from a JSON file path or a JSON string."""
        text = str(path_or_text)
        if not text.lstrip().startswith("{"):
            text = Path(path_or_text).read_text(encoding="utf-8")
        return cls.from_dict(json.loads(text))

    def save_json(self, path: PathLike) -> None:
        with atomic_write(path, "w") as handle:
            json.dump(self.to_dict(), handle, indent=2)


@dataclass
class TrainingResult:
    """Outcome of :meth:`Trainer.fit`.

    Attributes:
        history: the :class:`TrainingHistory`.
        best_checkpoint: path of ``best.safetensors`` (``None`` without validation or ``output_dir``).
        last_checkpoint: path of ``last.safetensors`` (``None`` without ``output_dir``).
        stopped_reason: ``"completed"`` or ``"early_stopping"``.
        iterations: optimizer steps done.
        best_metric: best value of the monitored metric (``None`` without validation).
        best_iteration: iteration of ``best_metric``.
    """

    history: TrainingHistory
    best_checkpoint: Optional[Path]
    last_checkpoint: Optional[Path]
    stopped_reason: str
    iterations: int
    best_metric: Optional[float] = None
    best_iteration: Optional[int] = None


# ------------------------------------------------------------------------------------------------------- utilities

@contextlib.contextmanager
def deterministic_algorithms(enabled: bool = True) -> Iterator[None]:
    """Enable deterministic algorithms (warn-only) and deterministic cuDNN, restoring the previous settings after."""
    if not enabled:
        yield
        return
    previous = torch.are_deterministic_algorithms_enabled()
    warn_only_getter = getattr(torch, "is_deterministic_algorithms_warn_only_enabled", None)
    previous_warn_only = warn_only_getter() if warn_only_getter is not None else False
    cudnn = torch.backends.cudnn
    previous_cudnn = (cudnn.deterministic, cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS (CUDA >= 10.2)
    torch.use_deterministic_algorithms(True, warn_only=True)
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn_only)
        cudnn.deterministic, cudnn.benchmark = previous_cudnn


def capture_rng_state(device: torch.device) -> Dict[str, Any]:
    """Python, numpy (global) and torch random states as tensors and plain lists (``weights_only``-loadable)."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: Dict[str, Any] = {
        "python": [version, list(internal), gauss_next],
        "numpy": [kind, keys.tolist(), int(position), int(has_gauss), float(cached_gaussian)],
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    elif device.type == "mps" and hasattr(torch, "mps") and hasattr(torch.mps, "get_rng_state"):
        state["mps"] = torch.mps.get_rng_state()
    return state


def restore_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss_next = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss_next))
    kind, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)
    elif device.type == "mps" and state.get("mps") is not None:
        torch.mps.set_rng_state(state["mps"].cpu())


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _grad_scaler(enabled: bool) -> Optional[Any]:
    if not enabled:
        return None
    if hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda")
    return torch.cuda.amp.GradScaler()


class _BatchStream:
    """Uniform access to the training data: a sampler with ``next_batch`` or an iterable of batches (cycled)."""

    def __init__(self, data: Any, config: TrainingConfig) -> None:
        if isinstance(data, Sequence) and len(data) > 0 and isinstance(data[0], Case):
            if config.patch_size is None:
                raise ValueError("TrainingConfig.patch_size is needed to sample patches from training cases")
            data = PatchSampler(data, config.patch_size, config.foreground_fraction, seed=config.seed)
        self.sampler = data if callable(getattr(data, "next_batch", None)) else None
        if self.sampler is None and not isinstance(data, Iterable):
            raise TypeError(f"training data must be cases, a sampler with next_batch(batch_size) or an iterable of "
                            f"batches, got {type(data).__name__}")
        self.iterable = None if self.sampler is not None else data
        self._iterator: Optional[Iterator] = None
        self.consumed = 0
        self.batch_size = config.batch_size

    @property
    def exact_resume(self) -> bool:
        return self.sampler is not None and callable(getattr(self.sampler, "state_dict", None))

    def set_rank(self, rank: Optional[int]) -> None:
        if self.sampler is not None and callable(getattr(self.sampler, "set_rank", None)):
            self.sampler.set_rank(rank)

    def next(self) -> Any:
        self.consumed += 1
        if self.sampler is not None:
            return self.sampler.next_batch(self.batch_size)
        for _ in range(2):
            if self._iterator is None:
                self._iterator = iter(self.iterable)
            try:
                return next(self._iterator)
            except StopIteration:
                self._iterator = None
        raise ValueError("the iterable of training batches is empty")

    def state_dict(self) -> Dict[str, Any]:
        state: Dict[str, Any] = {"consumed": self.consumed}
        if self.exact_resume:
            state["sampler"] = self.sampler.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.exact_resume and "sampler" in state:
            self.sampler.load_state_dict(state["sampler"])
            self.consumed = int(state["consumed"])
        elif self.sampler is None:
            for _ in range(int(state["consumed"])):  # replay the iterable to the same position
                self.next()


def _to_device(batch: Any, device: torch.device) -> Tuple[torch.Tensor, ...]:
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise TypeError("a training batch must be a tuple (inputs, targets, *extras) of tensors or arrays, got "
                        f"{type(batch).__name__}")
    items = []
    for item in batch:
        tensor = torch.as_tensor(item) if not isinstance(item, torch.Tensor) else item
        items.append(tensor.to(device, non_blocking=device.type == "cuda"))
    return tuple(items)


@dataclass
class _LoopState:
    iteration: int = 0
    history: TrainingHistory = field(default_factory=TrainingHistory)
    best_value: Optional[float] = None
    best_iteration: Optional[int] = None
    bad_validations: int = 0
    stopped_reason: Optional[str] = None
    window_loss: float = 0.0
    window_count: int = 0


# ---------------------------------------------------------------------------------------------------------- trainer

class Trainer:
    """Train ``model`` with ``loss_fn`` on ``train_data``, validating with ``validate_fn``.

    Args:
        model: the network (moved to the configured device; under torchrun wrapped in DistributedDataParallel).
        loss_fn: ``loss_fn(model_output, targets, *extras) -> scalar tensor`` where ``(inputs, targets, *extras)``
            is a training batch (extras: e.g. the weight map of :class:`~mednets.training.sampling.PatchSampler`).
        train_data: a list of :class:`~mednets.training.data.Case` (a :class:`PatchSampler` is built from
            ``config.patch_size``, ``config.foreground_fraction`` and ``config.seed``), a sampler with
            ``next_batch(batch_size)`` (exactly resumable when it has ``state_dict``/``load_state_dict``), or any
            iterable of batches (cycled; resumed by replaying it, exact only if it is deterministic).
        validate_fn: ``validate_fn(model) -> {metric: value}``, called in eval mode under ``torch.no_grad`` with the
            unwrapped model; its result must contain ``config.monitor``. Under torchrun each rank validates (its share
            of) the data and the metrics are averaged over the ranks.
        config: a :class:`TrainingConfig` or a dictionary of its fields.
        progress: ``progress(fraction, "iteration i/N, loss x")`` (rank 0 only).
        cancel: ``cancel() -> bool``, polled every iteration; cancelling saves the state (so training can be resumed)
            and raises :class:`~mednets.progress.OperationCancelled`.
        log: ``log(message)`` for human-readable events (default: the ``mednets.training`` logger).
        metadata: :class:`~mednets.checkpoints.CheckpointMetadata` (or dict) stored in the BEST/LAST checkpoints;
            training details (iteration, monitored metric) are added to its ``extra``.
    """

    def __init__(self, model: torch.nn.Module, loss_fn: Callable[..., torch.Tensor], train_data: Any,
                 validate_fn: Optional[Callable[[torch.nn.Module], Mapping[str, float]]] = None,
                 config: Union[TrainingConfig, Mapping[str, Any], None] = None,
                 progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCallback] = None,
                 log: Optional[Callable[[str], None]] = None,
                 metadata: Union[CheckpointMetadata, Mapping[str, Any], None] = None) -> None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.config = config if isinstance(config, TrainingConfig) else TrainingConfig.from_dict(config or {})
        if self.config.early_stopping_patience is not None and (validate_fn is None or self.config.validate_every == 0):
            raise ValueError("early stopping needs validation: give a validate_fn and validate_every > 0")
        if self.config.resume and self.config.output_dir is None:
            raise ValueError("resume=True needs an output_dir holding the training state")
        self.model = model
        self.loss_fn = loss_fn
        self.validate_fn = validate_fn
        self.progress = progress
        self.cancel = cancel
        self._log = log or _logger.info
        if metadata is None:
            metadata = CheckpointMetadata(architecture=type(unwrap_model(model)).__name__)
        self.metadata = metadata if isinstance(metadata, CheckpointMetadata) else CheckpointMetadata.from_dict(metadata)
        self.batches = _BatchStream(train_data, self.config)
        self.output_dir = Path(self.config.output_dir) if self.config.output_dir is not None else None

    # ------------------------------------------------------------------------------------------------ public API
    def fit(self, resume: Optional[bool] = None) -> TrainingResult:
        """Train until ``config.iterations`` or early stopping; see the class and module documentation.

        Under torchrun the first call joins the process group, which stays available for later calls in the same
        process (see :func:`mednets.training.distributed.init_distributed`).
        """
        resume = self.config.resume if resume is None else resume
        if resume and self.output_dir is None:
            raise ValueError("resume=True needs an output_dir holding the training state")
        device = choose_device(self.config.device, report=self._log)
        context = init_distributed(device.type)
        if context.is_distributed and device.type == "cuda":
            device = torch.device("cuda", context.local_rank)
        with deterministic_algorithms(self.config.deterministic):
            return self._fit(context, device, bool(resume))

    @property
    def state_path(self) -> Optional[Path]:
        return self.output_dir / STATE_FILE if self.output_dir is not None else None

    # ----------------------------------------------------------------------------------------------------- setup
    def log(self, context: DistributedContext, message: str) -> None:
        if context.is_main:
            self._log(message)

    def _fit(self, context: DistributedContext, device: torch.device, resume: bool) -> TrainingResult:
        config = self.config
        model = unwrap_model(self.model).to(device)
        _seed_everything(config.seed + context.rank)
        self.batches.set_rank(context.rank if context.is_distributed else None)
        optimizer = build_optimizer(model.parameters(), config.optimizer)
        schedule = build_schedule(optimizer, config.schedule, total_iterations=config.iterations,
                                  monitor_mode=config.mode)
        amp = config.amp and device.type == "cuda"
        if config.amp and not amp:
            self.log(context, f"Mixed precision (amp) is only used on CUDA; training in float32 on {device}.")
        scaler = _grad_scaler(amp)
        state = _LoopState()
        if resume and self.state_path is not None and self.state_path.is_file():
            self._load_state(context, device, model, optimizer, schedule, scaler, state)
        elif resume:
            self.log(context, f"No training state in '{self.output_dir}'; starting from iteration 0.")
        if context.is_main and self.output_dir is not None:
            config.save_json(self.output_dir / CONFIG_JSON)
        train_model: torch.nn.Module = model
        if context.is_distributed:
            device_ids = [device.index] if device.type == "cuda" else None
            train_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
            self.log(context, f"Distributed training on {context.world_size} processes ({context.backend}).")
        self._loop(context, device, model, train_model, optimizer, schedule, scaler, amp, state)
        broadcast_buffers(model, context)
        barrier(context)
        return self._result(state)

    # ------------------------------------------------------------------------------------------------------ loop
    def _loop(self, context: DistributedContext, device: torch.device, model: torch.nn.Module,
              train_model: torch.nn.Module, optimizer: torch.optim.Optimizer, schedule: LRSchedule,
              scaler: Optional[Any], amp: bool, state: _LoopState) -> None:
        config = self.config
        saved_at = state.iteration  # iteration of the training state on disk (0: none)
        if state.stopped_reason is not None or state.iteration >= config.iterations:
            return
        if any_across_ranks([self._cancel_requested()], context, device)[0]:
            raise OperationCancelled()
        while state.iteration < config.iterations:
            schedule.apply(state.iteration)
            loss = self._train_step(train_model, optimizer, scaler, amp, device, context)
            if context.is_main:
                running = (state.window_loss + loss) / (state.window_count + 1)
                report(self.progress, (state.iteration + 1) / config.iterations,
                       f"iteration {state.iteration + 1}/{config.iterations}, loss {running:.4g}")
            # One agreement per iteration, so that every rank stops at the same iteration.
            diverged, cancelled = any_across_ranks([not math.isfinite(loss), self._cancel_requested()],
                                                   context, device)
            if diverged:
                saved = f" The last saved state is from iteration {saved_at}." if saved_at and self.output_dir else ""
                raise TrainingDivergedError(
                    f"the training loss became NaN or infinite at iteration {state.iteration + 1}; lower the learning "
                    f"rate, enable grad_clip_norm or check the data.{saved}")
            state.iteration += 1
            state.window_loss += loss
            state.window_count += 1
            finished = state.iteration == config.iterations
            if state.iteration % config.log_every == 0 or finished:
                self._log_window(context, device, optimizer, state)
            validated = self._maybe_validate(context, device, model, schedule, state, finished)
            if state.iteration % config.state_every == 0 or finished or state.stopped_reason or cancelled:
                plot = validated or finished or cancelled or state.stopped_reason is not None
                self._save_state(context, device, model, optimizer, schedule, scaler, state, plot=plot)
                saved_at = state.iteration
            if cancelled:
                self.log(context, f"Training cancelled at iteration {state.iteration}; resume with resume=True.")
                raise OperationCancelled()
            if state.stopped_reason is not None:
                break

    def _cancel_requested(self) -> bool:
        return bool(self.cancel is not None and self.cancel())

    def _train_step(self, train_model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: Optional[Any],
                    amp: bool, device: torch.device, context: DistributedContext) -> float:
        config = self.config
        train_model.train()
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for micro_step in range(config.grad_accumulation):
            inputs, targets, *extras = _to_device(self.batches.next(), device)
            last_micro_step = micro_step == config.grad_accumulation - 1
            sync = contextlib.nullcontext() if (last_micro_step or not context.is_distributed) else \
                train_model.no_sync()
            with sync:
                autocast = torch.autocast("cuda", dtype=torch.float16) if amp else contextlib.nullcontext()
                with autocast:
                    output = train_model(inputs)
                    loss = self.loss_fn(output, targets, *extras)
                if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                    raise TypeError("loss_fn must return a scalar tensor")
                scaled = loss.reshape(()) / config.grad_accumulation
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
            total += float(loss.detach())
        if config.grad_clip_norm is not None:
            if scaler is not None:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(train_model.parameters(), config.grad_clip_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        return total / config.grad_accumulation

    def _log_window(self, context: DistributedContext, device: torch.device, optimizer: torch.optim.Optimizer,
                    state: _LoopState) -> None:
        mean = all_reduce_mean({"loss": state.window_loss / max(state.window_count, 1)}, context, device)["loss"]
        state.history.add_train(state.iteration, mean, optimizer.param_groups[0]["lr"])
        state.window_loss, state.window_count = 0.0, 0

    def _maybe_validate(self, context: DistributedContext, device: torch.device, model: torch.nn.Module,
                        schedule: LRSchedule, state: _LoopState, finished: bool) -> bool:
        config = self.config
        if self.validate_fn is None or config.validate_every == 0:
            return False
        if state.iteration % config.validate_every != 0 and not finished:
            return False
        broadcast_buffers(model, context)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                metrics = self.validate_fn(model)
        finally:
            model.train(was_training)
        if not isinstance(metrics, Mapping) or config.monitor not in metrics:
            names = sorted(metrics) if isinstance(metrics, Mapping) else type(metrics).__name__
            raise ValueError(f"validate_fn must return a dict containing the monitored metric '{config.monitor}', "
                             f"got {names}")
        metrics = all_reduce_mean({k: float(v) for k, v in metrics.items()}, context, device)
        state.history.add_validation(state.iteration, metrics)
        value = metrics[config.monitor]
        improved = state.best_value is None or (
            value > state.best_value + config.min_delta if config.mode == "max"
            else value < state.best_value - config.min_delta)
        summary = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        if improved:
            state.best_value, state.best_iteration, state.bad_validations = value, state.iteration, 0
            self.log(context, f"Validation at iteration {state.iteration}: {summary} (best so far)")
            if context.is_main and self.output_dir is not None:
                self._write_checkpoint(self.output_dir / BEST_CHECKPOINT, model, state, metrics)
        else:
            state.bad_validations += 1
            self.log(context, f"Validation at iteration {state.iteration}: {summary} (best {config.monitor} "
                              f"{state.best_value:.4g} at iteration {state.best_iteration})")
        if schedule.on_validation(value):
            self.log(context, f"Learning rate reduced to {schedule.lr_at(state.iteration)[0]:.3g}.")
        patience = config.early_stopping_patience
        if patience is not None and state.bad_validations >= patience:
            state.stopped_reason = "early_stopping"
            self.log(context, f"Early stopping: no improvement of {config.monitor} in {patience} validations.")
        return True

    # --------------------------------------------------------------------------------------------------- files
    def _write_checkpoint(self, path: Path, model: torch.nn.Module, state: _LoopState,
                          metrics: Optional[Mapping[str, float]] = None) -> None:
        training = {"iteration": state.iteration, "monitor": self.config.monitor}
        if metrics is not None:
            training["metrics"] = dict(metrics)
        metadata = dataclasses.replace(self.metadata, extra={**self.metadata.extra, "training": training})
        save_checkpoint(path, model, metadata, dtype=self.config.checkpoint_dtype)

    def _save_state(self, context: DistributedContext, device: torch.device, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, schedule: LRSchedule, scaler: Optional[Any],
                    state: _LoopState, plot: bool) -> None:
        if self.output_dir is None:
            return
        rank_state = {"rng": capture_rng_state(device), "batches": self.batches.state_dict(),
                      "window": [state.window_loss, state.window_count]}
        rank_states = all_gather_objects(rank_state, context)
        if context.is_main:
            self._write_state_files(self.output_dir, context, model, optimizer, schedule, scaler, state, rank_states,
                                    plot)
        # Nobody goes on (e.g. to resume after a cancel) before rank 0 has finished writing.
        barrier(context)

    def _write_state_files(self, output_dir: Path, context: DistributedContext, model: torch.nn.Module,
                           optimizer: torch.optim.Optimizer, schedule: LRSchedule, scaler: Optional[Any],
                           state: _LoopState, rank_states: List[Any], plot: bool) -> None:
        payload = {
            "format_version": _STATE_FORMAT_VERSION,
            "iteration": state.iteration,
            "config": self.config.to_dict(),
            "world_size": context.world_size,
            "model": {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "history": state.history.to_dict(),
            "best_value": state.best_value,
            "best_iteration": state.best_iteration,
            "bad_validations": state.bad_validations,
            "stopped_reason": state.stopped_reason,
            "ranks": rank_states,
        }
        self._write_checkpoint(output_dir / LAST_CHECKPOINT, model, state)
        with atomic_write(output_dir / STATE_FILE, "wb") as handle:
            torch.save(payload, handle)
        state.history.save_json(output_dir / HISTORY_JSON)
        state.history.save_csv(output_dir / HISTORY_CSV)
        if plot and self.config.plot:
            plot_history(state.history, output_dir / HISTORY_PNG)

    def _load_state(self, context: DistributedContext, device: torch.device, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, schedule: LRSchedule, scaler: Optional[Any],
                    state: _LoopState) -> None:
        path = self.state_path
        payload = torch.load(str(path), map_location="cpu", weights_only=True)
        if payload.get("format_version") != _STATE_FORMAT_VERSION:
            raise ValueError(f"training state '{path}' has format version {payload.get('format_version')!r}; "
                             f"this mednets reads version {_STATE_FORMAT_VERSION}")
        saved_config = payload["config"]
        changed = sorted(key for key, value in self.config.to_dict().items()
                         if key not in ("iterations", "resume", "output_dir", "device") and
                         saved_config.get(key) != value)
        if changed:
            self.log(context, f"Resuming with changed settings {changed}; the run will differ from an "
                              "uninterrupted one.")
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        schedule.load_state_dict(payload["schedule"])
        if scaler is not None and payload["scaler"] is not None:
            scaler.load_state_dict(payload["scaler"])
        state.iteration = int(payload["iteration"])
        state.history = TrainingHistory.from_dict(payload["history"])
        state.best_value = payload["best_value"]
        state.best_iteration = payload["best_iteration"]
        state.bad_validations = int(payload["bad_validations"])
        state.stopped_reason = payload["stopped_reason"]
        ranks = payload["ranks"]
        if len(ranks) == context.world_size:
            mine = ranks[context.rank]
            self.batches.load_state_dict(mine["batches"])
            restore_rng_state(mine["rng"], device)
            state.window_loss, state.window_count = float(mine["window"][0]), int(mine["window"][1])
        else:
            self.log(context, f"The training state was saved by {len(ranks)} process(es), this run has "
                              f"{context.world_size}; random streams restart, so the run will differ from an "
                              "uninterrupted one.")
        if not self.batches.exact_resume:
            self.log(context, "The training data has no sampler state; it was replayed to its position, which is "
                              "exact only if it is deterministic.")
        self.log(context, f"Resumed from iteration {state.iteration} ('{path}').")

    def _result(self, state: _LoopState) -> TrainingResult:
        best = last = None
        if self.output_dir is not None:
            best = self.output_dir / BEST_CHECKPOINT if state.best_iteration is not None else None
            last = self.output_dir / LAST_CHECKPOINT
        return TrainingResult(history=state.history, best_checkpoint=best, last_checkpoint=last,
                              stopped_reason=state.stopped_reason or "completed", iterations=state.iteration,
                              best_metric=state.best_value, best_iteration=state.best_iteration)
