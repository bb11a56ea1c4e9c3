# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""The logical backup engine, shared by the supabase_dump module and the cron runner.

pg_dump's plain SQL streams through a parallel gzip writer into a temporary file that is
renamed into place only after pg_dump exited 0, wrote its completion marker and the data
is on disk. Row counts for the manifest are taken from the stream as it passes.
"""

from __future__ import annotations

import os
import time

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import DirectoryLock
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_kinds import LOGICAL
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_output import BackupWriter, OutputSettings, RestorePointWriter
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._commands import (
    PgTarget,
    last_line,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._dump_stream import DumpInspector
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import CommandError, ConfigError

DATABASE_FACTS_SQL = (
    "SELECT 'extension', extname, extversion FROM pg_catalog.pg_extension "
    "UNION ALL SELECT 'setting', 'server_version', pg_catalog.current_setting('server_version')"
)


class DumpSettings(OutputSettings):
    """Validated options of one backup run."""

    def __init__(self, params):
        super().__init__(params)
        self.kind = LOGICAL.with_prefix(params['prefix'])
        if not params['backup_dir']:
            raise ConfigError('backup_dir must not be empty')
        self.backup_dir = os.path.abspath(params['backup_dir'])
        self.target = PgTarget(**params)


def database_facts(target):
    """Server version and installed extensions, read before the dump starts."""
    facts = {'extensions': {}, 'server_version': None}
    for row in target.query(DATABASE_FACTS_SQL):
        if len(row) != 3:
            continue
        kind, name, value = row
        if kind == 'extension':
            facts['extensions'][name] = value
        else:
            facts[name] = value
    return facts


class DumpBackend(BackupWriter):
    """Runs one backup; ``run()`` returns the result dict or raises a SupabaseBackupError."""

    settings_class = DumpSettings
    kind = LOGICAL
    metrics_kind = LOGICAL.metrics_kind

    def backup_kind(self):
        return self.settings.kind

    # Writers of the parts that follow the databases' (DB config files, deployment files, Storage last),
    # in order: each is called as ``writer(backend, point)`` and adds its parts to ``point``.
    file_part_writers = ()

    def write(self, started, dir_changed):
        settings = self.settings
        settings.target.ensure_reachable()
        facts = database_facts(settings.target)
        if self.check_mode:
            path = self.backup_path()
            removed = self.remove_expired(include_new=path) if not dir_changed else []
            return {
                'changed': True, 'path': path, 'removed': removed, 'size': None, 'sha256': None,
                'duration': round(time.monotonic() - started, 3), 'tables': {},
                'msg': 'Would back up %s to %s%s' % (settings.target.describe(), path,
                                                     ' and remove %d expired file(s)' % len(removed) if removed else ''),
            }
        with DirectoryLock(settings.backup_dir, settings.lock_timeout):
            point = RestorePointWriter(self, self.free_stamp())
            try:
                main = self._dump_database(point, settings.target.db, settings.kind.suffix, settings.kind.role,
                                           facts, started)
                for write_parts in self.file_part_writers:
                    write_parts(self, point)
                manifest_path = point.commit()
            except BaseException:
                point.abort()
                raise
            removed = self.remove_expired()
        path = point.main_path
        return {
            'changed': True, 'path': path, 'restore_point': point.stem, 'manifest': manifest_path,
            'size': main['size'], 'sha256': main['sha256'], 'tables': main['tables'],
            'uncompressed_size': main['uncompressed_size'],
            'server_version': main['server_version'], 'pg_dump_version': main['pg_dump_version'],
            'extensions': main['extensions'], 'encrypted': point.encrypted,
            'parts': point.parts, 'not_found': point.not_found_entries,
            'removed': removed, 'duration': round(time.monotonic() - started, 3),
            'msg': 'Backed up %s to %s (%d bytes)' % (settings.target.describe(), path, main['size']),
        }

    def _dump_database(self, point, db, suffix, role, facts, started):
        """pg_dump of ``db`` as the part ``<stem><suffix>``; returns its manifest entry."""
        target = self.settings.target
        inspector = DumpInspector()
        with point.part(suffix, role) as sink:
            stream = target.start('pg_dump', ['--dbname', db])
            try:
                for chunk in stream.chunks():
                    inspector.feed(chunk)
                    sink.write(chunk)
            except BaseException:
                stream.abort()
                raise
            returncode, stderr = stream.finish()
            which = '' if db == target.db else ' of database %s' % db
            if returncode != 0:
                raise CommandError('pg_dump%s failed (exit %s): %s' % (which, returncode, last_line(stderr) or 'no message'),
                                   rc=returncode, stderr=stderr)
            if not inspector.complete:
                raise CommandError('pg_dump%s exited 0 but its output lacks the completion marker; '
                                   'the dump is incomplete and was discarded' % which, stderr=stderr)
            sink.facts.update({
                'database': db,
                'server_version': inspector.versions.get('server_version') or facts.get('server_version'),
                'pg_dump_version': inspector.versions.get('pg_dump_version'),
                'extensions': facts['extensions'],
                'tables': inspector.tables,
                'dump_seconds': round(time.monotonic() - started, 3),
            })
        return point.entries[-1]
