"""The MedNets Segment Editor effect: regions (NumPy), network adapters (per module) and the effect (Slicer)."""
