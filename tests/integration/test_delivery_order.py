"""Findings and metrics do not depend on how Kafka delivers the events (issue 12).

One simulated scenario with every detector injected, spanning hours of event time
(plus SP-03's seven-day jump), is delivered through the real broker four ways, each
with its own topics, app id and registry prefix:

(a) in event-time order, all on partition 0, the whole backlog published before the
    worker starts;
(b) keyed by ``identity_id`` across 6 input partitions, each partition in event-time
    order, the whole backlog on the topic before the worker starts;
(c) (b) with a kill -9 of the worker mid-stream and a restart;
(d) (b) with a second worker process joining the group mid-stream (a rebalance).

No heartbeats: after the backlog the worker is left to finish, so caught-up idle
partitions must stop holding the watermark back (``idle_partition_s``, 2 s here).
(b), (c) and (d) must give exactly (a)'s findings (alert ids, detector, one Create
each, the union of evidence event ids) and (a)'s final metric revisions for every
window and dimension.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from pipeline.detectors.registry import all_detectors
from pipeline.embedded.ports import free_port
from pipeline.settings import Settings
from pipeline.simulate import Simulator
from tests.support.delivery import (
    Delivery,
    OutputReader,
    compare_findings,
    compare_metrics,
    finding_problems,
    keyed_partitions,
    publish_in_order,
    publish_keyed,
    summary,
)
from tests.support.scenario import clear_registry, load_registry
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration

START = 1_790_000_000_000
ALL_IDS = sorted(d.spec.id for d in all_detectors())
PARTITIONS = 6
#: Seconds of output silence that mean the worker is done (idleness is 2 s).
QUIET_S = 10.0
#: Where in the stream the kill or the second worker lands: this share of (a)'s alert and
#: metric records has been written (stage 1 forwards the whole backlog within a second).
MID = 1 / 3
#: aiokafka's first line of a group join (the second worker asking for partitions).
JOIN_LOG = "Revoking previously assigned partitions"


def signal_group(proc: WorkerProcess, sig: signal.Signals) -> None:
    assert proc.proc is not None
    os.killpg(proc.proc.pid, sig)


def scenario(seed: int = 5) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every detector injected, 150 events apart; 0.2 events per simulated second
    makes about 3,300 events over ~4.5 hours, plus SP-03's seven-day jump."""
    sim = Simulator(seed, start_ms=START, rate=0.2, sp03_jump=True)
    events: list[dict[str, Any]] = []
    for detector in ALL_IDS:
        sim.inject(detector)
        events += sim.events(150)
    events += list(sim.finish())
    missing = set(ALL_IDS) - set(sim.stats.injected)
    assert not missing, f"the simulator made no case of {sorted(missing)}"
    return sim.registry(), events


def idle_setting() -> dict[str, Any]:
    """``idle_partition_s=2`` when this version of the product has the setting."""
    return {"idle_partition_s": 2} if "idle_partition_s" in Settings.model_fields else {}


def deliver(
    name: str,
    settings_factory: Callable[..., Settings],
    worker_factory: Callable[..., WorkerProcess],
    redis_url: str,
    registry: list[dict[str, Any]],
    events: list[dict[str, Any]],
    *,
    keyed: bool,
    kill: bool = False,
    second: bool = False,
    mid_output: int = 0,
) -> Delivery:
    """One delivery; ``mid_output`` is the count of alert and metric records after
    which the kill or the second worker happens (a share of (a)'s output)."""
    prefix = f"t{uuid.uuid4().hex[:8]}:nhi:"
    overrides: dict[str, Any] = {"redis_key_prefix": prefix, **idle_setting()}
    if keyed:
        overrides |= {"events_partitions": PARTITIONS, "subjects_partitions": PARTITIONS}
    settings = settings_factory(**overrides)
    load_registry(redis_url, prefix, registry)
    reader = OutputReader(settings)
    notes = []
    try:
        if keyed:
            notes.append(f"events per partition {publish_keyed(settings, events)}")
        else:
            publish_in_order(settings, events)
        reader.started = started = time.monotonic()
        worker = worker_factory(settings, name=f"{name}-1").start(timeout=90)
        others: list[WorkerProcess] = []
        at = 0
        if kill:
            at = reader.wait_stage2(mid_output)
            worker.kill9()
            notes.append(f"kill -9 at {reader.where()}")
            worker = worker_factory(settings, name=f"{name}-2").start(timeout=90)
        if second:
            twin = settings.model_copy(
                update={
                    "data_dir": settings.data_dir.with_name(f"{name}-2"),
                    "web_port": free_port(),
                }
            )
            at = reader.wait_stage2(mid_output)
            # Hold the first worker where it is until the second asks to join, so the
            # rebalance lands mid-stream however fast the first one would have finished.
            signal_group(worker, signal.SIGSTOP)
            try:
                others.append(worker_factory(twin, name=f"{name}-2").start(wait_ready=False))
                notes.append(f"first worker stopped, second started at {reader.where()}")
                others[-1].wait_for_log(JOIN_LOG, 60)
            finally:
                signal_group(worker, signal.SIGCONT)
            others[-1].wait_for_log("Worker ready", 120)
            notes.append(f"second worker ready at {reader.where()}")
        out = reader.settle(len(events), quiet_s=QUIET_S)
        out.seconds = time.monotonic() - started - QUIET_S
        out.name = name
        out.notes += notes
        if (kill or second) and at >= reader.stage2_output():
            out.notes.append("not mid-stream: every output record was written before")
        for proc in [worker, *others]:
            assert proc.alive(), f"{name}: worker died:\n{proc.log_text()[-3000:]}"
    finally:
        reader.close()
        clear_registry(redis_url, prefix)
    print(summary(out))
    return out


def test_findings_and_metrics_do_not_depend_on_delivery(
    settings_factory, worker_factory, redis_url
) -> None:
    registry, events = scenario()
    assert all(
        [e["event_time"] for e in part] == sorted(e["event_time"] for e in part)
        for part in keyed_partitions(events, PARTITIONS).values()
    )

    def run(name: str, **how: Any) -> Delivery:
        return deliver(name, settings_factory, worker_factory, redis_url, registry, events, **how)

    base = run("a-in-order", keyed=False)
    fired = {a["detector"] for a in base.creates}
    problems = (
        [f"a-in-order: did not fire: {sorted(set(ALL_IDS) - fired)}"]
        if fired != set(ALL_IDS)
        else []
    )
    problems += finding_problems(base.name, base.alerts)
    assert base.metrics, "a-in-order: no metric record arrived"
    mid = max(1, int((len(base.alerts) + len(base.metrics)) * MID))
    others = [
        run("b-keyed", keyed=True),
        run("c-keyed-kill9", keyed=True, kill=True, mid_output=mid),
        run("d-keyed-rebalance", keyed=True, second=True, mid_output=mid),
    ]
    for other in others:
        problems += [
            f"{other.name}: {n}" for n in other.notes if "still moving" in n or "not mid" in n
        ]
        problems += compare_findings(base, other)
        problems += compare_metrics(base, other)
    assert not problems, "deliveries differ:\n" + "\n".join(problems)
