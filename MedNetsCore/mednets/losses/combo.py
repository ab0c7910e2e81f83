"""Combo loss (Taghanaki et al.): a beta-weighted binary cross-entropy minus a smoothed Dice, on sigmoid outputs."""

from __future__ import annotations

import math
from typing import Dict, Tuple

import torch
import torch.nn.functional as F

__all__ = ["ComboLoss", "COMBO_LOSS_PRESETS", "combo_loss_terms", "multilabel_target"]

#: (alpha, beta) the paper found best per modality (section 3): beta < 0.5 penalises false positives more (PET: noise
#: and normal uptake all over the body), beta > 0.5 false negatives (MRI, ultrasound: unclear borders).
COMBO_LOSS_PRESETS: Dict[str, Dict[str, float]] = {
    "pet": dict(alpha=0.5, beta=0.4),
    "mri": dict(alpha=0.5, beta=0.6),
    "ultrasound": dict(alpha=0.5, beta=0.7),
}

#: Other spellings accepted by :meth:`ComboLoss.for_modality` (DICOM modality codes and PhantomCase.modality values).
_MODALITY_ALIASES = {"pt": "pet", "mr": "mri", "us": "ultrasound"}


def multilabel_target(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-channel (multi-label, no background channel) target of ``input``'s shape and floating dtype.

    ``target`` may be:

    * masks of ``input``'s shape (B, C, *spatial): bool, integer or floating, values in [0, 1] (soft labels allowed);
    * an integer label map (B, *spatial) or (B, 1, *spatial) with values in [0, C]: 0 is background and label
      ``v > 0`` switches on channel ``v - 1`` (this is what :class:`~mednets.training.sampling.PatchSampler` batches
      hold). For C = 1 a {0, 1} label map and a mask mean the same.

    Raises:
        ValueError: any other shape, or values out of range (checked with one device synchronisation).
    """
    spatial = tuple(input.shape[2:])
    if target.shape == input.shape:
        target = target.to(input.dtype)
        if target.numel():
            low, high = torch.stack([target.min(), target.max()]).tolist()
            if low < 0 or high > 1:
                raise ValueError(f"per-channel target masks must lie in [0, 1], got values in [{low:g}, {high:g}]")
        return target
    integer = not (target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool)
    if target.ndim == input.ndim and target.shape[1] == 1:
        target = target[:, 0]
    if not integer or tuple(target.shape) != tuple(input.shape[:1]) + spatial:
        raise ValueError(f"target must be per-channel masks of the input's shape {tuple(input.shape)} or an integer "
                         f"label map (B, *spatial) = {tuple(input.shape[:1]) + spatial} (or with a channel axis of 1), "
                         f"got shape {tuple(target.shape)} and dtype {target.dtype}")
    channels = input.shape[1]
    if target.numel():
        low, high = torch.stack([target.min(), target.max()]).tolist()
        if low < 0 or high > channels:
            raise ValueError(f"label map values must lie in [0, {channels}] for {channels} output channel(s) (0 = "
                             f"background, label v -> channel v - 1), got values in [{low}, {high}]")
    one_hot = F.one_hot(target.long(), channels + 1)[..., 1:]
    return one_hot.movedim(-1, 1).to(input.dtype)


def combo_loss_terms(input: torch.Tensor, target: torch.Tensor, beta: float = 0.5, smooth: float = 1.0,
                     eps: float = 1e-7, from_logits: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """The two terms of the Combo loss, each one scalar over the flattened batch, channels and voxels.

    Returns ``(weighted_bce, dice)`` with (N = number of elements, p = probabilities, t = target)::

        weighted_bce = -(1/N) sum_i [beta * t_i ln p_i + (1 - beta) * (1 - t_i) ln(1 - p_i)]
        dice         = (2 sum_i p_i t_i + smooth) / (sum_i p_i + sum_i t_i + smooth)

    With ``from_logits=False`` the logs use ``clamp(p, eps, 1 - eps)`` (the Dice term uses ``p`` unclamped); with
    ``from_logits=True`` they are ``logsigmoid(x)`` and ``logsigmoid(-x)`` of the logits ``x`` (no clamping) and the
    Dice uses ``sigmoid(x)``. Half-precision inputs are computed in float32. ``input`` and ``target`` must already
    have the same shape (see :func:`multilabel_target`); arguments are not validated here (see :class:`ComboLoss`).
    """
    if input.dtype not in (torch.float32, torch.float64):
        input = input.float()
    target = target.to(input.dtype)
    if from_logits:
        probabilities = torch.sigmoid(input)
        log_p, log_not_p = F.logsigmoid(input), F.logsigmoid(-input)
    else:
        probabilities = input
        clamped = input.clamp(eps, 1.0 - eps)
        log_p, log_not_p = torch.log(clamped), torch.log1p(-clamped)
    weighted_bce = -(beta * target * log_p + (1.0 - beta) * (1.0 - target) * log_not_p).mean()
    intersection = torch.sum(probabilities * target)
    dice = (2.0 * intersection + smooth) / (torch.sum(probabilities) + torch.sum(target) + smooth)
    return weighted_bce, dice


def _check_unit_interval(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return value


class ComboLoss(torch.nn.Module):
    """Combo loss: a beta-weighted binary cross-entropy (output imbalance) minus a smoothed Dice (input imbalance).

    Over ALL elements of the batch at once (batch, channels and voxels flattened into one vector of N values, as the
    paper computes it on "the flattened volumes ... of size W x H x D x C"), with probabilities p and target t::

        L_wBCE = -(1/N) sum_i [beta * t_i ln p_i + (1 - beta) * (1 - t_i) ln(1 - p_i)]
        DSC    = (2 sum_i p_i t_i + S) / (sum_i p_i + sum_i t_i + S)          S = smooth (add-one smoothing)
        L      = alpha * L_wBCE - (1 - alpha) * DSC

    ``alpha`` weighs cross-entropy against Dice; ``beta`` < 0.5 weighs the ``(1 - t) ln(1 - p)`` term more, so false
    positives cost more than false negatives (and beta > 0.5 the reverse). L lies in [-(1 - alpha), inf): it is
    negative near a perfect prediction, which is fine for gradient descent. Each channel is an independent sigmoid
    output (multi-label, no background channel), as in the paper.

    Source: Taghanaki, Zheng, Zhou, Georgescu, Sharma, Xu, Comaniciu and Hamarneh, "Combo loss: Handling input and
    output imbalance in multi-organ segmentation", Computerized Medical Imaging and Graphics 75, 2019, eq. (5) and
    section 2. Notes on the sources:

    * eq. (5) as printed reads ``beta (t_i - ln p_i)``; that is a typo for ``beta t_i ln p_i`` (the text and eq. (1)
      make the cross-entropy terms products). We implement the formula above.
    * the authors' public Keras code (github.com/asgsaeid/ComboLoss, combo_loss.py) differs from the paper: in its
      latest version the leading minus covers only the ``t ln p`` term, so the ``(1 - t) ln(1 - p)`` term enters with
      the wrong sign (false positives lower that term); earlier versions multiplied the ``(1 - t)`` term by
      ``beta * (1 - beta)``. We do not reproduce either.
    * eq. (5) writes the Dice term as a sum over the K classes, but the paper computes it on the flattened multi-label
      volume (one Dice over all channels), which is what we do; a per-class Dice sum is not implemented.
    * section 5.2 mentions beta = 0.9 for MRI/ultrasound, section 3 and Fig. 7 give 0.6 (MRI) and 0.7 (ultrasound) as
      the best values; :data:`COMBO_LOSS_PRESETS` follows section 3.

    There is no ``reduction`` argument: the loss is always ONE scalar, because the Dice term is global over the
    flattened batch (a per-voxel or per-item "none" reduction would not be the Combo loss). The batch therefore
    enters the Dice as a whole (batch Dice), like the paper's flattening.

    Args:
        alpha: weight of the cross-entropy term, in [0, 1] (1: weighted BCE only; 0: minus the smoothed Dice only).
        beta: weight of the ``t ln p`` (false-negative) term, in [0, 1]; ``1 - beta`` weighs the false-positive term.
        smooth: S, added to numerator and denominator of the Dice (paper: add-one smoothing, S = 1); must be >= 0.
            With S = 0 the Dice of an all-zero target and prediction is 0/0.
        eps: with ``from_logits=False`` the probabilities are clamped to ``[eps, 1 - eps]`` before the logs (default
            1e-7, the Keras ``K.epsilon()`` the authors clipped with), so each log term is at most ``-ln(eps)`` ~ 16.1
            per element and finite even for p = 0 or 1; a clamped element passes no cross-entropy gradient. Must lie
            in (0, 0.5).
        from_logits: ``input`` holds logits ``x``; then ``p = sigmoid(x)``, ``ln p = logsigmoid(x)`` and
            ``ln(1 - p) = logsigmoid(-x)`` are used without clamping. This equals the probability version applied to
            ``sigmoid(x)`` (to rounding) whenever ``sigmoid(x)`` lies in ``[eps, 1 - eps]``, i.e.
            ``|x| <= ln((1 - eps) / eps)`` ~ 16.1 for eps = 1e-7; beyond that the logits version keeps growing
            linearly in ``|x|`` (and keeps its gradient) where the clamped one saturates. Recommended for training
            (numerically stable, no sigmoid in the network).

    Shapes:
        input: (B, C, *spatial) probabilities in [0, 1] (or logits with ``from_logits``), at least one spatial axis;
            float16/bfloat16 inputs (autocast) are computed in float32.
        target: per-channel masks of ``input``'s shape in {0, 1} (soft labels in [0, 1] are accepted), or an integer
            label map (B, *spatial) / (B, 1, *spatial) with values in [0, C] where label v > 0 is channel v - 1 (how
            :class:`~mednets.training.Trainer` batches labels); see :func:`multilabel_target`.
        output: a scalar. ``forward(input, target)`` matches the Trainer's ``loss_fn(model_output, targets)``.

    Attributes:
        last_terms: ``{"wbce": L_wBCE, "dice": DSC}`` of the last call, detached (for logging).

    Example::

        loss_fn = ComboLoss.for_modality("pet", from_logits=True)   # alpha = 0.5, beta = 0.4
        loss = loss_fn(network(patches), labels)                     # labels: (B, *spatial) ints 0..5, 5 channels
    """

    def __init__(self, alpha: float = 0.5, beta: float = 0.5, smooth: float = 1.0, eps: float = 1e-7,
                 from_logits: bool = False) -> None:
        super().__init__()
        self.alpha = _check_unit_interval("alpha", alpha)
        self.beta = _check_unit_interval("beta", beta)
        smooth = float(smooth)
        if not (math.isfinite(smooth) and smooth >= 0.0):
            raise ValueError(f"smooth must be finite and >= 0, got {smooth}")
        eps = float(eps)
        if not (0.0 < eps < 0.5):
            raise ValueError(f"eps must lie in (0, 0.5), got {eps}")
        self.smooth = smooth
        self.eps = eps
        self.from_logits = bool(from_logits)
        self.last_terms: Dict[str, torch.Tensor] = {}

    @classmethod
    def for_modality(cls, name: str, **overrides) -> "ComboLoss":
        """The loss with the paper's (alpha, beta) for ``name`` ("pet", "mri" or "ultrasound"; also "PT"/"PET",
        "MR", "US", case-insensitive), other arguments (``smooth``, ``eps``, ``from_logits``, or alpha/beta
        themselves) from ``overrides``."""
        key = str(name).strip().lower()
        key = _MODALITY_ALIASES.get(key, key)
        if key not in COMBO_LOSS_PRESETS:
            raise ValueError(f"no Combo loss preset for modality {name!r}; known: {sorted(COMBO_LOSS_PRESETS)} "
                             f"(or {sorted(_MODALITY_ALIASES)})")
        return cls(**{**COMBO_LOSS_PRESETS[key], **overrides})

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if input.ndim < 3:
            raise ValueError(f"input must have shape (B, C, *spatial) with at least one spatial axis, "
                             f"got {tuple(input.shape)}")
        if input.numel() == 0:
            raise ValueError(f"input is empty, shape {tuple(input.shape)}")
        target = multilabel_target(input, target)
        if not self.from_logits:
            low, high = torch.stack([input.min(), input.max()]).tolist()
            if low < 0 or high > 1:
                raise ValueError(f"input must hold probabilities in [0, 1], got values in [{low:.4g}, {high:.4g}]; "
                                 f"pass from_logits=True for raw network outputs")
        weighted_bce, dice = combo_loss_terms(input, target, self.beta, self.smooth, self.eps, self.from_logits)
        self.last_terms = {"wbce": weighted_bce.detach(), "dice": dice.detach()}
        return self.alpha * weighted_bce - (1.0 - self.alpha) * dice

    @property
    def last_values(self) -> Dict[str, float]:
        """The last terms as Python floats (synchronises with the device)."""
        return {name: float(value) for name, value in self.last_terms.items()}

    def extra_repr(self) -> str:
        return (f"alpha={self.alpha}, beta={self.beta}, smooth={self.smooth}, eps={self.eps}, "
                f"from_logits={self.from_logits}")
