"""The MedNets Segment Editor effect's pure code (no Slicer, no Qt): regions (NumPy), network adapters (per module) and
the command line ``python -m SegmentEditorMedNetsLib segment`` the effect runs as its child process. The effect itself
is ``../SegmentEditorMedNetsEffect/SegmentEditorEffect.py``."""
