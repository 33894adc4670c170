"""docker-compose.yml: validated by the real docker-compose binary, then read as its model."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from pipeline.cli import build_parser

from .manifests import REPO, run_compose, settings_env_names

GOVPIPE_SERVICES = ("topics", "worker", "simulator")
INFRA_SERVICES = ("kafka", "schema-registry", "redis")
#: Services that may opt out of a healthcheck: one-shots and the port-less simulator.
NO_PROBE_OK = {"topics", "simulator"}


def service(config: dict[str, Any], name: str) -> dict[str, Any]:
    services: dict[str, Any] = config["services"]
    assert name in services, f"compose has no service {name!r}"
    return services[name]


@pytest.mark.parametrize("profile", [None, "sim"])
def test_compose_config_is_valid(compose_binary: Path, profile: str | None) -> None:
    args = ["--profile", profile] if profile else []
    proc = run_compose(compose_binary, *args, "config", "-q")
    assert proc.returncode == 0, proc.stderr
    assert "level=warning" not in proc.stderr, proc.stderr


def test_services(compose_config: dict[str, Any]) -> None:
    assert set(compose_config["services"]) == set(GOVPIPE_SERVICES + INFRA_SERVICES)


def test_kafka_is_single_node_kraft(compose_config: dict[str, Any]) -> None:
    kafka = service(compose_config, "kafka")
    image, _, tag = kafka["image"].partition(":")
    assert image == "apache/kafka"
    major, minor = (int(x) for x in tag.split(".")[:2])
    assert (major, minor) >= (3, 9), tag
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@")
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
        "KAFKA_DEFAULT_REPLICATION_FACTOR",
        "KAFKA_MIN_INSYNC_REPLICAS",
    ):
        assert env.get(key) == "1", f"{key} must be 1 on a single broker"
    test = " ".join(kafka["healthcheck"]["test"])
    assert re.search(r"kafka-(broker-api-versions|topics)\.sh .*--bootstrap-server", test), (
        "the Kafka healthcheck must talk to the broker"
    )


def test_redis_persists_with_aof(compose_config: dict[str, Any]) -> None:
    redis = service(compose_config, "redis")
    assert redis["image"].startswith("redis:7")
    command = redis["command"]
    assert "--appendonly" in command and command[command.index("--appendonly") + 1] == "yes"
    assert any(v["target"] == "/data" for v in redis.get("volumes", [])), "AOF on a volume"
    assert redis["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]


def test_schema_registry(compose_config: dict[str, Any]) -> None:
    registry = service(compose_config, "schema-registry")
    assert registry["image"].startswith("confluentinc/cp-schema-registry:")
    env = registry["environment"]
    assert env["SCHEMA_REGISTRY_KAFKASTORE_TOPIC_REPLICATION_FACTOR"] == "1"
    assert registry["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_healthchecks_everywhere(compose_config: dict[str, Any]) -> None:
    for name, svc in compose_config["services"].items():
        check = svc.get("healthcheck")
        assert check, f"{name}: no healthcheck"
        if check.get("disable"):
            assert name in NO_PROBE_OK, f"{name}: healthcheck disabled"
        else:
            assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        for dep, how in svc.get("depends_on", {}).items():
            dep_check = compose_config["services"][dep].get("healthcheck", {})
            if dep_check.get("disable"):
                assert how["condition"] == "service_completed_successfully", (name, dep)
            else:
                assert how["condition"] == "service_healthy", (name, dep)


def test_topics_is_a_one_shot_govpipe_topics_create(compose_config: dict[str, Any]) -> None:
    topics = service(compose_config, "topics")
    assert topics["command"] == ["topics", "create"]
    assert topics.get("restart", "no") == "no"
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_workers(compose_config: dict[str, Any]) -> None:
    worker = service(compose_config, "worker")
    assert worker["command"] == ["worker"]
    assert worker["deploy"]["replicas"] == 2
    conditions = {dep: how["condition"] for dep, how in worker["depends_on"].items()}
    assert conditions == {
        "kafka": "service_healthy",
        "redis": "service_healthy",
        "schema-registry": "service_healthy",
        "topics": "service_completed_successfully",
    }
    # Two replicas cannot publish the same host port; each has its own 6066 inside.
    assert not worker.get("ports"), "worker replicas must not publish host ports"
    assert "6066" in " ".join(worker["healthcheck"]["test"])
    assert worker.get("stop_grace_period"), "give faust time to commit on SIGTERM"


def test_simulator_is_behind_the_sim_profile(compose_config: dict[str, Any]) -> None:
    sim = service(compose_config, "simulator")
    assert sim["profiles"] == ["sim"]
    assert sim["command"] == ["simulate", "--rate", "200"]


def test_govpipe_services_share_image_env_and_policy(compose_config: dict[str, Any]) -> None:
    envs = []
    for name in GOVPIPE_SERVICES:
        svc = service(compose_config, name)
        assert Path(svc["build"]["context"]) == REPO, f"{name} is built from the Dockerfile"
        assert svc["build"].get("dockerfile", "Dockerfile") == "Dockerfile"
        envs.append(svc["environment"])
        mounts = {v["target"]: v for v in svc.get("volumes", [])}
        policy = svc["environment"]["GOVPIPE_POLICY"]
        assert policy in mounts, f"{name}: GOVPIPE_POLICY {policy} is not mounted"
        source = Path(mounts[policy]["source"])
        assert source.is_file(), f"{name}: policy source {source} missing"
        assert mounts[policy].get("read_only"), f"{name}: mount the policy read-only"
    assert all(env == envs[0] for env in envs), "topics, worker and simulator must agree"


def test_govpipe_env_per_design_and_known_to_settings(compose_config: dict[str, Any]) -> None:
    known = settings_env_names()
    services = compose_config["services"]
    for name in GOVPIPE_SERVICES:
        env = services[name]["environment"]
        for key in (
            "KAFKA_BOOTSTRAP_SERVERS",
            "REDIS_URL",
            "SCHEMA_REGISTRY_URL",
            "GOVPIPE_POLICY",
        ):
            assert env.get(key), f"{name}: {key} is not set (README.md#configuration)"
        unknown = {k for k in env if k.upper() not in known}
        assert not unknown, f"{name}: Settings does not read {sorted(unknown)}"
        # Every address points at a compose service on its container port.
        host, _, port = env["KAFKA_BOOTSTRAP_SERVERS"].partition(":")
        kafka_env = services["kafka"]["environment"]
        assert f"//{host}:{port}" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
        for key, svc in (("REDIS_URL", "redis"), ("SCHEMA_REGISTRY_URL", "schema-registry")):
            assert urlsplit(env[key]).hostname == svc, f"{key} must point at {svc}"


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_commands_exist_in_the_cli(compose_config: dict[str, Any]) -> None:
    """Every command the deployment runs parses with the real `govpipe` parser (the image's
    ENTRYPOINT is `govpipe`, so a service's command is the CLI's argv)."""
    k8s_args = [["worker"]]  # k8s/deployment.yaml
    compose_args = [compose_config["services"][name]["command"] for name in GOVPIPE_SERVICES]
    known = _subcommands()
    missing = []
    for argv in compose_args + k8s_args:
        if argv[0] not in known:
            missing.append(argv[0])
            continue
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"`govpipe {' '.join(argv)}` is rejected by the CLI (exit {exc.code})")
    if missing:
        pytest.skip(f"not implemented yet: govpipe {', '.join(sorted(set(missing)))}")


def test_sample_policy_loads_with_the_project_loader() -> None:
    policy = pytest.importorskip("pipeline.detectors.policy")
    loaded = policy.load_policy(REPO / "deploy" / "policy.yaml")
    assert loaded.version == 1
