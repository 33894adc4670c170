"""When a stage-2 subject is finished and its state can go (issue 15: bounded state).

Without expiry every task, approval, credential and identity ever seen stays in the
Table and its changelog. A subject expires, on the detection watermark (event time,
never the wall clock), once nothing it holds can still matter:

* ``task``: completed, its credentials judged after the revocation grace, its dossier
  forgotten (``dossiers.forget``); then the task detectors' longest window or grace;
* ``approval``: decided and judged; then the approval detectors' longest window;
* ``credential``: revoked, or past its ``expires_at``; then the credential detectors'
  longest window (SP-03's 7 days, SP-07's day: read from the effective specs);
* ``identity``, ``approver``, ``requester``: idle for their detectors' longest window;
* a task never completed or an approval never decided: *abandoned*, once silent (no
  event, no finding notice) for ``abandoned_after`` (``GOVPIPE_ABANDONED_AFTER_S``).

Never while a detector timer or a held event is pending (``engine.next_deadline``),
and never sooner than the allowed lateness after the subject's newest event (a
stage-1 replay's duplicates must still meet its ``_seen``). Metric window states
(``metrics:``) are not subjects and are not expired here.

The alert ids a subject still needs for dedup (a repeat inside the same dedup period
is an Update, not a second Create) outlive it in the partition's *dedup record*
(``DEDUP_KEY``): per expired subject its ``_alerts`` entries whose period may still
be open, until the watermark passes the period's end. A subject that comes back
takes its entries back. The record is bounded (``DEDUP_MAX_SUBJECTS``).

Every function here is a pure function of the state and the watermark, so a replay
expires the same subjects at the same records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from pipeline.detectors.base import DetectorSpec
from pipeline.detectors.policy import DEFAULT_DEDUP_S
from pipeline.detectors.state import (
    ALERTS,
    META,
    META_EXPIRES,
    META_NEWEST,
    META_NOTICED,
    META_REVOKED,
    AlertEntry,
    AlertJson,
    SubjectParts,
    read_approval_outcomes,
    read_task_outcomes,
)

#: A partition's dedup record: ``{"next": earliest until, "s": {key: [until, alerts]}}``.
DEDUP_KEY = "__dedup__:{}"
#: Expired subjects kept in one partition's dedup record; past it, the entries whose
#: period ends first are dropped (a returning subject then re-Creates: a bound).
DEDUP_MAX_SUBJECTS = 10_000
#: One expired subject in the dedup record: ``[until, {alert id: AlertEntry JSON}]``
#: (``until`` the latest period end among its ids).
Stashed = list[Any]


class DedupRecord(TypedDict, total=False):
    """A partition's dedup record (``DEDUP_KEY``): the earliest ``until`` among its
    subjects (``next``) and per expired subject key its ``Stashed`` ids (``s``)."""

    next: int
    s: dict[str, Stashed]


def _until(stashed: Stashed) -> int:
    return int(stashed[0])


def _stashed_alerts(stashed: Stashed) -> dict[str, AlertJson]:
    return dict(stashed[1])


#: Thresholds (seconds) that say how far back a detector reads: windows and graces.
_SPAN_SUFFIXES = ("window_s", "grace_s")
IDLE_KINDS = frozenset({"identity", "approver", "requester"})


def _span_ms(spec: DetectorSpec) -> int:
    """How far back the detector reads: its window and grace thresholds as the policy
    set them, else the spec's own ``window_ms``."""
    spans = {
        k: int(float(v) * 1000)
        for k, v in spec.thresholds.items()
        if k.endswith(_SPAN_SUFFIXES) and isinstance(v, int | float) and not isinstance(v, bool)
    }
    if not any(k.endswith("window_s") for k in spans):
        spans["window"] = spec.window_ms or 0
    return max(spans.values(), default=0)


def _dedup_ms(spec: DetectorSpec) -> int:
    return int(spec.thresholds.get("dedup_s", DEFAULT_DEDUP_S)) * 1000


@dataclass(frozen=True, slots=True)
class Horizons:
    """Per subject kind, from the policy-effective detector specs: how long a finished
    subject is kept (``keep``) and how long its alert ids are (``dedup``)."""

    keep: Mapping[str, int]
    dedup: Mapping[str, int]
    lateness: int
    #: silence after which an unfinished task or approval is dropped (0: never)
    abandoned_after: int = 0

    @classmethod
    def of(
        cls, specs: Iterable[DetectorSpec], lateness_ms: int, abandoned_after_ms: int = 0
    ) -> Horizons:
        """A kind is kept for the longest span of the detectors that read it, and of
        those whose findings reach it as notices: any ``marks_task_unsafe`` detector
        can name a task, the ``discredits_approvals`` ones name approvals."""
        keep: dict[str, int] = {}
        dedup: dict[str, int] = {}
        for spec in specs:
            span = _span_ms(spec)
            reached = {spec.subject}
            if "marks_task_unsafe" in spec.effects:
                reached.add("task")
            if "discredits_approvals" in spec.effects:
                reached.add("approval")
            for kind in reached:
                keep[kind] = max(keep.get(kind, 0), span)
            dedup[spec.subject] = max(dedup.get(spec.subject, 0), _dedup_ms(spec))
        return cls(keep, dedup, lateness_ms, abandoned_after_ms)

    def keep_ms(self, kind: str) -> int:
        """The kind's span plus the allowed lateness: a finding raised when the
        watermark closes a window travels to the subject it names as a notice, and
        a stage-1 replay's duplicates must still meet the subject's ``_seen``."""
        return self.keep.get(kind, 0) + self.lateness

    def abandoned_at(self, kind: str, newest: int | None) -> int | None:
        """When an unfinished subject silent since ``newest`` counts as abandoned: never
        sooner than its kind's horizon (a window that reads it may still be open)."""
        if not self.abandoned_after or newest is None:
            return None
        return newest + max(self.abandoned_after, self.keep_ms(kind))

    def dedup_ms(self, kind: str) -> int:
        return self.dedup.get(kind, DEFAULT_DEDUP_S * 1000)


