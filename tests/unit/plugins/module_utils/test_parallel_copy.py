# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Sharing a large COPY block's rows with helper sessions: every row reaches exactly one session, whole,
whatever the chunk boundaries; everything else reaches the first session unchanged."""

from __future__ import annotations

import collections
import random
import threading

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._parallel_copy import (
    CopyHelper,
    CopySharing,
    HelperEnded,
)

LARGE_ROWS = [b'%d\trow %d with \\\\. and \\N inside\n' % (number, number) for number in range(40)] + [
    b'\\N\tstarts like the end marker\n', b'\\.x\tnot the end either\n', b'41\t\\\\.\n']
SMALL_ROWS = [b'1\tsmall\n', b'2\t\\N\n']
DUMP = (b'SET client_encoding = \'UTF8\';\n'
        b'CREATE TABLE public.big (id integer, note text);\n'
        b'COPY public.big (id, note) FROM stdin;\n' + b''.join(LARGE_ROWS) + b'\\.\n'
        b'\n'
        b'COPY public."small one" (id, note) FROM stdin;\n' + b''.join(SMALL_ROWS) + b'\\.\n'
        b'SELECT pg_catalog.setval(\'public.big_id_seq\', 41, true);\n'
        b'-- PostgreSQL database dump complete\n')
SHARE_AFTER = 120


class FakeHelper:
    """Collects what a helper session would read."""

    def __init__(self, header, fail_after=None):
        self.header = header
        self.pieces = []
        self.ended = False
        self.fail_after = fail_after

    def put(self, piece):
        if self.fail_after is not None and len(self.pieces) >= self.fail_after:
            raise HelperEnded()
        if piece is None:
            self.ended = True
        else:
            self.pieces.append(bytes(piece))

    def result(self):
        return 0, '', ''

    def abort(self):
        self.ended = True


def route(chunks, helpers=1, share_after=SHARE_AFTER, fail_after=None):
    started = []

    def start(header):
        helper = FakeHelper(header, fail_after)
        started.append(helper)
        return helper

    sharing = CopySharing(start, helpers, share_after)
    first = list(sharing.chunks(iter(chunks)))
    return first, started, sharing


def split(data, sizes):
    chunks, position = [], 0
    while position < len(data):
        size = next(sizes)
        chunks.append(data[position:position + size])
        position += size
    return chunks


def copy_blocks(text):
    """{COPY statement: its rows} and the text outside COPY data, of a stream's bytes."""
    blocks, outside, current = collections.OrderedDict(), [], None
    for line in text.splitlines(keepends=True):
        if current is not None:
            if line == b'\\.\n':
                current = None
                outside.append(line)
            else:
                blocks[current].append(line)
        else:
            outside.append(line)
            if line.startswith(b'COPY ') and line.rstrip().endswith(b'FROM stdin;'):
                current = line
                blocks[current] = []
    return blocks, b''.join(outside)


@pytest.mark.parametrize('sizes', [[1], [2], [3], [7], [64], 'random'])
def test_every_row_reaches_one_session_whole_whatever_the_chunks(sizes):
    rng = random.Random(7)
    chunk_sizes = iter(lambda: rng.randint(1, 40), None) if sizes == 'random' else iter(lambda: sizes[0], None)
    first, helpers, sharing = route(split(DUMP, chunk_sizes))
    main_blocks, main_outside = copy_blocks(b''.join(first))
    blocks, outside = copy_blocks(DUMP)
    assert main_outside == outside  # every statement, every end marker, in order, in the first session
    big = b'COPY public.big (id, note) FROM stdin;\n'
    assert [helper.header for helper in helpers] == [big]
    helper = helpers[0]
    assert helper.ended and helper.pieces[-1] == b'\\.\n'
    helper_rows = b''.join(helper.pieces[:-1])
    assert helper_rows.endswith(b'\n'), 'whole lines only'
    assert helper_rows, 'the large block was shared'
    assert sorted(main_blocks[big] + helper_rows.splitlines(keepends=True)) == sorted(LARGE_ROWS)
    assert main_blocks[b'COPY public."small one" (id, note) FROM stdin;\n'] == SMALL_ROWS
    assert sharing.shared_blocks == ['public.big']


def test_blocks_below_the_threshold_are_not_shared():
    first, helpers, sharing = route(split(DUMP, iter(lambda: 5, None)), share_after=1 << 20)
    assert b''.join(first) == DUMP
    assert helpers == [] and sharing.shared_blocks == []


def test_one_chunk_holding_a_whole_block_goes_to_the_first_session():
    first, _helpers, _sharing = route([DUMP])
    assert b''.join(first) == DUMP


def test_without_helpers_nothing_is_shared():
    first, helpers, _sharing = route([DUMP], helpers=0)
    assert b''.join(first) == DUMP and helpers == []


