"""The conversions stage's alerting rules: valid for Prometheus, and each alert
unit-tested in ``deploy/prometheus/conversions-alerts_test.yml`` (``promtool test
rules``), including that the sender's series, which share the stage's names, never
set one off. That the rules evaluate against the real stage's series is
tests/integration/test_conversions_dashboard_queries.py."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.promtools import DEPLOY, promtool

RULES = DEPLOY / "prometheus"
FILE = RULES / "conversions-alerts.yml"
TESTS = RULES / "conversions-alerts_test.yml"
REQUIRED = {"ConversionsAbsent", "ConversionsNoReadyPod", "ConversionsPodNotReady",
            "ConversionsConsumerLagGrowing", "ConversionsStaleEntrySpike",
            "ConversionsEntriesStopped", "ConversionsRestoreSlow", "ConversionsCommitsFailing"}


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(FILE.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alert_names() -> set[str]:
    return {rule["alert"] for rule in rules() if "alert" in rule}


def run_unit_tests(folder: Path) -> tuple[int, str]:
    result = promtool("test", "rules", TESTS.name, cwd=folder)
    return result.returncode, result.stdout + result.stderr


def test_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rules_pass_their_unit_tests() -> None:
    code, output = run_unit_tests(RULES)
    assert code == 0, output


def test_every_required_alert_exists_and_fires_in_a_unit_test() -> None:
    names = alert_names()
    assert names == REQUIRED
    tests = yaml.safe_load(TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    assert {case["alertname"] for case in cases if case.get("exp_alerts")} == names


def test_every_alert_has_a_severity_and_a_summary() -> None:
    for rule in (r for r in rules() if "alert" in r):
        # info: worth knowing, not a problem by itself (a backfill happened).
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["description"]


def test_prometheus_of_compose_loads_these_rules() -> None:
    config = yaml.safe_load((RULES / "prometheus.yml").read_text())
    assert FILE.name in config["rule_files"]
    result = promtool("check", "config", "prometheus.yml", cwd=RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_rule_fails_the_check(tmp_path: Path) -> None:
    broken = tmp_path / FILE.name
    broken.write_text(FILE.read_text().replace("group by (namespace, job, instance) (",
                                               "group by (namespace, job, instance) ((", 1))
    assert promtool("check", "rules", str(broken)).returncode != 0


MUTATIONS = {
    # Without the stage's targets, the sender's failing commits would alert too.
    "ConversionsCommitsFailing": ('''            rate(conversions_commits_total{result="error"}[5m])
            and on (namespace, job, instance) conversions:stage_targets
''', '''            rate(conversions_commits_total{result="error"}[5m])
'''),
    # A spike ten times the rule's: the backfill case must no longer fire.
    "ConversionsStaleEntrySpike": ('[15m])) > 100\n', '[15m])) > 1000\n'),
    # Entries within the last 2 hours rather than none: the quiet case would fire.
    "ConversionsEntriesStopped": ('[2h])) == 0\n', '[2h])) >= 0\n'),
}


@pytest.mark.parametrize("alert", list(MUTATIONS))
def test_the_unit_tests_catch_a_wrong_rule(alert: str, tmp_path: Path) -> None:
    old, new = MUTATIONS[alert]
    text = FILE.read_text()
    assert text.count(old) == 1, old
    (tmp_path / FILE.name).write_text(text.replace(old, new))
    shutil.copy(TESTS, tmp_path / TESTS.name)
    code, output = run_unit_tests(tmp_path)
    assert code != 0
    assert alert in output


def test_the_readme_lists_every_alert() -> None:
    readme = (DEPLOY.parent / "README.md").read_text()
    section = readme[readme.index("### The conversions stage"):]
    assert {name for name in alert_names() if f"| `{name}` |" not in section} == set()
