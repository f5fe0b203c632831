"""The deployment files hold together: what can be checked without a Docker engine or a cluster.

No Docker engine runs on the machines that test this project, so the image is not built here and
the compose file is not started; its service commands are the ones test_topology.py runs.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml

from deploy_tests.support import instance_database
from kpi_pipeline_tests.postgres import POSTGRES_ENV, POSTGRES_SKIP_REASON

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_the_docker_instance_is_the_instance_with_the_docker_run_launcher() -> None:
    base, docker = load(DEPLOY / "dagster.yaml"), load(DEPLOY / "docker" / "dagster.yaml")
    launcher = docker.pop("run_launcher")
    assert docker == base
    assert (launcher["module"], launcher["class"]) == ("dagster_docker", "DockerRunLauncher")
    # Every variable the code location reads reaches the run containers.
    compose = load(DEPLOY / "docker-compose.yaml")
    code_env = set(compose["services"]["code"]["environment"]) - {"DAGSTER_HOME", "DAGSTER_CURRENT_IMAGE"}
    assert set(launcher["config"]["env_vars"]) == code_env
    [volume] = launcher["config"]["container_kwargs"]["volumes"]
    assert volume.split(":")[0] in compose["volumes"]
    assert volume.split(":")[1] == compose["services"]["code"]["environment"]["KPI_DATA_DIR"]


@pytest.mark.skipif(not os.environ.get(POSTGRES_ENV), reason=POSTGRES_SKIP_REASON)
@pytest.mark.parametrize("path", ["dagster.yaml", "docker/dagster.yaml"])
def test_the_instance_files_load_as_dagster_instances(
    path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dagster validates the file against its instance schema and builds every part it names, its
    storage on a new database of the local PostgreSQL server."""
    pytest.importorskip("dagster_docker", reason="no deploy extra installed (pip install -e .[deploy])")
    shutil.copy(DEPLOY / path, tmp_path / "dagster.yaml")
    with instance_database() as pg:
        for name, value in pg.items():
            monkeypatch.setenv(name, value)
        with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
            config = instance.get_concurrency_config()
            assert config.run_queue_config.max_concurrent_runs == 4
            assert config.pool_config.default_pool_limit == 2
            assert instance.run_retries_enabled and instance.run_monitoring_enabled
            # A killed run's pool slots come back (the daemon frees them after it ends).
            assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 60
            expected = "DockerRunLauncher" if path.startswith("docker") else "DefaultRunLauncher"
            assert type(instance.run_launcher).__name__ == expected


def test_compose_services_share_one_image_instance_and_workspace() -> None:
    compose = load(DEPLOY / "docker-compose.yaml")
    services = compose["services"]
    dagster_services = ("migrate", "code", "webserver", "daemon")
    assert {services[name]["image"] for name in dagster_services} == {"kpi-pipeline:latest"}
    assert services["code"]["environment"]["DAGSTER_CURRENT_IMAGE"] == "kpi-pipeline:latest"
    for name in dagster_services:
        volumes = {v.split(":")[1]: v.split(":")[0] for v in services[name]["volumes"]}
        assert volumes["/opt/dagster/home/dagster.yaml"] == "./docker/dagster.yaml"
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
    workspace = load(DEPLOY / "workspace.yaml")["load_from"][0]["grpc_server"]
    code = services["code"]["command"]
    assert workspace["host"] == "code" and str(workspace["port"]) == code[code.index("-p") + 1]
    for name in ("webserver", "daemon"):
        assert services[name]["command"][-2:] == ["-w", "/opt/dagster/workspace.yaml"]
    # The code location is the definitions the UI loads locally (pyproject's [tool.dagster]).
    assert code[code.index("-m") + 1] == "kpi_pipeline.definitions"


def test_the_image_installs_the_project_with_the_makefile_setup_recipe() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    runs = re.findall(r"^RUN (.+)$", dockerfile, flags=re.M)
    assert "make setup VENV=/opt/venv EXTRAS=${EXTRAS}" in runs
    [extras] = re.findall(r"^ARG EXTRAS=(.+)$", dockerfile, flags=re.M)
    assert extras.split(",") == ["deploy", "s3"]
    assert set(extras.split(",")) <= set(load_pyproject_extras())
    makefile = (REPO / "Makefile").read_text()
    assert '$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"' in makefile
    copied = re.findall(r"^COPY (.+) \./", dockerfile, flags=re.M)
    needed = {"pyproject.toml", "README.md", "Makefile", "kpi_pipeline"}
    assert needed <= {part for line in copied for part in line.split()}
    assert "deploy" in load_pyproject_extras()


def load_pyproject_extras() -> dict[str, list[str]]:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def test_compose_reads_no_variable_that_docs_deploy_does_not_name() -> None:
    compose = (DEPLOY / "docker-compose.yaml").read_text()
    used = set(re.findall(r"\$\{([A-Z_]+)", compose))
    guide = (REPO / "docs" / "deploy.md").read_text()
    assert used and not sorted(v for v in used if v not in guide)
