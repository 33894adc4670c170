"""Identity and credential state in Redis: batch enrichment and batch updates.

Inside the worker, per batch: ``await apply(batch)`` then ``await enrich(batch)``
(so an action in the same batch as its ``credential.issued`` sees it). Both
cost at most one Redis round trip per batch, and both are idempotent, so the
caller retries the whole batch after an :class:`InfraError` (see
:func:`pipeline.retry.retry_forever`).

Enrichment reflects the state **at processing time**, not at event time: a
replayed old action may see a ``revoked_at`` that is later than the action.
Detectors compare the times (``event_time`` vs ``revoked_at``/``expires_at``),
never the mere presence of a field.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Self

import orjson
import redis.asyncio as aioredis
from pydantic import SecretStr
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from pipeline.enrichment.cache import CacheStats, TTLCache
from pipeline.enrichment.keys import DEFAULT_PREFIX, IDENTITY_FIELDS, KeySpace
from pipeline.enrichment.scripts import APPLY_LUA, READ_LUA
from pipeline.enrichment.updates import plan_credential_ops
from pipeline.enrichment.views import (
    UNKNOWN_CREDENTIAL,
    UNKNOWN_IDENTITY,
    GarbageReport,
    credential_view,
    identity_view,
)
from pipeline.errors import ConfigError, InfraError
from pipeline.retry import retry_forever
from pipeline.settings import Settings, redact_url

log = logging.getLogger(__name__)

View = dict[str, Any]


def decode_reply(raw: bytes | str) -> list[Any]:
    """Parse the read script's JSON; a value with invalid UTF-8 (binary garbage
    written by someone else) must not fail the batch, so fall back to a lossy decode."""
    try:
        result = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        result = json.loads(text)
    if not isinstance(result, list):
        # cjson encodes an empty Lua table as {}; callers never send zero keys.
        return []
    return result


_OWNER_AT = IDENTITY_FIELDS.index("owner")


def _dump_ops(ops: list[list[int | str]]) -> bytes:
    """JSON for the apply script; lone surrogates (possible in hostile ids) become "?"."""
    try:
        return orjson.dumps(ops)
    except orjson.JSONEncodeError:
        return json.dumps(ops, ensure_ascii=False).encode("utf-8", "replace")


class RedisEnricher:
    """Reads the registry (identities, credentials) and keeps credential state current.

    ``redis_url``: redis://, rediss:// (TLS) or unix://, AUTH in the URL; only
    its redacted form is ever logged. Socket timeouts (``socket_timeout_s``)
    make a dead Redis fail fast; redis-py retries a broken pooled connection
    once, immediately, and everything else surfaces as :class:`InfraError`.
    """

    def __init__(
        self,
        redis_url: str | SecretStr,
        *,
        key_prefix: str = DEFAULT_PREFIX,
        cache_ttl_s: float = 2.0,
        cache_max_entries: int = 50_000,
        socket_timeout_s: float = 2.0,
        client_name: str | None = "govpipe-enricher",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        url = redis_url.get_secret_value() if isinstance(redis_url, SecretStr) else redis_url
        self.url_redacted = redact_url(url)
        self.keys = KeySpace(key_prefix)
        try:
            self._client: aioredis.Redis = aioredis.Redis.from_url(
                url,
                socket_timeout=socket_timeout_s,
                socket_connect_timeout=socket_timeout_s,
                retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
                decode_responses=False,
                # ids come from hostile input: a lone surrogate must not crash the encoder
                encoding_errors="replace",
                client_name=client_name,
            )
        except ValueError as exc:
            # the parser's message may quote URL parts: name the class only
            raise ConfigError(f"bad Redis URL {self.url_redacted} ({type(exc).__name__})") from None
        self._read = self._client.register_script(READ_LUA)
        self._apply = self._client.register_script(APPLY_LUA)
        self._clock = clock
        self.identity_cache: TTLCache[str, View] = TTLCache(cache_max_entries, cache_ttl_s, clock)
        self.credential_cache: TTLCache[str, View] = TTLCache(cache_max_entries, cache_ttl_s, clock)
        self.garbage = GarbageReport()
        self.round_trips = 0
        self.keys_fetched = 0
        #: Failed Redis calls (each retried by the caller): ``govpipe_redis_errors_total``.
        self.errors = 0

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Self:
        """The enricher the worker uses: URL and key prefix from Settings."""
        overrides.setdefault("key_prefix", settings.redis_key_prefix)
        return cls(settings.redis_url, **overrides)

    # -- reads ---------------------------------------------------------------

    async def enrich(self, events: list[dict[str, Any]]) -> None:
        """Add ``identity`` and ``credential`` to every event, in place.

        Each is a shared read-only dict (one object per id per batch), or None
        when the event has no ``identity_id`` / ``credential_id``; an id the
        registry lacks gets ``known: False`` with the other fields None. One
        Redis round trip for the cache misses of the whole batch, none when warm.
        An identity's ``owner_status`` (the ``status`` of its owner's own identity
        hash) is read in that same round trip and cached with the identity; a
        credential's ``task_id`` comes from the issuance that carried one.
        """
        if not events:
            return
        now = self._clock()
        identity_ids: set[Any] = {e.get("identity_id") for e in events}
        credential_ids: set[Any] = {e.get("credential_id") for e in events}
        identity_ids.discard(None)
        credential_ids.discard(None)
        identities, identity_missing = self.identity_cache.lookup(identity_ids, now)
        credentials, credential_missing = self.credential_cache.lookup(credential_ids, now)
        if identity_missing or credential_missing:
            await self._fetch(identity_missing, credential_missing, identities, credentials, now)
        identity_of: Callable[[Any], View | None] = identities.get
        credential_of: Callable[[Any], View | None] = credentials.get
        for event in events:
            event["identity"] = identity_of(event.get("identity_id"))
            event["credential"] = credential_of(event.get("credential_id"))

    async def _fetch(
        self,
        identity_ids: list[str],
        credential_ids: list[str],
        identities: dict[str, View],
        credentials: dict[str, View],
        now: float,
    ) -> None:
        keys = [self.keys.identity(i) for i in identity_ids]
        keys += [self.keys.credential(c) for c in credential_ids]
        try:
            raw = await self._read(keys=keys, args=[len(identity_ids), self.keys.identity_prefix])
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._infra_error(exc) from exc
        self.round_trips += 1
        self.keys_fetched += len(keys)
        values = decode_reply(raw)
        if len(values) != len(keys) + 1:
            raise InfraError(
                f"redis at {self.url_redacted} answered {len(values)} entries for {len(keys)} keys"
            )
        owners = values.pop()  # {owner: the status of its own identity hash, or false}
        owner_status: dict[str, Any] = owners if isinstance(owners, dict) else {}
        offset = len(identity_ids)
        fetched_identities = []
        for identity_id, key, entry in zip(
            identity_ids, keys[:offset], values[:offset], strict=True
        ):
            if isinstance(entry, list):
                owner = entry[_OWNER_AT]
                view = identity_view(
                    key, entry, self.garbage, owner_status.get(owner) if owner else None
                )
            else:
                view = self._view(key, entry, identity_view, UNKNOWN_IDENTITY)
            identities[identity_id] = view
            fetched_identities.append((identity_id, view))
        fetched_credentials = []
        for credential_id, key, entry in zip(
            credential_ids, keys[offset:], values[offset:], strict=True
        ):
            view = self._view(key, entry, credential_view, UNKNOWN_CREDENTIAL)
            credentials[credential_id] = view
            fetched_credentials.append((credential_id, view))
        self.identity_cache.put_many(fetched_identities, now)
        self.credential_cache.put_many(fetched_credentials, now)

    def _view(
        self,
        key: str,
        entry: Any,
        build: Callable[[str, Any, GarbageReport], View],
        unknown: View,
    ) -> View:
        if isinstance(entry, list):
            return build(key, entry, self.garbage)
        if entry is not False:
            self.garbage(key, None, "a hash")
        return unknown

    # -- writes --------------------------------------------------------------

    async def apply(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Keep ``{prefix}credential:{id}`` current from this batch (one script call).

        ``credential.issued/rotated/revoked`` set their fields; actions with a
        ``credential_id`` advance ``last_used_at`` of an existing hash. Monotonic
        and atomic in Redis, so replays, reordering and concurrent workers are safe.
        The script returns the merged state of every credential an event changed,
        which replaces this worker's cached copy (no second round trip in enrich).
        """
        ops = plan_credential_ops(events)
        if not ops:
            return
        index: dict[str, int] = {}
        encoded = []
        for op in ops:
            encoded.append(op.encode(index.setdefault(op.credential_id, len(index) + 1)))
        credential_ids = list(index)
        keys = [self.keys.credential(c) for c in credential_ids]
        try:
            raw = await self._apply(keys=keys, args=[_dump_ops(encoded)])
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._infra_error(exc) from exc
        self.round_trips += 1
        reply = decode_reply(raw)
        skipped, states = [*reply, [], []][:2]
        for position in skipped if isinstance(skipped, list) else ():
            self.garbage(keys[int(position) - 1], None, "a hash")
        # Credential events change the terms: cache the merged state Redis returned.
        if isinstance(states, list) and states:
            now = self._clock()
            refreshed = []
            for position, values in zip(states[::2], states[1::2], strict=True):
                i = int(position) - 1
                view = self._view(keys[i], values, credential_view, UNKNOWN_CREDENTIAL)
                refreshed.append((credential_ids[i], view))
            self.credential_cache.put_many(refreshed, now)
        # Actions only advance last_used_at: patch cached copies, keeping their expiry.
        cache = self.credential_cache
        for op in ops:
            if op.code != "U":
                continue
            cached = cache.get(op.credential_id)
            if cached is not None and cached["known"]:
                last = cached["last_used_at"]
                if last is None or op.time > last:
                    cache.replace(op.credential_id, {**cached, "last_used_at": op.time})

    # -- availability --------------------------------------------------------

    async def read_registry_marker(self) -> dict[str, str] | None:
        """The registry marker hash (``{prefix}registry``) as text, None when absent."""
        try:
            raw = await self._client.hgetall(self.keys.registry)
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._infra_error(exc) from exc
        if not raw:
            return None
        return {_text(k): _text(v) for k, v in raw.items()}

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._infra_error(exc) from exc

    async def wait_until_available(self, stop: asyncio.Event | None = None) -> None:
        """Block (with capped backoff, one WARNING per outage) until Redis answers."""
        await retry_forever(self.ping, log=log, what=f"redis at {self.url_redacted}", stop=stop)

    def _infra_error(self, exc: BaseException) -> InfraError:
        self.errors += 1
        detail = type(exc).__name__
        if isinstance(exc, ResponseError):
            # Server replies (OOM, MISCONF, READONLY, script errors) carry no secrets
            # and say what is wrong; keep their first line, bounded.
            first = str(exc).splitlines()[0][:160] if str(exc) else ""
            detail = f"{detail}: {first}" if first else detail
        return InfraError(f"redis unavailable at {self.url_redacted} ({detail})")

    # -- housekeeping --------------------------------------------------------

    def cache_stats(self) -> CacheStats:
        """Hits and misses per distinct id looked up, identities and credentials together."""
        return self.identity_cache.stats() + self.credential_cache.stats()

    def stats(self) -> dict[str, Any]:
        cache = self.cache_stats()
        return {
            "cache_hits": cache.hits,
            "cache_misses": cache.misses,
            "cache_hit_ratio": round(cache.hit_ratio, 4),
            "cache_size": cache.size,
            "cache_evictions": cache.evictions,
            "round_trips": self.round_trips,
            "keys_fetched": self.keys_fetched,
            "errors": self.errors,
            "garbage_fields": self.garbage.count,
        }

    def clear_cache(self) -> None:
        self.identity_cache.clear()
        self.credential_cache.clear()

    async def close(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
