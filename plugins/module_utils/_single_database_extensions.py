# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible.
"""Extensions that install in one named database only (pg_cron: ``cron.database_name``).

A restore loads a backup into a scratch database and renames it; such an extension cannot be
created there. Its entries are taken out of the load's stream as it passes (the ``EXTENSION``
entry, its ``COMMENT``, every entry of its schema: table data with the COPY rows, sequence
values, ACLs, default ACLs, and its schema's ACL) into a private spool file, and run in the
restored database once it carries the live name (see _restore). The staging database of a
validation never carries it: there they are counted and left out.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._dump_stream import (
    ENTRY_HEADER,
    LINE_KEEP,
    PREAMBLE_PREFIXES,
    count_lines,
    find_copy_end,
    parse_copy_target,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import ConfigError
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._sql import quote_literal

# The one place that names them: extension -> (its schema, the setting naming its database).
SINGLE_DATABASE_EXTENSIONS = {'pg_cron': ('cron', 'cron.database_name')}
DUMP_END = b'-- PostgreSQL database dump complete'
HEADER_PREFIXES = (b'-- Name: ', b'-- Data for Name: ')
SETTING_PREFIXES = tuple(prefix.encode('ascii') for prefix in PREAMBLE_PREFIXES)
# Settings pg_dump writes before an entry's header belong to that entry; at most this many are held.
PENDING_MAX_LINES = 64
SPOOL_BLOCK = 1 << 20
# A restore spools into a directory of this name beside the backups (private, like them); what a process
# that died left there is removed by the next restore (remove_leftover_spools).
SPOOL_PREFIX = '.cortexreview-diverted-'


def listed_extensions(entry):
    """The single-database extensions a manifest entry lists, or None when it does not say (no manifest)."""
    if entry is None or not isinstance(entry.get('extensions'), dict):
        return None
    return sorted(name for name in entry['extensions'] if name in SINGLE_DATABASE_EXTENSIONS)


def diversion_needed(entry):
    """Whether a load of the database ``entry`` describes must divert: it lists one, or nobody knows."""
    listed = listed_extensions(entry)
    return listed is None or bool(listed)


def check_target_offers(restorer, database, extensions, stem):
    """ConfigError unless the target server offers each extension and its setting names ``database``:
    the restored database's objects of the extension are created there, after the swap."""
    for extension in extensions:
        _schema, setting = SINGLE_DATABASE_EXTENSIONS[extension]
        rows = restorer.admin(
            'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = %s), '
            'coalesce(pg_catalog.current_setting(%s, true), \'\')'
            % (quote_literal(extension), quote_literal(setting)))
        available, value = (rows[0] + ['', ''])[:2] if rows else ('f', '')
        where = 'restore point %s: database %s has %s' % (stem or '(no restore point)', database, extension)
        if available != 't':
            raise ConfigError('%s, which this server does not offer (pg_available_extensions); install %s on it '
                              'first; nothing was changed' % (where, extension))
        if value != database:
            raise ConfigError('%s, whose objects can only be created in the database %s names, and this server\'s %s '
                              'is %s; set %s = \'%s\' in postgresql.conf and restart the server, or leave this '
                              'database out; nothing was changed'
                              % (where, setting, setting, "'%s'" % value if value else 'not set', setting, database))


def remove_leftover_spools(directory):
    """The spool directories a restore that died left in ``directory`` removed; returns their names."""
    try:
        names = sorted(name for name in os.listdir(directory) if name.startswith(SPOOL_PREFIX))
    except OSError:
        return []
    for name in names:
        shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
    return names


