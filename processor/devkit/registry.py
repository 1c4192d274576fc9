"""A real schema registry that serves Confluent's REST API: Apicurio Registry, fetched from
Maven Central and run as a plain ``java`` process.

Why this exists: Avro mode's tests and ``make run FORMAT=avro`` need a registry, and these
machines have Java and Maven but no Docker engine. Confluent's own registry is not on
Maven Central; Apicurio Registry 2.x is (one ``tar.gz`` of its Quarkus application), and
its ``/apis/ccompat/v7`` API is what ``confluent_kafka``'s ``SchemaRegistryClient`` and
every Confluent serializer speak. It keeps its schemas in memory: each start is empty.
Users with a registry of their own set ``SCHEMA_REGISTRY_URL`` and need none of this.
(3.x needs Java 21; 3.0.x's parent POM is missing from Central: hence 2.6.)

Command line::

    python -m processor.devkit.registry fetch                  # download and unpack only
    python -m processor.devkit.registry start --state-file F   # background registry
    python -m processor.devkit.registry stop --state-file F    # stop it
    python -m processor.devkit.registry run                    # foreground, Ctrl-C stops
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import httpx

from processor.devkit.broker import (  # the same process plumbing as the local broker
    _DEPENDENCY_PLUGIN,
    _JAVA_HINT,
    _MAVEN_HINT,
    _exited,
    _free_ports,
    _kill,
    _last_lines,
    _locked,
    _read_state,
    _read_text,
    _require,
    _running,
    _serve,
    _spawn,
    _terminate,
    tail,
)

log = logging.getLogger(__name__)

APICURIO_VERSION = "2.6.13.Final"
CCOMPAT_PATH = "/apis/ccompat/v7"
"""Where Apicurio serves the Confluent-compatible API: the root clients are given."""

# Startup in about 3 s and some 180 MB of memory instead of 8 s and 400 MB: the registry
# holds a handful of schemas here, and C1 alone compiles fast enough for that.
JVM_OPTIONS = ("-Xmx128m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")


class RegistryError(RuntimeError):
    """The local registry could not be fetched, started or stopped; the message says why."""


# --- the application --------------------------------------------------------------------


def cache_root(version: str = APICURIO_VERSION) -> Path:
    """Where one Apicurio version lives: outside the repo, shared by all checkouts."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clearbit-enrichment" / f"apicurio-registry-{version}"


def _artifact(version: str) -> str:
    return f"io.apicurio:apicurio-registry-app:{version}:tar.gz:all"


def ensure_registry(version: str = APICURIO_VERSION) -> Path:
    """Return the registry's runner jar, downloading and unpacking it the first time.

    As for the broker's jars: the marker is written only once the application is complete,
    so an interrupted download is done again while a finished one never touches the
    network, and a ``flock`` makes concurrent callers wait for one download.
    """
    root = cache_root(version)
    app = root / "app"
    jar = app / f"apicurio-registry-app-{version}-runner.jar"
    marker = root / "resolved"
    stamp = hashlib.sha256(_artifact(version).encode()).hexdigest()
    if _read_text(marker) == stamp and jar.is_file():
        return jar
    mvn = _require("mvn", _MAVEN_HINT)
    _require("java", _JAVA_HINT)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".lock"):
        if _read_text(marker) == stamp and jar.is_file():
            return jar  # another process fetched it while this one waited
        download = root / "download"
        shutil.rmtree(download, ignore_errors=True)
        shutil.rmtree(app, ignore_errors=True)
        command = [mvn, "-B", "-q", "-Dstyle.color=never", f"{_DEPENDENCY_PLUGIN}:copy",
                   f"-Dartifact={_artifact(version)}", f"-DoutputDirectory={download}"]
        log.info("fetching Apicurio Registry %s from Maven Central into %s", version, root)
        result = subprocess.run(command, capture_output=True, text=True, check=False,
                                cwd=root)
        archives = sorted(download.glob("*.tar.gz"))
        if result.returncode != 0 or not archives:
            raise RegistryError(
                f"Maven could not fetch {_artifact(version)} (exit {result.returncode}). "
                "Maven Central must be reachable (a proxy goes in ~/.m2/settings.xml).\n"
                f"command: {' '.join(command)}\n"
                f"{_last_lines(result.stdout + result.stderr, 30)}")
        partial = root / "app.partial"
        shutil.rmtree(partial, ignore_errors=True)
        with tarfile.open(archives[0]) as archive:
            archive.extractall(partial, filter="data")
        if not (partial / jar.name).is_file():
            raise RegistryError(f"{archives[0]} holds no {jar.name}")
        partial.replace(app)
        shutil.rmtree(download, ignore_errors=True)  # 140 MB the unpacked copy makes useless
        (root / "resolved.tmp").write_text(stamp)
        (root / "resolved.tmp").replace(marker)
    return jar


# --- the process -------------------------------------------------------------------------


