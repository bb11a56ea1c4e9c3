# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible.
"""The rows of a large COPY block shared by more sessions than the one loading the dump.

One backend parses every row of a plain dump, and on a large table of vectors that parsing is the
load's time: about 5 CPU-seconds for 20 000 rows of 1536 floats on one core while another sits
idle. A COPY block's text rows are whole lines (a newline inside a value is written ``\\n``), so
once a block has passed SHARE_AFTER bytes, its further rows go, in turns of whole lines, to the
first session and to helper sessions that each run the same COPY statement. The rows are the same
and so is every table's row count, which the restore checks against the stream's own count; the
helpers end before any post-data statement runs.
"""

from __future__ import annotations

import queue

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._dump_stream import (
    COPY_END_LINE,
    find_copy_end,
    parse_copy_target,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._in_thread import InThread

# Below this, a block is loaded by the first session alone: a helper's start costs more than it saves.
SHARE_AFTER = 8 << 20
# A COPY statement longer than this (a table of thousands of columns) is not shared.
HEADER_LIMIT = 1 << 20
# Pieces waiting for a helper; with the pipe's buffer, what one helper may hold back stays small.
HELPER_QUEUE = 4
PUT_POLL = 0.5


class HelperEnded(Exception):
    """A helper session stopped reading (it failed); the load stops, and the helper's error is reported."""


class CopyHelper:
    """One helper session: ``stream`` (a started psql) fed ``first`` and then the pieces put here, in a
    thread of its own. ``feed(stream, chunks)`` is _commands.feed_stream."""

    def __init__(self, stream, first, feed):
        self._queue = queue.Queue(HELPER_QUEUE)
        self._feeding = InThread(feed, stream, self._pieces(first))

    def _pieces(self, first):
        yield first
        while True:
            piece = self._queue.get()
            if piece is None:
                return
            yield piece

    def put(self, piece):
        """Queue ``piece`` (None: the end of the input); HelperEnded when the session no longer reads."""
        while self._feeding.running():
            try:
                self._queue.put(piece, timeout=PUT_POLL)
                return
            except queue.Full:
                continue
        raise HelperEnded()

    def result(self):
        """Wait for the session: (rc, output, stderr); raises what went wrong on the way."""
        return self._feeding.result()

    def abort(self):
        """End the session's input now and wait for it."""
        while self._feeding.running():
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                try:
                    self._queue.get_nowait()  # make room: what it holds back does not matter now
                except queue.Empty:
                    pass
            self._feeding.join(PUT_POLL)


class _Block:
    """The COPY block being read: its statement, the current line so far, whether and with whom it is shared."""

    def __init__(self, header):
        self.header = header
        self.carry = b''        # an unfinished last line that may be the end marker, held back
        self.partial = b''      # find_copy_end's state: the current line while it may be the end marker
        self.owner = None       # the session that has the start of the current, unfinished line
        self.size = 0
        self.helpers = None     # once shared: the helpers, in turn after the first session
        self.turn = 0


class CopySharing:
    """Routes the first session's stream: ``chunks(stream)`` yields what the first session reads.

    ``start_helper(header)`` starts a helper session for the COPY statement ``header`` (bytes, with its
    newline) and returns a CopyHelper; ``helpers`` is how many each large block gets.
    """

    def __init__(self, start_helper, helpers, share_after=SHARE_AFTER):
        self._start_helper = start_helper
        self._helpers_per_block = helpers
        self._share_after = share_after
        self._started = []
        self._block = None
        self._line = bytearray()
        self._line_too_long = False
        self.shared_blocks = []  # the tables whose rows were shared

    def chunks(self, chunks):
        try:
            for chunk in chunks:
                for piece in self._route(chunk):
                    if piece:
                        yield piece
            block = self._block
            if block is not None:
                # The stream ends inside a COPY block (a cut dump, which its checks fail): all to the first session.
                self._block = None
                if block.carry:
                    yield block.carry
                self._end_helpers(block)
        finally:
            if self._block is not None:
                self._end_helpers(self._block)

    def finish(self):
        """Wait for every helper; returns their (rc, output, stderr) results in order."""
        return [helper.result() for helper in self._started]

    def abort(self):
        """End every helper's input now and wait for them; returns each helper's outcome, in order: its
        (rc, output, stderr), or the exception it ended with. A helper that failed on its own shows it there."""
        outcomes = []
        for helper in self._started:
            helper.abort()
            try:
                outcomes.append(helper.result())
            except Exception as exc:  # pylint: disable=broad-except
                outcomes.append(exc)
        return outcomes

    def _route(self, data):
        out = []
        pos = 0
        end = len(data)
        while pos < end:
            pos = self._text(data, pos, out) if self._block is None else self._rows(data, pos, out)
        return out

    def _text(self, data, pos, out):
        """SQL text outside COPY data, passed on as it is; a COPY statement's line opens a block."""
        newline = data.find(b'\n', pos)
        stop = len(data) if newline < 0 else newline + 1
        out.append(data[pos:stop])
        if not self._line_too_long:
            if len(self._line) + stop - pos > HEADER_LIMIT:
                self._line_too_long = True
                self._line = bytearray()
            else:
                self._line += data[pos:stop]
        if newline < 0:
            return stop
        line = bytes(self._line)
        self._line = bytearray()
        too_long, self._line_too_long = self._line_too_long, False
        if not too_long and line.startswith(b'COPY ') and \
                parse_copy_target(line.decode('utf-8', errors='replace')):
            self._block = _Block(line)
        return stop

    def _rows(self, data, pos, out):
        """COPY data: each line goes whole to one session (the first, or in turns once the block is shared)."""
        block = self._block
        marker_started = block.partial
        rows_end, end, block.partial = find_copy_end(data, pos, block.partial)
        if end is not None and rows_end == pos and marker_started:
            block.carry = b''  # what was held back was the start of the end marker
        elif end is None and rows_end == pos and block.partial:
            # The chunk ended inside a line that may still be the end marker: all of that line is held back.
            block.carry = bytes(block.partial)
        else:
            # An unfinished last line that may still be the end marker (at most two bytes) is held back.
            hold = end is None and bool(block.partial)
            self._pass(block, data, pos, rows_end - len(block.partial) if hold else rows_end, out)
            if hold:
                block.carry = bytes(block.partial)
        if end is None:
            return len(data)
        out.append(COPY_END_LINE)
        self._block = None
        self._end_helpers(block)
        return end

    def _pass(self, block, data, start, stop, out):
        """data[start:stop] (after what was held back) to the sessions: the rest of a line already begun to
        its session, whole lines to the next, and a line begun here to that session too, so that a row is
        never held in memory whole however long it is."""
        view = memoryview(data)
        carry, block.carry = block.carry, b''
        block.size += stop - start
        if block.owner is not None:
            newline = data.find(b'\n', start, stop)
            if newline < 0:
                self._to(block, block.owner, view[start:stop], out)
                return
            self._to(block, block.owner, view[start:newline + 1], out)
            block.owner = None
            start = newline + 1
        if start >= stop and not carry:
            return
        target = self._next_target(block)
        if carry:
            self._to(block, target, carry, out)
        last = data.rfind(b'\n', start, stop) + 1
        if last > start:
            self._to(block, target, view[start:last], out)
        if stop > max(last, start):
            self._to(block, target, view[max(last, start):stop], out)
        if last != stop or last <= start:
            block.owner = target  # what it was sent last is not a whole line yet
        if block.helpers is None and block.size >= self._share_after and self._helpers_per_block > 0:
            block.helpers = [self._start(block.header) for _number in range(self._helpers_per_block)]
            self.shared_blocks.append(parse_copy_target(block.header.decode('utf-8', errors='replace')))

    @staticmethod
    def _next_target(block):
        """0 for the first session, else the number of a helper: in turns once the block is shared."""
        if block.helpers is None:
            return 0
        block.turn = (block.turn + 1) % (len(block.helpers) + 1)
        return block.turn

    @staticmethod
    def _to(block, target, piece, out):
        if not len(piece):  # pylint: disable=use-implicit-booleaness-not-len
            return
        if target == 0:
            out.append(piece)
        else:
            block.helpers[target - 1].put(piece)

    def _start(self, header):
        helper = self._start_helper(header)
        self._started.append(helper)
        return helper

    @staticmethod
    def _end_helpers(block):
        for helper in block.helpers or []:
            try:
                helper.put(COPY_END_LINE)
                helper.put(None)
            except HelperEnded:
                pass  # its failure is reported by finish()
        block.helpers = None
