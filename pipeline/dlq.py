"""Dead-letter records (docs/contracts/dlq.md): original bytes plus the reason in headers.

The bytes are kept for replay unless they hold a secret-like value; then a
redacted copy goes, with ``redacted: true``. Messages never quote input values.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.flow.validate import Rejection
from pipeline.redact import redact_bytes, redact_text

MAX_MESSAGE = 500


@dataclass(slots=True)
class DeadLetter:
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def dead_letter(
    rejection: Rejection, topic: str, partition: int, offset: int, key: bytes | None
) -> DeadLetter:
    payload, redacted = redact_bytes(rejection.payload)
    message, _ = redact_text(rejection.message[:MAX_MESSAGE])
    headers = [
        ("error.code", rejection.code.encode()),
        ("error.message", message.encode("utf-8", "replace")),
        ("source.topic", topic.encode("utf-8", "replace")),
        ("source.partition", str(partition).encode()),
        ("source.offset", str(offset).encode()),
    ]
    if rejection.batch_index is not None:
        headers.append(("source.batch_index", str(rejection.batch_index).encode()))
    if redacted:
        headers.append(("redacted", b"true"))
    if key is not None:
        key, key_redacted = redact_bytes(key)
        if key_redacted and not redacted:
            headers.append(("redacted", b"true"))
    return DeadLetter(key, payload, headers)
