"""The evidence dossier of one task: what happened, under whose authority, and verdicts.

Pure: no I/O and no clock. A dossier's *state* is a JSON-able dict (it can live in
the task subject's changelogged state in stage 2) that folds in, in any order and any
number of times:

* the enriched events of the task (``add_events``; the input contract plus stage 1's
  ``identity`` and ``credential`` views, docs/contracts/state.md). Delegations are
  ``delegation`` events of the task;
* the alert records naming the task (``add_alerts``; docs/contracts/alerts.md);
* the event-time watermark (``observe_watermark``), which decides when the revocation
  grace has passed.

Everything is keyed by event id or alert id, and every merge rule is commutative
(earliest, latest by ``(event_time, event_id)``, smallest), so the same inputs give
the same dossier whatever order they came in. ``build_dossier`` turns the state into
the record of ``governance.evidence.v1`` (docs/contracts/evidence.md); ``next_record``
returns it only when its contents changed since the last one emitted, with
``revision`` + 1.

Bounds: at most ``MAX_ACTIONS`` actions are itemised (the earliest, by event time and
id); later ones are only counted, and beyond that bound a redelivered copy can be
counted twice (stage 2 drops most copies before they get here). Other events, alerts
and identities are bounded likewise. Every list in the record is cut at a small
length and says how many it left out.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any, Final

import orjson

from pipeline.evidence.thresholds import EvidenceThresholds

Event = Mapping[str, Any]
State = dict[str, Any]
Record = dict[str, Any]

#: Actions itemised per task (beyond: counted only, in ``acts_over``).
MAX_ACTIONS: Final = 200
#: Non-action events kept per task (starts, credentials, approvals, delegations).
MAX_OTHER_EVENTS: Final = 512
MAX_ALERTS: Final = 256
MAX_IDENTITIES: Final = 64
MAX_CREDENTIAL_VIEWS: Final = 64
#: How long a dossier keeps accepting late inputs after its task's grace (``forget_at``).
KEEP_MS: Final = 7 * 24 * 3600 * 1000
#: Free text (policy reasons, justifications, resources) is cut to this many characters.
MAX_TEXT: Final = 256
#: Items per list in the record; the rest is counted in the ``*_left_out`` beside it.
LIST_LIMIT: Final = 20
SCOPE_LIMIT: Final = 32
TEXT_LIMIT: Final = 10
IDS_LIMIT: Final = 20

#: What a missing mode means: the strictest standard (docs/contracts/evidence.md).
DEFAULT_MODE: Final = "autonomous"
HIGH_RISK: Final = frozenset({"high", "critical"})
NONE: Final = "none"
#: The event type of stage 2's finding notices to a task (``flow/outcomes.FINDING``).
FINDING_NOTICE: Final = "_finding"
#: ``pending`` markers: what the dossier still waits for before a verdict is final.
PENDING_COMPLETION: Final = "task_completion"
PENDING_GRACE: Final = "revocation_grace"
PENDING_DECISION: Final = "approval_decision"

#: Per event type, what its brief keeps: (short name, event field, raw | text | list).
_KEPT: Final[dict[str, tuple[tuple[str, str, str], ...]]] = {
    "task.started": (
        ("ob", "on_behalf_of", "raw"),
        ("pe", "parent_event_id", "raw"),
        ("pl", "platform", "raw"),
        ("env", "environment", "raw"),
    ),
    "task.completed": (("o", "outcome", "raw"),),
    "credential.issued": (
        ("c", "credential_id", "raw"),
        ("ck", "credential_kind", "raw"),
        ("via", "issued_via", "raw"),
        ("sc", "scopes", "list"),
        ("x", "expires_at", "raw"),
    ),
    "credential.rotated": (
        ("c", "credential_id", "raw"),
        ("sc", "scopes", "raw"),
        ("x", "expires_at", "raw"),
    ),
    "credential.revoked": (("c", "credential_id", "raw"),),
    "approval.requested": (
        ("ap", "approval_id", "raw"),
        ("rk", "risk", "raw"),
        ("j", "justification", "text"),
    ),
    "approval.viewed": (("ap", "approval_id", "raw"), ("by", "approver", "raw")),
    "approval.decided": (
        ("ap", "approval_id", "raw"),
        ("by", "approver", "raw"),
        ("dc", "decision", "raw"),
        ("rk", "risk", "raw"),
    ),
    "delegation": (
        ("to", "delegate_identity_id", "raw"),
        ("sc", "scopes", "list"),
        ("pe", "parent_event_id", "raw"),
        ("c", "credential_id", "raw"),
    ),
}
_IDENTITY_FIELDS: Final = ("kind", "owner", "team", "environment", "risk_tier", "status")


# ---- state ----------------------------------------------------------------------------


def new_state(task_id: str) -> State:
    """An empty dossier state for ``task_id``."""
    return {"task": task_id, "ev": {}, "acts": {}, "over": {}, "alerts": {}, "ids": {}, "creds": {}}


def _text(value: Any, limit: int = MAX_TEXT) -> str | None:
    if value is None or value == "":
        return None
    return str(value)[:limit]


def _canon(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _order(brief: Mapping[str, Any], event_id: str) -> tuple[int, str]:
    return int(brief["t"]), event_id


def _keep(store: dict[str, Any], key: str, value: Any) -> None:
    """Two copies of one id (a stage-1 replay re-enriches): keep one, chosen by content."""
    old = store.get(key)
    if old is None or _canon(value) > _canon(old):
        store[key] = value


def _evict_latest(store: dict[str, Any], limit: int) -> list[Any]:
    """Drop the latest entries (by time, then id) beyond ``limit``; returns them."""
    dropped = []
    while len(store) > limit:
        key = max(store, key=lambda k: _order(store[k], k))
        dropped.append(store.pop(key))
    return dropped


def _max_tagged(slot: dict[str, Any], key: str, tag: list[Any], value: Any) -> None:
    """Keep the value with the greatest ``tag`` = [event_time, event_id] (commutative)."""
    old = slot.get(key)
    if old is None:
        slot[key] = [tag, value]
        return
    mine, theirs = (int(tag[0]), str(tag[1])), (int(old[0][0]), str(old[0][1]))
    if mine > theirs or (mine == theirs and _canon(value) > _canon(old[1])):
        slot[key] = [tag, value]


def _min_opt(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _brief(event: Event) -> dict[str, Any] | None:
    """What the dossier needs of one event (no payload, text cut)."""
    kind = event.get("event_type")
    t = int(event["event_time"])
    if kind == "action":
        identity = event.get("identity")
        known = bool(isinstance(identity, Mapping) and identity.get("known") is True)
        return {
            "t": t,
            "i": event.get("identity_id"),
            "k": known,
            "ob": event.get("on_behalf_of"),
            "a": _text(event.get("action")),
            "res": _text(event.get("resource")),
            "sc": event.get("scope"),
            "s": event.get("sensitivity"),
            "c": event.get("credential_id"),
            "d": event.get("policy_decision"),
            "p": event.get("policy_id"),
            "r": _text(event.get("policy_reason")),
            "o": event.get("outcome"),
            "j": _text(event.get("justification")),
            "ap": event.get("approval_id"),
        }
    if kind not in _KEPT:
        return None
    brief: dict[str, Any] = {"y": kind, "t": t, "i": event.get("identity_id")}
    for short, name, how in _KEPT[str(kind)]:
        value = event.get(name)
        if how == "text":
            value = _text(value)
        elif how == "list":
            value = list(value or [])
        brief[short] = value
    if kind == "task.started":
        attributes = event.get("attributes")
        parent = attributes.get("parent_task_id") if isinstance(attributes, Mapping) else None
        brief["pt"] = _text(parent)
    return brief


def _note_identity(state: State, event: Event, tag: list[Any]) -> None:
    identity_id = event.get("identity_id")
    view = event.get("identity")
    if not identity_id or not isinstance(view, Mapping):
        return
    ids: dict[str, Any] = state["ids"]
    if identity_id not in ids and len(ids) >= MAX_IDENTITIES:
        if str(identity_id) > max(ids):
            return
        del ids[max(ids)]
    held = ids.get(str(identity_id))
    if held is not None and (int(tag[0]), str(tag[1])) < (int(held[0][0]), str(held[0][1])):
        return  # an older view than the one kept
    compact = {
        "known": view.get("known") is True,
        **{f: _text(view.get(f)) for f in _IDENTITY_FIELDS},
        "mode": _text(view.get("mode")),
    }
    _max_tagged(ids, str(identity_id), tag, compact)


def _note_credential(state: State, event: Event, tag: list[Any]) -> None:
    cred_id = event.get("credential_id")
    view = event.get("credential")
    if not cred_id or not isinstance(view, Mapping) or view.get("known") is not True:
        return
    creds: dict[str, Any] = state["creds"]
    key = str(cred_id)
    if key not in creds and len(creds) >= MAX_CREDENTIAL_VIEWS:
        if key > max(creds):
            return
        del creds[max(creds)]
    slot = creds.setdefault(key, {})
    for name in ("identity_id", "kind", "issued_via"):
        value = _text(view.get(name))
        slot[name] = _min_opt(slot.get(name), value)
    for name in ("issued_at", "revoked_at"):
        value = view.get(name)
        slot[name] = _min_opt(slot.get(name), value if isinstance(value, int) else None)
    expires = view.get("expires_at")
    _max_tagged(slot, "expires_at", tag, expires if isinstance(expires, int) else None)


def add_events(state: State, events: Iterable[Event]) -> None:
    """Fold the task's enriched events in (any order; repeats by event id are no-ops)."""
    task = state["task"]
    ev: dict[str, Any] = state["ev"]
    acts: dict[str, Any] = state["acts"]
    notices = []
    for event in events:
        other_task = event.get("task_id")
        if other_task and other_task != task:
            continue  # another task's event; a revocation without task_id is ours
        if event.get("event_type") == FINDING_NOTICE:
            notices.append(_notice_alert(event))
            continue
        brief = _brief(event)
        if brief is None:
            continue
        event_id = str(event["event_id"])
        tag = [brief["t"], event_id]
        _note_identity(state, event, tag)
        _note_credential(state, event, tag)
        if "y" in brief:
            _keep(ev, event_id, brief)
            _evict_latest(ev, MAX_OTHER_EVENTS)
            continue
        if event_id not in acts and len(acts) >= MAX_ACTIONS:
            latest = state.get("amax")  # the latest itemised action, cached
            if latest is None:
                key = max(acts, key=lambda k: _order(acts[k], k))
                latest = state["amax"] = [int(acts[key]["t"]), key]
            if _order(brief, event_id) > (int(latest[0]), str(latest[1])):
                _count_over(state, brief)
                continue
            state.pop("amax", None)
        _keep(acts, event_id, brief)
        for dropped in _evict_latest(acts, MAX_ACTIONS):
            _count_over(state, dropped)
    if notices:
        add_alerts(state, notices)


