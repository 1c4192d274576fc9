"""deploy/Dockerfile built into an OCI image without a Docker engine, and that image run.

Why this exists: the machines this project is built and tested on have no Docker
engine and no image registry, so the image would otherwise first be built by a user.
Debian's ``buildah`` builds the Dockerfile as it is, with chroot isolation (no daemon,
no container runtime), on the local base of ``processor.devkit.debian_base`` passed as
``PYTHON_IMAGE``. Builds use buildah's layer cache: with unchanged sources, seconds.

``buildah run`` with chroot isolation shares the host's network and pid namespace, so
an image reaches a broker on the host's 127.0.0.1. buildah answers SIGTERM by killing
its child outright, and a killed buildah leaves its child running: :class:`RunningImage`
signals the command's own process instead, as Kubernetes would, and kills the whole
tree when it has to.

Command line (root; ``make image-tools`` installs buildah and debootstrap)::

    python -m processor.devkit.image base                     # the local Debian base
    python -m processor.devkit.image build [--target devkit]  # deploy/Dockerfile
    python -m processor.devkit.image run [--env NAME[=VALUE]] [--entrypoint CMD] IMAGE [ARG...]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from processor import __version__
from processor.devkit.debian_base import (
    SUITE,
    ImageError,
    buildah,
    ensure_base,
    require_tools,
    stored_config,
)

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "Dockerfile"
IGNOREFILE = REPO / "deploy" / "Dockerfile.dockerignore"


def default_tag(target: str) -> str:
    name = "clearbit-enrichment" if target == "runtime" else f"clearbit-enrichment-{target}"
    return f"localhost/{name}:{__version__}"


def build(target: str = "runtime", tag: str | None = None, *, suite: str = SUITE,
          log: IO[str] | None = None) -> str:
    """Build ``target`` of deploy/Dockerfile, the repository as context; return the image
    id. buildah's output goes to ``log`` (the terminal when None)."""
    base = ensure_base(suite)
    with tempfile.TemporaryDirectory(prefix="image-") as scratch:
        iidfile = Path(scratch) / "iid"
        command = ["buildah", "build", "--isolation=chroot", "--layers", "--pull=never",
                   f"--file={DOCKERFILE}", f"--ignorefile={IGNOREFILE}",
                   f"--build-arg=PYTHON_IMAGE={base}", f"--target={target}",
                   f"--iidfile={iidfile}", f"--tag={tag or default_tag(target)}", str(REPO)]
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT if log else None,
                              check=False).returncode
        if code != 0:
            where = f" (log: {log.name})" if log is not None else ""
            raise ImageError(f"buildah could not build the {target} stage (exit {code}){where}")
        return iidfile.read_text().strip()


def image_config(image: str) -> dict[str, Any]:
    """The image's OCI config: User, Env, Entrypoint, Cmd, WorkingDir..."""
    config = stored_config(image)
    if config is None:
        raise ImageError(f"no image {image} in buildah's storage: build it first")
    return config


def command_of(image: str, args: Sequence[str] = (), entrypoint: str | None = None) -> list[str]:
    """What ``docker run [--entrypoint E] IMAGE ARGS`` would run: a new entrypoint drops
    the image's CMD, arguments replace it."""
    config = image_config(image)
    if entrypoint is not None:
        return [entrypoint, *args]
    return [*(config.get("Entrypoint") or []), *(args or config.get("Cmd") or [])]


@contextmanager
def working_container(image: str, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """A working container of ``image``, removed afterwards. ``env`` goes into its config
    (root-only, deleted with it), not onto a command line that lives as long as the run."""
    container = buildah("from", "--quiet", "--pull=never", image)
    try:
        if env:
            buildah("config", *(f"--env={k}={v}" for k, v in env.items()), container)
        yield container
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True, check=False)


def _run_argv(container: str, command: Sequence[str], user: str | None = None) -> list[str]:
    # The image's USER (unless ``user``), Env and WorkingDir apply; the network is the host's.
    as_user = [f"--user={user}"] if user else []
    return ["buildah", "run", "--isolation=chroot", "--network=host", *as_user, container,
            "--", *command]


