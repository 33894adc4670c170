"""SL-01 redaction: every kind found, ordinary values left alone, values never leak.

All secrets below are fabricated for tests; they have the right shape only.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from pipeline import redact
from pipeline.records import EVENT_FIELDS
from pipeline.redact import (
    REDACTED,
    SecretFinding,
    redact_bytes,
    redact_event,
    redact_text,
)
from tests.support.timing import fastest

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAuX0nYq3s1vQ9Yb2bJ8kQnm5Lx7Zr2c0Xv9a8Qp3R1tU4wYz6\n"
    "Proc-Type: 4,ENCRYPTED\n"
    "q3s1vQ9Yb2bJ8kQnm5Lx7Zr2c0Xv9a8Qp3R1tU4wYz6MIIEowIBAAKCAQEAuX0n==\n"
    "-----END RSA PRIVATE KEY-----"
)

# (kind, text, the secret part that must disappear)
POSITIVES: list[tuple[str, str, str]] = [
    ("aws_access_key_id", "key AKIAIOSFODNN7EXAMPLE used", "AKIAIOSFODNN7EXAMPLE"),
    ("aws_access_key_id", "ASIAY34FZKBOKMUTVV7A", "ASIAY34FZKBOKMUTVV7A"),
    (
        "aws_secret_access_key",
        "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    (
        "aws_secret_access_key",
        'aws_secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"',
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    (
        "gcp_api_key",
        "maps key=AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
        "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
    ),
    (
        "github_token",
        "cloned with ghp_1a2B3c4D5e6F7g8H9i0JkLmNoPqRsTuVwXyZ ok",
        "ghp_1a2B3c4D5e6F7g8H9i0JkLmNoPqRsTuVwXyZ",
    ),
    ("github_token", "gho_1a2B3c4D5e6F7g8H9i0JkLmNoPqRsTuVwXyZ", "1a2B3c4D5e6F7g8H9i0J"),
    ("github_token", "ghs_1a2B3c4D5e6F7g8H9i0JkLmNoPqRsTuVwXyZ", "1a2B3c4D5e6F7g8H9i0J"),
    ("github_token", "ghu_1a2B3c4D5e6F7g8H9i0JkLmNoPqRsTuVwXyZ", "1a2B3c4D5e6F7g8H9i0J"),
    ("github_token", "ghr_1a2B3c4D5e6F7g8H9i0JkLmNoPqRsTuVwXyZ", "1a2B3c4D5e6F7g8H9i0J"),
    (
        "github_token",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP",
        "11ABCDEFG0123456789_abcdefghijklmnop",
    ),
    ("gitlab_token", "glpat-xYz12AbC34dEf56GhI78", "xYz12AbC34dEf56GhI78"),
    (
        "slack_token",
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "AbCdEfGhIjKlMnOpQrStUvWx",
    ),
    ("slack_token", "xoxp-1234-5678-90AbCdEfGhIj", "90AbCdEfGhIj"),
    (
        "slack_webhook",
        "post to https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        "T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    ),
    ("stripe_key", "sk_live_51HAbCdEfGhIjKlMnOpQrStUv", "51HAbCdEfGhIjKlMnOpQrStUv"),
    ("stripe_key", "rk_live_51HAbCdEfGhIjKlMnOpQrStUv", "51HAbCdEfGhIjKlMnOpQrStUv"),
    (
        "openai_key",
        "OPENAI key sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56",
        "Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56",
    ),
    (
        "openai_key",
        "sk-Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78St90Uv12Wx34",
        "Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78St90Uv12Wx34",
    ),
    (
        "anthropic_key",
        "sk-ant-api03-Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78St90-_AA",
        "Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56",
    ),
    (
        "npm_token",
        "npm_Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78",
        "Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78",
    ),
    (
        "pypi_token",
        "pypi-AgEIcHlwaS5vcmcCJDAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMAACKlsz",
        "CJDAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMAACKlsz",
    ),
    (
        "huggingface_token",
        "hf_AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh",
        "AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh",
    ),
    (
        "sendgrid_key",
        "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",
        "TwL2iGABf9DHoTf-09kqeF8tAmbihYzrnopKc-1s5cr",
    ),
    ("jwt", f"token {JWT} end", JWT),
    (
        "bearer_token",
        "Authorization: Bearer 8f14e45fceea167a5a36dedd4bea2543",
        "8f14e45fceea167a5a36dedd4bea2543",
    ),
    ("bearer_token", "bearer ya29.A0AfH6SMBxQ1-xyz_AbC", "ya29.A0AfH6SMBxQ1-xyz_AbC"),
    ("bearer_token", "Bearer\t8f14e45fceea167a5a36dedd4bea2543", "8f14e45fceea167a5a36dedd"),
    ("basic_auth", "Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA"),
    ("private_key", f"key:\n{PEM}\nthanks", "MIIEowIBAAKCAQEAuX0nYq3s1vQ9Yb2bJ8kQ"),
    ("private_key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA", "b3BlbnNz"),
    ("private_key", "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0\\n", "MIIEvQIBAD"),
    ("url_password", "dsn postgres://admin:s3cr3t-Pw@db.internal:5432/app", "s3cr3t-Pw"),
    ("url_password", "https://bob:p%40ss@example.com/x", "p%40ss"),
    ("url_password", "redis://:hunter2@cache:6379/0", "hunter2"),
    ("named_secret", "db password=Hunter2xyz now", "Hunter2xyz"),
    ("high_entropy", '{"api_key": "q8Zr2LmN5vX1cT7bK4pW9sD3"}', "q8Zr2LmN5vX1cT7bK4pW9sD3"),
    ("high_entropy", "X-Api-Key: q8Zr2LmN5vX1cT7bK4pW9sD3", "q8Zr2LmN5vX1cT7bK4pW9sD3"),
]

NEGATIVES: list[str] = [
    "3f1c2a9e-7b4d-4e2a-9c1b-8d5e6f7a8b9c",
    "4bf92f3577b34da6a3ce929d0e0e4736",
    "2025-01-01T12:00:00Z",
    "2025-01-01T12:00:00.123+00:00",
    "crm.records.export",
    "repo:write",
    "https://example.com/a/b?x=1&y=2",
    "https://api.github.com/repos/acme/widgets/pulls?state=open",
    "crm://accounts/emea",
    "https://host.example.com:8443/path",
    "mailto:alice@example.com",
    "alice@example.com",
    "arn:aws:iam::123456789012:role/agent-runner",
    "Quarterly export for EMEA, approved by Bob after a short review.",
    "The bearer of this request asked for basic access to the task board.",
    "Bearer authentication required",
    "Basic hygiene: rotate every token and never share a password.",
    "task-runner-7f3e2c-export-eu-west-1",
    "sk-learn-model-selection-helper-tool",
    "ask-for-approval-before-exporting-records",
    "python-httpx/0.27",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)",
    "eu-west-1",
    "token rotation done; password policy unchanged",
    "password=",
    "password: ********",
    "api_key=<your-api-key>",
    "token=${GITHUB_TOKEN}",
    "postgres://user:password@localhost/db",
    "postgres://user:***@localhost/db",
    "[REDACTED:jwt]",
    "The AKIA prefix marks AWS access key ids.",
    "ghp_ tokens start with ghp_ and then 36 characters",
    "eyJ alone is not a token",
    "https://hooks.slack.com/services/",
]


def test_every_kind_has_a_positive() -> None:
    kinds = {kind for kind, _, _ in POSITIVES}
    groups = {redact._kind_of(g) for g in redact._SECRET_PATTERN.groupindex}
    assert groups <= kinds
    assert {"high_entropy", "named_secret"} <= kinds


@pytest.mark.parametrize(("kind", "text", "secret"), POSITIVES, ids=[p[0] for p in POSITIVES])
def test_positive(kind: str, text: str, secret: str) -> None:
    out, kinds = redact_text(text)
    assert kinds == [kind]
    assert REDACTED.format(kind=kind) in out
    assert secret not in out


@pytest.mark.parametrize("text", NEGATIVES)
def test_negative(text: str) -> None:
    out, kinds = redact_text(text)
    assert kinds == []
    assert out is text


def test_redaction_keeps_context() -> None:
    out, _ = redact_text("dsn postgres://admin:s3cr3t-Pw@db.internal:5432/app")
    assert out == "dsn postgres://admin:[REDACTED:url_password]@db.internal:5432/app"
    out, _ = redact_text("Authorization: Bearer 8f14e45fceea167a5a36dedd4bea2543")
    assert out == "Authorization: Bearer [REDACTED:bearer_token]"
    out, _ = redact_text(f"token {JWT} end")
    assert out == "token [REDACTED:jwt] end"
    out, _ = redact_text(f"a\n{PEM}\nb")
    assert out == "a\n[REDACTED:private_key]\nb"


def test_several_secrets_in_one_text() -> None:
    text = f"AKIAIOSFODNN7EXAMPLE then {JWT} then AKIAIOSFODNN7EXAMPLF"
    out, kinds = redact_text(text)
    assert kinds == ["aws_access_key_id", "jwt"]
    assert out.count("[REDACTED:") == 3


@pytest.mark.parametrize(("kind", "text", "secret"), POSITIVES, ids=[p[0] for p in POSITIVES])
def test_redaction_is_idempotent(kind: str, text: str, secret: str) -> None:
    once, _ = redact_text(text)
    twice, kinds = redact_text(once)
    assert kinds == []
    assert twice is once


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "value", "kind"),
    [
        ("password", "hunter22", "named_secret"),
        ("db_password", "Tr0ub4dor&3", "named_secret"),
        ("DB_PASSWORD", "hunter22", "named_secret"),
        ("x-api-key", "q8Zr2LmN5vX1cT7bK4pW9sD3", "high_entropy"),
        ("apiKey", "q8Zr2LmN5vX1cT7bK4pW9sD3", "high_entropy"),
        ("client_secret", "0d9f2c8a1b7e4f6a9c3d5e7f1a2b4c6d8e0f", "high_entropy"),
        ("session_token", "Q8zR2lMn5Vx1Ct7Bk4Pw9Sd3Fg6H", "high_entropy"),
        ("Authorization", "Q8zR2lMn5Vx1Ct7Bk4Pw9Sd3Fg6H", "high_entropy"),
        ("private_key", "MIIEvQIBADANBgkqhkiG9w0BAQ", "high_entropy"),
        ("credential", "Q8zR2lMn5Vx1Ct7Bk4Pw9Sd3Fg6H", "high_entropy"),
        ("access_key", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "high_entropy"),
    ],
)
def test_secret_names(name: str, value: str, kind: str) -> None:
    out, kinds = redact_text(value, field_name=name)
    assert kinds == [kind]
    assert value not in out


def test_cookie_tokens_are_redacted_one_by_one() -> None:
    value = "sid=Q8zR2lMn5Vx1Ct7Bk4Pw9Sd3Fg6H; theme=dark"
    out, kinds = redact_text(value, field_name="Cookie")
    assert kinds == ["high_entropy"]
    assert out == "sid=[REDACTED:high_entropy]; theme=dark"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("password", ""),
        ("password", "n/a"),
        ("token", "n/a"),
        ("token", "none"),
        ("api_key", "<redacted>"),
        ("secret", "${DB_PASSWORD}"),
        ("password", "********"),
        ("password", "changeme"),
        ("secret", "prod/db/credentials"),
        ("secret", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf"),
        ("token_url", "https://auth.example.com/oauth2/token?Aud=abcdEFGH12345678"),
        ("session", "3f1c2a9e-7b4d-4e2a-9c1b-8d5e6f7a8b9c"),
        ("session_id", "Q8zR2lMn5Vx1Ct7Bk4Pw9Sd3Fg6H"),
        ("credential_id", "cred-Q8zR2lMn5Vx1Ct7Bk4Pw9"),
        ("token_count", "12345"),
        ("max_tokens", "4096"),
        ("auth_method", "oauth2-client-credentials"),
        ("token_type", "Bearer"),
        ("author", "Jane Q. Smith-Jones of Accounting"),
        ("tokenizer", "cl100k_base"),
        ("password_changed_at", "2025-01-01T12:00:00Z"),
        ("session", "short"),
        ("auth", "granted by policy pol-export-1 at 12:00"),
    ],
)
def test_secret_names_negative(name: str, value: str) -> None:
    assert redact_text(value, field_name=name) == (value, [])


@pytest.mark.parametrize(
    "value",
    [
        # random base64 starts with "/" one time in 64 (canary seeds that leaked)
        "/wHsAENppxifhqSuXArrf064aElX79I19LT9vqYx64bCPHA+erPmAefsb7oFpzQf",
        "/oWa0Hjq/q2RK8xaNH+62F6AbLQLPkixSPIBb6W5",
        "/wHsAENppxifhqSuXArrf064aElX79I19LT9vqYx64bCPHA",  # no + or =: a random segment
    ],
)
def test_a_secret_that_starts_with_a_slash_is_not_a_path(value: str) -> None:
    for name in ("db_password", "aws_secret_access_key", "api_key"):
        text, findings = redact_text(value, field_name=name)
        assert value not in text and findings, (name, text)


@pytest.mark.parametrize(
    "value",
    [
        "/run/secrets/db_password",
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
        "./config/credentials.json",
        "/etc/app/keys/prod-2025-01.pem",
    ],
)
def test_a_path_under_a_secret_name_stays(value: str) -> None:
    for name in ("password_file", "secret", "api_key"):
        assert redact_text(value, field_name=name) == (value, [])


@pytest.mark.parametrize("field", EVENT_FIELDS)
def test_contract_fields_are_ordinary_names(field: str) -> None:
    assert redact._name_class(field) == 0
    assert field in redact._PLAIN_KEYS


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("password", 2),
        ("db_password", 2),
        ("x-api-key", 2),
        ("X-Api-Key", 2),
        ("AWS_SECRET_ACCESS_KEY", 2),
        ("clientSecret", 2),
        ("pwd", 2),
        ("token", 1),
        ("session", 1),
        ("Cookie", 1),
        ("authorization", 1),
        ("auth", 1),
        ("user_agent", 0),
        ("region", 0),
        ("bypass", 0),
        ("compass_heading", 0),
        ("monkey", 0),
        ("author", 0),
        ("secret_name", 0),
        ("api_key_id", 0),
    ],
)
def test_name_class(name: str, expected: int) -> None:
    assert redact._name_class(name) == expected


# --------------------------------------------------------------------------- events


def make_event(**overrides: Any) -> dict[str, Any]:
    """A typical clean ~30-field action event, as ``AgentEvent.model_dump()`` gives it."""
    event: dict[str, Any] = dict.fromkeys(EVENT_FIELDS)
    event.update(
        event_id="3f1c2a9e-7b4d-4e2a-9c1b-8d5e6f7a8b9c",
        event_type="action",
        event_time=1_735_689_600_000,
        platform="openai-agents",
        environment="prod",
        identity_id="agent-42",
        on_behalf_of="alice@example.com",
        task_id="task-7f3e2c",
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        action="crm.records.export",
        resource="crm://accounts/emea",
        scope="crm.records.export",
        sensitivity="high",
        credential_id="cred-91ab",
        policy_decision="allow",
        policy_id="pol-export-1",
        outcome="success",
        latency_ms=182,
        credential_kind="jit_token",
        issued_via="jit",
        scopes=["crm.records.read", "crm.records.export"],
        attributes={"user_agent": "python-httpx/0.27", "region": "eu-west-1", "model": "gpt-4o"},
    )
    event.update(overrides)
    return event


def test_clean_event_is_returned_as_is() -> None:
    event = make_event()
    assert redact._is_clean_fast(event)
    out, findings = redact_event(event)
    assert out is event
    assert findings == []


@pytest.mark.parametrize(
    "overrides",
    [
        {"justification": "Quarterly export for EMEA, approved by Bob."},
        {"event_time": "2025-01-01T12:00:00Z"},
        {"resource": "arn:aws:s3:::acme-exports/eu"},
        {"attributes": {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)", "session_id": "abc"}},
        {"attributes": {"nested": {"deeper": ["a", "b"]}}},
        {"attributes": {"password": ""}, "extra_top_level": "value"},
        {"scopes": ["repo:read", "repo:write"]},
    ],
)
def test_clean_event_with_uppercase_or_colons_is_returned_as_is(overrides: dict[str, Any]) -> None:
    event = make_event(**overrides)
    out, findings = redact_event(event)
    assert findings == []
    assert out is event


GH = "ghp_1a2B3c4D5e6F7g8H9i0JkLmNoPqRsTuVwXyZ"
HI = "Q8zR2lMn5Vx1Ct7Bk4Pw9Sd3Fg6H"
AKIA = "AKIAIOSFODNN7EXAMPLE"


@pytest.mark.parametrize(
    ("overrides", "expected", "secrets"),
    [
        (
            {"attributes": {"user_agent": "curl/8", "api_key": HI}},
            [SecretFinding("attributes.api_key", "high_entropy")],
            [HI],
        ),
        (
            {"attributes": {"db_password": "hunter22"}},
            [SecretFinding("attributes.db_password", "named_secret")],
            ["hunter22"],
        ),
        (
            {"justification": f"use {JWT} please"},
            [SecretFinding("justification", "jwt")],
            [JWT],
        ),
        (
            {"scopes": ["a", "b", AKIA]},
            [SecretFinding("scopes[2]", "aws_access_key_id")],
            [AKIA],
        ),
        (
            {"credential_id": GH},
            [SecretFinding("credential_id", "github_token")],
            [GH[4:]],
        ),
        (
            {"resource": "postgres://app:s3cr3t@db:5432/crm"},
            [SecretFinding("resource", "url_password")],
            ["s3cr3t"],
        ),
        (
            {"attributes": {"headers": {"Authorization": "Bearer 8f14e45fceea167a5a36dedd"}}},
            [SecretFinding("attributes.headers.Authorization", "bearer_token")],
            ["8f14e45fceea167a5a36dedd"],
        ),
        (
            {"attributes": {GH: "1"}},
            [SecretFinding("attributes.[REDACTED:github_token]", "github_token")],
            [GH[4:]],
        ),
        (
            {"password": "hunter22"},  # a top-level key outside the contract
            [SecretFinding("password", "named_secret")],
            ["hunter22"],
        ),
        (
            {
                "justification": f"{JWT} and {AKIA}",
                "attributes": {"token": HI, "region": "eu"},
            },
            [
                SecretFinding("justification", "jwt"),
                SecretFinding("justification", "aws_access_key_id"),
                SecretFinding("attributes.token", "high_entropy"),
            ],
            [JWT, AKIA, HI],
        ),
    ],
)
def test_dirty_event(
    overrides: dict[str, Any], expected: list[SecretFinding], secrets: list[str]
) -> None:
    event = make_event(**overrides)
    before = orjson.dumps(event)
    out, findings = redact_event(event)
    assert findings == expected
    assert out is not event
    assert orjson.dumps(event) == before  # the input is never modified
    published = orjson.dumps(out).decode()
    for secret in secrets:
        assert secret not in published
        assert secret not in repr(findings)
    untouched = {k: v for k, v in event.items() if k not in overrides}
    assert {k: out[k] for k in untouched} == untouched


def test_unchanged_parts_are_shared_not_copied() -> None:
    event = make_event(justification=f"{JWT}")
    out, _ = redact_event(event)
    assert out["attributes"] is event["attributes"]
    assert out["scopes"] is event["scopes"]


@pytest.mark.parametrize("wrap", [lambda d: {"d": d}, lambda d: [d], lambda d: ["Ab:", d]])
def test_too_deep_nesting_fails_closed(wrap: Callable[[Any], Any]) -> None:
    deep: Any = "AKIA"
    for _ in range(redact.MAX_DEPTH + 5):
        deep = wrap(deep)
    out, findings = redact_event(make_event(attributes={"x": deep}))
    assert any(f.kind == "unscanned" for f in findings)
    assert "[REDACTED:unscanned]" in orjson.dumps(out).decode()


def test_non_json_values_take_the_slow_path() -> None:
    event = make_event(attributes={"blob": b"AKIAIOSFODNN7EXAMPLE"}, risk={1, 2})
    out, findings = redact_event(event)
    assert findings == [SecretFinding("attributes.blob", "aws_access_key_id")]
    assert out["attributes"]["blob"] == b"[REDACTED:aws_access_key_id]"


SAMPLES = [text for _, text, _ in POSITIVES] + NEGATIVES


@pytest.mark.parametrize("text", SAMPLES)
@pytest.mark.parametrize("field", ["justification", "resource", "scopes", "attributes"])
def test_fast_path_agrees_with_full_walk(text: str, field: str) -> None:
    if field == "scopes":
        event = make_event(scopes=["crm.records.read", text])
    elif field == "attributes":
        event = make_event(attributes={"note": text, "region": "eu-west-1"})
    else:
        event = make_event(**{field: text})
    fast = redact_event(event)
    slow = redact._redact_event_slow(event)
    assert fast == slow
    assert (fast[0] is event) == (not fast[1])


def test_fast_path_agrees_with_full_walk_fuzzed() -> None:
    """Fragments of the samples, cut, lowercased, joined by tabs/quotes/colons."""
    rng = random.Random(11)
    frags = [*SAMPLES, "\t", "\n", '"', "\\", "é", "://", ":", "=", "Bearer\t", "-----BEGIN "]
    for _ in range(4000):
        parts = []
        for _ in range(rng.randint(1, 4)):
            frag = rng.choice(frags)
            if rng.random() < 0.5 and len(frag) > 4:
                a = rng.randrange(len(frag))
                frag = frag[a : rng.randrange(a, len(frag) + 1)]
            if rng.random() < 0.3:
                frag = frag.lower() if rng.random() < 0.5 else frag.replace(" ", "\t")
            parts.append(frag)
        text = rng.choice(["", " ", "\t", ":"]).join(parts)
        event = rng.choice(
            [
                make_event(justification=text),
                make_event(scopes=["a", text]),
                make_event(attributes={"note": text}),
                make_event(attributes={text: "v"}),
                make_event(attributes={"n": {"k": text}}),
            ]
        )
        assert redact_event(event) == redact._redact_event_slow(event), text


#: Strings that send an event past the first tier of the pre-check (A-Z, "=",
#: colons of their own) without holding a secret, so the string-by-string tier runs.
_BUSY = {
    "policy_reason": "Data residency rule: EU records stay in eu-west-1",
    "resource": "helpdesk://kb?q=topic-63893&lang=EN",
    "attributes": {"User-Agent": "Mozilla/5.0 (X11)", "X-Region": "eu-west-1", "note": "a=b"},
}
_PLACES = ["justification", "resource", "credential_id", "scopes", "attribute", "attribute key"]


def _with_secret(text: str, place: str, busy: bool) -> dict[str, Any]:
    event = make_event(**_BUSY) if busy else make_event()
    if place == "scopes":
        event["scopes"] = ["crm.records.read", text]
    elif place == "attribute":
        event["attributes"] = {**event["attributes"], "note": text}
    elif place == "attribute key":
        event["attributes"] = {**event["attributes"], text: "v"}
    else:
        event[place] = text
    return event


@pytest.mark.parametrize(("kind", "text", "secret"), POSITIVES)
@pytest.mark.parametrize("place", _PLACES)
@pytest.mark.parametrize("busy", [False, True])
def test_every_fixture_secret_is_caught_through_the_fast_path(
    kind: str, text: str, secret: str, place: str, busy: bool
) -> None:
    """Wherever a fixture secret sits, with or without other suspect strings beside
    it, the pre-check sends the event to the walk, which finds it."""
    event = _with_secret(text, place, busy)
    assert not redact._is_clean_fast(event)
    out, findings = redact_event(event)
    assert (out, findings) == redact._redact_event_slow(event)
    if place != "attribute key":  # a key is redacted whole, by kind
        assert kind in {f.kind for f in findings}
    assert secret not in orjson.dumps(out).decode()


@pytest.mark.parametrize("text", NEGATIVES)
@pytest.mark.parametrize("place", _PLACES)
def test_busy_clean_events_stay_on_the_fast_path(text: str, place: str) -> None:
    event = _with_secret(text, place, busy=True)
    out, findings = redact_event(event)
    assert (out, findings) == redact._redact_event_slow(event)
    assert not findings
    assert out is event
    layout_known = not set(text) & set("{[\\")  # else the dump alone does not tell
    plain = place != "attribute key" or redact._plain_key(text)  # else the name rule
    if layout_known and plain:
        assert redact._is_clean_fast(event)  # the string-by-string tier decided


def test_string_by_string_tier_scans_every_suspect_string(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each string with A-Z, ":" or "=" is scanned whole, once; keys and others are not."""
    scanned: list[str] = []

    def record(text: str, name_class: int) -> list[Any]:
        scanned.append(text)
        return []

    monkeypatch.setattr(redact, "_find_spans", record)
    event = make_event(
        resource=":leading-colon",
        policy_reason="a:b:c",
        justification="Capital and = sign",
        scopes=["x", "=", "ok"],
        attributes={"k": ":", "K-Upper": "v", "n": "plain", "m": "Z"},
    )
    blob = orjson.dumps(list(event.values()))
    assert redact._suspects_clean(blob, blob.translate(None, redact._DROP), flat=True)
    suspects = [":leading-colon", "a:b:c", "Capital and = sign", "=", ":", "Z"]
    assert sorted(scanned) == sorted(suspects)


