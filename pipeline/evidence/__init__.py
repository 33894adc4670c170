"""Evidence a reviewer can defend: one dossier per task (``governance.evidence.v1``).

``dossier`` folds one task's enriched events, the alerts naming it and the watermark
into a JSON-able state and builds the record; ``thresholds`` reads the numbers it
judges with from the detectors' specs; ``codec`` writes and reads the topic's Avro;
``source`` finds dossiers and resolves delegation chains; ``views`` renders them for
a terminal or as JSON. docs/contracts/evidence.md is the contract.
"""

from __future__ import annotations

from pipeline.evidence.dossier import (
    add_alerts,
    add_events,
    advance,
    build_dossier,
    changed_since_last_emit,
    forget_at,
    last_record,
    new_state,
    next_deadline,
    next_record,
    observe_watermark,
)
from pipeline.evidence.thresholds import EvidenceThresholds

__all__ = [
    "EvidenceThresholds",
    "add_alerts",
    "add_events",
    "advance",
    "build_dossier",
    "changed_since_last_emit",
    "forget_at",
    "last_record",
    "new_state",
    "next_deadline",
    "next_record",
    "observe_watermark",
]