def _notice_alert(event: Event) -> dict[str, Any]:
    """A stage-2 finding notice (``flow/outcomes.finding_notices``: event id
    ``finding:<alert_id>:<task>``) as the alert fields the dossier reads; a notice that
    also carries ``alert_id``, ``severity``, ``frameworks``, ``approval_id`` or
    ``count`` gives them."""
    event_id = str(event.get("event_id") or "")
    parsed = event_id.split(":")[1] if event_id.startswith("finding:") else None
    return {
        "alert_id": event.get("alert_id") or parsed,
        "detector": event.get("detector"),
        "severity": event.get("severity"),
        "frameworks": event.get("frameworks") or [],
        "approval_id": event.get("approval_id"),
        "time": event.get("event_time"),
        "count": event.get("count") or 1,
    }


def _count_over(state: State, brief: Mapping[str, Any]) -> None:
    over: dict[str, int] = state["over"]
    for key in (
        "n",
        f"d:{brief.get('d') or NONE}",
        f"s:{brief.get('s') or NONE}",
        f"o:{brief.get('o') or NONE}",
    ):
        over[key] = over.get(key, 0) + 1
    if brief.get("d") == "deny" and brief.get("o") == "success":
        over["dbe"] = over.get("dbe", 0) + 1
    if not brief.get("k"):
        over["unattr"] = over.get("unattr", 0) + 1
    if _executed_without_allow(brief):
        over["unauth"] = over.get("unauth", 0) + 1


