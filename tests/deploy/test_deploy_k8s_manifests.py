"""What the k8s/ manifests mean: restricted pods, probes, secrets by reference only, KEDA
scaling bounded by partitions, a tight NetworkPolicy, and references that resolve."""

from __future__ import annotations

import re
from typing import Any

import pytest

from pipeline.settings import Settings
from pipeline.topics import spec_for, topic_specs

from .manifests import (
    DOCKERFILE,
    REPO,
    Doc,
    iter_container_env,
    only,
    parse_dockerfile,
    parse_key_values,
    settings_env_names,
    settings_from_env,
)

SECRET_ENV = re.compile(r"PASS(WORD|WD)?|SECRET|TOKEN|API_?KEY|REDIS_URL", re.IGNORECASE)


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = only(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def deployment(k8s_docs: list[Doc]) -> Doc:
    return one(k8s_docs, "Deployment", "govpipe-worker")


@pytest.fixture(scope="module")
def pod(deployment: Doc) -> dict[str, Any]:
    spec: dict[str, Any] = deployment.body["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def worker(pod: dict[str, Any]) -> dict[str, Any]:
    containers = {c["name"]: c for c in pod["containers"]}
    return containers["worker"]


def plain_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def secret_refs(container: dict[str, Any]) -> dict[str, tuple[str, str]]:
    out = {}
    for e in container.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            out[e["name"]] = (ref["name"], ref["key"])
    return out


def web_port(container: dict[str, Any]) -> int:
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    return int(ports["web"])


# ------------------------------------------------------------------------- the pod spec


def test_pod_meets_restricted_pod_security(pod: dict[str, Any]) -> None:
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["runAsUser"] > 0
    assert psc["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod.get("hostNetwork", False) is False and pod.get("hostPID", False) is False
    assert pod["automountServiceAccountToken"] is False
    for c in pod["containers"] + pod.get("initContainers", []):
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
        assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
        assert not sc["capabilities"].get("add"), c["name"]
        assert sc.get("privileged", False) is False, c["name"]
        assert sc.get("runAsUser", psc["runAsUser"]) > 0, c["name"]


def test_pod_uid_is_the_image_user(pod: dict[str, Any]) -> None:
    _, stages = parse_dockerfile(DOCKERFILE.read_text())
    image_user = stages[-1].all("USER")[-1].args.split(":")[0]
    assert str(pod["securityContext"]["runAsUser"]) == image_user


def test_writable_paths_are_emptydirs(pod: dict[str, Any], worker: dict[str, Any]) -> None:
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in worker["volumeMounts"]}
    datadir = plain_env(worker)["FAUST_DATADIR"]
    _, stages = parse_dockerfile(DOCKERFILE.read_text())
    image_env: dict[str, str | None] = {}
    for ins in stages[-1].all("ENV"):
        image_env.update(parse_key_values(ins))
    assert datadir == image_env["FAUST_DATADIR"], "same data dir as the image's VOLUME"
    for path in (datadir, "/tmp"):
        assert path in mounts, f"{path} is not mounted (the root filesystem is read-only)"
        assert "emptyDir" in volumes[mounts[path]], f"{path} must be an emptyDir"
        assert volumes[mounts[path]]["emptyDir"].get("sizeLimit"), f"{path}: set a sizeLimit"
    for m in worker["volumeMounts"]:
        if m["mountPath"] not in (datadir, "/tmp"):
            assert m.get("readOnly") is True, f"{m['mountPath']} should be read-only"


def test_resources_and_graceful_stop(pod: dict[str, Any]) -> None:
    for c in pod["containers"]:
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][bound]), (c["name"], bound)
    assert 30 <= pod["terminationGracePeriodSeconds"] <= 300


