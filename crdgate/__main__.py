"""``python -m crdgate``: the ``crdgate`` command (crdgate/cli.py)."""

import sys

from crdgate.cli import main

sys.exit(main())