class DivertedEntries:
    """Feed it a plain dump's chunks in order: ``feed()`` returns what the load keeps, the entries of the
    single-database extensions go to a 0600 spool file in a private directory made in ``directory``
    (default: the system's temporary directory), or are only counted with ``spool=False``.
    ``finish()`` once at the end; ``close()`` removes the spool, on every path. COPY data is skipped
    with ``find``."""

    def __init__(self, directory=None, spool=True, extensions=None):
        self.extensions = dict(extensions or SINGLE_DATABASE_EXTENSIONS)
        self.spool_in = directory
        self.spool = spool
        self.found = []             # the extensions whose entries were diverted
        self.tables = {}            # diverted table -> rows in the stream
        self.preamble = ''          # the dump's restrict key and session settings (set by the load)
        self.bytes = 0
        self._schemas = {}          # schema -> extension, once the extension's entry was seen
        self._divert = False        # whether the current entry is diverted
        self._copy = None           # the table whose COPY data we are in
        self._copy_partial = b''    # the current COPY line so far, if it could still be "\."
        self._line = bytearray()    # the current line outside COPY data, while it may still matter
        self._line_long = False     # the current line outgrew LINE_KEEP: streamed where it goes
        self._pending = []          # settings lines waiting for the next entry's header
        self._directory = None
        self._spool = None
        self.path = None

    @property
    def diverted(self):
        return self.bytes > 0

    # Where bytes go

    def _to_spool(self, data):
        if not data:
            return
        self.bytes += len(data)
        if not self.spool:
            return
        if self._spool is None:
            self._directory = tempfile.mkdtemp(prefix=SPOOL_PREFIX, dir=self.spool_in)
            self.path = os.path.join(self._directory, 'diverted.sql')
            self._spool = os.fdopen(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), 'wb')
        self._spool.write(data)

    def _route(self, kept, data):
        if self._divert:
            self._to_spool(data)
        else:
            kept.append(data)

    def _flush_pending(self, kept, also_spool=False):
        for line in self._pending:
            self._route(kept, line)
            if also_spool and not self._divert:
                self._to_spool(line)
        del self._pending[:]

    # The stream

    def feed(self, data):
        kept = []
        view = memoryview(data)
        pos = 0
        end = len(data)
        while pos < end:
            if self._copy is not None:
                stop = self._copy_end(data, pos)
                self._route(kept, view[pos:stop])
                pos = stop
                continue
            newline = data.find(b'\n', pos)
            stop = end if newline < 0 else newline + 1
            self._text(kept, view[pos:stop], newline >= 0)
            pos = stop
        if len(kept) == 1 and isinstance(kept[0], memoryview) and len(kept[0]) == end:
            # A view of all of ``data``, in one piece: nothing taken out, no copy made.
            return data
        return b''.join(kept)

    def finish(self):
        """What is left at the end of the stream (an unfinished last line); closes the spool for reading."""
        kept = []
        if self._line:
            self._line_done(kept, bytes(self._line))
            self._line = bytearray()
        self._flush_pending(kept)
        if self._spool is not None:
            self._spool.close()
        return b''.join(kept)

    def _text(self, kept, piece, complete):
        """A piece of a line outside COPY data (its end when ``complete``)."""
        if self._line_long:
            self._route(kept, piece)
            self._line_long = not complete
            return
        if not complete and len(self._line) + len(piece) > LINE_KEEP:
            # No header or setting is this long: it goes where the current entry goes, as it comes.
            self._flush_pending(kept)
            self._route(kept, bytes(self._line) + bytes(piece))
            self._line = bytearray()
            self._line_long = True
            return
        if not complete:
            self._line += piece
            return
        if self._line:
            line = bytes(self._line) + bytes(piece)
            self._line = bytearray()
        else:
            line = bytes(piece)
        self._line_done(kept, line)

    def _line_done(self, kept, line):
        if line.startswith(HEADER_PREFIXES):
            header = ENTRY_HEADER.match(line.rstrip(b'\n').decode('utf-8', errors='replace'))
            if header:
                self._entry(kept, header)
                self._route(kept, line)
                return
        if line.startswith(DUMP_END):
            self._divert = False
            self._flush_pending(kept)
            kept.append(line)
            return
        if line.startswith(SETTING_PREFIXES) or (self._pending and (line.strip() == b'' or line.startswith(b'--'))):
            self._pending.append(line)
            if len(self._pending) > PENDING_MAX_LINES:
                self._flush_pending(kept)
            return
        self._flush_pending(kept)
        if line.startswith(b'COPY '):
            table = parse_copy_target(line.decode('utf-8', errors='replace'))
            if table:
                self._copy = table
                self._copy_partial = b''
                if self._divert:
                    self.tables.setdefault(table, 0)
        self._route(kept, line)

    def _entry(self, kept, header):
        name, entry_type, schema = header.group('name'), header.group('type'), header.group('schema')
        divert = False
        if entry_type == 'EXTENSION' and name in self.extensions:
            divert = True
            self._schemas[self.extensions[name][0]] = name
            if name not in self.found:
                self.found.append(name)
        elif schema in self._schemas:
            divert = True
        elif name.startswith('EXTENSION '):
            divert = name[len('EXTENSION '):] in self.found
        elif name.startswith('SCHEMA '):
            divert = name[len('SCHEMA '):] in self._schemas
        # The settings before a header are the session state the entries from here on expect.
        self._divert = False
        self._flush_pending(kept, also_spool=divert)
        self._divert = divert

    def _copy_end(self, data, pos):
        """Where the current COPY data ends in data[pos:] (just after its "\\." line), or len(data)."""
        rows_end, stop, self._copy_partial = find_copy_end(data, pos, self._copy_partial)
        if self._divert:
            self.tables[self._copy] += count_lines(data, pos, rows_end)
        if stop is None:
            return len(data)
        self._copy = None
        return stop

    # The diverted script

    def script_chunks(self):
        """The dump's preamble, then the diverted text, read from the spool in blocks."""
        yield self.preamble.encode('utf-8')
        if self.path is None:
            return
        with open(self.path, 'rb') as handle:
            while True:
                block = handle.read(SPOOL_BLOCK)
                if not block:
                    return
                yield block

    def close(self):
        if self._spool is not None:
            self._spool.close()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None
            self.path = None
