"""mednets: the shared library of the SlicerMedNets 3D Slicer extension.

Image I/O and MRML conversion, resampling, sliding-window inference, device choice, checkpoints, the training engine,
losses, metrics and synthetic phantoms used by the five SlicerMedNets modules. Importing ``mednets`` is cheap and never
touches the network; submodules are imported on demand (``import mednets.metrics``). Only ``mednets.mrml`` imports
Slicer/MRML.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
