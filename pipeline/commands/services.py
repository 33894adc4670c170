"""`govpipe services`: the embedded broker and Redis in the foreground."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import threading

from pipeline.settings import get_settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "services", help="run the embedded broker (Tansu) and Redis in the foreground"
    )
    parser.add_argument("--broker-port", type=int, default=None, help="default: a free port")
    parser.add_argument(
        "--existing-redis",
        action="store_true",
        help="use the Redis at REDIS_URL (its database, GOVPIPE_REDIS_KEY_PREFIX) instead of "
        "starting an embedded Valkey; govpipe's commands will then write registry keys there",
    )
    parser.add_argument(
        "--no-topics", action="store_true", help="do not create govpipe's topics on start"
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from pipeline.admin import create_topics
    from pipeline.embedded import EmbeddedServices

    settings = get_settings()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    # the worker's local table data lives as long as the broker that holds its changelogs
    data_dir = tempfile.mkdtemp(prefix="govpipe-services-")
    try:
        with EmbeddedServices(
            settings.redis_url.get_secret_value(),
            args.broker_port,
            use_existing_redis=args.existing_redis,
            key_prefix=settings.redis_key_prefix,
        ) as services:
            if not args.no_topics:
                local = settings.model_copy(
                    update={"kafka_bootstrap_servers": services.broker.bootstrap}
                )
                for r in create_topics(local):
                    print(f"# topic {r.status}: {r.name}", file=sys.stderr)
            exports = [*services.exports(), f"export FAUST_DATADIR={data_dir}"]
            print("\n".join(exports), flush=True)
            print(services.describe(), file=sys.stderr, flush=True)
            print("# Ctrl-C stops both", file=sys.stderr, flush=True)
            while not stop.wait(0.5):
                if not services.broker.alive():
                    print("govpipe: the embedded broker exited", file=sys.stderr)
                    return 1
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0
