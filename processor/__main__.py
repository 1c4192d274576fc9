"""``python -m processor``: the same as the ``processor`` console script."""

import sys

from processor.runtime.signals import StopRequest

# Installed before the command's heavier imports, so that a SIGTERM while the
# process is still starting is a clean stop (exit 0), not a kill.
_stop = StopRequest()
_stop.install()

from processor.entrypoints.cli import main  # noqa: E402 - after the signal handlers, on purpose

sys.exit(main(stop=_stop))
