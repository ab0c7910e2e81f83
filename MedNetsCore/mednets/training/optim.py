"""Optimizers and learning-rate schedules chosen by name from plain configuration dictionaries.

Configurations are data (JSON-friendly), e.g. ``{"name": "adadelta"}``, ``{"name": "sgd", "lr": 0.01,
"momentum": 0.99, "nesterov": True}``, ``{"name": "warmup_step", "milestones": [3000, 4000], "warmup_iters": 500}``
or ``{"name": "plateau", "factor": 0.5, "patience": 5}``. Every schedule is driven by the iteration counter (one
iteration = one optimizer step); :class:`PlateauSchedule` is driven by the validation metric. Schedules set the
learning rate of every parameter group to ``base_lr * factor`` and keep their state as plain data for resuming.
"""

from __future__ import annotations

import bisect
import inspect
import math
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import torch

__all__ = [
    "OPTIMIZER_DEFAULTS",
    "build_optimizer",
    "LRSchedule",
    "ConstantSchedule",
    "StepSchedule",
    "WarmupStepSchedule",
    "PolySchedule",
    "PlateauSchedule",
    "SCHEDULES",
    "build_schedule",
]

ConfigLike = Union[str, Mapping[str, Any]]

#: Default hyper-parameters per optimizer name (overridden by the configuration).
OPTIMIZER_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "adam": {"lr": 1e-3},
    "adamw": {"lr": 1e-3, "weight_decay": 1e-2},
    "radam": {"lr": 1e-3},
    # Zeiler, "ADADELTA: an adaptive learning rate method", arXiv:1212.5701 (2012): rho 0.95, epsilon 1e-8.
    "adadelta": {"lr": 1.0, "rho": 0.95, "eps": 1e-8},
    "sgd": {"lr": 1e-2, "momentum": 0.9},
}

_OPTIMIZER_CLASSES: Dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "radam": torch.optim.RAdam,
    "adadelta": torch.optim.Adadelta,
    "sgd": torch.optim.SGD,
}


def _split_config(config: ConfigLike, kind: str) -> tuple:
    if isinstance(config, str):
        return config.lower(), {}
    if not isinstance(config, Mapping) or "name" not in config:
        raise ValueError(f"{kind} configuration must be a name or a dict with a 'name' key, got {config!r}")
    options = {key: value for key, value in config.items() if key != "name"}
    return str(config["name"]).lower(), options


def _check_options(factory: Callable, options: Mapping[str, Any], what: str, skip: Sequence[str] = ()) -> None:
    parameters = inspect.signature(factory).parameters
    accepted = [name for name in parameters if name not in ("self", "params", "optimizer") and name not in skip]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"{what} does not accept {unknown}; accepted parameters: {accepted}")


def build_optimizer(parameters: Iterable[Any], config: ConfigLike) -> torch.optim.Optimizer:
    """Create an optimizer from ``{"name": ..., **hyper-parameters}``.

    Names: ``adam``, ``adamw``, ``radam``, ``adadelta`` (lr 1, rho 0.95, eps 1e-8 by default, as in Zeiler 2012),
    ``sgd`` (momentum 0.9 by default). Hyper-parameters are those of the torch.optim class.
    """
    name, options = _split_config(config, "optimizer")
    if name not in _OPTIMIZER_CLASSES:
        raise ValueError(f"unknown optimizer '{name}'; choose one of {sorted(_OPTIMIZER_CLASSES)}")
    factory = _OPTIMIZER_CLASSES[name]
    _check_options(factory, options, f"optimizer '{name}'")
    return factory(parameters, **{**OPTIMIZER_DEFAULTS[name], **options})