def touch(
    state: dict[str, Any],
    kind: str,
    events: Iterable[Mapping[str, Any]],
    notice_times: Iterable[int],
) -> None:
    """Note the newest event time and finding-notice time and, for a credential, when
    it was revoked and when it expires (``SubjectMeta`` under ``META``, updated in place
    by its field positions: this runs for every subject a record reaches)."""
    reserved: SubjectParts = state  # type: ignore[assignment]  # typed, no call
    meta = reserved.get(META) or [None, None, None, None]
    for t in notice_times:
        noticed = meta[META_NOTICED]
        meta[META_NOTICED] = t if noticed is None else max(noticed, t)
    newest = meta[META_NEWEST]
    for event in events:
        t = int(event["event_time"])
        newest = t if newest is None else max(newest, t)
        if kind != "credential":
            continue
        etype = event.get("event_type")
        if etype == "credential.revoked":
            revoked = meta[META_REVOKED]
            meta[META_REVOKED] = t if revoked is None else min(revoked, t)
        elif etype in ("credential.issued", "credential.rotated"):
            expires = event.get("expires_at")
            if isinstance(expires, int | float) and not isinstance(expires, bool):
                meta[META_EXPIRES] = int(expires)
    meta[META_NEWEST] = newest
    reserved[META] = meta


def expires_at(
    key: str,
    state: Mapping[str, Any],
    horizons: Horizons,
    grace_ms: int,
    dossier_open: bool,
) -> int | None:
    """When the watermark passing lets the subject go (None: not finished). The
    caller checks first that no detector timer or held event is pending."""
    kind, _, _ = key.partition(":")
    raw = state.get(META)
    if not raw:
        return None
    # ``SubjectMeta``'s fields by position (read for every subject without a timer)
    newest_event, revoked, expires, noticed = raw
    times = [int(t) for t in (newest_event, noticed) if t is not None]
    newest = max(times) if times else None
    if newest_event is None and newest is not None:
        end = newest  # only notices reached it (its events expired before): idle
    elif kind == "task":
        task = read_task_outcomes(state)
        done = task.get("done")
        if not done:
            return horizons.abandoned_at(kind, newest)
        if dossier_open or (task.get("creds") and not done.get("judged")):
            return None
        end = int(done["t"]) + grace_ms
    elif kind == "approval":
        dec = read_approval_outcomes(state).get("dec")
        if not dec:
            return horizons.abandoned_at(kind, newest)
        if not dec.get("judged"):
            return None
        end = int(dec["t"])
    elif kind == "credential":
        ends = [int(t) for t in (revoked, expires) if t is not None]
        if not ends:
            return None  # never revoked, never expiring: a standing credential
        end = min(ends)
    elif kind in IDLE_KINDS:
        if newest is None:
            return None
        end = newest
    else:
        return None
    if newest is not None:
        end = max(end, newest)
    return end + horizons.keep_ms(kind)


def unfinished(key: str, state: Mapping[str, Any]) -> bool:
    """A task not completed or an approval not decided (expired only as abandoned)."""
    kind = key.partition(":")[0]
    meta = state.get(META)
    if not meta or meta[0] is None:
        return False  # only finding notices reached it: expired as idle
    if kind == "task":
        return not read_task_outcomes(state).get("done")
    if kind == "approval":
        return not read_approval_outcomes(state).get("dec")
    return False


# ---- the dedup record -----------------------------------------------------------------


def stash(
    record: DedupRecord, key: str, state: Mapping[str, Any], horizons: Horizons, watermark: int
) -> bool:
    """Keep the expiring subject's alert ids whose dedup period is still open at the
    watermark (its end as recorded, ``alerts.period_end``; for an entry written before
    it was, first seen + the kind's longest dedup period); True if any was kept."""
    span = horizons.dedup_ms(key.partition(":")[0])

    def end(raw: AlertJson) -> int:
        entry = AlertEntry.from_json(raw)
        return entry.until if entry.until is not None else entry.first + span

    alerts: dict[str, AlertJson] = state.get(ALERTS) or {}
    live = {aid: entry for aid, entry in alerts.items() if end(entry) > watermark}
    if not live:
        return False
    until = max(end(entry) for entry in live.values())
    subjects = record.setdefault("s", {})
    subjects[key] = [until, live]
    record["next"] = min(until, int(record.get("next", until)))
    if len(subjects) > DEDUP_MAX_SUBJECTS:
        for gone in sorted(subjects, key=lambda k: (_until(subjects[k]), k))[
            : len(subjects) - DEDUP_MAX_SUBJECTS
        ]:
            del subjects[gone]
        record["next"] = min(_until(v) for v in subjects.values())
    return True


def recall(record: DedupRecord | None, key: str) -> dict[str, AlertJson] | None:
    """A returning subject's alert ids, taken out of the record (None: none kept)."""
    if not record:
        return None
    entry = (record.get("s") or {}).pop(key, None)
    return None if entry is None else _stashed_alerts(entry)


def purge(record: DedupRecord, watermark: int) -> bool:
    """Drop the subjects whose periods all ended; True if the record changed."""
    nxt = record.get("next")
    if nxt is None or int(nxt) > watermark:
        return False
    subjects = record.get("s") or {}
    record["s"] = {k: v for k, v in subjects.items() if _until(v) > watermark}
    if record["s"]:
        record["next"] = min(_until(v) for v in record["s"].values())
    else:
        record.pop("next", None)
    return True
