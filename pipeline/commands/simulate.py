"""`govpipe simulate`: realistic agent traffic with injected violations.

Live (default): publishes at ``--rate`` events per wall second (token bucket,
batched SDK) with event times on a simulated clock that starts now and runs
``--speed`` times faster than the wall clock; stops after ``--duration`` or on
Ctrl-C / SIGTERM, then completes the tasks in flight and flushes.

``--out FILE`` writes JSON lines instead, as fast as possible, with no broker
(``--count`` events, default rate * duration). The worker needs the identity
registry of the same ``--seed``: ``--load-registry`` writes it into the Redis at
REDIS_URL (prefix GOVPIPE_REDIS_KEY_PREFIX) before the first event is sent;
``--registry-out`` writes it to a file for ``govpipe identities load``.

Injected events carry ``attributes["sim.injected"]`` (the detector id) and
``attributes["sim.case"]``; ``--dirty-rate`` adds hostile records (not JSON,
wrong types, missing fields, unknown event_type, unknown Avro schema id) for the
dead-letter path. Both are simulator metadata/behaviour, harmless to the pipeline.
"""

from __future__ import annotations

import argparse
import gc
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from types import FrameType
from typing import IO, Any

import orjson

from pipeline.records import to_epoch_ms

#: Per detector and task: 22 detectors → about 4 % of tasks carry one injected case.
DEFAULT_VIOLATION_RATE = 0.002

#: Simulated time a live run may lead its wall-clock pacing by. A fresh world has no
#: tasks in flight: its first simulated minute holds only the tasks' first events, so
#: a simulated clock tied to the wall clock sent 100-146 ev/s for the first minute of
#: a 200 ev/s run. With this lead the clock runs ahead until the world is in its
#: steady state; the run starts this much in the past (unless --start is given), so
#: event times are never later than the wall clock, only up to 2 minutes behind it.
WARMUP_MS = 120_000

