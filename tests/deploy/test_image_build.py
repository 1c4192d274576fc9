"""deploy/Dockerfile built for real (buildah on a local Debian base, the repository as
build context) and its images run: the runtime enriches events from the session's
broker through the session's Clearbit-compatible server, as user 10001, and holds no
dev kit, tests or compiler; the devkit image serves the test server.

Marked ``image`` and run by ``make test-image``, not ``make test``. Missing tools fail
the tests, never skip them: CI installs them, and a skipped image test proves nothing.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import orjson
import pytest

from processor.devkit import image
from processor.devkit.clearbit_server import ClearbitServer
from processor.devkit.debian_base import ImageError, require_tools
from processor.devkit.samples import identify, person_email
from tests.harness import API_KEY, Names, caught_up, produce, read, wait_for

pytestmark = [pytest.mark.image, pytest.mark.timeout(1800)]  # a cold base takes minutes

EVENTS = 20


def _build(target: str, logs: Path) -> str:
    try:
        require_tools("buildah", "debootstrap")
    except ImageError as error:
        pytest.fail(str(error))
    log_path = logs / f"build-{target}.log"
    with log_path.open("w") as log:
        try:
            return image.build(target, log=log)  # tagged as `make image` tags it
        except ImageError as error:
            tail = "\n".join(log_path.read_text().splitlines()[-40:])
            pytest.fail(f"{error}\n{tail}")


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("image")


@pytest.fixture(scope="module")
def runtime_image(logs: Path) -> str:
    return _build("runtime", logs)


@pytest.fixture(scope="module")
def devkit_image(logs: Path) -> str:
    return _build("devkit", logs)


def _uids(pid: int) -> tuple[int, int]:
    """Real uid and gid of a running process."""
    status = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(status["Uid"].split()[0]), int(status["Gid"].split()[0])


def test_the_runtime_image_enriches_events_from_the_host_broker(
        runtime_image: str, kafka_bootstrap: str, names: Names, clearbit: ClearbitServer,
        tmp_path: Path) -> None:
    produce(kafka_bootstrap, names.input, [
        (f"u{i}".encode(), identify(person_email(i), user_id=f"u{i}")) for i in range(EVENTS)])
    # Only the processor's own settings: the image brings everything else.
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "PROCESSOR_INPUT_TOPIC": names.input,
        "PROCESSOR_OUTPUT_TOPIC": names.output, "PROCESSOR_DLQ_TOPIC": names.dlq,
        "PROCESSOR_GROUP_ID": names.group, "PROCESSOR_COMMIT_INTERVAL": "200ms",
        "CLEARBIT_API_KEY": API_KEY, "CLEARBIT_BASE_URL": clearbit.url,
        "CLEARBIT_RATE_LIMIT_PER_MINUTE": "0", "PROCESSOR_METRICS_PORT": "0",
        "PROCESSOR_LOG_FORMAT": "json",
    }
    stderr_path = tmp_path / "stderr"
    with stderr_path.open("wb") as stderr, \
            image.RunningImage(runtime_image, env=env, stderr=stderr) as running:
        # The entrypoint itself, not a shell started for the check, runs as 10001.
        assert _uids(running.command_pid()) == (10001, 10001)
        out = read(kafka_bootstrap, [names.output], until=lambda m: len(m) >= EVENTS,
                   timeout=120)
        wait_for(lambda: caught_up(kafka_bootstrap, names.group, names.input, 3), 60,
                 "the image's processor to commit its inputs")
        code = running.terminate()
    log = stderr_path.read_text(errors="replace")
    assert code == 0, log[-3000:]
    assert "stopped cleanly" in log
    events = [orjson.loads(m.value()) for m in out]
    assert sorted(e["userId"] for e in events) == sorted(f"u{i}" for i in range(EVENTS))
    for event in events:
        assert event["integrations"] == {"Clearbit Enrichment": False}
        assert event["traits"]["clearbit_company_name"], event["traits"]
    # Each lookup crossed from the image to the server on the host's loopback.
    assert {r["email"] for r in clearbit.requests()} == {person_email(i) for i in range(EVENTS)}


# Run inside the runtime image by its own python, as root so that no folder is unreadable:
# what is installed and what is not.
_INVENTORY = """
import glob, importlib.util, json, os, shutil, sysconfig
from processor.adapters.avro.schemas import schema_path
site = sysconfig.get_path("purelib")
ours = []  # the project's test files, anywhere outside the kernel's file systems
for top, folders, files in os.walk("/"):
    if top == "/":
        folders[:] = [f for f in folders if f not in ("proc", "sys", "dev")]
    ours += [os.path.join(top, f) for f in files if f in ("conftest.py", "harness.py",
                                                          "test_image_build.py")]
print(json.dumps({
    "devkit": importlib.util.find_spec("processor.devkit") is not None
              or os.path.exists(os.path.join(site, "processor", "devkit")),
    "tests": ours + [p for p in ("/src", os.path.join(site, "tests")) if os.path.exists(p)],
    "compilers": [c for c in ("gcc", "cc", "c++", "g++", "clang", "tcc") if shutil.which(c)]
                 + glob.glob("/usr/bin/*-gcc*") + glob.glob("/usr/lib/gcc/*"),
    "schema": str(schema_path("identify.avsc")),
}))
"""


def test_the_runtime_image_holds_no_dev_kit_tests_or_compiler(
        runtime_image: str) -> None:
    config = image.image_config(runtime_image)
    assert config["User"] == "10001:10001"
    assert image.command_of(runtime_image) == ["processor", "run"]
    result = image.run(runtime_image, ["-c", _INVENTORY], entrypoint="python", user="0:0")
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout)
    assert found["devkit"] is False
    assert found["tests"] == []
    assert found["compilers"] == []
    # The schemas ship inside the installed package (pyproject maps them from schemas/).
    assert found["schema"].startswith("/opt/venv/lib/"), found["schema"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_devkit_image_serves_the_clearbit_compatible_api(
        devkit_image: str, tmp_path: Path) -> None:
    port = _free_port()
    args = ["--host", "127.0.0.1", "--port", str(port), "--key", "sk_devkit_image"]
    stderr_path = tmp_path / "stderr"
    with stderr_path.open("wb") as stderr, \
            image.RunningImage(devkit_image, args, stderr=stderr) as running:
        assert _uids(running.command_pid()) == (10001, 10001)
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/_control/health", timeout=2)
                break
            except httpx.TransportError:
                if running.process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        lookup = httpx.get(f"http://127.0.0.1:{port}/v2/combined/find",
                           params={"email": person_email(1)},
                           headers={"Authorization": "Bearer sk_devkit_image"}, timeout=5)
        code = running.terminate()
    assert health.status_code == 200
    assert lookup.status_code == 200, lookup.text
    assert lookup.json()["company"]["name"]
    assert code == 0, stderr_path.read_text(errors="replace")[-3000:]
