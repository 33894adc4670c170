"""One topic registry: pipeline/topics.py. Compose and k8s must agree with it exactly on
names, partitions and configs (replication may differ by environment)."""

from __future__ import annotations

from typing import Any

from pipeline.topics import TopicSpec, topic_specs

from .manifests import Doc, only, settings_from_env, topic_fields

GOVPIPE_SERVICES = ("topics", "worker", "simulator")


def shape(specs: list[TopicSpec]) -> dict[str, tuple[int, dict[str, str]]]:
    """name -> (partitions, config): everything that must not differ between environments."""
    return {s.name: (s.partitions, dict(s.config)) for s in specs}


def kafka_topics(docs: list[Doc]) -> dict[str, dict[str, Any]]:
    topics = {}
    for doc in only(docs, "KafkaTopic"):
        name = doc.body["spec"].get("topicName", doc.name)
        assert name not in topics, f"two KafkaTopics for {name}"
        topics[name] = doc.body["spec"]
    return topics


def test_k8s_kafka_topics_equal_the_registry(
    k8s_docs: list[Doc], default_specs: list[TopicSpec]
) -> None:
    declared = kafka_topics(k8s_docs)
    assert set(declared) == {s.name for s in default_specs}
    for spec in default_specs:
        topic = declared[spec.name]
        assert topic["partitions"] == spec.partitions, spec.name
        config = {k: str(v) for k, v in topic.get("config", {}).items()}
        assert config == spec.config, spec.name


def test_k8s_replication_is_production_grade_and_matches_the_worker(k8s_docs: list[Doc]) -> None:
    """Replication differs by environment: 3 in k8s, and the workers create faust's own
    topics with the same factor (GOVPIPE_REPLICATION_FACTOR)."""
    (deployment,) = only(k8s_docs, "Deployment", "govpipe-worker")
    container = deployment.body["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    worker_rf = settings_from_env(env, topic_fields()).replication_factor
    replicas = {spec["replicas"] for spec in kafka_topics(k8s_docs).values()}
    assert replicas == {3} and worker_rf == 3


def test_k8s_worker_env_keeps_registry_names_partitions_configs(
    k8s_docs: list[Doc], default_specs: list[TopicSpec]
) -> None:
    (deployment,) = only(k8s_docs, "Deployment", "govpipe-worker")
    container = deployment.body["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    worker_specs = topic_specs(settings_from_env(env, topic_fields()))
    assert shape(worker_specs) == shape(default_specs)


def test_compose_does_not_override_topics(
    compose_config: dict[str, Any], default_specs: list[TopicSpec]
) -> None:
    """The `topics` service creates the topics from code; nothing in compose renames them."""
    services = compose_config["services"]
    assert services["topics"]["command"] == ["topics", "create"]
    for name in GOVPIPE_SERVICES:
        env = services[name]["environment"]
        svc_settings = settings_from_env(env, topic_fields())
        overridden = {
            f
            for f in topic_fields()
            if f in svc_settings.model_fields_set and f != "replication_factor"
        }
        assert not overridden, f"{name} overrides {sorted(overridden)}"
        specs = topic_specs(svc_settings)
        assert shape(specs) == shape(default_specs), name
        assert {s.replication_factor for s in specs} == {1}, "one broker in compose"


def test_every_topic_named_in_k8s_is_in_the_registry(
    k8s_docs: list[Doc], default_specs: list[TopicSpec]
) -> None:
    """ACLs and KEDA triggers name registry topics only (or faust's `govpipe-` prefix)."""
    names = {s.name for s in default_specs}
    for user in only(k8s_docs, "KafkaUser"):
        for acl in user.body["spec"]["authorization"]["acls"]:
            res = acl["resource"]
            if res["type"] != "topic":
                continue
            if res.get("patternType", "literal") == "literal":
                assert res["name"] in names, f"{user.name}: unknown topic {res['name']}"
            else:
                assert res["name"] == "govpipe-", f"{user.name}: unexpected prefix {res['name']}"
                assert not any(n.startswith(res["name"]) for n in names), (
                    "the faust prefix must not cover a registry topic"
                )
    for scaled in only(k8s_docs, "ScaledObject"):
        for trig in scaled.body["spec"]["triggers"]:
            assert trig["metadata"]["topic"] in names
