"""The k8s copies of the operator files, generated from the files in deploy/.

    .venv/bin/python -m tests.deploy.render_observability   # rewrite k8s/ from deploy/

``deploy/grafana/govpipe.json`` becomes the ConfigMap ``k8s/grafana-dashboard.yaml``
(label ``grafana_dashboard: "1"``, the Grafana sidecar's default) and
``deploy/prometheus/govpipe-rules.yml`` the PrometheusRule ``k8s/prometheus-rules.yaml``.
``test_deploy_observability.py`` fails when a committed copy differs from what this
renders, so the two never drift apart.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "govpipe.json"
RULES = REPO / "deploy" / "prometheus" / "govpipe-rules.yml"
RULES_TEST = REPO / "deploy" / "prometheus" / "govpipe-rules.test.yml"
K8S_DASHBOARD = REPO / "k8s" / "grafana-dashboard.yaml"
K8S_RULES = REPO / "k8s" / "prometheus-rules.yaml"

LABELS = {"app.kubernetes.io/name": "govpipe", "app.kubernetes.io/part-of": "govpipe"}


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _dump(header: str, body: dict[str, Any]) -> str:
    text = yaml.dump(body, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return header + text


def dashboard_configmap() -> str:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "govpipe-grafana-dashboard",
            "namespace": "govpipe",
            "labels": {**LABELS, "grafana_dashboard": "1"},
        },
        "data": {"govpipe.json": DASHBOARD.read_text()},
    }
    header = (
        "# The govpipe Grafana dashboard for a Grafana whose dashboard sidecar watches this\n"
        "# namespace (label grafana_dashboard=1). GENERATED from deploy/grafana/govpipe.json\n"
        "# by `python -m tests.deploy.render_observability`; do not edit by hand.\n"
    )
    return _dump(header, body)


def rules_resource() -> str:
    rules = yaml.safe_load(RULES.read_text())
    body = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "govpipe",
            "namespace": "govpipe",
            "labels": {**LABELS, "role": "alert-rules"},
        },
        "spec": {"groups": rules["groups"]},
    }
    header = (
        "# govpipe's alerting rules for the Prometheus Operator (select them with the\n"
        "# Prometheus ruleSelector/ruleNamespaceSelector). GENERATED from\n"
        "# deploy/prometheus/govpipe-rules.yml by `python -m tests.deploy.render_observability`;\n"
        "# do not edit by hand.\n"
    )
    return _dump(header, body)


def rendered() -> dict[Path, str]:
    return {K8S_DASHBOARD: dashboard_configmap(), K8S_RULES: rules_resource()}


def main() -> int:
    for path, text in rendered().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
