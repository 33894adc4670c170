"""govpipe: governance evidence for AI agents and other non-human identities.

raw (agent.events.v1) → validate → enrich → detect → publish (alerts, metrics, DLQ).
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
