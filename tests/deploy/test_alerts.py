"""The alerting rules: valid for Prometheus, unit-tested, and each alert tested.

``promtool`` is Prometheus' own checker, from Debian's ``prometheus`` package;
the rules' behaviour (fires / does not fire on given series) lives in
``deploy/prometheus/alerts_test.yml`` and is run by ``promtool test rules``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml

from tests.promtools import DEPLOY, promtool

RULES = DEPLOY / "prometheus"
REQUIRED = {"EnrichmentConsumerLagGrowing", "EnrichmentNoProgress", "EnrichmentDeadLetterRate",
            "EnrichmentProviderErrors", "EnrichmentQuotaExhausted", "EnrichmentCircuitOpen"}


def alert_names() -> set[str]:
    groups = yaml.safe_load((RULES / "alerts.yml").read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def test_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(RULES / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", "alerts_test.yml", cwd=RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_prometheus_config_is_valid() -> None:
    result = promtool("check", "config", "prometheus.yml", cwd=RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_required_alert_exists_and_every_alert_is_unit_tested() -> None:
    names = alert_names()
    assert names >= REQUIRED
    tests = yaml.safe_load((RULES / "alerts_test.yml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test.get("alert_rule_test", [])}
    assert tested == names
    # ... and each with a case where it fires.
    firing = {case["alertname"] for test in tests for case in test.get("alert_rule_test", [])
              if case.get("exp_alerts")}
    assert firing == names


def test_every_alert_has_a_severity_and_a_summary() -> None:
    groups = yaml.safe_load((RULES / "alerts.yml").read_text())["groups"]
    for rule in (r for g in groups for r in g["rules"] if "alert" in r):
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["description"]


def test_a_broken_rule_fails_the_check(tmp_path: Path) -> None:
    text = (RULES / "alerts.yml").read_text()
    broken = tmp_path / "alerts.yml"
    broken.write_text(text.replace("sum by (namespace, job, topic) (", "sum by (namespace, job, "
                                   "topic) ((", 1))
    result = promtool("check", "rules", str(broken))
    assert result.returncode != 0


def test_the_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    # Raise the dead-letter threshold from 5% past the 50% the test feeds it: the
    # "fires" case must now fail, or the tests would not be testing the rule.
    text = (RULES / "alerts.yml").read_text()
    wrong, count = re.subn(r"> 0\.05\n", "> 0.6\n", text)
    assert count == 1
    (tmp_path / "alerts.yml").write_text(wrong)
    shutil.copy(RULES / "alerts_test.yml", tmp_path / "alerts_test.yml")
    result = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "EnrichmentDeadLetterRate" in result.stdout + result.stderr
