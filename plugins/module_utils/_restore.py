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

A restore point's other components (``components``) follow the same rule: every selected part
is checked against the manifest before anything changes; the roles the cluster lacks are created
first (_globals, phase 1); each extra database goes through its own scratch database and all the
databases are swapped in together, in one transaction; only then do the roles get the backup's
attributes, passwords and memberships (phase 2). The file components follow (COMPONENT_RESTORERS).

An extension that installs only in one named database (pg_cron, in ``cron.database_name``) cannot
be created in a scratch database: its entries are diverted out of the load
(_single_database_extensions) and run in the restored database right after the swap, in one
transaction, writers still stopped; if that fails the swap is undone in one transaction, so the
live databases are as they were. The target must offer the extension and name the database in
its setting: that is checked before anything changes.
"""

from __future__ import annotations

import os
import re
import time

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backend import Backend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import DirectoryLock
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_kinds import LOGICAL
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._database_restorer import LoadSettings
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._dump import check_superuser
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    ConfigError,
    SupabaseBackupError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._file_components import COMPONENT_RESTORERS
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._globals import (
    RolesScript,
    apply_roles_script,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._in_thread import InThread
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._restore_components import (
    FILE_COMPONENTS,
    RestorePointParts,
    check_components,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._restore_journal import (
    RestoreJournal,
    journal_path,
    read_journal,
    restore_running,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._single_database_extensions import (
    DivertedEntries,
    check_target_offers,
    diversion_needed,
    listed_extensions,
    remove_leftover_spools,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._sql import derived_name, quote_literal
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._writers import WriterControl


# What a restore names its scratch database; a previous copy (<db>_pre_restore_...) never matches.
_SCRATCH_NAME = re.compile(r'^(?!.*_pre_restore_\d{8}_\d{6}$).*_restore_\d{8}_\d{6}$')


# The file components' restorers (_file_components.COMPONENT_RESTORERS), by component (db_config,
# deployment, storage), run in that order
# after the databases and the roles, before the writers start again. Each is a class built as
# ``restorer(backend, parts)`` (parts: the RestorePointParts; the run's options in
# ``backend.settings.params``) with ``plan() -> dict`` (check mode: what would change, changing
# nothing) and ``restore() -> dict`` (raises a SupabaseBackupError, having put back what it changed).
# Every selected part was verified (sha256, decryption) before anything changed.


class DatabaseRestore:
    """One database of a restore: the part it comes from and the names around it."""

    def __init__(self, db, backup, settings, stamp, entry=None):
        self.db = db
        self.backup = backup
        # The backup's own settings (owner, locale, grants, ALTER DATABASE ... SET), None in older backups.
        self.settings = settings
        self.scratch = derived_name(db, '_restore_' + stamp)
        self.previous = derived_name(db, '_pre_restore_' + stamp)
        self.exists = True
        self.main = False
        self.loaded = None
        self.findings = None
        # The manifest's entry (None without a manifest): whether single-database extensions are diverted.
        self.divert = diversion_needed(entry)
        self.after_swap = listed_extensions(entry)
        self.diverter = None


def _since(began):
    return round(time.monotonic() - began, 3) if began is not None else None


class RestoreSettings(LoadSettings):
    """Validated options of one restore."""

    def __init__(self, params):
        super().__init__(params)
        self.params = params
        self.confirm = params['confirm']
        self.keep_previous = params['keep_previous']
        self.writers_stop_at = params['writers_stop_at']
        self.jobs = params['restore_jobs']
        self.lock_timeout = params['lock_timeout']
        self.components = check_components(['database'] if params.get('components') is None else params['components'])
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
        parts = RestorePointParts(backup.path, restore_point, settings.components)
        if not settings.confirm and not self.check_mode:
            raise ConfigError('confirm must be true: restoring %s replaces the current contents of %s'
                              % (backup.path, target.describe()))
        target.ensure_reachable()
        restorer = settings.restorer(settings.jobs)
        if 'database' in parts.components and not restorer.database_exists(target.db):
            raise ConfigError('%s does not exist; nothing to restore over' % target.describe())
        if 'globals' in parts.components:
            check_superuser(target)
        file_restorers = self._file_restorers(parts)
        self._check_single_database_extensions(parts, restorer)
        directory = os.path.dirname(backup.path)
        journal_file = journal_path(directory, target)
        stamp = self.stamp()
        if self.check_mode:
            record = read_journal(journal_file)
            if record is not None:
                # A record whose restore still runs is no dead run's.
                record = dict(record, running=restore_running(record, directory))
            plan = self._plan(parts, backup, stamp, restorer, file_restorers, record, started)
            plan['restore_point'] = restore_point
            return plan
        with DirectoryLock(directory, settings.lock_timeout):
            interrupted = self._finish_interrupted(restorer, journal_file)
            # Nothing changes before every selected part was checked; the main dump alone (today's
            # restore) is checked by its load, before its swap, unless the writers stop first.
            if parts.components != ['database']:
                parts.verify(settings.passphrase)
            databases = self._databases(parts, backup, stamp, restorer)
            roles = self._roles_script(parts)
            expected = backup.verify() if settings.writers_stop_at == 'load' and databases and databases[0].main \
                else None
            journal = RestoreJournal.begin(journal_file, target, backup.path, self.utc_now())
            outcome = {'stopped': [], 'downtime_began': None}
            try:
                result = self._restore(restorer, databases, expected, roles, file_restorers, journal, outcome)
            except BaseException as exc:
                # Whatever happened, the writers run again.
                started_again, start_errors = self._start_writers(outcome['stopped'], journal)
                if isinstance(exc, SupabaseBackupError):
                    exc.details.update(stopped=outcome['stopped'], started=started_again,
                                       downtime=_since(outcome['downtime_began']))
                    if start_errors:
                        exc.details['start_errors'] = start_errors
                raise
            # Older copies are dropped while the writers start: a session of its own, no part of their downtime.
            tidy = InThread(self._tidy_all_previous, restorer.own_session(), databases, stamp)
            started_again, start_errors = self._start_writers(outcome['stopped'], journal)
            result['previous_database'] = tidy.result()
            if roles is not None:
                self._restore_own_password(roles, result)
        downtime = _since(outcome['downtime_began'])
        if start_errors:
            raise SupabaseBackupError('the restore succeeded but %s could not be started again: %s'
                                      % (', '.join(sorted(start_errors)), '; '.join(start_errors.values())),
                                      stopped=outcome['stopped'], started=started_again, downtime=downtime)
        result.update({
            'changed': True, 'src': backup.path, 'restore_point': restore_point, 'size': backup.size,
            'components': parts.components, 'not_in_backup': parts.not_in_backup,
            'stopped': outcome['stopped'], 'started': started_again,
            'downtime': downtime, 'writers_stop_at': settings.writers_stop_at,
            'interrupted_restore': interrupted, 'duration': round(time.monotonic() - started, 3),
            'msg': self._message(backup, parts, result),
        })
        return result

    def _message(self, backup, parts, result):
        target = self.settings.target
        if 'database' in parts.components:
            message = 'Restored %s into %s%s' % (
                backup.path, target.describe(),
                ' (previous contents kept as %s)' % result['previous_database'] if result['previous_database'] else '')
        else:
            message = 'Restored %s of %s' % (', '.join(parts.components), parts.stem or backup.path)
        if parts.components != ['database']:
            message += '; components: %s' % ', '.join(parts.components)
        for database in result['databases']:
            if database.get('after_swap'):
                message += "; %s's objects restored into %s after the swap" % (
                    ', '.join(database['after_swap']['extensions']), database['database'])
        if parts.not_in_backup:
            message += '; not in the backup: %s' % ', '.join(parts.not_in_backup)
        return message

    def _file_restorers(self, parts):
        """The file components' restorers (COMPONENT_RESTORERS); a selected one without a restorer is refused."""
        restorers = []
        for component in FILE_COMPONENTS:
            if component not in parts.components:
                continue
            if component not in COMPONENT_RESTORERS:
                raise ConfigError('component %s cannot be restored by this version of the collection; nothing '
                                  'was changed' % component)
            restorers.append((component, COMPONENT_RESTORERS[component](self, parts)))
        return restorers

    def _check_single_database_extensions(self, parts, restorer):
        """Each database whose manifest lists pg_cron needs a target that offers it and whose
        cron.database_name names that database: its objects are created there after the swap."""
        if parts.manifest is None:
            return
        named = []
        if 'database' in parts.components:
            named.append((self.settings.target.db, parts.entry('database')))
        if 'extra_databases' in parts.components:
            named.extend((entry.get('database'), entry) for entry in parts.entries('extra_databases'))
        for database, entry in named:
            extensions = listed_extensions(entry)
            if extensions:
                check_target_offers(restorer, database, extensions, parts.stem)

    def _databases(self, parts, backup, stamp, restorer):
        """The databases to restore, the main one first; each extra database named by its part's manifest."""
        settings = self.settings
        databases = []
        if 'database' in parts.components:
            entry = parts.entry('database') if parts.manifest is not None else None
            main = DatabaseRestore(settings.target.db, backup, (entry or {}).get('database_settings'), stamp, entry)
            main.main = True
            databases.append(main)
        if 'extra_databases' in parts.components:
            for entry in parts.entries('extra_databases'):
                name = entry.get('database')
                reserved = (settings.target.db, settings.maintenance_db, 'template0', 'template1')
                if not isinstance(name, str) or not name or name in reserved:
                    raise ConfigError('restore point %s: part %s names no database this restore may replace (%r)'
                                      % (parts.stem, entry['name'], name))
                database = DatabaseRestore(name, settings.kind.open(entry['path'], settings.passphrase),
                                           entry.get('database_settings'), stamp, entry)
                database.exists = restorer.database_exists(name)
                databases.append(database)
        return databases

    def _roles_script(self, parts):
        """The globals part's statements (read before anything changes), or None."""
        if 'globals' not in parts.components:
            return None
        entry = parts.entry('globals')
        part = self.settings.kind.open(entry['path'], self.settings.passphrase)
        text = b''.join(part.sql_chunks()).decode('utf-8')
        return RolesScript(text, entry['name'])

    def _plan(self, parts, backup, stamp, restorer, file_restorers, interrupted, started):
        """Check mode: every selected part checked (the main dump by its checksum sidecar, in full without
        one), nothing changed."""
        settings = self.settings
        expected = backup.verify_checksum() if 'database' in parts.components else None
        parts.verify(settings.passphrase, [component for component in parts.components if component != 'database'])
        databases = self._databases(parts, backup, stamp, restorer)
        roles = self._roles_script(parts)
        writers = settings.writers.running() if databases else []
        self._take_writer_warnings()
        main = databases[0] if databases and databases[0].main else None
        message = 'Would restore %s of %s' % (', '.join(parts.components), parts.stem or backup.path)
        if main is not None:
            message = 'Would restore %s into %s (via %s)' % (backup.path, settings.target.describe(), main.scratch)
        message += ', stopping %s %s' % (', '.join(writers) or 'no containers',
                                         'for the swap only' if settings.writers_stop_at == 'swap' else 'before the load')
        created = []
        if roles is not None:
            created = roles.missing(restorer.roles())
            message += '; creating role(s) %s' % ', '.join(created) if created else ''
        new_databases = [database.db for database in databases if not database.exists]
        if new_databases:
            message += '; creating database(s) %s' % ', '.join(new_databases)
        for database in databases:
            if database.after_swap:
                message += "; %s's objects of %s restored after the swap" % (', '.join(database.after_swap), database.db)
        if parts.not_in_backup:
            message += '; not in the backup: %s' % ', '.join(parts.not_in_backup)
        if interrupted and interrupted['running']:
            message += '; the restore of %s that started at %s still runs' % (
                interrupted.get('src'), interrupted.get('started_at'))
        elif interrupted:
            message += '; first finish the interrupted restore of %s (%s)' % (
                interrupted.get('src'), interrupted.get('started_at'))
        return {
            'changed': True, 'src': backup.path, 'sha256': expected['sha256'] if expected else None,
            'tables': expected['tables'] if expected else {},
            'components': parts.components, 'not_in_backup': parts.not_in_backup,
            'databases': [self._database_plan(database) for database in databases],
            'roles_created': created, 'files': dict((component, restorer_.plan()) for component, restorer_ in file_restorers),
            'stopped': writers, 'started': writers,
            'scratch_database': main.scratch if main else None,
            'previous_database': main.previous if main and settings.keep_previous else None,
            'writers_stop_at': settings.writers_stop_at, 'interrupted_restore': interrupted,
            'checksum_only': expected is not None and expected['indexes'] is None,
            'duration': round(time.monotonic() - started, 3), 'msg': message,
        }

    def _database_plan(self, database):
        return {'database': database.db, 'scratch_database': database.scratch, 'created': not database.exists,
                'after_swap': database.after_swap or [],
                'previous_database': database.previous if database.exists and self.settings.keep_previous else None,
                'settings_from': 'backup' if database.settings is not None else 'live'}

    def _finish_interrupted(self, restorer, journal_file):
        """What an earlier restore whose process died left behind: its scratch databases are dropped and
        the writers it stopped are started again. Returns what was done, or None."""
        record = read_journal(journal_file)
        if record is None:
            return None
        target = self.settings.target
        scratches = [record.get('scratch_database')] + list(record.get('scratch_databases') or [])
        dropped = []
        for scratch in scratches:
            if isinstance(scratch, str) and scratch != target.db and _SCRATCH_NAME.match(scratch) and \
                    scratch not in dropped and restorer.database_exists(scratch):
                restorer.drop(scratch)
                dropped.append(scratch)
        writers = [name for name in record.get('stopped_writers') or [] if isinstance(name, str)]
        started, errors = self.settings.writers.start(writers)
        if errors:
            raise SupabaseBackupError('an interrupted restore of %s left %s stopped and they cannot be started: %s'
                                      % (record.get('src'), ', '.join(sorted(errors)), '; '.join(errors.values())),
                                      journal=journal_file)
        RestoreJournal(journal_file, record).close()
        # Its diverted entries (pg_cron's) on disk go; had it swapped already, the restored database lacks them.
        remove_leftover_spools(os.path.dirname(journal_file))
        self.warnings.append('finished the restore of %s that started at %s and did not end: %s%s%s' % (
            record.get('src'), record.get('started_at'),
            'dropped its scratch database %s, ' % ', '.join(dropped) if dropped else '',
            'started %s again' % ', '.join(started) if started else 'no writers to start',
            "; it ended after the swap, before pg_cron's objects were restored: the live database lacks them "
            "(its previous contents are kept as %s)" % record.get('previous_database')
            if record.get('phase') == 'restoring after the swap' else ''))
        return {'src': record.get('src'), 'started_at': record.get('started_at'),
                'dropped': dropped[0] if len(dropped) == 1 else (dropped or None), 'started': started}

    def _start_writers(self, stopped, journal):
        started_again, start_errors = self.settings.writers.start(stopped)
        self._take_writer_warnings()
        for name, error in sorted(start_errors.items()):
            self.warnings.append('could not start %s again: %s' % (name, error))
        if not start_errors and not journal.record.get('scratch_left'):
            journal.close()
        return started_again, start_errors

    def _restore(self, restorer, databases, expected, roles, file_restorers, journal, outcome):
        settings = self.settings
        target = settings.target
        result = {'sha256': None, 'tables': {}, 'indexes': [], 'verification': None, 'previous_database': None,
                  'sessions_ended': 0, 'load': None, 'timings': {}, 'databases': [], 'roles_created': [],
                  'roles_changed': [], 'roles_kept': [], 'files': {}}
        if roles is not None:
            # Phase 1: the roles the databases' dumps name must exist; CREATE ROLE only.
            sql, created = roles.phase_one(restorer.roles())
            apply_roles_script(target, settings.maintenance_db, sql, 'creating the roles of the backup')
            result['roles_created'] = created
        if databases:
            if settings.writers_stop_at == 'load':
                self._stop_writers(journal, outcome)
                result['sessions_ended'] = restorer.terminate_sessions(
                    *[database.db for database in databases if database.exists])
            self._swap_in(restorer, databases, expected, journal, outcome, result)
        if roles is not None:
            # Phase 2, only now that every database is in place: one transaction, all or nothing.
            sql, changed = roles.phase_two(keep=target.login_user)
            apply_roles_script(target, settings.maintenance_db, sql, 'giving the roles their attributes, passwords '
                               'and memberships from the backup (the databases are restored)')
            result['roles_changed'] = changed
            result['roles_kept'] = [role for role in roles.roles if role not in changed]
        for component, file_restorer in file_restorers:
            result['files'][component] = file_restorer.restore()
        if databases:
            journal.note(phase='swapped')
        return result

    def _swap_in(self, restorer, databases, expected, journal, outcome, result):
        """Every database loaded into its scratch database and verified, then all swapped in at once."""
        settings = self.settings
        journal.note(scratch_database=databases[0].scratch,
                     scratch_databases=[database.scratch for database in databases], phase='loading')
        created = []
        try:
            roles = restorer.roles() if any(database.settings is not None for database in databases) else set()
            for database in databases:
                self._load(restorer, database, roles, expected if database.main else None, created, result)
            if settings.writers_stop_at == 'swap':
                self._stop_writers(journal, outcome)
            journal.note(phase='swapping', previous_database=databases[0].previous)
            began = time.monotonic()
            swaps = [(database.db, database.scratch, database.previous if database.exists else None)
                     for database in databases]
            restorer.swap_all(swaps)
            result['timings']['swap'] = round(time.monotonic() - began, 3)
            self._after_swap(restorer, databases, swaps, journal, result)
        except BaseException as exc:
            for scratch in created:
                try:
                    restorer.drop(scratch)
                except SupabaseBackupError as drop_exc:
                    journal.note(scratch_left=True)
                    self.warnings.append('could not drop the scratch database %s: %s' % (scratch, drop_exc.msg))
            if isinstance(exc, SupabaseBackupError) and 'not touched' not in exc.msg and 'after_swap' not in exc.details:
                exc.msg += '; the live database%s not touched' % (' was' if len(databases) == 1 else 's were')
            raise
        finally:
            for database in databases:
                if database.diverter is not None:
                    database.diverter.close()

    def _after_swap(self, restorer, databases, swaps, journal, result):
        """The diverted entries (pg_cron's) in each restored database, now under its live name; on any failure
        the swap is undone, so the live databases are as they were."""
        diverted = [database for database in databases if database.diverter is not None]
        if not diverted:
            return
        journal.note(phase='restoring after the swap')
        try:
            for database in diverted:
                began = time.monotonic()
                counts = restorer.run_diverted(database.db, database.diverter)
                entry = next(item for item in result['databases'] if item['database'] == database.db)
                entry['after_swap'] = {'extensions': database.diverter.found, 'tables': counts,
                                       'duration': round(time.monotonic() - began, 3)}
        except SupabaseBackupError as exc:
            what = "%s's objects" % ', '.join(database.diverter.found or ['the diverted'])
            try:
                restorer.unswap_all(swaps)
            except SupabaseBackupError as undo_exc:
                kept = [previous for _live, _scratch, previous in swaps if previous is not None]
                raise SupabaseBackupError(
                    'restoring %s into %s after the swap failed (%s) and undoing the swap failed too (%s): the '
                    'restored database%s live without them; the previous contents are kept as %s'
                    % (what, database.db, exc.msg, undo_exc.msg, ' is' if len(swaps) == 1 else 's are',
                       ', '.join(kept) or 'nothing'), after_swap=database.db) from None
            raise SupabaseBackupError(
                'restoring %s into %s after the swap failed, so the swap was undone and the live database%s put '
                'back as %s: %s' % (what, database.db, ' was' if len(swaps) == 1 else 's were',
                                    'it was' if len(swaps) == 1 else 'they were', exc.msg),
                after_swap=database.db, **exc.details) from None

    def _load(self, restorer, database, roles, expected, created, result):
        """One database into its scratch database: created with the backup's settings (the live one's in older
        backups), loaded, verified, given its settings."""
        settings = self.settings
        if database.settings is not None:
            skipped_owner = restorer.create_database(database.scratch, database.settings, roles)
            if skipped_owner:
                self.warnings.append('database %s: its owner %s in the backup does not exist; %s owns it (restore '
                                     'the globals component too)' % (database.db, skipped_owner,
                                                                     settings.target.login_user))
        else:
            restorer.create_like(database.scratch, database.db if database.exists else settings.maintenance_db)
        created.append(database.scratch)
        restorer.timings = {}
        # Closed by _swap_in on every path.
        database.diverter = DivertedEntries(os.path.dirname(database.backup.path)) if database.divert else None
        early = {}

        def beside_post_data(loaded_data, checks):
            # The data is in: written out and checked while the indexes are built.
            if settings.writers_stop_at == 'swap':
                settings.writers.flush_before_stop()
            early.update(restorer.verify(database.scratch, expected or loaded_data, database.diverter, only=checks))

        loaded = restorer.load(database.scratch, database.backup, database.diverter, beside_post_data)
        if settings.writers_stop_at == 'swap':
            settings.writers.flush_before_stop()  # what the index builds wrote
        if database.diverter is not None and not database.diverter.diverted:
            database.diverter.close()
            database.diverter = None
        timings = dict(restorer.timings)
        began = time.monotonic()
        findings = restorer.verify(database.scratch, dict(expected or loaded, indexes=loaded['indexes']),
                                   database.diverter, done=early)
        if database.settings is not None:
            missing = restorer.apply_database_settings(database.scratch, database.settings, roles)
            if missing:
                self.warnings.append('database %s: its settings and grants name role(s) %s that do not exist; those '
                                     'were left out' % (database.db, ', '.join(missing)))
        elif database.exists:
            restorer.copy_database_settings(database.db, database.scratch)
        timings['verify'] = round(time.monotonic() - began, 3)
        database.loaded, database.findings = loaded, findings
        result['databases'].append({
            'database': database.db, 'part': os.path.basename(database.backup.path), 'sha256': loaded['sha256'],
            'tables': findings['row_counts'], 'created': not database.exists,
            'previous_database': database.previous if database.exists and settings.keep_previous else None,
            'settings_from': 'backup' if database.settings is not None else ('live' if database.exists else 'none')})
        if database.main:
            result.update({'sha256': (expected or loaded)['sha256'], 'tables': findings['row_counts'],
                           'indexes': findings['indexes'], 'verification': findings, 'load': loaded['load'],
                           'timings': timings})

    def _take_writer_warnings(self):
        self.warnings.extend(self.settings.writers.warnings)
        del self.settings.writers.warnings[:]

    def _stop_writers(self, journal, outcome):
        writers = self.settings.writers
        writers.wait_for_flush()  # the writers still run: no part of their downtime
        running = writers.running()
        self._take_writer_warnings()
        journal.note(stopped_writers=running, phase='stopping writers')
        outcome['downtime_began'] = time.monotonic()
        writers.stop(running, outcome['stopped'])

    def _restore_own_password(self, roles, result):
        """The password of the role this restore connects as, from the backup, last: no later step of this run
        connects again, and a new host's services log in with the old deployment's password."""
        target = self.settings.target
        sql = roles.password_of(target.login_user)
        if sql is None:
            return
        try:
            apply_roles_script(target, self.settings.maintenance_db, sql,
                               'giving %s, the role this restore connects as, its password from the backup'
                               % target.login_user)
        except SupabaseBackupError as exc:
            self.warnings.append('the restore succeeded but %s' % exc.msg)
            return
        result['roles_kept'] = [role for role in result['roles_kept'] if role != target.login_user]
        result['password_restored'] = target.login_user

    def _tidy_all_previous(self, restorer, databases, stamp):
        """_tidy_previous for each restored database that existed; returns the main one's kept copy."""
        kept_main = None
        for database in databases:
            if database.exists:
                kept = self._tidy_previous(restorer, database.previous, stamp)
                if database.main:
                    kept_main = kept
        return kept_main

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
