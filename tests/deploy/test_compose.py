"""``deploy/docker-compose.yml`` and the Dockerfiles, checked without a Docker engine.

The files are validated against the Compose Specification's JSON schema
(``compose_spec.json``, taken from the docker-compose 1.29.2 package on PyPI),
then against the project: the same processes as the Procfile, settings that
exist, one data volume everywhere, and a Redis configuration that a real
``redis-server`` accepts and that keeps every message.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import pytest
import redis
import yaml
from deploy_harness import free_port
from redis_support import wait_until_up

from indexer.cli import build_parser
from indexer.config import Settings
from workers.supervisor import PROCESSES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# Draft 2019-09, as its "$schema" says (with a trailing "#" jsonschema does not look up).
SPEC = jsonschema.Draft201909Validator(
    json.loads((Path(__file__).parent / "compose_spec.json").read_text())
)
PROCESS_BY_SERVICE = {"api": "web", "worker-ingest": "ingest", "worker-embed": "embed",
                      "worker-index": "index", "beat": "beat"}  # fmt: skip


def load(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return load("docker-compose.yml")


def substitute(value: str) -> str:
    """Compose's ``${VAR:-default}`` / ``${VAR:?error}`` with a value a deployment would give."""
    def one(match: re.Match) -> str:
        name, op, rest = match.group(1), match.group(2), match.group(3)
        if op == ":-":
            return rest
        return {"LOOKALIKE_API_KEY": "k" * 32}.get(name, "x")

    return re.sub(r"\$\{(\w+)(:[-?])?([^}]*)\}", one, str(value))


def lookalike_services(compose: dict) -> dict[str, dict]:
    return {name: compose["services"][name] for name in PROCESS_BY_SERVICE}


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.gpu.yml"])
def test_compose_files_follow_the_compose_specification(name):
    SPEC.validate(load(name))


def test_the_schema_catches_a_broken_file(compose):
    broken = json.loads(json.dumps(compose))
    broken["services"]["api"]["ports"] = {"8000": 8000}
    with pytest.raises(jsonschema.ValidationError):
        SPEC.validate(broken)


def test_every_process_of_the_procfile_has_its_service(compose):
    assert set(compose["services"]) == {"redis", "postgres", *PROCESS_BY_SERVICE}
    commands = {p.name: p.command() for p in PROCESSES}
    parser = build_parser()
    for service, spec in lookalike_services(compose).items():
        command = spec["command"]
        if service == "api":  # gunicorn with the production config, as `lookalike serve`
            assert command == ["gunicorn", "-c", "deploy/gunicorn.conf.py"]
            assert (ROOT / command[2]).is_file()
            continue
        assert command == commands[PROCESS_BY_SERVICE[service]]
        parser.parse_args(command[1:])  # a real `lookalike` command line
    queues = [spec["command"][spec["command"].index("--queues") + 1]
              for spec in lookalike_services(compose).values() if "--queues" in spec["command"]]
    assert sorted(queues) == ["embed", "index", "ingest"]
    index = compose["services"]["worker-index"]["command"]
    assert index[index.index("--concurrency") + 1] == "1"  # the single writer


def test_every_lookalike_container_shares_the_data_volume_and_valid_settings(compose):
    volumes = compose["volumes"]
    for service, spec in lookalike_services(compose).items():
        env = {name: substitute(value) for name, value in spec["environment"].items()}
        mounts = [volume.split(":") for volume in spec["volumes"]]
        assert [m for m in mounts if m[1] == env["LOOKALIKE_HOME"]] == [["lookalike-data", "/data"]]
        assert "lookalike-data" in volumes
        values = {name.removeprefix("LOOKALIKE_").lower(): value for name, value in env.items()}
        assert set(values) <= set(Settings.model_fields), service  # no misspelt setting
        settings = Settings(_env_file=None, **values)
        assert settings.broker_is_redis and "@postgres:5432/" in settings.catalog_url
        assert settings.broker_url.startswith("redis://redis:")
        for needed in ("redis", "postgres"):
            assert spec["depends_on"][needed]["condition"] == "service_healthy"
    for server in ("redis", "postgres"):
        assert compose["services"][server]["healthcheck"]["test"]
        assert any(v.split(":")[1].startswith("/") for v in compose["services"][server]["volumes"])
    postgres = compose["services"]["postgres"]["environment"]
    api_env = compose["services"]["api"]["environment"]
    assert (f"{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}@postgres:5432/"
            f"{postgres['POSTGRES_DB']}") in api_env["LOOKALIKE_DATABASE_URL"]


def test_api_key_must_be_given_not_defaulted(compose):
    key = compose["services"]["api"]["environment"]["LOOKALIKE_API_KEY"]
    assert key.startswith("${LOOKALIKE_API_KEY:?")  # compose refuses to start without it


def test_redis_is_configured_as_a_broker_by_a_real_redis_server(compose, tmp_path):
    redis_service = compose["services"]["redis"]
    mount = next(v for v in redis_service["volumes"] if v.startswith("./"))
    source, target = mount.split(":")[:2]
    assert redis_service["command"] == ["redis-server", target]
    conf = DEPLOY / source
    server = shutil.which("redis-server")
    assert server, "redis-server is needed (Debian's redis-server package)"
    port = free_port()
    process = subprocess.Popen(
        [server, str(conf), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
         "--daemonize", "no"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        client = redis.Redis(port=port)
        wait_until_up(client, process, 20)
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        client.set("probe", "kept")
        client.close()
    finally:
        process.terminate()
        process.wait(10)
    assert any(tmp_path.rglob("*.aof")), "append-only file written"


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfiles_copy_every_package_and_run_unprivileged(dockerfile):
    text = (DEPLOY / dockerfile).read_text()
    copied = [line.split()[1] for line in text.splitlines() if line.startswith("COPY ")]
    for source in copied:
        assert (ROOT / source).exists(), f"{dockerfile} copies a missing {source}"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    find = pyproject["tool"]["setuptools"]["packages"]["find"]
    packages = [pattern.rstrip("*") for pattern in find["include"]]
    assert set(packages) <= set(copied), "every package of pyproject.toml is in the image"
    assert re.search(r"^USER (?!root)\S+", text, re.M)
    assert re.search(r"^CMD \[", text, re.M)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "lookalike-data"} <= set(ignored)


def test_the_gpu_images_install_the_gpu_extra_and_reserve_a_gpu():
    assert "pip install '.[gpu]'" in (DEPLOY / "Dockerfile.gpu").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert any(dep.startswith("faiss-gpu") for dep in extras["gpu"])
    embed = load("docker-compose.gpu.yml")["services"]["worker-embed"]
    assert embed["build"]["dockerfile"] == "deploy/Dockerfile.gpu"
    device = embed["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
