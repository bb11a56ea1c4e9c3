# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""The logical backup engine, shared by the supabase_dump module and the cron runner.

One run writes one restore point (_backup_output.RestorePointWriter): the main database's
pg_dump (the contract's ``.sql.gz``), each extra database's, the cluster's roles
(``pg_dumpall --roles-only``, password hashes included) and the file parts. Each streams
through a parallel gzip writer into a temporary file; the restore point appears only once
every part is whole (pg_dump exited 0 and wrote its completion marker). Row counts for the
manifest are taken from the streams as they pass; each database's own settings are recorded.
"""

from __future__ import annotations

import os
import re
import time

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import DirectoryLock
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_kinds import LOGICAL
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_output import BackupWriter, OutputSettings, RestorePointWriter
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._commands import (
    PgTarget,
    last_line,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._database_settings import read_database_settings
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._dump_stream import DumpInspector
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import CommandError, ConfigError
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._file_components import FILE_PART_WRITERS, FilePartOptions, plan_file_parts
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._globals import created_roles
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._restore_points import (
    EXTRA_DATABASE_ROLE,
    PART_SUFFIXES,
    extra_database_suffix,
)

DATABASE_FACTS_SQL = (
    "SELECT 'extension', extname, extversion FROM pg_catalog.pg_extension "
    "UNION ALL SELECT 'setting', 'server_version', pg_catalog.current_setting('server_version')"
)
CONNECTABLE_DATABASES_SQL = ('SELECT datname FROM pg_catalog.pg_database WHERE datallowconn AND NOT datistemplate '
                             'ORDER BY datname')
SUPERUSER_SQL = 'SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user'
# The roles' dump is small; more than this is not one.
GLOBALS_LIMIT = 64 << 20
# What a restore or validation of this collection names its scratch, previous and staging copies.
OWN_COPIES = re.compile(r'_(?:pre_restore|restore|validate)_\d{8}_\d{6}\Z')
PG_DUMPALL_COMPLETE = b'-- PostgreSQL database cluster dump complete'


class DumpSettings(OutputSettings):
    """Validated options of one backup run."""

    def __init__(self, params):
        super().__init__(params)
        self.kind = LOGICAL.with_prefix(params['prefix'])
        if not params['backup_dir']:
            raise ConfigError('backup_dir must not be empty')
        self.backup_dir = os.path.abspath(params['backup_dir'])
        self.target = PgTarget(**params)
        self.extra_databases = params.get('extra_databases')
        self.globals = params.get('globals', True)
        self.file_parts = FilePartOptions(params)
        if self.extra_databases is not None:
            names = self.extra_databases
            if any(not name for name in names) or len(set(names)) != len(names):
                raise ConfigError('extra_databases must name each database once, none empty')
            if self.target.db in names:
                raise ConfigError('extra_databases must not name the main database %s (db)' % self.target.db)


def database_facts(target, db=None):
    """Server version and installed extensions of ``db``, read before the dump starts."""
    facts = {'extensions': {}, 'server_version': None}
    for row in target.query(DATABASE_FACTS_SQL, db=db):
        if len(row) != 3:
            continue
        kind, name, value = row
        if kind == 'extension':
            facts['extensions'][name] = value
        else:
            facts[name] = value
    return facts


def select_extra_databases(target, wanted):
    """The extra databases to dump: ``wanted`` (each must exist and allow connections), or by default
    every other one that does, but templates and this collection's own scratch and previous copies."""
    existing = [row[0] for row in target.query(CONNECTABLE_DATABASES_SQL)]
    if wanted is None:
        return [name for name in existing if name != target.db and not OWN_COPIES.search(name)]
    missing = [name for name in wanted if name not in existing]
    if missing:
        raise ConfigError('extra_databases: %s %s not exist or %s not allow connections; nothing was written'
                          % (', '.join(missing), 'does' if len(missing) == 1 else 'do',
                             'does' if len(missing) == 1 else 'do'))
    return list(wanted)


def check_superuser(target):
    """Reading the roles' password hashes needs a superuser: a one-line error before anything is written."""
    rows = target.query(SUPERUSER_SQL)
    if not rows or rows[0][0] != 't':
        raise ConfigError('globals need a superuser (login_user %s is not one); set globals: false'
                          % target.login_user)


def stream_into(sink, stream, what, observe=None):
    """Every chunk of a client program's output into ``sink``; its exit status checked. Returns stderr."""
    try:
        for chunk in stream.chunks():
            if observe is not None:
                observe(chunk)
            sink.write(chunk)
    except BaseException:
        stream.abort()
        raise
    returncode, stderr = stream.finish()
    if returncode != 0:
        raise CommandError('%s failed (exit %s): %s' % (what, returncode, last_line(stderr) or 'no message'),
                           rc=returncode, stderr=stderr)
    return stderr


class DumpBackend(BackupWriter):
    """Runs one backup; ``run()`` returns the result dict or raises a SupabaseBackupError."""

    settings_class = DumpSettings
    kind = LOGICAL
    metrics_kind = LOGICAL.metrics_kind

    def backup_kind(self):
        return self.settings.kind

    # Writers of the parts that follow the databases' (DB config files, deployment files, Storage last),
    # in order: each is called as ``writer(backend, point)`` and adds its parts to ``point``.
    file_part_writers = FILE_PART_WRITERS

    def write(self, started, dir_changed):
        settings = self.settings
        target = settings.target
        target.ensure_reachable()
        facts = database_facts(target)
        # Every check that can refuse the run comes before anything is written.
        extra_databases = select_extra_databases(target, settings.extra_databases)
        if settings.globals:
            check_superuser(target)
        plan_file_parts(self, '', '')  # the file options' places (read only)
        if self.check_mode:
            return self._plan(started, dir_changed, extra_databases)
        with DirectoryLock(settings.backup_dir, settings.lock_timeout):
            point = RestorePointWriter(self, self.free_stamp())
            try:
                main = self._dump_database(point, target.db, settings.kind.suffix, settings.kind.role, facts)
                for name in extra_databases:
                    self._dump_database(point, name, extra_database_suffix(name), EXTRA_DATABASE_ROLE,
                                        database_facts(target, db=name))
                if settings.globals:
                    self._dump_globals(point)
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
            'parts': point.parts, 'not_found': point.not_found_entries, 'extra_databases': extra_databases,
            'removed': removed, 'duration': round(time.monotonic() - started, 3),
            'msg': 'Backed up %s to %s (%d bytes%s)' % (
                target.describe(), path, main['size'],
                ', %d part(s) in all' % len(point.parts) if len(point.parts) > 1 else ''),
        }

    def _plan(self, started, dir_changed, extra_databases):
        """Check mode: the restore point's database parts and what retention would remove."""
        settings = self.settings
        path = self.backup_path()
        stem = settings.kind.stem_of(path)
        encrypted = '.gpg' if settings.passphrase is not None else ''
        parts = [{'name': os.path.basename(path), 'role': settings.kind.role, 'size': None}]
        parts += [{'name': stem + extra_database_suffix(name) + encrypted, 'role': EXTRA_DATABASE_ROLE, 'size': None}
                  for name in extra_databases]
        if settings.globals:
            parts.append({'name': stem + PART_SUFFIXES['globals'] + encrypted, 'role': 'globals', 'size': None})
        file_parts, not_found = plan_file_parts(self, stem, encrypted)
        parts += file_parts
        removed = self.remove_expired(include_new=path) if not dir_changed else []
        return {
            'changed': True, 'path': path, 'removed': removed, 'size': None, 'sha256': None,
            'duration': round(time.monotonic() - started, 3), 'tables': {}, 'parts': parts, 'not_found': not_found,
            'extra_databases': extra_databases,
            'msg': 'Would back up %s to %s%s%s' % (
                settings.target.describe(), path,
                ' with %d more part(s)' % (len(parts) - 1) if len(parts) > 1 else '',
                ' and remove %d expired file(s)' % len(removed) if removed else ''),
        }

    def _dump_database(self, point, db, suffix, role, facts):
        """pg_dump of ``db`` as the part ``<stem><suffix>``, with its settings; returns its manifest entry."""
        target = self.settings.target
        began = time.monotonic()
        database_settings = read_database_settings(target, db)
        inspector = DumpInspector()
        which = '' if db == target.db else ' of database %s' % db
        with point.part(suffix, role) as sink:
            stderr = stream_into(sink, target.start('pg_dump', ['--dbname', db]), 'pg_dump' + which, inspector.feed)
            if not inspector.complete:
                raise CommandError('pg_dump%s exited 0 but its output lacks the completion marker; '
                                   'the dump is incomplete and was discarded' % which, stderr=stderr)
            sink.facts.update({
                'database': db,
                'server_version': inspector.versions.get('server_version') or facts.get('server_version'),
                'pg_dump_version': inspector.versions.get('pg_dump_version'),
                'extensions': facts['extensions'],
                'tables': inspector.tables,
                'database_settings': database_settings,
                'dump_seconds': round(time.monotonic() - began, 3),
            })
        return point.entries[-1]

    def _dump_globals(self, point):
        """``pg_dumpall --roles-only`` (attributes, password hashes, memberships, role settings); the manifest
        lists the roles it creates, as read from the stream itself."""
        target = self.settings.target
        output = bytearray()

        def keep(chunk):
            output.extend(chunk)
            if len(output) > GLOBALS_LIMIT:
                raise CommandError('pg_dumpall --roles-only wrote more than %d bytes; that is not a list of roles'
                                   % GLOBALS_LIMIT)

        with point.part(PART_SUFFIXES['globals'], 'globals') as sink:
            stream = target.start('pg_dumpall', ['--roles-only', '--database', target.db])
            stderr = stream_into(sink, stream, 'pg_dumpall --roles-only', keep)
            if PG_DUMPALL_COMPLETE not in output[-256:]:
                raise CommandError('pg_dumpall --roles-only exited 0 but its output lacks the completion marker; '
                                   'the restore point was discarded', stderr=stderr)
            sink.facts.update({'roles': created_roles(output.decode('utf-8', errors='replace')),
                               'login_user': target.login_user})
