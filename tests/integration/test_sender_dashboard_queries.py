"""Every query of the sender's dashboard returns data from a real Prometheus.

A real ``prometheus`` scrapes the sender's /metrics every second while it sends every
kind of result (accepted, rejected, skipped, waiting for Google's click age) through
throttling and a transient error; then each dashboard expression, with Grafana's
variables filled in, must return at least one series, and the alerting rules must
evaluate without error against the real series.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from processor.devkit.google_server import GoogleServer
from processor.devkit.meta_server import MetaServer
from tests.deploy.test_sender_monitoring import document
from tests.harness import produce, wait_for
from tests.promtools import (
    DEPLOY,
    PrometheusServer,
    dashboard_queries,
    free_port,
    grafana_substitute,
    prometheus,
)
from tests.senders import conversion, make_names, outbox_items, results, running_sender

JOB = "clearbit-conversions-sender"
RATE_INTERVAL = "30s"


def unanswered(server: PrometheusServer) -> list[str]:
    empty = []
    for where, expr in dashboard_queries(document()):
        query = grafana_substitute(expr, job=JOB, rate_interval=RATE_INTERVAL)
        assert "$" not in query, f"{where}: unknown variable in {query}"
        if not server.query(query):
            empty.append(f"{where}: {query}")
    return empty


def test_every_sender_dashboard_query_returns_data(
        kafka_bootstrap: str, kafka_topics: Callable[..., str], unique_name: str,
        tmp_path: Path, meta: MetaServer, google: GoogleServer) -> None:
    names = make_names(kafka_topics, unique_name, tmp_path)
    port = free_port()
    records = [conversion(i) for i in range(30)]
    records.append(conversion(30, "meta_7d", entry_ts=int(time.time()) - 8 * 86_400))
    meta.fail(400, code=100, error_subcode=2804001, event_ids=[records[5]["conversion_id"]])
    google.fail(500, api="datamanager", times=1)
    settings = names.settings(kafka_bootstrap, meta, google, metrics_port=port,
                              metrics_host="127.0.0.1", google_click_min_age=8.0)
    rules = DEPLOY / "prometheus" / "sender-alerts.yml"
    with (prometheus({JOB: f"127.0.0.1:{port}"}, rule_files=[rules]) as server,
          running_sender(settings)):
        wait_for(lambda: bool(server.query(f'up{{job="{JOB}"}} == 1')), 20, "a first scrape")
        # Three whose click is too young for Google: they wait on the delay topic.
        records += [conversion(i, "google_30d", salt="young", click_age=0) for i in range(3)]
        meta.throttle(3)
        produce(kafka_bootstrap, names.outbox, outbox_items(records))
        results(kafka_bootstrap, names, until=lambda r: len(r.audit) >= 64, timeout=90)
        time.sleep(3)
        deadline = time.monotonic() + 20
        empty = unanswered(server)
        while empty and time.monotonic() < deadline:
            time.sleep(1)
            empty = unanswered(server)
        assert not empty, "dashboard queries without data:\n" + "\n".join(empty)

        statuses = {(s["metric"]["destination"], s["metric"]["status"]) for s in server.query(
            f'sum by (destination, status) (conversions_sent_total{{job="{JOB}"}}) > 0')}
        assert statuses == {("meta", "accepted"), ("meta", "rejected"), ("meta", "skipped"),
                            ("google", "accepted")}
        retried = {s["metric"]["reason"] for s in server.query(
            f'sum by (reason) (conversions_send_retries_total{{job="{JOB}"}}) > 0')}
        assert retried == {"throttled", "transient"}
        assert server.api("label/job/values", **{"match[]": "conversions_pending"}) == [JOB]

        wait_for(lambda: all(r.get("lastEvaluation", "").startswith("20")
                             for g in server.api("rules")["groups"] for r in g["rules"]),
                 10, "every rule evaluated")
        evaluated = [r for g in server.api("rules")["groups"] for r in g["rules"]]
        assert len(evaluated) == 4
        assert [r["name"] for r in evaluated if r["health"] != "ok"] == []
