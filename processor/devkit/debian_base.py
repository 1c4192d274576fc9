"""The local base image that stands in for ``python:3.11-slim-bookworm``.

Why this exists: no image registry is reachable from the machines this project is
built on, but Debian's packages are. ``debootstrap`` assembles a minimal Debian with
Python from them, and the result goes into buildah's storage for deploy/Dockerfile's
``PYTHON_IMAGE`` argument (see ``processor.devkit.image``). It gets what the slim
image has and Debian's does not (``python`` on PATH, ``LANG``), and what this machine
needs to reach PyPI through its TLS: the host's CA bundle, and a pip told to use it.
So the Dockerfile stays exactly what Docker users build on the real image. Never
push an image built on it: it carries this machine's CA bundle.

The root filesystem is cached as a tarball under ``~/.cache/clearbit-enrichment/image/``,
keyed by suite and recipe; the image carries a label with the digest of all that went
into it, so it is imported again only when the tarball or the host's bundle changes.
Root only: debootstrap and buildah's storage need it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from processor.devkit.broker import _last_lines, _locked  # the same cache plumbing

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
# What the Dockerfile runs on python:3.11-slim: `python -m venv`, with its pip.
_PACKAGES = ("python3", "python3-venv")
# The venv's pip (Debian's wheel) trusts the roots bundled in it, not the system's.
_PIP_CONF = f"[global]\ncert = {HOST_CA_BUNDLE}\n"
_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")
_LABEL = "clearbit-enrichment.base-digest"
_INSTALL_HINT = "`make image-tools` installs it (apt-get install buildah debootstrap)"


class ImageError(RuntimeError):
    """The image could not be built or run; the message says why."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clearbit-enrichment" / "image"


def base_name(suite: str = SUITE) -> str:
    return f"localhost/clearbit-enrichment-base:{suite}"


def require_tools(*tools: str) -> None:
    if os.geteuid() != 0:
        raise ImageError("the image needs root: debootstrap and buildah's storage")
    for tool in tools:
        if shutil.which(tool) is None:
            raise ImageError(f"`{tool}` is not installed: {_INSTALL_HINT}")


def buildah(*args: str) -> str:
    result = subprocess.run(["buildah", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ImageError(f"buildah {args[0]} failed (exit {result.returncode}): "
                         f"{_last_lines(result.stderr, 10)}")
    return result.stdout.strip()


def stored_config(image: str) -> dict[str, Any] | None:
    """The image's OCI config (User, Env, Entrypoint, Cmd, Labels...); None if absent."""
    result = subprocess.run(["buildah", "inspect", "--type=image", image],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return None
    return dict(json.loads(result.stdout)["OCIv1"]["config"])


def ensure_base(suite: str = SUITE) -> str:
    """The base image's name, imported into buildah's storage when missing or stale."""
    require_tools("buildah", "debootstrap")
    tarball = _rootfs_tarball(suite)
    digest = hashlib.sha256(b"\0".join([
        tarball.name.encode(), HOST_CA_BUNDLE.read_bytes(), _PIP_CONF.encode(),
        *(e.encode() for e in _ENV)])).hexdigest()
    name = base_name(suite)
    config = stored_config(name) or {}
    if (config.get("Labels") or {}).get(_LABEL) == digest:
        return name
    container = buildah("from", "--quiet", "scratch")
    try:
        root = Path(buildah("mount", container))
        subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-xpf", str(tarball)],
                       check=True)
        # Each unlinked first, so that nothing is written through a link out of the rootfs.
        python = root / "usr/local/bin/python"
        python.unlink(missing_ok=True)
        python.symlink_to("/usr/bin/python3")
        for path, content in ((root / HOST_CA_BUNDLE.relative_to("/"),
                               HOST_CA_BUNDLE.read_bytes()),
                              (root / "etc/pip.conf", _PIP_CONF.encode())):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)
            path.write_bytes(content)
        buildah("umount", container)
        buildah("config", *(f"--env={e}" for e in _ENV), "--cmd=python3",
                f"--label={_LABEL}={digest}", container)
        buildah("commit", "--quiet", container, name)
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True, check=False)
    return name


def _rootfs_tarball(suite: str) -> Path:
    """Debian ``suite`` as a tarball, made by debootstrap the first time only."""
    recipe = f"{suite} {MIRROR} minbase {','.join(_PACKAGES)}".encode()
    tarball = cache_dir() / f"debian-{suite}-{hashlib.sha256(recipe).hexdigest()[:12]}.tar"
    if tarball.is_file():
        return tarball
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with _locked(tarball.parent / ".lock"):
        if tarball.is_file():
            return tarball  # another process made it while this one waited
        work = Path(tempfile.mkdtemp(prefix=f"debootstrap-{suite}-", dir=tarball.parent))
        try:
            rootfs, log = work / "rootfs", work / "debootstrap.log"
            command = ["debootstrap", "--variant=minbase", f"--include={','.join(_PACKAGES)}",
                       f"--keyring={_KEYRING}", suite, str(rootfs), MIRROR]
            print(f"debootstrap {suite} from {MIRROR} (once; about a minute)", file=sys.stderr)
            with log.open("w") as out:
                code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT,
                                      check=False).returncode
            if code != 0:
                raise ImageError(f"debootstrap failed (exit {code}):\n"
                                 f"{_last_lines(log.read_text(errors='replace'), 40)}")
            # As in python:3.11-slim: no package cache, no package lists.
            for folder in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for entry in (rootfs / folder).iterdir():
                    if entry.is_file():
                        entry.unlink()
            partial = tarball.with_suffix(".tmp")
            subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial),
                            "."], check=True)
            partial.replace(tarball)
        finally:
            _unmount_under(work)  # a failed debootstrap can leave /proc mounted in it
            shutil.rmtree(work, ignore_errors=True)
    return tarball


def _unmount_under(folder: Path) -> None:
    prefix = f"{folder.resolve()}/"
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)