def test_rows_go_in_turns_to_every_helper():
    first, helpers, _sharing = route(split(DUMP, iter(lambda: 30, None)), helpers=3)
    assert len(helpers) == 3 and all(len(helper.pieces) > 1 for helper in helpers)
    main_blocks, _outside = copy_blocks(b''.join(first))
    shared = [line for helper in helpers for line in b''.join(helper.pieces[:-1]).splitlines(keepends=True)]
    assert sorted(main_blocks[b'COPY public.big (id, note) FROM stdin;\n'] + shared) == sorted(LARGE_ROWS)


def test_a_stream_cut_inside_a_block_goes_to_the_first_session_and_ends_the_helpers():
    cut = DUMP[:DUMP.index(b'30\trow 30')] + b'30\trow 3'
    first, helpers, _sharing = route(split(cut, iter(lambda: 16, None)))
    assert helpers[0].ended
    shared = b''.join(helpers[0].pieces[:-1])
    assert sorted(b''.join(first).splitlines() + shared.splitlines()) == sorted(cut.splitlines())
    assert b''.join(first).endswith(b'30\trow 3')  # the unfinished line, as it came


def test_a_helper_that_stopped_reading_stops_the_stream():
    with pytest.raises(HelperEnded):
        route(split(DUMP, iter(lambda: 8, None)), fail_after=1)


def test_a_long_line_is_never_taken_for_a_copy_statement():
    long_statement = b'COPY ' + b'x' * (2 << 20) + b' FROM stdin;\n'
    first, helpers, _sharing = route([long_statement, b'1\tnot data\n'])
    assert helpers == [] and b''.join(first) == long_statement + b'1\tnot data\n'


def test_a_helper_session_reads_its_first_bytes_then_the_pieces_then_ends():
    read = []

    def feed(stream, chunks):
        read.extend(chunks)
        return 0, '', 'done'

    helper = CopyHelper('stream', b'header\n', feed)
    helper.put(b'row\n')
    helper.put(None)
    assert helper.result() == (0, '', 'done')
    assert read == [b'header\n', b'row\n']


def test_a_helper_session_that_stops_reading_refuses_more_pieces():
    stop = threading.Event()

    def feed(stream, chunks):
        next(iter(chunks))
        stop.wait(5)
        return 3, '', 'ERROR:  invalid input syntax'

    helper = CopyHelper('stream', b'header\n', feed)
    stop.set()
    with pytest.raises(HelperEnded):
        for _number in range(100):
            helper.put(b'row\n')
    assert helper.result() == (3, '', 'ERROR:  invalid input syntax')


@pytest.mark.parametrize('seed', range(40))
def test_random_rows_and_chunks_keep_every_row_once(seed):
    rng = random.Random(seed)
    pieces = [b'\\', b'\\.', b'\\N', b'.', b'x', b'\t', b'\\\\.', b'7']
    rows = [b''.join(rng.choice(pieces) for _piece in range(rng.randint(1, 12))) + b'\n' for _row in range(80)]
    rows = [row for row in rows if row != b'\\.\n']
    header = b'COPY public.t (a) FROM stdin;\n'
    dump = b'SET x = 1;\n' + header + b''.join(rows) + b'\\.\nSELECT 1;\n'
    helpers = rng.randint(1, 3)
    first, started, _sharing = route(split(dump, iter(lambda: rng.randint(1, 9), None)), helpers=helpers,
                                     share_after=rng.randint(1, 60))
    main_blocks, main_outside = copy_blocks(b''.join(first))
    assert main_outside == b'SET x = 1;\n' + header + b'\\.\nSELECT 1;\n'
    shared = []
    for helper in started:
        assert helper.ended and helper.pieces[-1] == b'\\.\n'
        body = b''.join(helper.pieces[:-1])
        assert body == b'' or body.endswith(b'\n')
        shared += body.splitlines(keepends=True)
    assert sorted(main_blocks[header] + shared) == sorted(rows)


def test_a_long_row_is_passed_on_as_it_comes_never_held_whole():
    long_row = b'1\t' + b'v' * (1 << 20) + b'\n'
    rows = [b'2\tshort\n'] * 10 + [long_row, b'3\tshort\n'] * 3
    header = b'COPY public.t (a, b) FROM stdin;\n'
    dump = header + b''.join(rows) + b'\\.\n'
    started, first = [], []

    def start(header_line):
        started.append(FakeHelper(header_line))
        return started[-1]

    def with_sessions():
        return sum(len(piece) for piece in first) + sum(len(piece) for helper in started for piece in helper.pieces)

    def chunks():
        pulled = 0
        for chunk in split(dump, iter(lambda: 4096, None)):
            # All that was pulled is with a session already, but for the two bytes that may be "\."
            assert pulled - with_sessions() <= 2
            pulled += len(chunk)
            yield chunk

    sharing = CopySharing(start, 1, share_after=50)
    first.extend(bytes(piece) for piece in sharing.chunks(chunks()))
    main_blocks, _outside = copy_blocks(b''.join(first))
    shared = b''.join(started[0].pieces[:-1]).splitlines(keepends=True)
    assert sorted(main_blocks[header] + shared) == sorted(rows)
    assert shared.count(long_row) + main_blocks[header].count(long_row) == 3
