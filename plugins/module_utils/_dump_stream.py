# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""Reading a plain-format pg_dump as it streams past, without holding it in memory.

It counts the rows of every ``COPY ... FROM stdin;`` block, picks up the versions from
the dump's header comments and tells whether pg_dump wrote its completion marker.
Within a COPY block a row is one line and the block ends with a line ``\\.``; a data
value can never produce that line because COPY escapes backslashes.
"""

from __future__ import annotations

import re

COMPLETION_MARKER = b'-- PostgreSQL database dump complete'
COPY_END_LINE = b'\\.\n'
# The start of a line outside COPY data is kept up to this size: enough for any
# header or COPY statement we parse, and memory stays bounded for huge DDL lines.
LINE_KEEP = 64 * 1024
TAIL_KEEP = 256
# Backslashes looked at one by one before the search for the end marker is left to bytes.find.
BACKSLASH_PROBES = 64
# Newlines found one by one (memchr) before the rest of a chunk's are left to bytes.count.
NEWLINE_PROBES = 64

IDENTIFIER = r'(?:"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*)'
_INDEX_PATTERN = re.compile(r'^CREATE (?:UNIQUE )?INDEX (%s) ON (?:ONLY )?(%s)\.' % (IDENTIFIER, IDENTIFIER))
# "-- Name: knowledge_base_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres[; Tablespace: ts]", and
# "-- Data for Name: job; Type: TABLE DATA; Schema: cron; Owner: postgres" before a table's rows
ENTRY_HEADER = re.compile(r'^-- (?:Data for )?Name: (?P<name>.*); Type: (?P<type>[A-Z ]+); Schema: (?P<schema>[^;]*); '
                          r'Owner: (?P<owner>[^;]*)(?:; Tablespace: (?P<tablespace>[^;]*))?$')
# Entry types that only pg_dump's post-data section holds: once one is seen, all data has been loaded.
POST_DATA_TYPES = frozenset((
    'CONSTRAINT', 'FK CONSTRAINT', 'INDEX', 'INDEX ATTACH', 'TRIGGER', 'EVENT TRIGGER', 'RULE', 'POLICY',
    'ROW SECURITY', 'MATERIALIZED VIEW DATA', 'PUBLICATION', 'PUBLICATION TABLE', 'PUBLICATION TABLES IN SCHEMA',
    'SUBSCRIPTION', 'SUBSCRIPTION TABLE'))
# Session settings of the dump's header, replayed by every extra session that builds post-data.
PREAMBLE_PREFIXES = ('SET ', 'SELECT pg_catalog.set_config(')
PREAMBLE_MAX_LINES = 64
_VERSION_PATTERNS = {
    'server_version': re.compile(r'^-- Dumped from database version (.+)$'),
    'pg_dump_version': re.compile(r'^-- Dumped by pg_dump version (.+)$'),
}


def parse_copy_target(line):
    """``COPY public."Weird Table" (a, b) FROM stdin;`` -> ``public."Weird Table"``; else None."""
    if not line.startswith('COPY ') or not line.rstrip().endswith('FROM stdin;'):
        return None
    text = line[5:]
    pos = 0
    in_quotes = False
    while pos < len(text):
        char = text[pos]
        if in_quotes:
            if char == '"':
                if text[pos + 1:pos + 2] == '"':
                    pos += 1
                else:
                    in_quotes = False
        elif char == '"':
            in_quotes = True
        elif char == ' ':
            break
        pos += 1
    return text[:pos] or None


def find_copy_end(data, pos, partial):
    """Where COPY data going on at data[pos:] ends: (rows_end, end, partial). Its rows there are the
    newlines of data[pos:rows_end]; ``end`` is just after the "\\." line, None when the data goes on.
    ``partial`` is the current line so far while it may still be that line (b'' at a line start),
    else None: the state for the next chunk."""
    if partial is not None:
        # The current line started earlier and may still be the end marker.
        needed = len(COPY_END_LINE) - len(partial)
        candidate = partial + data[pos:pos + needed]
        if candidate == COPY_END_LINE:
            return pos, pos + needed, b''
        if len(candidate) < len(COPY_END_LINE) and COPY_END_LINE.startswith(candidate):
            return pos, None, candidate
    terminator = _find_end_marker(data, pos)
    if terminator >= 0:
        return terminator + 1, terminator + 1 + len(COPY_END_LINE), b''
    last_newline = data.rfind(b'\n', pos)
    rest = data[last_newline + 1:] if last_newline >= 0 else None
    return len(data), None, rest if rest is not None and COPY_END_LINE.startswith(rest) else None


def _find_end_marker(data, pos):
    """Where b'\\n\\.\\n' first starts in data[pos:], or -1. COPY data holds few backslashes (each one
    in a value is written doubled), so the marker's backslash is looked for with memchr, ten times
    faster than bytes.find's search for the four bytes; data full of backslashes gets that search."""
    backslash = data.find(b'\\', pos + 1)
    for _probe in range(BACKSLASH_PROBES):
        if backslash < 0:
            return -1
        if data[backslash - 1] == 10 and data[backslash + 1:backslash + 3] == b'.\n':
            return backslash - 1
        backslash = data.find(b'\\', backslash + 1)
    return data.find(b'\n' + COPY_END_LINE, backslash - 1) if backslash >= 0 else -1


