"""Event sequences: one clean task flow, and one injector per detection id.

Clean flows are generators (one pending event per task in flight keeps memory
flat at high rates); injectors build a short list, because they are rare and
some (RS-02, RS-03, RS-07) interleave several sub-tasks and align themselves
to window boundaries so that tumbling and sliding implementations both see a
clear positive. Every event of an injected case carries
``attributes["sim.injected"] = "<DETECTOR-ID>"`` and ``attributes["sim.case"]``
(one value per case), so tests count expected positives as distinct cases.

Clean traffic stays inside the detector defaults in README.md#detections with a margin (see
``CLEAN_LIMITS``); the shared ``Ctx`` keeps the cross-task state that needs it:
approver queues (review time, RS-01/RS-02), decision history (RS-03), denials
per requester (RS-07).
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pipeline.simulate.world import PRIVILEGED_SCOPES, ActionSpec, Identity, PlatformWorld, World

Event = dict[str, Any]
Timed = tuple[int, Event]

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR


#: What clean traffic guarantees (each well inside the detector defaults in README.md#detections).
CLEAN_LIMITS: dict[str, int] = {
    "ttl_max_ms_ai_agent": 45 * MINUTE,  # SP-01 default 1 h
    "ttl_max_ms_workload": 2 * HOUR,  # SP-01 default 24 h
    "ttl_max_ms_service_account": HOUR,  # SP-01 default 90 d
    "revoke_after_complete_max_ms": 75 * SECOND,  # SP-02 grace 5 min
    "review_min_ms_high": 45 * SECOND,  # RS-01 30 s for high/critical
    "review_min_ms_other": 15 * SECOND,  # RS-01 10 s otherwise
    "approver_gap_min_ms": 15 * SECOND,  # RS-02 ≥ 10 decisions in 60 s → at most 4 here
    # RS-03 ≥ 95 % over ≥ 50: a denial is due after 8 approvals in a row (deferred to the
    # next decision in the rare case it would break the RS-07 margin)
    "approver_max_approvals_in_a_row": 8,
    "requester_denials_max_10min": 3,  # RS-07 ≥ 5 denials then approval in 10 min
    "approval_wait_max_ms": 2 * MINUTE,  # keeps every task well inside its credential TTL
}
#: Injected approval cases may queue longer than clean requests, so approvers saturated
#: by clean traffic still take them (and the tail after a run stays short).
INJECTED_APPROVAL_WAIT_MS = 5 * MINUTE

_TTL_CHOICES: dict[str, tuple[int, ...]] = {
    "ai_agent": (20 * MINUTE, 30 * MINUTE, 45 * MINUTE),
    "service_account": (30 * MINUTE, HOUR),
    "workload": (30 * MINUTE, HOUR, 2 * HOUR),
}
#: SP-01 lifetimes: well over each kind's default maximum (1 h, 24 h, 90 d)
_LONG_TTL: dict[str, int] = {"ai_agent": 7 * DAY, "workload": 7 * DAY, "service_account": 365 * DAY}
_CRED_KIND: dict[str, str] = {
    "ai_agent": "jit_token",
    "service_account": "jit_token",
    "workload": "x509",
}
_TASK_KINDS = ("report", "sync", "triage", "follow-up", "reconcile", "draft", "review")
_DENY_REASONS = (
    "outside business hours for this data class",
    "rate limit for bulk reads exceeded",
    "data residency rule: eu records",
    "resource is under legal hold",
)
_DECLINE_NOTES = (
    "scope of the request is broader than the ticket",
    "needs a second pair of eyes from the data owner",
    "not during the quarter-end freeze",
    "justification does not match the task",
)
_APPROVE_NOTES = ("matches the ticket", "ok, within policy", "checked the recipient list", "fine")
_BROWSER_UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
)
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_HIGH = ("high", "critical")


@dataclass(slots=True)
class ApproverState:
    free_at: int  # the approver reviews one request at a time
    since_deny: int  # approvals since the last denial (RS-03 guard)
    p_deny: float


class Scene:
    """The context shared by the events of one task (or one injected case)."""

    __slots__ = ("env", "identity", "obo", "platform", "root", "tag", "task_id", "trace_id")

    def __init__(
        self,
        platform: str,
        env: str | None,
        identity: str | None,
        obo: str | None,
        task_id: str | None,
        trace_id: str | None,
        tag: dict[str, str] | None = None,
    ) -> None:
        self.platform = platform
        self.env = env
        self.identity = identity
        self.obo = obo
        self.task_id = task_id
        self.trace_id = trace_id
        self.root: str | None = None
        self.tag = tag


class Ctx:
    """State shared by every flow of one simulation run."""

    def __init__(self, world: World, rng: random.Random, ids: random.Random) -> None:
        self.world = world
        self.rng = rng
        self.ids = ids
        self.approvers: dict[str, ApproverState] = {}
        for pw in world.platforms:
            for a in pw.approvers:
                self.approvers[a] = ApproverState(0, rng.randint(0, 6), rng.uniform(0.1, 0.25))
        for a in world.stamp_approvers:
            self.approvers[a] = ApproverState(0, 0, 0.0)
        self.denials: dict[str, deque[int]] = {}
        self.pending_privileged: list[int] = []
        #: event times the stream must pass for absence-based findings (SP-02) to close
        self.deadlines: list[int] = []
        self.cases = 0
        self.case_counts: Counter[str] = Counter()

    # ---- ids -----------------------------------------------------------------------

    def uuid(self) -> str:
        """A UUIDv4 from the id stream: reproducible for a seed and start time."""
        b = self.ids.getrandbits(128)
        b = (b & ~(0xF << 76) & ~(0x3 << 62)) | (0x4 << 76) | (0x2 << 62)
        h = f"{b:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def short(self, prefix: str) -> str:
        return f"{prefix}-{self.ids.getrandbits(48):012x}"

    def trace(self) -> str:
        return f"{self.ids.getrandbits(128):032x}"

    # ---- events --------------------------------------------------------------------

    def scene(
        self,
        pw: PlatformWorld,
        agent: Identity | None,
        obo: str | None,
        tag: dict[str, str] | None = None,
    ) -> Scene:
        return Scene(
            pw.spec.name,
            agent.environment if agent else "prod",
            agent.identity_id if agent else None,
            obo,
            self.short("task"),
            self.trace(),
            tag,
        )

    def ev(self, sc: Scene, etype: str, t: int, **fields: Any) -> Event:
        """One sparse event (None fields left out); scene fields can be overridden."""
        base: Event = {
            "event_id": self.uuid(),
            "event_type": etype,
            "event_time": t,
            "platform": sc.platform,
            "environment": sc.env,
            "identity_id": sc.identity,
            "on_behalf_of": sc.obo,
            "task_id": sc.task_id,
            "trace_id": sc.trace_id,
        }
        base.update(fields)
        e = {k: v for k, v in base.items() if v is not None} if None in base.values() else base
        if sc.tag:
            attrs = e.get("attributes")
            e["attributes"] = {**attrs, **sc.tag} if attrs else dict(sc.tag)
        return e

    def action(
        self,
        sc: Scene,
        t: int,
        spec: ActionSpec,
        cred: str | None,
        runtime: str,
        *,
        clean_denials: bool = True,
        **fields: Any,
    ) -> Event:
        """An action decided at request time. Clean traffic is occasionally denied (then
        failed) or fails on its own; injected actions (``clean_denials=False``) are allowed
        and succeed unless the case says otherwise, so a failed run never hides a case."""
        rng = self.rng
        if clean_denials and rng.random() < 0.03:
            decision, outcome = "deny", "failure"
            reason = rng.choice(_DENY_REASONS)
        else:
            decision = "allow"
            r = rng.random()
            outcome = (
                "success" if r < 0.97 or not clean_denials else "error" if r < 0.99 else "failure"
            )
            reason = f"role grants {spec.scope}"
        base_ms = (
            40.0 if spec.sensitivity == "low" else 180.0 if spec.sensitivity == "medium" else 600.0
        )
        values: dict[str, Any] = {
            "action": spec.name,
            "resource": spec.resource.format(n=rng.randint(1000, 99999)),
            "scope": spec.scope,
            "sensitivity": spec.sensitivity,
            "credential_id": cred,
            "policy_decision": decision,
            "policy_id": f"opa/{sc.platform}/{spec.scope}",
            "policy_reason": reason,
            "outcome": outcome,
            "latency_ms": int(base_ms * rng.lognormvariate(0.0, 0.6)) + 1,
            "parent_event_id": sc.root,
            "attributes": {"user_agent.original": runtime},
        }
        values.update(fields)
        return self.ev(sc, "action", t, **values)

    # ---- approvals -----------------------------------------------------------------

    def review_ms(self, risk: str) -> int:
        """How long a real review takes: ≥ 45 s for high/critical, ≥ 15 s otherwise."""
        if risk in _HIGH:
            return 45 * SECOND + int(min(195_000.0, self.rng.expovariate(1 / 40_000)))
        return 15 * SECOND + int(min(105_000.0, self.rng.expovariate(1 / 25_000)))

    def book(self, pw: PlatformWorld, t_req: int, risk: str) -> tuple[str, int, int] | None:
        """The least busy approver: (approver, viewed_at, decided_at), or None if all are
        busy past the wait limit (the agent then skips the sensitive step)."""
        approver = min(pw.approvers, key=lambda a: self.approvers[a].free_at)
        st = self.approvers[approver]
        t_view = max(
            t_req + self.rng.randint(3_000, 30_000), st.free_at + self.rng.randint(2_000, 10_000)
        )
        if t_view - t_req > CLEAN_LIMITS["approval_wait_max_ms"]:
            return None
        t_dec = t_view + self.review_ms(risk)
        st.free_at = t_dec
        return approver, t_view, t_dec

    def recent_denials(self, key: str, t: int) -> int:
        dq = self.denials.get(key)
        if not dq:
            return 0
        while dq and dq[0] < t - 30 * MINUTE:
            dq.popleft()
        return sum(1 for x in dq if abs(x - t) < 10 * MINUTE)

    def record_denial(self, keys: tuple[str | None, ...], t: int) -> None:
        for k in keys:
            if k:
                self.denials.setdefault(k, deque()).append(t)

    def decide(self, approver: str, keys: tuple[str | None, ...], t: int) -> str:
        """A realistic decision: denials at the approver's own rate and one in nine at least
        (RS-03), unless that would give a requester a fourth denial within 10 min (RS-07:
        each new denial sees at most two others within ±10 min, so no 10-min window ever
        holds more than three)."""
        st = self.approvers[approver]
        want = st.since_deny >= CLEAN_LIMITS["approver_max_approvals_in_a_row"] or (
            self.rng.random() < st.p_deny
        )
        if want and all(self.recent_denials(k, t) < 3 for k in keys if k):
            st.since_deny = 0
            self.record_denial(keys, t)
            return "denied"
        st.since_deny += 1
        return "approved"

    def approval_events(
        self,
        sc: Scene,
        spec: ActionSpec,
        risk: str,
        approver: str,
        t_req: int,
        t_view: int | None,
        t_dec: int,
        decision: str,
    ) -> tuple[str, list[Timed]]:
        """requested → viewed (if ``t_view``) → decided, for one approval id."""
        aid = self.short("apr")
        note = self.rng.choice(_APPROVE_NOTES if decision == "approved" else _DECLINE_NOTES)
        common = {
            "approval_id": aid,
            "action": spec.name,
            "risk": risk,
            "parent_event_id": sc.root,
        }
        out: list[Timed] = [
            (
                t_req,
                self.ev(
                    sc,
                    "approval.requested",
                    t_req,
                    scope=spec.scope,
                    resource=spec.resource.format(n=self.rng.randint(1000, 99999)),
                    justification=f"{spec.name} needed for {sc.task_id}",
                    **common,
                ),
            )
        ]
        if t_view is not None:
            out.append(
                (t_view, self.ev(sc, "approval.viewed", t_view, approver=approver, **common))
            )
        out.append(
            (
                t_dec,
                self.ev(
                    sc,
                    "approval.decided",
                    t_dec,
                    approver=approver,
                    decision=decision,
                    justification=note,
                    **common,
                ),
            )
        )
        return aid, out

    def revoke_delay(self) -> int:
        """Mostly a broker hook revoking within seconds; sometimes a sweeper, up to 75 s."""
        if self.rng.random() < 0.9:
            return self.rng.randint(200, 5_000)
        return self.rng.randint(5_000, CLEAN_LIMITS["revoke_after_complete_max_ms"])

    def ttl(self, kind: str) -> int:
        return self.rng.choice(_TTL_CHOICES.get(kind, _TTL_CHOICES["ai_agent"]))


# ---- clean traffic ---------------------------------------------------------------------


def _plan(rng: random.Random, pw: PlatformWorld, agent: Identity) -> list[tuple[ActionSpec, bool]]:
    """The actions of a task, and whether each one waits for a human approval."""
    allowed = agent.allowed_scopes
    available = [a for a in pw.spec.actions if a.scope in allowed]
    routine = [a for a in available if a.sensitivity not in _HIGH]
    plan = []
    for _ in range(rng.randint(1, 5)):
        a = rng.choice(routine)
        plan.append((a, a.sensitivity == "medium" and rng.random() < 0.05))
    sensitive = [a for a in available if a.sensitivity in _HIGH]
    if sensitive and rng.random() < 0.3:
        plan.insert(rng.randint(1, len(plan)), (rng.choice(sensitive), rng.random() < 0.7))
    return plan


def clean_task(ctx: Ctx, pw: PlatformWorld, t: int) -> Iterator[Timed]:
    """task.started → JIT credential → actions (approvals, a delegation) → task.completed →
    credential.revoked, all within the detector defaults in README.md#detections."""
    rng = ctx.rng
    agent = rng.choice(pw.agents)
    obo = rng.choice(pw.requesters)
    runtime = pw.spec.runtime
    sc = ctx.scene(pw, agent, obo)
    started = ctx.ev(sc, "task.started", t, attributes={"task.kind": rng.choice(_TASK_KINDS)})
    sc.root = started["event_id"]
    yield t, started

    plan = _plan(rng, pw, agent)
    needed = {a.scope for a, _ in plan}
    needed.add(agent.allowed_scopes[0])
    scopes = [s for s in agent.allowed_scopes if s in needed]
    delegation: tuple[Identity, list[str]] | None = None
    cands = pw.delegates[agent.identity_id]
    if cands and rng.random() < 0.15:
        b, both = rng.choice(cands)
        held = [s for s in both if s in needed]
        delegation = b, rng.sample(held, rng.randint(1, len(held)))

    t += rng.randint(30, 400)
    cred = ctx.short("cred")
    yield (
        t,
        ctx.ev(
            sc,
            "credential.issued",
            t,
            credential_id=cred,
            credential_kind=_CRED_KIND[agent.kind],
            issued_via="jit",
            scopes=scopes,
            expires_at=t + ctx.ttl(agent.kind),
            parent_event_id=sc.root,
        ),
    )
    creds = [(cred, agent.identity_id)]
    ok = True
    for i, (spec, needs_approval) in enumerate(plan):
        t += rng.randint(300, 6000)
        approval_id = None
        if needs_approval:
            booking = ctx.book(pw, t, spec.sensitivity)
            if booking is None:
                continue  # nobody can review in time: the agent leaves this step out
            approver, t_view, t_dec = booking
            decision = ctx.decide(approver, (obo, agent.identity_id), t_dec)
            approval_id, evs = ctx.approval_events(
                sc, spec, spec.sensitivity, approver, t, t_view, t_dec, decision
            )
            yield from evs
            t = t_dec
            if decision == "denied":
                ok = False
                continue
            t += rng.randint(500, 5000)
        act = (
            ctx.action(sc, t, spec, cred, runtime, approval_id=approval_id)
            if approval_id
            else ctx.action(sc, t, spec, cred, runtime)
        )
        ok = ok and act["outcome"] == "success"
        yield t, act
        if i == 0 and delegation is not None:
            b, dscopes = delegation
            t += rng.randint(200, 2000)
            deleg = ctx.ev(
                sc,
                "delegation",
                t,
                delegate_identity_id=b.identity_id,
                scopes=dscopes,
                credential_id=cred,
                parent_event_id=sc.root,
            )
            yield t, deleg
            t += rng.randint(50, 300)
            bcred = ctx.short("cred")
            yield (
                t,
                ctx.ev(
                    sc,
                    "credential.issued",
                    t,
                    identity_id=b.identity_id,
                    credential_id=bcred,
                    credential_kind=_CRED_KIND[b.kind],
                    issued_via="jit",
                    scopes=dscopes,
                    expires_at=t + ctx.ttl(b.kind),
                    parent_event_id=deleg["event_id"],
                ),
            )
            creds.append((bcred, b.identity_id))
            usable = [
                a for a in pw.spec.actions if a.scope in dscopes and a.sensitivity not in _HIGH
            ]
            for _ in range(rng.randint(1, 3)) if usable else ():
                t += rng.randint(200, 4000)
                yield (
                    t,
                    ctx.action(
                        sc,
                        t,
                        rng.choice(usable),
                        bcred,
                        runtime,
                        identity_id=b.identity_id,
                        parent_event_id=deleg["event_id"],
                    ),
                )
    t += rng.randint(200, 2000)
    done = ctx.ev(
        sc, "task.completed", t, outcome="success" if ok else "failure", parent_event_id=sc.root
    )
    yield t, done
    for when, (c, owner) in sorted((t + ctx.revoke_delay(), c) for c in creds):
        yield (
            when,
            ctx.ev(
                sc,
                "credential.revoked",
                when,
                identity_id=owner,
                credential_id=c,
                parent_event_id=done["event_id"],
            ),
        )


