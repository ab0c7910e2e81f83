"""``python -m NucleiMaskyloLib predict|train|evaluate ...`` (see :mod:`NucleiMaskyloLib.cli`)."""

import sys

from NucleiMaskyloLib.cli import main

sys.exit(main())
