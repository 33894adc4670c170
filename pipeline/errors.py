"""Exception hierarchy.

GovpipeError
 ├── ConfigError         bad settings or policy: fail at start with one line
 ├── RejectedInput       bad data: becomes a DLQ record with ``code``, never a crash
 └── InfraError          broker / Redis / registry trouble: retry with backoff
"""

from __future__ import annotations


class GovpipeError(Exception):
    """Root of every error govpipe raises on purpose."""


class ConfigError(GovpipeError):
    """Configuration that cannot work; the message is one line for the operator."""


class RejectedInput(GovpipeError):
    """Input that can never be processed; ``code`` is the DLQ ``error.code`` header."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class InfraError(GovpipeError):
    """A dependency is unavailable; the caller pauses and retries, it never drops."""
