# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible.
"""The restore engine: the contract's procedure, without ever losing the live database.

The backup is loaded into a scratch database with errors stopping it, its checks riding on
the same read; the scratch database is verified against the backup; only then is it swapped
in by renaming, in one transaction, so any failure leaves the live database exactly as it was.
With ``writers_stop_at: swap`` (the default) the writers keep running meanwhile and are
stopped for the swap only, so they are down for seconds; with ``load`` they are stopped
first, as the contract's procedure does, and the backup is verified in full before that.
Writers are restarted in every case, and a durable record beside the backups lets the next
run finish a restore whose process died.
"""

from __future__ import annotations

import os
import re
import time

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backend import Backend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import DirectoryLock
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_kinds import LOGICAL
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._database_restorer import LoadSettings
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    ConfigError,
    SupabaseBackupError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._restore_journal import (
    RestoreJournal,
    journal_path,
    read_journal,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._sql import derived_name, quote_literal
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._writers import WriterControl


# What a restore names its scratch database; a previous copy (<db>_pre_restore_...) never matches.
_SCRATCH_NAME = re.compile(r'^(?!.*_pre_restore_\d{8}_\d{6}$).*_restore_\d{8}_\d{6}$')


def _since(began):
    return round(time.monotonic() - began, 3) if began is not None else None


class RestoreSettings(LoadSettings):
    """Validated options of one restore."""

    def __init__(self, params):
        super().__init__(params)
        self.confirm = params['confirm']
        self.keep_previous = params['keep_previous']
        self.writers_stop_at = params['writers_stop_at']
        self.jobs = params['restore_jobs']
        self.lock_timeout = params['lock_timeout']
        if self.writers_stop_at == 'swap' and not self.keep_previous:
            raise ConfigError('keep_previous: false cannot go with writers_stop_at: swap: what the writers wrote '
                              'while the backup loaded lives only in the previous database; keep it, or stop '
                              'the writers first with writers_stop_at: load')
        if self.jobs < 0:
            raise ConfigError('restore_jobs must be 0 (one per CPU of the database) or more')
        if self.lock_timeout < 0:
            raise ConfigError('lock_timeout must be 0 or more seconds')
        if self.target.db in ('template0', 'template1', self.maintenance_db):
            raise ConfigError('db %s cannot be restored: it is a template or the maintenance_db' % self.target.db)
        if params['stop_timeout'] < 0:
            raise ConfigError('stop_timeout must be 0 or more seconds')
        self.writers = WriterControl(self.target, params['stop_containers'], params.get('stop_compose_project'),
                                     params.get('stop_compose_services') or [], params['stop_timeout'])


class RestoreBackend(Backend):
    """Runs one restore; ``run()`` returns the result dict or raises a SupabaseBackupError."""

    settings_class = RestoreSettings
    metrics_kind = LOGICAL.metrics_kind
    metrics_operation = 'restore'

    def run(self):
        started = time.monotonic()
        settings = self.settings
        target = settings.target
        backup, restore_point = settings.open_backup()
        if not settings.confirm and not self.check_mode:
            raise ConfigError('confirm must be true: restoring %s replaces the current contents of %s'
                              % (backup.path, target.describe()))
        target.ensure_reachable()
        restorer = settings.restorer(settings.jobs)
        # The live database's owner, encoding and locale, for the scratch database; None: there is none.
        live_facts = restorer.database_facts(target.db)
        if live_facts is None:
            raise ConfigError('%s does not exist; nothing to restore over' % target.describe())
        directory = os.path.dirname(backup.path)
        journal_file = journal_path(directory, target)
        stamp = self.stamp()
        scratch = derived_name(target.db, '_restore_' + stamp)
        previous = derived_name(target.db, '_pre_restore_' + stamp)
        if self.check_mode:
            plan = self._plan(backup, read_journal(journal_file), scratch, previous, started)
            plan['restore_point'] = restore_point
            return plan
        with DirectoryLock(directory, settings.lock_timeout):
            interrupted = self._finish_interrupted(restorer, journal_file)
            # Stopping the writers first needs the backup checked first; otherwise the load checks it.
            expected = backup.verify() if settings.writers_stop_at == 'load' else None
            journal = RestoreJournal.begin(journal_file, target, backup.path, self.utc_now())
            outcome = {'stopped': [], 'downtime_began': None}
            try:
                result = self._restore(restorer, backup, expected, scratch, live_facts, previous, journal, outcome)
            except BaseException as exc:
                # Whatever happened, the writers run again.
                started_again, start_errors = self._start_writers(outcome['stopped'], journal)
                if isinstance(exc, SupabaseBackupError):
                    exc.details.update(stopped=outcome['stopped'], started=started_again,
                                       downtime=_since(outcome['downtime_began']))
                    if start_errors:
                        exc.details['start_errors'] = start_errors
                raise
            started_again, start_errors = self._start_writers(outcome['stopped'], journal)
            # Older copies are dropped once the writers run again: that is no part of their downtime.
            result['previous_database'] = self._tidy_previous(restorer, previous, stamp)
        downtime = _since(outcome['downtime_began'])
        if start_errors:
            raise SupabaseBackupError('the restore succeeded but %s could not be started again: %s'
                                      % (', '.join(sorted(start_errors)), '; '.join(start_errors.values())),
                                      stopped=outcome['stopped'], started=started_again, downtime=downtime)
        result.update({
            'changed': True, 'src': backup.path, 'restore_point': restore_point, 'size': backup.size,
            'stopped': outcome['stopped'], 'started': started_again,
            'downtime': downtime, 'writers_stop_at': settings.writers_stop_at,
            'interrupted_restore': interrupted, 'duration': round(time.monotonic() - started, 3),
            'msg': 'Restored %s into %s%s' % (
                backup.path, target.describe(),
                ' (previous contents kept as %s)' % result['previous_database'] if result['previous_database'] else ''),
        })
        return result

    def _plan(self, backup, interrupted, scratch, previous, started):
        """Check mode: the backup checked against its sidecars (in full without them), nothing changed."""
        settings = self.settings
        expected = backup.verify_checksum()
        writers = settings.writers.running()
        self._take_writer_warnings()
        message = 'Would restore %s into %s (via %s), stopping %s %s' % (
            backup.path, settings.target.describe(), scratch, ', '.join(writers) or 'no containers',
            'for the swap only' if settings.writers_stop_at == 'swap' else 'before the load')
        if interrupted:
            message += '; first finish the interrupted restore of %s (%s)' % (
                interrupted.get('src'), interrupted.get('started_at'))
        return {
            'changed': True, 'src': backup.path, 'sha256': expected['sha256'], 'tables': expected['tables'],
            'stopped': writers, 'started': writers, 'scratch_database': scratch,
            'previous_database': previous if settings.keep_previous else None,
            'writers_stop_at': settings.writers_stop_at, 'interrupted_restore': interrupted,
            'checksum_only': expected['indexes'] is None,
            'duration': round(time.monotonic() - started, 3), 'msg': message,
        }

    def _finish_interrupted(self, restorer, journal_file):
        """What an earlier restore whose process died left behind: its scratch database is dropped and
        the writers it stopped are started again. Returns what was done, or None."""
        record = read_journal(journal_file)
        if record is None:
            return None
        target = self.settings.target
        scratch = record.get('scratch_database')
        dropped = None
        if scratch and scratch != target.db and _SCRATCH_NAME.match(scratch) and restorer.database_exists(scratch):
            restorer.drop(scratch)
            dropped = scratch
        writers = [name for name in record.get('stopped_writers') or [] if isinstance(name, str)]
        started, errors = self.settings.writers.start(writers)
        if errors:
            raise SupabaseBackupError('an interrupted restore of %s left %s stopped and they cannot be started: %s'
                                      % (record.get('src'), ', '.join(sorted(errors)), '; '.join(errors.values())),
                                      journal=journal_file)
        RestoreJournal(journal_file, record).close()
        self.warnings.append('finished the restore of %s that started at %s and did not end: %s%s' % (
            record.get('src'), record.get('started_at'),
            'dropped its scratch database %s, ' % dropped if dropped else '',
            'started %s again' % ', '.join(started) if started else 'no writers to start'))
        return {'src': record.get('src'), 'started_at': record.get('started_at'), 'dropped': dropped,
                'started': started}

    def _start_writers(self, stopped, journal):
        started_again, start_errors = self.settings.writers.start(stopped)
        self._take_writer_warnings()
        for name, error in sorted(start_errors.items()):
            self.warnings.append('could not start %s again: %s' % (name, error))
        if not start_errors and not journal.record.get('scratch_left'):
            journal.close()
        return started_again, start_errors

    def _restore(self, restorer, backup, expected, scratch, live_facts, previous, journal, outcome):
        settings = self.settings
        target = settings.target
        sessions_ended = 0
        if settings.writers_stop_at == 'load':
            self._stop_writers(journal, outcome)
            sessions_ended = restorer.terminate_sessions(target.db)
        journal.note(scratch_database=scratch, phase='loading')
        restorer.create_like(scratch, target.db, live_facts)
        timings = {}
        try:
            began = time.monotonic()
            loaded = restorer.load(scratch, backup)
            expected = expected or loaded
            timings.update(restorer.timings)
            began = time.monotonic()
            findings = restorer.verify(scratch, dict(expected, indexes=loaded['indexes']))
            restorer.copy_database_settings(target.db, scratch)
            timings['verify'] = round(time.monotonic() - began, 3)
            if settings.writers_stop_at == 'swap':
                self._stop_writers(journal, outcome)
            journal.note(phase='swapping', previous_database=previous)
            began = time.monotonic()
            restorer.swap(target.db, scratch, previous)
            timings['swap'] = round(time.monotonic() - began, 3)
        except BaseException as exc:
            try:
                restorer.drop(scratch)
            except SupabaseBackupError as drop_exc:
                journal.note(scratch_left=True)
                self.warnings.append('could not drop the scratch database %s: %s' % (scratch, drop_exc.msg))
            if isinstance(exc, SupabaseBackupError) and 'not touched' not in exc.msg:
                exc.msg += '; the live database was not touched'
            raise
        journal.note(phase='swapped')
        return {'sha256': expected['sha256'], 'tables': findings['row_counts'], 'indexes': findings['indexes'],
                'verification': findings, 'previous_database': previous, 'sessions_ended': sessions_ended,
                'load': loaded['load'], 'timings': timings}

    def _take_writer_warnings(self):
        self.warnings.extend(self.settings.writers.warnings)
        del self.settings.writers.warnings[:]

    def _stop_writers(self, journal, outcome):
        writers = self.settings.writers
        running = writers.running()
        self._take_writer_warnings()
        journal.note(stopped_writers=running, phase='stopping writers')
        outcome['downtime_began'] = time.monotonic()
        writers.stop(running, outcome['stopped'])

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