def _executed_without_allow(brief: Mapping[str, Any]) -> bool:
    """Did the action run (not failed or errored) without a policy allowing it?"""
    return brief.get("d") != "allow" and brief.get("o") not in ("failure", "error")


def add_alerts(state: State, alerts: Iterable[Mapping[str, Any]]) -> None:
    """Fold in alert records naming the task (Create or Update; repeats are no-ops)."""
    store: dict[str, Any] = state["alerts"]
    for alert in alerts:
        other_task = alert.get("task_id")
        if other_task and other_task != state["task"]:
            continue
        alert_id = alert.get("alert_id")
        if not alert_id:
            continue
        frameworks = sorted(
            {
                f"{f.get('framework')} {f.get('control')}"
                for f in alert.get("frameworks") or []
                if isinstance(f, Mapping)
            }
        )
        info = alert.get("finding_info") or {}
        first = info.get("first_seen_time") if isinstance(info, Mapping) else None
        t = int(first) if isinstance(first, int) else int(alert.get("time") or 0)
        n = int(alert.get("count") or 1)
        brief: dict[str, Any] = {
            "t": t,
            "det": _text(alert.get("detector")),
            "sev": _text(alert.get("severity")),
            "n": n,
            "ap": alert.get("approval_id"),
            "fw": frameworks,
        }
        old = store.get(str(alert_id))
        if old is not None:
            t, n = min(int(old["t"]), t), max(int(old["n"]), n)
            rest_old = {k: v for k, v in old.items() if k not in ("t", "n")}
            rest_new = {k: v for k, v in brief.items() if k not in ("t", "n")}
            brief = {**max(rest_old, rest_new, key=_canon), "t": t, "n": n}
        store[str(alert_id)] = brief
        _evict_latest(store, MAX_ALERTS)


