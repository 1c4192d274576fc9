"""A real single-node Apache Kafka broker (KRaft), fetched from Maven Central and run
as a plain ``java`` process.

Why this exists: the integration tests, ``make run`` and the benchmarks need a real
broker, and the machines this project is built and tested on have Java and Maven
but no Docker engine and no route to Apache's download mirrors. Kafka's own jars
are on Maven Central, so Maven gathers them once into a cache outside the repo,
and this module formats a log directory and starts ``kafka.Kafka`` with broker and
controller in one JVM. Users with Docker or a cluster of their own don't need any
of it: the test fixtures take ``KAFKA_BOOTSTRAP_SERVERS`` or a container first.

Command line::

    python -m processor.devkit.broker fetch                  # resolve the jars only
    python -m processor.devkit.broker start --state-file F   # background broker
    python -m processor.devkit.broker stop --state-file F    # stop it, delete its data
    python -m processor.devkit.broker run                    # foreground, Ctrl-C stops
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

# confluent_kafka.admin re-exports NewTopic from here, but its stubs don't say so.
from confluent_kafka.cimpl import NewTopic

log = logging.getLogger(__name__)
# librdkafka's own log lines (connection refused while the broker boots, ...) go
# here instead of straight to stderr, so test output only shows them on failure.
_client_log = logging.getLogger(f"{__name__}.client")

KAFKA_VERSION = "4.3.1"
"""The Kafka release the local broker runs; the Docker fallback uses the same tag."""

_KIT = Path(__file__).resolve().parent / "kafka"
POM = _KIT / "pom.xml"
LOG4J_CONFIG = _KIT / "log4j2.properties"
# Kafka 3.x (a second broker version for the benchmark) logs to log4j 1.x (reload4j).
POM_KAFKA3 = _KIT / "pom-kafka3.xml"
LOG4J1_CONFIG = _KIT / "log4j.properties"
# Maven 3.8's default dependency plugin is 2.8, too old for today's POMs: pin it.
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
_JAVA_HINT = "a Java 17+ runtime (Debian/Ubuntu: apt-get install openjdk-17-jre-headless)"
_MAVEN_HINT = "Apache Maven 3.8+ (Debian/Ubuntu: apt-get install maven)"
_TAIL_LINES = 40


class BrokerError(RuntimeError):
    """The local broker could not be fetched, started or stopped; the message says why."""


# --- the jars -------------------------------------------------------------------------


def cache_root(version: str = KAFKA_VERSION) -> Path:
    """Where one Kafka version's jars live: outside the repo, shared by all checkouts."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clearbit-enrichment" / f"kafka-{version}"


def _pom(version: str) -> Path:
    return POM_KAFKA3 if version.startswith("3.") else POM


def logging_flag(version: str) -> str:
    """The JVM flag that points this version's logging binding at its configuration."""
    if version.startswith("3."):
        return f"-Dlog4j.configuration=file:{LOG4J1_CONFIG}"
    return f"-Dlog4j2.configurationFile={LOG4J_CONFIG}"


def ensure_kafka_libs(version: str = KAFKA_VERSION) -> Path:
    """Return the folder of Kafka's runtime jars, resolving them with Maven the first time.

    The marker is written only after Maven succeeded and holds a digest of the POM and
    version, so an interrupted download or a changed dependency list is resolved again
    while an unchanged one never touches the network. An exclusive ``flock`` makes
    concurrent callers (two test runs, ``make -j``) wait for one download instead of
    writing two into the same folder.
    """
    root = cache_root(version)
    lib = root / "lib"
    marker = root / "resolved"
    pom = _pom(version)
    stamp = hashlib.sha256(version.encode() + b"\0" + pom.read_bytes()).hexdigest()
    if _read_text(marker) == stamp:
        return lib
    mvn = _require("mvn", _MAVEN_HINT)
    _require("java", _JAVA_HINT)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".lock"):
        if _read_text(marker) == stamp:
            return lib  # another process resolved it while this one waited
        shutil.rmtree(lib, ignore_errors=True)
        command = [
            mvn, "-B", "-q", "-Dstyle.color=never", "-f", str(pom),
            f"{_DEPENDENCY_PLUGIN}:copy-dependencies", "-DincludeScope=runtime",
            f"-DoutputDirectory={lib}", f"-Dkafka.version={version}",
        ]
        log.info("resolving Apache Kafka %s from Maven Central into %s", version, lib)
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not (lib / f"kafka_2.13-{version}.jar").is_file():
            output = _last_lines(result.stdout + result.stderr, 30)
            raise BrokerError(
                f"Maven could not resolve org.apache.kafka:kafka_2.13:{version} "
                f"(exit {result.returncode}). Maven Central must be reachable (a proxy goes "
                f"in ~/.m2/settings.xml) and the version must exist there.\n"
                f"command: {' '.join(command)}\n{output}"
            )
        partial = marker.with_suffix(".tmp")
        partial.write_text(stamp)
        partial.replace(marker)
    return lib


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BrokerError(
            f"`{tool}` is not on PATH; the local Kafka broker needs {hint}. "
            "Alternatively set KAFKA_BOOTSTRAP_SERVERS to a broker you already have."
        )
    return path


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _last_lines(text: str, count: int) -> str:
    # Debian's Maven colours its output even with -B and style.color=never.
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    lines = [line for line in plain.splitlines() if line.strip()]
    return "\n".join(lines[-count:])


