# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible.
"""The restore engine: the contract's procedure, without ever losing the live database.

The backup is verified in full before anything is stopped; it is restored into a scratch
database with errors stopping the restore; the scratch database is verified against the
backup; only then is it swapped in by renaming, in one transaction, so any failure
leaves the live database exactly as it was. Writers are restarted in every case.
"""

from __future__ import annotations

import re
import time

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backend import Backend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_reader import (
    BackupFile,
    select_backup,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._commands import PgTarget
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._database_restorer import (
    DatabaseRestorer,
    check_memory_setting,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    ConfigError,
    SupabaseBackupError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._gpg import Passphrase
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._sql import derived_name, quote_literal
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._writers import WriterControl


class RestoreSettings:
    """Validated options of one restore."""

    def __init__(self, params):
        self.src = select_backup(params)
        self.passphrase = Passphrase.from_params(params)
        self.confirm = params['confirm']
        self.keep_previous = params['keep_previous']
        self.maintenance_work_mem = params['maintenance_work_mem']
        self.maintenance_db = params['maintenance_db']
        self.target = PgTarget(**params)
        check_memory_setting(self.maintenance_work_mem)
        if self.target.db in ('template0', 'template1', self.maintenance_db):
            raise ConfigError('db %s cannot be restored: it is a template or the maintenance_db' % self.target.db)
        if params['stop_timeout'] < 0:
            raise ConfigError('stop_timeout must be 0 or more seconds')
        self.writers = WriterControl(self.target, params['stop_containers'], params.get('stop_compose_project'),
                                     params.get('stop_compose_services') or [], params['stop_timeout'])


class RestoreBackend(Backend):
    """Runs one restore; ``run()`` returns the result dict or raises a SupabaseBackupError."""

    settings_class = RestoreSettings

    def run(self):
        started = time.monotonic()
        settings = self.settings
        target = settings.target
        backup = BackupFile(settings.src, settings.passphrase)
        if not settings.confirm and not self.check_mode:
            raise ConfigError('confirm must be true: restoring %s replaces the current contents of %s'
                              % (backup.path, target.describe()))
        target.ensure_reachable()
        restorer = DatabaseRestorer(target, settings.maintenance_db, settings.maintenance_work_mem)
        if not restorer.database_exists(target.db):
            raise ConfigError('%s does not exist; nothing to restore over' % target.describe())
        expected = backup.verify()
        stamp = self.stamp()
        scratch = derived_name(target.db, '_restore_' + stamp)
        previous = derived_name(target.db, '_pre_restore_' + stamp)
        writers = settings.writers.running()
        if self.check_mode:
            return {
                'changed': True, 'src': backup.path, 'sha256': expected['sha256'], 'tables': expected['tables'],
                'stopped': writers, 'started': writers, 'scratch_database': scratch,
                'previous_database': previous if settings.keep_previous else None,
                'duration': round(time.monotonic() - started, 3),
                'msg': 'Would restore %s into %s (via %s), stopping %s' % (
                    backup.path, target.describe(), scratch, ', '.join(writers) or 'no containers'),
            }
        stopped = []
        try:
            settings.writers.stop(writers, stopped)
            result = self._restore(restorer, backup, expected, scratch, previous, stamp)
        except BaseException as exc:
            # Whatever happened, the writers run again.
            started_again, start_errors = self._start_writers(stopped)
            if isinstance(exc, SupabaseBackupError):
                exc.details.update(stopped=stopped, started=started_again)
                if start_errors:
                    exc.details['start_errors'] = start_errors
            raise
        started_again, start_errors = self._start_writers(stopped)
        if start_errors:
            raise SupabaseBackupError('the restore succeeded but %s could not be started again: %s'
                                      % (', '.join(sorted(start_errors)), '; '.join(start_errors.values())),
                                      stopped=stopped, started=started_again)
        result.update({
            'changed': True, 'src': backup.path, 'sha256': expected['sha256'],
            'stopped': stopped, 'started': started_again, 'duration': round(time.monotonic() - started, 3),
            'msg': 'Restored %s into %s%s' % (
                backup.path, target.describe(),
                ' (previous contents kept as %s)' % result['previous_database'] if result['previous_database'] else ''),
        })
        return result

    def _start_writers(self, stopped):
        started_again, start_errors = self.settings.writers.start(stopped)
        self.warnings.extend(self.settings.writers.warnings)
        for name, error in sorted(start_errors.items()):
            self.warnings.append('could not start %s again: %s' % (name, error))
        return started_again, start_errors

    def _restore(self, restorer, backup, expected, scratch, previous, stamp):
        target = self.settings.target
        sessions_ended = restorer.terminate_sessions(target.db)
        restorer.create_like(scratch, target.db)
        try:
            restorer.load(scratch, backup)
            findings = restorer.verify(scratch, expected)
            restorer.copy_database_settings(target.db, scratch)
            restorer.swap(target.db, scratch, previous)
        except BaseException as exc:
            try:
                restorer.drop(scratch)
            except SupabaseBackupError as drop_exc:
                self.warnings.append('could not drop the scratch database %s: %s' % (scratch, drop_exc.msg))
            if isinstance(exc, SupabaseBackupError) and 'not touched' not in exc.msg:
                exc.msg += '; the live database was not touched'
            raise
        kept = self._tidy_previous(restorer, previous, stamp)
        return {'tables': findings['row_counts'], 'indexes': findings['indexes'], 'verification': findings,
                'previous_database': kept, 'sessions_ended': sessions_ended}

    def _tidy_previous(self, restorer, previous, stamp):
        """Keep at most one previous copy: the one just made, unless keep_previous is false."""
        prefix = previous[:-len(stamp)]
        pattern = re.compile(re.escape(prefix) + r'\d{8}_\d{6}$')
        older = [row[0] for row in restorer.admin(
            'SELECT datname FROM pg_catalog.pg_database WHERE pg_catalog.left(datname, %d) = %s'
            % (len(prefix), quote_literal(prefix))) if pattern.match(row[0]) and row[0] != previous]
        doomed = older + ([] if self.settings.keep_previous else [previous])
        for name in doomed:
            try:
                restorer.drop(name)
            except SupabaseBackupError as exc:
                self.warnings.append('restore succeeded but the old copy %s was not dropped: %s' % (name, exc.msg))
        return previous if self.settings.keep_previous else None
