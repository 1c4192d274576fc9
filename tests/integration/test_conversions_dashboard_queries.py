"""Every query of the conversions dashboard returns data from a real Prometheus.

The conversions stage runs in-process on the real broker (tests/conversion_harness.py)
with its /metrics served, and a real ``prometheus`` scrapes it every second, while it
works through every kind of record: clicks of two types, identities linked, entries
that become conversions, a backfill of stale entries, unusable match keys, a dead
letter. It is then stopped and started again on an empty disk, so that its stores are
restored from their changelogs. Each dashboard expression, with Grafana's variables
filled in, must return at least one series; the figures behind the main panels are
checked; the alerting rules must evaluate cleanly against the real series, and the
backfill must set off ConversionsStaleEntrySpike.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from processor.entrypoints.conversion_settings import ConversionSettings
from tests.conversion_events import DAY, ident, iso, page
from tests.conversion_harness import ConversionNames, make_names, running_conversions
from tests.harness import produce, sample, wait_for
from tests.promtools import (
    DEPLOY,
    PrometheusServer,
    dashboard,
    dashboard_queries,
    free_port,
    grafana_substitute,
    prometheus,
)

JOB = "clearbit-conversions"
DASHBOARD = DEPLOY / "grafana" / "conversions.json"
RULES = DEPLOY / "prometheus" / "conversions-alerts.yml"
# Wide enough to hold both runs of the stage while the queries run.
RATE_INTERVAL = "2m"
BACKFILL = 120  # stale entries: above the alert's 100


def traffic(run: int, visitors: int, now: float
            ) -> tuple[list[tuple[bytes | None, Any]], list[tuple[bytes | None, Any]]]:
    """(events, identifies) of one run: visitors with clicks who identify, half of them
    entering the audience, identifies with unusable match keys, a dead letter."""
    events: list[tuple[bytes | None, Any]] = [
        (f"a{run}-{i}".encode(), page(f"a{run}-{i}", f"gclid=G{run}x{i}&fbclid=F{run}x{i}",
                                      at=now - 3600)) for i in range(visitors)]
    events.append((b"bad", b"{not json"))
    identifies: list[tuple[bytes | None, Any]] = [
        (f"u{run}-{i}".encode(), ident(f"u{run}-{i}", f"a{run}-{i}", at=now - 1800))
        for i in range(visitors)]
    identifies += [(f"u{run}-{i}".encode(), ident(f"u{run}-{i}", lifecycle="MQL",
                                                  mql_at=iso(now - 60)))
                   for i in range(0, visitors, 2)]
    # Unusable email and phone: their counters appear on first use, so the second run
    # has more of them than the first (a counter that appears at its first value, or
    # restarts and climbs back to it, shows no increase()).
    identifies += [(b"x", ident(f"x{run}-{i}", email="not-an-email", phone="12"))
                   for i in range(run)]
    return events, identifies


def backfill(now: float) -> list[tuple[bytes | None, Any]]:
    return [(f"old-{i}".encode(), ident(f"old-{i}", lifecycle="MQL",
                                        mql_at=iso(now - 30 * DAY)))
            for i in range(BACKFILL)]


@contextlib.contextmanager
def served(settings: ConversionSettings) -> Iterator[Any]:
    """The stage on a thread with its /metrics, /healthz and /readyz served."""
    with running_conversions(settings) as running:
        server = running.assembly.metrics
        assert server is not None
        server.start()
        try:
            yield running.sensor
        finally:
            server.stop()


def unanswered(server: PrometheusServer) -> list[str]:
    empty = []
    for where, expr in dashboard_queries(dashboard(DASHBOARD)):
        query = grafana_substitute(expr, job=JOB, rate_interval=RATE_INTERVAL)
        assert "$" not in query, f"{where}: unknown variable in {query}"
        if not server.query(query):
            empty.append(f"{where}: {query}")
    return empty


def by(server: PrometheusServer, label: str, expr: str) -> dict[str, float]:
    return {s["metric"].get(label, ""): float(s["value"][1]) for s in server.query(expr)}


def test_every_conversions_dashboard_query_returns_data(
        kafka_bootstrap: str, kafka_topics: Callable[..., str], unique_name: str,
        tmp_path: Path) -> None:
    names: ConversionNames = make_names(kafka_topics, unique_name, tmp_path)
    port = free_port()
    now = time.time()
    with prometheus({JOB: f"127.0.0.1:{port}"}, rule_files=[RULES]) as server:
        # The first run: everything but the restores of stores with data in them.
        first = names.settings(kafka_bootstrap, tmp_path / "state-1", metrics_port=port)
        with served(first) as sensor:
            wait_for(lambda: bool(server.query(f'up{{job="{JOB}"}} == 1')), 20,
                     "a first scrape")
            events, identifies = traffic(1, 12, now)
            produce(kafka_bootstrap, names.events, events)
            wait_for(lambda: sample(sensor, "conversions_clicks_captured_total",
                                    type="gclid") >= 12, 30, "the clicks")
            produce(kafka_bootstrap, names.identifies, identifies + backfill(now))
            wait_for(lambda: sample(sensor, "conversions_written_total",
                                    audience="mql_7d") >= 6, 60, "six conversions")
            wait_for(lambda: sample(sensor, "conversions_skipped_total", audience="mql_7d",
                                    reason="stale_entry") >= BACKFILL, 30, "the backfill")
            time.sleep(2)  # scrapes of the final figures

        # The second run, on an empty disk: the stores come back from their changelogs
        # as the first record of each partition arrives. Fewer visitors than the first,
        # so that every counter is seen to restart.
        second = names.settings(kafka_bootstrap, tmp_path / "state-2", metrics_port=port)
        with served(second) as sensor:
            events, identifies = traffic(2, 8, now)
            produce(kafka_bootstrap, names.events, events)
            produce(kafka_bootstrap, names.identifies, identifies)
            wait_for(lambda: sample(sensor, "conversions_written_total",
                                    audience="mql_7d") >= 4, 60, "four more conversions")
            wait_for(lambda: all(sample(sensor, "conversions_restored_records_total",
                                        store=store) > 0 for store in ("visitors", "people")),
                     30, "both stores restored with records")
            # The stores' sizes are reported every few seconds; then scrapes after it.
            wait_for(lambda: sample(sensor, "conversions_state_records", store="people") > 0,
                     20, "the stores' sizes")
            time.sleep(3)

            deadline = time.monotonic() + 20
            empty = unanswered(server)
            while empty and time.monotonic() < deadline:
                time.sleep(1)
                empty = unanswered(server)
            assert not empty, "dashboard queries without data:\n" + "\n".join(empty)

            window = f'{{job="{JOB}"}}[5m]'
            # Lag per partition of every topic the stage consumes: inputs and repartitions.
            lag = server.query(f'conversions_consumer_lag_records{{job="{JOB}"}}')
            internal = second.internal_topics
            topics = {names.events, names.identifies, internal.by_anon, internal.by_person}
            assert {s["metric"]["topic"] for s in lag} == topics
            assert {(s["metric"]["topic"], s["metric"]["partition"]) for s in lag} == {
                (t, str(p)) for t in topics for p in range(names.partitions)}
            read = by(server, "topic", "sum by (topic) (increase("
                                       f"conversions_topic_records_consumed_total{window}))")
            assert set(read) == topics
            assert all(v > 0 for v in read.values()), read
            clicks = by(server, "type", "sum by (type) (increase("
                                        f"conversions_clicks_captured_total{window}))")
            assert clicks["gclid"] > 0
            assert clicks["fbclid"] > 0
            skips = by(server, "reason", "sum by (reason) (increase("
                                         f"conversions_skipped_total{window}))")
            assert skips["stale_entry"] >= BACKFILL * 0.9  # increase() extrapolates
            for metric in ("entries_total", "written_total",
                           "identity_links_total", "match_keys_dropped_total"):
                (total,) = server.query(f"sum(increase(conversions_{metric}{window}))")
                assert float(total["value"][1]) > 0, metric
            restored = by(server, "store", "sum by (store) (increase("
                                           f"conversions_restored_records_total{window}))")
            assert set(restored) == {"visitors", "people"}
            assert all(v > 0 for v in restored.values())
            dead = by(server, "reason", "sum by (reason) (increase(conversions_events_total"
                                        f'{{job="{JOB}", outcome="dead_lettered"}}[5m]))')
            assert dead["not_json"] > 0

            # The $job variable's own query.
            variable = server.api("label/job/values", **{"match[]": "conversions_state_records"})
            assert variable == [JOB]

            # The rules evaluate cleanly against the real series, and the backfill (no
            # `for`) set off its alert.
            wait_for(lambda: all(r.get("lastEvaluation", "").startswith("20")
                                 for g in server.api("rules")["groups"] for r in g["rules"]),
                     10, "every rule evaluated")
            rules = [r for g in server.api("rules")["groups"] for r in g["rules"]]
            assert len(rules) == 10
            assert [r["name"] for r in rules if r["health"] != "ok"] == []
            firing = server.query('ALERTS{alertstate="firing"}')
            assert [(a["metric"]["alertname"], a["metric"]["audience"]) for a in firing] == [
                ("ConversionsStaleEntrySpike", "mql_7d")]