_EPILOG = """\
detector ids: SP-01..SP-08, RS-01..RS-07, AZ-01, AZ-02, AT-01..AT-04, SL-01.
Rates are probabilities per task (they must add up to at most 1).
SP-03 needs 7 days of event time: the simulated clock jumps 7 days once an SP-03
case has waited 10 simulated minutes (and at the end of the run).
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="realistic agent traffic with injected violations",
        description=__doc__,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--rate",
        type=float,
        default=200.0,
        metavar="EV_PER_S",
        help="events per wall second (default 200)",
    )
    p.add_argument(
        "--duration", type=float, default=60.0, metavar="S", help="seconds to run (default 60)"
    )
    p.add_argument("--seed", type=int, default=7, help="world and behaviour seed (default 7)")
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        metavar="X",
        help="simulated clock speed vs wall clock (default 1)",
    )
    p.add_argument(
        "--start", metavar="TIME", help="simulated start time, ISO-8601 or epoch ms (default now)"
    )
    p.add_argument(
        "--violations", metavar="SPEC", help='per-detector rates, e.g. "SP-01=0.02,RS-01=0.05"'
    )
    p.add_argument(
        "--violation-rate",
        type=float,
        default=None,
        metavar="R",
        help=f"rate for every detector (default {DEFAULT_VIOLATION_RATE} unless --violations "
        "is given; 0 = clean traffic)",
    )
    p.add_argument(
        "--dirty-rate",
        type=float,
        default=0.0,
        metavar="R",
        help="share of extra hostile records for the dead-letter path (default 0)",
    )
    p.add_argument("--out", metavar="FILE", help="write JSON lines here ('-' = stdout)")
    p.add_argument("--count", type=int, metavar="N", help="--out: events to write")
    p.add_argument(
        "--no-finish",
        action="store_true",
        help="stop abruptly: do not complete the tasks still in flight",
    )
    p.add_argument(
        "--load-registry",
        action="store_true",
        help="write this seed's identity registry into Redis (REDIS_URL, "
        "GOVPIPE_REDIS_KEY_PREFIX) first: without it the worker knows none of the identities",
    )
    p.add_argument("--registry-out", metavar="FILE", help="write the identity registry (YAML)")
    p.add_argument("--format", choices=["avro", "json"], default="avro", dest="fmt")
    p.add_argument("--batch-size", type=int, default=300, help="events per record (live)")
    p.add_argument("--batch-ms", type=float, default=20.0, help="max batch age in ms (live)")
    p.add_argument("--topic", help="override the input topic (live)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pipeline.simulate import Simulator, parse_violations, write_registry

    err = sys.stderr
    if args.rate <= 0 or args.speed <= 0 or args.duration < 0:
        print("govpipe simulate: --rate and --speed must be > 0, --duration ≥ 0", file=err)
        return 2
    if not 0.0 <= args.dirty_rate <= 1.0:
        print("govpipe simulate: --dirty-rate must be within 0..1", file=err)
        return 2
    try:
        rate_all = args.violation_rate
        if rate_all is None:
            rate_all = 0.0 if args.violations else DEFAULT_VIOLATION_RATE
        violations = parse_violations(args.violations, rate_all)
        start_ms = (
            int(to_epoch_ms(args.start))
            if args.start
            else int(time.time() * 1000) - (0 if args.out else WARMUP_MS)
        )
    except (ValueError, TypeError) as exc:
        print(f"govpipe simulate: {exc}", file=err)
        return 2

    sim = Simulator(
        args.seed, start_ms=start_ms, rate=args.rate, speed=args.speed, violations=violations
    )
    if args.registry_out:
        write_registry(sim.world, args.registry_out)
        print(
            f"wrote the identity registry ({len(sim.registry())} identities) to "
            f"{args.registry_out}",
            file=err,
        )
    if args.load_registry:
        print(load_registry(sim.registry(), args.seed), file=err)
    # Tens of thousands of tasks in flight make the default GC thresholds cost more than
    # the generation itself; the simulator makes no reference cycles.
    thresholds = gc.get_threshold()
    gc.set_threshold(200_000, 50, 100)
    try:
        return _to_file(args, sim) if args.out else _live(args, sim)
    finally:
        gc.set_threshold(*thresholds)


def load_registry(registry: list[dict[str, Any]], seed: int) -> str:
    """Write the simulator's registry into the configured Redis; the line saying so."""
    import redis

    from pipeline.enrichment.keys import KeySpace
    from pipeline.enrichment.registry import parse_registry, write_identities
    from pipeline.errors import GovpipeError
    from pipeline.settings import get_settings

    settings = get_settings()
    entries, problems = parse_registry({"identities": registry})
    if problems:  # the simulator's own world: a bug, not a user error
        raise GovpipeError(f"simulator registry invalid: {problems[0]}")
    keys = KeySpace(settings.redis_key_prefix)
    try:
        client = redis.Redis.from_url(
            settings.redis_url.get_secret_value(), socket_timeout=5, socket_connect_timeout=3
        )
        try:
            written, _ = write_identities(client, keys, entries)
        finally:
            client.close()
    except (redis.RedisError, OSError) as exc:
        raise GovpipeError(
            f"cannot write the identity registry to Redis at {settings.redis_url_redacted} "
            f"({type(exc).__name__}): start one with `govpipe services` and export the lines "
            "it prints, or set REDIS_URL"
        ) from None
    return (
        f"simulate: loaded the identity registry of seed {seed} ({written} identities) into "
        f"Redis at {settings.redis_url_redacted}, key prefix {keys.prefix}"
    )


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cases(injected: Counter[str]) -> str:
    total = sum(injected.values())
    if not total:
        return "0 injected cases"
    parts = ", ".join(f"{k} {v}" for k, v in sorted(injected.items()))
    return f"{total} injected cases ({parts})"


