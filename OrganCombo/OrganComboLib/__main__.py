"""``python -m OrganComboLib predict|train|evaluate ...`` (see :mod:`OrganComboLib.cli`)."""

import sys

from OrganComboLib.cli import main

sys.exit(main())
