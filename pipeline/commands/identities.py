"""``govpipe identities load FILE`` and ``govpipe identities show ID``.

Load validates the whole registry file before writing anything (see
``pipeline/enrichment/registry.py``); show prints what the enricher will see,
raw hash and parsed view side by side, to debug an AT-01 or SP-06 finding. The
parsed view's times are ISO-8601 UTC (``--epoch-ms`` keeps the numbers); the raw
hash is shown exactly as stored.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson
import redis
from redis.exceptions import RedisError, ResponseError

from pipeline.enrichment.keys import CREDENTIAL_FIELDS, IDENTITY_FIELDS, KeySpace
from pipeline.enrichment.registry import (
    credentials_of,
    parse_registry,
    read_hash,
    read_registry_file,
    write_identities,
)
from pipeline.enrichment.views import GarbageReport, credential_view, identity_view
from pipeline.errors import ConfigError, InfraError
from pipeline.settings import Settings, get_settings
from pipeline.tailview import clean, fact_value


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "identities",
        help="load or inspect the identity registry in Redis",
        description="Identity registry (docs/contracts/state.md) in Redis at REDIS_URL.",
    )
    actions = parser.add_subparsers(dest="identities_action", metavar="ACTION", required=True)

    load = actions.add_parser("load", help="validate a YAML/JSON registry file and write it")
    load.add_argument("file", type=Path, help="identities.yaml or .json")
    load.add_argument(
        "--skip-invalid",
        action="store_true",
        help="write the valid entries even if some are bad (the bad ones are still reported)",
    )
    load.add_argument(
        "--replace", action="store_true", help="also delete identities absent from the file"
    )
    load.add_argument("--dry-run", action="store_true", help="validate only; write nothing")
    _prefix_option(load)
    load.set_defaults(handler=_load)

    show = actions.add_parser("show", help="print an identity (and credentials) as govpipe sees it")
    show.add_argument("identity_id", nargs="?", help="the identity to show")
    show.add_argument("--credential", metavar="ID", help="show this credential hash")
    show.add_argument(
        "--credentials",
        action="store_true",
        help="also list the identity's credentials (scans all credential keys: slow)",
    )
    show.add_argument(
        "--epoch-ms",
        action="store_true",
        help="show the parsed view's times as epoch milliseconds, not ISO-8601 UTC",
    )
    _prefix_option(show)
    show.set_defaults(handler=_show)


def _prefix_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key-prefix", help="registry key prefix (default: GOVPIPE_REDIS_KEY_PREFIX or 'nhi:')"
    )


def _client(settings: Settings) -> redis.Redis:
    try:
        return redis.Redis.from_url(
            settings.redis_url.get_secret_value(), socket_timeout=5, socket_connect_timeout=5
        )
    except ValueError as exc:
        raise ConfigError(f"bad REDIS_URL {settings.redis_url_redacted}: {exc}") from None


def _keys(args: argparse.Namespace, settings: Settings) -> KeySpace:
    try:
        return KeySpace(args.key_prefix or settings.redis_key_prefix)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _load(args: argparse.Namespace) -> int:
    settings = get_settings()
    keys = _keys(args, settings)
    name = str(args.file)
    entries, problems = parse_registry(read_registry_file(args.file))
    for problem in problems:
        print(f"{name}: {problem}", file=sys.stderr)
    if problems and (not args.skip_invalid or problems[0].entry_index is None):
        print(
            f"govpipe: {len(problems)} bad entr{'y' if len(problems) == 1 else 'ies'} in "
            f"{name}; nothing written (use --skip-invalid to load the rest)",
            file=sys.stderr,
        )
        return 1
    if args.dry_run:
        print(f"{name}: {len(entries)} identities valid, {len(problems)} invalid; not written")
        return 0
    client = _client(settings)
    try:
        written, deleted = write_identities(client, keys, entries, replace=args.replace)
    except RedisError as exc:
        raise InfraError(
            f"redis unavailable at {settings.redis_url_redacted} ({type(exc).__name__})"
        ) from None
    finally:
        client.close()
    print(
        f"loaded {written} identities into {settings.redis_url_redacted} "
        f"(prefix {keys.prefix!r})"
        + (f", deleted {deleted} absent from the file" if args.replace else "")
        + (f", skipped {len(problems)} invalid" if problems else "")
    )
    return 0


def _entry(
    client: redis.Redis, key: str, fields: Any, view: Any, report: GarbageReport, iso: bool
) -> dict[str, Any]:
    """The raw hash beside what the enricher makes of it (None when absent)."""
    raw = read_hash(client, key)
    enriched = view(key, [raw.get(f) for f in fields], report) if raw is not None else None
    if iso and isinstance(enriched, dict):
        enriched = {k: fact_value(k, v) for k, v in enriched.items()}
    return {"key": key, "fields": raw, "enrichment": enriched}


def _show(args: argparse.Namespace) -> int:
    if not args.identity_id and not args.credential:
        raise ConfigError("identities show needs an IDENTITY_ID or --credential ID")
    settings = get_settings()
    keys = _keys(args, settings)
    client = _client(settings)
    report = GarbageReport()
    out: dict[str, Any] = {}
    missing: list[str] = []
    iso = not args.epoch_ms
    try:
        if args.identity_id:
            identity = _entry(
                client, keys.identity(args.identity_id), IDENTITY_FIELDS, identity_view, report, iso
            )
            if identity["fields"] is None:
                missing.append(f"identity {clean(args.identity_id, 200)}")
            else:
                out["identity"] = identity
                if args.credentials:
                    out["credential_ids"] = credentials_of(client, keys, args.identity_id)
        if args.credential:
            credential = _entry(
                client,
                keys.credential(args.credential),
                CREDENTIAL_FIELDS,
                credential_view,
                report,
                iso,
            )
            if credential["fields"] is None:
                missing.append(f"credential {clean(args.credential, 200)}")
            else:
                out["credential"] = credential
    except ResponseError as exc:
        # e.g. WRONGTYPE: someone stored a non-hash under a registry key.
        raise ConfigError(f"cannot read the registry key: {str(exc)[:160]}") from None
    except RedisError as exc:
        raise InfraError(
            f"redis unavailable at {settings.redis_url_redacted} ({type(exc).__name__})"
        ) from None
    finally:
        client.close()
    if out:
        sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
    for what in missing:
        print(
            f"govpipe: no {what} in the registry (prefix {keys.prefix}, Redis at "
            f"{settings.redis_url_redacted})",
            file=sys.stderr,
        )
    return 1 if missing else 0