# ---- injected cases --------------------------------------------------------------------


class Case:
    """Builder of one injected case: a small task with one deliberate flaw."""

    def __init__(
        self,
        ctx: Ctx,
        det: str,
        pw: PlatformWorld,
        agent: Identity | None,
        t: int,
        obo: str | None = None,
        tag: dict[str, str] | None = None,
    ) -> None:
        self.ctx = ctx
        self.rng = ctx.rng
        self.pw = pw
        self.agent = agent
        self.obo = obo or ctx.rng.choice(pw.requesters)
        self.tag = tag or _new_tag(ctx, det)
        self.sc = ctx.scene(pw, agent, self.obo, self.tag)
        self.t = t
        self.out: list[Timed] = []
        self.scopes: list[str] = []
        self.expires: dict[str, int | None] = {}

    def add(self, t: int, etype: str, **fields: Any) -> Event:
        e = self.ctx.ev(self.sc, etype, t, **fields)
        self.out.append((t, e))
        return e

    def extend(self, evs: list[Timed]) -> None:
        self.out.extend(evs)

    def step(self, lo: int = 300, hi: int = 4000) -> int:
        self.t += self.rng.randint(lo, hi)
        return self.t

    def start(self) -> Event:
        e = self.add(self.t, "task.started", attributes={"task.kind": self.rng.choice(_TASK_KINDS)})
        self.sc.root = e["event_id"]
        return e

    def issue(
        self,
        scopes: list[str],
        *,
        ttl: int | None = None,
        via: str = "jit",
        kind: str | None = None,
        task_bound: bool = True,
        identity: Identity | None = None,
        parent: str | None = None,
        never_expires: bool = False,
    ) -> str:
        who = identity or self.agent
        assert who is not None
        cred = self.ctx.short("cred")
        t = self.step(30, 400)
        expires = None if never_expires else t + (ttl or self.ctx.ttl(who.kind))
        self.expires[cred] = expires
        self.add(
            t,
            "credential.issued",
            identity_id=who.identity_id,
            credential_id=cred,
            credential_kind=kind or _CRED_KIND[who.kind],
            issued_via=via,
            scopes=scopes,
            expires_at=expires,
            task_id=self.sc.task_id if task_bound else None,
            on_behalf_of=self.obo if task_bound else None,
            parent_event_id=(parent or self.sc.root) if task_bound else parent,
        )
        return cred

    def act(self, spec: ActionSpec, cred: str | None, **fields: Any) -> Event:
        t = self.step()
        e = self.ctx.action(
            self.sc, t, spec, cred, self.pw.spec.runtime, clean_denials=False, **fields
        )
        self.out.append((t, e))
        return e

    def complete(self, outcome: str = "success") -> Event:
        return self.add(
            self.step(200, 2000), "task.completed", outcome=outcome, parent_event_id=self.sc.root
        )

    def revoke(
        self,
        cred: str,
        identity: str | None = None,
        after: int | None = None,
        parent: str | None = None,
        **fields: Any,
    ) -> None:
        t = self.t + (after if after is not None else self.rng.randint(500, 60_000))
        self.add(
            t,
            "credential.revoked",
            identity_id=identity or self.sc.identity,
            credential_id=cred,
            parent_event_id=parent,
            **fields,
        )

    def events(self) -> list[Timed]:
        self.out.sort(key=lambda p: p[0])
        return self.out


