"""The operator's files: the Grafana dashboard and the Prometheus alert rules.

* the rules pass ``promtool check rules`` and their own unit tests (``promtool test
  rules deploy/prometheus/govpipe-rules.test.yml``); promtool is Debian's ``prometheus``
  package, which .ci/run installs;
* every metric the dashboard or the rules query is one the worker's ``/metrics`` page
  really exports (rendered by ``pipeline.observability.render``), or Prometheus' own
  ``up``, or listed in ``PENDING`` with the reason it is not there yet;
* the k8s copies (ConfigMap, PrometheusRule) are exactly what
  ``tests.deploy.render_observability`` renders from the files in deploy/.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.enrichment.cache import CacheStats
from pipeline.enrichment.readiness import status_of
from pipeline.flow.stage1 import InputPartitionView, Stage1Stats
from pipeline.flow.stage2 import Stage2Stats
from pipeline.observability import CORRECTED, GOVERNANCE_COUNTERS, governance_metric_name, render

from .render_observability import (
    DASHBOARD,
    K8S_DASHBOARD,
    K8S_RULES,
    REPO,
    RULES,
    RULES_TEST,
    rendered,
)

#: Series Prometheus writes itself for every scrape target.
PROMETHEUS_OWN = {"up"}
#: Metrics the rules or the dashboard use before the worker exports them: name -> why.
PENDING: dict[str, str] = {}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

# PromQL words that are not metric names.
_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "bool", "offset"}
_KEYWORDS |= {"group_left", "group_right", "inf", "nan"}


def exported_names() -> set[str]:
    """Sample names on a realistic /metrics page (every labelled family non-empty)."""
    now = 1_790_000_100.0
    stage1 = Stage1Stats(
        records_in=120,
        events_in=36_000,
        events_out=35_990,
        secrets_redacted=4,
        dlq_by_code=Counter({"invalid_json": 3, "missing_field": 7, "internal_error": 0}),
        redis_seconds_sum=0.84,
        redis_calls=120,
        newest_event_ms=int(now * 1000) - 2_500,
        inputs={
            p: InputPartitionView(lag=3 * p, aligned_pause=p == 2, fetching=p != 2, idle=False)
            for p in range(3)
        },
    )
    stage2 = Stage2Stats(
        items_in=90_000,
        duplicates=12,
        late_events=3,
        alerts_created=40,
        alerts_updated=9,
        timers_fired=22,
        records_in=400,
        alerts_by_detector=Counter({"SP-01": 30, "RS-01": 15, "AT-01": 4}),
        alerts_by_severity=Counter({("SP-01", "medium"): 30, ("RS-01", "medium"): 19}),
        units=350,
        offset_gaps=0,
        states_restored=0,
        newest_event_ms=int(now * 1000) - 4_000,
    )
    cache = CacheStats(hits=3_400, misses=600, size=900, evictions=0)
    registry = status_of({"loaded_at": "1790000000000", "identities": "50"}, "nhi:registry")
    stage2.count_delta({"c": {"tasks_completed": 9, "tasks_safe": 7, "actions_total": 80}})
    stage2.count_delta({"c": {"tasks_safe": -1}})
    page = render(stage1, stage2, cache, now=now, registry=registry, redis_errors=2)
    names = set()
    for line in page.splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (or a Grafana query using $variables)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values, regexes)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\blabel_values\s*\(([^,)]*),[^)]*\)", r"(\1)", text)  # Grafana's
    names = set()
    for match in re.finditer(r"(?<![\w$.])([a-zA-Z_:][\w:]*)\s*(\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dash["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows keep their panels inside
    return out


def dashboard_exprs() -> list[tuple[str, str]]:
    """(where, expression) for every query of the dashboard, variables included."""
    dash = dashboard()
    out = [(f"panel {p['title']!r}", t["expr"]) for p in panels(dash) for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            out.append((f"variable {var['name']}", var["definition"]))
    return out


def rule_exprs() -> list[tuple[str, str]]:
    rules = yaml.safe_load(RULES.read_text())
    return [
        (f"rule {r.get('alert') or r.get('record')}", str(r["expr"]))
        for g in rules["groups"]
        for r in g["rules"]
    ]


def used_names() -> dict[str, list[str]]:
    """metric name -> where it is used."""
    used: dict[str, list[str]] = {}
    for where, expr in dashboard_exprs() + rule_exprs():
        for name in metric_names(expr):
            used.setdefault(name, []).append(where)
    return used


def is_exported(name: str, exported: set[str]) -> bool:
    if name in exported:
        return True
    return any(
        name.endswith(suffix) and name.removesuffix(suffix) + suffix in exported
        for suffix in HISTOGRAM_SUFFIXES
    )


# ---------------------------------------------------------------------- metric names


def test_metric_name_parser() -> None:
    expr = (
        'sum by (code) (rate(govpipe_dlq_records_total{job=~"$job", code!="x"}[$__rate_interval]))'
        ' / on(job) group_left sum(rate(govpipe_events_in_total{stage="1"}[5m])) > 0.01'
        ' and absent(up{job="govpipe"} == 1) unless label_values(foo_total, instance)'
    )
    assert metric_names(expr) == {
        "govpipe_dlq_records_total",
        "govpipe_events_in_total",
        "up",
        "foo_total",
    }


def test_the_name_check_can_fail() -> None:
    exported = exported_names()
    assert is_exported("govpipe_redis_batch_seconds_count", exported)
    assert not is_exported("govpipe_alerts_by_severity_total", exported)
    assert not is_exported("govpipe_event_in_total", exported)  # a typo


def test_every_used_metric_is_exported_by_the_worker() -> None:
    exported = exported_names()
    used = used_names()
    assert len(used) >= 10, sorted(used)
    missing = {
        name: where
        for name, where in used.items()
        if not is_exported(name, exported) and name not in PROMETHEUS_OWN
    }
    unexplained = {n: w for n, w in missing.items() if n not in PENDING}
    assert not unexplained, f"not on the worker's /metrics page: {unexplained}"
    # Pending names are listed here, not skipped: this is the list still waiting.
    still_pending = sorted(n for n in PENDING if n in missing)
    assert still_pending == sorted(n for n in PENDING if not is_exported(n, exported)), (
        f"pending, not exported yet: {still_pending}"
    )


def test_pending_names_are_really_used() -> None:
    used = used_names()
    assert set(PENDING) <= set(used), "drop names nothing queries from PENDING"


def test_dashboard_and_rules_cover_every_exported_family_that_matters() -> None:
    used = set(used_names())
    for name in (
        "govpipe_events_in_total",
        "govpipe_processing_lag_seconds",
        "govpipe_dlq_records_total",
        "govpipe_alerts_total",
        "govpipe_redis_batch_seconds_sum",
        "govpipe_enrichment_cache_lookups_total",
        "govpipe_registry_ready",
        "govpipe_redis_errors_total",
        "govpipe_broker_errors_total",
        "govpipe_input_stalls_total",
        *(governance_metric_name(c) for c in GOVERNANCE_COUNTERS),
        *(f"govpipe_{c}_corrections_total" for c in CORRECTED),
    ):
        assert name in used, name


def test_dashboard_shows_severity_and_every_governance_rate() -> None:
    exprs = " ".join(expr for _, expr in dashboard_exprs())
    assert "sum by (severity) (rate(govpipe_alerts_total" in exprs
    assert "sum by (severity) (increase(govpipe_alerts_total" in exprs
    gov = next(p for p in panels(dashboard()) if p["title"].startswith("Governance rates ("))
    legends = [t["legendFormat"] for t in gov["targets"]]
    assert legends == [
        "successful completion",
        "safe completion",
        "authorised actions",
        "attributable actions",
        "ephemeral credential use",
        "revoked on completion",
        "meaningful review",
    ]
    safe = gov["targets"][1]["expr"]
    assert "govpipe_tasks_safe_corrections_total" in safe and " - " in safe


# ------------------------------------------------------------------------- dashboard


def test_dashboard_shape() -> None:
    dash = dashboard()
    assert dash["uid"] and dash["title"] == "govpipe"
    every = panels(dash)
    ids = [p["id"] for p in every]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    names = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "job", "instance"} <= names
    titles = " | ".join(p["title"].lower() for p in every)
    for topic in ("throughput", "lag", "dead letters", "detector", "redis", "cache hit"):
        assert topic in titles, topic
    for panel in every:
        if panel["type"] in ("row", "text"):
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["expr"].count("(") == target["expr"].count(")"), panel["title"]
            selectors = re.findall(r"\b(?:govpipe_\w+|up)\{([^}]*)\}", target["expr"])
            assert selectors and all('job=~"$job"' in s for s in selectors), panel["title"]


def test_dashboard_panels_do_not_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in dashboard()["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


# ----------------------------------------------------------------------------- rules


def test_rules_cover_the_operator_cases() -> None:
    rules = {name.removeprefix("rule "): expr for name, expr in rule_exprs()}
    assert "up" in metric_names(rules["GovpipeWorkerDown"])
    assert "govpipe_processing_lag_seconds" in metric_names(rules["GovpipeLagGrowing"])
    assert "govpipe_dlq_records_total" in metric_names(rules["GovpipeDeadLetterRate"])
    assert "govpipe_registry_ready" in metric_names(rules["GovpipeRegistryNotReady"])
    assert "govpipe_redis_errors_total" in metric_names(rules["GovpipeRedisErrors"])
    assert "govpipe_broker_errors_total" in metric_names(rules["GovpipeBrokerErrors"])
    assert {"GovpipeRedisSlow", "GovpipeInputStalled"} <= set(rules)
    body = yaml.safe_load(RULES.read_text())
    for group in body["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
            assert {"summary", "description", "runbook"} <= set(rule["annotations"])
            anchor = rule["annotations"]["runbook"].split("#", 1)[1]
            assert f"### {rule['alert']}" in (REPO / "docs" / "operations.md").read_text(), (
                f"docs/operations.md has no section for {rule['alert']} (#{anchor})"
            )


def test_every_rule_has_a_unit_test() -> None:
    tests = yaml.safe_load(RULES_TEST.read_text())
    tested = {
        case["alertname"]
        for t in tests["tests"]
        for case in t.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    rules = {name.removeprefix("rule ") for name, _ in rule_exprs()}
    assert rules == tested, f"rules without a firing case: {sorted(rules - tested)}"


@pytest.fixture(scope="module")
def promtool() -> Path:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip(
            "promtool not found: install Debian's `prometheus` package "
            "(apt-get install prometheus; .ci/run does)"
        )
    return Path(found)


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), capture_output=True, text=True, cwd=cwd, timeout=120, check=False
    )


def test_promtool_check_rules(promtool: Path) -> None:
    proc = _run(str(promtool), "check", "rules", str(RULES), cwd=RULES.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_test_rules(promtool: Path) -> None:
    proc = _run(str(promtool), "test", "rules", RULES_TEST.name, cwd=RULES.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_rejects_a_broken_rule(promtool: Path, tmp_path: Path) -> None:
    """The check can fail: a rule with a PromQL syntax error is refused."""
    body = yaml.safe_load(RULES.read_text())
    body["groups"][0]["rules"][0]["expr"] = "rate(govpipe_records_in_total[5m]"
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump(body))
    proc = _run(str(promtool), "check", "rules", str(broken), cwd=tmp_path)
    assert proc.returncode != 0


# ------------------------------------------------------------------------ k8s copies


def test_k8s_copies_are_rendered_from_deploy() -> None:
    for path, text in rendered().items():
        assert path.read_text() == text, (
            f"{path.relative_to(REPO)} is stale: run `.venv/bin/python -m "
            "tests.deploy.render_observability`"
        )


def test_k8s_copies_carry_the_same_content() -> None:
    configmap = yaml.safe_load(K8S_DASHBOARD.read_text())
    assert json.loads(configmap["data"]["govpipe.json"]) == dashboard()
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    rule = yaml.safe_load(K8S_RULES.read_text())
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
