"""The Kubernetes manifests: valid against the API schemas, offline, and consistent.

Built-in kinds are checked by ``kubernetes-validate`` against Kubernetes
``KUBERNETES_VERSION``'s OpenAPI schemas in strict mode (an unknown field fails,
as ``kubectl apply`` rejects it); the ServiceMonitor and the ScaledObject
against the JSON Schemas kept in ``deploy/kubernetes/schemas`` (see their
descriptions). Both the base and the example overlay are rendered (by
``tests.deploy.kustomize``) and checked, and deliberately broken copies must
fail, so the check is known to bite. The overlay also holds the conversions
stage, whose objects ``test_kubernetes_conversions.py`` checks.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from processor.entrypoints.settings import Settings, env_name, load, parse_duration
from tests.deploy.kustomize import Obj, build
from tests.promtools import DEPLOY

# The oldest Kubernetes still in upstream support when this was written; every
# field used here exists since 1.27 at least.
KUBERNETES_VERSION = "1.32"
KUBERNETES = DEPLOY / "kubernetes"
BASE = KUBERNETES / "base"
OVERLAY = KUBERNETES / "overlays" / "example"
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring.coreos.com-v1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda.sh-v1alpha1.json",
}
KINDS = {"ServiceAccount", "ConfigMap", "Deployment", "Service", "ServiceMonitor",
         "PodDisruptionBudget", "ScaledObject"}
APP = "clearbit-enrichment"
# The Kafka scaler's metadata keys (KEDA 2.1x documentation): the CRD types
# metadata as a string map, so a misspelt key would otherwise be silently ignored.
KAFKA_SCALER_KEYS = {
    "bootstrapServers", "bootstrapServersFromEnv", "consumerGroup", "consumerGroupFromEnv",
    "topic", "topicFromEnv", "lagThreshold", "activationLagThreshold", "offsetResetPolicy",
    "allowIdleConsumers", "scaleToZeroOnInvalidOffset", "excludePersistentLag", "version",
    "partitionLimitation", "limitToPartitionsWithLag", "ensureEvenDistributionOfPartitions",
    "sasl", "tls", "unsafeSsl", "saslTokenProvider", "awsRegion",
}
# What one Clearbit account allows (requests/minute), shared by every replica.
ACCOUNT_RATE_LIMIT = 600


@cache
def _schema(filename: str) -> Obj:
    schema: Obj = json.loads((KUBERNETES / "schemas" / filename).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def schema_problems(obj: Obj) -> list[str]:
    """Why ``obj`` would be refused by the API server (empty when it would not)."""
    where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    crd = CRD_SCHEMAS.get((obj.get("apiVersion"), obj.get("kind")))
    if crd is not None:
        validator = jsonschema.Draft202012Validator(_schema(crd))
        return [f"{where}: {'.'.join(map(str, e.path))}: {e.message}"
                for e in validator.iter_errors(obj)]
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{where}: {'.'.join(map(str, error.path))}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [f"{where}: {error.message}"]
    return []


def scaler_problems(obj: Obj) -> list[str]:
    if obj["kind"] != "ScaledObject":
        return []
    problems = []
    for trigger in obj["spec"]["triggers"]:
        if trigger["type"] != "kafka":
            continue
        metadata = trigger["metadata"]
        problems += [f"unknown kafka scaler key {key}"
                     for key in sorted(set(metadata) - KAFKA_SCALER_KEYS)]
        if not re.fullmatch(r"[1-9][0-9]*", metadata.get("lagThreshold", "")):
            problems.append("lagThreshold must be a positive integer")
        if metadata.get("offsetResetPolicy", "latest") not in {"earliest", "latest"}:
            problems.append("offsetResetPolicy must be earliest or latest")
    return problems


def problems(objects: list[Obj]) -> list[str]:
    found = []
    for obj in objects:
        found += schema_problems(obj) + scaler_problems(obj)
    return found


def app_of(obj: Obj) -> str:
    """The stage an object belongs to (its ``app.kubernetes.io/name`` label)."""
    return str(obj["metadata"].get("labels", {}).get("app.kubernetes.io/name", ""))


def rendered(directory: Path) -> dict[str, Obj]:
    """The enrichment stage's objects, by kind."""
    return {obj["kind"]: obj for obj in build(directory) if app_of(obj) == APP}


DIRECTORIES = pytest.mark.parametrize("directory", [BASE, OVERLAY], ids=["base", "overlay"])


@DIRECTORIES
def test_manifests_validate_against_the_api_schemas(directory: Path) -> None:
    objects = [o for o in build(directory) if app_of(o) == APP]
    assert sorted(o["kind"] for o in objects) == sorted(KINDS)
    assert problems(objects) == []


@DIRECTORIES
def test_the_renderer_agrees_with_kustomize(directory: Path) -> None:
    kustomize, kubectl = shutil.which("kustomize"), shutil.which("kubectl")
    if kustomize:
        command = [kustomize, "build"]
    elif kubectl:
        command = [kubectl, "kustomize"]
    else:
        pytest.skip("neither kustomize nor kubectl on the PATH to compare the renderer with")
    output = subprocess.run([*command, str(directory)], capture_output=True, text=True,
                            check=True, timeout=60).stdout
    real = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(output) if o}
    ours = {(o["kind"], o["metadata"]["name"]): o for o in build(directory)}
    assert ours == real