def add_reviews(state: State, reviews: Iterable[tuple[str, str, str]]) -> None:
    """Fold in (approval id, alert id, detector) of findings that discredit the task's
    approvals though raised elsewhere (RS-02/03/07 on an approver or requester,
    relayed by the approval: ``flow/dossiers.relay_reviews``). They make the approval
    not meaningful; they are not findings on the task (``findings`` lists those)."""
    store: dict[str, dict[str, str]] = state.setdefault("rv", {})
    for approval_id, alert_id, detector in reviews:
        held = store.get(approval_id)
        if held is None:
            if len(store) >= MAX_ALERTS:
                continue
            held = store[approval_id] = {}
        if alert_id not in held and len(held) < MAX_ALERTS:
            held[alert_id] = _text(detector) or NONE


def observe_watermark(state: State, watermark: int) -> None:
    """The event-time watermark of the task's partition (never the wall clock)."""
    state["wm"] = max(int(watermark), int(state.get("wm", watermark)))


def next_deadline(state: State, thresholds: EvidenceThresholds) -> int | None:
    """When the watermark passing would change the dossier (the revocation grace), if
    still ahead: stage 2 arms a timer for it."""
    completed = _first(state, "task.completed")
    if completed is None or not _issued(state):
        return None
    deadline = int(completed["t"]) + thresholds.revocation_grace_ms
    return deadline if deadline > int(state.get("wm", deadline - 1)) else None


def forget_at(state: State, thresholds: EvidenceThresholds, keep_ms: int = KEEP_MS) -> int:
    """When stage 2 may drop the dossier state: ``keep_ms`` after the revocation grace
    of a completed task, or after the latest event of one never seen completing. A
    straggler after that starts an empty state that never emits (no completion)."""
    completed = _first(state, "task.completed")
    if completed is not None:
        return int(completed["t"]) + thresholds.revocation_grace_ms + keep_ms
    times = [int(b["t"]) for b in state["ev"].values()]
    times += [int(a["t"]) for a in state["acts"].values()]
    return max(times, default=int(state.get("wm", 0))) + keep_ms


# ---- the record -----------------------------------------------------------------------


def _of_type(state: State, kind: str) -> list[tuple[str, dict[str, Any]]]:
    return sorted(
        ((k, b) for k, b in state["ev"].items() if b["y"] == kind),
        key=lambda kb: _order(kb[1], kb[0]),
    )


def _first(state: State, kind: str) -> dict[str, Any] | None:
    found = [(k, b) for k, b in state["ev"].items() if b["y"] == kind]
    return min(found, key=lambda kb: _order(kb[1], kb[0]))[1] if found else None


def _issued(state: State) -> list[tuple[str, dict[str, Any]]]:
    return [(k, b) for k, b in _of_type(state, "credential.issued") if b.get("c")]


def _cut(items: list[Any], limit: int = LIST_LIMIT) -> tuple[list[Any], int]:
    return items[:limit], max(0, len(items) - limit)


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000


def _identity(state: State, identity_id: str | None) -> dict[str, Any]:
    entry = state["ids"].get(identity_id) if identity_id else None
    view: dict[str, Any] = entry[1] if entry else {}
    return {
        "identity_id": identity_id,
        "known": bool(view.get("known")),
        **{f: view.get(f) for f in _IDENTITY_FIELDS},
        "mode": view.get("mode") or DEFAULT_MODE,
    }


