"""The sender's dashboard and alerts, statically: well-formed, each alert unit-tested
with a case that fires, and every metric they name one the sender exports (or, for
audience entries, the conversions stage). That each query returns data from a real
Prometheus is tests/integration/test_sender_dashboard_queries.py."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.exposition import generate_latest

from processor.adapters.sender_metrics import SenderMetrics
from processor.core.conversions.sending import Destination
from tests.deploy.test_conversions_dashboard import exported_names as stage_names
from tests.promtools import DEPLOY, dashboard_queries, panels, promtool

DASHBOARD = DEPLOY / "grafana" / "sender.json"
RULES = DEPLOY / "prometheus"
ALERTS = "sender-alerts.yml"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
REQUIRED_PANELS = {"Results by destination and status", "Rejected share", "Requests by status",
                   "Request latency", "Batch size", "Conversions pending", "Match keys sent",
                   "Retries and throttling", "Destinations stopped",
                   "Consumer lag per partition", "Commits"}
REQUIRED_ALERTS = {"ConversionsRejectionRate", "ConversionsNothingAccepted",
                   "ConversionsDestinationStopped"}


def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def exported_names() -> set[str]:
    sensor = SenderMetrics([("a", [Destination.META, Destination.GOOGLE])])
    sensor.consumed(1)
    sensor.outcomes({("processed", ""): 1})
    sensor.request("meta", "200", 0.1, 10)
    sensor.retry("meta", "throttled")
    sensor.circuit("meta", 0)
    sensor.sent({("meta", "a", "accepted"): 1})
    sensor.reasons({("meta", "rejected", "meta_100"): 1})
    sensor.match_keys({("meta", "em"): 1})
    sensor.delayed({("google", "click_too_recent"): 1})
    sensor.pending({"meta": 1})
    sensor.stopped("meta")
    sensor.buffered(1, False)
    sensor.produce_error()
    sensor.committed(True, 1.0)
    sensor.lag({("conversions.outbox", 0): 1})
    sensor.state(alive=True, ready=True)
    text = generate_latest(sensor.registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines()
            if line and not line.startswith("#")}


def test_the_dashboard_is_well_formed() -> None:
    doc = document()
    assert doc["uid"] == "clearbit-conversions-sender"
    assert "id" not in doc
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    # A series only the sender exports: the stage's jobs have conversions_ series too.
    assert variables["job"]["query"]["query"] == "label_values(conversions_pending, job)"
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels(doc):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs, panel["title"]
        assert len(refs) == len(set(refs)), panel["title"]
    assert {p["title"] for p in panels(doc)} >= REQUIRED_PANELS


def test_every_query_is_scoped_to_the_job_variable() -> None:
    for where, expr in dashboard_queries(document()):
        selectors = re.findall(r"conversions_[a-z0-9_]+\{([^}]*)\}", expr)
        bare = re.findall(r"conversions_[a-z0-9_]+(?![a-z0-9_{])", expr)
        assert selectors, where
        assert not bare, f"{where}: {bare} without a selector"
        assert all('job=~"$job"' in s for s in selectors), where


def test_every_metric_named_is_exported() -> None:
    queries = " ".join(expr for _, expr in dashboard_queries(document()))
    named = set(re.findall(r"\bconversions_[a-z0-9_]+", queries + (RULES / ALERTS).read_text()))
    # Audience entries are the conversions stage's (ConversionsNothingAccepted compares).
    exported = exported_names() | (stage_names() & {"conversions_entries_total"})
    assert named
    assert named <= exported, named - exported


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((RULES / ALERTS).read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_the_rules_pass_promtool_and_their_unit_tests() -> None:
    checked = promtool("check", "rules", str(RULES / ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "sender-alerts_test.yml", cwd=RULES)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_required_tested_and_described() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert names >= REQUIRED_ALERTS
    tests = yaml.safe_load((RULES / "sender-alerts_test.yml").read_text())["tests"]
    firing = {case["alertname"] for test in tests for case in test["alert_rule_test"]
              if case.get("exp_alerts")}
    assert firing == names
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["description"]


def test_the_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    text = (RULES / ALERTS).read_text()
    wrong, count = re.subn(r"> 0\.05\n", "> 0.5\n", text)
    assert count == 1
    (tmp_path / ALERTS).write_text(wrong)
    shutil.copy(RULES / "sender-alerts_test.yml", tmp_path)
    result = promtool("test", "rules", "sender-alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "ConversionsRejectionRate" in result.stdout + result.stderr
