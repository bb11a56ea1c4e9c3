# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible.
"""The contract's monthly validation: restore a backup into a staging database and query it.

The staging database is never the live one and is dropped afterwards, whatever happens.
A report (JSON and a readable summary) is written beside the backups in every case.

A restore point's other parts are validated too: every part's checksum (and decryption), each
extra database in a staging database of its own, and the roles' part read as a restore reads it
and compared with the manifest (roles are cluster-wide: they cannot be staged).

A staging database is never the one ``cron.database_name`` names, so pg_cron's entries cannot be
loaded there: they are taken out of the load (_single_database_extensions), their rows counted in
the stream and compared with the manifest's, and the report says what was checked but not loaded.
"""

from __future__ import annotations

import json
import os
import time

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backend import Backend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import (
    write_file_atomically,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_kinds import LOGICAL
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._database_restorer import LoadSettings
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import SupabaseBackupError, VerificationError
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._globals import RolesScript
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._restore_components import RestorePointParts
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._restore_points import REPORT_SUFFIX, SUMMARY_SUFFIX
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._single_database_extensions import (
    DivertedEntries,
    diversion_needed,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._sql import derived_name

REPORT_MODE = 0o600
CONTRACT_TABLES = ('knowledge_base', 'learned_constraints', 'feedback_audit_log')
# The contract's sample query builds its vector with "||", which pgvector 0.8 lacks; this one runs.
CONTRACT_VECTOR_QUERY = ('SELECT count(*) FROM public.match_knowledge('
                         'array_cat(ARRAY[0.1, 0.2], array_fill(0.0, ARRAY[1534]))::vector, 0.75, 3)')
CONTRACT_INDEX_QUERY = "SELECT indexname FROM pg_catalog.pg_indexes WHERE schemaname = 'public' ORDER BY 1"


class ValidateSettings(LoadSettings):
    """Validated options of one validation."""

    def __init__(self, params):
        super().__init__(params)
        self.report_dir = params.get('report_dir') or os.path.dirname(os.path.abspath(self.src))


def contract_queries(target, db):
    """The contract's validation queries, in a form that runs on pgvector 0.8."""
    counts = {}
    for table in CONTRACT_TABLES:
        rows = target.query('SELECT count(*) FROM public.%s' % table, db=db)
        counts[table] = int(rows[0][0])
    matches = target.query(CONTRACT_VECTOR_QUERY, db=db)
    indexes = [row[0] for row in target.query(CONTRACT_INDEX_QUERY, db=db)]
    return {'row_counts': counts, 'vector_search_rows': int(matches[0][0]), 'indexes': indexes}


def not_loaded_text(not_loaded):
    """'pg_cron: cron.job 2 rows, cron.job_run_details 1 row checked in the stream, not loaded into staging'."""
    return '%s%s: %s checked in the stream, not loaded into staging' % (
        '' if not_loaded['main'] else 'database %s, ' % not_loaded['database'], ', '.join(not_loaded['extensions']),
        ', '.join('%s %d row%s' % (table, rows, '' if rows == 1 else 's')
                  for table, rows in sorted(not_loaded['tables'].items())) or 'no table rows')


def summary_text(report):
    lines = ['Supabase backup validation: %s' % ('PASSED' if report['passed'] else 'FAILED'),
             'backup:   %s' % report['backup'],
             'sha256:   %s' % report.get('sha256'),
             'when:     %s (%.1f s)' % (report['validated_at'], report['duration'])]
    if report.get('error'):
        lines.append('error:    %s' % report['error'])
    for table, count in sorted((report.get('row_counts') or {}).items()):
        lines.append('rows:     %-40s %d' % (table, count))
    search = report.get('vector_search') or {}
    if search:
        lines.append('vector:   %s' % ('exact nearest neighbours %s' % search.get('neighbours')
                                       if search.get('checked') else search.get('reason')))
    for index in report.get('indexes') or []:
        lines.append('index:    %s' % index)
    for not_loaded in report.get('not_loaded') or []:
        lines.append('not loaded: %s' % not_loaded_text(not_loaded))
    for part in report.get('parts') or []:
        lines.append('part:     %-40s %s sha256 %s' % (part['name'], part['role'], part['sha256']))
    for database, counts in sorted((report.get('extra_databases') or {}).items()):
        lines.append('database: %s restored in staging, %d tables, %d rows'
                     % (database, len(counts), sum(counts.values())))
    roles = report.get('roles')
    if roles:
        lines.append('roles:    %d in the backup, as its manifest lists them; not on this server: %s'
                     % (roles['count'], ', '.join(roles['missing_here']) or 'none'))
    contract = report.get('contract_queries') or {}
    if contract:
        lines.append('contract: rows %s; sample vector query returned %d row(s); %d public indexes'
                     % (', '.join('%s=%d' % item for item in sorted(contract['row_counts'].items())),
                        contract['vector_search_rows'], len(contract['indexes'])))
    return '\n'.join(lines) + '\n'


class ValidateBackend(Backend):
    """Restores a backup into a staging database and validates it; fails when it does not restore."""

    settings_class = ValidateSettings
    metrics_kind = LOGICAL.metrics_kind
    metrics_operation = 'validate'

    def run(self):
        started = time.monotonic()
        # No report without a readable backup; the monitoring sees the failed run all the same.
        backup, restore_point = self.settings.open_backup()
        settings, target = self.settings, self.settings.target
        stamp = self.stamp()
        staging = derived_name(target.db, '_validate_' + stamp)
        report_path = os.path.join(settings.report_dir, os.path.basename(backup.path) + REPORT_SUFFIX)
        if self.check_mode:
            target.ensure_reachable()
            return {'changed': True, 'src': backup.path, 'restore_point': restore_point, 'staging_database': staging,
                    'report': report_path,
                    'msg': 'Would validate %s in staging database %s' % (backup.path, staging)}
        report = {'backup': backup.path, 'restore_point': restore_point, 'staging_database': staging, 'passed': False,
                  'validated_at': self.utc_now()}
        try:
            self._validate(backup, staging, report)
            report['passed'] = True
        except SupabaseBackupError as exc:
            report['error'] = exc.msg
            self._finish(report, started, report_path)
            exc.details.update({'report': report_path, 'src': backup.path})
            raise
        self._finish(report, started, report_path)
        message = 'Backup %s restored and validated in %s' % (backup.path, staging)
        for not_loaded in report.get('not_loaded') or []:
            message += '; %s' % not_loaded_text(not_loaded)
        report.update({'changed': True, 'report': report_path, 'src': backup.path, 'msg': message})
        return report

    def _validate(self, backup, staging, report):
        target = self.settings.target
        target.ensure_reachable()
        restorer = self.settings.restorer()
        restorer.create_like(staging, target.db)
        try:
            # The backup's own checks ride on the load's read of it.
            expected, findings = self._load(restorer, staging, backup, backup.manifest(), None, report)
            report['sha256'] = expected['sha256']
            report.update({'row_counts': findings['row_counts'], 'indexes': findings['indexes'],
                           'extensions': findings['extensions'], 'vector_search': findings['vector_search'],
                           'contract_queries': contract_queries(target, staging)})
        finally:
            restorer.drop(staging)
        self._validate_other_parts(backup, restorer, report)

    def _validate_other_parts(self, backup, restorer, report):
        """The restore point's other parts (see the module's doc); nothing without a v2 manifest."""
        settings = self.settings
        stem = settings.kind.stem_of(backup.path)
        parts = RestorePointParts(backup.path, stem, ['all']) if stem else None
        if parts is None or parts.manifest is None:
            return
        report['parts'] = parts.verify(settings.passphrase, [name for name in parts.components if name != 'database'])
        for entry in parts.entries('extra_databases'):
            name = entry.get('database') or entry['name']
            staging = derived_name(name, '_validate_' + self.stamp())
            restorer.create_like(staging, settings.maintenance_db)
            try:
                _loaded, findings = self._load(restorer, staging, settings.kind.open(entry['path'], settings.passphrase),
                                               entry, name, report)
            finally:
                restorer.drop(staging)
            report.setdefault('extra_databases', {})[name] = findings['row_counts']
        entry = parts.entry('globals')
        if entry is not None:
            part = settings.kind.open(entry['path'], settings.passphrase)
            script = RolesScript(b''.join(part.sql_chunks()).decode('utf-8'), entry['name'])
            if entry.get('roles') is not None and script.roles != entry['roles']:
                raise VerificationError('the roles of %s differ from its manifest\'s' % entry['name'])
            report['roles'] = {'count': len(script.roles), 'missing_here': script.missing(restorer.roles())}

    @staticmethod
    def _load(restorer, staging, backup, entry, database, report):
        """(what the load found, the staging database's findings); pg_cron's entries counted, not loaded
        (report['not_loaded'], ``database`` None for the main one)."""
        diverter = DivertedEntries(spool=False) if diversion_needed(entry) else None
        try:
            loaded = restorer.load(staging, backup, diverter)
            findings = restorer.verify(staging, loaded, diverter)
            # The load's read compared every table's rows in the stream, these too, with the manifest's.
            if diverter is not None and diverter.diverted:
                report.setdefault('not_loaded', []).append({
                    'database': database or (entry or {}).get('database'), 'main': database is None,
                    'extensions': diverter.found, 'tables': dict(diverter.tables)})
        finally:
            if diverter is not None:
                diverter.close()
        return loaded, findings

    def _finish(self, report, started, report_path):
        report['duration'] = round(time.monotonic() - started, 3)
        try:
            write_file_atomically(report_path, json.dumps(report, indent=2, sort_keys=True) + '\n', REPORT_MODE)
            write_file_atomically(report_path[:-len(REPORT_SUFFIX)] + SUMMARY_SUFFIX, summary_text(report), REPORT_MODE)
        except SupabaseBackupError as exc:
            self.warnings.append('validation report %s not written: %s' % (report_path, exc.msg))

    def metrics_size(self, result):
        """The size of the backup validated."""
        try:
            return os.path.getsize(result['src'])
        except OSError:
            return None
