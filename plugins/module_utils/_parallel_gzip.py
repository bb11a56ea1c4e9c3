# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""A gzip writer that compresses blocks on several cores, as pigz does.

The output is one ordinary gzip member: each block is raw deflate primed with the
previous block's last 32 KiB (so the ratio matches single-threaded gzip) and ends
on a byte boundary with a sync flush; the last block finishes the stream. zlib
releases the GIL while deflating, so threads give real parallelism. Memory stays
bounded: at most ``2 * threads`` blocks are in flight.
"""

from __future__ import annotations

import collections
import os
import struct
from concurrent.futures import ThreadPoolExecutor

try:
    from zlib_ng import zlib_ng as fast_zlib
    ZLIB_IMPLEMENTATION = 'zlib-ng'
except ImportError:  # pragma: no cover - depends on the node
    import zlib as fast_zlib
    ZLIB_IMPLEMENTATION = 'zlib'

import zlib

BLOCK_SIZE = 1 << 20
DICTIONARY_SIZE = 32 * 1024
GZIP_HEADER = b'\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03'  # no name, no mtime, OS = Unix


def default_threads():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _deflate_block(block, dictionary, level, last):
    if dictionary:
        compressor = fast_zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, dictionary)
    else:
        compressor = fast_zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY)
    return compressor.compress(block) + compressor.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


class ParallelGzipWriter:
    """File-like sink: ``write()`` plain bytes, ``close()`` to finish; ``sink(bytes)`` gets gzip output."""

    def __init__(self, sink, level=6, threads=None, block_size=BLOCK_SIZE):
        if not 1 <= level <= 9:
            raise ValueError('compression level must be between 1 and 9')
        self._sink = sink
        self._level = level
        self._block_size = block_size
        self._threads = threads or default_threads()
        self._pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix='gzip')
        self._pending = collections.deque()
        self._buffer = bytearray()
        self._dictionary = b''
        self._crc = 0
        self._size = 0
        self._closed = False
        self._sink(GZIP_HEADER)

    @property
    def uncompressed_size(self):
        return self._size

    def write(self, data):
        self._buffer += data
        while len(self._buffer) >= self._block_size:
            block = bytes(self._buffer[:self._block_size])
            del self._buffer[:self._block_size]
            self._submit(block, last=False)

    def _submit(self, block, last):
        self._crc = zlib.crc32(block, self._crc)
        self._size += len(block)
        self._pending.append(self._pool.submit(_deflate_block, block, self._dictionary, self._level, last))
        self._dictionary = block[-DICTIONARY_SIZE:]
        while len(self._pending) > 2 * self._threads:
            self._sink(self._pending.popleft().result())

    def close(self):
        """Compress what is buffered, write the gzip trailer."""
        if self._closed:
            return
        self._submit(bytes(self._buffer), last=True)
        self._buffer = bytearray()
        while self._pending:
            self._sink(self._pending.popleft().result())
        self._sink(struct.pack('<II', self._crc & 0xFFFFFFFF, self._size & 0xFFFFFFFF))
        self._closed = True
        self._pool.shutdown()

    def abort(self):
        """Drop everything in flight; used when the dump failed."""
        self._closed = True
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True)
