"""``processor run`` as its own process, as an operator runs it: signals and exit codes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from processor.devkit.clearbit_server import ClearbitServer
from processor.devkit.samples import identify, person_email
from tests.e2e.chaos import processor_env
from tests.harness import Names, caught_up, produce, read, wait_for


def environment(bootstrap: str, names: Names, base_url: str, **extra: str) -> dict[str, str]:
    """The chaos suite's environment, committing every 200 ms."""
    return processor_env(bootstrap, names, base_url,
                         **{"PROCESSOR_COMMIT_INTERVAL": "200ms", **extra})


def start(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "processor", "run"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigterm_drains_commits_and_exits_zero(kafka_bootstrap: str, names: Names,
                                               clearbit: ClearbitServer) -> None:
    produce(kafka_bootstrap, names.input, [
        (f"u{i}".encode(), identify(person_email(i), user_id=f"u{i}")) for i in range(200)])
    clearbit.set_latency(200)  # lookups are in flight when the signal comes
    process = start(environment(kafka_bootstrap, names, clearbit.url,
                                PROCESSOR_SHUTDOWN_TIMEOUT="20s"))
    try:
        read(kafka_bootstrap, [names.output], until=lambda m: len(m) >= 20, timeout=60)
        sent_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, stderr[-2000:]
    assert time.monotonic() - sent_at < 25
    assert "stopped cleanly" in stderr
    # What was finished is committed; what was not will be read again, never lost.
    out = read(kafka_bootstrap, [names.output], until=lambda m: False, timeout=3)
    ids = [m.value() for m in out]
    assert len(ids) == len(set(ids))


def test_refused_key_exits_3_with_a_clear_message(kafka_bootstrap: str, names: Names,
                                                  clearbit: ClearbitServer) -> None:
    produce(kafka_bootstrap, names.input, [(b"k", identify(person_email(1), user_id="u"))])
    env = environment(kafka_bootstrap, names, clearbit.url, CLEARBIT_API_KEY="sk_revoked_key")
    process = start(env)
    try:
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 3
    assert "refused the API key" in stderr
    assert "sk_revoked" not in stderr
    assert not caught_up(kafka_bootstrap, names.group, names.input, 3)


def test_restart_after_fixing_the_key_processes_the_same_records(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer) -> None:
    produce(kafka_bootstrap, names.input, [
        (f"u{i}".encode(), identify(person_email(i), user_id=f"u{i}")) for i in range(5)])
    bad = start(environment(kafka_bootstrap, names, clearbit.url,
                            CLEARBIT_API_KEY="sk_revoked_key"))
    bad.communicate(timeout=60)
    assert bad.returncode == 3
    good = start(environment(kafka_bootstrap, names, clearbit.url))
    try:
        out = read(kafka_bootstrap, [names.output], until=lambda m: len(m) >= 5, timeout=60)
        wait_for(lambda: caught_up(kafka_bootstrap, names.group, names.input, 3), 30,
                 "the restarted processor to commit")
    finally:
        good.send_signal(signal.SIGTERM)
        good.communicate(timeout=30)
    assert len(out) == 5
    assert good.returncode == 0


def test_missing_topic_is_a_configuration_error(kafka_bootstrap: str, names: Names,
                                                clearbit: ClearbitServer) -> None:
    env = environment(kafka_bootstrap, names, clearbit.url,
                      PROCESSOR_OUTPUT_TOPIC="no-such-topic-anywhere")
    done = subprocess.run([sys.executable, "-m", "processor", "run"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "PROCESSOR_OUTPUT_TOPIC: topic 'no-such-topic-anywhere' does not exist" in done.stderr
    assert "Traceback" not in done.stderr


def test_unreachable_cluster_is_reported_not_retried_forever(names: Names,
                                                             clearbit: ClearbitServer) -> None:
    env = environment("127.0.0.1:9", names, clearbit.url,  # nothing listens on port 9
                      PROCESSOR_STARTUP_TIMEOUT="5s")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "processor", "run"], env=env,
                          capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 3
    assert "could not reach Kafka at KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9" in done.stderr
    assert time.monotonic() - started < 30


def test_sigterm_while_starting_is_a_clean_stop(kafka_bootstrap: str, names: Names,
                                                clearbit: ClearbitServer) -> None:
    process = subprocess.Popen([sys.executable, "-m", "processor", "run"],
                               env=environment(kafka_bootstrap, names, clearbit.url),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)  # still importing or connecting
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-2000:]


HEAVY_LIBRARIES = ("pydantic_core", "confluent_kafka", "orjson")


def _start_of(pid: int) -> tuple[bool, bool]:
    """(a heavy library is loaded, SIGTERM has a handler of its own) for ``pid``; the
    memory map is read first, so "loaded" and then "no handler" means the library came
    before the handler."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False, False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    handled = bool(int(caught.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    return any(name in maps for name in HEAVY_LIBRARIES), handled


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.5])
def test_the_console_script_stops_cleanly_on_sigterm_at_any_moment_of_its_start(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer, delay: float) -> None:
    # The script the image runs, as pip generated it: not `python -m processor`.
    script = Path(sys.executable).with_name("processor")
    assert script.exists(), f"{script}: run `make install`"
    started = time.monotonic()
    process = subprocess.Popen([str(script), "run"],
                               env=environment(kafka_bootstrap, names, clearbit.url),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # Until the script's first instruction the interpreter itself is starting (tens of
        # ms, more on a busy machine) and nothing of ours can catch a signal. From that
        # instruction on, a handler must be there before any heavy import begins.
        deadline = started + 10
        heavy, handled = _start_of(process.pid)
        while not handled and time.monotonic() < deadline:
            assert not heavy, "a heavy library was loaded before the SIGTERM handler"
            time.sleep(0.001)
            heavy, handled = _start_of(process.pid)
        handled_at = time.monotonic() - started
        assert handled, "no SIGTERM handler after 10 s"
        time.sleep(max(0.0, started + delay - time.monotonic()))
        sent_at = time.monotonic() - started
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, (f"handler at {handled_at:.3f}s, signal at {sent_at:.3f}s: "
                                     f"{stderr[-2000:]}")
    assert "Traceback" not in stderr
