"""`govpipe policy check FILE` and `govpipe policy example`.

``check`` validates a policy file before a worker loads it (exit 0 "ok: N detectors
enabled", or exit 1 with ``file:line: path: message`` errors). ``example`` prints a
policy documenting every knob at its default; ``deploy/policy.example.yaml`` is its
output, and a test keeps the two equal.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

from pipeline.detectors.base import DetectorSpec


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("policy", help="validate or show the detection policy")
    sub = parser.add_subparsers(dest="policy_command", required=True)
    check = sub.add_parser("check", help="exit 0 if FILE is valid, else print its errors")
    check.add_argument("file", type=Path, metavar="FILE")
    check.set_defaults(handler=_check)
    example = sub.add_parser("example", help="print a policy with every knob at its default")
    example.set_defaults(handler=_example)


def _check(args: argparse.Namespace) -> int:
    from pipeline.detectors.policy import PolicyError, load_policy
    from pipeline.detectors.registry import all_detectors
    from pipeline.errors import ConfigError

    try:
        policy = load_policy(args.file)
    except PolicyError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    enabled = sum(1 for d in all_detectors() if policy.enabled(d.spec))
    print(f"ok: {enabled} detectors enabled")
    for det in all_detectors():
        for mode, settings in policy.modes(det.spec.id).items():
            said = [
                ("on" if settings.enabled else "off") if settings.enabled is not None else "",
                settings.severity or "",
                " ".join(f"{k}={_yaml(v)}" for k, v in settings.thresholds.items()),
            ]
            print(f"  {det.spec.id} for {mode} identities: {', '.join(w for w in said if w)}")
    return 0


def _example(args: argparse.Namespace) -> int:
    from pipeline.detectors.registry import all_detectors

    print(render_example([d.spec for d in all_detectors()]), end="")
    return 0


def _yaml(value: Any) -> str:
    return json.dumps(list(value) if isinstance(value, tuple) else value)  # JSON is YAML


def render_example(specs: list[DetectorSpec]) -> str:
    """A complete policy at the defaults, one commented block per detector."""
    from pipeline.detectors.policy import DEFAULT_POLICY
    from pipeline.detectors.registry import all_detectors

    p = DEFAULT_POLICY
    listed = {s.id for s in specs}
    per_event = sorted(d.spec.id for d in all_detectors() if d.per_event and d.spec.id in listed)
    out = [
        "# govpipe detection policy: every knob, at its default (`govpipe policy example`).",
        "# Point GOVPIPE_POLICY at a copy; keep only what you change (omitted = default).",
        "# Check a file with `govpipe policy check FILE`. Times in thresholds are seconds (_s).",
        "version: 1",
        "",
        "# Events later than this behind the newest event time still feed single-event",
        "# detectors, but no longer windows (they are counted as late_events).",
        f"allowed_lateness_ms: {p.allowed_lateness_ms}",
        "",
        "# Globs (case-insensitive) for scopes that count as privileged (SP-03). A list here",
        "# replaces the default list.",
        "privileged_scopes:",
        *(f"  - {_yaml(s)}" for s in p.privileged_scopes),
        "",
        "# Globs for actions that are sensitive whatever their sensitivity field (SP-05).",
        "sensitive_actions:",
        *(f"  - {_yaml(s)}" for s in p.sensitive_actions),
        "",
        "# Per detector: enabled (true/false), severity (low|medium|high|critical),",
        "# thresholds (only the names listed; a typo is an error).",
        "# Per mode of autonomy of the acting identity (the registry's mode: reporting,",
        "# assistant, autonomous; none = autonomous), a detector can add",
        "#   modes: {reporting: {enabled: false}, autonomous: {severity: critical}}",
        "# enabled and severity for every detector; thresholds per mode only for the",
        *textwrap.wrap(
            f"single-event ones ({', '.join(per_event)}), never dedup_s. See docs/policy.md.",
            84,
            initial_indent="# ",
            subsequent_indent="# ",
        ),
        "detectors:",
    ]
    for spec in specs:
        text = f"{spec.title}: {spec.description}"
        out += [f"  # {line}" for line in textwrap.wrap(text, 86)]
        out.append(f"  {spec.id}:")
        out.append(f"    enabled: {str(spec.enabled).lower()}")
        out.append(f"    severity: {spec.severity}")
        if spec.thresholds:
            out.append("    thresholds:")
            out += [f"      {k}: {_yaml(v)}" for k, v in spec.thresholds.items()]
        else:
            out.append("    thresholds: {}")
    out += [
        "",
        '# Findings to suppress, per detector id (or "*" for every detector): by the',
        "# finding's identity_id, or by its approver.",
        "exceptions:",
        '  identities: {}    # e.g. {SP-01: [agent-batch-legacy], "*": [agent-test]}',
        "  approvers: {}     # e.g. {RS-03: [oncall-bot@example.com]}",
    ]
    return "\n".join(out) + "\n"