# --- configuration ----------------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    """Ports the OS reports free right now; all sockets stay open until every port is
    picked, so the ports are distinct."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


# Settings that make one node a complete Kafka and keep it quick on 2 cores; shared by
# the local broker and the Docker image the test fixtures start when Docker is there.
SINGLE_NODE_SETTINGS = {
    # Internal topics default to 3 replicas; with one node the group coordinator
    # and, for transactions, the transaction coordinator would never come up.
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    # Tests want their consumer groups to start now, not after 3 s.
    "group.initial.rebalance.delay.ms": "0",
    # A typo in a topic name must fail, not silently create an empty topic.
    "auto.create.topics.enable": "false",
    # Speed on 2 cores: 50-partition internal topics and a 128 MiB cleaner
    # buffer cost seconds at start and heap for nothing here.
    "offsets.topic.num.partitions": "3",
    "transaction.state.log.num.partitions": "3",
    "share.coordinator.state.topic.num.partitions": "1",
    "log.cleaner.dedupe.buffer.size": "2097152",
    "num.network.threads": "2",
    "num.io.threads": "2",
    "num.partitions": "1",
    # After a SIGKILL the restarted broker is refused (duplicate registration)
    # until its old session expires: 9 s by default. 6 s with a heartbeat every
    # second still tolerates five missed heartbeats on a busy machine.
    "broker.heartbeat.interval.ms": "1000",
    "broker.session.timeout.ms": "6000",
}


