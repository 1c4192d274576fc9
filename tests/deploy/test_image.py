"""deploy/Dockerfile and pyproject.toml's wheel, read: held to what the manifests expect.
tests/deploy/test_image_build.py builds the image and runs it (``make test-image``)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field

from tests.promtools import DEPLOY, REPO

DOCKERFILE = DEPLOY / "Dockerfile"
BUILD_TOOLS = re.compile(r"\b(apt-get|apk|gcc|g\+\+|build-essential|make|cc)\b")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def stages() -> list[Stage]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.MULTILINE))
    found: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        if instruction == "FROM":
            base, _, name = rest.partition(" AS ")
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
            found.append(Stage(name.strip(), base.strip()))
        elif found:
            found[-1].instructions.append((instruction, rest))
    return found


def runtime_chain(name: str) -> list[Stage]:
    """``name`` and the stages it is built FROM, down to an image."""
    by_name = {s.name: s for s in stages()}
    chain = [by_name[name]]
    while chain[-1].base in by_name:
        chain.append(by_name[chain[-1].base])
    return chain


def test_the_default_target_is_the_runtime_stage() -> None:
    assert stages()[-1].name == "runtime"
    assert len(stages()) >= 3  # multi-stage: build, then a clean runtime


def test_the_runtime_is_small_and_has_no_build_tools() -> None:
    chain = runtime_chain("runtime")
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", chain[-1].base)
    for stage in chain:
        for instruction, rest in stage.instructions:
            if instruction == "RUN":
                assert not BUILD_TOOLS.search(rest.replace("groupadd", "").replace(
                    "useradd", "")), f"{stage.name}: RUN {rest}"
            if instruction == "COPY" and "--from=" in rest:
                # Only the built virtualenv comes across, from the stage without the dev kit.
                assert rest.split() == ["--from=build", "/opt/venv", "/opt/venv"], rest


def test_the_runtime_runs_as_a_numeric_non_root_user() -> None:
    users = [rest for stage in runtime_chain("runtime") for instruction, rest in
             stage.instructions if instruction == "USER"]
    assert users == ["10001:10001"]  # deployment.yaml's runAsUser/runAsGroup


def test_the_entrypoint_is_processor_run() -> None:
    runtime = dict(stages()[-1].instructions)
    assert runtime["ENTRYPOINT"] == '["processor"]'
    assert runtime["CMD"] == '["run"]'
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["processor"] == "processor.entrypoints.console:main"


def test_the_build_context_holds_what_the_build_copies() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = [rest.split()[:-1] for stage in stages() for instruction, rest in stage.instructions
              if instruction == "COPY" and "--from=" not in rest]
    for sources in copied:
        for source in sources:
            assert source.rstrip("/") in allowed, source
            assert (REPO / source).exists(), source
    # All else stays out: "*" first, then the exceptions; never the tests.
    first_exception = next(i for i, line in enumerate(ignore) if line.startswith("!"))
    assert "*" in ignore[:first_exception]
    assert "tests" not in allowed


def test_every_package_dir_the_wheel_maps_is_in_the_build_context() -> None:
    """``pip wheel .`` in the build stage needs each folder pyproject.toml maps a package to."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    build = next(s for s in stages() if s.name == "build")
    copied = {rest.split()[-1].removeprefix("./") for instruction, rest in build.instructions
              if instruction == "COPY" and "--from=" not in rest}
    for folder in setuptools["package-dir"].values():
        assert folder in copied, f"the build stage does not COPY {folder}/"


def test_the_wheel_leaves_the_dev_kit_out_and_its_data_exists() -> None:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert not [p for p in setuptools["packages"] if p.startswith("processor.devkit")]
    # Only the data listed below is shipped; each pattern names files that exist.
    assert setuptools["include-package-data"] is False
    for package, patterns in setuptools["package-data"].items():
        folder = REPO / setuptools["package-dir"].get(package, package.replace(".", "/"))
        for pattern in patterns:
            assert "devkit" not in pattern, pattern
            assert list(folder.glob(pattern)), f"{package}: {pattern} matches no file"


def test_only_the_devkit_image_gets_the_dev_kit() -> None:
    by_name = {s.name: s for s in stages()}
    devkit = by_name["devkit"]
    assert devkit.base == "base"  # the runtime's user and environment, not the build's tools
    sources = [rest.split()[0] for instruction, rest in devkit.instructions
               if instruction == "COPY"]
    assert sources == ["--from=devkit-venv"]
    assert by_name["devkit-venv"].base == "build"
    assert any("processor/devkit" in rest for instruction, rest
               in by_name["devkit-venv"].instructions if instruction == "RUN")


def test_the_wheel_lists_every_package_of_the_product() -> None:
    # The packages are listed by hand (for the schemas' folder): a new one left out
    # would be missing from every installed processor and image.
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(init.parent.relative_to(REPO).parts)
             for init in (REPO / "processor").rglob("__init__.py")
             if "devkit" not in init.parts}
    assert found <= set(setuptools["packages"]), sorted(found - set(setuptools["packages"]))
