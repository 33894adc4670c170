"""`govpipe topics create|list`."""

from __future__ import annotations

import argparse

from pipeline.settings import get_settings
from pipeline.topics import topic_specs


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("topics", help="create or list govpipe's topics")
    sub = parser.add_subparsers(dest="topics_command", required=True)
    create = sub.add_parser("create", help="create every topic (idempotent)")
    create.set_defaults(handler=_create)
    listing = sub.add_parser("list", help="show the topic registry")
    listing.set_defaults(handler=_list)


def _create(args: argparse.Namespace) -> int:
    from pipeline.admin import create_topics
    from pipeline.commands._kafka import require_broker

    settings = get_settings()
    require_broker(settings)
    results = create_topics(settings)
    for r in results:
        print(f"{r.status:8} {r.name}{'  ' + r.detail if r.detail else ''}")
    return 1 if any(r.status == "failed" for r in results) else 0


def _list(args: argparse.Namespace) -> int:
    for spec in topic_specs(get_settings()):
        print(f"{spec.role:9} {spec.name:28} partitions={spec.partitions} {spec.doc}")
    return 0