class LRSchedule:
    """Base schedule: learning rate of group ``g`` at iteration ``i`` is ``base_lr[g] * factor(i)``.

    Call :meth:`apply` with the (0-based) index of the iteration about to run, before its optimizer step, and
    :meth:`on_validation` with each validation value of the monitored metric.
    """

    name = "constant"

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.base_lrs: List[float] = [float(group["lr"]) for group in optimizer.param_groups]

    def factor(self, iteration: int) -> float:
        return 1.0

    def lr_at(self, iteration: int) -> List[float]:
        """Learning rates of each parameter group at ``iteration`` (without changing the optimizer)."""
        return [base * self.factor(iteration) for base in self.base_lrs]

    def apply(self, iteration: int) -> None:
        for group, lr in zip(self.optimizer.param_groups, self.lr_at(iteration)):
            group["lr"] = lr

    def on_validation(self, value: float) -> bool:
        """React to a validation result; returns True when the schedule changed the learning rate."""
        return False

    def _extra_state(self) -> Dict[str, Any]:
        return {}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        pass

    def state_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "base_lrs": list(self.base_lrs), **self._extra_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("name") != self.name:
            raise ValueError(f"schedule state is for '{state.get('name')}', this schedule is '{self.name}'")
        self.base_lrs = [float(lr) for lr in state["base_lrs"]]
        self._load_extra_state(state)


class ConstantSchedule(LRSchedule):
    """Constant learning rate."""

    name = "constant"


class StepSchedule(LRSchedule):
    """Step decay: ``factor = gamma ** k`` with ``k = iteration // step_size`` or the number of ``milestones`` passed.

    Give either ``step_size`` (decay every ``step_size`` iterations) or ``milestones`` (iterations at which to decay).
    """

    name = "step"

    def __init__(self, optimizer: torch.optim.Optimizer, step_size: Optional[int] = None,
                 milestones: Optional[Sequence[int]] = None, gamma: float = 0.1) -> None:
        super().__init__(optimizer)
        if (step_size is None) == (milestones is None):
            raise ValueError("the 'step' schedule needs exactly one of step_size or milestones")
        if step_size is not None and step_size < 1:
            raise ValueError(f"step_size must be >= 1, got {step_size}")
        self.step_size = step_size
        self.milestones = sorted(int(m) for m in milestones) if milestones is not None else None
        self.gamma = float(gamma)

    def _decays(self, iteration: int) -> int:
        if self.milestones is not None:
            return bisect.bisect_right(self.milestones, iteration)
        return iteration // int(self.step_size)

    def factor(self, iteration: int) -> float:
        return self.gamma ** self._decays(iteration)


class WarmupStepSchedule(StepSchedule):
    """Warm-up followed by step decay at ``milestones`` (Detectron2's ``WarmupMultiStepLR``).

    ``factor = warmup(i) * gamma ** bisect_right(milestones, i)`` where, for ``i < warmup_iters``,
    ``warmup(i) = warmup_factor * (1 - i / warmup_iters) + i / warmup_iters`` (``"linear"``) or ``warmup_factor``
    (``"constant"``), and 1 afterwards.
    """

    name = "warmup_step"

    def __init__(self, optimizer: torch.optim.Optimizer, milestones: Sequence[int] = (), gamma: float = 0.1,
                 warmup_iters: int = 1000, warmup_factor: float = 0.001, warmup_method: str = "linear") -> None:
        super().__init__(optimizer, milestones=milestones, gamma=gamma)
        if warmup_method not in ("linear", "constant"):
            raise ValueError(f"warmup_method must be 'linear' or 'constant', got {warmup_method!r}")
        if warmup_iters < 0:
            raise ValueError(f"warmup_iters must be >= 0, got {warmup_iters}")
        self.warmup_iters = int(warmup_iters)
        self.warmup_factor = float(warmup_factor)
        self.warmup_method = warmup_method

    def factor(self, iteration: int) -> float:
        warmup = 1.0
        if iteration < self.warmup_iters:
            if self.warmup_method == "constant":
                warmup = self.warmup_factor
            else:
                alpha = iteration / self.warmup_iters
                warmup = self.warmup_factor * (1.0 - alpha) + alpha
        return warmup * super().factor(iteration)


