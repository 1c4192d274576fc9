"""Every query of the Grafana dashboard returns data from a real Prometheus.

A real ``prometheus`` (Debian's package) scrapes the stage's /metrics every
second while the stage works through every kind of record (enriched, skipped,
dead letters, a 404, a 422, provider errors that are retried, requests held by
the rate limiter); then each dashboard expression, with Grafana's variables
filled in as Grafana would fill them, goes through Prometheus' query API and
must return at least one series. The alerting rules are loaded too, and must
all evaluate without error against the real series.
"""

from __future__ import annotations

import time
from typing import Any

from processor.devkit.clearbit_server import ClearbitServer
from processor.devkit.samples import identify, person_email
from tests.harness import Names, caught_up, produce, running_stage, wait_for
from tests.promtools import (
    DEPLOY,
    PrometheusServer,
    dashboard,
    dashboard_queries,
    free_port,
    grafana_substitute,
    prometheus,
)

JOB = "clearbit-enrichment"
# Grafana's $__rate_interval for a 1 s scrape would be 4 s; a wider window keeps the
# short burst of test traffic inside it while the queries run.
RATE_INTERVAL = "30s"


def traffic() -> list[tuple[bytes | None, Any]]:
    items: list[tuple[bytes | None, Any]] = []
    items += [(f"u{i}".encode(), identify(person_email(i % 40), user_id=f"u{i}"))
              for i in range(120)]  # 40 people, each seen 3 times: cache hits
    items += [(b"k", identify(f"notfound{i}@initech.example", user_id="n")) for i in range(5)]
    items += [(b"k", identify(f"invalid{i}@initech.example", user_id="r")) for i in range(5)]
    items += [(b"k", identify(f"error{i}@initech.example", user_id="e")) for i in range(3)]
    items += [(b"k", identify(None, user_id="s")) for _ in range(5)]
    items += [(b"k", {"type": "track", "userId": "t", "event": "Clicked"}) for _ in range(5)]
    items += [(b"k", b"{not json") for _ in range(5)]
    return items


def unanswered(server: PrometheusServer) -> list[str]:
    queries = dashboard_queries(dashboard())
    empty = []
    for where, expr in queries:
        query = grafana_substitute(expr, job=JOB, rate_interval=RATE_INTERVAL)
        assert "$" not in query, f"{where}: unknown variable in {query}"
        if not server.query(query):
            empty.append(f"{where}: {query}")
    return empty


def test_every_dashboard_query_returns_data(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer) -> None:
    port = free_port()
    settings = names.settings(kafka_bootstrap, clearbit.url, metrics_port=port,
                              rate_limit_per_minute=3000, max_attempts=2,
                              breaker_threshold=1000, lag_interval=0.5)
    items = traffic()
    with (prometheus({JOB: f"127.0.0.1:{port}"},
                     rule_files=[DEPLOY / "prometheus" / "alerts.yml"]) as server,
          running_stage(settings)):
        wait_for(lambda: bool(server.query(f'up{{job="{JOB}"}} == 1')), 20, "a first scrape")
        produce(kafka_bootstrap, names.input, items)
        wait_for(lambda: caught_up(kafka_bootstrap, names.group, names.input, 3), 60,
                 "every record committed")
        # Scrapes after the last record, so that every rate has two points to go on.
        time.sleep(3)
        deadline = time.monotonic() + 20
        empty = unanswered(server)
        while empty and time.monotonic() < deadline:
            time.sleep(1)
            empty = unanswered(server)
        assert not empty, "dashboard queries without data:\n" + "\n".join(empty)

        # The figures behind the main panels, not just their presence.
        outcomes = {s["metric"]["outcome"]: float(s["value"][1]) for s in server.query(
            f'sum by (outcome) (increase(enrichment_events_total{{job="{JOB}"}}[1m]))')}
        assert set(outcomes) == {"enriched", "skipped", "dead_lettered"}
        assert all(v > 0 for v in outcomes.values())
        lag = server.query(f'enrichment_consumer_lag_records{{job="{JOB}"}}')
        assert sorted(s["metric"]["partition"] for s in lag) == ["0", "1", "2"]
        statuses = {s["metric"]["status"] for s in server.query(
            f'enrichment_lookups_total{{job="{JOB}"}}')}
        assert {"200", "404", "422", "500"} <= statuses

        # The $job variable's own query.
        variable = server.api("label/job/values", **{"match[]": "enrichment_build_info"})
        assert variable == [JOB]

        # The alerting rules evaluate cleanly against the real series.
        wait_for(lambda: all(r.get("lastEvaluation", "").startswith("20")
                             for g in server.api("rules")["groups"] for r in g["rules"]),
                 10, "every rule evaluated")
        rules = [r for g in server.api("rules")["groups"] for r in g["rules"]]
        assert len(rules) == 10
        assert [r["name"] for r in rules if r["health"] != "ok"] == []
