"""The command lines of the devkit's fake servers, run as their users run them."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def help_text(module: str) -> str:
    done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=30, check=True)
    return done.stdout


@dataclasses.dataclass
class Served:
    url: str = ""
    stderr: str = ""


@contextmanager
def serving(module: str, *args: str) -> Iterator[Served]:
    """``python -m module --port 0 *args`` until the block ends, then SIGTERM; the process
    must have printed its base URL first and must exit 0 (``stderr`` is kept)."""
    process = subprocess.Popen([sys.executable, "-m", module, "--port", "0", *args], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    served = Served()
    try:
        assert process.stdout is not None
        served.url = process.stdout.readline().strip()
        assert served.url.startswith("http://127.0.0.1:")
        yield served
    finally:
        process.send_signal(signal.SIGTERM)
        _, served.stderr = process.communicate(timeout=10)
    assert process.returncode == 0, served.stderr