def _container(objects: dict[str, Obj]) -> Obj:
    containers: list[Obj] = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _rename(mapping: Obj, old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


Breakage = Callable[[dict[str, Obj]], None]
BREAKAGES: dict[str, Breakage] = {
    "deployment: misspelt securityContext field": lambda o: _rename(
        _container(o)["securityContext"], "readOnlyRootFilesystem", "readOnlyRootFileSystem"),
    "deployment: port as a string": lambda o: _container(o)["ports"][0].update(
        containerPort="9108"),
    "deployment: misspelt probe field": lambda o: _rename(
        _container(o)["livenessProbe"]["httpGet"], "port", "prot"),
    "service: misspelt targetPort": lambda o: _rename(
        o["Service"]["spec"]["ports"][0], "targetPort", "tragetPort"),
    "pdb: misspelt maxUnavailable": lambda o: _rename(
        o["PodDisruptionBudget"]["spec"], "maxUnavailable", "maxUnavailble"),
    "servicemonitor: misspelt endpoint field": lambda o: _rename(
        o["ServiceMonitor"]["spec"]["endpoints"][0], "interval", "intervall"),
    "servicemonitor: malformed interval": lambda o: o["ServiceMonitor"]["spec"]["endpoints"][0]
        .update(interval="15 seconds"),
    "scaledobject: misspelt spec field": lambda o: _rename(
        o["ScaledObject"]["spec"], "maxReplicaCount", "maxReplicas"),
    "scaledobject: replica count as a string": lambda o: o["ScaledObject"]["spec"].update(
        minReplicaCount="1"),
    "scaledobject: misspelt kafka metadata key": lambda o: _rename(
        o["ScaledObject"]["spec"]["triggers"][0]["metadata"], "lagThreshold", "lagTreshold"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_a_broken_manifest_fails_validation(breakage: str) -> None:
    objects = copy.deepcopy(rendered(OVERLAY))
    BREAKAGES[breakage](objects)
    assert problems(list(objects.values())), f"{breakage} went unnoticed"


# --- consistency: what the validators cannot know -------------------------------------


def _env_names() -> set[str]:
    return {env_name(field) for field in Settings.model_fields}


@DIRECTORIES
def test_the_config_map_is_a_valid_configuration(directory: Path) -> None:
    data = rendered(directory)["ConfigMap"]["data"]
    unknown = {k for k in data if k not in _env_names() and not k.startswith("PROCESSOR_KAFKA_")}
    assert not unknown, f"not settings of the processor: {unknown}"
    assert "CLEARBIT_API_KEY" not in data  # the key comes from the Secret
    settings = load({**data, "CLEARBIT_API_KEY": "sk_validation_only"})
    settings.check_api_key()


@DIRECTORIES
def test_the_pod_is_wired_to_its_config_secret_and_probes(directory: Path) -> None:
    objects = rendered(directory)
    data = objects["ConfigMap"]["data"]
    deployment = objects["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container = _container(objects)
    assert "replicas" not in deployment["spec"]  # KEDA's HPA owns the count
    assert container["envFrom"] == [{"configMapRef": {"name": objects["ConfigMap"]["metadata"]
                                                      ["name"]}}]
    assert container["env"] == [{"name": "CLEARBIT_API_KEY", "valueFrom": {"secretKeyRef": {
        "name": "clearbit-enrichment", "key": "CLEARBIT_API_KEY"}}}]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": int(data["PROCESSOR_METRICS_PORT"])}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    # SIGTERM -> drain (shutdown timeout) -> flush, commit, close, lag monitor: 20 s more.
    shutdown = parse_duration(data["PROCESSOR_SHUTDOWN_TIMEOUT"])
    assert pod["terminationGracePeriodSeconds"] >= shutdown + 20


@DIRECTORIES
def test_the_pod_runs_locked_down_with_bounded_resources(directory: Path) -> None:
    objects = rendered(directory)
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    container = _container(objects)
    security = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's USER
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False
    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert set(resources[kind]) == {"cpu", "memory"}


@DIRECTORIES
def test_service_monitor_pdb_and_scaler_select_the_right_things(directory: Path) -> None:
    objects = rendered(directory)
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service = objects["Service"]
    for selector in (objects["Deployment"]["spec"]["selector"]["matchLabels"],
                     service["spec"]["selector"],
                     objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= pod_labels.items()
    monitor = objects["ServiceMonitor"]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["endpoints"]} <= {p["name"] for p in
                                                         service["spec"]["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"

    scaled = objects["ScaledObject"]["spec"]
    target = scaled["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment",
                                                objects["Deployment"]["metadata"]["name"])
    assert target["envSourceContainerName"] == _container(objects)["name"]
    data = objects["ConfigMap"]["data"]
    (trigger,) = scaled["triggers"]
    for key, variable in trigger["metadata"].items():
        if key.endswith("FromEnv"):
            assert variable in data, f"{key}: {variable} is not in the ConfigMap"
    assert trigger["metadata"]["offsetResetPolicy"] == Settings.model_fields[
        "auto_offset_reset"].default
    # A full scale-out must stay within the account's rate limit (processor.env).
    per_pod = int(data["CLEARBIT_RATE_LIMIT_PER_MINUTE"])
    assert per_pod * scaled["maxReplicaCount"] <= ACCOUNT_RATE_LIMIT
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]


def test_no_secret_in_any_manifest() -> None:
    for path in KUBERNETES.rglob("*"):
        if path.is_file():
            assert not re.search(r"\b[sp]k_[A-Za-z0-9]", path.read_text()), path


def test_the_env_file_is_read_alike_by_kustomize_and_compose() -> None:
    # kustomize keeps quotes, `$` and text after `#` literally; compose would not.
    for line in (BASE / "processor.env").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*=[^\s\"'$#]+", line), line


def test_the_crd_schemas_are_valid_json_schemas() -> None:
    for filename in CRD_SCHEMAS.values():
        _schema(filename)
    assert {p.name for p in (KUBERNETES / "schemas").iterdir()} == set(CRD_SCHEMAS.values())
