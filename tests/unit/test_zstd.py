"""Kafka's zstd with kept contexts (``streams.zstd``): frames any reader takes,
any writer's frames read, and aiokafka's record batches built and read with it."""

from __future__ import annotations

import importlib

import cramjam
import pytest
import zstandard

from streams import zstd

PAYLOADS = [b"", b"x", b'{"event_id":"e1","event_type":"live.comment"}' * 40, bytes(range(256)) * 9]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_frames_round_trip_with_aiokafkas_own_codec(payload: bytes) -> None:
    assert bytes(cramjam.zstd.decompress(zstd.zstd_encode(payload))) == payload
    assert zstd.zstd_decode(bytes(cramjam.zstd.compress(payload, level=3))) == payload
    assert zstd.zstd_decode(zstd.zstd_encode(payload, level=1)) == payload


def test_a_frame_without_its_content_size_is_read() -> None:
    payload = PAYLOADS[2]
    frame = zstandard.ZstdCompressor(write_content_size=False).compress(payload)
    with pytest.raises(zstandard.ZstdError):  # what the fast path cannot do alone
        zstandard.ZstdDecompressor().decompress(frame)
    assert zstd.zstd_decode(frame) == payload


def test_aiokafka_builds_and_reads_record_batches_with_it() -> None:
    patched = zstd.install()
    assert "aiokafka.record.default_records" in patched
    for name in patched:
        module = importlib.import_module(name)
        assert module.zstd_encode is zstd.zstd_encode
        assert module.zstd_decode is zstd.zstd_decode
        builder = module.DefaultRecordBatchBuilder(
            magic=2,
            compression_type=module.DefaultRecordBatch.CODEC_ZSTD,
            is_transactional=0,
            producer_id=-1,
            producer_epoch=-1,
            base_sequence=-1,
            batch_size=1 << 20,
        )
        values = [b'{"n":%d,"text":"nice"}' % i * 5 for i in range(20)]
        for offset, value in enumerate(values):
            builder.append(offset, timestamp=None, key=b"k", value=value, headers=[])
        built = bytes(builder.build())
        assert len(built) < sum(map(len, values)) // 4  # compressed
        assert [r.value for r in module.DefaultRecordBatch(built)] == values