def run(image: str, args: Sequence[str] = (), *, entrypoint: str | None = None,
        env: Mapping[str, str] | None = None, user: str | None = None,
        timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run ``image`` to completion, its output captured."""
    command = command_of(image, args, entrypoint)
    with working_container(image, env) as container:
        process = subprocess.Popen(_run_argv(container, command, user), text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        finally:
            _kill_tree(process)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


class RunningImage:
    """``image`` running in the background, its output going to ``stdout`` and ``stderr``:
    ``with RunningImage(image, env=...) as running: ... running.terminate()``."""

    def __init__(self, image: str, args: Sequence[str] = (), *,
                 env: Mapping[str, str] | None = None, stdout: IO[bytes] | None = None,
                 stderr: IO[bytes] | None = None) -> None:
        self._command = command_of(image, args)
        self._container = working_container(image, env)
        self._stdout, self._stderr = stdout, stderr
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RunningImage:
        container = self._container.__enter__()
        self._process = subprocess.Popen(_run_argv(container, self._command),
                                         stdout=self._stdout, stderr=self._stderr)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        try:
            _kill_tree(self.process)
        finally:
            self._container.__exit__(exc_type, exc, traceback)

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """``buildah run`` itself."""
        if self._process is None:
            raise ImageError("the image is not running yet: enter the context first")
        return self._process

    def command_pid(self, timeout: float = 10.0) -> int:
        """The pid of the command itself, under buildah and its chroot helpers (which run
        from memfd executables)."""
        deadline = time.monotonic() + timeout
        while True:
            for pid in _descendants(self.process.pid):
                try:
                    exe = os.readlink(f"/proc/{pid}/exe")
                except OSError:
                    continue  # gone, or not exec'd yet
                if "memfd:" not in exe and Path(exe).name != "buildah":
                    return pid
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise ImageError(f"no command process under buildah run (pid {self.process.pid})")
            time.sleep(0.05)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM to the command, as Kubernetes sends it; return its exit code."""
        os.kill(self.command_pid(), signal.SIGTERM)
        return self.process.wait(timeout)


def _descendants(pid: int) -> list[int]:
    """Children first, then grandchildren...: ``/proc``'s view, read once."""
    found, todo = [], [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop(0)}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found.extend(children)
            todo.extend(children)
    return found


def _kill_tree(process: subprocess.Popen[Any]) -> None:
    """SIGKILL to ``buildah run`` and everything under it, the deepest first."""
    if process.poll() is not None:
        return
    for pid in [*reversed(_descendants(process.pid)), process.pid]:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(30)


# --- command line ------------------------------------------------------------------------


def _environment(items: Sequence[str]) -> dict[str, str]:
    """``NAME=VALUE``, or ``NAME`` for the value in this process's environment (so that a
    key need not be typed on a command line)."""
    env = {}
    for item in items:
        name, sep, value = item.partition("=")
        env[name] = value if sep else os.environ.get(name, "")
    return env


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m processor.devkit.image",
        description="Build deploy/Dockerfile with buildah on a local Debian base, and run "
                    "the image (no Docker engine, no image registry; root).")
    commands = parser.add_subparsers(dest="command", required=True)
    base = commands.add_parser("base", help="make the local base image (cached)")
    built = commands.add_parser("build", help="build deploy/Dockerfile, the repository as "
                                              "context; prints the image id")
    built.add_argument("--target", default="runtime",
                       help="the stage: runtime (default) or devkit (the test server)")
    built.add_argument("--tag", help="default: localhost/clearbit-enrichment[-TARGET]:VERSION")
    for sub in (base, built):
        sub.add_argument("--suite", default=SUITE, help=f"Debian suite (default {SUITE})")
    ran = commands.add_parser("run", help="run an image as `docker run` would, on the "
                                          "host's network")
    ran.add_argument("--env", action="append", default=[], metavar="NAME[=VALUE]",
                     help="set a variable; NAME alone takes it from this environment")
    ran.add_argument("--entrypoint", help="run this instead of the image's entrypoint")
    ran.add_argument("image", help=f"an image name or id, e.g. {default_tag('runtime')}")
    ran.add_argument("args", nargs=argparse.REMAINDER, help="replaces the image's CMD")
    args = parser.parse_args(argv)
    try:
        if args.command == "base":
            print(ensure_base(args.suite))
        elif args.command == "build":
            print(build(args.target, args.tag, suite=args.suite))
        else:
            require_tools("buildah")
            command = command_of(args.image, args.args, args.entrypoint)
            with working_container(args.image, _environment(args.env)) as container:
                return subprocess.run(_run_argv(container, command), check=False).returncode
    except ImageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
