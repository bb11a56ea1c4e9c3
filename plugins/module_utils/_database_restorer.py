# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible.
"""Loading a verified logical backup into a new database of the same server, and checking it.

Both the restore (scratch database, then swapped in) and the validation (staging database,
then dropped) use it; its SQL lives here too.
"""

from __future__ import annotations

import os
import re
import threading
import time

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_kinds import LOGICAL
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._commands import (
    PgTarget,
    feed_stream,
    last_line,
    without_row_data,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._database_settings import (
    LIST_SETTINGS,
    apply_statements,
    create_database_statement,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._docker import inspect_container
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._dump_stream import DumpInspector
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    CommandError,
    ConfigError,
    VerificationError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._gpg import Passphrase
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._in_thread import InThread
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._parallel_copy import (
    CopyHelper,
    CopySharing,
    HelperEnded,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._post_data import DumpSplitter
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._sql import quote_ident, quote_literal

# The checks of the data alone: the post-data section (indexes, constraints) does not change what they see.
DATA_CHECKS = ('row_counts', 'extensions')
# The exact half of the vector search, a check of the data too unless the section changes what a query sees;
# else whether the search can run at all (its function and table: pre-data).
EXACT_SEARCH = 'exact_search'
SEARCH_USABLE = 'search_usable'
# pgvector's highest ivfflat.probes; a scan takes at most the index's lists, so this makes it search them all.
IVFFLAT_MAX_PROBES = 32768
PSQL_LOAD_ARGS = ['--no-psqlrc', '--quiet', '--set', 'ON_ERROR_STOP=1']
MEMORY_SETTING = re.compile(r'^([0-9]+)(kB|MB|GB|TB)?$')
MEMORY_UNITS = {None: 1 << 10, 'kB': 1 << 10, 'MB': 1 << 20, 'GB': 1 << 30, 'TB': 1 << 40}
# Index builds may take this share of the memory the database may use; the rest keeps serving.
MAINTENANCE_MEMORY_SHARE = 4
MAX_AUTO_JOBS = 4
SWAP_ATTEMPTS = 3
VECTOR_FUNCTION = 'match_knowledge'
VECTOR_TABLE = 'knowledge_base'
VECTOR_COLUMN = 'embedding'
VECTOR_NEIGHBOURS = 5


def check_memory_setting(value):
    # It goes into PGOPTIONS, where a space would start another option.
    if not MEMORY_SETTING.match(value or ''):
        raise ConfigError('maintenance_work_mem %r is not a memory size such as 1GB or 512MB' % (value,))


class LoadSettings:
    """Options of every run that loads a logical backup into a new database: which backup, and where."""

    def __init__(self, params):
        self.kind = LOGICAL.with_prefix(params.get('prefix'))
        self.src = self.kind.select(params.get('backup_dir'), params.get('src'), params.get('restore_point'))
        self.passphrase = Passphrase.from_params(params)
        self.maintenance_work_mem = params['maintenance_work_mem']
        self.maintenance_db = params['maintenance_db']
        check_memory_setting(self.maintenance_work_mem)
        self.target = PgTarget(**params)

    def open_backup(self):
        """(the backup's reader, the restore point it belongs to or None); nothing is read yet."""
        backup = self.kind.open(self.src, self.passphrase)
        return backup, self.kind.stem_of(backup.path)

    def restorer(self, jobs=0):
        return DatabaseRestorer(self.target, self.maintenance_db, self.maintenance_work_mem, jobs)


def memory_bytes(value):
    """'1GB' -> bytes (PostgreSQL's units; a bare number is kB, as for maintenance_work_mem)."""
    match = MEMORY_SETTING.match(value)
    return int(match.group(1)) * MEMORY_UNITS[match.group(2)]


def database_resources(target):
    """(memory in bytes or None, CPUs) the database server may use: the DB container's limits, else
    its host's; in direct mode this node's when the server is local, else (None, None)."""
    if target.container:
        api = target.docker_api
        host_config = inspect_container(api, target.container).get('HostConfig') or {}
        info = api.info()
        memory = host_config.get('Memory') or info.get('MemTotal') or None
        cpus = info.get('NCPU') or None
        if host_config.get('NanoCpus'):
            cpus = max(1, host_config['NanoCpus'] // 10 ** 9)
        elif host_config.get('CpuQuota', 0) > 0 and host_config.get('CpuPeriod'):
            cpus = max(1, host_config['CpuQuota'] // host_config['CpuPeriod'])
        return memory, cpus
    if target.login_host not in (None, '', 'localhost', '127.0.0.1', '::1') and not str(target.login_host).startswith('/'):
        return None, None
    try:
        with open('/proc/meminfo', encoding='ascii') as handle:
            memory = next(int(line.split()[1]) * 1024 for line in handle if line.startswith('MemTotal:'))
    except (OSError, StopIteration, ValueError, IndexError):
        memory = None
    return memory, os.cpu_count()


def plan_sessions(maintenance_work_mem, jobs, memory, cpus):
    """(sessions, maintenance_work_mem per session in kB, parallel workers per build) for building
    post-data: ``jobs`` sessions (0: one per CPU, at most MAX_AUTO_JOBS), each with at most
    ``maintenance_work_mem`` and all of them with at most 1/MAINTENANCE_MEMORY_SHARE of ``memory``."""
    sessions = jobs or min(MAX_AUTO_JOBS, cpus or 1)
    per_session = memory_bytes(maintenance_work_mem)
    if memory:
        per_session = min(per_session, memory // MAINTENANCE_MEMORY_SHARE // sessions)
    # CPUs left over by the sessions go to each build's parallel workers.
    workers = max(0, (cpus or 1) // sessions - 1)
    return sessions, max(1024, per_session // 1024), workers


def load_failed(what, returncode, stderr):
    """The error of a psql that loaded data and failed: its stderr without the rows it may quote."""
    stderr = without_row_data(stderr)
    return CommandError('%s failed: %s' % (what, last_line(stderr) or 'psql exit %s' % returncode),
                        rc=returncode, stderr=stderr)


class DatabaseRestorer:
    """Loads a backup into a new database of the same server and checks it."""

    def __init__(self, target, maintenance_db, maintenance_work_mem, jobs=0):
        self.target = target
        self.maintenance_db = maintenance_db
        self.maintenance_work_mem = maintenance_work_mem
        self.jobs = jobs
        self.timings = {}

    def own_session(self):
        """The same restorer with a Docker client of its own, for another thread."""
        return DatabaseRestorer(self.target.copy(), self.maintenance_db, self.maintenance_work_mem, self.jobs)

    def admin(self, sql):
        return self.target.query(sql, db=self.maintenance_db)

    def database_exists(self, name):
        return bool(self.admin('SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s' % quote_literal(name)))

    def terminate_sessions(self, *databases):
        names = ', '.join(quote_literal(name) for name in databases)
        rows = self.admin('SELECT count(pg_catalog.pg_terminate_backend(pid)) FROM pg_catalog.pg_stat_activity '
                          'WHERE datname IN (%s) AND pid <> pg_catalog.pg_backend_pid()' % names)
        return int(rows[0][0]) if rows else 0

    def database_facts(self, name):
        """(owner, encoding, collate, ctype) of database ``name``, or None when it does not exist."""
        rows = self.admin(
            'SELECT pg_catalog.pg_get_userbyid(datdba), pg_catalog.pg_encoding_to_char(encoding), datcollate, datctype '
            'FROM pg_catalog.pg_database WHERE datname = %s' % quote_literal(name))
        return tuple(rows[0]) if rows else None

    def create_like(self, name, model, facts=None):
        """An empty database with the live one's owner, encoding and locale (``facts``: the model's
        database_facts() when the caller has them already)."""
        facts = facts or self.database_facts(model)
        if facts:
            owner, encoding, collate, ctype = facts
            self.admin('CREATE DATABASE %s WITH TEMPLATE template0 OWNER %s ENCODING %s LC_COLLATE %s LC_CTYPE %s'
                       % (quote_ident(name), quote_ident(owner), quote_literal(encoding),
                          quote_literal(collate), quote_literal(ctype)))
        else:
            self.admin('CREATE DATABASE %s WITH TEMPLATE template0' % quote_ident(name))

    def roles(self):
        """The roles of the cluster (an owner or grantee a backup names may be missing on a new host)."""
        return set(row[0] for row in self.admin('SELECT rolname FROM pg_catalog.pg_roles'))

    def create_database(self, name, settings, roles):
        """An empty database with a backup's owner, encoding and locale (_database_settings); returns the
        owner left out because it does not exist, or None."""
        statement, skipped_owner = create_database_statement(name, settings, roles)
        self.admin(statement)
        return skipped_owner

    def apply_database_settings(self, name, settings, roles):
        """A backup's connection limit, comment, grants and settings on database ``name``, in one transaction;
        returns the roles they name that do not exist (their lines are left out)."""
        statements, missing = apply_statements(name, settings, roles)
        if statements:
            self.admin('BEGIN; %s; COMMIT;' % '; '.join(statements))
        return missing

    def drop(self, name):
        self.admin('DROP DATABASE IF EXISTS %s WITH (FORCE)' % quote_ident(name))

    def load(self, name, backup, diverter=None, beside_post_data=None):
        """Load ``backup`` into database ``name`` in one read of the file, and return its findings.

        Schema and data go through one session; the indexes and constraints are then built by
        parallel sessions and the rest of the post-data section follows in one session. The
        backup's checks (checksum, gzip end, completion marker, row counts) ride on the same
        read and run before any post-data statement, so a damaged backup fails here. The load is
        not one transaction: on any failure the caller drops the database. A ``diverter``
        (_single_database_extensions.DivertedEntries) takes its entries out of what is loaded.
        ``beside_post_data(findings, checks)`` runs in a thread of its own while the post-data section is built
        (``checks``: those of the data that the section does not change); its failure is raised after that. A
        section holding anything that may change rows (planted DML, a function call) has it run after the section.
        """
        began = time.monotonic()
        memory, cpus = database_resources(self.target)
        sessions, memory_kb, workers = plan_sessions(self.maintenance_work_mem, self.jobs, memory, cpus)
        options = {'PGOPTIONS': '-c maintenance_work_mem=%dkB -c max_parallel_maintenance_workers=%d '
                                '-c synchronous_commit=off' % (memory_kb, workers)}
        inspector = DumpInspector()
        splitter = DumpSplitter(inspector, diverter=diverter)
        chunks, check = backup.sql_stream()
        findings = {}
        # A large table's rows are parsed by as many sessions as the post-data section gets.
        sharing = CopySharing(lambda header: self._copy_helper(name, header, splitter, options), sessions - 1)
        stream = sharing.chunks(chunk for chunk in splitter.first_session_chunks(
            chunks, on_start=lambda: backup.check_start(inspector),
            on_end=lambda: findings.update(check(inspector))) if chunk)
        try:
            transport, not_piped = self._psql(self.target, name, backup, stream, options, bulk=True)
        except HelperEnded:
            self._raise_helper_failure(backup, name, sharing.abort())
            raise CommandError('restoring %s into database %s failed: a session sharing the rows of %s stopped '
                               'reading' % (backup.path, name, ', '.join(sharing.shared_blocks))) from None
        except BaseException:
            sharing.abort()
            raise
        self._raise_helper_failure(backup, name, sharing.finish())
        if not findings:
            # psql ended well before the end of its input (a \q in the dump): nothing was checked.
            raise CommandError('restoring %s into database %s failed: psql stopped reading before the end of the '
                               'backup' % (backup.path, name))
        self.timings['load'] = round(time.monotonic() - began, 3)
        if diverter is not None:
            diverter.preamble = splitter.preamble()
        plan = splitter.plan
        beside = []

        def check_beside():
            # Once every constraint is built: building one locks its table against the checks' reads too.
            if beside_post_data is not None and plan.keeps_rows:
                search = EXACT_SEARCH if plan.keeps_reads_of('public.' + VECTOR_TABLE) else SEARCH_USABLE
                beside.append(InThread(beside_post_data, findings, DATA_CHECKS + (search,)))

        try:
            if plan is not None:
                began = time.monotonic()
                preamble = splitter.preamble()
                self._build_in_parallel(name, backup, plan.sessions(sessions, preamble), options, check_beside)
                self._psql(self.target, name, backup, [(preamble + plan.sequential).encode('utf-8')], options)
                self.timings['post_data'] = round(time.monotonic() - began, 3)
        except BaseException:
            for thread in beside:
                thread.join()  # the post-data failure is the one to report
            raise
        if beside:
            beside[0].result()
        elif beside_post_data is not None:
            beside_post_data(findings, DATA_CHECKS + (EXACT_SEARCH,))
        findings['load'] = {'transport': transport, 'not_piped': not_piped, 'rows_shared': sharing.shared_blocks,
                            'sessions': sessions if plan is not None else 1, 'maintenance_work_mem': '%dkB' % memory_kb,
                            'max_parallel_maintenance_workers': workers,
                            'parallel_entries': len(plan.parallel) if plan is not None else 0}
        return findings

    def _copy_helper(self, name, header, splitter, options):
        """A session of its own that runs the COPY statement ``header`` with the rows it is given."""
        stream, _transport, _not_piped = self.target.copy().start_bulk_input(
            'psql', PSQL_LOAD_ARGS + ['--dbname', name], env=options)
        return CopyHelper(stream, splitter.preamble().encode('utf-8') + header, feed_stream)

    @staticmethod
    def _raise_helper_failure(backup, name, outcomes):
        """Raise the first failure among helper sessions' outcomes ((rc, output, stderr) or an exception)."""
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
            returncode, _output, stderr = outcome
            if returncode != 0:
                raise load_failed('restoring %s into database %s' % (backup.path, name), returncode, stderr)

    def _build_in_parallel(self, name, backup, sessions, options, after_constraints):
        """Each session's (constraints, indexes) scripts, one after the other, in a session of its own; all sessions
        at once. ``after_constraints()`` runs once every session's constraints were built (never when one failed).
        The first failure is raised once all ended."""
        waiting = [sum(1 for constraints, _indexes in sessions if constraints)]
        lock = threading.Lock()

        def build(constraints, indexes):
            if constraints:
                self._psql(self.target.copy(), name, backup, [constraints.encode('utf-8')], options)
                with lock:
                    waiting[0] -= 1
                    if not waiting[0]:
                        after_constraints()
            if indexes:
                self._psql(self.target.copy(), name, backup, [indexes.encode('utf-8')], options)

        if not waiting[0]:
            after_constraints()
        all_ended([InThread(build, *scripts) for scripts in sessions])

    @staticmethod
    def _psql(target, name, backup, chunks, options, bulk=False):
        """Feed ``chunks`` to psql in database ``name``; returns (transport, why not through a pipe) of a
        ``bulk`` session, the one that reads the whole dump: its input may go past the Docker engine."""
        args = PSQL_LOAD_ARGS + ['--dbname', name]
        if bulk:
            stream, transport, not_piped = target.start_bulk_input('psql', args, env=options)
        else:
            stream, transport, not_piped = target.start('psql', args, with_input=True, env=options), None, None
        returncode, _output, stderr = feed_stream(stream, chunks)
        if returncode != 0:
            raise load_failed('restoring %s into database %s' % (backup.path, name), returncode, stderr)
        return transport, not_piped

    def copy_database_settings(self, source, destination):
        """Per-database settings, connection limit, grants and comment: pg_dump without --create omits them."""
        statements = [row[0] for row in self.admin(_DATABASE_SETTINGS_SQL % {
            'source': quote_literal(source), 'destination': quote_literal(destination),
            'list_settings': ', '.join(quote_literal(name) for name in LIST_SETTINGS)})]
        if statements:
            # One transaction: all of them or none (the scratch database is dropped on failure anyway).
            self.admin('; '.join(statements))
        return len(statements)

    def run_diverted(self, name, diverter):
        """The entries ``diverter`` took out of the load, in database ``name``, in one transaction; then their
        tables' rows are counted against the stream's."""
        returncode, _output, stderr = self.target.feed(
            'psql', PSQL_LOAD_ARGS + ['--single-transaction', '--file', '-', '--dbname', name], diverter.script_chunks())
        if returncode != 0:
            raise load_failed('%s in database %s' % (', '.join(diverter.found) or 'the diverted entries', name),
                              returncode, stderr)
        return _verify_row_counts(self.target, name, diverter.tables)

    def unswap_all(self, swaps):
        """Undo swap_all(``swaps``) in one transaction: each live -> scratch and previous -> live (a database
        that did not exist before goes back to its scratch name only)."""
        names = []
        renames = []
        for live, scratch, previous in swaps:
            names += [live] + ([previous] if previous is not None else [])
            renames.append('ALTER DATABASE %s RENAME TO %s; ' % (quote_ident(live), quote_ident(scratch)))
            if previous is not None:
                renames.append('ALTER DATABASE %s RENAME TO %s; ' % (quote_ident(previous), quote_ident(live)))
        self._rename_in_one(names, renames)

    def swap(self, live, scratch, previous):
        """Rename live -> previous and scratch -> live in one transaction, retried if sessions sneak in."""
        self.swap_all([(live, scratch, previous)])

    def swap_all(self, swaps):
        """Each (live, scratch, previous): live -> previous (when ``previous`` is not None: the live database
        exists) and scratch -> live, all in one transaction, retried if sessions sneak in."""
        names = []
        renames = []
        for live, scratch, previous in swaps:
            names += [live, scratch]
            if previous is not None:
                renames.append('ALTER DATABASE %s RENAME TO %s; ' % (quote_ident(live), quote_ident(previous)))
            renames.append('ALTER DATABASE %s RENAME TO %s; ' % (quote_ident(scratch), quote_ident(live)))
        try:
            self._rename_in_one(names, renames)
        except CommandError as exc:
            raise CommandError('swapping in the restored database failed, the live database was not '
                               'touched: %s' % exc.msg, **exc.details) from None

    def _rename_in_one(self, names, renames):
        """The renames in one transaction that first ends every session of ``names``; retried if sessions
        sneak in."""
        sql = ('BEGIN; '
               'SELECT count(pg_catalog.pg_terminate_backend(pid)) FROM pg_catalog.pg_stat_activity '
               'WHERE datname IN (%s) AND pid <> pg_catalog.pg_backend_pid(); %sCOMMIT;'
               % (', '.join(quote_literal(name) for name in names), ''.join(renames)))
        for attempt in range(1, SWAP_ATTEMPTS + 1):
            try:
                self.admin(sql)
                return
            except CommandError as exc:
                if 'being accessed by other users' not in exc.msg or attempt == SWAP_ATTEMPTS:
                    raise
                time.sleep(1)

    # Verification

    def verify(self, name, expected, diverter=None, only=None, done=None):
        """Compare the restored database with what the backup holds; returns the findings.

        The checks are independent, so each runs in a session of its own, all at once; the first
        failure (in the order row counts, extensions, indexes and vector search) is raised once all ended.
        What ``diverter`` took out of the load (its tables, its extensions) is left out here. ``only`` names
        checks of the data alone to run (DATA_CHECKS, and EXACT_SEARCH where the post-data section keeps what
        a query of the vector table sees, else SEARCH_USABLE), which return their findings as they are;
        ``done`` holds the findings of checks run before, not run again.
        """
        manifest = expected.get('manifest') or {}
        tables = expected['tables']
        extensions = manifest.get('extensions') or {}
        if diverter is not None:
            tables = dict((table, rows) for table, rows in tables.items() if table not in diverter.tables)
            extensions = dict((extension, version) for extension, version in extensions.items()
                              if extension not in diverter.found)
        checks = {
            'row_counts': lambda target: _verify_row_counts(target, name, tables),
            'extensions': lambda target: _verify_extensions(target, name, extensions),
            EXACT_SEARCH: lambda target: _exact_vector_search(target, name),
            SEARCH_USABLE: lambda target: _search_unusable(target, name),
        }
        done = done or {}
        if only is not None:
            keys = [key for key in only if key not in done]
            return dict(done, **dict(zip(keys, at_once(self.target, [checks[key] for key in keys]))))

        def indexes_and_search(target):
            # Once the indexes are built: one session, and the exact search beside it when it did not run before.
            exact = done.get(EXACT_SEARCH)
            if exact is None:
                reason = done[SEARCH_USABLE] if SEARCH_USABLE in done else _search_unusable(target, name)
                if reason:
                    exact = {'checked': False, 'reason': reason}
            if exact is None:
                (indexes, indexed, lists), exact = at_once(target, [
                    lambda session: _indexes_and_indexed_search(session, name, expected['indexes'], True),
                    lambda session: _exact_search(session, name)])
            else:
                indexes, indexed, lists = _indexes_and_indexed_search(
                    target, name, expected['indexes'], exact['checked'])
            return indexes, _judge_search(exact, indexed, lists)

        keys = [key for key in DATA_CHECKS if key not in done]
        results = at_once(self.target, [checks[key] for key in keys] + [indexes_and_search])
        findings = dict(done, **dict(zip(keys, results)))
        findings['indexes'], findings['vector_search'] = results[-1]
        findings.pop(EXACT_SEARCH, None)
        findings.pop(SEARCH_USABLE, None)
        return findings


def at_once(target, calls):
    """``call(target)`` for each call, each in a thread with a target (and Docker client) of its own;
    returns their results in order, or raises the first failure in order once all ended."""
    return all_ended([InThread(call, target.copy()) for call in calls])


def all_ended(runs):
    """The results of InThread ``runs`` in order once all ended; the first failure in order is raised."""
    for run in runs:
        run.join()
    return [run.result() for run in runs]


def _verify_row_counts(target, name, tables):
    if not tables:
        return {}
    ordered = sorted(tables)
    sql = ' UNION ALL '.join('SELECT %d, count(*) FROM ONLY %s' % (number, table)
                             for number, table in enumerate(ordered))
    actual = dict((ordered[int(number)], int(count)) for number, count in target.query(sql, db=name))
    wrong = ['%s: %s rows, backup has %s' % (table, actual.get(table), tables[table])
             for table in ordered if actual.get(table) != tables[table]]
    if wrong:
        raise VerificationError('the restored database does not match the backup: %s' % '; '.join(wrong[:5]),
                                mismatches=wrong)
    return actual


def _verify_extensions(target, name, expected):
    installed = dict(target.query('SELECT extname, extversion FROM pg_catalog.pg_extension', db=name))
    missing = sorted(set(expected) - set(installed))
    if missing:
        raise VerificationError('extensions of the backup are missing after the restore: %s' % ', '.join(missing))
    return installed


def _search_unusable(target, name):
    """Why the vector search cannot run in database ``name`` (no function or table), or ''."""
    usable = target.query(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'public' AND p.proname = %s) AND pg_catalog.to_regclass(%s) IS NOT NULL"
        % (quote_literal(VECTOR_FUNCTION), quote_literal('public.' + VECTOR_TABLE)), db=name)
    if not usable or usable[0][0] != 't':
        return 'no public.%s function or %s table' % (VECTOR_FUNCTION, VECTOR_TABLE)
    return ''


def _exact_search(target, name):
    """The nearest neighbours of a stored vector through match_knowledge with index scans off: an exact search,
    which needs no index. Returns {'checked': True, 'exact': ids, 'own': the vector's own id}, or the findings of
    a search that found nothing to search for."""
    own = ', (SELECT id FROM public.%s WHERE %s IS NOT NULL ORDER BY id LIMIT 1)' % (VECTOR_TABLE, VECTOR_COLUMN)
    rows = target.query('SET enable_indexscan = off; SET enable_bitmapscan = off; ' + _search_sql(own), db=name)
    if not rows:
        return {'checked': False, 'reason': '%s holds no vectors' % VECTOR_TABLE}
    return {'checked': True, 'exact': [_as_id(row[0]) for row in rows], 'own': _as_id(rows[0][1])}


def _exact_vector_search(target, name):
    """_exact_search where the search can run, else why not ({'checked': False, 'reason': ...})."""
    reason = _search_unusable(target, name)
    return {'checked': False, 'reason': reason} if reason else _exact_search(target, name)


def _search_sql(extra_columns=''):
    probe = ('(SELECT %(column)s FROM public.%(table)s WHERE %(column)s IS NOT NULL ORDER BY id LIMIT 1)'
             % {'column': VECTOR_COLUMN, 'table': VECTOR_TABLE})
    return 'SELECT id%s FROM public.%s(%s, -1, %d)' % (extra_columns, VECTOR_FUNCTION, probe, VECTOR_NEIGHBOURS)


def _indexes_and_indexed_search(target, name, expected, search):
    """Every index of the backup present and valid; returns (the indexes, the neighbours found through the
    vector table's index when ``search``, else None, the lists of its IVFFlat index or 1).

    One statement, so it takes one session: the index rows, then the search's. A rebuilt IVFFlat index samples
    differently, so approximate results may legitimately differ from before the restore; with probes at
    their most (pgvector takes at most the index's lists) the search is exact.
    """
    sql = ("SELECT 'index', pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname), "
           "i.indisvalid AND i.indisready, CASE WHEN am.amname = 'ivfflat' AND i.indrelid = "
           "pg_catalog.to_regclass(%(table)s) THEN coalesce((SELECT substring(opt FROM 'lists=([0-9]+)') "
           "FROM pg_catalog.unnest(c.reloptions) opt WHERE opt LIKE 'lists=%%'), '100') END "
           "FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
           "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace JOIN pg_catalog.pg_am am ON am.oid = c.relam "
           "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
           % {'table': quote_literal('public.' + VECTOR_TABLE)})
    if search:
        sql = 'SET ivfflat.probes = %d; %s UNION ALL SELECT \'match\', id::text, NULL, NULL FROM (%s) search' % (
            IVFFLAT_MAX_PROBES, sql, _search_sql())
    rows = target.query(sql, db=name)
    present = dict((row[1], row[2] == 't') for row in rows if row[0] == 'index')
    missing = [index for index in expected if index not in present]
    invalid = sorted(index for index, valid in present.items() if not valid)
    if missing or invalid:
        raise VerificationError('indexes of the backup are missing or invalid after the restore: %s'
                                % ', '.join((missing + invalid)[:10]), missing=missing, invalid=invalid)
    indexed = [_as_id(row[1]) for row in rows if row[0] == 'match'] if search else None
    lists = [int(row[3]) for row in rows if row[0] == 'index' and row[3]]
    return sorted(present), indexed, lists[0] if lists else 1


def _judge_search(exact, indexed, lists):
    """The vector search's findings: the same neighbours through the index as by the exact search, and the
    stored vector first among them; a VerificationError otherwise."""
    if not exact['checked']:
        return exact
    if exact['exact'][0] != exact['own'] or sorted(indexed) != sorted(exact['exact']):
        raise VerificationError('vector search through %s is wrong after the restore: exact %s, with the index %s'
                                % (VECTOR_FUNCTION, exact['exact'], indexed))
    return {'checked': True, 'neighbours': exact['exact'], 'probes': lists}


def _as_id(text):
    return int(text) if text.isdigit() else text


_DATABASE_SETTINGS_SQL = '''
SELECT pg_catalog.format('ALTER DATABASE %%I CONNECTION LIMIT %%s', %(destination)s, d.datconnlimit)
  FROM pg_catalog.pg_database d WHERE d.datname = %(source)s AND d.datconnlimit <> -1
UNION ALL
SELECT pg_catalog.format('COMMENT ON DATABASE %%I IS %%L', %(destination)s, pg_catalog.shobj_description(d.oid, 'pg_database'))
  FROM pg_catalog.pg_database d WHERE d.datname = %(source)s AND pg_catalog.shobj_description(d.oid, 'pg_database') IS NOT NULL
UNION ALL
SELECT pg_catalog.format('REVOKE ALL ON DATABASE %%I FROM PUBLIC', %(destination)s)
  FROM pg_catalog.pg_database d WHERE d.datname = %(source)s AND d.datacl IS NOT NULL
UNION ALL
SELECT pg_catalog.format('GRANT %%s ON DATABASE %%I TO %%s%%s', a.privilege_type, %(destination)s,
         CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END,
         CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
  FROM pg_catalog.pg_database d, pg_catalog.aclexplode(d.datacl) a
 WHERE d.datname = %(source)s AND a.grantee <> d.datdba
UNION ALL
SELECT CASE WHEN s.setrole = 0
         THEN pg_catalog.format('ALTER DATABASE %%I SET %%I = %%s', %(destination)s, kv[1],
                CASE WHEN kv[1] IN (%(list_settings)s) THEN kv[2] ELSE pg_catalog.quote_literal(kv[2]) END)
         ELSE pg_catalog.format('ALTER ROLE %%I IN DATABASE %%I SET %%I = %%s', pg_catalog.pg_get_userbyid(s.setrole),
                %(destination)s, kv[1],
                CASE WHEN kv[1] IN (%(list_settings)s) THEN kv[2] ELSE pg_catalog.quote_literal(kv[2]) END)
       END
  FROM pg_catalog.pg_db_role_setting s
  JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase AND d.datname = %(source)s,
       pg_catalog.unnest(s.setconfig) cfg,
       LATERAL (SELECT pg_catalog.regexp_match(cfg, '^([^=]+)=(.*)$', 's') AS kv) m(kv)
'''
