"""30 MB answers against ``processor run`` as a process: refused at the cap, and the
process's peak resident memory (its own, from the kernel) stays low, with both clients."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from processor.devkit.clearbit_server import ClearbitServer
from processor.devkit.samples import identify, person_email
from tests.e2e.chaos import processor_env
from tests.harness import Names, caught_up, produce, read, wait_for

PEAK_RSS_LIMIT_MB = 250
THIRTY_MB = 30_000_000


class PeakRss(threading.Thread):
    """The process's own peak resident set (``VmHWM``), sampled until it exits.

    Not ``wait4``'s ``ru_maxrss``: Linux counts in it the memory of the process that
    forked it (the test runner, which builds the 30 MB answers), before the exec."""

    def __init__(self, pid: int) -> None:
        super().__init__(name="peak-rss", daemon=True)
        self.status = Path(f"/proc/{pid}/status")
        self.kib = 0

    def run(self) -> None:
        while True:
            try:
                text = self.status.read_text()
            except (FileNotFoundError, ProcessLookupError):
                return
            found = [int(line.split()[1]) for line in text.splitlines()
                     if line.startswith("VmHWM:")]
            if not found:  # a zombie: its memory is gone, its peak already read
                return
            self.kib = max(self.kib, found[0])
            time.sleep(0.02)


@pytest.mark.parametrize("client", ["aiohttp", "httpx"])
def test_thirty_megabyte_answers_keep_the_peak_rss_under_250_mb(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer, client: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Declared by its Content-Length, streamed without one, and a gzip bomb (30 kB that
    # decode to 30 MB): the last two can only be refused by counting what is read.
    clearbit.set_rule("declared@initech.example", 200, size=THIRTY_MB)
    clearbit.set_rule("streamed@initech.example", 200, size=THIRTY_MB, chunked=True)
    clearbit.set_rule("bomb@initech.example", 200, size=THIRTY_MB, encoding="gzip")
    poison = ["declared@initech.example", "streamed@initech.example", "bomb@initech.example"]
    items = [(f"k{i}".encode(), identify(person_email(i), user_id=f"u{i}"))
             for i in range(300)]
    for n, email in enumerate(poison * 3):  # three events each, among the others
        items.insert(30 * (n + 1), (b"poison", identify(email, user_id="p")))
    produce(kafka_bootstrap, names.input, items)
    env = processor_env(kafka_bootstrap, names, clearbit.url, PROCESSOR_HTTP_CLIENT=client,
                        PROCESSOR_COMMIT_INTERVAL="200ms")
    process = subprocess.Popen([sys.executable, "-m", "processor", "run"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = PeakRss(process.pid)
    peak.start()
    try:
        wait_for(lambda: caught_up(kafka_bootstrap, names.group, names.input, 3), 120,
                 "the processor to commit every input")
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    finally:
        process.kill()
        peak.join()
    peak_mb = peak.kib / 1024
    with capsys.disabled():
        print(f"\n[memory] {client}: peak RSS {peak_mb:.1f} MB with 9 answers of 30 MB")
    assert process.returncode == 0
    assert peak_mb < PEAK_RSS_LIMIT_MB
    letters = read(kafka_bootstrap, [names.dlq], until=lambda m: len(m) >= 9)
    assert len(letters) == 9
    counts = clearbit.stats()["by_email_count"]
    # Refused, never retried: once per email, or per event when not coalesced.
    assert all(1 <= counts[email] <= 3 for email in poison)
