"""faust codecs for table state: orjson values and UTF-8 string keys.

faust's own json codec is several times slower than orjson, and table state is
serialised on every changelog write.
"""

from __future__ import annotations

from typing import Any

import orjson
from faust.serializers import codecs


class OrjsonCodec(codecs.Codec):  # type: ignore[misc]
    def _dumps(self, obj: Any) -> bytes:
        return orjson.dumps(obj)

    def _loads(self, s: bytes) -> Any:
        return orjson.loads(s)


class Utf8Codec(codecs.Codec):  # type: ignore[misc]
    def _dumps(self, obj: Any) -> bytes:
        return str(obj).encode("utf-8", "surrogatepass")

    def _loads(self, s: bytes) -> Any:
        return s.decode("utf-8", "surrogatepass")


def register() -> None:
    codecs.register("govpipe-orjson", OrjsonCodec())
    codecs.register("govpipe-utf8", Utf8Codec())