def test_fast_path_agrees_with_full_walk_on_random_layouts() -> None:
    """The pre-check never calls clean what the walk would redact (random events
    with several suspect strings, keys, lists, nesting, escapes)."""
    rng = random.Random(23)
    frags = [*SAMPLES, "\t", '"', "\\", ":", "=", "://", "A", "{", "[", "é", "ghp_", "Key"]
    keys = ["note", "User-Agent", "x", "api_key", "X-Token-Id", "AWS_SECRET", "Aws", "k:v"]

    def text() -> str:
        parts = []
        for _ in range(rng.randint(1, 3)):
            frag = rng.choice(frags)
            if rng.random() < 0.5 and len(frag) > 4:
                a = rng.randrange(len(frag))
                frag = frag[a : rng.randrange(a, len(frag) + 1)]
            parts.append(frag)
        return rng.choice(["", " ", ":", "="]).join(parts)

    def value(depth: int) -> Any:
        r = rng.random()
        if r < 0.6 or depth > 2:
            return text()
        if r < 0.75:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        if r < 0.85:
            return {rng.choice(keys): value(depth + 1) for _ in range(rng.randint(1, 2))}
        return rng.choice([None, 7, 1.5, True])

    fast = 0
    for _ in range(3000):
        event = make_event()
        for field in rng.sample(["justification", "resource", "policy_reason", "scopes"], 2):
            event[field] = value(1) if field != "scopes" else [text(), text()]
        if rng.random() < 0.7:
            event["attributes"] = {rng.choice(keys): value(1) for _ in range(rng.randint(0, 4))}
        if rng.random() < 0.1:
            event[rng.choice(keys)] = text()  # a top-level key outside the contract
        slow = redact._redact_event_slow(event)
        if redact._is_clean_fast(event):
            fast += 1
            assert slow == (event, []), event
        assert redact_event(event) == slow
    assert fast > 300  # the fast tiers were exercised


