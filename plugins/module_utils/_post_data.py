# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible.
"""Splitting a plain pg_dump so that its post-data section can be built by several sessions.

The first session loads everything before the first post-data entry (schema and data). What
follows is DDL, small whatever the data size (and capped here), so it is held and split at
the ``-- Name: ...; Type: ...`` comments pg_dump writes before each entry. Index and
constraint entries are then built by several sessions at once, and everything else runs
after them in one session, in the dump's order. Wherever the split is not certain (a
meta-command, a ``COPY``, text that does not decode, more than the cap), nothing is split:
the whole section goes to the first session, exactly as a plain restore would run it.
"""

from __future__ import annotations

import re

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._dump_stream import ENTRY_HEADER
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._sql import quote_ident

POST_DATA_LIMIT = 32 << 20
# pg_dump's header lies within the first lines; nothing is loaded before this much was checked.
START_BYTES = 4096
PARALLEL_TYPES = ('INDEX', 'CONSTRAINT')
_INDEX_STATEMENT = re.compile(r'^CREATE (?:UNIQUE )?INDEX ')
_CONSTRAINT_STATEMENT = re.compile(r'^ALTER TABLE ONLY .*\n\s+ADD CONSTRAINT ', re.DOTALL)
_SETTING_STATEMENT = re.compile(r'^(?:SET |SELECT pg_catalog\.set_config\()')
_IDENTIFIER_CHAR = re.compile(r'[A-Za-z0-9_$]')
_DOLLAR_TAG = re.compile(r'\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$')
# Index methods whose builds cost far more per row than a B-tree (for balancing the sessions). Measured here on
# 1536-dimension vectors: IVFFlat 100 us a row (k-means, then each row against every list), a B-tree 1 us, a GIN
# of jsonb 2 us; an HNSW graph costs more than IVFFlat again.
_HEAVY_METHODS = re.compile(r' USING (ivfflat|hnsw|gin|gist|spgist) ')
HEAVY_METHOD_WEIGHTS = {'ivfflat': 100, 'hnsw': 400, 'gin': 4, 'gist': 4, 'spgist': 4}
_ON_TABLE = re.compile(r' ON (?:ONLY )?(\S+) ')
_ALTER_TABLE = re.compile(r'^ALTER TABLE ONLY (\S+)', re.MULTILINE)


# What pg_dump writes in a post-data section, none of which adds, removes or moves a table's rows.
# Anything else there (a DELETE, a function call, a REFRESH that may run one) can change the data.
_NAME = r'(?:"(?:[^"]|"")*"|[^\s"])+'
_TABLE_NAME = r'(?:"(?:[^"]|"")*"|[\w$.])+'
_KEEPS_ROWS = re.compile(
    r'^(?:CREATE (?:UNIQUE )?INDEX |CREATE (?:CONSTRAINT )?TRIGGER |CREATE (?:OR REPLACE )?RULE |CREATE POLICY '
    r'|CREATE EVENT TRIGGER |CREATE PUBLICATION |ALTER PUBLICATION |COMMENT ON |GRANT |REVOKE |SET '
    r'|ALTER DEFAULT PRIVILEGES |SELECT pg_catalog\.set_config\(|ALTER INDEX ' + _NAME + r' ATTACH PARTITION '
    r'|ALTER (?:EVENT TRIGGER|PUBLICATION) ' + _NAME + r' OWNER TO '
    r'|ALTER TABLE (?:ONLY )?' + _NAME + r'\s+(?:ADD CONSTRAINT|ENABLE ROW LEVEL SECURITY|FORCE ROW LEVEL SECURITY'
    r'|REPLICA IDENTITY|CLUSTER ON|ENABLE (?:ALWAYS |REPLICA )?(?:TRIGGER|RULE)|DISABLE (?:TRIGGER|RULE))(?:\s|$))')
