"""The layering rules, enforced.

The import rules are import-linter contracts in pyproject.toml, checked by
``make lint``; the tests here prove that the contracts bite (a scratch copy
with a rule broken on purpose fails the lint) and check what import-linter
cannot see: nobody reads the environment at import time.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "processor"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_scratch_copy(tmp_path: Path, path: str, line: str) -> subprocess.CompletedProcess[str]:
    """lint-imports on a copy of the package where ``path`` gained ``line``."""
    shutil.copytree(PACKAGE, tmp_path / "processor",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    broken = tmp_path / "processor" / path
    broken.write_text(broken.read_text() + f"\n{line}\n")
    return subprocess.run([str(LINT_IMPORTS), "--no-logo", "--no-cache"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})


def test_the_contracts_hold_on_the_real_tree() -> None:
    done = subprocess.run([str(LINT_IMPORTS), "--no-logo", "--no-cache"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("path", "line", "contract"), [
    ("core/clock.py", "import confluent_kafka", "the core and the runtime import no Kafka"),
    ("runtime/state.py", "import rocksdict", "the core and the runtime import no Kafka"),
    ("core/clock.py", "import processor.adapters.kafka", "the layers"),
    ("adapters/lag.py", "import processor.entrypoints.settings", "only the entry points"),
    ("stages/enrichment/pipeline.py", "import httpx", "the stages see adapters only"),
    ("runtime/loop.py", "import processor.devkit.samples", "the development kit"),
    ("core/enrichment/emails.py", "import processor.core.enrichment.events",
     "no import cycles"),
], ids=["core-kafka", "runtime-rocksdb", "core-adapter", "adapter-settings", "stage-http",
        "devkit", "cycle"])
def test_a_rule_broken_on_purpose_fails_the_lint(tmp_path: Path, path: str, line: str,
                                                 contract: str) -> None:
    done = lint_scratch_copy(tmp_path, path, line)
    assert done.returncode != 0
    broken = done.stdout.split("Broken contracts")[-1]
    assert contract in broken, done.stdout


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_no_environment_reads_at_module_level(path: Path) -> None:
    if path.name == "settings.py" or "devkit" in path.parts:
        return
    tree = ast.parse(path.read_text())
    for node in tree.body:  # module level statements only
        text = ast.unparse(node)
        assert "os.environ" not in text, f"{path.name}: {text}"
        assert "getenv" not in text, f"{path.name}: {text}"