@pytest.mark.parametrize("sep", ["\t", "\n", '"', "\\", "\u0001"])
def test_json_escapes_do_not_hide_a_token_from_the_fast_path(sep: str) -> None:
    event = make_event(justification=f"Note{sep}{JWT}", policy_reason=f"x{sep}{AKIA}")
    out, findings = redact_event(event)
    assert [f.kind for f in findings] == ["aws_access_key_id", "jwt"]  # field order
    assert JWT not in out["justification"]


_LOWER_PREFIXES = [
    "ghp_", "gho_", "github_pat_", "glpat-", "xoxb-", "xoxp-", "sk-", "sk-ant-", "sk_live_",
    "rk_live_", "npm_", "hf_", "bearer ", "basic ", "hooks.slack.com/services/", "aws_secret ",
]  # fmt: skip


def test_lowercase_only_text_never_matches() -> None:
    """The pre-filter's premise: no match without A-Z, '=' or a non-scheme ':'."""
    rng = random.Random(7)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_./+@ "
    for _ in range(3000):
        body = "".join(rng.choice(alphabet) for _ in range(rng.randint(10, 80)))
        text = rng.choice(_LOWER_PREFIXES) + body
        if rng.random() < 0.3:
            text = "scheme://" + text
        assert redact._find_spans(text, 0) == [], text


