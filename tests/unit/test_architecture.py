"""The layering rule, enforced: a pure core, adapters at the edge, one composition root.

* ``processor.core`` imports only the standard library, pydantic, and itself.
* The service layer (pipeline, lookups, stage, ports, codec) never imports a
  Kafka, HTTP or metrics library: those live in ``processor.adapters``.
* Nothing in the package reads the environment or builds a client at import
  time; ``processor.entrypoints`` (settings, bootstrap) is where that happens.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "processor"
IO_LIBRARIES = {"confluent_kafka", "httpx", "prometheus_client", "aiohttp", "structlog",
                "fastavro", "requests", "urllib3"}
SERVICE_LAYER = ["stages/enrichment/pipeline.py", "stages/enrichment/lookups.py",
                 "runtime/size_limits.py", "runtime/dead_letters.py",
                 "runtime/loop.py", "runtime/ports.py"]


def imported_roots(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (at any depth in the file)."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module)
    return roots


def core_files() -> list[Path]:
    return sorted((PACKAGE / "core").rglob("*.py"))


def test_the_rule_sees_the_core() -> None:
    assert len(core_files()) >= 10


@pytest.mark.parametrize("path", core_files(), ids=lambda p: p.name)
def test_core_imports_only_stdlib_and_validation(path: Path) -> None:
    for module in imported_roots(path):
        root = module.split(".")[0]
        allowed = (root in sys.stdlib_module_names or root == "pydantic"
                   or module.startswith("processor.core"))
        assert allowed, f"processor/core/{path.name} imports {module}"


@pytest.mark.parametrize("name", SERVICE_LAYER)
def test_service_layer_imports_no_io_library(name: str) -> None:
    for module in imported_roots(PACKAGE / name):
        assert module.split(".")[0] not in IO_LIBRARIES, f"processor/{name} imports {module}"
        assert not module.startswith("processor.adapters"), f"processor/{name} imports {module}"


def test_the_rule_would_catch_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import confluent_kafka\nfrom httpx import AsyncClient\n")
    assert {"confluent_kafka", "httpx"} <= imported_roots(bad)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_no_environment_reads_at_module_level(path: Path) -> None:
    if path.name == "settings.py" or "devkit" in path.parts:
        return
    tree = ast.parse(path.read_text())
    for node in tree.body:  # module level statements only
        text = ast.unparse(node)
        assert "os.environ" not in text, f"{path.name}: {text}"
        assert "getenv" not in text, f"{path.name}: {text}"