def _all_true(values: Iterable[bool | None]) -> bool | None:
    """False if any is False, True if all are True (and there is one), else None."""
    seen = list(values)
    if any(v is False for v in seen):
        return False
    if seen and all(v is True for v in seen):
        return True
    return None


def _covered(scope: str, held: Iterable[str]) -> bool:
    return any(g == scope or fnmatchcase(scope.lower(), g.lower()) for g in held)


def _credentials(
    state: State, th: EvidenceThresholds, completed_at: int | None
) -> list[dict[str, Any]]:
    issued: dict[str, dict[str, Any]] = {}
    for _, b in _issued(state):
        issued.setdefault(b["c"], b)  # earliest issuance
    rotations: dict[str, dict[str, Any]] = {}
    for _, b in _of_type(state, "credential.rotated"):
        if b.get("c") and b.get("x") is not None:
            rotations[b["c"]] = b  # latest rotation with an expiry
    revoked: dict[str, int] = {}
    for _, b in _of_type(state, "credential.revoked"):
        if b.get("c"):
            revoked.setdefault(b["c"], int(b["t"]))
    used = Counter(str(a["c"]) for a in state["acts"].values() if a.get("c"))
    delegated = {b["c"] for b in state["ev"].values() if b["y"] == "delegation" and b.get("c")}
    ids = sorted(set(issued) | set(revoked) | set(used) | delegated | set(state["creds"]))
    wm = state.get("wm")
    out = []
    for cred_id in ids:
        view = state["creds"].get(cred_id, {})
        iss = issued.get(cred_id)
        issued_at = _min_opt(iss["t"] if iss else None, view.get("issued_at"))
        if cred_id in rotations:
            expires_at = rotations[cred_id]["x"]
        elif iss is not None:
            expires_at = iss.get("x")
        else:
            expires_at = view["expires_at"][1] if view.get("expires_at") else None
        revoked_at = _min_opt(revoked.get(cred_id), view.get("revoked_at"))
        kind = (iss or {}).get("ck") or view.get("kind")
        via = (iss or {}).get("via") or view.get("issued_via")
        owner = (iss or {}).get("i") or view.get("identity_id")
        lifetime = (
            expires_at - issued_at if expires_at is not None and issued_at is not None else None
        )
        if via == "jit":
            ephemeral: bool | None = True
        elif issued_at is None and kind is None and via is None:
            ephemeral = None  # nothing known about its issuance
        else:
            limit = th.max_lifetime_for(_identity(state, owner).get("kind"))
            ephemeral = lifetime is not None and limit is not None and lifetime <= limit
        within: bool | None = None
        if iss is not None and completed_at is not None:
            deadline = completed_at + th.revocation_grace_ms
            if revoked_at is not None and revoked_at <= deadline:
                within = True
            elif wm is not None and int(wm) >= deadline:
                within = False
        scopes, scopes_left = _cut(sorted(set((iss or {}).get("sc") or [])), SCOPE_LIMIT)
        out.append(
            {
                "credential_id": cred_id,
                "identity_id": owner,
                "kind": kind,
                "issued_via": via,
                "issued_in_task": iss is not None,
                "issued_at": issued_at,
                "expires_at": expires_at,
                "revoked_at": revoked_at,
                "lifetime_seconds": _seconds(lifetime),
                "ephemeral": ephemeral,
                "revoked_within_grace": within,
                "actions": used.get(cred_id, 0),
                "scopes": scopes,
                "scopes_left_out": scopes_left,
            }
        )
    return out


