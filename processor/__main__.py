"""``python -m processor``: the same as the ``processor`` console script."""

import sys

# Its import installs the signal handlers before any heavier module is imported.
from processor.entrypoints.console import main

sys.exit(main())
