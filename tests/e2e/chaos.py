"""Whole processes for chaos tests: start, kill -9, SIGTERM; and an audit of what came out
(here for the enrichment stage; ``tests.conversion_harness`` audits the conversions stage).

Every input carries a unique ``messageId`` (``m-<n>``) and a key; the audit maps
each output back to its input (the output's messageId is derived from the
input's) and each dead letter by its original bytes, then counts, per input:
lost (neither an output nor a dead letter), duplicated (more than one output)
and per-key order violations.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from processor.core.enrichment.events import output_message_id
from processor.devkit.samples import identify, person_email
from tests.conversion_harness import ConversionNames
from tests.harness import API_KEY, Names, read_all


def chaos_inputs(count: int, keys: int = 200, emails: int = 2000,
                 invalid_every: int = 50) -> list[tuple[bytes, dict[str, Any]]]:
    """``count`` events over ``keys`` keys; every ``invalid_every``-th is dead-lettered."""
    items = []
    for n in range(count):
        key = f"k{n % keys}"
        email = (f"broken{n}@@nowhere" if n % invalid_every == invalid_every - 1
                 else person_email(n % emails))
        items.append((key.encode(), identify(email, user_id=key, message_id=f"m-{n}",
                                             seq=n)))
    return items


def stage_env(bootstrap: str, **extra: str) -> dict[str, str]:
    """What every stage process gets: this environment without any stage setting, the
    broker, JSON logs, no metrics port, and a group session short enough for chaos."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PROCESSOR_", "CLEARBIT_", "KAFKA_"))}
    env.update({
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PROCESSOR_METRICS_PORT": "0",
        "PROCESSOR_LOG_FORMAT": "json", "PROCESSOR_LOG_LEVEL": "INFO",
        # A killed member is noticed in 6 s instead of librdkafka's default 45 s.
        "PROCESSOR_KAFKA_CONSUMER_SESSION_TIMEOUT_MS": "6000",
        "PROCESSOR_KAFKA_CONSUMER_HEARTBEAT_INTERVAL_MS": "1000",
    })
    env.update(extra)
    return env


def processor_env(bootstrap: str, names: Names, base_url: str, **extra: str) -> dict[str, str]:
    """``processor run``'s environment."""
    return stage_env(bootstrap, **{
        "PROCESSOR_INPUT_TOPIC": names.input, "PROCESSOR_OUTPUT_TOPIC": names.output,
        "PROCESSOR_DLQ_TOPIC": names.dlq, "PROCESSOR_GROUP_ID": names.group,
        "CLEARBIT_API_KEY": API_KEY, "CLEARBIT_BASE_URL": base_url,
        # The local server has no rate limit; Clearbit's 600/min would make each
        # scenario wait on the limiter rather than exercise the failures.
        "CLEARBIT_RATE_LIMIT_PER_MINUTE": "0", **extra})


def conversions_env(bootstrap: str, names: ConversionNames, state_dir: Path,
                    **extra: str) -> dict[str, str]:
    """``processor conversions``'s environment: the test's topics, group and audiences,
    its own state directory, a settle delay of a second."""
    return stage_env(bootstrap, **{
        "PROCESSOR_CONV_EVENT_TOPICS": names.events,
        "PROCESSOR_CONV_IDENTIFY_TOPICS": names.identifies,
        "PROCESSOR_CONV_TOPIC_PREFIX": names.prefix, "PROCESSOR_CONV_OUTPUT_TOPIC": names.output,
        "PROCESSOR_CONV_DLQ_TOPIC": names.dlq, "PROCESSOR_CONV_GROUP_ID": names.group,
        "PROCESSOR_CONV_AUDIENCES_FILE": str(names.audiences),
        "PROCESSOR_CONV_STATE_DIR": str(state_dir), "PROCESSOR_CONV_SETTLE_DELAY": "1s",
        **extra})


@dataclass
class Processor:
    """A stage (``processor run``, or ``command``) as a child process; its stderr goes to
    a file (never a pipe that nobody reads, which would block a chatty process)."""

    env: dict[str, str]
    command: tuple[str, ...] = ("run",)  # the processor's subcommand
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="chaos-")))
    process: subprocess.Popen[bytes] | None = None
    runs: int = 0

    def start(self) -> None:
        self.runs += 1
        log = (self.log_dir / f"run-{self.runs}.log").open("wb")
        self.process = subprocess.Popen([sys.executable, "-m", "processor", *self.command],
                                        env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))

    def run_log(self) -> str:
        """The log of the current run only."""
        return (self.log_dir / f"run-{self.runs}.log").read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float) -> None:
        """Until the current run has logged ``text``; fails if it exits first."""
        deadline = time.monotonic() + timeout
        while text not in self.run_log():
            if not self.alive() or time.monotonic() > deadline:
                raise AssertionError(f"run {self.runs} did not log {text!r} within "
                                     f"{timeout:.0f}s:\n{self.run_log()[-3000:]}")
            time.sleep(0.1)

    def stop_quietly(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait(30)


@dataclass
class Audit:
    inputs: int
    enriched: int
    dead_lettered: int
    lost: list[str]
    duplicated_outputs: int
    order_violations: int

    def line(self, label: str) -> str:
        return (f"[chaos] {label}: inputs={self.inputs} enriched={self.enriched} "
                f"dead_lettered={self.dead_lettered} lost={len(self.lost)} "
                f"duplicates={self.duplicated_outputs} order_violations={self.order_violations}")


def audit(bootstrap: str, names: Names, items: list[tuple[bytes, dict[str, Any]]],
          read_committed: bool = True, timeout: float = 120,
          dead_emails: frozenset[str] = frozenset()) -> Audit:
    """Read the output and dead-letter topics and account for every input. Invalid emails
    (``@@``) and ``dead_emails`` are the ones that may be dead-lettered."""
    by_output_id = {output_message_id(e["messageId"], ""): e for _, e in items}
    expected_dead = sum(1 for _, e in items if "@@" in e["traits"]["email"]
                        or e["traits"]["email"] in dead_emails)
    messages = read_all(bootstrap, [names.output, names.dlq], read_committed=read_committed,
                        timeout=timeout)
    outputs: Counter[str] = Counter()
    order: dict[str, list[int]] = defaultdict(list)
    dead: set[str] = set()
    for message in messages:
        event = orjson.loads(message.value())
        if message.topic() == names.output:
            source = by_output_id[event["messageId"]]
            outputs[source["messageId"]] += 1
            order[source["userId"]].append(source["seq"])
        else:
            dead.add(event["messageId"])
    seen = set(outputs) | dead
    lost = [e["messageId"] for _, e in items if e["messageId"] not in seen]
    violations = 0
    for sequence in order.values():
        first_seen: list[int] = []
        done: set[int] = set()
        for seq in sequence:
            if seq not in done:
                done.add(seq)
                first_seen.append(seq)
        violations += sum(1 for a, b in itertools.pairwise(first_seen) if b < a)
    assert len(dead) <= expected_dead
    return Audit(len(items), len(outputs), len(dead), lost,
                 sum(outputs.values()) - len(outputs), violations)
