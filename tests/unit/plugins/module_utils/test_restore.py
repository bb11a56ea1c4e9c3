"""RestoreBackend and DatabaseRestorer at the Docker/psql boundary (see tests/unit/fakes.py).

Whatever fails, the live database keeps its name and its data, the scratch database is
dropped and every writer stopped is started again; a backup that fails its own verification
stops nothing at all. Every test runs in both modes (``writers_stop_at``): ``swap`` (the
writers stop for the swap only) and ``load`` (the contract's order).
"""

import copy
import gzip
import os
import threading

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _database_restorer, _restore
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import DirectoryLock
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    BackupFileError,
    CommandError,
    ConfigError,
    DockerError,
    SupabaseBackupError,
    VerificationError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import restore_argument_spec
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._restore_journal import (
    RestoreJournal,
    journal_path,
    read_journal,
)
from ansible_collections.cortexreview.supabase_backup.tests.unit.fakes import (
    FakeDatabase,
    FakeDockerAPI,
    FakeServer,
    api_error,
    dump_text,
    ended_process,
    install,
    module_params,
    write_backup,
)

NOW = 1_800_000_000
WRITERS = ['api', 'worker']
BACKUP_TABLES = {'public.t': 3, 'public.u': 2}
BACKUP_INDEXES = ['public.t_idx']
LIVE = FakeDatabase(tables={'public.t': 1}, indexes=['public.t_idx'], extensions={'vector': '0.8.0'})


class World:
    """The fake server and Docker engine one restore runs against."""

    def __init__(self, monkeypatch, tmp_path, mode):
        self.mode = mode
        self.server = FakeServer({'postgres': copy.deepcopy(LIVE), 'template1': FakeDatabase()})
        self.docker = FakeDockerAPI()
        for name in WRITERS:
            self.docker.add(name)
        install(monkeypatch, self.server, self.docker)
        monkeypatch.setattr(_database_restorer.time, 'sleep', lambda seconds: None)
        self.src = write_backup(tmp_path / 'supabase_backup_20260101_000000.sql.gz',
                                dump_text(BACKUP_TABLES, BACKUP_INDEXES, {'vector': '0.8.0'}))
        self.before = copy.deepcopy(self.server.databases)

    def backend(self, check_mode=False, **options):
        params = module_params(restore_argument_spec(), **dict(
            {'src': self.src, 'confirm': True, 'container': 'fake-db', 'stop_containers': WRITERS,
             'writers_stop_at': self.mode}, **options))
        return _restore.RestoreBackend.from_params(params, check_mode=check_mode, clock=lambda: NOW)

    def run(self, **options):
        backend = self.backend(**options)
        return backend, backend.run()

    def fails(self, error_type, **options):
        backend = self.backend(**options)
        with pytest.raises(error_type) as caught:
            backend.run()
        return backend, caught.value

    @property
    def stamp(self):
        return self.backend(check_mode=True).stamp()

    def assert_live_untouched(self):
        assert self.server.databases == self.before, 'a database was created, renamed, changed or left behind'

    def assert_writers_started_again(self, error=None):
        assert self.docker.actions('start') == self.docker.actions('stop')
        assert all(info['State']['Running'] for info in self.docker.containers_by_name.values())
        if error is not None:
            assert error.details['started'] == error.details['stopped'] == self.docker.actions('stop')


@pytest.fixture(params=['swap', 'load'])
def world(request, monkeypatch, tmp_path):
    return World(monkeypatch, tmp_path, request.param)


# ------------------------------------------------------------------ success --

def test_restore_swaps_in_the_verified_copy_and_keeps_the_previous(world):
    backend, result = world.run()
    stamp = backend.stamp()
    databases = world.server.databases
    assert sorted(databases) == ['postgres', 'postgres_pre_restore_' + stamp, 'template1']
    assert databases['postgres'].tables == BACKUP_TABLES
    assert databases['postgres_pre_restore_' + stamp] == LIVE
    assert result['previous_database'] == 'postgres_pre_restore_' + stamp
    assert result['tables'] == BACKUP_TABLES and result['indexes'] == BACKUP_INDEXES
    assert result['stopped'] == result['started'] == WRITERS
    world.assert_writers_started_again()
    assert world.server.unmodelled == []