_UNRESTRICT_LINE = re.compile(r'^\\unrestrict [^\n]*$', re.MULTILINE)
# Of those, the ones that may change which rows a query of a table sees (for a login that is not a superuser).
# Each names its table where the statement is written plainly enough to tell.
_CHANGES_READS = re.compile(
    r'^(?:CREATE POLICY\s(?:' + _NAME + r'\s+ON (?P<policy>' + _TABLE_NAME + r')(?:\s|$))?'
    r'|CREATE (?:OR REPLACE )?RULE\s(?:' + _NAME + r' AS\s+ON \w+ TO (?:ONLY )?(?P<rule>' + _TABLE_NAME + r')(?:\s|$))?'
    r'|ALTER TABLE (?:ONLY )?(?:(?P<table>' + _TABLE_NAME + r')\s+(?:ENABLE|FORCE) ROW LEVEL SECURITY$'
    r'|' + _NAME + r'\s+(?:ENABLE|FORCE) ROW LEVEL SECURITY))')


class PostDataPlan:
    """``constraints`` and ``indexes``: [(cost, sql)] to spread over sessions; ``sequential``: SQL to run after them;
    ``keeps_rows``: whether every statement of the section is one that leaves the tables' rows as they are
    (so the data can be checked while it runs); ``reads_changed``: the tables (as the dump names them) whose
    rows a query may no longer all see after the section (row level security, policies); None among them: any."""

    def __init__(self, constraints, indexes, sequential, keeps_rows=False, reads_changed=frozenset([None])):
        self.constraints = constraints
        self.indexes = indexes
        self.sequential = sequential
        self.keeps_rows = keeps_rows
        self.reads_changed = reads_changed

    def keeps_reads_of(self, table):
        """Whether a query of ``table`` run beside the section sees what it would see after it."""
        return self.keeps_rows and None not in self.reads_changed and table not in self.reads_changed

    @property
    def parallel(self):
        return self.constraints + self.indexes

    def sessions(self, jobs, preamble):
        """[(constraints script, indexes script)] for at most ``jobs`` sessions (a script is None when empty).

        The indexes are spread heaviest first to the least loaded session (longest processing time first). A
        constraint's build locks its table against every other session, an index build only against writes: a
        table's constraints go first in the session that builds its heaviest index, so that neither waits for
        the other, and no session waits for another's long index build to add a primary key."""
        count = max(1, min(jobs, max(len(self.indexes), len(self.constraints))))
        loads = [[0, [], []] for _index in range(count)]
        heaviest = {}
        for cost, sql in sorted(self.indexes, key=lambda item: -item[0]):
            session = min(loads, key=lambda load: load[0])
            session[0] += cost
            session[2].append(sql)
            heaviest.setdefault(_table_of('INDEX', sql), session)
        for cost, sql in sorted(self.constraints, key=lambda item: -item[0]):
            session = heaviest.get(_table_of('CONSTRAINT', sql)) or min(loads, key=lambda load: load[0])
            session[0] += cost
            session[1].append(sql)
        return [tuple(preamble + ''.join(sqls) if sqls else None for sqls in (constraints, indexes))
                for _load, constraints, indexes in loads if constraints or indexes]


