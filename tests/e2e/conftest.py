"""Collects each chaos scenario's counts and prints them at the end of the run."""

from __future__ import annotations

import pytest

RESULTS: list[str] = []


@pytest.fixture
def report() -> list[str]:
    return RESULTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if RESULTS:
        terminalreporter.section("chaos scenario counts")
        for line in RESULTS:
            terminalreporter.write_line(line)
