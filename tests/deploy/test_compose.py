"""deploy/compose.yaml cannot run here (no Docker engine): these tests keep it
consistent with the Kubernetes manifests and with the files it mounts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from processor.devkit.broker import KAFKA_VERSION
from processor.entrypoints import conversion_topics
from processor.entrypoints.conversion_settings import ConversionSettings
from processor.entrypoints.settings import Settings, env_name, load, load_as, parse_duration
from tests.deploy.kustomize import build
from tests.promtools import DEPLOY

COMPOSE = DEPLOY / "compose.yaml"


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def services() -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"]
    return found


def _config_map() -> dict[str, str]:
    (config_map,) = [o for o in build(DEPLOY / "kubernetes" / "base") if o["kind"] == "ConfigMap"]
    data: dict[str, str] = config_map["data"]
    return data


def test_the_stack_has_every_service() -> None:
    assert set(services()) == {"kafka", "topics", "clearbit", "processor", "conversions",
                               "prometheus", "grafana"}


def test_the_processor_reads_the_config_maps_own_file() -> None:
    processor = services()["processor"]
    assert processor["env_file"] == ["kubernetes/base/processor.env"]
    overrides = processor["environment"]
    names = {env_name(field) for field in Settings.model_fields}
    assert set(overrides) <= names
    # Only what must differ in compose is overridden; the rest is the ConfigMap's.
    assert set(overrides) == {"KAFKA_BOOTSTRAP_SERVERS", "CLEARBIT_BASE_URL",
                              "CLEARBIT_API_KEY", "CLEARBIT_RATE_LIMIT_PER_MINUTE"}
    settings = load({**_config_map(), **overrides})
    settings.check_api_key()
    assert settings.clearbit_base_url == "http://clearbit:8080"
    assert settings.bootstrap_servers == "kafka:9092"


def test_the_processor_container_matches_the_pod() -> None:
    processor = services()["processor"]
    (deployment,) = [o for o in build(DEPLOY / "kubernetes" / "base") if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert processor["build"]["target"] == "runtime"
    assert processor["user"] == f"{pod['securityContext']['runAsUser']}:" \
                                f"{pod['securityContext']['runAsGroup']}"
    assert processor["read_only"] is True
    assert processor["cap_drop"] == ["ALL"]
    assert parse_duration(processor["stop_grace_period"]) == pod["terminationGracePeriodSeconds"]
    port = _config_map()["PROCESSOR_METRICS_PORT"]
    assert processor["ports"] == [f"{port}:{port}"]
    assert f":{port}/readyz" in " ".join(processor["healthcheck"]["test"])


def test_the_clearbit_server_key_is_the_processors() -> None:
    clearbit, processor = services()["clearbit"], services()["processor"]
    command = clearbit["command"]
    assert command[command.index("--key") + 1] == processor["environment"]["CLEARBIT_API_KEY"]
    assert clearbit["build"]["target"] == "devkit"


def test_topics_are_the_config_maps() -> None:
    script = services()["topics"]["command"][0]
    data = _config_map()
    for variable in ("PROCESSOR_INPUT_TOPIC", "PROCESSOR_OUTPUT_TOPIC", "PROCESSOR_DLQ_TOPIC"):
        assert data[variable] in re.split(r"[\s;]+", script)


def test_kafka_is_the_version_the_tests_run() -> None:
    for name in ("kafka", "topics"):
        assert services()[name]["image"] == f"apache/kafka:{KAFKA_VERSION}"


def test_every_mounted_file_exists_and_prometheus_scrapes_the_processor() -> None:
    for service in services().values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert (DEPLOY / source).exists(), source
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "clearbit-enrichment"]
    port = _config_map()["PROCESSOR_METRICS_PORT"]
    assert job["static_configs"][0]["targets"] == [f"processor:{port}"]
    assert job["job_name"] == "clearbit-enrichment"  # the Service name, as on Kubernetes


def test_grafana_provisioning_points_at_the_mounted_dashboard() -> None:
    grafana = services()["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    provisioning = DEPLOY / "grafana" / "provisioning"
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load((provisioning / "dashboards" / "enrichment.yaml").read_text())
    folder = provider["providers"][0]["options"]["path"]
    dashboard_path = mounts["./grafana/dashboard.json"]
    assert Path(dashboard_path).parent == Path(folder)
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == dashboard_path
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus"
    assert re.fullmatch(r"http://prometheus:9090", source["url"])


def test_the_file_says_it_is_untested_here() -> None:
    assert "UNTESTED" in COMPOSE.read_text()


# --- the conversions stage ------------------------------------------------------------

CONVERSIONS = DEPLOY / "kubernetes" / "conversions"


def _conversions_objects() -> dict[str, Any]:
    return {o["kind"]: o for o in build(CONVERSIONS)
            if not o["metadata"]["name"].startswith("clearbit-conversions-audiences")}


def _conversions_settings() -> ConversionSettings:
    service = services()["conversions"]
    data = _conversions_objects()["ConfigMap"]["data"]
    return load_as(ConversionSettings, {**data, **service["environment"]})


def test_the_conversions_stage_reads_its_config_maps_own_file() -> None:
    service = services()["conversions"]
    assert service["env_file"] == ["kubernetes/conversions/conversions.env"]
    names = {env_name(field, ConversionSettings) for field in ConversionSettings.model_fields}
    assert set(service["environment"]) <= names
    assert set(service["environment"]) == {"KAFKA_BOOTSTRAP_SERVERS"}
    assert _conversions_settings().bootstrap_servers == "kafka:9092"


def test_the_conversions_container_matches_its_pod() -> None:
    service = services()["conversions"]
    deployment = _conversions_objects()["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    settings = _conversions_settings()
    assert service["command"] == container["args"]
    assert service["image"] == services()["processor"]["image"]
    assert service["build"] == services()["processor"]["build"]
    assert service["user"] == f"{pod['securityContext']['runAsUser']}:" \
                              f"{pod['securityContext']['runAsGroup']}"
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert parse_duration(service["stop_grace_period"]) == pod["terminationGracePeriodSeconds"]
    port = settings.metrics_port
    assert service["ports"] == [f"{port}:{port}"]
    assert f":{port}/readyz" in " ".join(service["healthcheck"]["test"])
    # The example audiences where the stage reads them; the stores on a scratch tmpfs.
    mounts = dict(v.split(":")[:2] for v in service["volumes"])
    assert mounts == {"./conversions/audiences.example.yaml": settings.audiences_file}
    assert settings.state_dir in service["tmpfs"]


def test_the_topics_job_creates_what_the_conversions_stage_needs() -> None:
    script = services()["topics"]["command"][0]
    loops = [loop for loop in script.split("done") if loop.strip(" ;")]
    for need in conversion_topics.needs(_conversions_settings()):
        (loop,) = [lp for lp in loops if need.name in re.split(r"[\s;]+", lp)]
        compacted = "cleanup.policy=compact" in loop
        assert compacted == (need.cleanup_policy == "compact"), need.name
    # Co-partitioned: one partition count for every topic.
    assert len(set(re.findall(r"--partitions (\d+)", script))) == 1


def test_prometheus_scrapes_the_conversions_stage_and_loads_its_rules() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    service_name = _conversions_objects()["Service"]["metadata"]["name"]
    port = _conversions_settings().metrics_port
    assert jobs[service_name]["static_configs"][0]["targets"] == [f"conversions:{port}"]
    mounted = {Path(v.split(":")[1]).name for v in services()["prometheus"]["volumes"]}
    assert set(config["rule_files"]) <= mounted