def _approvals(state: State, th: EvidenceThresholds) -> list[dict[str, Any]]:
    by_id: dict[str, dict[str, Any]] = {}
    for _, b in sorted(state["ev"].items(), key=lambda kb: _order(kb[1], kb[0])):
        if not str(b["y"]).startswith("approval.") or not b.get("ap"):
            continue
        slot = by_id.setdefault(b["ap"], {"views": {}})
        if b["y"] == "approval.requested":
            slot.setdefault("req", b)
        elif b["y"] == "approval.decided":
            slot.setdefault("dec", b)
        else:
            slot["views"].setdefault(str(b.get("by") or "").casefold(), b)
    for a in state["acts"].values():
        if a.get("ap"):
            by_id.setdefault(a["ap"], {"views": {}})
    rs: dict[str, set[str]] = {}
    for alert in state["alerts"].values():
        if alert.get("ap") and str(alert.get("det") or "").startswith("RS-"):
            rs.setdefault(alert["ap"], set()).add(str(alert["det"]))
    for approval_id, found in (state.get("rv") or {}).items():
        rs.setdefault(approval_id, set()).update(found.values())
    out = []
    for approval_id in sorted(by_id):
        slot = by_id[approval_id]
        req, dec = slot.get("req"), slot.get("dec")
        # a request after its decision starts no review
        late_request = req is not None and dec is not None and req["t"] > dec["t"]
        req_start = None if late_request else req
        approver = dec.get("by") if dec else None
        views: dict[str, Any] = slot["views"]
        if dec is not None and approver:
            view = views.get(str(approver).casefold())
            view = view if view is not None and view["t"] <= dec["t"] else None
        elif dec is not None:
            earlier = [v for v in views.values() if v["t"] <= dec["t"]]
            view = min(earlier, key=lambda v: v["t"]) if earlier else None
        else:
            view = min(views.values(), key=lambda v: v["t"]) if views else None
        starts = [s["t"] for s in (req_start, view) if s is not None]
        review_ms = dec["t"] - max(starts) if dec is not None and starts else None
        decision = dec.get("dc") if dec else None
        risk = (req or {}).get("rk") or (dec or {}).get("rk")
        minimum = th.min_review_high_risk_ms if risk in HIGH_RISK else th.min_review_ms
        # RS-01 judges approvals only: a hasty "no" grants nothing
        judged = review_ms is not None and decision == "approved"
        too_fast = review_ms < minimum if judged and review_ms is not None else None
        context_seen = None if dec is None else view is not None
        detectors = sorted(rs.get(approval_id, ()))
        meaningful: bool | None
        if decision is None:
            meaningful = None
        elif decision == "denied":
            meaningful = not detectors
        else:
            meaningful = not detectors and bool(context_seen) and too_fast is False
        out.append(
            {
                "approval_id": approval_id,
                "approver": approver,
                "risk": risk,
                "requested_at": req["t"] if req else None,
                "viewed_at": view["t"] if view else None,
                "decided_at": dec["t"] if dec else None,
                "review_seconds": _seconds(review_ms),
                "decision": decision,
                "context_seen": context_seen,
                "too_fast": too_fast,
                "rs_detectors": detectors,
                "meaningful": meaningful,
            }
        )
    return out


def _delegations(state: State) -> list[dict[str, Any]]:
    out = []
    for event_id, b in _of_type(state, "delegation"):
        scopes, left = _cut(sorted(set(b.get("sc") or [])), SCOPE_LIMIT)
        out.append(
            {
                "event_id": event_id,
                "time": b["t"],
                "delegator": b.get("i"),
                "delegate": b.get("to"),
                "scopes": scopes,
                "scopes_left_out": left,
                "parent_event_id": b.get("pe"),
            }
        )
    return out


def _scopes_added(state: State) -> list[str]:
    """Per identity: scopes its later issuances or rotations granted beyond its first."""
    owner_of: dict[str, str] = {}
    baseline: dict[str, set[str]] = {}
    added: set[str] = set()
    grants = [
        (k, b)
        for k, b in sorted(state["ev"].items(), key=lambda kb: _order(kb[1], kb[0]))
        if b["y"] in ("credential.issued", "credential.rotated") and b.get("c")
    ]
    for _, b in grants:
        if b["y"] == "credential.issued":
            owner_of.setdefault(b["c"], b.get("i") or f"credential:{b['c']}")
    for _, b in grants:
        owner = b.get("i") or owner_of.get(b["c"]) or f"credential:{b['c']}"
        scopes = [s for s in b.get("sc") or [] if s]
        if owner not in baseline:
            if b["y"] == "credential.issued":
                baseline[owner] = set(scopes)
            continue
        added.update(s for s in scopes if not _covered(s, baseline[owner]))
    return sorted(added)