def _routine(pw: PlatformWorld, agent: Identity) -> list[ActionSpec]:
    return [
        a for a in pw.spec.actions if a.scope in agent.allowed_scopes and a.sensitivity not in _HIGH
    ]


def _sensitive_agent(rng: random.Random, pw: PlatformWorld) -> tuple[Identity, ActionSpec]:
    """An agent allowed a high/critical action, and that action."""
    pairs = [
        (ag, a)
        for ag in pw.agents
        for a in pw.spec.actions
        if a.sensitivity in _HIGH and a.scope in ag.allowed_scopes
    ]
    return rng.choice(pairs)


def _clean_case(
    ctx: Ctx,
    det: str,
    pw: PlatformWorld,
    t: int,
    agent: Identity | None = None,
    n_actions: int = 2,
    ttl: int | None = None,
) -> tuple[Case, str, list[ActionSpec]]:
    """The common opening of many cases: task.started and a JIT credential whose scopes
    cover the routine actions chosen (``case.scopes``)."""
    agent = agent or ctx.rng.choice(pw.agents)
    case = Case(ctx, det, pw, agent, t)
    case.start()
    routine = _routine(pw, agent)
    specs = [ctx.rng.choice(routine) for _ in range(n_actions)]
    needed = {a.scope for a in specs} | {agent.allowed_scopes[0]}
    case.scopes = [s for s in agent.allowed_scopes if s in needed]
    cred = case.issue(case.scopes, ttl=ttl)
    return case, cred, specs


