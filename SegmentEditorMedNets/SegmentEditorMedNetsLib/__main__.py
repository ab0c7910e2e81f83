"""``python -m SegmentEditorMedNetsLib segment ...`` (see :mod:`SegmentEditorMedNetsLib.cli`)."""

import sys

from SegmentEditorMedNetsLib.cli import main

sys.exit(main())
