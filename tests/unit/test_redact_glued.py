"""Secrets glued to the bytes before them (found by the canary test, issue 15 item 5).

In Avro binary a string's one-byte length is often an ASCII letter or digit ("R"
is 41): a dead-lettered Avro record holding ``\\x02Rghp_…`` kept its GitHub token,
since the pattern wants a token boundary before "ghp_". A DEBUG log line that
prints those bytes (``\\x1eghp_…``) had the same problem in the text formatter.
"""

from __future__ import annotations

import pytest

from pipeline.codec import AvroEncoder
from pipeline.redact import redact_bytes, redact_text
from tests.support.events import make_event

TOKENS = {
    "github_token": "ghp_kNvFqyR1faqOtga8dShVykcHY3UlmqQDi0ytQ",
    "gitlab_token": "glpat-v0WxpX1ieXRxom4IImDGX",
    "slack_token": "xoxb-951550722143-lMaeBOoZBBewalNark8LOboHK",
    "stripe_key": "sk_live_wlVqD0oeL93BPDlp6J4eFQ94A",
    "anthropic_key": "sk-ant-api03-" + "aB3" * 14,
    "openai_key": "sk-proj-abcdefghijKLMNOPQRST0123456789",
    "gcp_api_key": "AIza" + "Sy9aB3cD4eF5gH6iJ7kL8mN9oP0qR1sT2uV",
    "aws_access_key_id": "AKIAIOSFODNN7EXAMPL2",
}


@pytest.mark.parametrize("kind", sorted(TOKENS))
def test_truncated_avro_dead_letter_masks_a_token_after_its_length_byte(kind: str) -> None:
    token = TOKENS[kind]
    for field in ("justification", "credential_id"):
        value = AvroEncoder().event(make_event(1, **{field: token}))
        assert token.encode() in value
        payload = value[:-3]  # truncated: a dead letter kept whole
        out, redacted = redact_bytes(payload)
        assert redacted, kind
        assert token.encode() not in out
        assert len(out) == len(payload)  # masked in place: the framing still decodes
    # in an attribute value too, glued to the key before it
    value = AvroEncoder().event(make_event(1, attributes={"note": token}))
    out, redacted = redact_bytes(value[:-1])
    assert redacted and token.encode() not in out


@pytest.mark.parametrize("kind", sorted(TOKENS))
def test_log_line_with_a_bytes_repr(kind: str) -> None:
    token = TOKENS[kind]
    for before in (b"\x1e", b"\x02R", b"\x00\x02"):
        raw = before + token.encode() + b"\x00"
        line = f"send: topic='x' v={raw!r}"
        out, kinds = redact_text(line)
        assert token not in out, line
        assert kinds


def test_plain_text_keeps_its_token_boundaries() -> None:
    token = TOKENS["github_token"]
    assert redact_text(f"see {token} here")[0] == "see [REDACTED:github_token] here"
    # glued to a word in prose: not a token (no escape, not binary)
    assert redact_text("x" + token) == ("x" + token, [])
    assert redact_bytes(b"x" + token.encode()) == (b"x" + token.encode(), False)