def _actions(state: State) -> dict[str, Any]:
    acts = sorted(state["acts"].items(), key=lambda kb: _order(kb[1], kb[0]))
    over: dict[str, int] = state["over"]

    def counts(prefix: str, field: str) -> dict[str, int]:
        c: Counter[str] = Counter(str(a.get(field) or NONE) for _, a in acts)
        for key, n in over.items():
            if key.startswith(prefix):
                c[key[len(prefix) :]] += n
        return dict(sorted(c.items()))

    policies: Counter[tuple[str, str, str]] = Counter(
        (str(a.get("p") or ""), str(a.get("d") or NONE), str(a.get("r") or "")) for _, a in acts
    )
    policy_rows = [
        {"policy_id": p or None, "decision": d, "reason": r or None, "actions": n}
        for (p, d, r), n in sorted(policies.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    dbe = [k for k, a in acts if a.get("d") == "deny" and a.get("o") == "success"]
    resources = sorted({str(a["res"]) for _, a in acts if a.get("res")})
    texts = {str(a["j"]) for _, a in acts if a.get("j")}
    texts |= {str(b["j"]) for b in state["ev"].values() if b.get("j")}
    policies_cut, policies_left = _cut(policy_rows)
    resources_cut, resources_left = _cut(resources)
    dbe_cut, dbe_left = _cut(dbe, IDS_LIMIT)
    added_cut, added_left = _cut(_scopes_added(state), SCOPE_LIMIT)
    texts_cut, texts_left = _cut(sorted(texts), TEXT_LIMIT)
    return {
        "total": len(acts) + over.get("n", 0),
        "itemised": len(acts),
        "by_decision": counts("d:", "d"),
        "by_sensitivity": counts("s:", "s"),
        "by_outcome": counts("o:", "o"),
        "unattributable": sum(1 for _, a in acts if not a.get("k")) + over.get("unattr", 0),
        "executed_without_allow": sum(1 for _, a in acts if _executed_without_allow(a))
        + over.get("unauth", 0),
        "denied_but_executed": len(dbe) + over.get("dbe", 0),
        "denied_but_executed_ids": dbe_cut,
        "denied_but_executed_ids_left_out": dbe_left,
        "policies": policies_cut,
        "policies_left_out": policies_left,
        "resources": resources_cut,
        "resources_left_out": resources_left,
        "scopes_added_mid_task": added_cut,
        "scopes_added_mid_task_left_out": added_left,
        "justifications": texts_cut,
        "justifications_left_out": texts_left,
    }


def _actors(state: State) -> list[dict[str, Any]]:
    counts = Counter(str(a["i"]) for a in state["acts"].values() if a.get("i"))
    delegates = {b.get("to") for b in state["ev"].values() if b["y"] == "delegation"}
    names = set(counts) | {str(d) for d in delegates if d}
    out = []
    for identity_id in sorted(names):
        ident = _identity(state, identity_id)
        out.append(
            {
                "identity_id": identity_id,
                "known": ident["known"],
                "kind": ident["kind"],
                "owner": ident["owner"],
                "team": ident["team"],
                "mode": ident["mode"],
                "actions": counts.get(identity_id, 0),
            }
        )
    return out


def _findings(state: State) -> list[dict[str, Any]]:
    rows = sorted(state["alerts"].items(), key=lambda kb: _order(kb[1], kb[0]))
    return [
        {
            "alert_id": alert_id,
            "detector": a.get("det"),
            "severity": a.get("sev"),
            "time": a["t"],
            "count": a["n"],
            "frameworks": a.get("fw", []),
        }
        for alert_id, a in rows
    ]


def build_dossier(state: State, thresholds: EvidenceThresholds) -> Record:
    """The dossier's contents (no ``revision``/``emitted_at``): a pure function of the
    events, alerts and watermark folded in, whatever their order."""
    started = _first(state, "task.started")
    completed = _first(state, "task.completed")
    completed_at = int(completed["t"]) if completed else None
    acts = state["acts"]
    initiator_id = started.get("i") if started else None
    if initiator_id is None and acts:
        first = min(acts, key=lambda k: _order(acts[k], k))
        initiator_id = acts[first].get("i")
    principal = started.get("ob") if started else None
    own_ids = set(state["ev"]) | set(acts)
    parent_event = started.get("pe") if started else None
    parent_task = started.get("pt") if started else None
    parent = None
    if parent_task or (parent_event and parent_event not in own_ids):
        parent = {"task_id": parent_task, "event_id": parent_event}

    credentials = _credentials(state, thresholds, completed_at)
    approvals = _approvals(state, thresholds)
    actions = _actions(state)
    findings = _findings(state)
    initiator = _identity(state, initiator_id)

    succeeded = None if completed is None else completed.get("o") == "success"
    total = actions["total"]
    used = [c for c in credentials if c["actions"]]
    in_task = [c for c in credentials if c["issued_in_task"]]
    decided = [a for a in approvals if a["decision"] is not None]
    verdicts = {
        "succeeded": succeeded,
        "safe": None if succeeded is None else succeeded and not findings,
        "authorised": None if not total else actions["executed_without_allow"] == 0,
        "attributable": bool(principal)
        and initiator["known"]
        and (not total or actions["unattributable"] == 0),
        "ephemeral": _all_true(c["ephemeral"] for c in used),
        "revoked_on_completion": _all_true(c["revoked_within_grace"] for c in in_task),
        "approved_meaningfully": _all_true(a["meaningful"] for a in decided),
    }
    pending = []
    if completed is None:
        pending.append(PENDING_COMPLETION)
    elif any(c["revoked_within_grace"] is None for c in in_task):
        pending.append(PENDING_GRACE)
    if any(a["decision"] is None for a in approvals):
        pending.append(PENDING_DECISION)

    credentials_cut, credentials_left = _cut(credentials)
    approvals_cut, approvals_left = _cut(approvals)
    delegations_cut, delegations_left = _cut(_delegations(state))
    actors_cut, actors_left = _cut(_actors(state))
    findings_cut, findings_left = _cut(findings, 50)
    platform = started.get("pl") if started else None
    environment = started.get("env") if started else None
    return {
        "task_id": state["task"],
        "started_at": started["t"] if started else None,
        "completed_at": completed_at,
        "outcome": completed.get("o") if completed else None,
        "platform": platform,
        "environment": environment,
        "principal": principal,
        "initiator": initiator,
        "parent": parent,
        "delegations": delegations_cut,
        "delegations_left_out": delegations_left,
        "actors": actors_cut,
        "actors_left_out": actors_left,
        "credentials": credentials_cut,
        "credentials_left_out": credentials_left,
        "approvals": approvals_cut,
        "approvals_left_out": approvals_left,
        "actions": actions,
        "findings": findings_cut,
        "findings_left_out": findings_left,
        "verdicts": verdicts,
        "pending": pending,
    }


def digest(contents: Mapping[str, Any]) -> str:
    """A short fingerprint of a dossier's contents (what "changed" means)."""
    return hashlib.blake2b(_canon(contents), digest_size=12).hexdigest()


def changed_since_last_emit(state: State, thresholds: EvidenceThresholds) -> bool:
    """Would ``next_record`` return a record now? (Only once the task has completed.)"""
    if _first(state, "task.completed") is None:
        return False
    last = state.get("emit")
    return last is None or last["h"] != digest(build_dossier(state, thresholds))


def next_record(state: State, thresholds: EvidenceThresholds) -> Record | None:
    """The record to publish, if any: the first when the task has completed (revision
    0), then a new one with ``revision`` + 1 whenever the contents change (a late
    revocation, a finding, the grace passing). Remembers what it returned in ``state``
    (persist the state before publishing; a re-sent record is harmless: compaction
    keeps the newest per task)."""
    if _first(state, "task.completed") is None:
        return None
    contents = build_dossier(state, thresholds)
    h = digest(contents)
    last = state.get("emit")
    if last is not None and last["h"] == h:
        return None
    revision = 0 if last is None else int(last["n"]) + 1
    state["emit"] = {"n": revision, "h": h, "at": state.get("wm")}
    return {**contents, "revision": revision, "emitted_at": state.get("wm")}


def last_record(state: State, thresholds: EvidenceThresholds) -> Record | None:
    """The record ``next_record`` last returned, rebuilt from the state it left (stage 2
    re-sends it after a crash: same revision, same contents), or None when the state
    has changed since (then a later record supersedes it)."""
    last = state.get("emit")
    if last is None:
        return None
    contents = build_dossier(state, thresholds)
    if digest(contents) != last["h"]:
        return None
    return {**contents, "revision": int(last["n"]), "emitted_at": last.get("at")}


def advance(
    state: State,
    thresholds: EvidenceThresholds,
    *,
    events: Iterable[Event] = (),
    alerts: Iterable[Mapping[str, Any]] = (),
    watermark: int | None = None,
) -> Record | None:
    """One stage-2 step for a task: fold in what arrived, then the record to publish if
    the dossier changed (``next_record``). Call it for every unit that touched the task
    and when its timer (``next_deadline``) fires."""
    add_events(state, events)
    add_alerts(state, alerts)
    if watermark is not None:
        observe_watermark(state, watermark)
    return next_record(state, thresholds)
