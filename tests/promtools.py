"""Prometheus' own tools for the tests: ``promtool`` and a real ``prometheus`` server.

Both come from Debian's ``prometheus`` package, which ``make test`` installs. A
missing binary fails the test with the command that installs it: a check of the
dashboard or the alerts that quietly skipped would prove nothing.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

INSTALL = "apt-get install -y --no-install-recommends prometheus"
REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"


def binary(name: str) -> str:
    """The path of ``prometheus`` or ``promtool``; fails the test when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not installed: it comes with Debian's prometheus package "
                    f"(`{INSTALL}`, which `make test` runs)", pytrace=False)
    return path


def promtool(*args: str, cwd: Path | None = None, stdin: bytes | None = None,
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary("promtool"), *args], cwd=cwd, capture_output=True,
                          text=stdin is None, input=stdin, timeout=120, check=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PrometheusServer:
    """A running ``prometheus`` on loopback, and its HTTP API."""

    url: str
    log: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant query's result (a vector's samples); raises on a query error."""
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = answer.json()
        if body.get("status") != "success":
            raise AssertionError(f"{expr!r}: {body.get('errorType')}: {body.get('error')}")
        result = body["data"]["result"]
        return result if body["data"]["resultType"] == "vector" else [{"value": result}]

    def api(self, path: str, **params: Any) -> Any:
        answer = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        answer.raise_for_status()
        return answer.json()["data"]


@contextlib.contextmanager
def prometheus(targets: dict[str, str], *, scrape_interval: str = "1s",
               rule_files: list[Path] | None = None) -> Iterator[PrometheusServer]:
    """Prometheus scraping ``targets`` (job name -> host:port) every ``scrape_interval``,
    evaluating ``rule_files`` as often; stopped (SIGTERM) on exit."""
    exe = binary("prometheus")
    with tempfile.TemporaryDirectory(prefix="prometheus-") as tmp:
        folder = Path(tmp)
        rules = []
        for path in rule_files or []:
            shutil.copy(path, folder / path.name)
            rules.append(path.name)
        config = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval,
                       "scrape_timeout": scrape_interval},
            "rule_files": rules,
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}
                               for job, target in targets.items()],
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        log = folder / "prometheus.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [exe, f"--config.file={folder / 'prometheus.yml'}",
                 f"--storage.tsdb.path={folder / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
                 "--web.enable-lifecycle"],
                stdout=out, stderr=subprocess.STDOUT, cwd=folder)
        server = PrometheusServer(f"http://127.0.0.1:{port}", log)
        try:
            _wait_ready(server, process)
            yield server
        except BaseException:
            print(f"--- prometheus log ({log}) ---\n{log.read_text(errors='replace')[-4000:]}")
            raise
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def _wait_ready(server: PrometheusServer, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited with {process.returncode}:\n"
                                 f"{server.log.read_text(errors='replace')}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/-/ready", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError("prometheus did not become ready within 30 s")


# --- the Grafana dashboard's queries ---------------------------------------------------

DASHBOARD = DEPLOY / "grafana" / "dashboard.json"


def dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    """A dashboard's JSON: the enrichment stage's unless ``path`` names another."""
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def panels(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included, rows themselves left out."""
    found = []
    for panel in document["panels"]:
        if panel["type"] == "row":
            found += panel.get("panels", [])
        else:
            found.append(panel)
    return found


def dashboard_queries(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title / refId, PromQL) of every query in the dashboard."""
    return [(f"{panel['title']} / {target['refId']}", target["expr"])
            for panel in panels(document) for target in panel.get("targets", [])]


def grafana_regex_escape(value: str) -> str:
    """How Grafana's Prometheus data source escapes a multi-value variable's value for a
    regex matcher: regex metacharacters get a backslash, doubled for PromQL's string."""
    value = value.replace("\\", "\\\\\\\\")
    return re.sub(r"[$^*{}\[\]'+?.()|]", lambda m: "\\\\" + m.group(0), value)


def grafana_substitute(expr: str, *, job: str, rate_interval: str) -> str:
    """``expr`` as Grafana sends it with ``$job`` set to one job and the given rate
    interval. An unknown variable is left in place, so the query fails loudly."""
    escaped = grafana_regex_escape(job)
    for variable, value in (("$__rate_interval", rate_interval), ("$__interval", rate_interval),
                            ("${job}", escaped), ("$job", escaped)):
        expr = expr.replace(variable, value)
    return expr
