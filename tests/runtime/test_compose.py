"""docker-compose.yml: Redis with AOF, a scheduler, a sweeper, a deliverer and a worker, every command
of which exists in the CLI. (Nothing is started: `docker compose config` checks the file
where a compose binary is installed.)"""
from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from click.testing import CliRunner

import redispool
from redispool.cli import cli, load_worker

from support import ROOT


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services(compose):
    services = compose["services"]
    assert set(services) == {"redis", "scheduler", "sweeper", "deliverer", "worker"}
    redis_cmd = services["redis"]["command"]
    assert redis_cmd[0] == "redis-server" and redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes"
    for name, command in (("scheduler", "scheduler"), ("sweeper", "sweeper"), ("deliverer", "deliver"),
                          ("worker", "worker")):
        service = services[name]
        assert service["environment"]["REDISPOOL_URL"] == "redis://redis:6379/0"
        assert "redis" in service["depends_on"]
        assert service["build"] == "."
        assert service["command"][0] == command


def test_every_command_exists_in_the_cli(compose):
    for name in ("scheduler", "sweeper", "deliverer", "worker"):
        command = compose["services"][name]["command"]
        options = [arg for arg in command if arg.startswith("--")]
        result = CliRunner().invoke(cli, [command[0], "--help"])
        assert result.exit_code == 0, result.output
        for option in options:
            assert option in result.output, f"{name}: {option} is not an option of `redispool {command[0]}`"


def test_worker_health_port_listens_beyond_the_container(compose):
    # the health port listens on 127.0.0.1 unless told: a probe from outside the
    # container could not reach it, so the compose file passes 0.0.0.0
    command = compose["services"]["worker"]["command"]
    assert command[command.index("--health-host") + 1] == "0.0.0.0"
    probe = " ".join(compose["services"]["worker"]["healthcheck"]["test"])
    assert command[command.index("--health-port") + 1] in probe


def test_worker_target_imports(compose, monkeypatch):
    monkeypatch.setenv("REDISPOOL_URL", "memory://compose-test")
    monkeypatch.chdir(ROOT)
    target = compose["services"]["worker"]["command"][1]
    worker = load_worker(target)
    assert isinstance(worker, redispool.Worker) and worker.queues == ["emails", "reports"]


def test_dockerfile_runs_the_console_script():
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["redispool"]' in text and "pip install" in text


@pytest.mark.skipif(not (shutil.which("docker-compose") or shutil.which("docker")), reason="no compose binary")
def test_compose_config_accepts_the_file():
    for args in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(args[0]) is None:
            continue
        probe = subprocess.run([*args, "version"], capture_output=True, text=True)
        if probe.returncode != 0:
            continue
        result = subprocess.run([*args, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                                capture_output=True, text=True, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        return
    pytest.skip("no working docker compose")