def _close(case: Case, *creds: tuple[str, str | None]) -> list[Timed]:
    """task.completed then timely revocation of the task's credentials."""
    done = case.complete()
    for cred, owner in creds:
        case.revoke(cred, owner, parent=done["event_id"])
    return case.events()


def sp01(ctx: Ctx, pw: PlatformWorld, t: int) -> list[Timed]:
    """A long-lived credential used: a static API key without expiry (standing, not issued
    for the task), or a task token whose lifetime is far over the kind's maximum (a week
    for agents and workloads, a year for service accounts), revoked on time."""
    rng = ctx.rng
    agent = rng.choice(pw.agents)
    case = Case(ctx, "SP-01", pw, agent, t)
    specs = [rng.choice(_routine(pw, agent)) for _ in range(2)]
    scopes = sorted({a.scope for a in specs})
    if rng.random() < 0.5:
        cred = case.issue(
            scopes, via="static", kind="api_key", task_bound=False, never_expires=True
        )
        case.start()
        for s in specs:
            case.act(s, cred)
        case.complete()
        return case.events()
    case.start()
    cred = case.issue(scopes, via="manual", kind="oauth_token", ttl=_LONG_TTL[agent.kind])
    for s in specs:
        case.act(s, cred)
    return _close(case, (cred, None))


def sp02(ctx: Ctx, pw: PlatformWorld, t: int) -> list[Timed]:
    """A task credential still live after the grace period: never revoked, or revoked by a
    cleanup job 15-25 min after task.completed."""
    case, cred, specs = _clean_case(ctx, "SP-02", pw, t)
    for s in specs:
        case.act(s, cred)
    done = case.complete()
    if ctx.rng.random() < 0.5:
        case.revoke(cred, after=ctx.rng.randint(15 * MINUTE, 25 * MINUTE), parent=done["event_id"])
    ctx.deadlines.append(done["event_time"] + 5 * MINUTE)
    return case.events()