class DumpSplitter:
    """Feeds a plain dump's SQL chunks to the first session and holds back its post-data section.

    ``inspector`` is the DumpInspector that checks the same stream (it finds the section's start).
    ``on_start()`` runs before the first byte is released, once START_BYTES (or the whole stream)
    were read, so that what is not a dump at all never reaches a session. ``on_end()`` runs once
    the whole stream was read and before any held text is released, so a backup that fails its
    checks never reaches the post-data step.
    """

    def __init__(self, inspector, limit=POST_DATA_LIMIT, diverter=None):
        self.inspector = inspector
        self.limit = limit
        self.plan = None
        # A _single_database_extensions.DivertedEntries: what it takes out never reaches a session.
        self.diverter = diverter

    def first_session_chunks(self, sql_chunks, on_start=None, on_end=None):
        inspector = self.inspector
        pending = bytearray()
        pending_offset = 0
        held = None
        started = on_start is None
        for chunk in sql_chunks:
            inspector.feed(chunk)
            if not started:
                pending += chunk
                if len(pending) < START_BYTES:
                    continue
                on_start()
                started = True
                chunk = b''
            if held is not None:
                held += chunk
                if len(held) > self.limit:
                    # Too large to be DDL only: load it in order, as it comes.
                    yield self._kept(bytes(held))
                    held = None
                    pending_offset = -1
                continue
            if pending_offset < 0:
                yield self._kept(chunk)
                continue
            if not pending and inspector.post_data_offset is None and inspector.settled_offset == pending_offset + len(chunk):
                # The usual case (COPY data): the whole chunk is settled and goes on without a copy.
                pending_offset += len(chunk)
                yield self._kept(chunk)
                continue
            pending += chunk
            start = inspector.post_data_offset
            cut = (start if start is not None else inspector.settled_offset) - pending_offset
            if cut > 0:
                yield self._kept(bytes(pending[:cut]))
                del pending[:cut]
                pending_offset += cut
            if start is not None:
                held = pending
                pending = bytearray()
        if not started:
            on_start()
        if on_end is not None:
            on_end()
        if pending:
            yield self._kept(bytes(pending))
        if held is not None:
            held = self._kept(bytes(held))
        if self.diverter is not None:
            # The end of the stream: an unfinished last line goes where it belongs.
            rest = self.diverter.finish()
            if held is None:
                yield rest
            else:
                held += rest
        if held is not None:
            self.plan = split_post_data(held, inspector.tables)
            if self.plan is None:
                yield bytes(held)

    def _kept(self, data):
        """What of ``data`` reaches a session: all of it, unless the diverter takes entries out."""
        return data if self.diverter is None else self.diverter.feed(data)

    def preamble(self):
        """What every extra session runs first: the dump's restrict key and session settings."""
        lines = []
        if self.inspector.restrict_key:
            lines.append('\\restrict %s' % self.inspector.restrict_key)
        lines.extend(self.inspector.preamble)
        return '\n'.join(lines) + '\n'


def split_post_data(data, row_counts=None):
    """A PostDataPlan for the held post-data bytes, or None when they must run as they are."""
    try:
        text = bytes(data).decode('utf-8')
    except UnicodeDecodeError:
        return None
    scan = _scan(text)
    if scan is None:
        return None
    line_starts, statement_ends = scan
    headers = [position for position in line_starts if text.startswith('-- Name: ', position)]
    if not headers:
        return None
    parallel = {'CONSTRAINT': [], 'INDEX': []}
    sequential = [text[:headers[0]]]
    for number, start in enumerate(headers):
        end = headers[number + 1] if number + 1 < len(headers) else len(text)
        header_end = text.index('\n', start)
        header = ENTRY_HEADER.match(text[start:header_end])
        ends = [position for position in statement_ends if start < position < end]
        divert = _diverted_end(text, header, header_end, ends) if header else None
        if header and header.group('type') in PARALLEL_TYPES:
            tablespace = 'SET default_tablespace = %s;\n' % (
                quote_ident(header.group('tablespace')) if header.group('tablespace') else "''")
        else:
            tablespace = ''
        if divert is None:
            sequential.append(tablespace + text[start:end])
            continue
        statement = text[start:divert]
        parallel[header.group('type')].append(
            (_cost(header.group('type'), statement, row_counts or {}), tablespace + statement + '\n'))
        sequential.append(text[divert:end])
    if not parallel['CONSTRAINT'] and not parallel['INDEX']:
        return None
    keeps_rows, reads_changed = _what_statements_keep(text, statement_ends)
    return PostDataPlan(parallel['CONSTRAINT'], parallel['INDEX'], ''.join(sequential),
                        keeps_rows=keeps_rows, reads_changed=reads_changed)


def _what_statements_keep(text, statement_ends):
    """(whether every top-level statement of ``text`` is one of _KEEPS_ROWS, the tables whose reads
    _CHANGES_READS statements change: None for one whose table is not found), comments aside."""
    reads_changed = set()
    begin = 0
    for end in statement_ends + [len(text)]:
        # psql's \unrestrict line is no part of the statement that follows it, which must pass on its own.
        statement = _strip_comments(_UNRESTRICT_LINE.sub('', text[begin:end]))
        begin = end + 1
        if statement and not _KEEPS_ROWS.match(statement):
            return False, frozenset([None])
        changes_reads = statement and _CHANGES_READS.match(statement)
        if changes_reads:
            reads_changed.add(changes_reads.group('policy') or changes_reads.group('rule')
                              or changes_reads.group('table'))
    return True, frozenset(reads_changed)