def test_both_renames_are_one_transaction(world):
    backend, _result = world.run()
    stamp = backend.stamp()
    renames = [statements for statements in world.server.transactions
               if any('RENAME TO' in statement for statement in statements)]
    assert len(renames) == 1, renames
    assert 'ALTER DATABASE "postgres" RENAME TO "postgres_pre_restore_%s"' % stamp in renames[0]
    assert 'ALTER DATABASE "postgres_restore_%s" RENAME TO "postgres"' % stamp in renames[0]


def test_writers_stop_when_their_mode_says(world):
    """load: before the scratch database is made; swap: after it was loaded and verified, before the swap."""
    at_stop = []
    world.docker.on_stop = lambda name: at_stop.append((len(world.server.executed('^CREATE DATABASE')),
                                                        len(world.server.executed('count\\(\\*\\) FROM ONLY')),
                                                        len(world.server.executed('RENAME'))))
    _backend, result = world.run()
    assert at_stop == ([(0, 0, 0)] * 2 if world.mode == 'load' else [(1, 1, 0)] * 2)
    assert result['writers_stop_at'] == world.mode
    assert 0 <= result['downtime'] < result['duration']


def test_the_dump_is_loaded_with_errors_stopping_it_and_its_memory_sized(world):
    world.run(maintenance_work_mem='256MB')
    # the fake server itself asserts ON_ERROR_STOP=1 on every load; 8 GiB / 4 / 2 sessions leaves 256MB whole
    assert world.server.executed('PGOPTIONS=-c maintenance_work_mem=262144kB')


