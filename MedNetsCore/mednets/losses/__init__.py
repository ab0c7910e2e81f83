"""Segmentation losses (torch) shared by the SlicerMedNets modules; paper-specific losses build on these.

* :class:`SoftDiceLoss`: soft Dice (linear or squared denominator, per item or batch Dice), equal to
  ``monai.losses.DiceLoss`` for the matching settings.
* :class:`VoxelWeightedCrossEntropyLoss`: cross-entropy with class weights and a per-voxel weight map.
* :class:`WeightedSumLoss`: named weighted sum of loss terms, remembering each term's last value for logging.
* :class:`ComboLoss`: Combo loss (beta-weighted BCE minus smoothed Dice on sigmoid outputs, flattened over the batch),
  with the paper's per-modality presets :data:`COMBO_LOSS_PRESETS`.

Every loss takes ``input`` of shape (B, C, *spatial) and states its target shapes; ``reduction`` is one of
"mean", "sum", "none" (except :class:`ComboLoss`, which is always one scalar).
"""

from __future__ import annotations

from .combined import WeightedSumLoss
from .combo import COMBO_LOSS_PRESETS, ComboLoss
from .cross_entropy import VoxelWeightedCrossEntropyLoss
from .dice import SoftDiceLoss
from .targets import REDUCTIONS, class_indices, one_hot_like
from .registration import BendingEnergyLoss, NCCLoss, WarpedContourDiceLoss, bending_energy, ncc
from .explog import ExpLogDiceLoss, ExpLogLoss, GLIANetLoss, PyramidCrossEntropyLoss, pyramid_weights
from .weighted_dice import WeightedDiceLoss
from .weighting import (DynamicWeightAveraging, EqualWeighting, HomoscedasticWeighting, make_weighting,
                        trainable_parameters)

__all__ = ["SoftDiceLoss", "VoxelWeightedCrossEntropyLoss", "WeightedSumLoss", "ComboLoss", "COMBO_LOSS_PRESETS",
           "REDUCTIONS", "class_indices", "one_hot_like"]
__all__ += ["NCCLoss", "ncc", "BendingEnergyLoss", "bending_energy", "WarpedContourDiceLoss", "EqualWeighting",
            "HomoscedasticWeighting", "DynamicWeightAveraging", "make_weighting", "trainable_parameters"]
__all__ += ["ExpLogDiceLoss", "PyramidCrossEntropyLoss", "ExpLogLoss", "GLIANetLoss", "pyramid_weights"]
__all__ += ["WeightedDiceLoss"]
