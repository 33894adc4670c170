"""The ``govpipe`` command. Each subcommand lives in ``pipeline/commands/<name>.py``.

A command module exposes ``register(subparsers)``, which adds its parser and sets
``handler`` (a callable taking the parsed namespace and returning an exit code).
Discovery keeps this file free of per-command edits.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from pipeline import __version__
from pipeline.errors import ConfigError, GovpipeError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="govpipe",
        description="Governance evidence for AI agents and non-human identities.",
    )
    parser.add_argument("--version", action="version", version=f"govpipe {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    import pipeline.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"pipeline.commands.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except ConfigError as exc:
        print(f"govpipe: {exc}", file=sys.stderr)
        return 2
    except GovpipeError as exc:
        print(f"govpipe: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
