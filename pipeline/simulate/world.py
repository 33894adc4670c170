"""The simulated organisation: platforms, teams, humans, NHIs and the identity registry.

Everything is derived from the seed, so the registry written with
``--registry-out`` always matches the traffic of the same seed. The world is
shaped so that clean traffic cannot violate a detection by construction:
approvers are never owners or requesters (RS-05), every NHI has an active
owner (SP-08), no clean identity holds a privileged scope (SP-03), and
delegation candidates are precomputed as scope intersections (AT-03, SP-04).
Identities used only by injectors (disabled, offboarded, orphaned, break-glass,
always-yes approvers) are part of the registry but never act in clean traffic.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

Kind = Literal["ai_agent", "service_account", "workload", "human"]
Status = Literal["active", "disabled", "offboarded"]
Level = Literal["low", "medium", "high", "critical"]
Mode = Literal["reporting", "assistant", "autonomous"]

#: Marks an NHI registered without an owner (SP-08 material).
NO_OWNER = "<none>"
#: Privileged scopes: only the SP-03 break-glass accounts hold them.
PRIVILEGED_SCOPES: tuple[str, ...] = ("iam.admin", "admin:*")

_LEVEL_ORDER: dict[str, int] = {"low": 0, "medium": 1, "high": 2, "critical": 3}


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """An action a platform's agents perform: name, the scope it needs, its sensitivity."""

    name: str
    scope: str
    sensitivity: Level
    resource: str  # a template with {n}