class LocalRegistry:
    """Apicurio Registry in a child JVM on a free loopback port, its log in a temp folder.

    ``url`` is what clients are given (``SCHEMA_REGISTRY_URL``). ``stop()`` ends it and
    deletes the folder (unless ``keep``); being in memory, its schemas go with it.
    """

    def __init__(self, *, version: str = APICURIO_VERSION, keep: bool = False,
                 detach: bool = False) -> None:
        self.version = version
        self.keep = keep
        self._detach = detach
        self._dir: Path | None = None
        self._port: int | None = None
        self._pid: int | None = None

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RegistryError("the registry has not been started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def url(self) -> str:
        """The Confluent-compatible API root, for ``SCHEMA_REGISTRY_URL``."""
        return self.base_url + CCOMPAT_PATH

    @property
    def log_path(self) -> Path:
        if self._dir is None:
            raise RegistryError("the registry has not been started")
        return self._dir / "registry.log"

    @property
    def pid(self) -> int | None:
        return self._pid if self.running else None

    @property
    def running(self) -> bool:
        if self._pid is not None and _exited(self._pid):
            self._pid = None
        return self._pid is not None

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines) if self._dir is not None else "(not started)"

    def start(self, timeout: float = 90.0) -> LocalRegistry:
        """Start the JVM and return once ``/health/ready`` answers 200."""
        if self.running:
            raise RegistryError(f"the registry is already running at {self.url}")
        jar = ensure_registry(self.version)
        java = _require("java", _JAVA_HINT)
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="local-registry-"))
            self._port = _free_ports(1)[0]
        argv = [java, *JVM_OPTIONS, "-Dquarkus.http.access-log.enabled=false",
                "-Dquarkus.http.host=127.0.0.1", f"-Dquarkus.http.port={self._port}",
                # Quarkus writes its temp files (and nothing else) under the work dir.
                f"-Djava.io.tmpdir={self._dir}", "-jar", str(jar)]
        began = time.monotonic()
        self._pid = _spawn(argv, self.log_path, detach=self._detach)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.kill()  # never leave a half-started JVM behind
            raise
        log.info("Apicurio Registry %s ready at %s in %.1fs (log: %s)", self.version,
                 self.url, time.monotonic() - began, self.log_path)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                if not self.running:
                    raise RegistryError(f"the registry exited before it was ready; last "
                                        f"lines of {self.log_path}:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(self.base_url + "/health/ready").status_code == 200:
                        return
                if time.monotonic() >= deadline:
                    raise RegistryError(f"the registry was not ready within {timeout:.0f}s; "
                                        f"last lines of {self.log_path}:\n{self.log_tail()}")
                time.sleep(0.1)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (a clean Quarkus shutdown), SIGKILL after ``timeout``; forget the folder."""
        if self._pid is not None:
            _terminate(self._pid, timeout)
            self._pid = None
        if self._dir is not None and not self.keep:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
            self._port = None

    def kill(self) -> None:
        if self._pid is not None:
            _kill(self._pid)
            self._pid = None

    def wait(self) -> None:
        """Block until the JVM exits by itself (the ``run`` command's main loop)."""
        while self.running:
            time.sleep(0.5)

    def __enter__(self) -> LocalRegistry:
        if not self.running:
            try:
                self.start()
            except BaseException:
                self.stop()
                raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


# --- command line ------------------------------------------------------------------------


def _is_registry(pid: int, version: str) -> bool:
    """Whether ``pid`` is a registry JVM, so a stale state file never makes ``stop`` signal
    an unrelated process that reused the pid."""
    if not _running(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc here: the pid is all there is to go on
    return f"apicurio-registry-app-{version}-runner.jar".encode() in argv


def _cmd_fetch(args: argparse.Namespace) -> int:
    print(ensure_registry(args.version))
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    previous = _read_state(args.state_file, "registry", RegistryError)
    if previous is not None and _is_registry(int(previous["pid"]), args.version):
        print(previous["url"])
        return 0
    registry = LocalRegistry(version=args.version, keep=True, detach=True)
    try:
        registry.start(args.timeout)
        state = {"pid": registry.pid, "url": registry.url, "log_path": str(registry.log_path),
                 "data_dir": str(registry.log_path.parent)}
        args.state_file.parent.mkdir(parents=True, exist_ok=True)
        partial = args.state_file.with_name(args.state_file.name + ".tmp")
        partial.write_text(json.dumps(state, indent=2) + "\n")
        partial.replace(args.state_file)
    except BaseException:
        registry.keep = False
        registry.stop()
        raise
    print(registry.url)
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    state = _read_state(args.state_file, "registry", RegistryError)
    if state is None:
        print(f"no registry recorded in {args.state_file}")
        return 0
    pid = int(state["pid"])
    if _is_registry(pid, args.version):
        _terminate(pid, args.timeout)
        print(f"stopped the registry at {state['url']}")
    else:
        print(f"the registry recorded in {args.state_file} (pid {pid}) was no longer running")
    folder = Path(state["data_dir"])
    if folder.name.startswith("local-registry-"):  # only ever delete a folder of ours
        shutil.rmtree(folder, ignore_errors=True)
    args.state_file.unlink(missing_ok=True)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    registry = LocalRegistry(version=args.version)
    return _serve(registry, "registry", args.timeout, lambda: (
        f"Apicurio Registry {registry.version}: SCHEMA_REGISTRY_URL={registry.url} "
        f"(log: {registry.log_path}); Ctrl-C stops it"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m processor.devkit.registry",
        description="Fetch (from Maven Central) and run a local schema registry with the "
                    "Confluent REST API (Apicurio Registry, in memory).")
    parser.add_argument("--apicurio-version", dest="version", default=APICURIO_VERSION,
                        help="the Apicurio Registry release to fetch or run (%(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch", help="download and unpack into the cache, print the jar")
    for name, text in (("start", "start in the background, record it in the state file"),
                       ("stop", "stop the registry recorded in the state file")):
        command = commands.add_parser(name, help=text)
        command.add_argument("--state-file", type=Path, required=True)
        command.add_argument("--timeout", type=float, default=90.0 if name == "start" else 20.0)
    run = commands.add_parser("run", help="run in the foreground until Ctrl-C or SIGTERM")
    run.add_argument("--timeout", type=float, default=90.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one line per readiness probe
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "fetch": _cmd_fetch, "start": _cmd_start, "stop": _cmd_stop, "run": _cmd_run}
    try:
        return handlers[args.command](args)
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