def sp03(ctx: Ctx, pw: PlatformWorld, t: int) -> list[Timed]:
    """A break-glass service account holding one privileged scope (``iam.admin`` or
    ``admin:*``) on a credential that it only ever uses for reads. The credential lives
    7.5 days: it spans one whole 7-day window (one finding) and expires inside the next.
    The simulator advances its clock past the window (see ``Simulator``)."""
    sa = pw.special["SP-03"][0]
    case = Case(ctx, "SP-03", pw, sa, t)
    read = pw.spec.actions[0]
    privileged = ctx.rng.choice([s for s in sa.allowed_scopes if s in PRIVILEGED_SCOPES])
    cred = case.issue(
        [read.scope, privileged],
        via="manual",
        kind="oauth_token",
        ttl=7 * DAY + 12 * HOUR,
        task_bound=False,
    )
    ctx.pending_privileged.append(case.t)
    case.start()
    for _ in range(ctx.rng.randint(1, 2)):
        case.act(read, cred)
    case.complete()
    return case.events()


def sp04(ctx: Ctx, pw: PlatformWorld, t: int) -> list[Timed]:
    """An action whose scope the credential does not grant: a scope the identity is allowed
    but was not issued, one nobody is granted, or one added by a mid-task rotation."""
    rng = ctx.rng
    case, cred, specs = _clean_case(ctx, "SP-04", pw, t, n_actions=1)
    agent = case.agent
    assert agent is not None
    case.act(specs[0], cred)
    held = case.scopes
    spare = [
        a
        for a in pw.spec.actions
        if a.scope in agent.allowed_scopes and a.scope not in held and a.sensitivity not in _HIGH
    ]
    variant = rng.random()
    if spare and variant < 0.4:
        case.act(rng.choice(spare), cred)
    else:
        scope = rng.choice(pw.spec.ungranted)
        spec = ActionSpec(scope, scope, "medium", f"{pw.spec.name}://admin/{{n}}")
        if variant >= 0.7:
            case.add(
                case.step(),
                "credential.rotated",
                credential_id=cred,
                scopes=[*held, scope],
                credential_kind=_CRED_KIND[agent.kind],
                issued_via="jit",
                expires_at=case.expires[cred],  # same lifetime: only the scopes grew
                parent_event_id=case.sc.root,
            )
        case.act(spec, cred)
    return _close(case, (cred, None))


def sp05(ctx: Ctx, pw: PlatformWorld, t: int) -> list[Timed]:
    """A high/critical action under a manually issued (non-JIT) token; lifetime within the
    kind's limit and revoked on time, so only the issuance path is wrong."""
    agent, spec = _sensitive_agent(ctx.rng, pw)
    case = Case(ctx, "SP-05", pw, agent, t)
    case.start()
    cred = case.issue(
        [agent.allowed_scopes[0], spec.scope], via="manual", kind="oauth_token", ttl=30 * MINUTE
    )
    case.act(spec, cred)
    return _close(case, (cred, None))


def _special_task(ctx: Ctx, det: str, pw: PlatformWorld, t: int, ident: Identity) -> list[Timed]:
    case, cred, specs = _clean_case(ctx, det, pw, t, agent=ident)
    for s in specs:
        case.act(s, cred)
    return _close(case, (cred, None))


def sp06(ctx: Ctx, pw: PlatformWorld, t: int) -> list[Timed]:
    """An otherwise clean task by a disabled or offboarded identity."""
    return _special_task(ctx, "SP-06", pw, t, ctx.rng.choice(pw.special["SP-06"]))


def sp07(ctx: Ctx, pw: PlatformWorld, t: int) -> list[Timed]:
    """One credential used by two identities (a token copied into another agent's config),
    or by one identity in two environments."""
    rng = ctx.rng
    cands = [a for a in pw.agents if pw.delegates[a.identity_id]]
    agent = rng.choice(cands)
    # a lifetime within every kind's limit: the other user may be an ai_agent (SP-01: 1 h)
    case, cred, specs = _clean_case(ctx, "SP-07", pw, t, agent=agent, n_actions=1, ttl=30 * MINUTE)
    case.act(specs[0], cred)
    read = pw.spec.actions[0]
    if rng.random() < 0.5:
        other, _ = rng.choice(pw.delegates[agent.identity_id])
        case.act(read, cred, identity_id=other.identity_id)
    else:
        case.act(read, cred, environment="dev" if agent.environment != "dev" else "staging")
    return _close(case, (cred, None))


def sp08(ctx: Ctx, pw: PlatformWorld, t: int) -> list[Timed]:
    """An otherwise clean task by an identity whose owner is offboarded or unknown."""
    return _special_task(ctx, "SP-08", pw, t, ctx.rng.choice(pw.special["SP-08"]))


def _approvers_busy(ctx: Ctx, pw: PlatformWorld, t: int) -> bool:
    """True when no approver of the platform can take a request within the wait limit:
    approval cases are then not injected (like clean approvals, they need a reviewer)."""
    soonest = min(ctx.approvers[a].free_at for a in pw.approvers)
    return soonest > t + INJECTED_APPROVAL_WAIT_MS


def _approver_slot(ctx: Ctx, pw: PlatformWorld, t: int) -> tuple[str, int]:
    approver = min(pw.approvers, key=lambda a: ctx.approvers[a].free_at)
    return approver, max(t, ctx.approvers[approver].free_at + SECOND)


def rs01(ctx: Ctx, pw: PlatformWorld, t: int) -> list[Timed]:
    """A high/critical request approved 3-8 s after being viewed (≈ 5-13 s after it was
    requested), then executed."""
    rng = ctx.rng
    if _approvers_busy(ctx, pw, t):
        return []
    agent, spec = _sensitive_agent(rng, pw)
    case = Case(ctx, "RS-01", pw, agent, t)
    case.start()
    cred = case.issue([agent.allowed_scopes[0], spec.scope])
    approver, t_req = _approver_slot(ctx, pw, case.step())
    t_view = t_req + rng.randint(2_000, 5_000)
    t_dec = t_view + rng.randint(3_000, 8_000)
    ctx.approvers[approver].free_at = t_dec
    ctx.approvers[approver].since_deny += 1
    aid, evs = ctx.approval_events(
        case.sc, spec, spec.sensitivity, approver, t_req, t_view, t_dec, "approved"
    )
    case.extend(evs)
    case.t = t_dec
    case.act(spec, cred, approval_id=aid)
    return _close(case, (cred, None))


