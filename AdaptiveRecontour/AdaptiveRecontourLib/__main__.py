"""``python -m AdaptiveRecontourLib``: see :mod:`AdaptiveRecontourLib.cli`."""

import sys

from .cli import main

sys.exit(main())
