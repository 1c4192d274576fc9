"""The conversions stage's Kubernetes manifests: valid offline, and consistent with the
stage's settings, its audiences file and the enrichment stage beside it.

``deploy/kubernetes/conversions`` (which includes ``deploy/conversions`` for the
audiences ConfigMap) and the example overlay that holds both stages are rendered by
``tests.deploy.kustomize`` and validated as ``test_kubernetes.py`` validates the
enrichment stage's; deliberately broken copies must fail.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from processor.entrypoints.conversion_settings import ConversionSettings
from processor.entrypoints.conversions import audiences_of
from processor.entrypoints.settings import env_name, load_as, parse_duration
from tests.deploy.kustomize import Obj, build
from tests.deploy.test_kubernetes import (
    BASE,
    KUBERNETES,
    OVERLAY,
    app_of,
    problems,
)
from tests.deploy.test_kubernetes import (
    rendered as enrichment,
)
from tests.promtools import DEPLOY

APP = "clearbit-conversions"
STAGE = KUBERNETES / "conversions"
AUDIENCES = DEPLOY / "conversions"
KINDS = ["ConfigMap", "ConfigMap", "Deployment", "PodDisruptionBudget", "ScaledObject",
         "Service", "ServiceAccount", "ServiceMonitor"]

DIRECTORIES = pytest.mark.parametrize("directory", [STAGE, OVERLAY], ids=["stage", "overlay"])


def objects_of(directory: Path) -> dict[str, Obj]:
    """The stage's objects by kind; the two ConfigMaps as ``ConfigMap`` (settings) and
    ``Audiences``."""
    found: dict[str, Obj] = {}
    for obj in build(directory):
        if app_of(obj) != APP:
            continue
        kind = obj["kind"]
        if kind == "ConfigMap" and obj["metadata"]["name"].startswith(f"{APP}-audiences-"):
            kind = "Audiences"
        assert kind not in found, f"two {kind}s"
        found[kind] = obj
    return found


def container(objects: dict[str, Obj]) -> Obj:
    containers: list[Obj] = pod(objects)["containers"]
    assert len(containers) == 1
    return containers[0]


def pod(objects: dict[str, Obj]) -> Obj:
    spec: Obj = objects["Deployment"]["spec"]["template"]["spec"]
    return spec


def mounts(objects: dict[str, Obj]) -> dict[str, tuple[Obj, Obj]]:
    """Volume name -> (its mount in the container, the volume)."""
    volumes = {v["name"]: v for v in pod(objects)["volumes"]}
    return {m["name"]: (m, volumes[m["name"]]) for m in container(objects)["volumeMounts"]}


def settings_of(objects: dict[str, Obj], **overrides: str) -> ConversionSettings:
    return load_as(ConversionSettings, {**objects["ConfigMap"]["data"], **overrides})


# --- valid against the API schemas ---------------------------------------------------


@DIRECTORIES
def test_manifests_validate_against_the_api_schemas(directory: Path) -> None:
    objects = [o for o in build(directory) if app_of(o) == APP]
    assert sorted(o["kind"] for o in objects) == KINDS
    assert problems(objects) == []


def test_the_overlay_holds_both_stages_and_nothing_unchecked() -> None:
    apps = {app_of(o) for o in build(OVERLAY)}
    assert apps == {"clearbit-enrichment", APP}
    assert {o["metadata"]["namespace"] for o in build(OVERLAY)} == {"enrichment"}


@pytest.mark.parametrize("directory", [STAGE, AUDIENCES], ids=["stage", "audiences"])
def test_the_renderer_agrees_with_kustomize(directory: Path) -> None:
    # The overlay, which includes both, is compared by test_kubernetes.py.
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


def _rename(mapping: Obj, old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


def _volume(objects: dict[str, Obj], name: str) -> Obj:
    return mounts(objects)[name][1]


Breakage = Callable[[dict[str, Obj]], None]
BREAKAGES: dict[str, Breakage] = {
    "deployment: misspelt emptyDir": lambda o: _rename(_volume(o, "state"), "emptyDir",
                                                       "emptydir"),
    "deployment: readOnly as a string": lambda o: container(o)["volumeMounts"][2].update(
        readOnly="true"),
    "deployment: misspelt configMap volume field": lambda o: _rename(
        _volume(o, "audiences")["configMap"], "name", "nmae"),
    "deployment: misspelt mountPath": lambda o: _rename(
        mounts(o)["state"][0], "mountPath", "mountpath"),
    "scaledobject: misspelt consumer group key": lambda o: _rename(
        o["ScaledObject"]["spec"]["triggers"][0]["metadata"], "consumerGroupFromEnv",
        "consumerGroupFromEnvironment"),
    "scaledobject: lagThreshold with a unit": lambda o: o["ScaledObject"]["spec"]["triggers"][0][
        "metadata"].update(lagThreshold="300k"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_a_broken_manifest_fails_validation(breakage: str) -> None:
    objects = copy.deepcopy(objects_of(OVERLAY))
    BREAKAGES[breakage](objects)
    assert problems(list(objects.values())), f"{breakage} went unnoticed"


# --- consistency: what the validators cannot know -------------------------------------


def _env_names() -> set[str]:
    return {env_name(field, ConversionSettings) for field in ConversionSettings.model_fields}


@DIRECTORIES
def test_every_config_map_key_is_a_setting_of_the_stage(directory: Path) -> None:
    data = objects_of(directory)["ConfigMap"]["data"]
    # The stage ignores unknown names (PROCESSOR_GROUP_ID is the enrichment stage's):
    # a misspelt or borrowed one would be a setting silently not applied.
    unknown = {k for k in data if k not in _env_names() and not k.startswith("PROCESSOR_KAFKA_")}
    assert not unknown, f"not settings of the conversions stage: {unknown}"
    settings = settings_of(objects_of(directory))
    assert settings.group_id == APP


@DIRECTORIES
def test_the_audiences_file_is_mounted_where_the_stage_reads_it(directory: Path,
                                                                tmp_path: Path) -> None:
    objects = objects_of(directory)
    settings = settings_of(objects)
    mount, volume = mounts(objects)["audiences"]
    assert mount["readOnly"] is True
    assert volume["configMap"]["name"] == objects["Audiences"]["metadata"]["name"]
    folder, _, key = settings.audiences_file.rpartition("/")
    assert folder == mount["mountPath"]
    files = objects["Audiences"]["data"]
    assert set(files) == {key}
    assert files[key] == (AUDIENCES / "audiences.example.yaml").read_text()
    # And the stage accepts it, as it would at start.
    copy_ = tmp_path / key
    copy_.write_text(files[key])
    audiences = audiences_of(settings_of(objects, PROCESSOR_CONV_AUDIENCES_FILE=str(copy_)))
    assert [a.key for a in audiences] == ["mql_midmarket_7d"]


@DIRECTORIES
def test_the_stores_have_a_bounded_scratch_volume(directory: Path) -> None:
    objects = objects_of(directory)
    mount, volume = mounts(objects)["state"]
    assert settings_of(objects).state_dir == mount["mountPath"]
    assert mount.get("readOnly", False) is False
    # Rebuilt from the changelogs on any new pod: nothing here needs to outlive it.
    assert set(volume) == {"name", "emptyDir"}
    assert "medium" not in volume["emptyDir"]  # on disk, not in the memory limit
    size = _gibibytes(volume["emptyDir"]["sizeLimit"])
    resources = container(objects)["resources"]
    assert _gibibytes(resources["requests"]["ephemeral-storage"]) >= size
    assert _gibibytes(resources["limits"]["ephemeral-storage"]) >= size


def _gibibytes(quantity: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(Mi|Gi)", quantity)
    assert match, f"{quantity}: write sizes in Mi or Gi"
    return float(match[1]) / (1024 if match[2] == "Mi" else 1)


@DIRECTORIES
def test_the_pod_runs_the_stage_wired_to_its_config_and_probes(directory: Path) -> None:
    objects = objects_of(directory)
    deployment, main = objects["Deployment"], container(objects)
    settings = settings_of(objects)
    assert "replicas" not in deployment["spec"]  # KEDA's HPA owns the count
    assert main["args"] == ["conversions"]
    assert main["envFrom"] == [{"configMapRef": {"name": objects["ConfigMap"]["metadata"]
                                                 ["name"]}}]
    assert "env" not in main  # no Secret: this stage calls no API
    assert {p["name"]: p["containerPort"] for p in main["ports"]} == {
        "metrics": settings.metrics_port}
    assert main["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    # A restore holds the loop: liveness gives up only after librdkafka's default
    # max.poll.interval.ms (300 s), past which the group has dropped the member.
    liveness = main["livenessProbe"]
    assert 60 + liveness["periodSeconds"] * liveness["failureThreshold"] >= 300
    shutdown = parse_duration(objects["ConfigMap"]["data"]["PROCESSOR_SHUTDOWN_TIMEOUT"])
    assert pod(objects)["terminationGracePeriodSeconds"] >= shutdown + 20


@DIRECTORIES
def test_the_pod_runs_locked_down_with_bounded_resources(directory: Path) -> None:
    objects = objects_of(directory)
    spec, main = pod(objects), container(objects)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001  # the image's USER
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == objects["ServiceAccount"]["metadata"]["name"]
    resources = main["resources"]
    for kind in ("requests", "limits"):
        assert set(resources[kind]) == {"cpu", "memory", "ephemeral-storage"}
    assert resources["requests"]["memory"] == resources["limits"]["memory"]


@DIRECTORIES
def test_service_monitor_pdb_and_scaler_select_the_right_things(directory: Path) -> None:
    objects = objects_of(directory)
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service = objects["Service"]
    for selector in (objects["Deployment"]["spec"]["selector"]["matchLabels"],
                     service["spec"]["selector"],
                     objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= pod_labels.items()
    monitor = objects["ServiceMonitor"]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["endpoints"]} == {p["name"] for p in
                                                         service["spec"]["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"

    scaled = objects["ScaledObject"]["spec"]
    target = scaled["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment",
                                                objects["Deployment"]["metadata"]["name"])
    assert target["envSourceContainerName"] == container(objects)["name"]
    data = objects["ConfigMap"]["data"]
    (trigger,) = scaled["triggers"]
    metadata = trigger["metadata"]
    assert metadata["consumerGroupFromEnv"] == "PROCESSOR_CONV_GROUP_ID"
    assert metadata["bootstrapServersFromEnv"] == "KAFKA_BOOTSTRAP_SERVERS"
    for key, variable in metadata.items():
        if key.endswith("FromEnv"):
            assert variable in data, f"{key}: {variable} is not in the ConfigMap"
    # No topic: the lag is summed over every topic the group commits on, the inputs
    # and the repartition topics alike.
    assert not {"topic", "topicFromEnv"} & set(metadata)
    assert metadata["offsetResetPolicy"] == ConversionSettings.model_fields[
        "auto_offset_reset"].default
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]


@pytest.mark.parametrize(("enrichment_directory", "directory"), [(BASE, STAGE),
                                                                 (OVERLAY, OVERLAY)],
                         ids=["bases", "overlay"])
def test_the_stage_reads_what_the_enrichment_stage_reads_and_writes(
        enrichment_directory: Path, directory: Path) -> None:
    first = enrichment(enrichment_directory)
    objects = objects_of(directory)
    data, settings = first["ConfigMap"]["data"], settings_of(objects)
    assert settings.bootstrap_servers == data["KAFKA_BOOTSTRAP_SERVERS"]
    assert set(settings.identify_topics) == {data["PROCESSOR_INPUT_TOPIC"],
                                             data["PROCESSOR_OUTPUT_TOPIC"]}
    assert settings.group_id != data["PROCESSOR_GROUP_ID"]
    assert container(objects)["image"] == first["Deployment"]["spec"]["template"]["spec"][
        "containers"][0]["image"]


def test_no_secret_or_email_address_in_any_file() -> None:
    for folder in (STAGE, AUDIENCES, OVERLAY):
        for path in folder.rglob("*"):
            if path.is_file():
                text = path.read_text()
                assert not re.search(r"\b[sp]k_[A-Za-z0-9]", text), path
                assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", text), path


def test_the_env_file_is_read_alike_by_kustomize_and_compose() -> None:
    # kustomize keeps quotes, `$` and text after `#` literally; compose would not.
    for line in (STAGE / "conversions.env").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*=[^\s\"'$#]+", line), line
