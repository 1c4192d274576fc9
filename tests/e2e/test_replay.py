"""``processor replay-dlq``: after an outage, dead letters go back and get enriched."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

from processor.devkit.clearbit_server import ClearbitServer
from processor.devkit.samples import identify, person_email
from tests.e2e.chaos import processor_env
from tests.harness import Names, headers_of, produce, read, running_stage


def replay(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "processor", "replay-dlq", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_replay_after_an_outage_enriches_what_was_dead_lettered(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer) -> None:
    down = [person_email(i) for i in range(5)]
    for email in down:
        clearbit.set_rule(email, 500)
    produce(kafka_bootstrap, names.input,
            [(f"u{i}".encode(), identify(e, user_id=f"u{i}", message_id=f"down-{i}"))
             for i, e in enumerate(down)]
            + [(b"bad", identify(f"bad{i}@@x", user_id="bad")) for i in range(3)])
    settings = names.settings(kafka_bootstrap, clearbit.url, max_attempts=2,
                              breaker_threshold=100)
    with running_stage(settings):
        letters = read(kafka_bootstrap, [names.dlq], until=lambda m: len(m) >= 8)
    reasons = sorted(headers_of(m)["__enrichment.errors.reason"] for m in letters)
    assert reasons == ["invalid_email"] * 3 + ["retries_exhausted"] * 5

    clearbit.clear_rules()  # the provider is back
    env = processor_env(kafka_bootstrap, names, clearbit.url)
    assert "would move 5 dead letter(s)" in replay(env, "--reason", "retries_exhausted",
                                                   "--dry-run")
    assert "moved 5 dead letter(s)" in replay(env, "--reason", "retries_exhausted")
    assert "moved 0 dead letter(s)" in replay(env, "--reason", "retries_exhausted")

    with running_stage(settings):
        out = read(kafka_bootstrap, [names.output], until=lambda m: len(m) >= 5)
    assert len(out) == 5
    everything = read(kafka_bootstrap, [names.input], until=lambda m: len(m) >= 13, settle=1)
    keys = Counter(m.key() for m in everything)
    # The five are in the input twice now (original, replayed); the invalid ones once.
    assert keys == {**{f"u{i}".encode(): 2 for i in range(5)}, b"bad": 3}
    assert all(not k.startswith("__") for m in everything for k, _ in (m.headers() or []))
