"""The Helm values of deploy/helm hold together with the other deployment files: what can be checked
without a cluster or a helm binary.

Neither runs on the machines that test this project, so the chart is not rendered here. These tests
read the values as YAML and compare them with deploy/dagster.yaml and deploy/docker-compose.yaml,
so the Kubernetes deployment cannot drift from the instance and the services that CI runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
VALUES = DEPLOY / "helm" / "values.yaml"

# The largest peak a run was measured at: a 10M-line day, stage + every KPI, 1,529 MB
# (docs/performance.md). Read as MiB, the larger of the two readings of "MB".
PEAK_RUN_MB = 1529
PEAK_RUN_BYTES = PEAK_RUN_MB * 2**20
QUANTITY_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def snake_keys(mapping: dict[str, Any]) -> dict[str, Any]:
    """The chart's camelCase keys as dagster.yaml's snake_case ones (top level only: nested values,
    such as a tag limit's ``applyLimitPerUniqueValue``, are spelled the same in both files)."""
    return {re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower(): value for key, value in mapping.items()}


def quantity_bytes(quantity: str | int) -> int:
    """A Kubernetes memory quantity (``3Gi``, ``2500M``, ``1073741824``) in bytes."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kMGT]i?)?", str(quantity))
    assert match, f"not a memory quantity: {quantity!r}"
    return int(float(match[1]) * QUANTITY_UNITS[match[2] or ""])


def code_deployment(values: dict[str, Any]) -> dict[str, Any]:
    [deployment] = values["dagster-user-deployments"]["deployments"]
    return deployment


def test_the_values_parse_and_launch_each_run_as_a_kubernetes_job() -> None:
    values = load(VALUES)
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert "k8sRunLauncher" in values["runLauncher"]["config"]
    assert values["dagster-user-deployments"]["enabled"] is True


def test_the_queue_pools_monitoring_and_retries_equal_the_instance_file() -> None:
    """The chart writes its own dagster.yaml from these values; every setting deploy/dagster.yaml
    makes about the queue and recovery must come out the same, number for number."""
    values, instance = load(VALUES), load(DEPLOY / "dagster.yaml")
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] is True
    assert coordinator["type"] == instance["run_coordinator"]["class"] == "QueuedRunCoordinator"
    # The limits live under `concurrency` only: the chart and Dagster refuse them in both places.
    queued = coordinator.get("config", {}).get("queuedRunCoordinator", {})
    assert not {"maxConcurrentRuns", "tagConcurrencyLimits"} & set(queued)

    concurrency = values["concurrency"]
    assert concurrency["enabled"] is True
    assert snake_keys(concurrency["runs"]) == instance["concurrency"]["runs"]
    assert snake_keys(concurrency["pools"]) == instance["concurrency"]["pools"]
    daemon = values["dagsterDaemon"]
    assert snake_keys(daemon["runMonitoring"]) == instance["run_monitoring"]
    assert snake_keys(daemon["runRetries"]) == instance["run_retries"]
    assert values["telemetry"] == instance["telemetry"]


def test_the_instance_storage_uses_psycopg2_like_the_instance_file() -> None:
    """SQLAlchemy 2.1 reads a bare postgresql:// URL as psycopg 3, which dagster-postgres does not
    support: the chart must name the driver as deploy/dagster.yaml does."""
    values, instance = load(VALUES), load(DEPLOY / "dagster.yaml")
    scheme = instance["storage"]["postgres"]["postgres_db"]["scheme"]
    assert values["postgresql"]["postgresqlScheme"] == scheme == "postgresql+psycopg2"
    # An external server whose password comes from a secret the chart does not generate.
    assert values["postgresql"]["enabled"] is False
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]
    assert values["migrate"]["enabled"] is True


def test_the_code_location_is_the_compose_code_service() -> None:
    """Same image, same gRPC command, and only variables the compose code service also sets."""
    deployment = code_deployment(load(VALUES))
    code = load(DEPLOY / "docker-compose.yaml")["services"]["code"]
    assert deployment["image"]["repository"] == code["image"].rsplit(":", 1)[0]
    # The chart runs `dagster api grpc -h 0.0.0.0 -p <port>` followed by dagsterApiGrpcArgs.
    command = ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", str(deployment["port"])]
    assert [*command, *deployment["dagsterApiGrpcArgs"]] == code["command"]

    env = deployment["env"]
    names = set(env) if isinstance(env, dict) else {item["name"] for item in env}
    assert names and names <= set(code["environment"])
    assert all(name.startswith(("KPI_", "DAGSTER_")) for name in names)
    assert deployment["envSecrets"], "KPI_WAREHOUSE_URL comes from a secret"
    # The data root is the mounted volume, at the path the compose services use.
    [mount] = deployment["volumeMounts"]
    assert mount["mountPath"] == env["KPI_DATA_DIR"] == code["environment"]["KPI_DATA_DIR"]
    assert mount["name"] in {volume["name"] for volume in deployment["volumes"]}


def test_a_run_pod_has_room_for_the_largest_measured_run() -> None:
    """The run pod's memory limit leaves half again the largest measured peak, and its request
    reserves at least that peak; the code location sets no resources, which the chart would pass
    to every run pod over these."""
    values = load(VALUES)
    assert f"**{PEAK_RUN_MB:,} MB**" in (REPO / "docs" / "performance.md").read_text()
    resources = values["runLauncher"]["config"]["k8sRunLauncher"]["resources"]
    assert quantity_bytes(resources["limits"]["memory"]) >= 1.5 * PEAK_RUN_BYTES
    assert quantity_bytes(resources["requests"]["memory"]) >= PEAK_RUN_BYTES
    assert "resources" not in code_deployment(values)