class PolySchedule(LRSchedule):
    """Polynomial decay ``factor = (1 - iteration / total_iterations) ** power`` (nnU-Net uses power 0.9)."""

    name = "poly"

    def __init__(self, optimizer: torch.optim.Optimizer, total_iterations: int = 1000, power: float = 0.9) -> None:
        super().__init__(optimizer)
        if total_iterations < 1:
            raise ValueError(f"total_iterations must be >= 1, got {total_iterations}")
        self.total_iterations = int(total_iterations)
        self.power = float(power)

    def factor(self, iteration: int) -> float:
        return max(0.0, 1.0 - iteration / self.total_iterations) ** self.power


class PlateauSchedule(LRSchedule):
    """Multiply the learning rate by ``factor`` after ``patience`` validations in a row without improvement.

    A value improves when it beats the best so far by more than ``threshold`` (``mode="max"``: larger is better,
    ``"min"``: smaller is better). The learning rate never goes below ``min_lr``; after a reduction the count starts
    again.
    """

    name = "plateau"

    def __init__(self, optimizer: torch.optim.Optimizer, factor: float = 0.5, patience: int = 5, mode: str = "max",
                 threshold: float = 0.0, min_lr: float = 0.0) -> None:
        super().__init__(optimizer)
        if not 0.0 < factor < 1.0:
            raise ValueError(f"plateau factor must be in (0, 1), got {factor}")
        if patience < 1:
            raise ValueError(f"plateau patience must be >= 1 validation, got {patience}")
        if mode not in ("max", "min"):
            raise ValueError(f"plateau mode must be 'max' or 'min', got {mode!r}")
        self.reduction = float(factor)
        self.patience = int(patience)
        self.mode = mode
        self.threshold = float(threshold)
        self.min_lr = float(min_lr)
        self.scale = 1.0
        self.best: Optional[float] = None
        self.bad_validations = 0

    def factor(self, iteration: int) -> float:
        return self.scale

    def lr_at(self, iteration: int) -> List[float]:
        return [max(base * self.scale, min(self.min_lr, base)) for base in self.base_lrs]

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best + self.threshold if self.mode == "max" else value < self.best - self.threshold

    def on_validation(self, value: float) -> bool:
        if math.isnan(value):
            raise ValueError("the monitored validation metric is NaN; the plateau schedule cannot compare it")
        if self._improved(value):
            self.best = float(value)
            self.bad_validations = 0
            return False
        self.bad_validations += 1
        if self.bad_validations < self.patience:
            return False
        self.bad_validations = 0
        self.scale *= self.reduction
        return True

    def _extra_state(self) -> Dict[str, Any]:
        return {"scale": self.scale, "best": self.best, "bad_validations": self.bad_validations}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.scale = float(state["scale"])
        self.best = None if state["best"] is None else float(state["best"])
        self.bad_validations = int(state["bad_validations"])


SCHEDULES: Dict[str, Callable[..., LRSchedule]] = {
    "constant": ConstantSchedule,
    "step": StepSchedule,
    "warmup_step": WarmupStepSchedule,
    "poly": PolySchedule,
    "plateau": PlateauSchedule,
}


def build_schedule(optimizer: torch.optim.Optimizer, config: ConfigLike, total_iterations: Optional[int] = None,
                   monitor_mode: str = "max") -> LRSchedule:
    """Create a schedule from ``{"name": ..., **parameters}`` (see :data:`SCHEDULES`).

    ``total_iterations`` is the default of ``poly``'s ``total_iterations``; ``monitor_mode`` the default ``mode`` of
    ``plateau`` (the training's monitored metric direction).
    """
    name, options = _split_config(config, "schedule")
    if name not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule '{name}'; choose one of {sorted(SCHEDULES)}")
    factory = SCHEDULES[name]
    _check_options(factory, options, f"schedule '{name}'")
    if name == "poly" and total_iterations is not None:
        options.setdefault("total_iterations", total_iterations)
    if name == "plateau":
        options.setdefault("mode", monitor_mode)
    return factory(optimizer, **options)
