"""The evidence page shown in the README (docs/evidence.png).

The issue-14 must-show task of the evidence unit tests (``tests/unit/evidence/
_scenario.py``: a task for a human, delegated, a JIT credential revoked late, an
approval, a denied action, the SP-02 finding), folded by the real dossier code and
written by ``govpipe trace task ID --html``'s own code path, then screenshotted in
headless Chromium:

    python -m tests.support.evidence_page docs/evidence.png
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from pipeline.commands import trace
from pipeline.evidence import (
    EvidenceThresholds,
    add_alerts,
    add_events,
    new_state,
    next_record,
    observe_watermark,
)
from pipeline.evidence.source import MemorySource
from pipeline.report.screenshot import screenshot
from tests.unit.evidence import _scenario as sc


def main() -> int:
    png = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/evidence.png")
    state = new_state(sc.TASK)
    add_events(state, [*sc.events(), sc.late_revocation()])
    add_alerts(state, [sc.sp02_alert()])
    observe_watermark(state, sc.LATE_REVOCATION + 60_000)
    record = next_record(state, EvidenceThresholds.defaults())
    assert record is not None
    with tempfile.TemporaryDirectory(prefix="govpipe-evidence-") as tmp:
        html = Path(tmp) / "evidence.html"
        args = argparse.Namespace(
            trace_what="task", task_id=sc.TASK, as_json=False, html=html, topic=None
        )
        with (Path(tmp) / "trace.txt").open("w") as out:
            trace.run(args, MemorySource([record]), out=out, now_ms=sc.LATE_REVOCATION + 120_000)
        screenshot(html, png, width=1440)
    print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