def _approval_subtask(
    ctx: Ctx,
    det: str,
    pw: PlatformWorld,
    case_tag: dict[str, str],
    t_req: int,
) -> tuple[Case, Identity, ActionSpec, str]:
    """A sub-task that will ask for an approval at ``t_req`` (for multi-request cases)."""
    rng = ctx.rng
    agent = rng.choice(pw.agents)
    routine = _routine(pw, agent)
    medium = [a for a in routine if a.sensitivity == "medium"]
    spec = rng.choice(medium or routine)
    sub = Case(ctx, det, pw, agent, t_req - rng.randint(8_000, 20_000), tag=case_tag)
    sub.start()
    cred = sub.issue(sorted({agent.allowed_scopes[0], spec.scope}), ttl=45 * MINUTE)
    return sub, agent, spec, cred


def _new_tag(ctx: Ctx, det: str) -> dict[str, str]:
    ctx.cases += 1
    ctx.case_counts[det] += 1
    return {"sim.injected": det, "sim.case": f"case-{ctx.cases:06d}"}


def _next_boundary(t: int, size: int) -> int:
    return (t // size + 1) * size


def rs02(ctx: Ctx, pw: PlatformWorld, t: int) -> list[Timed]:
    """One approver decides 12 requests within 40 s, all inside one aligned minute. Each
    request was viewed ≥ 20 s earlier, so no single review is too fast (RS-01)."""
    rng = ctx.rng
    if _approvers_busy(ctx, pw, t):
        return []
    tag = _new_tag(ctx, "RS-02")
    approver = min(pw.approvers, key=lambda a: ctx.approvers[a].free_at)
    t0 = t + 30 * SECOND
    subs = []
    for i in range(12):
        t_req = t0 + i * rng.randint(15_000, 40_000)
        subs.append((t_req, *_approval_subtask(ctx, "RS-02", pw, tag, t_req)))
    views = [t_req + rng.randint(5_000, 30_000) for t_req, *_ in subs]
    earliest = max(max(views) + 20 * SECOND, ctx.approvers[approver].free_at + SECOND)
    burst = _next_boundary(earliest, MINUTE) + 5 * SECOND
    out: list[Timed] = []
    for i, ((t_req, sub, agent, spec, cred), t_view) in enumerate(zip(subs, views, strict=True)):
        t_dec = burst + i * 3_300 + rng.randint(0, 500)
        decision = ctx.decide(approver, (sub.obo, agent.identity_id), t_dec)
        aid, evs = ctx.approval_events(
            sub.sc, spec, spec.sensitivity, approver, t_req, t_view, t_dec, decision
        )
        sub.extend(evs)
        sub.t = t_dec
        if decision == "approved":
            sub.act(spec, cred, approval_id=aid)
        done = sub.complete("success" if decision == "approved" else "failure")
        sub.revoke(cred, parent=done["event_id"])
        out.extend(sub.events())
    ctx.approvers[approver].free_at = burst + 45 * SECOND
    out.sort(key=lambda p: p[0])
    return out


def _idle_for_a_day(st: ApproverState, t: int) -> bool:
    return st.free_at == 0 or st.free_at + DAY + MINUTE <= t


def rs03(ctx: Ctx, pw: PlatformWorld, t: int) -> list[Timed]:
    """An approver who approves all of 52-58 requests (≥ 50 decisions, 100 %) within one UTC
    day, each reviewed at a plausible pace (11-25 s after viewing, decisions ≥ 11 s apart).

    Each case gets an always-yes approver idle for the previous 24 h, so every case is a
    separate (approver, window) finding; with all eight busy, no case is injected (the
    task is a clean one), which caps RS-03 at eight cases per simulated day."""
    rng = ctx.rng
    idle = [a for a in ctx.world.stamp_approvers if _idle_for_a_day(ctx.approvers[a], t)]
    if not idle:
        return []  # every always-yes approver already has a case in this 24 h: skip
    approver = idle[0]
    st = ctx.approvers[approver]
    tag = _new_tag(ctx, "RS-03")
    n = rng.randint(52, 58)
    start = max(t + 30 * SECOND, st.free_at + SECOND)
    if (start + n * 50 * SECOND) // DAY != start // DAY:
        start = _next_boundary(start, DAY) + MINUTE
    out: list[Timed] = []
    free = start
    for _ in range(n):
        t_req = free + rng.randint(1_000, 5_000)
        sub, _, spec, cred = _approval_subtask(ctx, "RS-03", pw, tag, t_req)
        t_view = t_req + rng.randint(2_000, 8_000)
        t_dec = t_view + rng.randint(11_000, 25_000)
        aid, evs = ctx.approval_events(
            sub.sc, spec, spec.sensitivity, approver, t_req, t_view, t_dec, "approved"
        )
        sub.extend(evs)
        sub.t = t_dec
        sub.act(spec, cred, approval_id=aid)
        done = sub.complete()
        sub.revoke(cred, parent=done["event_id"])
        out.extend(sub.events())
        free = t_dec
    st.free_at = free
    out.sort(key=lambda p: p[0])
    return out


def rs04(ctx: Ctx, pw: PlatformWorld, t: int) -> list[Timed]:
    """An approval decided after a normal delay but never viewed by its approver."""
    rng = ctx.rng
    if _approvers_busy(ctx, pw, t):
        return []
    agent, spec = _sensitive_agent(rng, pw)
    case = Case(ctx, "RS-04", pw, agent, t)
    case.start()
    cred = case.issue([agent.allowed_scopes[0], spec.scope])
    approver, t_req = _approver_slot(ctx, pw, case.step())
    t_dec = t_req + rng.randint(60_000, 180_000)
    ctx.approvers[approver].free_at = t_dec
    ctx.approvers[approver].since_deny += 1
    aid, evs = ctx.approval_events(
        case.sc, spec, spec.sensitivity, approver, t_req, None, t_dec, "approved"
    )
    case.extend(evs)
    case.t = t_dec
    case.act(spec, cred, approval_id=aid)
    return _close(case, (cred, None))


def rs05(ctx: Ctx, pw: PlatformWorld, t: int) -> list[Timed]:
    """A request approved, after a real review, by its own principal (``on_behalf_of``) or
    by the agent's owner."""
    rng = ctx.rng
    agent, spec = _sensitive_agent(rng, pw)
    case = Case(ctx, "RS-05", pw, agent, t)
    case.start()
    cred = case.issue([agent.allowed_scopes[0], spec.scope])
    approver = case.obo if rng.random() < 0.5 else (agent.owner or case.obo)
    t_req = case.step()
    t_view = t_req + rng.randint(5_000, 60_000)
    t_dec = t_view + rng.randint(50_000, 150_000)
    aid, evs = ctx.approval_events(
        case.sc, spec, spec.sensitivity, approver, t_req, t_view, t_dec, "approved"
    )
    case.extend(evs)
    case.t = t_dec
    case.act(spec, cred, approval_id=aid)
    return _close(case, (cred, None))


def rs06(ctx: Ctx, pw: PlatformWorld, t: int) -> list[Timed]:
    """An action ahead of its approval: run before the decision, run under a denied
    approval, or run under an approval id that was never requested."""
    rng = ctx.rng
    variant = rng.random()
    if variant >= 0.34 and _approvers_busy(ctx, pw, t):
        return []
    agent, spec = _sensitive_agent(rng, pw)
    case = Case(ctx, "RS-06", pw, agent, t)
    if variant >= 0.67 and any(
        ctx.recent_denials(k, t) >= 2 for k in (case.obo, agent.identity_id)
    ):
        variant = 0.5  # a denial here could add up to approval bombing (RS-07): run early instead
    case.start()
    cred = case.issue([agent.allowed_scopes[0], spec.scope])
    if variant < 0.34:
        case.act(spec, cred, approval_id=ctx.short("apr"))
        return _close(case, (cred, None))
    approver, t_req = _approver_slot(ctx, pw, case.step())
    t_view = t_req + rng.randint(5_000, 30_000)
    t_dec = t_view + ctx.review_ms(spec.sensitivity)
    st = ctx.approvers[approver]
    st.free_at = t_dec
    if variant < 0.67:
        decision = "approved"
        st.since_deny += 1
        aid, evs = ctx.approval_events(
            case.sc, spec, spec.sensitivity, approver, t_req, t_view, t_dec, decision
        )
        case.t = t_req
        case.act(spec, cred, approval_id=aid)  # seconds after the request, long before the decision
    else:
        decision = "denied"
        st.since_deny = 0
        ctx.record_denial((case.obo, agent.identity_id), t_dec)
        aid, evs = ctx.approval_events(
            case.sc, spec, spec.sensitivity, approver, t_req, t_view, t_dec, decision
        )
        case.t = t_dec
        case.act(spec, cred, approval_id=aid)
    case.extend(evs)
    case.t = max(case.t, t_dec)
    return _close(case, (cred, None))


def rs07(ctx: Ctx, pw: PlatformWorld, t: int) -> list[Timed]:
    """Approval bombing: one agent, for one principal, asks six times; five denials, then an
    approval, all inside one aligned 10-minute window; each review ≥ 30 s."""
    rng = ctx.rng
    if _approvers_busy(ctx, pw, t):
        return []
    agent = rng.choice(pw.agents)
    routine = _routine(pw, agent)
    spec = rng.choice([a for a in routine if a.sensitivity == "medium"] or routine)
    approver = min(pw.approvers, key=lambda a: ctx.approvers[a].free_at)
    st = ctx.approvers[approver]
    start = _next_boundary(max(t + 40 * SECOND, st.free_at + SECOND), 10 * MINUTE) + 10 * SECOND
    case = Case(ctx, "RS-07", pw, agent, start - 30 * SECOND)
    case.start()
    cred = case.issue(sorted({agent.allowed_scopes[0], spec.scope}))
    aid = ""
    for i in range(6):
        t_req = start + i * 80 * SECOND
        t_view = t_req + rng.randint(4_000, 8_000)
        t_dec = t_view + rng.randint(32_000, 40_000)
        decision = "denied" if i < 5 else "approved"
        if decision == "denied":
            ctx.record_denial((case.obo, agent.identity_id), t_dec)
        aid, evs = ctx.approval_events(
            case.sc, spec, "medium", approver, t_req, t_view, t_dec, decision
        )
        case.extend(evs)
        case.t = t_dec
    st.free_at = case.t
    st.since_deny = 1
    case.act(spec, cred, approval_id=aid)
    return _close(case, (cred, None))


def az01(ctx: Ctx, pw: PlatformWorld, t: int) -> list[Timed]:
    """An action with no policy decision recorded (the policy hook was bypassed)."""
    case, cred, specs = _clean_case(ctx, "AZ-01", pw, t)
    case.act(specs[0], cred)
    case.act(specs[1], cred, policy_decision=None, policy_id=None, policy_reason=None)
    return _close(case, (cred, None))


def az02(ctx: Ctx, pw: PlatformWorld, t: int) -> list[Timed]:
    """An action denied at request time that executed anyway (outcome success)."""
    case, cred, specs = _clean_case(ctx, "AZ-02", pw, t)
    case.act(specs[0], cred)
    case.act(
        specs[1],
        cred,
        policy_decision="deny",
        policy_reason=ctx.rng.choice(_DENY_REASONS),
        outcome="success",
    )
    return _close(case, (cred, None))


def at01(ctx: Ctx, pw: PlatformWorld, t: int) -> list[Timed]:
    """An unattributable action: one with no identity inside a clean task, or a whole task
    by a shadow agent that is not in the registry."""
    rng = ctx.rng
    if rng.random() < 0.5:
        case, cred, specs = _clean_case(ctx, "AT-01", pw, t)
        case.act(specs[0], cred)
        case.act(pw.spec.actions[0], None, identity_id=None, credential_id=None)
        return _close(case, (cred, None))
    template = pw.agents[0]
    shadow = Identity(
        pw.shadow,
        "ai_agent",
        None,
        template.team,
        "prod",
        "low",
        template.allowed_scopes,
        platform=pw.spec.name,
    )
    case, cred, specs = _clean_case(ctx, "AT-01", pw, t, agent=shadow)
    for s in specs:
        case.act(s, cred)
    return _close(case, (cred, None))


def at02(ctx: Ctx, pw: PlatformWorld, t: int) -> list[Timed]:
    """A broken delegation chain inside a task: the delegate's action names a parent event
    that never arrived (a queue hop rewrote it), runs under a sub-task id whose
    task.started was never sent, or acts for another principal than the task's (the
    original ``on_behalf_of`` was replaced by a default on the way)."""
    rng = ctx.rng
    cands = [a for a in pw.agents if pw.delegates[a.identity_id]]
    agent = rng.choice(cands)
    case, cred, specs = _clean_case(ctx, "AT-02", pw, t, agent=agent, n_actions=1)
    case.act(specs[0], cred)
    b, both = rng.choice(pw.delegates[agent.identity_id])
    scopes = [both[0]]
    deleg = case.add(
        case.step(),
        "delegation",
        delegate_identity_id=b.identity_id,
        scopes=scopes,
        credential_id=cred,
        parent_event_id=case.sc.root,
    )
    bcred = case.issue(scopes, identity=b, parent=deleg["event_id"])
    spec = next(a for a in pw.spec.actions if a.scope == scopes[0])
    broken: dict[str, Any] = {"parent_event_id": deleg["event_id"]}
    variant = rng.randrange(3)
    if variant == 0:
        broken["parent_event_id"] = ctx.uuid()  # unknown parent
    elif variant == 1:
        broken["task_id"] = ctx.short("task")  # no task start
    else:
        broken["on_behalf_of"] = rng.choice([r for r in pw.requesters if r != case.obo])
    case.act(spec, bcred, identity_id=b.identity_id, **broken)
    return _close(case, (cred, None), (bcred, b.identity_id))


def at03(ctx: Ctx, pw: PlatformWorld, t: int) -> list[Timed]:
    """A delegation that passes on a scope the delegator does not hold."""
    rng = ctx.rng
    cands = [a for a in pw.agents if pw.delegates[a.identity_id]]
    agent = rng.choice(cands)
    case, cred, specs = _clean_case(ctx, "AT-03", pw, t, agent=agent, n_actions=1)
    case.act(specs[0], cred)
    b, both = rng.choice(pw.delegates[agent.identity_id])
    extra = [s for s in b.allowed_scopes if s not in agent.allowed_scopes]
    scopes = [both[0], rng.choice(extra) if extra else rng.choice(pw.spec.ungranted)]
    deleg = case.add(
        case.step(),
        "delegation",
        delegate_identity_id=b.identity_id,
        scopes=scopes,
        credential_id=cred,
        parent_event_id=case.sc.root,
    )
    bcred = case.issue(scopes, identity=b, parent=deleg["event_id"])
    spec = next(a for a in pw.spec.actions if a.scope == both[0])
    case.act(spec, bcred, identity_id=b.identity_id, parent_event_id=deleg["event_id"])
    return _close(case, (cred, None), (bcred, b.identity_id))


def at04(ctx: Ctx, pw: PlatformWorld, t: int) -> list[Timed]:
    """A person driving an agent's credential from a browser session."""
    case, cred, specs = _clean_case(ctx, "AT-04", pw, t)
    case.act(specs[0], cred)
    case.act(
        specs[1],
        cred,
        attributes={
            "user_agent.original": ctx.rng.choice(_BROWSER_UA),
            "session.interactive": "true",
        },
    )
    return _close(case, (cred, None))


def _fake_secret(rng: random.Random) -> tuple[str, str]:
    """A credential-shaped value (random, never a real one) and the attribute it leaks in."""
    kind = rng.randrange(4)
    if kind == 0:
        return "aws.access_key_id", "AKIA" + "".join(rng.choices(_UPPER, k=16))
    if kind == 1:
        return "debug.github_token", "ghp_" + "".join(rng.choices(_ALNUM, k=36))
    if kind == 2:
        body = "".join(rng.choices(_ALNUM, k=43))
        sig = "".join(rng.choices(_ALNUM, k=43))
        return (
            "http.request.header.authorization",
            f"Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ{body}.{sig}",
        )
    return "db.connection_string", (
        "postgresql://etl:" + "".join(rng.choices(_ALNUM, k=20)) + "@db.internal:5432/ledger"
    )


def sl01(ctx: Ctx, pw: PlatformWorld, t: int) -> list[Timed]:
    """A credential-like value logged inside an action's attributes."""
    case, cred, specs = _clean_case(ctx, "SL-01", pw, t)
    case.act(specs[0], cred)
    key, value = _fake_secret(ctx.rng)
    case.act(specs[1], cred, attributes={"user_agent.original": pw.spec.runtime, key: value})
    return _close(case, (cred, None))


#: An injector returns the case's events in time order, or [] when it cannot make a
#: distinct case right now (then the task is a clean one and nothing is counted).
Injector = Callable[[Ctx, PlatformWorld, int], list[Timed]]

INJECTORS: dict[str, Injector] = {
    "SP-01": sp01,
    "SP-02": sp02,
    "SP-03": sp03,
    "SP-04": sp04,
    "SP-05": sp05,
    "SP-06": sp06,
    "SP-07": sp07,
    "SP-08": sp08,
    "RS-01": rs01,
    "RS-02": rs02,
    "RS-03": rs03,
    "RS-04": rs04,
    "RS-05": rs05,
    "RS-06": rs06,
    "RS-07": rs07,
    "AZ-01": az01,
    "AZ-02": az02,
    "AT-01": at01,
    "AT-02": at02,
    "AT-03": at03,
    "AT-04": at04,
    "SL-01": sl01,
}

#: The detections the simulator can inject, in its own (seeded) order. Which
#: detections exist is the registry's knowledge: a test checks that every built-in
#: detector has an injector here, and ``--violations`` names a registered detector
#: without one (a user's rule) with its own error.
DETECTOR_IDS: tuple[str, ...] = tuple(INJECTORS)
