"""The simulator: determinism, valid events, clean-traffic invariants, one test per injector.

The invariant checks below are written independently of the simulator's own
bookkeeping: they re-derive every fact (lifetimes, review times, approval rates,
delegation scopes…) from the events and the registry alone, at the README.md#detections
default thresholds.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict, deque
from typing import Any

import orjson
import pytest
import yaml

from pipeline.records import AgentEvent
from pipeline.simulate import (
    DETECTOR_IDS,
    PRIVILEGED_SCOPES,
    SP03_HOLD_MS,
    DirtyRecords,
    Simulator,
    build_world,
    parse_violations,
    write_registry,
)

S = 1000
MIN = 60 * S
H = 60 * MIN
D = 24 * H
START = 1_780_000_000_000
MAX_TTL = {"ai_agent": H, "workload": 24 * H, "service_account": 90 * D}
SECRET = re.compile(
    r"AKIA[0-9A-Z]{16}|ghp_[A-Za-z0-9]{30,}|Bearer\s|eyJ[A-Za-z0-9_-]{8,}|://[^/\s:]+:[^@\s]+@"
)
BROWSER = re.compile(r"Mozilla/|Chrome/|Safari/|Firefox/|Gecko")

Event = dict[str, Any]


def tag(e: Event) -> str | None:
    return (e.get("attributes") or {}).get("sim.injected")


def registry_of(sim: Simulator) -> dict[str, dict[str, Any]]:
    return {r["identity_id"]: r for r in sim.registry()}


# ---- independent invariant checks (each returns a list of problems) --------------------


def check_credentials(events: list[Event], reg: dict[str, Any]) -> list[str]:
    problems = []
    issued: dict[str, Event] = {}
    users: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for e in events:
        if e["event_type"] == "credential.issued":
            issued[e["credential_id"]] = e
            kind = reg.get(e["identity_id"], {}).get("kind", "ai_agent")
            if e.get("expires_at") is None:
                problems.append(f"SP-01 no expiry {e['credential_id']}")
            elif e["expires_at"] - e["event_time"] > MAX_TTL[kind]:
                problems.append(f"SP-01 lifetime {e['credential_id']}")
            if e.get("issued_via") != "jit":
                problems.append(f"non-JIT credential {e['credential_id']}")
            if set(e.get("scopes") or ()) & set(PRIVILEGED_SCOPES):
                problems.append(f"SP-03 privileged scope {e['credential_id']}")
        elif e["event_type"] == "action":
            cred = e.get("credential_id")
            if cred is None:
                problems.append(f"action without credential {e['event_id']}")
                continue
            c = issued.get(cred)
            if c is None:
                problems.append(f"action under unknown credential {cred}")
                continue
            if c["identity_id"] != e.get("identity_id"):
                problems.append(f"SP-07 credential {cred} used by another identity")
            users[cred].add((e.get("identity_id"), e.get("environment", "")))
            if e["scope"] not in c["scopes"]:
                problems.append(f"SP-04 scope {e['scope']} outside credential {cred}")
            if e["scope"] not in reg.get(e.get("identity_id"), {}).get("allowed_scopes", ()):
                problems.append(f"SP-04 scope {e['scope']} not allowed for {e['identity_id']}")
            if c.get("expires_at") and e["event_time"] >= c["expires_at"]:
                problems.append(f"action under expired credential {cred}")
    for cred, who in users.items():
        if len(who) > 1:
            problems.append(f"SP-07 credential {cred} used by {who}")
    return problems


def check_revocation(events: list[Event], complete: bool) -> list[str]:
    """Every task credential is revoked within 5 min of task.completed (SP-02)."""
    problems = []
    by_task: dict[str, list[str]] = defaultdict(list)
    completed: dict[str, int] = {}
    revoked: dict[str, int] = {}
    for e in events:
        et = e["event_type"]
        if et == "credential.issued" and e.get("task_id"):
            by_task[e["task_id"]].append(e["credential_id"])
        elif et == "task.completed":
            completed[e["task_id"]] = e["event_time"]
        elif et == "credential.revoked":
            revoked[e["credential_id"]] = e["event_time"]
    end = events[-1]["event_time"]
    for task, creds in by_task.items():
        done = completed.get(task)
        if done is None:
            if complete:
                problems.append(f"task {task} never completed")
            continue
        for cred in creds:
            r = revoked.get(cred)
            if r is None:
                if complete or done + 5 * MIN <= end:
                    problems.append(f"SP-02 {cred} not revoked")
            elif r - done > 5 * MIN or r < done:
                problems.append(f"SP-02 {cred} revoked {(r - done) / S:.0f}s after completion")
    return problems


def check_approvals(events: list[Event], reg: dict[str, Any]) -> list[str]:
    problems = []
    requested: dict[str, Event] = {}
    viewed: dict[tuple[str, str], int] = {}
    decided: dict[str, Event] = {}
    per_approver: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        et = e["event_type"]
        if et == "approval.requested":
            requested[e["approval_id"]] = e
        elif et == "approval.viewed":
            viewed.setdefault((e["approval_id"], e["approver"]), e["event_time"])
        elif et == "approval.decided":
            aid, who, t = e["approval_id"], e["approver"], e["event_time"]
            req = requested.get(aid)
            if req is None:
                problems.append(f"decision for unknown approval {aid}")
                continue
            decided[aid] = e
            per_approver[who].append(e)
            minimum = 30 * S if req["risk"] in ("high", "critical") else 10 * S
            if t - req["event_time"] < minimum:
                problems.append(f"RS-01 {aid} decided {(t - req['event_time']) / S}s after request")
            v = viewed.get((aid, who))
            if v is None or v > t:
                problems.append(f"RS-04 {aid} not viewed by {who}")
            elif t - v < minimum:
                problems.append(f"RS-01 {aid} decided {(t - v) / S}s after view")
            owner = reg.get(req["identity_id"], {}).get("owner")
            if who in (req.get("on_behalf_of"), owner, req["identity_id"]):
                problems.append(f"RS-05 {aid} self-approved by {who}")
        elif et == "action" and e.get("approval_id"):
            d = decided.get(e["approval_id"])
            if d is None or d["decision"] != "approved" or d["event_time"] > e["event_time"]:
                problems.append(f"RS-06 action {e['event_id']} ahead of approval")
    for who, decs in per_approver.items():
        times = [d["event_time"] for d in decs]
        j = 0
        for i, t in enumerate(times):  # RS-02: < 10 decisions in any 60 s
            while times[j] <= t - 60 * S:
                j += 1
            if i - j + 1 >= 10:
                problems.append(f"RS-02 {who} {i - j + 1} decisions in 60 s")
                break
        j = 0
        approved = 0
        for i, d in enumerate(decs):  # RS-03: < 95 % approved over ≥ 50 decisions in 24 h
            approved += d["decision"] == "approved"
            while times[j] <= times[i] - D:
                approved -= decs[j]["decision"] == "approved"
                j += 1
            n = i - j + 1
            if n >= 50 and approved / n >= 0.95:
                problems.append(f"RS-03 {who} {approved}/{n}")
                break
        run = longest = 0
        for d in decs:
            run = run + 1 if d["decision"] == "approved" else 0
            longest = max(longest, run)
        if longest > 12:  # 8, plus a rare extra when a denial would break the RS-07 margin
            problems.append(f"RS-03 guard: {who} approved {longest} in a row")
    # RS-07: fewer than 5 denials before an approval, per requester, within 10 min
    denials: dict[str, deque[int]] = defaultdict(deque)
    for d in sorted(decided.values(), key=lambda x: x["event_time"]):
        req = requested[d["approval_id"]]
        for key in (req.get("on_behalf_of"), req["identity_id"]):
            dq = denials[key]
            while dq and dq[0] < d["event_time"] - 10 * MIN:
                dq.popleft()
            if d["decision"] == "denied":
                dq.append(d["event_time"])
            elif len(dq) >= 5:
                problems.append(f"RS-07 {key}: {len(dq)} denials then an approval")
    return problems


def check_attribution(events: list[Event], reg: dict[str, Any]) -> list[str]:
    problems = []
    by_id: dict[str, Event] = {}
    cred_scopes: dict[str, set[str]] = {}
    task_start: dict[str, Event] = {}
    for e in events:
        by_id[e["event_id"]] = e
        if e["event_type"] == "task.started":
            task_start.setdefault(e["task_id"], e)
        et = e["event_type"]
        ident = e.get("identity_id")
        attrs = e.get("attributes") or {}
        if "sim.injected" in attrs:
            problems.append(f"tagged event {e['event_id']} in clean traffic")
        for value in attrs.values():
            if BROWSER.search(value):
                problems.append(f"AT-04 browser user agent in {e['event_id']}")
            if SECRET.search(value):
                problems.append(f"SL-01 secret-like value in {e['event_id']}")
        for text in (e.get("justification"), e.get("resource"), e.get("policy_reason")):
            if text and SECRET.search(text):
                problems.append(f"SL-01 secret-like text in {e['event_id']}")
        if ident is not None:
            entry = reg.get(ident)
            if entry is None:
                problems.append(f"AT-01 unknown identity {ident}")
            else:
                if entry["status"] != "active":
                    problems.append(f"SP-06 {ident} is {entry['status']}")
                owner = reg.get(entry["owner"] or "")
                if owner is None or owner["status"] != "active" or owner["kind"] != "human":
                    problems.append(f"SP-08 {ident} owner {entry['owner']}")
                if set(entry["allowed_scopes"]) & set(PRIVILEGED_SCOPES):
                    problems.append(f"SP-03 {ident} holds a privileged scope")
        if et == "credential.issued":
            cred_scopes[e["credential_id"]] = set(e["scopes"])
        if et == "action":
            if ident is None:
                problems.append(f"AT-01 action without identity {e['event_id']}")
            if e.get("policy_decision") is None:
                problems.append(f"AZ-01 {e['event_id']}")
            if e.get("policy_decision") == "deny" and e.get("outcome") == "success":
                problems.append(f"AZ-02 {e['event_id']}")
            if e.get("sensitivity") in ("high", "critical") and not e.get("credential_id"):
                problems.append(f"SP-05 {e['event_id']}")
        if et in ("action", "delegation"):
            # AT-02: the action's task was started for a human, the action acts for that
            # same principal, and its parent is an event of the same task
            started = task_start.get(e.get("task_id") or "")
            if started is None or not started.get("on_behalf_of"):
                problems.append(f"AT-02 no task start for a human at {e['event_id']}")
            else:
                if reg.get(started["on_behalf_of"], {}).get("kind") != "human":
                    problems.append(f"AT-02 principal {started['on_behalf_of']} is not a human")
                if e.get("on_behalf_of") not in (None, started["on_behalf_of"]):
                    problems.append(f"AT-02 principal changed at {e['event_id']}")
            parent = by_id.get(e.get("parent_event_id") or "")
            if e.get("parent_event_id") and (
                parent is None or parent.get("task_id") != e.get("task_id")
            ):
                problems.append(f"AT-02 unknown parent at {e['event_id']}")
        if et == "delegation":
            held = cred_scopes.get(e.get("credential_id") or "", set())
            extra = set(e["scopes"]) - held
            if extra:
                problems.append(f"AT-03 delegation passes {extra}")
            delegate = reg.get(e["delegate_identity_id"])
            if delegate is None or not set(e["scopes"]) <= set(delegate["allowed_scopes"]):
                problems.append(f"AT-03 delegate {e['delegate_identity_id']} cannot hold scopes")
    return problems


def check_clean(events: list[Event], sim: Simulator, complete: bool) -> list[str]:
    reg = registry_of(sim)
    return (
        check_credentials(events, reg)
        + check_revocation(events, complete)
        + check_approvals(events, reg)
        + check_attribution(events, reg)
    )


# ---- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def busy_clean() -> tuple[Simulator, list[Event]]:
    """~3 simulated hours at a rate that keeps every approver saturated."""
    sim = Simulator(11, start_ms=START, rate=15.0)
    events = sim.events(150_000)
    events.extend(sim.finish())
    return sim, events


# ---- tests ---------------------------------------------------------------------------------


def test_same_seed_and_start_give_the_same_stream() -> None:
    a = Simulator(3, start_ms=START, violations={"RS-01": 0.05, "SP-02": 0.05}).events(3000)
    b = Simulator(3, start_ms=START, violations={"RS-01": 0.05, "SP-02": 0.05}).events(3000)
    assert orjson.dumps(a) == orjson.dumps(b)


def test_other_seed_or_start_changes_the_stream_but_not_the_world() -> None:
    a = Simulator(3, start_ms=START).events(500)
    b = Simulator(4, start_ms=START).events(500)
    c = Simulator(3, start_ms=START + 1).events(500)
    assert [e["event_id"] for e in a] != [e["event_id"] for e in b]
    assert not {e["event_id"] for e in a} & {e["event_id"] for e in c}  # no dedup collisions
    assert [e["event_type"] for e in a] == [e["event_type"] for e in c]
    assert build_world(3).registry() == build_world(3).registry()
    assert build_world(3).registry() != build_world(4).registry()


def test_every_event_validates_and_time_never_goes_back() -> None:
    sim = Simulator(5, start_ms=START, rate=50.0, violations=parse_violations(None, 0.04))
    events = sim.events(20_000) + list(sim.finish())
    last = 0
    types = Counter()
    for e in events:
        model = AgentEvent.model_validate(e)
        assert model.event_time >= last
        last = model.event_time
        types[e["event_type"]] += 1
    assert set(types) | {"credential.rotated"} == {
        "action",
        "credential.issued",
        "credential.rotated",
        "credential.revoked",
        "approval.requested",
        "approval.viewed",
        "approval.decided",
        "task.started",
        "task.completed",
        "delegation",
    }
    assert sim.stats.events == len(events)


def test_rate_and_speed_set_the_event_density() -> None:
    for rate, speed in ((100.0, 1.0), (2000.0, 1.0), (100.0, 10.0)):
        sim = Simulator(1, start_ms=START, rate=rate, speed=speed)
        events = sim.events(60_000)[20_000:]  # past the first minute's warm-up
        span_s = (events[-1]["event_time"] - events[0]["event_time"]) / S
        density = len(events) / span_s
        assert 0.75 * rate / speed < density < 1.25 * rate / speed, (rate, speed, density)


def test_clean_traffic_busy_approvers(busy_clean: tuple[Simulator, list[Event]]) -> None:
    sim, events = busy_clean
    problems = check_clean(events, sim, complete=True)
    assert problems == [], problems[:20]
    decided = [e for e in events if e["event_type"] == "approval.decided"]
    per_approver = Counter(e["approver"] for e in decided)
    assert max(per_approver.values()) >= 50  # RS-03 really was exercised
    denials = Counter(e["approver"] for e in decided if e["decision"] == "denied")
    for who, n in per_approver.items():
        assert 0.08 < denials[who] / n < 0.45, (who, denials[who], n)  # a healthy share


def test_clean_traffic_high_rate_cut_mid_stream() -> None:
    sim = Simulator(12, start_ms=START, rate=20_000.0)
    events = sim.events(120_000)
    assert check_clean(events, sim, complete=False) == []
    events += list(sim.finish())
    assert check_clean(events, sim, complete=True) == []


def test_clean_traffic_covers_the_realistic_shapes(
    busy_clean: tuple[Simulator, list[Event]],
) -> None:
    _, events = busy_clean
    types = Counter(e["event_type"] for e in events)
    for t in ("delegation", "approval.requested", "approval.viewed", "approval.decided"):
        assert types[t] > 100, t
    actions = [e for e in events if e["event_type"] == "action"]
    assert any(e["policy_decision"] == "deny" and e["outcome"] == "failure" for e in actions)
    assert any(e.get("approval_id") for e in actions)
    assert {e["sensitivity"] for e in actions} == {"low", "medium", "high", "critical"}
    assert all(e["latency_ms"] > 0 for e in actions)
    issued = [e for e in events if e["event_type"] == "credential.issued"]
    assert {e["credential_kind"] for e in issued} == {"jit_token", "x509"}
    assert {e["platform"] for e in events} == {
        "crm-agents",
        "code-assist",
        "finance-bots",
        "support-copilot",
    }
    decided = [e for e in events if e["event_type"] == "approval.decided"]
    assert Counter(e["decision"] for e in decided)["approved"] > len(decided) / 2


# ---- injectors -----------------------------------------------------------------------------


def injected(det: str, seed: int = 21) -> tuple[Simulator, list[Event], list[Event]]:
    """A clean stream with exactly one case of ``det``: (sim, all events, the case's events)."""
    sim = Simulator(seed, start_ms=START, rate=20.0)
    events = sim.events(300)
    sim.inject(det)
    events += sim.events(300)
    events += list(sim.finish())
    case = [e for e in events if tag(e)]
    return sim, events, case


def test_every_built_in_detection_has_an_injector() -> None:
    """Which detections exist is the registry's knowledge; the simulator only adds
    how to inject each one. A new built-in detector without an injector fails here."""
    from pipeline.detectors.registry import detector_modules

    assert set(DETECTOR_IDS) == set(detector_modules())


def test_a_registered_detection_without_injector_is_named() -> None:
    from pipeline.simulate import generator

    with pytest.raises(ValueError, match=r"bad violation 'XX-99=0\.1'"):
        parse_violations("XX-99=0.1")
    assert generator._registered("SP-01") and not generator._registered("XX-99")


@pytest.mark.parametrize("det", DETECTOR_IDS)
def test_each_injector_emits_one_tagged_case(det: str) -> None:
    sim, events, case = injected(det)
    assert case, det
    assert {tag(e) for e in case} == {det}
    assert len({e["attributes"]["sim.case"] for e in case}) == 1
    assert sim.stats.injected == Counter({det: 1})
    for e in case:
        AgentEvent.model_validate(e)
    clean = [e for e in events if not tag(e)]
    assert check_clean(clean, sim, complete=True) == [], det
    times = [e["event_time"] for e in events]
    assert times == sorted(times)


def by_type(case: list[Event], event_type: str) -> list[Event]:
    return [e for e in case if e["event_type"] == event_type]


def reg_for(seed: int = 21) -> dict[str, Any]:
    return {r["identity_id"]: r for r in build_world(seed).registry()}


def problems_of(det: str, seed: int = 21) -> list[str]:
    """What the independent checks say about an injected case (it must be caught)."""
    sim, events, _ = injected(det, seed)
    return check_clean(events, sim, complete=True)


@pytest.mark.parametrize("seed", [21, 22, 23, 24])
def test_sp01_long_lived_credential_used(seed: int) -> None:
    _, _, case = injected("SP-01", seed)
    cred = by_type(case, "credential.issued")[0]
    assert cred["issued_via"] in ("static", "manual")
    lifetime = None if cred.get("expires_at") is None else cred["expires_at"] - cred["event_time"]
    assert lifetime is None or lifetime > H
    assert any(a["credential_id"] == cred["credential_id"] for a in by_type(case, "action"))
    assert not by_type(case, "credential.revoked") or lifetime is not None


@pytest.mark.parametrize("seed", [21, 22, 23, 24])
def test_sp02_credential_live_after_grace(seed: int) -> None:
    _, events, case = injected("SP-02", seed)
    done = by_type(case, "task.completed")[0]["event_time"]
    revoked = by_type(case, "credential.revoked")
    assert not revoked or revoked[0]["event_time"] - done > 5 * MIN
    assert events[-1]["event_time"] > done + 15 * MIN  # finish() closes the grace window
    assert any("SP-02" in p for p in problems_of("SP-02", seed))


def test_sp03_privileged_scope_held_unused_for_the_window() -> None:
    sim, events, case = injected("SP-03")
    cred = by_type(case, "credential.issued")[0]
    assert len(set(PRIVILEGED_SCOPES) & set(cred["scopes"])) == 1
    assert cred["expires_at"] - cred["event_time"] > SP03_HOLD_MS
    used = {
        a["scope"] for a in by_type(case, "action") if a["credential_id"] == cred["credential_id"]
    }
    assert used and not used & set(PRIVILEGED_SCOPES)
    # it spans one whole 7-day window and expires inside the next: one finding
    assert 7 * D < cred["expires_at"] - cred["event_time"] < 14 * D
    assert not by_type(case, "credential.revoked")
    # the stream goes on past the 7-day window, and the identity is in the registry
    assert events[-1]["event_time"] >= cred["event_time"] + 7 * D
    assert sim.stats.jumps == 1
    assert registry_of(sim)[cred["identity_id"]]["status"] == "active"


def test_sp03_jump_happens_in_a_live_stream_too() -> None:
    sim = Simulator(2, start_ms=START, rate=50.0)
    sim.inject("SP-03")
    events = sim.events(40_000)
    issued = next(e for e in events if tag(e) == "SP-03" and e["event_type"] == "credential.issued")
    assert events[-1]["event_time"] > issued["event_time"] + 7 * D
    assert sim.stats.jumps == 1
    assert check_clean([e for e in events if not tag(e)], sim, complete=False) == []


@pytest.mark.parametrize("seed", [21, 22, 23, 24, 25, 26])
def test_sp04_scope_outside_the_credential(seed: int) -> None:
    _, _, case = injected("SP-04", seed)
    issued = set(by_type(case, "credential.issued")[0]["scopes"])
    assert any(a["scope"] not in issued for a in by_type(case, "action"))
    assert any("SP-04" in p for p in problems_of("SP-04", seed))


def test_sp05_sensitive_action_without_jit() -> None:
    _, _, case = injected("SP-05")
    cred = by_type(case, "credential.issued")[0]
    assert cred["issued_via"] != "jit"
    assert cred["expires_at"] - cred["event_time"] <= H  # only the issuance path is wrong
    [act] = by_type(case, "action")
    assert (
        act["sensitivity"] in ("high", "critical") and act["credential_id"] == cred["credential_id"]
    )


@pytest.mark.parametrize("det,statuses", [("SP-06", {"disabled", "offboarded"})])
def test_sp06_inactive_identity(det: str, statuses: set[str]) -> None:
    for seed in (21, 22, 23):
        reg = reg_for(seed)
        _, _, case = injected(det, seed)
        assert {reg[e["identity_id"]]["status"] for e in case} <= statuses


def test_sp07_credential_shared() -> None:
    for seed in (21, 22, 23, 24):
        _, _, case = injected("SP-07", seed)
        actions = by_type(case, "action")
        cred = by_type(case, "credential.issued")[0]["credential_id"]
        users = {
            (a["identity_id"], a["environment"]) for a in actions if a["credential_id"] == cred
        }
        assert len(users) >= 2


def test_sp08_orphaned_identity() -> None:
    for seed in (21, 22, 23):
        reg = reg_for(seed)
        _, _, case = injected("SP-08", seed)
        owner = reg[case[0]["identity_id"]]["owner"]
        assert owner not in reg or reg[owner]["status"] == "offboarded"


def _decisions(case: list[Event]) -> list[tuple[Event, Event, Event | None]]:
    req = {e["approval_id"]: e for e in by_type(case, "approval.requested")}
    viewed = {e["approval_id"]: e for e in by_type(case, "approval.viewed")}
    return [
        (req[d["approval_id"]], d, viewed.get(d["approval_id"]))
        for d in by_type(case, "approval.decided")
    ]


def test_rs01_too_fast() -> None:
    _, _, case = injected("RS-01")
    [(req, dec, view)] = _decisions(case)
    assert req["risk"] in ("high", "critical") and view is not None
    assert dec["event_time"] - view["event_time"] < 10 * S
    assert dec["event_time"] - req["event_time"] < 30 * S


def test_rs02_bulk() -> None:
    _, _, case = injected("RS-02")
    decs = by_type(case, "approval.decided")
    assert len(decs) == 12 and len({d["approver"] for d in decs}) == 1
    times = sorted(d["event_time"] for d in decs)
    assert times[-1] - times[0] < 40 * S
    assert times[0] // MIN == times[-1] // MIN  # inside one aligned minute too
    for req, dec, view in _decisions(case):
        assert view is not None and dec["event_time"] - view["event_time"] >= 10 * S
        assert dec["event_time"] - req["event_time"] >= 10 * S


def test_rs03_always_yes() -> None:
    _, events, case = injected("RS-03")
    decs = by_type(case, "approval.decided")
    approver = decs[0]["approver"]
    mine = [
        e for e in events if e["event_type"] == "approval.decided" and e["approver"] == approver
    ]
    assert len(mine) >= 50 and all(d["decision"] == "approved" for d in mine)
    assert mine[-1]["event_time"] - mine[0]["event_time"] < D
    assert mine[0]["event_time"] // D == mine[-1]["event_time"] // D
    assert not [p for p in check_approvals(case, reg_for()) if not p.startswith("RS-03")]


def test_rs04_not_viewed() -> None:
    _, _, case = injected("RS-04")
    [(req, dec, view)] = _decisions(case)
    assert view is None and dec["decision"] == "approved"
    assert dec["event_time"] - req["event_time"] >= 30 * S


def test_rs05_self_approval() -> None:
    for seed in (21, 22, 23, 24):
        reg = reg_for(seed)
        _, _, case = injected("RS-05", seed)
        [(req, dec, _)] = _decisions(case)
        assert dec["approver"] in (req["on_behalf_of"], reg[req["identity_id"]]["owner"])


def test_rs06_action_ahead_of_approval() -> None:
    seen = set()
    for seed in range(21, 33):
        _, _, case = injected("RS-06", seed)
        [act] = [a for a in by_type(case, "action") if a.get("approval_id")]
        decs = {d["approval_id"]: d for d in by_type(case, "approval.decided")}
        d = decs.get(act["approval_id"])
        if d is None:
            seen.add("unknown")
        elif d["decision"] == "denied":
            seen.add("denied")
            assert act["event_time"] > d["event_time"]
        else:
            seen.add("early")
            assert act["event_time"] < d["event_time"]
    assert seen == {"unknown", "denied", "early"}


def test_rs07_approval_bombing() -> None:
    _, _, case = injected("RS-07")
    decs = sorted(by_type(case, "approval.decided"), key=lambda d: d["event_time"])
    assert [d["decision"] for d in decs] == ["denied"] * 5 + ["approved"]
    assert decs[-1]["event_time"] - decs[0]["event_time"] < 10 * MIN
    assert decs[0]["event_time"] // (10 * MIN) == decs[-1]["event_time"] // (10 * MIN)
    reqs = by_type(case, "approval.requested")
    assert len({(r["identity_id"], r["on_behalf_of"]) for r in reqs}) == 1
    for req, dec, view in _decisions(case):
        assert view is not None and dec["event_time"] - view["event_time"] >= 30 * S


def test_az01_and_az02() -> None:
    _, _, case = injected("AZ-01")
    assert any(a.get("policy_decision") is None for a in by_type(case, "action"))
    _, _, case = injected("AZ-02")
    assert any(
        a["policy_decision"] == "deny" and a["outcome"] == "success"
        for a in by_type(case, "action")
    )


def test_at01_unattributable() -> None:
    kinds = set()
    for seed in range(21, 29):
        reg = reg_for(seed)
        _, _, case = injected("AT-01", seed)
        for a in by_type(case, "action"):
            if a.get("identity_id") is None:
                kinds.add("null")
            elif a["identity_id"] not in reg:
                kinds.add("unknown")
    assert kinds == {"null", "unknown"}


def test_at02_broken_chain() -> None:
    for seed in (21, 22, 23, 24):
        assert any(p.startswith("AT-02") for p in problems_of("AT-02", seed)), seed


def test_at03_escalation() -> None:
    _, _, case = injected("AT-03")
    [deleg] = by_type(case, "delegation")
    delegator = by_type(case, "credential.issued")[0]
    assert delegator["identity_id"] == deleg["identity_id"]
    assert deleg["credential_id"] == delegator["credential_id"]
    assert set(deleg["scopes"]) - set(delegator["scopes"])


def test_at04_and_sl01() -> None:
    _, _, case = injected("AT-04")
    assert any(BROWSER.search(v) for e in case for v in (e.get("attributes") or {}).values())
    for seed in (21, 22, 23, 24, 25, 26):
        _, _, case = injected("SL-01", seed)
        assert any(SECRET.search(v) for e in case for v in (e.get("attributes") or {}).values())


def test_injection_rates_are_probabilities_per_task() -> None:
    sim = Simulator(8, start_ms=START, rate=200.0, violations={"SP-01": 0.05, "AZ-02": 0.05})
    sim.events(30_000)
    tasks = sim.stats.tasks
    for det in ("SP-01", "AZ-02"):
        assert 0.03 * tasks < sim.stats.injected[det] < 0.07 * tasks
    assert set(sim.stats.injected) == {"SP-01", "AZ-02"}


def test_parse_violations() -> None:
    assert parse_violations("sp-01=0.02, RS-01=0.05") == {"SP-01": 0.02, "RS-01": 0.05}
    every = parse_violations("SP-01=0", 0.01)
    assert len(every) == len(DETECTOR_IDS) - 1 and "SP-01" not in every
    for bad in ("XX-01=0.1", "SP-01", "SP-01=lots", "SP-01=2"):
        with pytest.raises(ValueError):
            parse_violations(bad)
    with pytest.raises(ValueError, match="add up"):
        parse_violations(None, 0.05)


def test_registry_yaml_round_trip_and_special_entries(tmp_path: Any) -> None:
    world = build_world(7)
    path = tmp_path / "ids.yaml"
    write_registry(world, path)
    doc = yaml.safe_load(path.read_text())
    entries = doc["identities"]
    assert entries == world.registry()
    keys = {
        "identity_id",
        "kind",
        "owner",
        "team",
        "environment",
        "risk_tier",
        "allowed_scopes",
        "status",
    }
    # ``mode`` is optional: some NHIs carry each mode, the others (and humans) none
    assert all(set(e) - {"mode"} == keys for e in entries)
    modes = Counter(e.get("mode") for e in entries if e["kind"] != "human")
    assert all(modes[m] for m in ("reporting", "assistant", "autonomous", None))
    assert not any("mode" in e for e in entries if e["kind"] == "human")
    statuses = Counter(e["status"] for e in entries)
    assert statuses["disabled"] and statuses["offboarded"]
    ids = {e["identity_id"] for e in entries}
    assert all(e["owner"] is None for e in entries if e["kind"] == "human")
    assert any(e["owner"] not in ids for e in entries if e["kind"] != "human")  # SP-08 material
    assert not set(world.unregistered) & ids  # AT-01 material


def test_samples_identities_yaml_is_seed_7() -> None:
    from pathlib import Path

    sample = Path(__file__).resolve().parents[2] / "samples" / "identities.yaml"
    assert yaml.safe_load(sample.read_text())["identities"] == build_world(7).registry()


def test_dirty_records_are_all_rejected() -> None:
    from pipeline.codec import decode_json, frame
    from pipeline.errors import RejectedInput

    dirt = DirtyRecords(1, binary=True)
    template = Simulator(1, start_ms=START).events(1)[0]
    for _ in range(300):
        raw = dirt.make(template)
        try:
            fmt, _ = frame(raw, 1 << 20)
            if fmt == "avro":
                continue  # an unknown schema id: rejected by the worker's resolver
            decoded = decode_json(raw)
        except RejectedInput:
            continue
        assert len(decoded.events) >= 1
        for item in decoded.events:
            with pytest.raises(Exception):
                if not isinstance(item, dict):
                    raise TypeError("not an object")
                AgentEvent.model_validate(item)
    assert set(dirt.counts) == set(DirtyRecords.KINDS)
    text_only = DirtyRecords(1, binary=False)
    assert all(b"\n" not in text_only.make(template) for _ in range(200))


# ---- through the real stage 1 and stage 2, offline ---------------------------------------


def run_detectors_offline(events: list[Event], registry: list[dict[str, Any]]) -> list[Event]:
    """Stage 1 (validate, redact, enrich from an in-memory registry) and stage 2 (the
    detection engine at the default policy) without Kafka or Redis: the alerts created."""
    import asyncio

    from pipeline.codec import encode_json_batch
    from pipeline.detectors.engine import DetectionEngine
    from pipeline.detectors.policy import DEFAULT_POLICY
    from pipeline.flow.route import decode_subject_batch
    from pipeline.flow.schemas import SchemaResolver
    from pipeline.flow.stage1 import SourceRecord, Stage1
    from pipeline.flow.stage2 import Stage2
    from pipeline.flow.validate import Validator
    from tests.support.reference_enricher import MemoryEnricher

    class Enricher(MemoryEnricher):
        """Adds the owner's status, as the Redis enricher does (SP-08)."""

        async def enrich(self, batch: list[dict[str, Any]]) -> None:
            await super().enrich(batch)
            for e in batch:
                ident = e.get("identity") or {}
                if ident.get("owner"):
                    owner = self.identities.get(ident["owner"])
                    e["identity"] = {**ident, "owner_status": owner and owner.get("status")}

    class Store(dict[str, Any]):
        def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
            return super().get(key, default)

    engine = DetectionEngine()
    enricher = Enricher(identities={r["identity_id"]: r for r in registry})
    stage1 = Stage1(
        Validator(SchemaResolver(), 2_000_000, 10_000), 1, enricher, engine.subject_kinds_for
    )
    stage2 = Stage2(engine, 1, DEFAULT_POLICY.allowed_lateness_ms, "sim-test")
    stage2.progress_every_s = 0.0  # simulated time: every progress goes out
    store = Store()
    alerts: list[Event] = []

    async def go() -> None:
        offset = 0
        for i in range(0, len(events), 300):
            out = await stage1.process(
                [SourceRecord(encode_json_batch(events[i : i + 300]), None, "t", 0, i)]
            )
            queue = [decode_subject_batch(v) for _, v in out.subject_records]
            while queue:
                wm, items = queue.pop(0)
                result = stage2.process(store, 0, offset, wm, items)
                stage2.mark_sent(store, 0, offset)
                offset += 1
                alerts.extend(a for a in result.alerts if a["activity_id"] == 1)
                if result.items:
                    queue.append((None, list(result.items)))

    asyncio.run(go())
    return alerts


def test_real_detectors_find_nothing_in_clean_traffic() -> None:
    sim = Simulator(32, start_ms=START, rate=200.0)
    events = sim.events(15_000) + list(sim.finish())
    alerts = run_detectors_offline(events, sim.registry())
    assert [(a["detector"], a["evidence"]["facts"]) for a in alerts] == []


def test_real_detectors_find_every_injected_case_and_only_it() -> None:
    sim = Simulator(31, start_ms=START, rate=50.0)
    events = sim.events(1000)
    for det in DETECTOR_IDS:
        sim.inject(det)
    events += sim.events(2000) + list(sim.finish())
    by_id = {e["event_id"]: e for e in events}
    alerts = run_detectors_offline(events, sim.registry())
    caught = Counter()
    for alert in alerts:
        # the evidence holds the case's own events (a neighbour may join it: RS-07 counts
        # every decision for the requester in its window, another case's too)
        tags = {tag(by_id[i]) for i in alert["evidence"]["event_ids"] if i in by_id}
        assert alert["detector"] in tags, (alert["detector"], tags, alert["evidence"]["facts"])
        caught[alert["detector"]] += 1
    assert set(caught) == set(DETECTOR_IDS)
    assert sim.stats.injected == Counter(dict.fromkeys(DETECTOR_IDS, 1))
