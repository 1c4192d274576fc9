"""One Kafka broker per test session, and names that keep tests apart on it.

The broker is, in this order: the cluster in ``KAFKA_BOOTSTRAP_SERVERS``; an
``apache/kafka`` container when a Docker engine answers; else the local broker of
``processor.devkit.broker`` (Kafka's jars from Maven Central, run by ``java``), the
only one on machines without Docker. The choice is printed in the report header.
It starts when the first test asking for ``kafka_bootstrap`` runs, so unit-test
runs never pay for it. Every test gets its own topic and group names, so tests
never see each other's records even on a shared broker.
"""

from __future__ import annotations

import gc
import os
import re
import uuid
import warnings
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import pytest

from processor.devkit.broker import (
    KAFKA_VERSION,
    LocalKafka,
    container_env,
    create_topics,
    wait_until_ready,
)
from processor.devkit.clearbit_server import ClearbitServer
from processor.devkit.google_server import GoogleServer
from processor.devkit.meta_server import MetaServer
from tests.harness import Names

_IMAGE = f"apache/kafka:{KAFKA_VERSION}"
_LOCAL = pytest.StashKey[LocalKafka]()


@cache
def _broker_source() -> str:
    """Which broker this session uses ("env", "docker" or "local"), decided once."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return "env"
    return "docker" if _docker_answers() else "local"


def _docker_answers() -> bool:
    """Whether a Docker engine responds right now; an installed SDK alone doesn't
    mean containers can start."""
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        return False
    # The SDK leaves its socket unclosed when the engine doesn't answer; with
    # warnings as errors that would fail whichever test the garbage collector hits.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client = docker.from_env(timeout=3)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except (DockerException, OSError):
            return False
        finally:
            gc.collect()


def pytest_report_header(config: pytest.Config) -> str:
    source = _broker_source()
    if source == "env":
        return f"kafka: KAFKA_BOOTSTRAP_SERVERS={os.environ['KAFKA_BOOTSTRAP_SERVERS']}"
    if source == "docker":
        return f"kafka: {_IMAGE} via testcontainers (started when first needed)"
    return (f"kafka: local broker, Apache Kafka {KAFKA_VERSION} from Maven Central "
            "(no Docker engine answered; started when first needed)")


def _announce(config: pytest.Config, line: str) -> None:
    """Print past pytest's output capture: which broker runs is worth seeing."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)


@contextmanager
def _kafka_container() -> Iterator[str]:
    """An apache/kafka container configured like the local broker.

    The port a client must be told about is known only once the container runs, so
    the container waits for a start script that exports it (as testcontainers-java
    does for this image).
    """
    from testcontainers.core.container import DockerContainer

    script = "/tc-start.sh"
    container = DockerContainer(_IMAGE)
    settings = {
        **container_env(),
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS":
            "PLAINTEXT://0.0.0.0:9092,BROKER://0.0.0.0:9093,CONTROLLER://0.0.0.0:9094",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP":
            "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "BROKER",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9094",
    }
    for key, value in settings.items():
        container.with_env(key, value)
    container.with_exposed_ports(9092)
    container.with_command(["sh", "-c", f"while [ ! -f {script} ]; do sleep 0.1; done; "
                                        f"exec sh {script}"])
    container.start()
    try:
        bootstrap = f"{container.get_container_host_ip()}:{container.get_exposed_port(9092)}"
        start = (f"export KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://{bootstrap},"
                 "BROKER://localhost:9093\nexec /etc/kafka/docker/run\n")
        container.copy_into_container(start.encode(), script, 0o755)
        wait_until_ready(bootstrap, timeout=120)
        yield bootstrap
    finally:
        container.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> Iterator[str]:
    """The session's broker address (``bootstrap.servers``)."""
    config = request.config
    source = _broker_source()
    if source == "env":
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    elif source == "docker":
        with _kafka_container() as bootstrap:
            _announce(config, f"kafka: {_IMAGE} container at {bootstrap}")
            yield bootstrap
    else:
        with LocalKafka() as broker:
            config.stash[_LOCAL] = broker
            _announce(config, f"kafka: local broker at {broker.bootstrap_servers} "
                              f"(log: {broker.log_path})")
            yield broker.bootstrap_servers
            del config.stash[_LOCAL]


@pytest.fixture
def local_kafka(request: pytest.FixtureRequest, kafka_bootstrap: str) -> Iterator[LocalKafka]:
    """The session's local broker itself, for tests that restart or kill it; skipped
    when the broker is a container or someone else's cluster. Left running afterwards
    even if the test failed halfway through a kill."""
    broker = request.config.stash.get(_LOCAL, None)
    if broker is None:
        pytest.skip("needs the local broker; KAFKA_BOOTSTRAP_SERVERS or Docker is in use")
    yield broker
    if not broker.running:
        broker.start()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A prefix for topic and group names that no other test or earlier run uses."""
    test = re.sub(r"[^A-Za-z0-9-]+", "-", request.node.name).strip("-")[:60]
    return f"{test}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def kafka_topics(kafka_bootstrap: str, unique_name: str) -> Callable[..., str]:
    """Create a topic private to this test: ``kafka_topics("in", 3)`` returns its name."""

    def make(name: str = "topic", partitions: int = 1,
             config: dict[str, str] | None = None) -> str:
        topic = f"{unique_name}-{name}"
        create_topics(kafka_bootstrap, {topic: partitions}, config=config)
        return topic

    return make


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests are marked by where they live: tests/integration, tests/e2e."""
    for item in items:
        parts = item.path.parts
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)
        elif "e2e" in parts:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None],
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the end of the local broker's log to a failed test that used the broker."""
    report = yield
    broker = item.config.stash.get(_LOCAL, None)
    if report.failed and broker is not None and "kafka_bootstrap" in getattr(
            item, "fixturenames", ()):
        report.sections.append((f"kafka broker log: tail of {broker.log_path}",
                                broker.log_tail()))
    return report


# --- the Clearbit-compatible server and per-test names ---------------------------------


@pytest.fixture(scope="session")
def clearbit_session() -> Iterator[ClearbitServer]:
    from tests.harness import API_KEY

    with ClearbitServer(key=API_KEY) as server:
        yield server


@pytest.fixture
def clearbit(clearbit_session: ClearbitServer) -> ClearbitServer:
    """The session's Clearbit-compatible server, back to its defaults for each test."""
    clearbit_session.reset()
    return clearbit_session


@pytest.fixture
def names(kafka_topics: Callable[..., str], unique_name: str) -> Names:
    """Three fresh topics (input and output with 3 partitions) and a fresh group."""
    return Names(input=kafka_topics("in", 3), output=kafka_topics("out", 3),
                 dlq=kafka_topics("dlq", 1), group=f"{unique_name}-group")


# --- the Meta- and Google-compatible servers (the conversions sender's tests) -----------


@pytest.fixture(scope="session")
def meta_session() -> Iterator[MetaServer]:
    with MetaServer() as server:
        yield server


@pytest.fixture
def meta(meta_session: MetaServer) -> MetaServer:
    """The session's Meta-compatible server, back to its start configuration."""
    meta_session.reset()
    return meta_session


@pytest.fixture(scope="session")
def google_session() -> Iterator[GoogleServer]:
    with GoogleServer() as server:
        yield server


@pytest.fixture
def google(google_session: GoogleServer) -> GoogleServer:
    """The session's Google-compatible server, back to its start configuration."""
    google_session.reset()
    return google_session