def count_lines(data, start, end):
    """The newlines in data[start:end]. bytes.count looks at every byte (1 GB/s here); rows of vectors
    are kilobytes long, so finding each newline with memchr is several times faster. Short lines
    are left to bytes.count after a few probes."""
    count = 0
    newline = data.find(b'\n', start, end)
    while newline >= 0:
        count += 1
        if count == NEWLINE_PROBES:
            return count + data.count(b'\n', newline + 1, end)
        newline = data.find(b'\n', newline + 1, end)
    return count


class DumpInspector:
    """Feed it the dump's chunks in order; read ``tables``, ``versions`` and ``complete`` at the end."""

    def __init__(self):
        self.tables = {}
        self.indexes = []           # "schema.index" of every CREATE INDEX, as pg_dump quotes them
        self.versions = {}
        self.header_seen = False
        self._table = None          # table whose COPY data we are in, else None
        self._line_start = bytearray()  # start of the current line outside COPY data
        self._line_truncated = False
        self._partial = b''         # the current COPY data line so far, if it could still be "\."
        self._tail = b''
        self._fed = 0               # bytes fed before the current chunk
        self._line_offset = 0       # stream offset where the current line outside COPY data began
        self._entries_seen = False
        self.post_data_offset = None  # stream offset of the first post-data entry's header line
        self.restrict_key = None    # psql's restrict key (pg_dump 17.6+)
        self.preamble = []          # the header's SET lines

    # COPY data

    def _copy_data(self, data, pos):
        """Count rows from data[pos:]; returns where the COPY data ended, or len(data)."""
        rows_end, stop, self._partial = find_copy_end(data, pos, self._partial)
        self.tables[self._table] += count_lines(data, pos, rows_end)
        if stop is None:
            return len(data)
        self._finish_copy()
        return stop

    def _finish_copy(self):
        self._table = None
        self._partial = b''

    # Everything else: SQL text, read line by line

    def _sql_text(self, data, pos):
        end = len(data)
        while pos < end:
            if not self._line_start and not self._line_truncated:
                self._line_offset = self._fed + pos
            newline = data.find(b'\n', pos)
            stop = end if newline < 0 else newline
            room = LINE_KEEP - len(self._line_start)
            if room > 0:
                self._line_start += data[pos:min(stop, pos + room)]
            if stop - pos > max(room, 0):
                self._line_truncated = True
            if newline < 0:
                return end
            self._end_of_line()
            pos = newline + 1
            if self._table is not None:
                return pos
        return end

    def _end_of_line(self):
        line = self._line_start.decode('utf-8', errors='replace')
        self._line_start = bytearray()
        self._line_truncated = False
        if line.startswith('COPY '):
            table = parse_copy_target(line)
            if table:
                self._table = table
                self._partial = b''
                self.tables.setdefault(table, 0)
            return
        if line.startswith('CREATE ') and ' INDEX ' in line[:20]:
            match = _INDEX_PATTERN.match(line)
            if match:
                self.indexes.append('%s.%s' % (match.group(2), match.group(1)))
            return
        if line.startswith('-- Name: '):
            self._entry_header(line)
            return
        if not self._entries_seen:
            self._header_line(line)
        if line.startswith('-- PostgreSQL database dump'):
            self.header_seen = True
        if line.startswith('-- Dumped '):
            for key, pattern in _VERSION_PATTERNS.items():
                match = pattern.match(line)
                if match:
                    self.versions[key] = match.group(1).strip()

    def _entry_header(self, line):
        self._entries_seen = True
        if self.post_data_offset is None:
            match = ENTRY_HEADER.match(line)
            if match and match.group('type') in POST_DATA_TYPES:
                self.post_data_offset = self._line_offset

    def _header_line(self, line):
        """Lines before the first entry: the restrict key and the session settings."""
        if line.startswith('\\restrict '):
            self.restrict_key = line.split(None, 1)[1].strip() or None
        elif line.startswith(PREAMBLE_PREFIXES) and len(self.preamble) < PREAMBLE_MAX_LINES:
            self.preamble.append(line)

    def feed(self, data):
        pos = 0
        while pos < len(data):
            if self._table is not None:
                pos = self._copy_data(data, pos)
            else:
                pos = self._sql_text(data, pos)
        self._fed += len(data)
        self._tail = (self._tail + data[-TAIL_KEEP:])[-TAIL_KEEP:]

    @property
    def settled_offset(self):
        """Stream offset up to which every line's meaning is known: the start of an unfinished
        line outside COPY data (it may still turn out to be an entry header), else all fed bytes.
        A line longer than LINE_KEEP is no header, so what is held back stays bounded."""
        if self._table is None and self._line_start and not self._line_truncated:
            return self._line_offset
        return self._fed

    @property
    def complete(self):
        """True when pg_dump's completion marker ends the output and no COPY block is open.

        After the marker only comment and blank lines may follow, and PostgreSQL 17.6+
        adds an ``\\unrestrict <key>`` line.
        """
        if self._table is not None:
            return False
        position = self._tail.rfind(COMPLETION_MARKER)
        if position < 0:
            return False
        trailer = self._tail[position + len(COMPLETION_MARKER):].decode('ascii', errors='replace')
        return all(line in ('', '--') or line.startswith('\\unrestrict ') for line in trailer.split('\n'))