def server_properties(port: int, controller_port: int, log_dir: Path) -> str:
    """The local broker's configuration: one node, loopback only."""
    settings = {
        # One JVM is both the broker and the KRaft controller.
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(log_dir),
        **SINGLE_NODE_SETTINGS,
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def container_env() -> dict[str, str]:
    """The same settings as environment for the ``apache/kafka`` image, which turns
    ``KAFKA_FOO_BAR`` into ``foo.bar``. The caller adds the listeners."""
    return {"KAFKA_" + key.upper().replace(".", "_"): value
            for key, value in SINGLE_NODE_SETTINGS.items()}


def _cluster_id() -> str:
    """16 random bytes, URL-safe base64 without padding: the form StorageTool expects."""
    return base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()


# --- processes --------------------------------------------------------------------------


def _spawn(argv: Sequence[str], log_path: Path, *, detach: bool) -> int:
    """Start ``argv`` with stdout and stderr appended to ``log_path``; return its pid.

    ``posix_spawn`` rather than ``subprocess.Popen``: a broker started by the
    ``start`` command must outlive this Python process, and a ``Popen`` dropped while
    its child runs warns about it. With a bare pid the same wait and stop code works
    whether this process started the broker or read its pid from a state file.
    ``detach`` puts the JVM in a session of its own, away from the terminal's Ctrl-C.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_path), flags, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    return os.posix_spawn(argv[0], list(argv), dict(os.environ),
                          file_actions=actions, setsid=detach)


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process; a zombie counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc here: trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _exited(pid: int) -> bool:
    """Whether ``pid`` has exited, reaping it when it is this process's child."""
    try:
        done, _status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # started by another process (the CLI's `start`)
        return not _running(pid)
    return done == pid


def _wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not _exited(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM, which Kafka (and the local registry) answer with a clean shutdown; SIGKILL
    if that takes too long."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_exit(pid, timeout):
        return
    log.warning("pid %d still running %.0fs after SIGTERM; sending SIGKILL", pid, timeout)
    _kill(pid)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not _wait_exit(pid, 10.0):
        raise BrokerError(f"broker pid {pid} is still there after SIGKILL")


def _is_broker(pid: int, properties: Path) -> bool:
    """Whether ``pid`` is the broker started with ``properties``, so that a stale state
    file never makes ``stop`` signal an unrelated process that reused the pid."""
    if not _running(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc here: the pid is all there is to go on
    return b"kafka.Kafka" in argv and str(properties).encode() in argv


def tail(path: Path, lines: int = _TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file, or a note that there is none."""
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines)).rstrip("\n")
    except FileNotFoundError:
        return f"(no log at {path})"


# --- readiness and topics ---------------------------------------------------------------


def admin_client(bootstrap: str) -> AdminClient:
    # The stubs type the config as scalars only; "logger" takes a logging.Logger.
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": _client_log}
    return AdminClient(config)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def wait_until_ready(bootstrap: str, timeout: float,
                     alive: Callable[[], bool] | None = None) -> None:
    """Block until a metadata request to ``bootstrap`` answers with a broker in it.

    A metadata answer, not a log line, is what clients need. The port is probed
    first so that librdkafka doesn't log a refused connection every 100 ms while
    the JVM boots. ``alive`` lets the caller stop waiting for a process that died.
    """
    host, _, port = bootstrap.split(",", maxsplit=1)[0].strip().rpartition(":")
    deadline = time.monotonic() + timeout
    admin = admin_client(bootstrap)
    while True:
        if alive is not None and not alive():
            raise BrokerError(f"the broker process exited before {bootstrap} answered")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrokerError(f"no metadata answer from {bootstrap} within {timeout:.0f}s")
        if _port_open(host.strip("[]"), int(port)):
            try:
                metadata = admin.list_topics(timeout=min(5.0, remaining))
            except KafkaException:
                pass
            else:
                if metadata.brokers:
                    return
        time.sleep(0.1)


def create_topics(bootstrap: str, topics: Mapping[str, int], timeout: float = 30.0,
                  config: Mapping[str, str] | None = None) -> None:
    """Create ``topics`` (name to partition count, one replica each) and wait until
    metadata shows every partition with a leader.

    Idempotent: a topic that already exists with the same partition count is fine,
    so fixtures and the demo can call this without checking first. Waiting for
    leaders spares callers a first produce that fails with "unknown partition".
    """
    admin = admin_client(bootstrap)
    deadline = time.monotonic() + timeout
    wanted = [NewTopic(name, num_partitions=count, replication_factor=1,
                       config=dict(config or {})) for name, count in topics.items()]
    if not wanted:
        return
    futures = admin.create_topics(wanted, operation_timeout=timeout, request_timeout=timeout)
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise BrokerError(f"creating topic {name!r} failed: {error.str()}") from exc
    pending = dict(topics)
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrokerError(f"topics {sorted(pending)} not ready within {timeout:.0f}s")
        metadata = admin.list_topics(timeout=min(5.0, remaining))
        for name, count in list(pending.items()):
            found = metadata.topics.get(name)
            if found is None or found.error is not None:
                continue
            partitions = found.partitions.values()
            if len(partitions) != count:
                raise BrokerError(f"topic {name!r} exists with {len(partitions)} partitions, "
                                  f"not {count}")
            if all(part.leader >= 0 for part in partitions):
                del pending[name]
        if pending:
            time.sleep(0.1)


# --- the broker -------------------------------------------------------------------------


class LocalKafka:
    """A single-node KRaft broker in a child JVM, with config, data and log in one folder.

    Ports are picked when it first starts and kept for its life, so ``restart()`` and
    ``start()`` after ``kill()`` come back at the same address with the same data:
    clients reconnect and committed offsets survive, which is what the broker-restart
    chaos tests need. ``stop()`` ends that life and deletes the folder (unless
    ``keep``, or the folder was passed in as ``workdir``).
    """

    def __init__(self, *, workdir: Path | str | None = None, keep: bool = False,
                 version: str = KAFKA_VERSION, detach: bool = False) -> None:
        self.version = version
        self.keep = keep
        self._detach = detach
        self._given_dir = Path(workdir) if workdir is not None else None
        self._dir: Path | None = None
        self._ports: tuple[int, int] | None = None
        self._pid: int | None = None

    # -- what callers read

    @property
    def bootstrap_servers(self) -> str:
        if self._ports is None:
            raise BrokerError("the broker has not been started")
        return f"127.0.0.1:{self._ports[0]}"

    @property
    def data_dir(self) -> Path:
        """The folder holding ``server.properties``, the Kafka log dirs and ``broker.log``."""
        if self._dir is None:
            raise BrokerError("the broker has not been started")
        return self._dir

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def pid(self) -> int | None:
        """The JVM's pid while it runs, else None."""
        return self._pid if self.running else None

    @property
    def running(self) -> bool:
        if self._pid is not None and _exited(self._pid):
            self._pid = None
        return self._pid is not None

    def log_tail(self, lines: int = _TAIL_LINES) -> str:
        return tail(self.log_path, lines) if self._dir is not None else "(not started)"

    # -- life cycle

    def start(self, timeout: float = 120.0) -> LocalKafka:
        """Start the JVM and return once it answers metadata requests."""
        if self.running:
            raise BrokerError(f"the broker is already running at {self.bootstrap_servers}")
        lib = ensure_kafka_libs(self.version)
        java = _require("java", _JAVA_HINT)
        if self._dir is None:
            self._prepare(java, lib)
        properties = self.data_dir / "server.properties"
        argv = [java, "-Xmx512m", logging_flag(self.version),
                "-cp", f"{lib}/*", "kafka.Kafka", str(properties)]
        began = time.monotonic()
        self._pid = _spawn(argv, self.log_path, detach=self._detach)
        self._note(f"started java, pid {self._pid}")
        try:
            wait_until_ready(self.bootstrap_servers, timeout, alive=lambda: self.running)
        except BrokerError as exc:
            self.kill()  # never leave a half-started JVM behind
            raise BrokerError(f"{exc}\n--- last lines of {self.log_path}:\n"
                              f"{self.log_tail()}") from None
        except BaseException:
            self.kill()
            raise
        log.info("Kafka %s ready at %s in %.1fs (log: %s)", self.version,
                 self.bootstrap_servers, time.monotonic() - began, self.log_path)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Shut down cleanly (SIGTERM, SIGKILL after ``timeout``) and forget the folder."""
        self._halt(timeout)
        if self._dir is not None and not self.keep:
            if self._given_dir is None:
                shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
            self._ports = None

    def restart(self, timeout: float = 120.0, stop_timeout: float = 30.0) -> None:
        """Stop cleanly and start again on the same ports with the same data."""
        if self._dir is None:
            raise BrokerError("the broker has not been started")
        self._halt(stop_timeout, "to restart it")
        self.start(timeout)

    def kill(self) -> None:
        """SIGKILL the JVM, as a crash would; ``start()`` brings it back with its data."""
        if self._pid is not None:
            self._note(f"sending SIGKILL to pid {self._pid}")
            _kill(self._pid)
            self._pid = None

    def wait(self) -> None:
        """Block until the JVM exits by itself (the ``run`` command's main loop)."""
        while self.running:
            time.sleep(0.5)

    def __enter__(self) -> LocalKafka:
        if not self.running:
            try:
                self.start()
            except BaseException:
                self.stop()  # __exit__ won't run: delete the folder here
                raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def _halt(self, timeout: float, why: str = "to stop it") -> None:
        if self._pid is not None:
            self._note(f"sending SIGTERM to pid {self._pid} {why}")
            _terminate(self._pid, timeout)
            self._note(f"pid {self._pid} exited")
            self._pid = None

    def _note(self, text: str) -> None:
        """Add a line of ours to the broker's log, so that the tail a failed test prints
        shows what was done to the broker and when, among the broker's own lines."""
        now = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        with contextlib.suppress(OSError), self.log_path.open("a", encoding="utf-8") as handle:
            handle.write(f"[{stamp},{int(now % 1 * 1000):03d}] NOTE {text} (local-kafka)\n")

    def _prepare(self, java: str, lib: Path) -> None:
        """Create the folder, pick the ports, write the config and format the storage."""
        folder = self._given_dir or Path(tempfile.mkdtemp(prefix="local-kafka-"))
        try:
            folder.mkdir(parents=True, exist_ok=True)
            port, controller_port = _free_ports(2)
            properties = folder / "server.properties"
            properties.write_text(server_properties(port, controller_port, folder / "kafka-logs"))
            command = [java, logging_flag(self.version), "-cp", f"{lib}/*",
                       "kafka.tools.StorageTool", "format", "--ignore-formatted",
                       # "--cluster-id=" form: a random id may start with "-", which
                       # as a separate argument would be read as an option (1 in 64).
                       f"--cluster-id={_cluster_id()}", "-c", str(properties)]
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                output = _last_lines(result.stdout + result.stderr, _TAIL_LINES)
                raise BrokerError(f"formatting the broker's storage in {folder} failed:\n{output}")
        except BaseException:  # Ctrl-C included: leave no half-made folder behind
            if self._given_dir is None:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        self._dir = folder
        self._ports = (port, controller_port)


# --- command line -----------------------------------------------------------------------


def _read_state(path: Path, what: str = "broker",
                error: type[Exception] = BrokerError) -> dict[str, Any] | None:
    """The state file a detached ``start`` wrote, or None when there is none."""
    text = _read_text(path)
    if text is None:
        return None
    try:
        state: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path} is not a {what} state file: {exc}") from None
    return state


def _cmd_fetch(args: argparse.Namespace) -> int:
    print(ensure_kafka_libs(args.version))
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    state_file: Path = args.state_file
    previous = _read_state(state_file)
    if previous is not None and _is_broker(
            int(previous["pid"]), Path(previous["data_dir"]) / "server.properties"):
        print(previous["bootstrap_servers"])
        return 0
    broker = LocalKafka(keep=True, detach=True, version=args.version)
    try:
        broker.start(args.timeout)
    except BaseException:
        broker.keep = False  # the error carries the log's tail; leave no folder behind
        broker.stop()
        raise
    state = {"pid": broker.pid, "bootstrap_servers": broker.bootstrap_servers,
             "log_path": str(broker.log_path), "data_dir": str(broker.data_dir)}
    try:
        state_file.parent.mkdir(parents=True, exist_ok=True)
        partial = state_file.with_name(state_file.name + ".tmp")
        partial.write_text(json.dumps(state, indent=2) + "\n")
        partial.replace(state_file)
    except OSError:
        broker.keep = False
        broker.stop()
        raise
    print(broker.bootstrap_servers)
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    state_file: Path = args.state_file
    state = _read_state(state_file)
    if state is None:
        print(f"no broker recorded in {state_file}")
        return 0
    data_dir = Path(state["data_dir"])
    properties = data_dir / "server.properties"
    pid = int(state["pid"])
    if _is_broker(pid, properties):
        _terminate(pid, args.timeout)
        print(f"stopped the broker at {state['bootstrap_servers']}")
    else:
        print(f"the broker recorded in {state_file} (pid {pid}) was no longer running")
    if properties.is_file():  # only ever delete a folder that is a broker's
        shutil.rmtree(data_dir, ignore_errors=True)
    state_file.unlink(missing_ok=True)
    return 0


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _serve(server: Any, what: str, timeout: float, banner: Callable[[], str]) -> int:
    """The ``run`` command of a local server (the broker, the registry): start it, say
    where it is, and keep it until Ctrl-C or SIGTERM (exit 0) or until it dies (exit 1)."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        server.start(timeout)
        print(banner(), flush=True)
        server.wait()
        print(f"error: the {what} exited by itself; last lines of its log:\n"
              f"{server.log_tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


def _cmd_run(args: argparse.Namespace) -> int:
    broker = LocalKafka(keep=args.keep, version=args.version)
    return _serve(broker, "broker", args.timeout, lambda: (
        f"Kafka {broker.version} at {broker.bootstrap_servers} "
        f"(log: {broker.log_path}); Ctrl-C stops it"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m processor.devkit.broker",
        description="Fetch (from Maven Central) and run a local single-node Kafka broker.")
    parser.add_argument("--kafka-version", dest="version", default=KAFKA_VERSION,
                        help="the Apache Kafka release to fetch or run (%(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch", help="resolve the jars into the cache and print where")
    for name, text in (("start", "start in the background, record it in the state file"),
                       ("stop", "stop the broker recorded in the state file, delete its data")):
        command = commands.add_parser(name, help=text)
        command.add_argument("--state-file", type=Path, required=True)
        command.add_argument("--timeout", type=float, default=120.0 if name == "start" else 30.0)
    run = commands.add_parser("run", help="run in the foreground until Ctrl-C or SIGTERM")
    run.add_argument("--timeout", type=float, default=120.0)
    run.add_argument("--keep", action="store_true", help="keep the data folder afterwards")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "fetch": _cmd_fetch, "start": _cmd_start, "stop": _cmd_stop, "run": _cmd_run}
    try:
        return handlers[args.command](args)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
