"""OrganCombo networks: the Combo-loss paper's proposed encoder-decoder and its 3D U-Net and V-Net baselines.

Taghanaki et al., "Combo loss: Handling input and output imbalance in multi-organ segmentation", Computerized Medical
Imaging and Graphics 75, 2019 (Table 2, Fig. 1, section 3).

Every network maps (B, in_channels, *spatial) to per-organ sigmoid probabilities (B, out_channels, *spatial) (no
background channel), has a ``logits(x)`` method for losses working on logits, ``output_activation = "sigmoid"``,
``spatial_dims`` 2 or 3 and ``size_factor`` (input spatial sizes must be multiples of it; ValueError otherwise).

Importing this package is cheap: the network modules (and torch) are imported by :func:`build_model`.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

from mednets.networks import NetworkCatalogue

__all__ = ["MODEL_NAMES", "PAPER_DEFAULTS", "PAPER_TABLE2_PARAMETERS", "build_model"]

#: Names accepted by :func:`build_model`.
MODEL_NAMES: Tuple[str, ...] = ("combo_net", "unet3d", "vnet")

#: The paper's PET configuration: one PET channel in, one sigmoid channel per organ (brain, heart, left kidney,
#: right kidney, bladder), 3D.
PAPER_DEFAULTS: Dict[str, int] = {"in_channels": 1, "out_channels": 5, "spatial_dims": 3}

#: Parameter counts printed in the paper's Table 2 (what the networks here give is in NETWORKS_NOTES.md).
PAPER_TABLE2_PARAMETERS: Dict[str, int] = {"combo_net": 13_997_827, "unet3d": 12_226_243, "vnet": 84_938_241}

#: The networks, each in its own file (mednets.models.NetworkCatalogue imports them on first use).
NETWORKS = NetworkCatalogue("OrganCombo", __name__, {"combo_net": ("combo_net", "ComboNet"),
                                                    "unet3d": ("unet3d", "UNet3D"), "vnet": ("vnet", "VNet")},
                            PAPER_DEFAULTS)


def build_model(name: str, **overrides: Any):
    """Build one of :data:`MODEL_NAMES` (a ``torch.nn.Module``), Glorot-initialised, in training mode.

    Defaults are :data:`PAPER_DEFAULTS` (PET: 1 channel in, 5 organs out, 3D); ``overrides`` go to the network's
    constructor, e.g. ``in_channels``, ``out_channels``, ``spatial_dims``, ``base_channels`` (widths),
    ``num_levels`` (combo_net, unet3d), ``convolutions`` (vnet), ``final_norm``.

    Raises:
        ValueError: ``name`` is not one of :data:`MODEL_NAMES`.
        TypeError: an override the network does not take.
    """
    return NETWORKS.build(name, **overrides)
