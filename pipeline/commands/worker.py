"""`govpipe worker`: the stream processor. Run N of them to scale out."""

from __future__ import annotations

import argparse
import logging
import sys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("worker", help="run the stream processor (run N to scale out)")
    parser.add_argument("--web-port", type=int, default=None, help="faust web/metrics port")
    parser.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from pipeline.settings import get_settings

    settings = get_settings()
    if args.web_port is not None:
        settings = settings.model_copy(update={"web_port": args.web_port})
    if not args.no_uvloop:
        import mode.loop  # uvloop must be chosen before faust is imported (docs/internals.md)

        mode.loop.use("uvloop")
    from pipeline.worker import run_worker

    logging.basicConfig(stream=sys.stderr)
    return run_worker(settings)
