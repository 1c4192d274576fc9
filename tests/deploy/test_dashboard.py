"""The Grafana dashboard, statically: well-formed, importable and provisionable, and
every metric it (or an alert) names is one the processor exports. That each query
returns data from a real Prometheus is tests/integration/test_dashboard_queries.py."""

from __future__ import annotations

import re

import yaml
from prometheus_client.exposition import generate_latest

from processor.adapters.prometheus import PrometheusSensor
from tests.promtools import DEPLOY, dashboard, dashboard_queries, panels

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
REQUIRED_PANELS = {"Records by outcome", "Dead letters by reason", "Consumer lag per partition",
                   "Consumer lag, total", "Lookup latency", "Cache hit ratio", "Rate limiter",
                   "Circuit breaker", "Quota", "Lookups in flight", "Lookups by status",
                   "Retries by reason", "End-to-end latency", "Commits"}


def exported_names() -> set[str]:
    """Sample names a sensor exports once every hook has been called."""
    sensor = PrometheusSensor()
    sensor.consumed(1)
    sensor.outcomes({("enriched", ""): 1})
    sensor.cache(1, 1, 1)
    sensor.lookup("clearbit", "200", 0.1)
    sensor.retry("clearbit", "500")
    sensor.rate_limited_wait(0.1)
    sensor.circuit("clearbit", 0)
    sensor.quota_exhausted("clearbit", False)
    sensor.lookups_in_flight(1)
    sensor.buffered(1, False)
    sensor.end_to_end([0.1])
    sensor.produce_error()
    sensor.committed(True, 1.0)
    sensor.lag({("in", 0): 1})
    sensor.state(alive=True, ready=True)
    text = generate_latest(sensor.registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines()
            if line and not line.startswith("#")}


def test_the_dashboard_is_well_formed() -> None:
    document = dashboard()
    assert document["uid"] == "clearbit-enrichment"
    assert "id" not in document  # provisioning and import assign their own
    variables = {v["name"]: v for v in document["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["job"]["datasource"] == DATASOURCE
    ids = [p["id"] for p in document["panels"]] + [p["id"] for p in panels(document)
                                                   if p not in document["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels(document):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs, panel["title"]
        assert len(refs) == len(set(refs)), panel["title"]
        assert all(t["datasource"] == DATASOURCE and t["expr"].strip()
                   for t in panel["targets"]), panel["title"]


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    titles = {p["title"] for p in panels(dashboard())}
    assert titles >= REQUIRED_PANELS


def test_every_query_is_scoped_to_the_job_variable() -> None:
    for where, expr in dashboard_queries(dashboard()):
        selectors = re.findall(r"enrichment_[a-z0-9_]+\{([^}]*)\}", expr)
        bare = re.findall(r"enrichment_[a-z0-9_]+(?![a-z0-9_{])", expr)
        assert selectors, where
        assert not bare, f"{where}: {bare} without a selector"
        assert all('job=~"$job"' in s for s in selectors), where


def test_every_metric_named_in_the_dashboard_and_the_alerts_is_exported() -> None:
    exported = exported_names()
    rules = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    queries = " ".join(expr for _, expr in dashboard_queries(dashboard()))
    named = set(re.findall(r"\benrichment_[a-z0-9_]+", queries + rules))
    assert named
    assert named <= exported, named - exported


def test_grafana_provisioning_files_are_well_formed() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    for path in provisioning.rglob("*.yaml"):
        assert yaml.safe_load(path.read_text())["apiVersion"] == 1, path