def _to_file(args: argparse.Namespace, sim: Any) -> int:
    from pipeline.simulate import DirtyRecords

    count = args.count if args.count is not None else int(args.rate * args.duration)
    dirt = DirtyRecords(args.seed, binary=False) if args.dirty_rate else None
    pick = random.Random(f"dirty-pick:{args.seed}")
    dumps = orjson.dumps
    started = time.monotonic()
    written = dirty = 0
    out: IO[bytes] = sys.stdout.buffer if args.out == "-" else open(args.out, "wb")  # noqa: SIM115
    try:

        def chunks() -> Iterator[list[dict[str, Any]]]:
            left = count
            while left > 0:
                n = min(left, 10_000)
                left -= n
                yield sim.events(n)
            if not args.no_finish:
                tail = list(sim.finish())
                for i in range(0, len(tail), 10_000):
                    yield tail[i : i + 10_000]

        for chunk in chunks():
            lines = [dumps(e) for e in chunk]
            if dirt is not None:
                for i in range(len(lines) - 1, -1, -1):
                    if pick.random() < args.dirty_rate:
                        lines.insert(i + 1, dirt.make(chunk[i]))
                        dirty += 1
            out.write(b"\n".join(lines) + b"\n")
            written += len(chunk)
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    elapsed = max(time.monotonic() - started, 1e-9)
    extra = f", {dirty} dirty records" if dirt is not None else ""
    print(
        f"wrote {written} events to {args.out} in {elapsed:.1f}s ({written / elapsed:,.0f} ev/s); "
        f"{_cases(sim.stats.injected)}{extra}; event time {_iso(sim.start_ms)} .. "
        f"{_iso(sim.clock_ms)}",
        file=sys.stderr,
    )
    return 0


class _Stop:
    """Ctrl-C / SIGTERM ask for a clean stop (finish tasks, flush); a second Ctrl-C aborts."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Stop:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _live(args: argparse.Namespace, sim: Any) -> int:
    from pipeline.commands._kafka import client_config, require_broker
    from pipeline.sdk import Publisher
    from pipeline.settings import get_settings
    from pipeline.simulate import DirtyRecords

    settings = get_settings()
    require_broker(settings)
    if not args.load_registry and not args.registry_out:
        print(
            f"simulate: the worker needs the identity registry of seed {args.seed}; add "
            "--load-registry (or --registry-out FILE, then `govpipe identities load FILE`)",
            file=sys.stderr,
        )
    dirt = DirtyRecords(args.seed, binary=True) if args.dirty_rate else None
    pick = random.Random(f"dirty-pick:{args.seed}")
    err = sys.stderr
    rate = args.rate
    capacity = max(1.0, rate)  # at most one second of burst after a stall
    stream = iter(sim)
    sent = dirty = 0
    with (
        _Stop() as stop,
        Publisher(
            settings,
            topic=args.topic,
            fmt=args.fmt,
            batch_max_events=args.batch_size,
            batch_max_ms=args.batch_ms,
            config=client_config(),
        ) as pub,
    ):
        started = last = time.monotonic()
        deadline = started + args.duration
        tokens = 0.0
        last_report = started
        while not stop.requested:
            now = time.monotonic()
            if now >= deadline:
                break
            tokens = min(capacity, tokens + (now - last) * rate)
            last = now
            # the rate is a token bucket; the simulated clock may lead the wall clock
            # (times speed) by WARMUP_MS plus one simulated second: enough for a fresh
            # world to reach its steady state (see WARMUP_MS), and since the run starts
            # WARMUP_MS in the past, event times never pass the wall clock
            ahead = (
                sim.elapsed_ms
                - WARMUP_MS
                - (now - started) * 1000.0 * args.speed
                - 1000.0 * args.speed
            )
            if tokens < 1.0 or ahead > 0:
                pub.poll(0)
                time.sleep(0.005)
                continue
            for _ in range(min(int(tokens), 200)):
                event = next(stream)
                pub.publish(event)
                sent += 1
                tokens -= 1.0
                if dirt is not None and pick.random() < args.dirty_rate:
                    pub.publish_raw(dirt.make(event))
                    dirty += 1
            if now - last_report >= 1.0:
                last_report = now
                print(
                    f"simulate: {sent} events sent ({sent / (now - started):,.0f} ev/s), "
                    f"{_cases(sim.stats.injected)}, {dirty} dirty, sim clock "
                    f"{_iso(sim.clock_ms)}",
                    file=err,
                )
        why = "stop requested" if stop.requested else "duration reached"
        tail = 0
        if not args.no_finish:
            for event in sim.finish():
                pub.publish(event)
                tail += 1
        pub.flush()
        elapsed = max(time.monotonic() - started, 1e-9)
    print(
        f"simulate: {why}; sent {sent + tail} events ({tail} completing tasks in flight) in "
        f"{elapsed:.1f}s to {args.topic or settings.topic_events}; {_cases(sim.stats.injected)}; "
        f"{dirty} dirty records; event time {_iso(sim.start_ms)} .. {_iso(sim.clock_ms)}",
        file=err,
    )
    return 0
