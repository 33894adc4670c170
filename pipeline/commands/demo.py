"""`govpipe demo`: broker, Redis, worker and simulator on this machine, with a live view."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("demo", help="run everything locally with simulated traffic")
    parser.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    parser.add_argument("--rate", type=float, default=300.0, help="simulated events/s")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--speed", type=float, default=8.0, help="simulated seconds per wall second"
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from pipeline.demo import run_demo
    from pipeline.settings import get_settings

    return run_demo(get_settings(), args.duration, args.rate, args.seed, args.speed)