def test_the_memory_of_the_index_builds_is_a_quarter_of_the_host_s_at_most(world):
    world.run(maintenance_work_mem='4GB')
    assert world.server.executed('PGOPTIONS=-c maintenance_work_mem=%dkB ' % ((8 << 30) // 4 // 2 // 1024))


def test_keep_previous_false_drops_every_previous_copy(world):
    world.server.databases['postgres_pre_restore_20200101_000000'] = FakeDatabase()
    world.server.databases['postgres_pre_restore_notes'] = FakeDatabase()  # not ours: kept
    _backend, result = world.run(keep_previous=False, writers_stop_at='load')
    assert result['previous_database'] is None
    assert sorted(world.server.databases) == ['postgres', 'postgres_pre_restore_notes', 'template1']


def test_only_the_newest_previous_copy_is_kept(world):
    world.server.databases['postgres_pre_restore_20200101_000000'] = FakeDatabase()
    backend, _result = world.run()
    assert sorted(world.server.databases) == ['postgres', 'postgres_pre_restore_' + backend.stamp(), 'template1']


def test_check_mode_stops_nothing_and_creates_nothing(world):
    result = world.backend(check_mode=True, confirm=False).run()
    assert result['msg'].startswith('Would restore') and result['stopped'] == WRITERS
    assert world.docker.actions('stop') == []
    assert world.server.executed('CREATE DATABASE|RENAME|DROP') == []
    world.assert_live_untouched()


# ------------------------------------------- a bad backup stops nothing at all --

@pytest.mark.parametrize('damage,message', [
    (lambda data: data[:len(data) // 2], 'truncated'),
    (lambda data: gzip.compress(dump_text(BACKUP_TABLES, complete=False).encode()), 'completion marker'),
    (lambda data: gzip.compress(b'hello, not a dump\n'), 'pg_dump'),
    (gzip.decompress, 'not gzip'),
])
def test_a_backup_failing_its_verification_stops_nothing(world, damage, message):
    with open(world.src, 'rb') as handle:
        data = handle.read()
    write_backup_bytes(world.src, damage(data))
    _backend, error = world.fails(BackupFileError)
    assert message in error.msg
    assert world.docker.actions('stop') == []
    if world.mode == 'load':
        # verified in full before anything
        assert world.server.executed('CREATE DATABASE|RENAME|DROP|terminate') == []
    else:
        # checked on the load's own read: its scratch database is dropped again
        assert world.server.executed('RENAME|terminate') == []
    world.assert_live_untouched()
    assert [name for name in os.listdir(os.path.dirname(world.src)) if name.startswith('.cortexreview-restore')] == []


def write_backup_bytes(path, data):
    with open(path, 'wb') as handle:
        handle.write(data)


def test_a_checksum_mismatch_stops_nothing(world):
    write_backup_bytes(world.src + '.sha256', ('0' * 64 + '  x\n').encode())
    _backend, error = world.fails(BackupFileError)
    assert 'checksum' in error.msg
    assert world.docker.actions('stop') == []
    world.assert_live_untouched()


def test_without_confirm_nothing_happens(world):
    _backend, error = world.fails(ConfigError, confirm=False)
    assert 'confirm must be true' in error.msg
    assert world.docker.calls == [] and world.server.log == []


def test_a_missing_live_database_is_refused(world):
    _backend, error = world.fails(ConfigError, db='absent')
    assert 'does not exist' in error.msg
    assert world.docker.actions('stop') == []


# --------------------------------- failures after the writers were stopped --

def test_a_failing_load_drops_the_scratch_database_and_starts_the_writers(world):
    world.server.load_error = (3, 'psql:<stdin>:42: ERROR:  division by zero')
    _backend, error = world.fails(CommandError)
    assert 'division by zero' in error.msg and 'live database was not touched' in error.msg
    world.assert_live_untouched()
    world.assert_writers_started_again(error)


def test_a_restored_database_with_other_row_counts_is_never_swapped_in(world):
    world.server.load_tamper = lambda database: database.tables.update({'public.u': 1})
    _backend, error = world.fails(VerificationError)
    assert 'does not match the backup' in error.msg and 'public.u: 1 rows, backup has 2' in error.msg
    assert 'live database was not touched' in error.msg
    assert world.server.executed('RENAME') == []
    world.assert_live_untouched()
    world.assert_writers_started_again(error)


def test_older_previous_copies_are_dropped_beside_the_writers_start(world):
    """Dropping an older copy (a whole database) begins after the swap, in a session of its own while the
    writers start: no part of their downtime, and no wait after their start either."""
    world.server.databases['postgres_pre_restore_20200101_000000'] = FakeDatabase()
    drop_began = threading.Event()
    swapped_at_drop, drop_seen_at_start = [], []
    execute, start = world.server.execute, world.docker.start

    def dropping(db, sql):
        if sql.startswith('DROP DATABASE') and 'pre_restore_2020' in sql:
            swapped_at_drop.append(bool(world.server.executed('RENAME')))
            drop_began.set()
        return execute(db, sql)

    def starting(name):
        drop_seen_at_start.append(drop_began.wait(5))
        return start(name)

    world.server.execute = dropping
    world.docker.start = starting
    _backend, result = world.run()
    assert swapped_at_drop == [True]
    assert drop_seen_at_start == [True, True]
    assert 'postgres_pre_restore_20200101_000000' not in world.server.databases
    assert result['previous_database'] in world.server.databases
    world.assert_writers_started_again()


def test_a_data_check_failure_is_reported_before_the_index_checks(world):
    """The row counts are checked beside the index builds; with the indexes wrong too, the row counts' failure
    is raised once the builds ended, and the index checks do not run."""
    world.server.load_tamper = lambda database: (database.tables.update({'public.u': 1}), database.indexes.clear())
    _backend, error = world.fails(VerificationError)
    assert 'public.u: 1 rows, backup has 2' in error.msg
    assert world.server.executed('i.indisvalid AND i.indisready') == []
    assert world.server.executed('RENAME') == []
    world.assert_writers_started_again(error)


def test_a_restored_database_missing_an_index_is_never_swapped_in(world):
    world.server.load_tamper = lambda database: database.indexes.clear()
    _backend, error = world.fails(VerificationError)
    assert 'public.t_idx' in error.msg
    world.assert_live_untouched()
    world.assert_writers_started_again(error)


def test_a_failure_between_the_two_renames_keeps_the_live_database(world):
    """The second rename fails after the first ran: the transaction takes the first back."""
    world.server.fail_on(r'RENAME TO "postgres"$', 'injected failure between the two renames')
    _backend, error = world.fails(CommandError)
    assert 'injected failure' in error.msg and 'live database was not touched' in error.msg
    assert world.server.executed(r'RENAME TO "postgres_pre_restore_')  # the first rename did run
    world.assert_live_untouched()
    world.assert_writers_started_again(error)


def test_the_swap_is_retried_while_sessions_sneak_in(world):
    world.server.fail_on(r'RENAME TO "postgres"$', 'database "postgres" is being accessed by other users', times=2)
    _backend, result = world.run()
    assert world.server.databases['postgres'].tables == BACKUP_TABLES
    assert result['previous_database'] in world.server.databases


def test_the_swap_gives_up_after_its_attempts(world):
    world.server.fail_on(r'RENAME TO "postgres"$', 'database "postgres" is being accessed by other users')
    _backend, error = world.fails(CommandError)
    assert 'being accessed by other users' in error.msg
    assert len(world.server.executed(r'RENAME TO "postgres";')) == _database_restorer.SWAP_ATTEMPTS
    world.assert_live_untouched()


def test_a_scratch_database_that_cannot_be_dropped_is_a_warning_beside_the_real_error(world):
    world.server.load_error = (3, 'psql:<stdin>:42: ERROR:  division by zero')
    world.server.fail_on(r'^DROP DATABASE IF EXISTS "postgres_restore_', 'cannot drop: disk on fire')
    backend, error = world.fails(CommandError)
    assert 'division by zero' in error.msg
    assert any('could not drop the scratch database' in warning for warning in backend.warnings)
    assert world.server.databases['postgres'] == LIVE
    world.assert_writers_started_again(error)


def test_a_writer_that_cannot_be_stopped_restarts_those_already_stopped(world):
    world.docker.stop_errors['worker'] = api_error('cannot kill container worker')
    _backend, error = world.fails(DockerError)
    assert 'cannot stop writer container worker' in error.msg
    assert error.details['stopped'] == ['api'] and error.details['started'] == ['api']
    assert world.docker.actions('start') == ['api']
    if world.mode == 'load':
        assert world.server.executed('CREATE DATABASE') == []
    world.assert_live_untouched()


def test_a_writer_that_cannot_be_started_again_fails_the_restore_after_the_swap(world):
    world.docker.start_errors['worker'] = api_error('port is already allocated')
    backend, error = world.fails(SupabaseBackupError)
    assert 'the restore succeeded but worker could not be started again' in error.msg
    assert error.details['started'] == ['api']
    assert world.server.databases['postgres'].tables == BACKUP_TABLES
    assert any('could not start worker again' in warning for warning in backend.warnings)


def test_an_unexpected_exception_still_starts_the_writers(world, monkeypatch):
    def bug(*_args):
        raise KeyError('surprise')

    monkeypatch.setattr(_database_restorer.DatabaseRestorer, 'copy_database_settings', bug)
    world.fails(KeyError)
    world.assert_live_untouched()
    world.assert_writers_started_again()


# ------------------------------------------------- an interrupted restore --

def test_the_next_restore_finishes_an_interrupted_one(world):
    """An earlier run died after stopping the writers and creating its scratch database."""
    scratch = 'postgres_restore_20200101_000000'
    world.server.databases[scratch] = FakeDatabase(tables={'public.t': 1})
    for name in WRITERS:
        world.docker.containers_by_name[name]['State']['Running'] = False
    target = world.backend().settings.target
    path = journal_path(os.path.dirname(world.src), target)
    RestoreJournal.begin(path, target, world.src, 'then').note(scratch_database=scratch, stopped_writers=WRITERS)
    backend, result = world.run()
    assert result['interrupted_restore'] == {'src': world.src, 'started_at': 'then', 'dropped': scratch,
                                             'started': WRITERS}
    assert any('did not end' in warning for warning in backend.warnings)
    assert scratch not in world.server.databases
    assert all(info['State']['Running'] for info in world.docker.containers_by_name.values())
    assert read_journal(path) is None


@pytest.mark.parametrize('named', ['postgres', 'postgres_pre_restore_20200101_000000'])
def test_a_record_naming_the_live_database_or_a_previous_copy_never_drops_it(world, named):
    world.server.databases.setdefault(named, FakeDatabase())
    target = world.backend().settings.target
    path = journal_path(os.path.dirname(world.src), target)
    RestoreJournal.begin(path, target, world.src, 'then').note(scratch_database=named)
    _backend, result = world.run()
    assert result['interrupted_restore']['dropped'] is None
    # Nothing of it is dropped before the restore's own work (an older previous copy goes at its end).
    log = [sql for _program, _db, sql in world.server.log]
    first_create = next(number for number, sql in enumerate(log) if sql.startswith('CREATE DATABASE'))
    assert not any(sql.startswith('DROP DATABASE IF EXISTS "%s"' % named) for sql in log[:first_create])
    assert world.server.databases['postgres'].tables == BACKUP_TABLES


@pytest.mark.parametrize('writer, held, running', [
    ('this process', False, True),
    ('an ended process', False, False),
    # A backup holding the directory does not hide a dead restore.
    ('an ended process', True, False),
    # A record of an older release names no process: the directory's lock answers.
    ('an older release', True, True),
    ('an older release', False, False),
])
def test_check_mode_tells_a_dead_restores_record_from_a_running_ones(world, writer, held, running):
    """The role starts the writers of a record only when its restore no longer runs: a running restore's
    writers stay stopped."""
    target = world.backend().settings.target
    directory = os.path.dirname(world.src)
    path = journal_path(directory, target)
    journal = RestoreJournal.begin(path, target, world.src, 'then')
    if writer == 'an ended process':
        pid, identity = ended_process()
        journal.note(pid=pid, process=identity)
    elif writer == 'an older release':
        journal.record.pop('process')
    journal.note(stopped_writers=WRITERS)
    if held:
        with DirectoryLock(directory, timeout=0):
            result = world.backend(check_mode=True).run()
    else:
        result = world.backend(check_mode=True).run()
    assert result['interrupted_restore']['stopped_writers'] == WRITERS
    assert result['interrupted_restore']['running'] is running
    assert ('that started at then still runs' in result['msg']) is running
    assert ('first finish the interrupted restore' in result['msg']) is not running
    assert read_journal(path)['stopped_writers'] == WRITERS  # check mode changes nothing


def test_a_writer_the_interrupted_restore_stopped_that_cannot_start_stops_this_one(world):
    world.docker.containers_by_name['api']['State']['Running'] = False
    world.docker.start_errors['api'] = api_error('no such image')
    target = world.backend().settings.target
    path = journal_path(os.path.dirname(world.src), target)
    RestoreJournal.begin(path, target, world.src, 'then').note(stopped_writers=['api'])
    _backend, error = world.fails(SupabaseBackupError)
    assert 'left api stopped and they cannot be started' in error.msg
    assert read_journal(path) is not None  # kept for the next try
    world.assert_live_untouched()


def test_swap_mode_refuses_to_drop_the_previous_database(monkeypatch, tmp_path):
    world = World(monkeypatch, tmp_path, 'swap')
    with pytest.raises(ConfigError, match='keep_previous: false cannot go with writers_stop_at: swap'):
        world.backend(keep_previous=False)
    assert world.docker.calls == [] and world.server.log == []


def test_a_psql_that_stops_reading_early_fails_the_restore(world, monkeypatch):
    """psql exits 0 before the end of the backup (a \\q in it): nothing was checked, nothing is swapped."""
    def reads_nothing(stream, chunks):
        stream.abort()
        return 0, '', ''  # read nothing, exit 0

    monkeypatch.setattr(_database_restorer, 'feed_stream', reads_nothing)
    _backend, error = world.fails(CommandError)
    assert 'psql stopped reading before the end of the backup' in error.msg
    assert world.server.executed('RENAME') == []
    world.assert_writers_started_again(error)
