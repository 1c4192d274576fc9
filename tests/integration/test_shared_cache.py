"""The cache in a compacted topic: a restart, or another replica, pays for nothing twice."""

from __future__ import annotations

import time
from collections.abc import Callable

from processor.devkit.clearbit_server import ClearbitServer
from processor.devkit.samples import identify, person_email
from tests.harness import Names, caught_up, produce, read, running_stage, wait_for

COMPACTED = {"cleanup.policy": "compact"}


def test_a_restarted_processor_rereading_its_input_makes_zero_lookups(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer,
        kafka_topics: Callable[..., str]) -> None:
    cache_topic = kafka_topics("cache", 3, COMPACTED)
    emails = [person_email(i) for i in range(40)] + [f"notfound{i}@initech.example"
                                                    for i in range(10)]
    produce(kafka_bootstrap, names.input,
            [(f"u{i}".encode(), identify(e, user_id=f"u{i}")) for i, e in enumerate(emails)])
    first = names.settings(kafka_bootstrap, clearbit.url, cache_topic=cache_topic)
    with running_stage(first):
        read(kafka_bootstrap, [names.output], until=lambda m: len(m) >= 40)
        wait_for(lambda: caught_up(kafka_bootstrap, names.group, names.input, 3), 30, "commits")
    paid = clearbit.stats()["total"]
    assert paid == 50

    # A new group re-reads the whole input from the beginning, in a new process state.
    again = names.settings(kafka_bootstrap, clearbit.url, cache_topic=cache_topic,
                           group_id=names.group + "-again")
    with running_stage(again):
        out = read(kafka_bootstrap, [names.output], until=lambda m: len(m) >= 80)
        wait_for(lambda: caught_up(kafka_bootstrap, names.group + "-again", names.input, 3),
                 30, "commits")
    assert len(out) == 80
    assert clearbit.stats()["total"] == paid  # zero paid lookups after the restart


def test_a_second_replica_learns_from_the_first_while_both_run(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer,
        kafka_topics: Callable[..., str]) -> None:
    cache_topic = kafka_topics("cache", 1, COMPACTED)
    other_input = kafka_topics("in2", 1)
    emails = [person_email(i) for i in range(20)]
    produce(kafka_bootstrap, names.input,
            [(b"k", identify(e, user_id="u")) for e in emails])
    a = names.settings(kafka_bootstrap, clearbit.url, cache_topic=cache_topic)
    b = names.settings(kafka_bootstrap, clearbit.url, cache_topic=cache_topic,
                       input_topic=other_input, group_id=names.group + "-b")
    with running_stage(a), running_stage(b):
        read(kafka_bootstrap, [names.output], until=lambda m: len(m) >= 20)
        wait_for(lambda: clearbit.stats()["total"] == 20, 10, "A's lookups")
        # B starts seeing the same people only now: it must not pay for them again.
        time.sleep(2)  # the follower polls the cache topic every half second
        produce(kafka_bootstrap, other_input, [(b"k", identify(e, user_id="u")) for e in emails])
        read(kafka_bootstrap, [names.output], until=lambda m: len(m) >= 40)
    assert clearbit.stats()["total"] == 20
