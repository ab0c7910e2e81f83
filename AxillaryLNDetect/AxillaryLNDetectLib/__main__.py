"""``python -m AxillaryLNDetectLib predict|train|evaluate ...`` (see :mod:`AxillaryLNDetectLib.cli`)."""

import sys

from AxillaryLNDetectLib.cli import main

sys.exit(main())
