"""``python -m AneurysmSegLib predict|train|evaluate ...`` (see :mod:`AneurysmSegLib.cli`)."""

import sys

from AneurysmSegLib.cli import main

sys.exit(main())
