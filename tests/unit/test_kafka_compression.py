"""GOVPIPE_KAFKA_COMPRESSION reaches the worker's producer, and its codec is installed.

The broker keeps record batches as they were produced (the embedded one in memory):
the stage-2 changelog, JSON states rewritten every unit, is most of what it holds, so
the worker compresses what it produces (lz4 by default; bench/soak.py measures it).
"""

from __future__ import annotations

import aiokafka.codec
import pytest
from pydantic import ValidationError

from pipeline.app import create_faust_app
from pipeline.settings import Settings


@pytest.mark.parametrize(
    ("setting", "producer"), [("lz4", "lz4"), ("zstd", "zstd"), ("none", None)]
)
def test_the_setting_is_the_producers_compression(
    setting: str, producer: str | None, tmp_path
) -> None:
    settings = Settings(kafka_compression=setting, data_dir=tmp_path)
    assert create_faust_app(settings).conf.producer_compression_type == producer


def test_lz4_by_default_and_its_codec_is_installed() -> None:
    assert Settings().kafka_compression == "lz4"
    # aiokafka's lz4, zstd and snappy need cramjam (a dependency); without it the
    # producer would refuse to start
    assert aiokafka.codec.has_lz4() and aiokafka.codec.has_zstd()


def test_an_unknown_codec_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="kafka_compression"):
        Settings(kafka_compression="brotli")