def test_probes_hit_the_faust_web_port(
    deployment: Doc, worker: dict[str, Any], k8s_docs: list[Doc]
) -> None:
    port = web_port(worker)
    env = plain_env(worker)
    assert port == int(env.get("GOVPIPE_WEB_PORT", Settings().web_port)) == 6066
    assert env.get("GOVPIPE_WEB_HOST") == "0.0.0.0", "probes come from outside the pod"
    for probe in ("livenessProbe", "readinessProbe"):
        get = worker[probe]["httpGet"]
        assert get["path"] == "/" and get["port"] in ("web", port), probe
    notes = deployment.body["spec"]["template"]["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true"
    assert notes["prometheus.io/port"] == str(port)
    assert notes["prometheus.io/path"] == "/metrics"


def test_args_and_image(worker: dict[str, Any]) -> None:
    assert worker["args"] == ["worker"]
    assert "command" not in worker, "keep the image ENTRYPOINT (govpipe, exec form)"
    assert worker["image"].split(":")[0] == "govpipe", "renamed by the kustomization images:"


def test_replicas_are_left_to_keda(deployment: Doc) -> None:
    assert "replicas" not in deployment.body["spec"], "the ScaledObject owns replicas"


# ------------------------------------------------------------------- env and secrets


def test_env_names_are_read_by_settings(deployment: Doc) -> None:
    known = settings_env_names()
    unknown = {item["name"] for _, item in iter_container_env(deployment)} - set(known)
    assert not unknown, f"Settings does not read {sorted(unknown)}"


def test_env_values_parse_as_settings(worker: dict[str, Any]) -> None:
    # Paths are left out: they exist in the container, not necessarily here.
    fields = {f for f, i in Settings.model_fields.items() if "Path" not in str(i.annotation)}
    settings = settings_from_env(plain_env(worker), fields)
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"


def test_secrets_only_by_reference(deployment: Doc, worker: dict[str, Any]) -> None:
    for _, item in iter_container_env(deployment):
        if SECRET_ENV.search(item["name"]):
            assert "value" not in item, f"{item['name']} must come from a secretKeyRef"
            assert item["valueFrom"]["secretKeyRef"]["name"], item["name"]
    refs = secret_refs(worker)
    assert refs["REDIS_URL"] == ("govpipe-redis", "url")
    assert "GOVPIPE_KAFKA_SASL_PASSWORD" in refs


def test_kafka_credentials_are_the_strimzi_user(
    worker: dict[str, Any], k8s_docs: list[Doc]
) -> None:
    """username == a KafkaUser, its password from the Secret Strimzi generates for it."""
    user = plain_env(worker)["GOVPIPE_KAFKA_SASL_USERNAME"]
    kafka_user = one(k8s_docs, "KafkaUser", user)
    assert kafka_user.body["spec"]["authentication"]["type"] == "scram-sha-512"
    assert secret_refs(worker)["GOVPIPE_KAFKA_SASL_PASSWORD"] == (user, "password")


def test_policy_configmap_matches_compose_policy(
    pod: dict[str, Any], worker: dict[str, Any], k8s_docs: list[Doc]
) -> None:
    volumes = {v["name"]: v for v in pod["volumes"]}
    policy_path = plain_env(worker)["GOVPIPE_POLICY"]
    mount = next(m for m in worker["volumeMounts"] if policy_path.startswith(m["mountPath"] + "/"))
    cm_name = volumes[mount["name"]]["configMap"]["name"]
    cm = one(k8s_docs, "ConfigMap", cm_name)
    key = policy_path.rsplit("/", 1)[1]
    assert cm.body["data"][key] == (REPO / "deploy" / "policy.yaml").read_text()


# -------------------------------------------------------------------- scaling and PDB


def test_pdb_selects_the_workers(deployment: Doc, k8s_docs: list[Doc]) -> None:
    pdb = one(k8s_docs, "PodDisruptionBudget")
    labels = deployment.body["spec"]["template"]["metadata"]["labels"]
    assert pdb.body["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb.body["spec"]["selector"] == deployment.body["spec"]["selector"]


def test_keda_scales_on_the_worker_group_lag(
    deployment: Doc, worker: dict[str, Any], k8s_docs: list[Doc]
) -> None:
    settings = Settings()
    scaled = one(k8s_docs, "ScaledObject")
    spec = scaled.body["spec"]
    assert spec["scaleTargetRef"]["name"] == deployment.name
    assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    partitions = {s.name: s.partitions for s in topic_specs(settings)}
    input_topic = spec_for(settings, "input").name
    triggers = spec["triggers"]
    assert {t["metadata"]["topic"] for t in triggers} >= {input_topic}
    env = plain_env(worker)
    auths = {d.name for d in only(k8s_docs, "TriggerAuthentication")}
    for trig in triggers:
        meta = trig["metadata"]
        assert trig["type"] == "kafka"
        assert meta["consumerGroup"] == settings.app_id, "faust's group is the app id"
        assert meta["topic"] in partitions, f"{meta['topic']} is not in the topic registry"
        assert int(meta["lagThreshold"]) > 0
        assert meta["bootstrapServers"] == env["KAFKA_BOOTSTRAP_SERVERS"]
        assert meta["sasl"] == "scram_sha512" and meta["tls"] == "enable"
        assert trig["authenticationRef"]["name"] in auths
        assert spec["maxReplicaCount"] <= partitions[meta["topic"]], "idle consumers"
    assert spec["maxReplicaCount"] <= partitions[input_topic]
    assert 2 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]


def test_keda_authenticates_as_its_own_describe_only_user(k8s_docs: list[Doc]) -> None:
    auth = one(k8s_docs, "TriggerAuthentication").body["spec"]
    params = {r["parameter"]: r for r in auth.get("secretTargetRef", [])}
    params.update({r["parameter"]: r for r in auth.get("configMapTargetRef", [])})
    assert {"username", "password"} <= set(params)
    cm = one(k8s_docs, "ConfigMap", params["username"]["name"])
    username = cm.body["data"][params["username"]["key"]]
    assert params["password"]["name"] == username and params["password"]["key"] == "password"
    user = one(k8s_docs, "KafkaUser", username)
    ops = {op for acl in user.body["spec"]["authorization"]["acls"] for op in acl["operations"]}
    assert ops == {"Describe"}


# ----------------------------------------------------------------------- NetworkPolicy


def test_network_policy(deployment: Doc, worker: dict[str, Any], k8s_docs: list[Doc]) -> None:
    policy = one(k8s_docs, "NetworkPolicy").body["spec"]
    labels = deployment.body["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}

    # Ingress: only the web/metrics port, only from the monitoring namespace and from
    # the other workers (evidence queries forwarded to the task's owner).
    monitoring, workers = policy["ingress"]
    for rule in (monitoring, workers):
        assert [p["port"] for p in rule["ports"]] == [web_port(worker)]
    (peer,) = monitoring["from"]
    assert peer == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    (peer,) = workers["from"]
    assert peer == {"podSelector": {"matchLabels": policy["podSelector"]["matchLabels"]}}

    # Egress: Kafka, Redis, Schema Registry, DNS; every rule names its peers and ports.
    env = plain_env(worker)
    kafka_port = int(env["KAFKA_BOOTSTRAP_SERVERS"].rsplit(":", 1)[1])
    registry_port = int(env["SCHEMA_REGISTRY_URL"].rsplit(":", 1)[1])
    ports = set()
    for rule in policy["egress"]:
        assert rule.get("to") and rule.get("ports"), "no open-ended egress"
        for peer in rule["to"]:
            assert "ipBlock" not in peer, "egress by selector, not by address"
            assert "namespaceSelector" in peer and "podSelector" in peer, peer
        ports |= {(p["protocol"], p["port"]) for p in rule["ports"]}
    assert ports == {
        ("TCP", kafka_port),
        ("TCP", 6379),
        ("TCP", registry_port),
        ("UDP", 53),
        ("TCP", 53),
        ("TCP", web_port(worker)),
    }
    (to_workers,) = [r for r in policy["egress"] if r["ports"][0]["port"] == web_port(worker)]
    (peer,) = to_workers["to"]
    assert peer["podSelector"]["matchLabels"] == policy["podSelector"]["matchLabels"]
    assert peer["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": deployment.body["metadata"]["namespace"]}
    }


# ----------------------------------------------------------------- Strimzi wiring


def test_strimzi_resources_belong_to_the_platform_cluster(k8s_docs: list[Doc]) -> None:
    """KafkaTopics/KafkaUsers carry the cluster label and live where its operators watch."""
    kafka = one(k8s_docs, "Kafka")
    operators = kafka.body["spec"]["entityOperator"]
    for kind, operator in (("KafkaTopic", "topicOperator"), ("KafkaUser", "userOperator")):
        watched = operators[operator]["watchedNamespace"]
        for doc in only(k8s_docs, kind):
            assert doc.body["metadata"]["labels"]["strimzi.io/cluster"] == kafka.name, doc.where()
            assert doc.body["metadata"]["namespace"] == watched, doc.where()
    for pool in only(k8s_docs, "KafkaNodePool"):
        assert pool.body["metadata"]["labels"]["strimzi.io/cluster"] == kafka.name


def test_platform_cluster_enforces_acls_on_a_scram_tls_listener(
    worker: dict[str, Any], k8s_docs: list[Doc]
) -> None:
    spec = one(k8s_docs, "Kafka").body["spec"]["kafka"]
    assert spec["authorization"]["type"] == "simple", "without it ACLs are not enforced"
    env = plain_env(worker)
    host, port = env["KAFKA_BOOTSTRAP_SERVERS"].rsplit(":", 1)
    kafka = one(k8s_docs, "Kafka")
    assert host.startswith(f"{kafka.name}-kafka-bootstrap.{kafka.body['metadata']['namespace']}")
    listener = next(ln for ln in spec["listeners"] if ln["port"] == int(port))
    assert listener["tls"] is True
    assert listener["authentication"]["type"] == "scram-sha-512"
    config = spec["config"]
    assert config["auto.create.topics.enable"] is False
    assert config["min.insync.replicas"] >= 2
