"""A small kustomize: renders the features ``deploy/kubernetes`` uses, without the binary.

Why not the real one: kustomize is not a Debian package, and ``kubectl kustomize``
is only on machines that happen to have kubectl. The manifests are validated on
every ``make test``, so the renderer they go through must always be there.
``tests/deploy/test_kubernetes.py`` checks this renderer's output against real
kustomize whenever a binary is on the PATH, so the two cannot silently differ.

Supported: ``resources`` (files and directories), ``namespace``, ``images``,
``configMapGenerator`` (``envs``, ``literals``, ``files``, ``options.labels``,
``behavior`` create/merge/replace, with kustomize's name hash and the references to it
rewritten) and ``patches``
given as a ``path`` to a strategic-merge patch. Anything else in a
kustomization raises ``Unsupported``: a new feature must be taught here first,
not ignored.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "images", "configMapGenerator",
             "patches"}

# Strategic-merge keys of the lists our patches can touch (Kubernetes' patchMergeKey).
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name",
              "volumes": "name", "volumeMounts": "mountPath", "imagePullSecrets": "name"}


class Unsupported(Exception):
    """The kustomization uses a feature this renderer does not implement."""


def build(directory: Path) -> list[Obj]:
    """The objects ``kustomize build directory`` would print (in no particular order)."""
    objects, generated = _build(directory)
    return _finish(objects, generated)


def _build(directory: Path) -> tuple[list[Obj], set[str]]:
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - SUPPORTED
    if unknown:
        raise Unsupported(f"{directory}: kustomization fields {sorted(unknown)}")
    objects: list[Obj] = []
    generated: set[str] = set()
    for entry in spec.get("resources", []):
        path = directory / entry
        if path.is_dir():
            more, names = _build(path)
            objects += more
            generated |= names
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for generator in spec.get("configMapGenerator", []):
        _generate(directory, generator, objects, generated)
    for patch in spec.get("patches", []):
        if set(patch) != {"path"}:
            raise Unsupported(f"{directory}: only `patches: - path: ...` is supported")
        _patch(objects, yaml.safe_load((directory / patch["path"]).read_text()))
    for image in spec.get("images", []):
        _set_image(objects, image)
    if "namespace" in spec:
        for obj in objects:
            obj.setdefault("metadata", {})["namespace"] = spec["namespace"]
    return objects, generated


def _read_env(path: Path) -> dict[str, str]:
    """kustomize's env-file rules: blank and ``#`` lines skipped, split at the first ``=``."""
    data = {}
    for raw in path.read_text().splitlines():
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}: {raw!r} is not KEY=value")
        data[key] = value
    return data


def _generate(directory: Path, generator: Obj, objects: list[Obj], generated: set[str]) -> None:
    options = generator.get("options", {})
    unknown = ((set(generator) - {"name", "envs", "literals", "files", "behavior", "options"})
               | {f"options.{option}" for option in set(options) - {"labels"}})
    if unknown:
        raise Unsupported(f"{directory}: configMapGenerator fields {sorted(unknown)}")
    data: dict[str, str] = {}
    for env in generator.get("envs", []):
        data.update(_read_env(directory / env))
    for literal in generator.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    for source in generator.get("files", []):
        # `key=path` or `path` (the key is then the file's name). kustomize refuses a
        # path outside the kustomization's directory, and so does this.
        key, sep, path = source.partition("=")
        file = directory / (path if sep else key)
        if not file.resolve().is_relative_to(directory.resolve()):
            raise ValueError(f"{directory}: {source}: not in or below the kustomization")
        data[key if sep else file.name] = file.read_text()
    name = generator["name"]
    behavior = generator.get("behavior", "create")
    existing = next((o for o in objects if o["kind"] == "ConfigMap"
                     and o["metadata"]["name"] == name), None)
    if behavior == "create":
        if existing is not None:
            raise ValueError(f"ConfigMap {name} exists already: use behavior merge or replace")
        objects.append({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name}, "data": data})
        generated.add(name)
    elif existing is None:
        raise ValueError(f"behavior {behavior}: no ConfigMap {name} to change")
    elif behavior == "merge":
        existing["data"] = {**existing.get("data", {}), **data}
    elif behavior == "replace":
        existing["data"] = data
    else:
        raise Unsupported(f"configMapGenerator behavior {behavior}")
    if "labels" in options:
        target = existing if existing is not None else objects[-1]
        target["metadata"].setdefault("labels", {}).update(options["labels"])


def _patch(objects: list[Obj], patch: Obj) -> None:
    name = patch["metadata"]["name"]
    targets = [o for o in objects if o["kind"] == patch["kind"]
               and o["metadata"]["name"] == name]
    if len(targets) != 1:
        raise ValueError(f"patch for {patch['kind']}/{name} matches {len(targets)} objects")
    merged = merge(targets[0], patch)
    targets[0].clear()
    targets[0].update(merged)


def merge(base: Any, patch: Any, field: str = "") -> Any:
    """A strategic merge of ``patch`` into ``base`` (lists with a merge key merge by it;
    other lists are replaced; a null deletes)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = merge(out[key], value, key)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field]
        out = copy.deepcopy(base)
        for item in patch:
            match = next((i for i, b in enumerate(out) if b.get(key) == item.get(key)), None)
            if match is None:
                out.append(copy.deepcopy(item))
            else:
                out[match] = merge(out[match], item)
        return out
    return copy.deepcopy(patch)


def _containers(obj: Obj) -> list[Obj]:
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return [*spec.get("containers", []), *spec.get("initContainers", [])]


def _set_image(objects: list[Obj], image: Obj) -> None:
    for obj in objects:
        for container in _containers(obj):
            current = container.get("image", "")
            base, _, tag = current.partition(":")
            if base != image["name"]:
                continue
            name = image.get("newName", base)
            new_tag = image.get("newTag", tag)
            container["image"] = f"{name}:{new_tag}" if new_tag else name


def config_map_hash(config_map: Obj) -> str:
    """kustomize's name suffix: sha256 of Go's JSON encoding of kind, name and data,
    first ten hex digits with 0, 1, 3, a and e swapped for letters (no bad words).

    The name in the encoding is always empty: kustomize looks it up with
    ``yaml.Lookup("metadata/name")``, one segment that matches no field (checked
    against kustomize 5.0 to 5.5: ``x`` with ``A=b`` gives ``x-b9t2424hkf``).
    """
    encoded = json.dumps({"data": config_map.get("data", {}), "kind": "ConfigMap",
                          "name": ""},
                         sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        encoded = encoded.replace(char, escaped)
    digest = hashlib.sha256(encoded.encode()).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def _finish(objects: list[Obj], generated: set[str]) -> list[Obj]:
    renamed = {}
    for obj in objects:
        name = obj["metadata"]["name"]
        if obj["kind"] == "ConfigMap" and name in generated:
            obj["metadata"]["name"] = renamed[name] = f"{name}-{config_map_hash(obj)}"
    for obj in objects:
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in _containers(obj):
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef")
                if ref and ref.get("name") in renamed:
                    ref["name"] = renamed[ref["name"]]
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("configMapKeyRef")
                if ref and ref.get("name") in renamed:
                    ref["name"] = renamed[ref["name"]]
        for volume in spec.get("volumes", []):
            ref = volume.get("configMap")
            if ref and ref.get("name") in renamed:
                ref["name"] = renamed[ref["name"]]
    return objects
