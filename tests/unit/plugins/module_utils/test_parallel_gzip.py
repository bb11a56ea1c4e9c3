import gzip
import os
import random
import subprocess
import zlib

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._parallel_gzip import ParallelGzipWriter


def _compress(data, write_size=7919, **kwargs):
    out = []
    writer = ParallelGzipWriter(out.append, **kwargs)
    for start in range(0, len(data), write_size):
        writer.write(data[start:start + write_size])
    writer.close()
    return b''.join(out), writer


def _sample(size, seed=7):
    rng = random.Random(seed)
    words = [b'knowledge', b'constraint', b'[0.125,-0.5,', b'\t', b'\n', b'feedback', b'\\N']
    chunks = []
    total = 0
    while total < size:
        chunk = rng.choice(words) if rng.random() < 0.7 else os.urandom(rng.randint(1, 40))
        chunks.append(chunk)
        total += len(chunk)
    return b''.join(chunks)[:size]


@pytest.mark.parametrize('size', [0, 1, 1000, (1 << 16) + 3, 3 * (1 << 16) + 17])
@pytest.mark.parametrize('threads', [1, 3])
def test_round_trip_is_one_standard_gzip_member(size, threads):
    data = _sample(size)
    compressed, writer = _compress(data, threads=threads, block_size=1 << 16)
    assert gzip.decompress(compressed) == data
    assert writer.uncompressed_size == size
    # One member: zlib's gzip decoder stops at the end of the first member.
    decoder = zlib.decompressobj(wbits=31)
    assert decoder.decompress(compressed) == data
    assert decoder.eof and decoder.unused_data == b''
    result = subprocess.run(['gzip', '-dc'], input=compressed, capture_output=True, check=True)
    assert result.stdout == data


def test_size_close_to_single_threaded_gzip_at_same_level():
    data = _sample(2 << 20)
    compressed, _writer = _compress(data, level=6, threads=2, block_size=1 << 18)
    reference = gzip.compress(data, compresslevel=6)
    assert len(compressed) <= len(reference) * 1.02


def test_rejects_bad_level():
    with pytest.raises(ValueError):
        ParallelGzipWriter(lambda data: None, level=0)


def test_abort_stops_without_trailer():
    out = []
    writer = ParallelGzipWriter(out.append, threads=2, block_size=1 << 12)
    writer.write(_sample(1 << 15))
    writer.abort()
    with pytest.raises((EOFError, OSError)):
        gzip.decompress(b''.join(out))
