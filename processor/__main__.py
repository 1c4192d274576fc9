"""``python -m processor``: the same as the ``processor`` console script."""

import sys

from processor.cli import main

sys.exit(main())
