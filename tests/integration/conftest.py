"""One schema registry per test session, for the Avro tests.

``SCHEMA_REGISTRY_URL`` when it is set (a real Confluent Schema Registry, say); else the
local Apicurio Registry of ``processor.devkit.registry`` (from Maven Central, run by
``java``), started when the first test asks for it, so runs without Avro tests never pay
for it. Every test uses its own topics, hence its own subjects: tests never see each
other's schemas.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator

import pytest

# Imported before any test module imports confluent_kafka.schema_registry: the adapter
# silences the deprecation warning Authlib raises on that import.
import processor.adapters.avro.registry  # noqa: F401
from processor.devkit.registry import APICURIO_VERSION, LocalRegistry

_LOCAL_REGISTRY = pytest.StashKey[LocalRegistry]()


def _announce(config: pytest.Config, line: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)


@pytest.fixture(scope="session")
def schema_registry(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL to give as ``SCHEMA_REGISTRY_URL``."""
    given = os.environ.get("SCHEMA_REGISTRY_URL")
    if given:
        _announce(request.config, f"schema registry: SCHEMA_REGISTRY_URL={given}")
        yield given
        return
    with LocalRegistry() as registry:
        request.config.stash[_LOCAL_REGISTRY] = registry
        _announce(request.config, f"schema registry: local Apicurio Registry {APICURIO_VERSION} "
                                  f"at {registry.url} (log: {registry.log_path})")
        yield registry.url
        del request.config.stash[_LOCAL_REGISTRY]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None],
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the end of the local registry's log to a failed test that used it."""
    report = yield
    registry = item.config.stash.get(_LOCAL_REGISTRY, None)
    if report.failed and registry is not None and "schema_registry" in getattr(
            item, "fixturenames", ()):
        report.sections.append((f"schema registry log: tail of {registry.log_path}",
                                registry.log_tail()))
    return report
