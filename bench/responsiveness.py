"""Is the worker's event loop free while it works through a backlog? (issue 17; prints
figures, not a test: tests/integration/test_loop_responsive.py is the test).

  python bench/responsiveness.py [--events 200000] [--batch 300] [--term-at 0.5]

The whole backlog (batched Avro records, as bench/throughput.py makes them) is on the
input topic before a whole worker (stage 1 + 2) starts. While it works, ``/metrics``
is fetched every 0.2 s and each answer timed (a scrape that waits behind a busy
loop is slow, not lost: the timeout is 60 s). Once stage 1 has read ``--term-at`` of
the events the worker gets SIGTERM and the time to its exit is measured.
``--term-at 1`` instead waits until stage 2 has been quiet for 15 s, then stops it.

``--term-after S`` sends SIGTERM after S seconds of work instead.

``--profile FILE`` attaches ``py-spy record`` to the worker (collapsed stacks in FILE,
for ``--term-after`` seconds if given; bench/profile_summary.py reads them).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from throughput import clear_bench_keys, load_registry, settings_for, start_worker

from pipeline.admin import create_topics
from pipeline.codec import AvroEncoder
from pipeline.embedded import EmbeddedBroker
from pipeline.simulate import Simulator, parse_violations
from tests.support.kafka import produce


def timed_scrape(port: int, timeout: float = 60.0) -> tuple[float, dict[str, float]] | None:
    """(seconds the answer took, samples), or None when nothing listens yet."""
    start = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
            text = r.read().decode()
    except OSError:
        return None
    took = time.monotonic() - start
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return took, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--term-at", type=float, default=0.5)
    parser.add_argument("--bootstrap", default=None, help="default: start an embedded Tansu")
    parser.add_argument(
        "--term-after", type=float, default=None, help="SIGTERM after this many seconds of work"
    )
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--profile-rate", type=int, default=100)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="govpipe-resp-"))
    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        broker = EmbeddedBroker().start()
        bootstrap = broker.bootstrap
    spy = None
    try:
        enc = AvroEncoder()
        sim = Simulator(
            seed=args.seed,
            rate=2000,
            violations=parse_violations("SP-01=0.01,RS-01=0.01,RS-02=0.005"),
        )
        events = sim.events(args.events)
        load_registry(sim.registry())
        records = [enc.batch(events[i : i + args.batch]) for i in range(0, len(events), args.batch)]
        settings = settings_for(bootstrap, f"resp-{uuid.uuid4().hex[:6]}", data, [1, 2])
        create_topics(settings)
        produce(bootstrap, settings.topic_events, records)
        log = data / "worker.log"
        started = time.monotonic()
        proc = start_worker(settings, log)
        worst, slow, answered, first = 0.0, 0, 0, None
        history: list[tuple[float, float]] = []
        in1 = 0.0
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited; see {log}")
            got = timed_scrape(settings.web_port)
            if got is None:
                continue
            took, samples = got
            now = time.monotonic()
            in1 = samples.get('govpipe_events_in_total{stage="1"}', 0)
            items = samples.get('govpipe_events_in_total{stage="2"}', 0)
            if first is None:
                if in1 == 0:
                    continue  # not yet assigned: the loop is idle, nothing to show
                first = now
                if args.profile:
                    spy = subprocess.Popen(
                        [
                            str(Path(sys.executable).parent / "py-spy"),
                            "record",
                            "--pid",
                            str(proc.pid),
                            "--rate",
                            str(args.profile_rate),
                            "--format",
                            "raw",
                            "--output",
                            str(args.profile),
                            # sampling without pausing the worker (a paused worker's shutdown
                            # stalled in faust's gc.collect() between acknowledgement waits)
                            "--nonblocking",
                            *(["--duration", str(int(args.term_after))] if args.term_after else []),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
            answered += 1
            worst = max(worst, took)
            slow += took > 1.0
            history.append((now, items))
            if args.term_at < 1 and in1 >= args.term_at * args.events:
                break
            if args.term_after is not None and now - first >= args.term_after:
                break
            # quiet for longer than any unit of the revision before took (7 s)
            quiet = [v for t, v in history if t >= now - 15.0]
            if in1 >= args.events and history[0][0] <= now - 15.0 and min(quiet) == max(quiet):
                break
        else:
            raise RuntimeError(f"no end within 900 s; see {log}")
        items = history[-1][1]
        term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
            exit_s: float | None = time.monotonic() - term
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            exit_s = None
        assert first is not None
        print(
            f"backlog {args.events:,} events in {len(records):,} records; worker up "
            f"{first - started:.1f} s, watched {term - first:.1f} s until stage 1 had read "
            f"{in1:,.0f} events and stage 2 {items:,.0f} items"
        )
        print(
            f"/metrics every 0.2 s: {answered} answers, worst {worst * 1000:,.0f} ms, "
            f"{slow} over 1 s"
        )
        print(
            "SIGTERM -> exit: "
            + (
                f"{exit_s:.1f} s (exit code {proc.returncode})"
                if exit_s is not None
                else "did not exit within 120 s (killed)"
            )
        )
        overlapping = log.read_text("utf-8", "replace").count("is overlapping")
        keepalive = log.read_text("utf-8", "replace").count("keepalive is not responding")
        print(f"worker log: {overlapping} 'Timer ... overlapping', {keepalive} 'keepalive'")
    finally:
        if spy is not None:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.send_signal(signal.SIGINT)
                spy.wait(10)
        clear_bench_keys()
        if broker is not None:
            broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
