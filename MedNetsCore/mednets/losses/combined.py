"""A weighted sum of named loss terms that remembers each term's last value (for logging)."""

from __future__ import annotations

import math
from typing import Dict, Mapping, Sequence, Tuple

import torch

__all__ = ["WeightedSumLoss"]


class WeightedSumLoss(torch.nn.Module):
    """``total = sum_i weight_i * term_i(input, target[, *extras])`` over named loss terms.

    Example (the Dice + cross-entropy compound of nnU-Net, with a voxel weight map for the cross-entropy)::

        loss = WeightedSumLoss(
            {"dice": (SoftDiceLoss(activation="softmax"), 0.8), "ce": (VoxelWeightedCrossEntropyLoss(), 0.2)},
            extras_to=("ce",),
        )
        total = loss(logits, labels, weight_map)   # the dice term gets (logits, labels) only
        loss.last_values                           # {"dice": 0.41, "ce": 0.73}, unweighted

    Args:
        terms: name -> (loss module, weight >= 0), called in this order. Each module must return a scalar.
        extras_to: names of the terms that also receive the extra positional arguments of :meth:`forward` (e.g. a
            weight map); the others are called with ``(input, target)`` only.

    Attributes:
        weights: name -> weight.
        last_terms: name -> the term's last unweighted value, detached (no device synchronisation).
    """

    def __init__(self, terms: Mapping[str, Tuple[torch.nn.Module, float]], extras_to: Sequence[str] = ()) -> None:
        super().__init__()
        if not terms:
            raise ValueError("WeightedSumLoss needs at least one term")
        for name, term in terms.items():
            if not isinstance(name, str) or not name or "." in name:
                raise ValueError(f"term names must be non-empty strings without '.', got {name!r}")
            if not (isinstance(term, (tuple, list)) and len(term) == 2 and callable(term[0])):
                raise TypeError(f"term {name!r} must be a (loss module, weight) pair, got {term!r}")
            if not (math.isfinite(float(term[1])) and float(term[1]) >= 0):
                raise ValueError(f"weight of term {name!r} must be finite and >= 0, got {term[1]}")
        unknown = [name for name in extras_to if name not in terms]
        if unknown:
            raise ValueError(f"extras_to names unknown terms {unknown}; terms are {list(terms)}")
        self.terms = torch.nn.ModuleDict({name: term for name, (term, _) in terms.items()})
        self.weights: Dict[str, float] = {name: float(weight) for name, (_, weight) in terms.items()}
        self.extras_to = tuple(extras_to)
        self.last_terms: Dict[str, torch.Tensor] = {}

    def forward(self, input: torch.Tensor, target: torch.Tensor, *extras: torch.Tensor) -> torch.Tensor:
        total = None
        values: Dict[str, torch.Tensor] = {}
        for name, term in self.terms.items():
            value = term(input, target, *extras) if name in self.extras_to else term(input, target)
            if value.ndim != 0:
                raise ValueError(f"term {name!r} returned shape {tuple(value.shape)}, expected a scalar "
                                 f"(use reduction='mean' or 'sum')")
            values[name] = value.detach()
            weighted = self.weights[name] * value
            total = weighted if total is None else total + weighted
        self.last_terms = values
        return total

    @property
    def last_values(self) -> Dict[str, float]:
        """The last unweighted term values as Python floats (synchronises with the device)."""
        return {name: float(value) for name, value in self.last_terms.items()}

    def extra_repr(self) -> str:
        return f"weights={self.weights}, extras_to={self.extras_to}"