def _diverted_end(text, header, header_end, ends):
    """Where a parallel entry ends (after its last statement), or None if it must stay in order."""
    if header.group('type') not in PARALLEL_TYPES or not ends:
        return None
    statements = []
    begin = header_end
    for end in ends:
        statements.append(_strip_comments(text[begin:end]))
        begin = end + 1
    first = statements[0]
    if not (_INDEX_STATEMENT.match(first) if header.group('type') == 'INDEX' else _CONSTRAINT_STATEMENT.match(first)):
        return None
    if ' FOREIGN KEY ' in first:
        return None
    # Settings after the entry's statements belong to the entries that follow: they stay in order.
    while statements and _SETTING_STATEMENT.match(statements[-1]):
        statements.pop()
        ends = ends[:-1]
    if any(_SETTING_STATEMENT.match(statement) for statement in statements):
        return None
    return ends[-1] + 1 if ends else None


def _strip_comments(statement):
    lines = [line for line in statement.split('\n') if line.strip() and not line.startswith('--')]
    return '\n'.join(lines).strip()


def _table_of(entry_type, statement):
    """The table an index or constraint entry builds on, as the dump names it (None if not found)."""
    body = _strip_comments(statement)
    match = (_ON_TABLE if entry_type == 'INDEX' else _ALTER_TABLE).search(body)
    return match.group(1) if match else None


def _cost(entry_type, statement, row_counts):
    """A rough build cost: rows of the table, more for index methods that cost more per row."""
    body = _strip_comments(statement)
    rows = row_counts.get(_table_of(entry_type, statement), 0)
    heavy = _HEAVY_METHODS.search(body)
    return (rows + 1) * (HEAVY_METHOD_WEIGHTS[heavy.group(1)] if heavy else 1)


def _scan(text):
    """(line starts, statement ends) at the top level of SQL text: outside strings, quoted
    identifiers, dollar quotes and comments. None when the text holds what must not be split:
    a psql meta-command other than ``\\unrestrict``, or COPY data."""
    line_starts = []
    statement_ends = []
    position = 0
    length = len(text)
    at_line_start = True
    while position < length:
        if at_line_start:
            line_starts.append(position)
            if text.startswith('\\', position) and not text.startswith('\\unrestrict ', position):
                return None
            if text.startswith('COPY ', position):
                return None
        char = text[position]
        at_line_start = False
        if char == '\n':
            at_line_start = True
            position += 1
        elif char == ';':
            statement_ends.append(position)
            position += 1
        elif char == '-' and text.startswith('--', position):
            newline = text.find('\n', position)
            position = length if newline < 0 else newline
        elif char == '/' and text.startswith('/*', position):
            position = _block_comment_end(text, position)
        elif char == "'":
            escapes = position > 0 and text[position - 1] in 'Ee' and (
                position < 2 or not _IDENTIFIER_CHAR.match(text[position - 2]))
            position = _quoted_end(text, position, "'", escapes)
        elif char == '"':
            position = _quoted_end(text, position, '"', False)
        elif char == '$' and (position == 0 or not _IDENTIFIER_CHAR.match(text[position - 1])):
            tag = _DOLLAR_TAG.match(text, position)
            if tag:
                close = text.find(tag.group(0), tag.end())
                position = length if close < 0 else close + len(tag.group(0))
            else:
                position += 1
        else:
            position += 1
    return line_starts, statement_ends


def _quoted_end(text, position, quote, backslash_escapes):
    position += 1
    length = len(text)
    while position < length:
        char = text[position]
        if backslash_escapes and char == '\\':
            position += 2
        elif char == quote:
            if text.startswith(quote, position + 1):
                position += 2
            else:
                return position + 1
        else:
            position += 1
    return length


def _block_comment_end(text, position):
    depth = 0
    length = len(text)
    while position < length:
        if text.startswith('/*', position):
            depth += 1
            position += 2
        elif text.startswith('*/', position):
            depth -= 1
            position += 2
            if depth == 0:
                return position
        else:
            position += 1
    return length
