"""The conversions stage's Grafana dashboard, statically: well-formed, provisioned, and
every metric it (or one of its alerts) names is one the stage exports. That each query
returns data from a real Prometheus scraping the real stage is
tests/integration/test_conversions_dashboard_queries.py."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from processor.adapters.conversion_metrics import ConversionMetrics
from processor.adapters.runtime_metrics import RuntimeMetrics
from tests.promtools import DEPLOY, dashboard, dashboard_queries, panels

DASHBOARD = DEPLOY / "grafana" / "conversions.json"
PROVISIONING = DEPLOY / "grafana" / "provisioning"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
REQUIRED_PANELS = {"Records by topic", "Clicks captured by type", "Identity links",
                   "Entries by audience", "Skips by audience and reason",
                   "Stale entries (backfills)", "Conversions written by audience",
                   "State records per store", "Restore time per store",
                   "Consumer lag per topic and partition", "Commits", "Pods"}


def _names(registry: CollectorRegistry) -> set[str]:
    text = generate_latest(registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines()
            if line and not line.startswith("#")}


def exported_names() -> set[str]:
    """Sample names the stage's sensor exports once every hook has been called."""
    sensor = ConversionMetrics(["mql_7d"], ["visitors", "people"])
    sensor.consumed(1)
    sensor.outcomes({("routed", ""): 1})
    sensor.buffered(1, False)
    sensor.end_to_end([0.1])
    sensor.produce_error()
    sensor.dead_letters_trimmed({"not_json": 1})
    sensor.committed(True, 1.0)
    sensor.lag({("in", 0): 1})
    sensor.state(alive=True, ready=True)
    sensor.records({"in": 1})
    sensor.clicks_captured({"gclid": 1})
    sensor.identity_links(1)
    sensor.entries({"mql_7d": 1})
    sensor.skipped({("mql_7d", "stale_entry"): 1})
    sensor.match_keys_dropped({("meta", "invalid_phone"): 1})
    sensor.conversions_written({"mql_7d": 1})
    sensor.restored("people", 10, 0.5)
    sensor.state_records("people", 10)
    return _names(sensor.registry)


def shared_names() -> set[str]:
    """What every stage's runtime exports: the sender has these under the same prefix."""
    return _names(RuntimeMetrics("conversions", [("dead_lettered", "not_json")]).registry)


def test_the_dashboard_is_well_formed() -> None:
    document = dashboard(DASHBOARD)
    assert document["uid"] == "clearbit-conversions"
    assert document["uid"] != dashboard()["uid"]
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


def test_the_job_variable_offers_only_the_stages_jobs() -> None:
    job = {v["name"]: v for v in dashboard(DASHBOARD)["templating"]["list"]}["job"]
    match = re.fullmatch(r"label_values\((\w+), job\)", job["query"]["query"])
    assert match
    assert job["definition"] == job["query"]["query"]
    # A series the sender does not export, so its jobs are not offered...
    assert match[1] in exported_names() - shared_names()
    # ... and "All" is the list of those jobs, not a regex that matches the sender's too.
    assert job["includeAll"] is True
    assert "allValue" not in job


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    titles = {p["title"] for p in panels(dashboard(DASHBOARD))}
    assert titles >= REQUIRED_PANELS


def test_every_query_is_scoped_to_the_job_variable() -> None:
    for where, expr in dashboard_queries(dashboard(DASHBOARD)):
        selectors = re.findall(r"conversions_[a-z0-9_]+\{([^}]*)\}", expr)
        bare = re.findall(r"conversions_[a-z0-9_]+(?![a-z0-9_{])", expr)
        assert selectors, where
        assert not bare, f"{where}: {bare} without a selector"
        assert all('job=~"$job"' in s for s in selectors), where


def test_every_metric_named_in_the_dashboard_and_the_alerts_is_exported() -> None:
    exported = exported_names()
    rules = (DEPLOY / "prometheus" / "conversions-alerts.yml").read_text()
    queries = " ".join(expr for _, expr in dashboard_queries(dashboard(DASHBOARD)))
    named = set(re.findall(r"\bconversions_[a-z0-9_]+", queries + rules))
    assert named
    assert named <= exported, named - exported
    # Each of the stage's own metrics is on the dashboard (the histogram by its parts).
    shown = {re.sub(r"_(sum|count|bucket)$", "", name) for name in named}
    own = {re.sub(r"_(sum|count|bucket)$", "", name) for name in exported - shared_names()}
    assert own <= shown, own - shown


def test_grafana_provisions_it_in_a_folder_of_its_own() -> None:
    providers = {p.name: yaml.safe_load(p.read_text()) for p in
                 (PROVISIONING / "dashboards").glob("*.yaml")}
    assert all(document["apiVersion"] == 1 for document in providers.values())
    (ours,) = providers["conversions.yaml"]["providers"]
    (theirs,) = providers["enrichment.yaml"]["providers"]
    path, other = Path(ours["options"]["path"]), Path(theirs["options"]["path"])
    # Neither inside the other: a provider also reads its folder's subfolders.
    assert not path.is_relative_to(other)
    assert not other.is_relative_to(path)
    assert ours["folder"] != theirs["folder"]
    assert ours["name"] != theirs["name"]
    # deploy/compose.yaml mounts the dashboard into that folder.
    grafana = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    assert Path(mounts["./grafana/conversions.json"]).parent == path


def test_the_readme_lists_every_metric_of_the_stage() -> None:
    readme = (DEPLOY.parent / "README.md").read_text()
    section = readme[readme.index("### The conversions stage"):]
    documented = {re.sub(r"_(sum|count|bucket)$", "", name) for name in exported_names()}
    assert {name for name in documented if f"`{name}" not in section} == set()
