"""Secret detection and redaction (SL-01).

Anything govpipe publishes (alerts, DLQ, metrics, the internal topic, logs) must
never carry a credential that a producer leaked into an event. Findings say
where (a field path) and what kind, never the value.

Two rules find secrets:

* **Patterns** for credential formats that identify themselves (AWS key ids,
  GitHub/GitLab/Slack/Stripe/OpenAI/Anthropic tokens, JWTs, ``Bearer``/``Basic``
  values, PEM private keys, passwords in URLs, AWS secret keys next to an aws-ish
  name), applied to every string.
* **Names**: a value under a secret-like name (``password``, ``x-api-key``,
  ``db_password``, ``session_token`` …) that looks random enough, in mappings
  and in ``name=value`` / ``"name": "value"`` text.

Speed: ``redact_event`` runs on every event. Every pattern needs an ASCII
uppercase letter, ``=`` or a ``:`` that is not the one of a ``scheme://`` in
its match (validators enforce it for the lowercase-prefixed token kinds). So a
clean event is recognised from one ``orjson.dumps`` of its values and one
``bytes.translate`` that keeps only those characters (plus a set lookup of its
keys). Otherwise, when the dump shows a flat event (no escape, no mapping but
``attributes``), only the strings that hold one of those characters are scanned,
each as the walk would; anything else is walked field by field.

Safety: each regex either starts only at a token boundary or bounds the work
per start, and consumes token bodies possessively, so scanning is linear in the
input (a multi-MB hostile DLQ payload included).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import orjson

from pipeline.records import EVENT_FIELDS

__all__ = [
    "REDACTED",
    "SecretFinding",
    "redact_bytes",
    "redact_event",
    "redact_text",
]

#: Replacement text; showing the kind is fine, showing the value never is.
REDACTED: Final = "[REDACTED:{kind}]"


@dataclass(frozen=True, slots=True)
class SecretFinding:
    """Where a secret was found and what kind it was (never the value)."""

    path: str
    kind: str


# --------------------------------------------------------------------------- #
# Patterns
# --------------------------------------------------------------------------- #
# Every top-level alternative starts with a literal character, so `re` skips
# non-candidate positions in C; the anchor is a rare character of the format
# (the "J" of "eyJ", the "k" of "sk-"), the rest of the prefix and the token
# boundary are checked by lookbehinds, and ``_BACK`` widens the span to the
# prefix afterwards. Named groups: ``w_<kind>`` is the secret (plus ``_BACK``
# characters before the match), ``s_<kind>`` is the secret itself (e.g. the token
# after "Bearer "). A ``__n`` suffix keeps group names unique for one kind.
# A format of fixed length also matches a shorter run (12+ characters, 8 for an
# AWS key id) that ends the text: a record cut short inside a token must not
# keep most of the token in clear.

_B64U = r"[A-Za-z0-9_\-]"
_TOKEN_RUN = r"[A-Za-z0-9\-._~+/]"  # noqa: S105 - a character class, not a secret
_SEP = r"[ \t]++"
_AWS_NAME_TAIL = (
    r"[A-Za-z0-9_.\-]{0,40}+[\"']?[ \t]{0,3}+[:=](?!//)[ \t]{0,3}+[\"']?"
    r"(?P<s_aws_secret_access_key#>[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])|[A-Za-z0-9/+]{12,39}\Z)"
)

_ALTERNATIVES: tuple[str, ...] = (
    # AWS access key id (AKIA long-lived, ASIA temporary, ABIA/ACCA, A3T…)
    r"A(?<![A-Za-z0-9]A)(?P<w_aws_access_key_id>(?:KIA|SIA|BIA|CCA|3T[A-Z0-9])"
    r"(?:[A-Z0-9]{16}(?![A-Za-z0-9])|[A-Z0-9]{8,15}\Z))",
    # Google API key
    r"A(?<![A-Za-z0-9_\-]A)(?P<w_gcp_api_key>Iza"
    r"(?:[A-Za-z0-9_\-]{35}(?![A-Za-z0-9_\-])|[A-Za-z0-9_\-]{12,34}\Z))",
    # PyPI upload token
    r"A(?<=pypi-A)(?<![A-Za-z0-9_\-]pypi-A)(?P<w_pypi_token>gEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,}+)",
    # AWS secret access key next to an aws-ish name: AWS_SECRET_ACCESS_KEY=…
    r"W(?<=AW)S" + _AWS_NAME_TAIL.replace("#", ""),
    r"w(?<=[Aa]w)s" + _AWS_NAME_TAIL.replace("#", "__2"),
    # GitHub: ghp_/gho_/ghu_/ghs_/ghr_ and fine-grained github_pat_
    r"_(?<=gh[pousr]_)(?<![A-Za-z0-9_]gh[pousr]_)(?P<w_github_token>[A-Za-z0-9]{30,}+|[A-Za-z0-9]{12,29}\Z)",
    r"_(?<=github_pat_)(?<![A-Za-z0-9_]github_pat_)(?P<w_github_token__2>[A-Za-z0-9_]{30,}+|[A-Za-z0-9_]{12,29}\Z)",
    # npm and Hugging Face
    r"_(?<=npm_)(?<![A-Za-z0-9_]npm_)(?P<w_npm_token>[A-Za-z0-9]{36}(?![A-Za-z0-9])|[A-Za-z0-9]{12,35}\Z)",
    r"_(?<=hf_)(?<![A-Za-z0-9_]hf_)(?P<w_huggingface_token>[A-Za-z]{34}(?![A-Za-z0-9])|[A-Za-z]{12,33}\Z)",
    # GitLab personal/deploy/runner/… tokens
    r"g(?<![A-Za-z0-9_]g)(?P<w_gitlab_token>l(?:pat|dt|rt|ptt|ft|soat|cbt|oas|imt|agent)-"
    r"[A-Za-z0-9_\-]{20,}+)",
    # Slack bot/user/app/refresh tokens
    r"x(?<![A-Za-z0-9_\-]x)(?P<w_slack_token>(?:ox[abposre]|app)-[A-Za-z0-9\-]{10,}+)",
    # Slack incoming webhook: the URL is the credential ("k" of "hooks.slack.com")
    r"k(?<=hooks\.slack)(?P<w_slack_webhook>\.com/(?:services|workflows|triggers)/"
    r"[A-Za-z0-9_/\-]{8,}+)",
    # Stripe secret/restricted keys, Anthropic keys, OpenAI-style sk-… keys
    r"k(?<=[sr]k)(?<![A-Za-z0-9_][sr]k)(?P<w_stripe_key>_(?:live|test)_[A-Za-z0-9]{16,}+)",
    r"k(?<=sk)(?<![A-Za-z0-9_\-]sk)(?P<w_anthropic_key>-ant-[A-Za-z0-9_\-]{20,}+)",
    r"k(?<=sk)(?<![A-Za-z0-9_\-]sk)(?P<w_openai_key>-(?:proj-|svcacct-|admin-)?"
    r"[A-Za-z0-9_\-]{20,}+)",
    # SendGrid
    r"S(?<![A-Za-z0-9_\-]S)(?P<w_sendgrid_key>G\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}"
    r"(?![A-Za-z0-9_\-])|G\.[A-Za-z0-9_\-]{12,22}(?:\.[A-Za-z0-9_\-]{0,42})?\Z)",
    # JWT / JWS (JWE: the first three parts plus up to two more)
    rf"J(?<=eyJ)(?<![A-Za-z0-9_\-]eyJ)(?P<w_jwt>{_B64U}{{8,}}+\.{_B64U}{{8,}}+\.{_B64U}*+"
    rf"(?:\.{_B64U}++){{0,2}})",
    # Authorization header values
    rf"B(?<![A-Za-z0-9_\-]B)(?:earer|EARER){_SEP}(?P<s_bearer_token>{_TOKEN_RUN}{{8,}}+=*+)",
    rf"b(?<![A-Za-z0-9_\-]b)earer{_SEP}(?P<s_bearer_token__2>{_TOKEN_RUN}{{8,}}+=*+)",
    rf"B(?<![A-Za-z0-9_\-]B)(?:asic|ASIC){_SEP}(?P<s_basic_auth>[A-Za-z0-9+/]{{8,}}+={{0,2}}+)",
    rf"b(?<![A-Za-z0-9_\-]b)asic{_SEP}(?P<s_basic_auth__2>[A-Za-z0-9+/]{{8,}}+={{0,2}}+)",
    # PEM private key block (also JSON-escaped, also truncated before END)
    r"B(?<=-----B)(?P<w_private_key>EGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----"
    r"(?:[A-Za-z0-9+/=\s\\:,.]|-(?!----))*+"
    r"(?:-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----)?)",
    # scheme://user:password@host: only the password is redacted
    r":(?<=[A-Za-z0-9+.\-]:)//[^\s/?#@:\"'<>\\]{0,256}+:"
    r"(?P<s_url_password>[^\s/?#\"'<>\\]{1,256})@",
)


def _dispatch(alternatives: tuple[str, ...]) -> str:
    """One branch per anchor character, so a candidate tries only its own few."""
    by_anchor: dict[str, list[str]] = {}
    for alternative in alternatives:
        by_anchor.setdefault(alternative[0], []).append(alternative[1:])
    return "|".join(
        f"{re.escape(anchor)}(?:{'|'.join(rests)})" for anchor, rests in by_anchor.items()
    )


_SECRET_PATTERN: Final = re.compile(_dispatch(_ALTERNATIVES), re.ASCII)

#: The token-boundary assertions of the alternatives: "(?<![A-Za-z0-9]A)" before a
#: token, "(?![A-Za-z0-9])" after it (not "(?!//)" or "(?!----)", which are syntax).
_BOUNDARY: Final = re.compile(r"\(\?<!\[[^\]]*\][^()]*\)|\(\?!\[[^\]]*\]\)")
#: The same patterns without boundaries, for text where a secret's neighbours are not
#: words: Avro binary, where a string's one-byte length is often a letter or digit
#: ("R" is 41: ``\x02Rghp_…`` hid a 41-character GitHub token), and the ``\xNN``
#: escapes of a bytes repr in a log line (``\x1eghp_…``). There, matching too much
#: only masks a little more.
_UNBOUNDED_PATTERN: Final = re.compile(
    _dispatch(tuple(_BOUNDARY.sub("", a) for a in _ALTERNATIVES)), re.ASCII
)

#: How many characters of a ``w_`` secret lie before the match (its anchor) start.
_BACK: Final[dict[str, int]] = {
    "w_pypi_token": len("pypi-"),
    "w_github_token": len("ghp"),
    "w_github_token__2": len("github_pat"),
    "w_npm_token": len("npm"),
    "w_huggingface_token": len("hf"),
    "w_slack_webhook": len("hooks.slac"),
    "w_stripe_key": len("s"),
    "w_anthropic_key": len("s"),
    "w_openai_key": len("s"),
    "w_jwt": len("ey"),
    "w_private_key": len("-----"),
}

#: "name=value" / "name: value" / "\"name\": \"value\"" in free text, found from
#: a keyword (its case variants spelled out so `re` can skip to candidates); the
#: whole name is then read backwards and judged by ``_name_class``, the value by
#: the same rules as in mappings.
_KEYWORDS: Final = (
    "pass", "pwd", "secret", "token", "key", "auth", "credential", "cookie", "session",
    "bearer", "jwt", "sig",
)  # fmt: skip
_ASSIGNMENT: Final = re.compile(
    "(?:"
    + "|".join(v for k in _KEYWORDS for v in (k, k.capitalize(), k.upper()))
    + r")[A-Za-z0-9_.\-]{0,30}+[\"']?[ \t]{0,3}+[:=](?!//)[ \t]{0,3}+[\"']?"
    r"(?P<value>[^\s\"'&,;<>]{1,1024}+)",
    re.ASCII,
)
_NAME_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_MAX_NAME: Final = 64


def _assigned_name(text: str, start: int, stop: int) -> str:
    """The whole name around a keyword match at ``start`` (bounded, so linear)."""
    begin = start
    floor = max(0, start - _MAX_NAME)
    while begin > floor and text[begin - 1] in _NAME_CHARS:
        begin -= 1
    end = start
    while end < stop and text[end] in _NAME_CHARS:
        end += 1
    return text[begin:end]


#: A keyword starts at most this far before the ':' or '=' of its assignment
#: (keyword, up to 30 more name characters, a quote, 3 blanks).
_REACH: Final = max(map(len, _KEYWORDS)) + 30 + 1 + 3
#: More than one separator per this many characters: the pattern's own scan is cheaper.
_DENSE: Final = 256


def _assignments(text: str) -> Iterator[re.Match[str]]:
    """``_ASSIGNMENT.finditer(text)``, tried only where a keyword starts shortly
    before a ':' or '='.

    The pattern opens with an alternation of words, which ``re`` tries at every
    position: 280 ms over a 3 MB JSON dead letter that named a credential_id once,
    and finding every keyword first was as slow on text full of them. Every match
    ends in a separator at most ``_REACH`` characters after its start, so the
    keywords are looked for only in the window before each separator (found in C
    by ``str.find``), and the pattern is matched there in order, skipping starts
    inside the previous match, as ``finditer`` does. Text dense with separators
    goes to ``finditer`` itself, whose cost is then no higher.
    """
    separators = text.count(":") + text.count("=")
    if not separators:
        return
    if separators * _DENSE > len(text):
        yield from _ASSIGNMENT.finditer(text)
        return
    starts: set[int] = set()
    for sep in ":=":
        at = text.find(sep)
        while at >= 0:
            lo = max(0, at - _REACH)
            window = text[lo:at].lower()
            if len(window) != at - lo:  # lower() changed lengths (e.g. "İ"): try every start
                starts.update(range(lo, at))
            else:
                for keyword in _KEYWORDS:
                    k = window.find(keyword)
                    while k >= 0:
                        starts.add(lo + k)
                        k = window.find(keyword, k + 1)
            at = text.find(sep, at + 1)
    match = _ASSIGNMENT.match
    end = 0
    for pos in sorted(starts):
        if pos < end:
            continue
        m = match(text, pos)
        if m is not None:
            yield m
            end = m.end()


def _kind_of(group: str) -> str:
    return group[2:].split("__", 1)[0]


def _has_upper(token: str) -> bool:
    return not token.islower() and any("A" <= c <= "Z" for c in token)


def _openai_ok(token: str) -> bool:
    """Random keys mix cases and digits; "sk-learn-like-package-names" do not."""
    return _classes(token[3:]) == 3


def _bearer_ok(token: str) -> bool:
    return any(c.isdigit() for c in token) or _has_upper(token)


def _basic_ok(token: str) -> bool:
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    return ":" in text and text.isprintable()


def _webhook_ok(token: str) -> bool:
    return _has_upper(token)


def _url_password_ok(token: str) -> bool:
    return not _is_placeholder(token)


#: Validators by group name; they keep precision and, for kinds whose prefix is
#: lowercase, guarantee the uppercase letter the hot-path pre-filter relies on.
_VALIDATORS: Final[dict[str, Callable[[str], bool]]] = {
    "w_github_token": _has_upper,
    "w_github_token__2": _has_upper,
    "w_gitlab_token": _has_upper,
    "w_slack_token": _has_upper,
    "w_slack_webhook": _webhook_ok,
    "w_huggingface_token": _has_upper,
    "w_stripe_key": _has_upper,
    "w_stripe_key__2": _has_upper,
    "w_anthropic_key": _has_upper,
    "w_openai_key": _openai_ok,
    "w_npm_token": _has_upper,
    "s_bearer_token": _bearer_ok,
    "s_bearer_token__2": _has_upper,
    "s_basic_auth": _basic_ok,
    "s_basic_auth__2": lambda t: _has_upper(t) and _basic_ok(t),
    "s_url_password": _url_password_ok,
}

# --------------------------------------------------------------------------- #
# Names and values
# --------------------------------------------------------------------------- #

_NAME_SEGMENTS: Final = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+", re.ASCII)

#: Substrings of a squashed, lowercased name that make it a secret name; strong
#: names get a lower bar (a short password is still a password).
_STRONG_PARTS: Final = (
    "password", "passwd", "passphrase", "secret", "apikey", "privatekey", "accesskey",
    "signingkey", "encryptionkey", "masterkey", "accountkey", "authtoken", "accesstoken",
    "refreshtoken", "idtoken", "sessiontoken", "connectionstring",
)  # fmt: skip
_STRONG_SEGMENTS: Final = frozenset({"pwd", "pass", "pw", "psw", "dsn"})
_WEAK_PARTS: Final = (
    "token",
    "session",
    "cookie",
    "credential",
    "authorization",
    "bearer",
    "jwt",
    "signature",
)
_WEAK_SEGMENTS: Final = frozenset({"auth", "sig", "nonce", "otp", "pin"})
#: A last segment that makes the name describe a secret rather than hold it.
_META_SEGMENTS: Final = frozenset({
    "id", "ids", "name", "names", "type", "kind", "count", "counts", "len", "length", "size",
    "at", "time", "ts", "timestamp", "date", "ref", "arn", "path", "file", "url", "uri",
    "endpoint", "version", "ver", "source", "provider", "policy", "scope", "scopes",
    "expiry", "expires", "expiration", "ttl", "status", "state", "hint", "set", "required",
    "enabled", "disabled", "method", "mode", "format", "label", "field", "fields", "usage",
    "limit", "limits", "rotated", "issued", "revoked", "last", "age", "domain", "host",
    "header", "location", "store", "vault", "manager", "algorithm", "alg", "strength",
    "rule", "rules", "duration", "timeout", "lifetime", "max", "min", "used",
    "created", "updated", "owner", "issuer", "audience", "aud", "prefix", "suffix",
})  # fmt: skip

#: The same, as the end of a squashed compound ("secretsmanager", "apikeyname").
_META_SUFFIXES: Final = tuple(
    sorted(m for m in _META_SEGMENTS if len(m) >= 4 or m in {"id", "ids", "arn", "url", "uri"})
)

_NONE, _WEAK, _STRONG = 0, 1, 2


@lru_cache(maxsize=8192)
def _name_class(name: str) -> int:
    """0: ordinary name, 1: weak secret name (entropy rule), 2: strong (password-like)."""
    segments = [s.lower() for s in _NAME_SEGMENTS.findall(name)]
    if not segments or segments[-1] in _META_SEGMENTS or segments[-1].endswith(_META_SUFFIXES):
        return _NONE
    squashed = "".join(segments)
    if any(part in squashed for part in _STRONG_PARTS) or any(
        s in _STRONG_SEGMENTS for s in segments
    ):
        return _STRONG
    if any(part in squashed for part in _WEAK_PARTS) or any(s in _WEAK_SEGMENTS for s in segments):
        return _WEAK
    return _NONE


_PLACEHOLDER: Final = re.compile(
    r"(?:\*+|x+|X+|\.+|-+|_+|#+|\?+|<[^<>]*>|\$\{[^{}]*\}|\{\{[^{}]*\}\}|\{[A-Za-z_]*\}"
    r"|%\(?\w*\)?s|\$[A-Za-z_][A-Za-z0-9_]*|\[REDACTED[^\]]*\]|\[?(?i:redacted|hidden|masked"
    r"|removed|none|null|nil|n/?a|unset|empty|undefined|placeholder|example|dummy|password"
    r"|secret|token|changeme|your[_\-]?\w*)\]?)",
    re.ASCII,
)
_UUID: Final = re.compile(
    r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}", re.ASCII
)
_TIMESTAMP: Final = re.compile(r"\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d.*)?", re.ASCII)
_VALUE_TOKEN: Final = re.compile(r"[^\s;,&=\"'<>()\[\]{}]{20,}+")
_WEIRD_SYMBOLS: Final = frozenset("!@#$%^&*+=?~|\\")

#: Shannon entropy (bits/char) and length a value needs under a weak name.
MIN_ENTROPY: Final = 3.5
MIN_ENTROPY_LENGTH: Final = 20
#: Length a value needs under a strong (password-like) name.
MIN_PASSWORD_LENGTH: Final = 8


def _is_placeholder(value: str) -> bool:
    return _PLACEHOLDER.fullmatch(value) is not None


#: A filesystem path: segments of name characters (no ``+`` or ``=``, which base64 has).
_PATH: Final = re.compile(r"(?:\.?/[A-Za-z0-9._\-]{1,128})+/?", re.ASCII)


_B64_SEGMENT: Final = re.compile(r"[A-Za-z0-9_\-]{20,}", re.ASCII)


def _random_segment(segment: str) -> bool:
    """A path segment that reads as base64 noise: long, no dot, all three classes."""
    return (
        _B64_SEGMENT.fullmatch(segment) is not None
        and _classes(segment) == 3
        and shannon_entropy(segment) >= MIN_ENTROPY
    )


def _is_reference(value: str) -> bool:
    """Values that point at a secret (URL, ARN, path) rather than being one.

    A value starting with ``/`` is a path only if it reads like one: base64 secrets
    start with ``/`` one time in 64 (a canary ``db_password`` of random base64 was
    published whole), so ``+``, ``=`` or a random-looking segment make it a value."""
    if "://" in value or value.startswith(("arn:", "projects/", "vault:", "secretsmanager:")):
        return True
    if value.startswith(("/", "./")):
        return _PATH.fullmatch(value) is not None and not any(
            _random_segment(segment) for segment in value.split("/")
        )
    return False


_LOWER: Final = re.compile(r"[a-z]")
_UPPER: Final = re.compile(r"[A-Z]")
_DIGIT: Final = re.compile(r"[0-9]")
_SPACE: Final = re.compile(r"\s")
#: Entropy is measured on at most this many characters (linear, and enough).
_ENTROPY_SAMPLE: Final = 4096


def _classes(value: str) -> int:
    """How many of lowercase, uppercase and digits ``value`` mixes."""
    return (
        (_LOWER.search(value) is not None)
        + (_UPPER.search(value) is not None)
        + (_DIGIT.search(value) is not None)
    )


def shannon_entropy(value: str) -> float:
    """Bits per character of ``value`` (of its first 4096 characters; 0.0 if empty)."""
    value = value[:_ENTROPY_SAMPLE]
    n = len(value)
    if not n:
        return 0.0
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def _looks_random(value: str) -> bool:
    """The entropy rule: long, mixed character classes, high Shannon entropy."""
    if len(value) < MIN_ENTROPY_LENGTH or _is_placeholder(value) or _is_reference(value):
        return False
    if _UUID.fullmatch(value) or _TIMESTAMP.fullmatch(value):
        return False
    if _classes(value) < 2:
        return False
    return shannon_entropy(value) >= MIN_ENTROPY


def _looks_like_password(value: str) -> bool:
    """The strong-name rule: a short but non-trivial value is still a password."""
    if len(value) < MIN_PASSWORD_LENGTH or _is_placeholder(value) or _is_reference(value):
        return False
    if _classes(value) >= 2:
        return True
    return any(c in _WEIRD_SYMBOLS for c in value) and not value.isdigit()


def _value_kind(value: str, name_class: int) -> str | None:
    """Kind of secret a whole, whitespace-free value under a secret name is, if any."""
    if _looks_random(value):
        return "high_entropy"
    if name_class == _STRONG and _looks_like_password(value):
        return "named_secret"
    return None


# --------------------------------------------------------------------------- #
# Text
# --------------------------------------------------------------------------- #

_Span = tuple[int, int, str]


def _may_hold_pattern(text: str) -> bool:
    """False only if no pattern or assignment can match (no A-Z, ':' or '=')."""
    return not text.islower() or ":" in text or "=" in text


def _find_spans(text: str, name_class: int, *, unbounded: bool = False) -> list[_Span]:
    """Secret spans in ``text``, sorted and disjoint; patterns win over name rules.

    ``unbounded``: also match tokens glued to the characters around them (binary
    or escaped text, see ``_UNBOUNDED_PATTERN``).
    """
    if unbounded:
        spans = _find_spans(text, name_class)
        return _union(spans, _pattern_spans(text, _UNBOUNDED_PATTERN))
    spans = _pattern_spans(text, _SECRET_PATTERN)
    return _rule_spans(text, name_class, spans)


def _pattern_spans(text: str, pattern: re.Pattern[str]) -> list[_Span]:
    spans: list[_Span] = []
    search = pattern.search
    pos = 0
    last_end = 0
    end = len(text)
    while pos < end:
        m = search(text, pos)
        if m is None:
            break
        group = m.lastgroup or ""
        if group[:1] == "w":
            start, stop = m.start() - _BACK.get(group, 0), m.end()
        else:
            start, stop = m.span(group) if group else (0, 0)
        validator = _VALIDATORS.get(group)
        if not group or (validator is not None and not validator(text[start:stop])):
            pos = m.start() + 1  # rejected: let other alternatives try inside it
            continue
        spans.append((max(start, last_end), stop, _kind_of(group)))
        pos = last_end = m.end()
    return spans


def _rule_spans(text: str, name_class: int, spans: list[_Span]) -> list[_Span]:
    """``spans`` plus what the assignment and name rules find around them."""
    if ":" in text or "=" in text:  # _assignments looks for the keywords first
        assigned: list[_Span] = []
        for m in _assignments(text):
            cls = _name_class(_assigned_name(text, m.start(), m.start("value")))
            kind = _value_kind(m.group("value"), cls) if cls else None
            if kind:
                assigned.append((*m.span("value"), kind))
        spans = _merge(spans, assigned)

    if name_class:
        named: list[_Span] = []
        stripped = text.strip()
        if stripped and not _SPACE.search(stripped):
            kind = _value_kind(stripped, name_class)
            if kind:
                start = text.index(stripped)
                named.append((start, start + len(stripped), kind))
        else:
            for m in _VALUE_TOKEN.finditer(text):
                if _looks_random(m.group()):
                    named.append((m.start(), m.end(), "high_entropy"))
        spans = _merge(spans, named)
    return spans


def _merge(base: list[_Span], extra: list[_Span]) -> list[_Span]:
    """``base`` plus the ``extra`` spans that overlap none of it (both sorted, disjoint)."""
    if not extra:
        return base
    if not base:
        return extra
    kept: list[_Span] = []
    i = 0
    for span in extra:
        while i < len(base) and base[i][1] <= span[0]:
            i += 1
        if i == len(base) or base[i][0] >= span[1]:
            kept.append(span)
    return sorted(base + kept)


def _union(base: list[_Span], extra: list[_Span]) -> list[_Span]:
    """Every character of either, overlapping spans joined (the first one's kind)."""
    if not extra:
        return base
    out: list[_Span] = []
    for start, stop, kind in sorted(base + extra):
        if out and start < out[-1][1]:
            if stop > out[-1][1]:
                out[-1] = (out[-1][0], stop, out[-1][2])
        else:
            out.append((start, stop, kind))
    return out


def _apply(text: str, spans: list[_Span]) -> str:
    out: list[str] = []
    pos = 0
    for start, stop, kind in spans:
        out.append(text[pos:start])
        out.append(REDACTED.format(kind=kind))
        pos = stop
    out.append(text[pos:])
    return "".join(out)


def _kinds(spans: list[_Span]) -> list[str]:
    return list(dict.fromkeys(kind for _, _, kind in spans))


def _redact_str(text: str, name_class: int) -> tuple[str, list[str]]:
    if not name_class and not _may_hold_pattern(text):
        return text, []
    spans = _find_spans(text, name_class)
    if not spans:
        return text, []
    return _apply(text, spans), _kinds(spans)


def redact_text(text: str, *, field_name: str | None = None) -> tuple[str, list[str]]:
    """Return ``text`` with each secret replaced, and the kinds found ([] = clean).

    ``field_name`` (an attribute key, a header name …) turns on the name rule:
    a random-looking value under a secret-like name is a secret even without a
    known format. Clean text comes back as the same object.
    """
    name_class = _name_class(field_name) if field_name else _NONE
    if "\\x" in text:  # a bytes repr (a log line): escapes glue to what follows them
        spans = _find_spans(text, name_class, unbounded=True)
        return (_apply(text, spans), _kinds(spans)) if spans else (text, [])
    return _redact_str(text, name_class)


# --------------------------------------------------------------------------- #
# Events
# --------------------------------------------------------------------------- #

#: The characters every pattern needs one of (see the module doc); a dump keeps
#: them and the ones that tell its layout (nesting, escapes).
_KEEP: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ:=")
_LAYOUT: Final = b"[{\\"
_DROP: Final = bytes(b for b in range(256) if b not in _KEEP and b not in _LAYOUT)
#: The same characters as 0 bytes (a JSON dump escapes a real 0: it has none).
_MARK: Final = bytes(0 if b in _KEEP else b for b in range(256))
_QUOTE: Final = ord('"')
_COLON: Final = ord(":")
#: Nesting below this depth is not scanned but replaced (fail closed).
MAX_DEPTH: Final = 32
#: Bound on the cache of plain keys, so hostile keys cannot grow it without
#: limit (keys beyond it are just checked every time).
_MAX_PLAIN_KEYS: Final = 16_384
_SCALARS: Final = frozenset({int, float, bool, type(None)})
_MISSING: Final = object()


def _plain_key(key: Any) -> bool:
    """True for an ordinary (not secret-like) name that holds no secret itself."""
    if key in _PLAIN_KEYS:
        return True
    if key.__class__ is not str or _name_class(key) or _redact_str(key, _NONE)[1]:
        return False
    if len(_PLAIN_KEYS) < _MAX_PLAIN_KEYS:
        _PLAIN_KEYS.add(key)
    return True


_PLAIN_KEYS: set[str] = set()
_PLAIN_KEYS.update(f for f in EVENT_FIELDS if _plain_key(f))


def _all_plain(keys: Any) -> bool:
    return _PLAIN_KEYS.issuperset(keys) or all(_plain_key(k) for k in keys)


def _is_clean_fast(event: dict[str, Any]) -> bool:
    """Cheap proof that ``event`` holds no secret; False means "look closer"."""
    try:
        blob = orjson.dumps(list(event.values()))  # top-level keys are checked as names
    except (TypeError, orjson.JSONEncodeError):
        return False
    attributes = event.get("attributes")
    flat = attributes.__class__ is dict
    expected = len(attributes) if attributes.__class__ is dict else 0
    # Clean: no A-Z or "=", and no colon but the one after each attribute key (so
    # no other nested mapping either, whose keys would add colons) and the one
    # of each "scheme://", which no pattern uses unless another colon follows.
    residue = blob.translate(None, _DROP)
    needed = residue.translate(None, _LAYOUT)
    colons = needed.count(b":")
    only_expected = len(needed) == colons and (
        colons == expected or colons == expected + blob.count(b"://")
    )
    # Else some string has A-Z, "=" or a ":" of its own: judge those strings alone.
    if not only_expected and not _suspects_clean(blob, residue, flat):
        return False
    return _all_plain(event) and (not flat or _all_plain(attributes))


def _suspects_clean(blob: bytes, residue: bytes, flat: bool) -> bool:
    """True if no string of ``blob`` with an A-Z, ":" or "=" holds a secret.

    The walk scans each string on its own, under an ordinary name when the keys
    are plain (the caller checks them), and a string without any of those
    characters cannot hold one. That is the whole walk when the dump has no
    escape (so each string is its value's own text, and quotes only delimit
    strings), no mapping but ``attributes`` (whose keys the caller checks) and no
    nesting deep enough to be replaced as unscanned (``residue`` tells). JSON
    syntax has no A-Z or "=", and its only colons follow a key's closing quote;
    every other marked character lies in a string, which is scanned whole.
    """
    if b"\\" in residue or residue.count(b"{") != flat or residue.count(b"[") >= MAX_DEPTH:
        return False
    marked = blob.translate(_MARK)
    at = marked.find(0)
    while at >= 0:
        # A colon right after a quote: a key's colon when that quote closes a
        # string (an even count of quotes before it), else a string's first char.
        if blob[at] != _COLON or blob[at - 1] != _QUOTE or blob.count(b'"', 0, at) & 1:
            start = blob.rfind(b'"', 0, at) + 1
            at = blob.find(b'"', at)
            key = blob[at + 1] == _COLON  # a key: the caller's _all_plain scans it
            if not key and _find_spans(blob[start:at].decode(), _NONE):
                return False
        at = marked.find(0, at + 1)
    return True


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Walker:
    """Copy-on-write scan of a JSON-like value, collecting findings in order."""

    __slots__ = ("found",)

    def __init__(self) -> None:
        self.found: dict[SecretFinding, None] = {}

    @property
    def findings(self) -> list[SecretFinding]:
        return list(self.found)

    def _note(self, path: str, kinds: list[str]) -> None:
        for kind in kinds:
            self.found[SecretFinding(path, kind)] = None

    def value(self, value: Any, path: str, name_class: int, depth: int) -> Any:
        cls = value.__class__
        if cls in _SCALARS:
            return value
        if isinstance(value, str):
            if not name_class and not _may_hold_pattern(value):
                return value
            new, kinds = _redact_str(value, name_class)
            if kinds:
                self._note(path, kinds)
            return new
        if isinstance(value, dict | list | tuple) and depth >= MAX_DEPTH:
            self._note(path, ["unscanned"])  # fail closed rather than publish it unscanned
            return REDACTED.format(kind="unscanned")
        if isinstance(value, dict):
            return self.mapping(value, path, depth + 1)
        if isinstance(value, list | tuple):
            return self.sequence(value, path, name_class, depth + 1)
        if isinstance(value, bytes | bytearray):
            return self.raw(bytes(value), path)
        return value

    def mapping(self, mapping: dict[Any, Any], path: str, depth: int) -> dict[Any, Any]:
        if _all_plain(mapping):
            # Plain keys: only values that may hold a pattern need a look.
            suspects = [
                key
                for key, item in mapping.items()
                if item.__class__ not in _SCALARS
                and (item.__class__ is not str or not item.islower() or ":" in item or "=" in item)
            ]
            changed: dict[Any, Any] = {}
            for key in suspects:
                item = mapping[key]
                new_item = self.value(item, _join(path, key), _NONE, depth)
                if new_item is not item:
                    changed[key] = new_item
            return {**mapping, **changed} if changed else mapping
        return self._mapping_with_names(mapping, path, depth)

    def _mapping_with_names(self, mapping: dict[Any, Any], path: str, depth: int) -> dict[Any, Any]:
        changed: dict[Any, Any] = {}  # key -> new value, only when it changed
        renamed: dict[Any, Any] = {}  # key -> redacted key
        for key, item in mapping.items():
            name_class, shown = self._key(mapping, key, path, renamed)
            if shown is not key:
                renamed[key] = shown
            new_item = self.value(item, _join(path, str(shown)), name_class, depth)
            if new_item is not item:
                changed[key] = new_item
        if not changed and not renamed:
            return mapping
        out: dict[Any, Any] = {}
        for key, item in mapping.items():
            new_item = changed.get(key, _MISSING)
            out[renamed.get(key, key)] = item if new_item is _MISSING else new_item
        return out

    def _key(
        self, mapping: dict[Any, Any], key: Any, path: str, renamed: dict[Any, Any]
    ) -> tuple[int, Any]:
        """The name class of ``key`` and the key to publish (redacted if it holds a secret)."""
        if not isinstance(key, str):
            return _NONE, key
        redacted, kinds = _redact_str(key, _NONE)
        if not kinds:
            return _name_class(key), key
        taken = set(renamed.values())
        while redacted in mapping or redacted in taken:
            redacted += "'"
        self._note(_join(path, redacted), kinds)
        return _name_class(key), redacted

    def sequence(
        self, items: list[Any] | tuple[Any, ...], path: str, name_class: int, depth: int
    ) -> list[Any] | tuple[Any, ...]:
        new_items: list[Any] | None = None
        for i, item in enumerate(items):
            cls = item.__class__
            if cls in _SCALARS or (
                cls is str
                and not name_class
                and item.islower()
                and ":" not in item
                and "=" not in item
            ):
                continue
            new_item = self.value(item, f"{path}[{i}]", name_class, depth)
            if new_item is not item:
                if new_items is None:
                    new_items = list(items)
                new_items[i] = new_item
        if new_items is None:
            return items
        return new_items if isinstance(items, list) else tuple(new_items)

    def raw(self, payload: bytes, path: str) -> bytes:
        text = payload.decode("utf-8", "surrogateescape")
        spans = _find_spans(text, _NONE)
        if not spans:
            return payload
        self._note(path, _kinds(spans))
        return _apply(text, spans).encode("utf-8", "surrogateescape")


def _redact_event_slow(event: dict[str, Any]) -> tuple[dict[str, Any], list[SecretFinding]]:
    walker = _Walker()
    return walker.mapping(event, "", 0), walker.findings


def redact_event(event: dict[str, Any]) -> tuple[dict[str, Any], list[SecretFinding]]:
    """Return a redacted copy of ``event`` and the findings.

    Scans every string (top level, lists, ``attributes`` and any nested
    mapping; keys too). A clean event comes back as the *same* object with
    ``[]``, so the hot path allocates nothing. Containers nested deeper than
    ``MAX_DEPTH`` are replaced by ``[REDACTED:unscanned]`` (kind ``unscanned``)
    rather than published unscanned.
    """
    if _is_clean_fast(event):
        return event, []
    return _redact_event_slow(event)


# --------------------------------------------------------------------------- #
# Bytes (DLQ payloads)
# --------------------------------------------------------------------------- #

_JSON_START: Final = frozenset(b"{[")
#: Larger JSON payloads are scanned as text (the assignment rule still judges
#: ``"name": "value"`` pairs): walking a parsed document costs per node, and a
#: hostile record of 50,000 tiny events (4 MB, ``record_too_large``) took 104 ms
#: walked against 58 ms scanned; 50,000 empty objects (150 KB,
#: ``batch_too_large``) 45 ms against 0.4 ms.
MAX_JSON_WALK_BYTES: Final = 64 * 1024
_WHITESPACE: Final = b" \t\r\n"


def _masked(text: str, spans: list[_Span]) -> str:
    """Replace spans by same-length ASCII so a binary framing (Avro) stays decodable."""
    out: list[str] = []
    pos = 0
    for start, stop, kind in spans:
        width = len(text[start:stop].encode("utf-8", "surrogateescape"))
        tag = REDACTED.format(kind=kind)
        out.append(text[pos:start])
        out.append(tag[:width] if width <= len(tag) else tag + "*" * (width - len(tag)))
        pos = stop
    out.append(text[pos:])
    return "".join(out)


def redact_bytes(payload: bytes) -> tuple[bytes, bool]:
    """Redact a DLQ payload; ``(payload, False)`` (same object) when nothing is found.

    JSON objects/arrays up to ``MAX_JSON_WALK_BYTES`` are walked like events (so
    the name rule applies to their keys) and re-serialised when redacted. Anything
    else, including larger JSON (where the assignment rule judges
    ``"name": "value"`` pairs), invalid UTF-8 and multi-MB input, is scanned as
    text decoded with
    ``surrogateescape`` so untouched bytes round-trip exactly. Confluent
    wire-format payloads (byte 0 = 0x00) are masked in place with same-length
    text so the Avro framing still decodes.
    """
    if not payload:
        return payload, False
    head = payload.lstrip(_WHITESPACE)[:1]
    if head and head[0] in _JSON_START and len(payload) <= MAX_JSON_WALK_BYTES:
        redacted = _redact_json(payload)
        if redacted is not None:
            return redacted
    text = payload.decode("utf-8", "surrogateescape")
    binary = payload[0] == 0
    spans = _find_spans(text, _NONE, unbounded=binary)
    if not spans:
        return payload, False
    new_text = _masked(text, spans) if binary else _apply(text, spans)
    return new_text.encode("utf-8", "surrogateescape"), True


def _redact_json(payload: bytes) -> tuple[bytes, bool] | None:
    """Walk a JSON payload; None when it is not JSON (or too deep) so text mode runs."""
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    walker = _Walker()
    redacted = walker.value(document, "", _NONE, 0)
    if not walker.found:
        return payload, False
    if any(f.kind == "unscanned" for f in walker.found):
        return None  # too deep to walk: the linear text scan covers it all
    try:
        return orjson.dumps(redacted), True
    except (TypeError, orjson.JSONEncodeError):  # pragma: no cover - loads output dumps back
        return None
