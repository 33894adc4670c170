"""Writer schemas by id: the local catalogue, or a Schema Registry when configured.

Lookups of unknown ids are async and cached (including "no such id", so a flood
of records with a bogus id costs one registry call, not one per record).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from pipeline.codec import WriterSchema, local_catalogue, prepare_writer_schema
from pipeline.errors import InfraError, RejectedInput

log = logging.getLogger(__name__)


class SchemaResolver:
    """Maps Confluent schema ids to parsed writer schemas."""

    def __init__(self, registry_url: str | None = None, client: Any = None) -> None:
        self._known: dict[int, WriterSchema] = {}
        self._bad: dict[int, RejectedInput] = {}
        self._client = client
        if client is None and registry_url:
            from confluent_kafka.schema_registry import SchemaRegistryClient

            self._client = SchemaRegistryClient.new_client({"url": registry_url})
        if self._client is None:
            self._known.update(local_catalogue())

    @property
    def uses_registry(self) -> bool:
        return self._client is not None

    def get(self, schema_id: int) -> WriterSchema:
        """A known schema, or RejectedInput for ids that do not exist."""
        found = self._known.get(schema_id)
        if found is not None:
            return found
        bad = self._bad.get(schema_id)
        if bad is not None:
            raise bad
        if self._client is None:
            raise RejectedInput(
                "unknown_schema_id", f"schema id {schema_id} is not in the local catalogue"
            )
        raise KeyError(schema_id)  # resolve() was not called for it: a bug

    def missing(self, ids: Iterable[int]) -> set[int]:
        return {i for i in ids if i not in self._known and i not in self._bad}

    async def resolve(self, ids: Iterable[int]) -> None:
        """Fetch unknown ids from the registry; registry trouble raises InfraError."""
        if self._client is None:
            return
        for schema_id in self.missing(ids):
            await asyncio.to_thread(self._fetch, schema_id)

    def _fetch(self, schema_id: int) -> None:
        import json

        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            schema = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                self._bad[schema_id] = RejectedInput(
                    "unknown_schema_id", f"schema id {schema_id} is not in the registry"
                )
                return
            raise InfraError(f"schema registry error {exc.http_status_code}") from None
        except Exception as exc:
            raise InfraError(f"schema registry unreachable ({type(exc).__name__})") from None
        if schema.schema_type not in (None, "AVRO"):
            self._bad[schema_id] = RejectedInput(
                "unsupported_schema", f"schema id {schema_id} is {schema.schema_type}, not Avro"
            )
            return
        try:
            self._known[schema_id] = prepare_writer_schema(schema_id, json.loads(schema.schema_str))
        except RejectedInput as exc:
            self._bad[schema_id] = exc
        except Exception as exc:
            self._bad[schema_id] = RejectedInput(
                "unsupported_schema", f"schema id {schema_id} does not parse ({type(exc).__name__})"
            )
