"""Multi-task loss weighting: equal weights, homoscedastic uncertainty, dynamic weight averaging (torch).

Elmahdy et al., IEEE Access 2021, section 5.2.4 (Eqs. 5.6-5.8), after Kendall, Gal and Cipolla, CVPR 2018
(homoscedastic uncertainty) and Liu, Johns and Davison, CVPR 2019 (DWA).

Every weighting is a ``torch.nn.Module`` called with a dict of scalar task losses and returning the total; ``weights()``
gives the current weight of each task as floats (for logging and for plots like the paper's Fig. 5.3). Losses not in
``names`` (e.g. the bending energy, whose weight the paper fixes at 0.5) must be added by the caller.

* :class:`EqualWeighting`: every weight 1.
* :class:`HomoscedasticWeighting`: L = sum_i exp(-s_i) L_i + s_i / 2 with learned s_i = log sigma_i^2, i.e. Eq. 5.7
  (1 / sigma^2 L + log sigma). The s_i are ``nn.Parameter`` s of this module: give ``weighting.parameters()`` to the
  optimizer (:func:`trainable_parameters` collects network + weighting parameters) or they never change. (The official
  PyTorch JRS-MTL code creates them but never passes them to its optimizer.)
* :class:`DynamicWeightAveraging`: w_k(t) = K exp(r_k(t-1)/T) / sum_i exp(r_i(t-1)/T), r_k(t-1) = L_k(t-1) / L_k(t-2),
  r = 1 for the first two iterations, T = 1 (Eq. 5.8). The loss values of each call are recorded (detached) after
  the total is formed, so call it exactly once per training iteration. (The official PyTorch code returns equal
  weights.)
"""

from __future__ import annotations

import math
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence

import torch

__all__ = ["LossWeighting", "EqualWeighting", "HomoscedasticWeighting", "DynamicWeightAveraging",
           "make_weighting", "trainable_parameters", "WEIGHTING_NAMES"]

WEIGHTING_NAMES = ("equal", "homoscedastic", "dwa")


class LossWeighting(torch.nn.Module):
    def __init__(self, names: Sequence[str]) -> None:
        super().__init__()
        self.names = tuple(str(n) for n in names)
        if not self.names or len(set(self.names)) != len(self.names):
            raise ValueError(f"need distinct task names, got {names}")

    def _check(self, losses: Mapping[str, torch.Tensor]) -> None:
        missing = [n for n in self.names if n not in losses]
        if missing:
            raise KeyError(f"missing task losses: {missing}")

    def weights(self) -> Dict[str, float]:  # pragma: no cover - overridden
        raise NotImplementedError


class EqualWeighting(LossWeighting):
    def forward(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        self._check(losses)
        return sum(losses[n] for n in self.names)

    def weights(self) -> Dict[str, float]:
        return {n: 1.0 for n in self.names}


class HomoscedasticWeighting(LossWeighting):
    """Learned log-variances ``log_vars`` (one per task, initialised to ``init``: weight exp(-init))."""

    def __init__(self, names: Sequence[str], init: float = 0.0) -> None:
        super().__init__(names)
        self.log_vars = torch.nn.Parameter(torch.full((len(self.names),), float(init)))

    def forward(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        self._check(losses)
        total = 0.0
        for i, n in enumerate(self.names):
            s = self.log_vars[i]
            total = total + torch.exp(-s) * losses[n] + 0.5 * s
        return total

    def weights(self) -> Dict[str, float]:
        w = torch.exp(-self.log_vars.detach()).tolist()
        return dict(zip(self.names, (float(x) for x in w)))


class DynamicWeightAveraging(LossWeighting):
    def __init__(self, names: Sequence[str], temperature: float = 1.0) -> None:
        super().__init__(names)
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        self.temperature = float(temperature)
        self.register_buffer("history", torch.zeros(2, len(self.names), dtype=torch.float64))  # [t-2, t-1]
        self.register_buffer("seen", torch.zeros((), dtype=torch.int64))
        self._current = torch.ones(len(self.names), dtype=torch.float64)

    def _weights_tensor(self) -> torch.Tensor:
        k = len(self.names)
        if int(self.seen) < 2:
            return torch.ones(k, dtype=torch.float64)
        r = self.history[1] / self.history[0].clamp(min=1e-12)
        e = torch.softmax(r / self.temperature, dim=0)
        return k * e

    def forward(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        self._check(losses)
        w = self._weights_tensor()
        self._current = w
        total = sum(float(w[i]) * losses[n] for i, n in enumerate(self.names))
        values = torch.tensor([float(losses[n].detach()) for n in self.names], dtype=torch.float64)
        self.history[0] = self.history[1].clone()
        self.history[1] = values
        self.seen += 1
        return total

    def weights(self) -> Dict[str, float]:
        """The weights the next call will use."""
        return dict(zip(self.names, (float(x) for x in self._weights_tensor())))


def make_weighting(kind: str, names: Sequence[str], **kwargs) -> LossWeighting:
    kind = str(kind).lower()
    if kind == "equal":
        return EqualWeighting(names)
    if kind == "homoscedastic":
        return HomoscedasticWeighting(names, **kwargs)
    if kind == "dwa":
        return DynamicWeightAveraging(names, **kwargs)
    raise ValueError(f"unknown loss weighting {kind!r}; valid: {', '.join(WEIGHTING_NAMES)}")


def trainable_parameters(*modules: Optional[torch.nn.Module]) -> List[torch.nn.Parameter]:
    """All trainable parameters of the given modules (network, loss weighting, ...), each once, for the optimizer."""
    seen, out = set(), []
    for m in modules:
        if m is None:
            continue
        for p in m.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out
