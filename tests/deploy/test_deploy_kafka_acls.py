"""Least privilege for every Kafka principal, checked two ways: a walk over the ACL entries,
and Kafka's authorizer semantics (literal/prefix patterns, implied Describe, All, deny)
evaluated over every registry topic plus faust's internal and unrelated names."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.settings import Settings
from pipeline.topics import Role, spec_for, topic_specs

from .manifests import Doc, allowed, only

#: Operations that change data or metadata: never for read-only consumers.
MUTATING = set("Write Create Delete Alter AlterConfigs ClusterAction IdempotentWrite All".split())
TOPIC_OPS = "Read Write Create Delete Alter AlterConfigs Describe DescribeConfigs".split()
#: Topics faust creates for app id `govpipe`, and names nobody here should reach.
FAUST_TOPICS = ("govpipe-detector_state-changelog", "govpipe-__assignor-__leader")
FOREIGN_TOPICS = ("payments.v1", "soc-copy", "warehouse-staging", "__consumer_offsets")
GROUPS = ("govpipe", "govpipe-x", "soc-siem", "warehouse-loader", "sales", "web", "other")


def topic(role: Role) -> str:
    return spec_for(Settings(), role).name


def all_topics() -> list[str]:
    return [s.name for s in topic_specs(Settings())] + list(FAUST_TOPICS) + list(FOREIGN_TOPICS)


@pytest.fixture(scope="module")
def users(k8s_docs: list[Doc]) -> dict[str, Doc]:
    return {d.name: d for d in only(k8s_docs, "KafkaUser")}


def test_principals_are_scram_with_simple_authorization(users: dict[str, Doc]) -> None:
    assert set(users) == {
        "govpipe-platform",
        "govpipe-worker",
        "govpipe-soc",
        "govpipe-warehouse",
        "govpipe-auditor",
        "govpipe-keda",
    }
    for user in users.values():
        spec = user.body["spec"]
        assert spec["authentication"]["type"] == "scram-sha-512", user.name
        assert spec["authorization"]["type"] == "simple", user.name
        for acl in spec["authorization"]["acls"]:
            assert acl.get("type", "allow") == "allow", "no deny rules needed: nothing is granted"
            assert acl.get("host", "*") == "*"
            assert acl["resource"]["type"] in ("topic", "group"), (user.name, acl)
            assert acl["resource"].get("name") not in (None, "", "*"), (user.name, acl)
            assert "All" not in acl["operations"], (user.name, acl)


@pytest.mark.parametrize(
    ("user", "role", "group_prefix"),
    [
        ("govpipe-soc", "alerts", "soc-"),
        ("govpipe-warehouse", "metrics", "warehouse-"),
        ("govpipe-auditor", "evidence", "audit-"),
    ],
)
def test_read_only_consumers_walk(
    users: dict[str, Doc], user: str, role: Role, group_prefix: str
) -> None:
    """Every ACL entry: Read on a topic only for their topic, nothing mutating anywhere,
    groups only under their own prefix."""
    mine = topic(role)
    for acl in users[user].body["spec"]["authorization"]["acls"]:
        res, ops = acl["resource"], set(acl["operations"])
        assert not ops & MUTATING, f"{user}: {sorted(ops & MUTATING)} on {res}"
        if res["type"] == "topic":
            assert res.get("patternType", "literal") == "literal", f"{user}: prefix topic ACL"
            if "Read" in ops:
                assert res["name"] == mine, f"{user} may read {res['name']}"
            assert res["name"] == mine, f"{user}: ACL on {res['name']}"
        else:
            assert res["type"] == "group"
            assert res.get("patternType") == "prefix" and res["name"] == group_prefix, res


@pytest.mark.parametrize(
    ("user", "role", "group_prefix"),
    [
        ("govpipe-soc", "alerts", "soc-"),
        ("govpipe-warehouse", "metrics", "warehouse-"),
        ("govpipe-auditor", "evidence", "audit-"),
    ],
)
def test_read_only_consumers_effective(
    users: dict[str, Doc], user: str, role: Role, group_prefix: str
) -> None:
    principal = users[user]
    mine = topic(role)
    for name in all_topics():
        assert allowed(principal, "Read", "topic", name) == (name == mine), (user, name)
        for op in ("Write", "Create", "Delete", "Alter", "AlterConfigs"):
            assert not allowed(principal, op, "topic", name), (user, op, name)
    for group in GROUPS:
        assert allowed(principal, "Read", "group", group) == group.startswith(group_prefix)
    assert not allowed(principal, "Alter", "cluster", "kafka-cluster")


def test_platform_only_writes_the_input_topic(users: dict[str, Doc]) -> None:
    platform = users["govpipe-platform"]
    for name in all_topics():
        assert allowed(platform, "Write", "topic", name) == (name == topic("input")), name
        for op in ("Read", "Create", "Delete", "Alter", "AlterConfigs"):
            assert not allowed(platform, op, "topic", name), (op, name)
    for group in GROUPS:
        assert not allowed(platform, "Read", "group", group)


def test_worker_least_privilege(users: dict[str, Doc]) -> None:
    worker = users["govpipe-worker"]
    reads = {topic("input"), topic("internal"), *FAUST_TOPICS}
    writes = {
        topic("alerts"),
        topic("metrics"),
        topic("evidence"),
        topic("dlq"),
        topic("internal"),
        *FAUST_TOPICS,
    }
    creates = set(FAUST_TOPICS)
    for name in all_topics():
        assert allowed(worker, "Read", "topic", name) == (name in reads), name
        assert allowed(worker, "Write", "topic", name) == (name in writes), name
        assert allowed(worker, "Create", "topic", name) == (name in creates), name
        for op in ("Delete", "Alter", "AlterConfigs"):
            assert not allowed(worker, op, "topic", name), (op, name)
    # The worker never writes raw input (no replays into the source of truth).
    assert not allowed(worker, "Write", "topic", topic("input"))
    assert allowed(worker, "Read", "group", Settings().app_id)
    assert not allowed(worker, "Read", "group", "soc-siem")
    assert not allowed(worker, "Read", "group", "warehouse-loader")


def test_keda_only_describes(users: dict[str, Doc]) -> None:
    keda = users["govpipe-keda"]
    for name in all_topics():
        for op in TOPIC_OPS:
            expected = op == "Describe" and name in (topic("input"), topic("internal"))
            assert allowed(keda, op, "topic", name) == expected, (op, name)
    assert allowed(keda, "Describe", "group", Settings().app_id)
    assert not allowed(keda, "Read", "group", Settings().app_id)


def test_acl_model_semantics() -> None:
    """The evaluator itself: prefix patterns, implied Describe, All, deny wins."""

    def user(*acls: dict) -> Doc:
        return Doc(Path("x"), {"spec": {"authorization": {"acls": list(acls)}}})

    prefix = {
        "resource": {"type": "topic", "name": "gov", "patternType": "prefix"},
        "operations": ["Write"],
    }
    u = user(prefix)
    assert allowed(u, "Write", "topic", "governance.alerts.v1")
    assert allowed(u, "Describe", "topic", "governance.alerts.v1")  # implied by Write
    assert not allowed(u, "Read", "topic", "governance.alerts.v1")
    every = {"resource": {"type": "topic", "name": "*"}, "operations": ["All"]}
    deny = {"resource": {"type": "topic", "name": "x"}, "operations": ["Read"], "type": "deny"}
    u = user(every, deny)
    assert allowed(u, "Read", "topic", "y") and not allowed(u, "Read", "topic", "x")