def test_scheme_colons_alone_never_match() -> None:
    for text in ["password://abcdefghijklmnopqrstuvwxyz0123", "aws_secret://" + "a1" * 20]:
        assert redact._find_spans(text, 0) == []


# --------------------------------------------------------------------------- bytes


def test_bytes_clean_is_returned_as_is() -> None:
    payload = b'{"event_id": "e1", "action": "crm.records.export"}'
    out, found = redact_bytes(payload)
    assert out is payload
    assert found is False


def test_bytes_empty() -> None:
    assert redact_bytes(b"") == (b"", False)


def test_bytes_invalid_utf8_clean_round_trips() -> None:
    payload = b"\xff\xfe garbage \xc3\x28 more \x80\x81 bytes"
    out, found = redact_bytes(payload)
    assert out is payload
    assert found is False


def test_bytes_invalid_utf8_with_secret() -> None:
    payload = b"\xff\xfe key=AKIAIOSFODNN7EXAMPLE \xc3\x28\x80"
    out, found = redact_bytes(payload)
    assert found is True
    assert out == b"\xff\xfe key=[REDACTED:aws_access_key_id] \xc3\x28\x80"


def test_bytes_json_name_rule_on_nested_keys() -> None:
    doc = {
        "event_id": "e1",
        "attributes": {"db_password": "hunter22", "region": "eu"},
        "nested": [{"client_secret": "0d9f2c8a1b7e4f6a9c3d5e7f1a2b4c6d8e0f"}],
    }
    out, found = redact_bytes(orjson.dumps(doc))
    assert found is True
    redacted = orjson.loads(out)
    assert redacted["attributes"] == {"db_password": "[REDACTED:named_secret]", "region": "eu"}
    assert redacted["nested"][0]["client_secret"] == "[REDACTED:high_entropy]"
    assert redacted["event_id"] == "e1"


