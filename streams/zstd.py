"""Kafka's zstd codec for aiokafka, with compression contexts kept.

aiokafka compresses each partition's record batch with ``cramjam.zstd``,
which sets up a new zstd context on every call: about 30 µs a batch
whatever its size, and as much again to decompress one. A worker under
paced traffic produces many small batches (each engine batch sends to every
partition it touched, of the internal topic, four changelogs and the
outputs), and that set-up was about a tenth of its CPU at 450 events/s
(``BENCHMARKS.md``). ``zstandard`` with one context per thread (the producer
runs on the worker's loop, the consumer in Faust's consumer thread) does the
same work in 2-4 µs. The frames are standard zstd frames: the broker, Java
clients and ``cramjam`` read them. A frame that does not record its content
size (some streaming writers leave it out) is decompressed as a stream.

Internals relied on (aiokafka 0.14, pinned): the record modules
``aiokafka.record.default_records`` and its compiled twin
``aiokafka.record._crecords.default_records`` look ``zstd_encode`` and
``zstd_decode`` up in their module globals when a batch is built or read;
:func:`install` replaces them there.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

import zstandard

#: What the Kafka broker uses when no level is given (KIP-390).
DEFAULT_LEVEL = 3
#: aiokafka's modules that build and read record batches.
RECORD_MODULES = ("aiokafka.record.default_records", "aiokafka.record._crecords.default_records")

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    contexts: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "compressors", None)
    if contexts is None:
        contexts = _local.compressors = {}
    ctx = contexts.get(level)
    if ctx is None:
        ctx = contexts[level] = zstandard.ZstdCompressor(level=level)
    return ctx


def _decompressor() -> zstandard.ZstdDecompressor:
    ctx: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if ctx is None:
        ctx = _local.decompressor = zstandard.ZstdDecompressor()
    return ctx


def zstd_encode(payload: Any, level: int | None = None) -> bytes:
    """One zstd frame of ``payload`` (level 3 unless given), as Kafka stores it.

    >>> zstd_decode(zstd_encode(b"journeyflow" * 10)) == b"journeyflow" * 10
    True
    """
    return _compressor(DEFAULT_LEVEL if level is None else level).compress(payload)


def zstd_decode(payload: Any) -> bytes:
    """The bytes a zstd frame holds (any writer's frame)."""
    try:
        return _decompressor().decompress(payload)
    except zstandard.ZstdError:  # no content size in the frame header: stream it
        return _decompressor().decompressobj().decompress(bytes(payload))


def install() -> list[str]:
    """Put these functions where aiokafka's record modules look them up;
    returns the modules patched (the compiled one may be absent)."""
    patched = []
    for name in RECORD_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        module.zstd_encode = zstd_encode  # type: ignore[attr-defined]
        module.zstd_decode = zstd_decode  # type: ignore[attr-defined]
        patched.append(name)
    return patched
