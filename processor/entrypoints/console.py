"""The ``processor`` console script's entry point: SIGTERM and SIGINT are caught first.

The script pip generates imports this module and calls ``main``. Its first
instructions install handlers that only remember a signal, so a SIGTERM while
the command is still importing pydantic, the settings or confluent-kafka (half a
second and more) is a clean stop, exit 0, rather than death by the signal (143).
``main`` then hands what arrived to the real ``StopRequest`` and runs the command.

Nothing but ``signal`` (built into the interpreter) is imported before the
handlers are in place, and ``processor/__init__.py`` and
``processor/entrypoints/__init__.py`` import nothing.
"""

import signal

_received: list[int] = []


def _remember(signum: int, _frame: object) -> None:
    _received.append(signum)


# On purpose at import time: this is the first code the script runs.
signal.signal(signal.SIGTERM, _remember)
signal.signal(signal.SIGINT, _remember)


def main() -> int:
    """Run the command; the signals received so far count as stop requests."""
    from processor.runtime.signals import StopRequest  # noqa: PLC0415 - after the handlers

    stop = StopRequest()
    stop.install()  # first, so that nothing arriving from now on is missed
    for _ in tuple(_received):
        stop.request()
    from processor.entrypoints.cli import main as command  # noqa: PLC0415 - the heavy part

    return command(stop=stop)