def test_bytes_json_array_batch() -> None:
    batch = [{"event_id": "e1"}, {"event_id": "e2", "justification": f"x {JWT}"}]
    out, found = redact_bytes(orjson.dumps(batch))
    assert found is True
    assert orjson.loads(out)[1]["justification"] == "x [REDACTED:jwt]"


def test_bytes_broken_json_falls_back_to_text() -> None:
    pem = PEM.replace("\n", "\\n")
    payload = b'{"event_id": "e1", "note": "' + pem.encode() + b'", "password": "hunter22"'
    out, found = redact_bytes(payload)
    assert found is True
    assert b"MIIEowIBAAKCAQEA" not in out
    assert b"hunter22" not in out
    assert out.startswith(b'{"event_id": "e1", "note": "[REDACTED:private_key]')


def test_bytes_deep_json_falls_back_to_text() -> None:
    payload = b'{"a":' * 100 + b'"AKIAIOSFODNN7EXAMPLE"' + b"}" * 100
    out, found = redact_bytes(payload)
    assert found is True
    assert b"AKIAIOSFODNN7EXAMPLE" not in out
    assert out.startswith(b'{"a":{"a":')


def test_bytes_avro_wire_format_keeps_length() -> None:
    payload = b"\x00\x00\x00\x00\x07\x02\x28AKIAIOSFODNN7EXAMPLE\x10\xff\xfe"
    out, found = redact_bytes(payload)
    assert found is True
    assert len(out) == len(payload)
    assert b"AKIAIOSFODNN7EXAMPLE" not in out
    assert out[:7] == payload[:7]
    assert out[-3:] == payload[-3:]