@dataclass(frozen=True, slots=True)
class PlatformSpec:
    name: str
    team: str
    runtime: str  # the agents' user agent (never a browser)
    actions: tuple[ActionSpec, ...]
    #: scopes that exist on the platform but are granted to nobody (SP-04 material)
    ungranted: tuple[str, ...]

    @property
    def scopes(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for a in self.actions:
            seen.setdefault(a.scope, None)
        return tuple(seen)


PLATFORMS: tuple[PlatformSpec, ...] = (
    PlatformSpec(
        "crm-agents",
        "sales-ops",
        "crm-agent-runtime/3.4.1 python-httpx/0.27.2",
        (
            ActionSpec("crm.accounts.read", "crm.read", "low", "crm://accounts/ACC-{n}"),
            ActionSpec("crm.contacts.search", "crm.read", "low", "crm://contacts?segment={n}"),
            ActionSpec(
                "crm.records.update", "crm.records.update", "medium", "crm://opportunities/OPP-{n}"
            ),
            ActionSpec("crm.email.send", "crm.email.send", "medium", "crm://campaigns/CMP-{n}"),
            ActionSpec(
                "crm.records.export", "crm.records.export", "high", "crm://reports/pipeline-{n}.csv"
            ),
        ),
        ("crm.records.delete", "crm.users.manage"),
    ),
    PlatformSpec(
        "code-assist",
        "platform-eng",
        "code-assist-worker/2.11.0 go-http-client/1.1",
        (
            ActionSpec("repo.files.read", "repo.read", "low", "git://platform/service-{n}"),
            ActionSpec(
                "repo.pr.create", "repo.write", "medium", "git://platform/service-{n}/pulls"
            ),
            ActionSpec("ci.pipeline.run", "ci.run", "medium", "ci://pipelines/build-{n}"),
            ActionSpec(
                "deploy.staging.apply", "deploy.staging", "medium", "k8s://staging/deploy-{n}"
            ),
            ActionSpec("deploy.prod.apply", "deploy.prod", "critical", "k8s://prod/deploy-{n}"),
        ),
        ("repo.settings.write", "secrets.read"),
    ),
    PlatformSpec(
        "finance-bots",
        "finance-ops",
        "finbot-executor/1.8.3 java-http/17",
        (
            ActionSpec("ledger.entries.read", "ledger.read", "low", "erp://ledger/{n}"),
            ActionSpec("invoices.create", "invoices.write", "medium", "erp://invoices/INV-{n}"),
            ActionSpec("payments.create", "payments.create", "high", "erp://payments/PAY-{n}"),
            ActionSpec(
                "payments.release", "payments.release", "critical", "erp://payment-runs/RUN-{n}"
            ),
        ),
        ("vendors.bank_details.write", "ledger.close"),
    ),
    PlatformSpec(
        "support-copilot",
        "customer-support",
        "support-copilot/5.2.0 node-fetch/3.3",
        (
            ActionSpec("tickets.read", "tickets.read", "low", "helpdesk://tickets/T-{n}"),
            ActionSpec("kb.search", "kb.read", "low", "helpdesk://kb?q=topic-{n}"),
            ActionSpec(
                "tickets.reply", "tickets.reply", "medium", "helpdesk://tickets/T-{n}/replies"
            ),
            ActionSpec(
                "customer.pii.read", "pii.read", "high", "helpdesk://customers/C-{n}/profile"
            ),
            ActionSpec("refunds.issue", "refunds.issue", "high", "billing://refunds/R-{n}"),
        ),
        ("accounts.merge", "billing.plans.write"),
    ),
)

_FIRST_NAMES = (
    "alice bob carol dan erin frank grace heidi ivan judy ken laura mallory niaj olivia peggy "
    "quentin rupert sybil trent uma victor wendy xavier yara zane amir bea chen dora eli "
    "fatima gus hana igor jin kofi lena marco noor oscar priya rafael sana tomas una vera wei "
    "ximena yusuf zoe"
)
_LAST_NAMES = (
    "adams baker chen diaz evans fischer garcia haddad ito jensen kim lopez moreau nakamura "
    "okafor patel quinn rossi silva tanaka ueda varga weber xu yilmaz zhou"
)
_FIRST = _FIRST_NAMES.split()
_LAST = _LAST_NAMES.split()


@dataclass(slots=True)
class Identity:
    """One registry entry (docs/contracts/state.md ``nhi:identity:*``), plus simulator roles."""

    identity_id: str
    kind: Kind
    owner: str | None
    team: str
    environment: str
    risk_tier: Level
    allowed_scopes: tuple[str, ...]
    status: Status = "active"
    platform: str | None = None
    #: what the simulator uses it for: "agent", "approver", "requester", "owner",
    #: "stamp-approver", or an injector role such as "SP-06"
    role: str = "agent"
    #: registry ``mode``; None = not in the entry (the registry's default, autonomous)
    mode: Mode | None = None

    def registry_entry(self) -> dict[str, Any]:
        return {
            "identity_id": self.identity_id,
            "kind": self.kind,
            "owner": self.owner,
            "team": self.team,
            "environment": self.environment,
            "risk_tier": self.risk_tier,
            "allowed_scopes": list(self.allowed_scopes),
            "status": self.status,
            **({"mode": self.mode} if self.mode is not None else {}),
        }


@dataclass(slots=True)
class PlatformWorld:
    """A platform's people and machines."""

    spec: PlatformSpec
    agents: list[Identity]  # active NHIs that run clean tasks
    requesters: list[str]
    approvers: list[str]
    owners: list[str]
    special: dict[str, list[Identity]]  # injector role → identities
    shadow: str  # an agent id that acts (AT-01) but is absent from the registry
    #: identity_id → [(delegate, scopes both hold)], same environment, non-empty intersection
    delegates: dict[str, list[tuple[Identity, tuple[str, ...]]]] = field(default_factory=dict)
    actions_by_scope: dict[str, list[ActionSpec]] = field(default_factory=dict)


@dataclass(slots=True)
class World:
    """The whole organisation of one seed."""

    seed: int
    platforms: list[PlatformWorld]
    identities: dict[str, Identity]  # everything in the registry, humans included
    stamp_approvers: list[str]  # RS-03 only: approve everything, never used in clean traffic
    #: identities that act in injected cases but are absent from the registry (AT-01, SP-08)
    unregistered: list[str]

    def registry(self) -> list[dict[str, Any]]:
        """The registry entries, humans first, in a stable order."""
        ids = sorted(self.identities.values(), key=lambda i: (i.kind != "human", i.identity_id))
        return [i.registry_entry() for i in ids]

    def registry_yaml(self) -> str:
        header = (
            "# Identity registry of the govpipe simulator (seed "
            f"{self.seed}); load with `govpipe identities load FILE`.\n"
            "# Disabled/offboarded identities and owners are injector material "
            "(SP-06, SP-08); clean traffic never uses them.\n"
        )
        body = yaml.safe_dump(
            {"identities": self.registry()}, sort_keys=False, default_flow_style=None, width=120
        )
        return header + body


def write_registry(world: World, path: str | Path) -> None:
    """Write the registry YAML read by ``govpipe identities load``."""
    Path(path).write_text(world.registry_yaml(), encoding="utf-8")


def _max_level(levels: Iterable[str]) -> Level:
    best: Level = "low"
    for lv in levels:
        if _LEVEL_ORDER[lv] > _LEVEL_ORDER[best]:
            best = lv  # type: ignore[assignment]
    return best


class _Names:
    """Unique human ids drawn from the seed."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._used: set[str] = set()

    def take(self) -> str:
        while True:
            name = f"{self._rng.choice(_FIRST)}.{self._rng.choice(_LAST)}@example.com"
            if name not in self._used:
                self._used.add(name)
                return name


def build_world(seed: int) -> World:
    """Build the organisation for ``seed`` (same seed → same world)."""
    rng = random.Random(f"world:{seed}")
    names = _Names(rng)
    identities: dict[str, Identity] = {}
    platforms: list[PlatformWorld] = []

    def human(team: str, role: str, status: Status = "active") -> str:
        hid = names.take()
        identities[hid] = Identity(hid, "human", None, team, "prod", "low", (), status, None, role)
        return hid

    former_owner = human("it-ops", "former-owner", "offboarded")
    stamp_approvers = [human("risk-review", "stamp-approver") for _ in range(8)]
    unregistered: list[str] = []

    for spec in PLATFORMS:
        short = spec.name.split("-")[0]
        approvers = [human(spec.team, "approver") for _ in range(4)]
        owners = [human(spec.team, "owner") for _ in range(3)]
        requesters = [human(spec.team, "requester") for _ in range(16)]
        scopes = spec.scopes
        read_scope = scopes[0]
        level_of = {a.scope: a.sensitivity for a in spec.actions}

        def nhi(
            iid: str,
            kind: Kind,
            env: str,
            allowed: tuple[str, ...],
            role: str = "agent",
            owner: str | None = None,
            status: Status = "active",
            spec: PlatformSpec = spec,
            owners: list[str] = owners,
            level_of: dict[str, Level] = level_of,
        ) -> Identity:
            tier = _max_level(level_of.get(s, "critical") for s in allowed)
            if owner is None:
                owner = rng.choice(owners)
            ident = Identity(
                iid,
                kind,
                None if owner is NO_OWNER else owner,
                spec.team,
                env,
                tier,
                allowed,
                status,
                spec.name,
                role,
            )
            identities[iid] = ident
            return ident

        def grant(
            extra: int, scopes: tuple[str, ...] = scopes, read_scope: str = read_scope
        ) -> tuple[str, ...]:
            others = [s for s in scopes if s != read_scope]
            chosen = set(rng.sample(others, min(len(others), extra)))
            return (read_scope, *[s for s in others if s in chosen])

        agents: list[Identity] = []
        for i in range(1, 9):
            env = "staging" if i in (7, 8) else "prod"
            # agent 01 of each environment holds every scope, so sensitive actions always have
            # a legitimate performer (SP-05 / RS-* injectors need one)
            extra = len(scopes) if i in (1, 7) else rng.randint(1, 3)
            agents.append(nhi(f"agent-{short}-{i:02d}", "ai_agent", env, grant(extra)))
        for i in range(1, 4):
            agents.append(nhi(f"svc-{short}-sync-{i:02d}", "service_account", "prod", grant(2)))
        for i in range(1, 4):
            env = "staging" if i == 3 else "prod"
            agents.append(
                nhi(f"wl-{short}-jobs-{i:02d}", "workload", env, grant(rng.randint(1, 2)))
            )

        special: dict[str, list[Identity]] = {
            "SP-06": [
                nhi(
                    f"agent-{short}-legacy-01",
                    "ai_agent",
                    "prod",
                    grant(1),
                    "SP-06",
                    status="disabled",
                ),
                nhi(
                    f"agent-{short}-legacy-02",
                    "ai_agent",
                    "prod",
                    grant(1),
                    "SP-06",
                    status="offboarded",
                ),
            ],
            "SP-08": [
                nhi(
                    f"agent-{short}-orphan-01",
                    "ai_agent",
                    "prod",
                    grant(1),
                    "SP-08",
                    owner=former_owner,
                ),
                nhi(
                    f"svc-{short}-orphan-02",
                    "service_account",
                    "prod",
                    grant(1),
                    "SP-08",
                    owner=NO_OWNER,
                ),
            ],
            "SP-03": [
                nhi(
                    f"svc-{short}-breakglass-01",
                    "service_account",
                    "prod",
                    (read_scope, *PRIVILEGED_SCOPES),
                    "SP-03",
                )
            ],
        }
        shadow = f"agent-{short}-shadow-01"
        unregistered.append(shadow)

        pw = PlatformWorld(spec, agents, requesters, approvers, owners, special, shadow)
        for a in agents:
            pw.delegates[a.identity_id] = []
            for b in agents:
                if b is a or b.environment != a.environment:
                    continue
                both = tuple(s for s in a.allowed_scopes if s in b.allowed_scopes)
                if both:
                    pw.delegates[a.identity_id].append((b, both))
        for act in spec.actions:
            pw.actions_by_scope.setdefault(act.scope, []).append(act)
        platforms.append(pw)

    for ident in identities.values():
        ident.mode = mode_of(ident)
    return World(seed, platforms, identities, stamp_approvers, unregistered)


#: A non-human identity's mode by a hash of its id; one in four has none (autonomous).
_MODES: tuple[Mode | None, ...] = ("reporting", "assistant", "autonomous", None)


def mode_of(identity: Identity) -> Mode | None:
    """Each mode for some NHIs, none for humans; a hash of the id, not the world's
    random stream, so adding modes changed no other part of any seed's world."""
    if identity.kind == "human":
        return None
    return _MODES[zlib.crc32(identity.identity_id.encode()) % len(_MODES)]