def test_bytes_large_payload_with_secret_at_the_end() -> None:
    payload = (
        b"lorem ipsum dolor sit amet, " * 80_000
    ) + b"Bearer 8f14e45fceea167a5a36dedd4bea2543"
    out, found = redact_bytes(payload)
    assert fastest(lambda: redact_bytes(payload), within=1.0) < 1.0
    assert found is True
    assert out.endswith(b"Bearer [REDACTED:bearer_token]")


# --------------------------------------------------------------------------- adversarial

_MB2 = 2 * 1024 * 1024

ADVERSARIAL = {
    "eyJ": "eyJ" * (_MB2 // 3),
    "eyJ.": "eyJaaaaaaaa." * (_MB2 // 12),
    "scheme": "a://" * (_MB2 // 4),
    "userinfo": "a://" + "b" * _MB2 + ":",
    "userinfo-colons": "a://b:" + ":c" * (_MB2 // 2),
    "url-at": "s://u:" + "p" * 200 + "@" * _MB2,
    "AKIA": "AKIA" * (_MB2 // 4),
    "A": "A" * _MB2,
    "a": "a" * _MB2,
    "x": "x" * _MB2,
    "underscore": "_" * _MB2,
    "dash": "-" * _MB2,
    "colon": ":" * _MB2,
    "equals": "=" * _MB2,
    "pem": "-----BEGIN RSA PRIVATE KEY-----" * (_MB2 // 31),
    "pem-body": "-----BEGIN PRIVATE KEY-----" + "ab-c" * (_MB2 // 4),
    "pem-dashes": "-----BEGIN PRIVATE KEY-----" + "-" * _MB2,
    "sk": "sk-" * (_MB2 // 3),
    "ghp": "ghp_" * (_MB2 // 4),
    "ghp-run": " ghp_" + "a" * _MB2,
    "Bearer": "Bearer " * (_MB2 // 7),
    "Bearer-run": "Bearer " + "a" * _MB2,
    "Basic-run": "Basic " + "QUFB" * (_MB2 // 4),
    "password=": "password=" * (_MB2 // 9),
    "password-run": "password=" + "Ab1" * (_MB2 // 3),
    "key:": "key: " * (_MB2 // 5),
    "aws=": "aws=" * (_MB2 // 4),
    "AWS-name": "AWS" + "_" * _MB2,
    "tokens": "token_token_token_" * (_MB2 // 18),
    "hooks": "hooks.slack" * (_MB2 // 11),
    "words": "the quick Brown fox jumps over the lazy dog; " * (_MB2 // 45),
    "random": "".join(random.Random(1).choice("aA0:=/_-.@ ") for _ in range(_MB2)),
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_adversarial_text_is_linear(name: str) -> None:
    text = ADVERSARIAL[name]
    scans: dict[str, Callable[[], object]] = {
        "text": lambda: redact_text(text),
        "named": lambda: redact_text(text, field_name="password"),
        "bytes": lambda: redact_bytes(text.encode()),
    }
    for scan, run in scans.items():
        elapsed = fastest(run, within=1.0)
        assert elapsed < 1.0, f"{name}/{scan}: {elapsed:.2f}s for 2 MB"


def test_adversarial_random_bytes() -> None:
    payload = random.Random(3).randbytes(_MB2)
    out, found = redact_bytes(payload)
    assert fastest(lambda: redact_bytes(payload), within=1.0) < 1.0
    if not found:
        assert out is payload


def test_hostile_keys_do_not_grow_the_cache_without_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redact, "_PLAIN_KEYS", set(redact._PLAIN_KEYS))
    for i in range(redact._MAX_PLAIN_KEYS + 10):
        redact._plain_key(f"k{i}")
    assert len(redact._PLAIN_KEYS) <= redact._MAX_PLAIN_KEYS


#: Formats of fixed length: a record cut short inside one (a truncated dead letter)
#: still masks the part that is left, once it is long enough to be one.
CUT_KINDS = {
    "aws_access_key_id",
    "aws_secret_access_key",
    "gcp_api_key",
    "github_token",
    "npm_token",
    "huggingface_token",
    "sendgrid_key",
}


@pytest.mark.parametrize(
    ("kind", "text", "secret"),
    [p for p in POSITIVES if p[0] in CUT_KINDS],
    ids=[p[0] for p in POSITIVES if p[0] in CUT_KINDS],
)
def test_a_token_cut_short_at_the_end_is_still_masked(kind: str, text: str, secret: str) -> None:
    start = text.index(secret)
    for cut in range(start + 16, start + len(secret)):
        out, kinds = redact_text(text[:cut])
        assert kinds == [kind], (cut, out)
        assert secret[: cut - start] not in out
    payload = b'{"event_id":"e1","attributes":{"note":"' + text[: start + 20].encode()
    masked, redacted = redact_bytes(payload)
    assert redacted
    assert secret[:20].encode() not in masked
