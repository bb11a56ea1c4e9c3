"""DumpBackend at the pg_dump boundary: a backup is written whole or not at all, and retention
runs only after a good one."""

import gzip
import json
import os
import re

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _dump
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backend import run_backend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import CommandError, DockerError
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import (
    dump_argument_spec,
    validate_config,
)
from ansible_collections.cortexreview.supabase_backup.tests.unit.fakes import (
    FakeDatabase,
    FakeServer,
    dump_text,
    install,
)

DAY = 86400
EXPIRED = 'supabase_backup_20200101_000000.sql.gz'
DUMP = dump_text({'public.t': 3, 'public."Weird Table"': 2}, indexes=['public.t_idx'])


@pytest.fixture
def server(monkeypatch):
    server = FakeServer({'postgres': FakeDatabase(extensions={'vector': '0.8.0'})})
    server.dump = ([DUMP.encode()[:100], DUMP.encode()[100:]], 0, '')
    server.started = install(monkeypatch, server)
    return server


@pytest.fixture
def backup_dir(tmp_path):
    directory = tmp_path / 'backups'
    directory.mkdir(mode=0o700)
    expired = directory / EXPIRED
    expired.write_bytes(gzip.compress(b'old'))
    os.utime(expired, (1, 1))
    return directory


def params(backup_dir, **extra):
    return validate_config(dump_argument_spec(), dict(
        {'backup_dir': str(backup_dir), 'container': 'fake-db', 'retention_days': 30, 'retention_keep_min': 1,
         'login_password': 'secret-password'}, **extra))


def listing(directory):
    return sorted(os.listdir(str(directory)))


def test_a_good_dump_is_written_and_expired_backups_removed(server, backup_dir):
    result = _dump.DumpBackend.from_params(params(backup_dir)).run()
    assert result['changed'] is True
    assert re.match(r'^supabase_backup_\d{8}_\d{6}\.sql\.gz$', os.path.basename(result['path']))
    with open(result['path'], 'rb') as handle:
        assert gzip.decompress(handle.read()).decode() == DUMP
    assert oct(os.stat(result['path']).st_mode & 0o777) == '0o600'
    assert result['tables'] == {'public.t': 3, 'public."Weird Table"': 2}
    assert result['extensions'] == {'vector': '0.8.0'}
    assert os.path.exists(result['manifest'])
    globals_path = result['path'][:-len('.sql.gz')] + '.globals.pgsql.gz'
    assert result['parts'] == [
        {'name': os.path.basename(result['path']), 'role': 'database', 'size': os.path.getsize(result['path'])},
        {'name': os.path.basename(globals_path), 'role': 'globals', 'size': os.path.getsize(globals_path)}]
    # The default db_config_files (the root key) is looked for in the container: not there, no part, no warning.
    assert result['not_found'] == [{'component': 'db_config', 'what': '/etc/postgresql-custom/pgsodium_root.key'}]
    assert result['restore_point'] + '.sql.gz' == os.path.basename(result['path'])
    assert [os.path.basename(path) for path in result['removed']] == [EXPIRED]
    assert EXPIRED not in listing(backup_dir)
    assert not [name for name in listing(backup_dir) if name.endswith('.partial')]


def test_the_password_reaches_only_the_environment(server, backup_dir):
    _dump.DumpBackend.from_params(params(backup_dir)).run()
    assert server.started
    for started in server.started:
        assert 'secret-password' not in ' '.join(started['argv'])
        assert started['env']['PGPASSWORD'] == 'secret-password'
    assert server.dump_args == [['--dbname', 'postgres']]


def _assert_discarded(backup_dir):
    """Nothing of the failed run is left, and retention did not run."""
    assert listing(backup_dir) == [EXPIRED]


def test_pg_dump_failure_discards_the_output_and_skips_retention(server, backup_dir):
    server.dump = ([DUMP.encode()[:50]], 1, 'pg_dump: error: query failed: ERROR:  permission denied for table t')
    with pytest.raises(CommandError) as caught:
        _dump.DumpBackend.from_params(params(backup_dir)).run()
    assert caught.value.msg.startswith('pg_dump failed (exit 1): pg_dump: error: query failed')
    assert caught.value.details['rc'] == 1
    _assert_discarded(backup_dir)


def test_missing_completion_marker_discards_the_output(server, backup_dir):
    server.dump = ([dump_text({'public.t': 3}, complete=False).encode()], 0, '')
    with pytest.raises(CommandError, match='lacks the completion marker'):
        _dump.DumpBackend.from_params(params(backup_dir)).run()
    _assert_discarded(backup_dir)


def test_dump_ending_inside_copy_data_is_incomplete(server, backup_dir):
    text = dump_text({'public.t': 3})
    server.dump = ([text[:text.index('\\.')].encode()], 0, '')
    with pytest.raises(CommandError, match='completion marker'):
        _dump.DumpBackend.from_params(params(backup_dir)).run()
    _assert_discarded(backup_dir)


def test_a_broken_stream_aborts_pg_dump_and_discards_the_output(server, backup_dir):
    server.dump = ([DUMP.encode()[:80], DockerError('lost the Docker exec stream: reset')], 0, '')
    streams = []
    original = server.stream
    server.stream = lambda *args, **kwargs: streams.append(original(*args, **kwargs)) or streams[-1]
    with pytest.raises(DockerError, match='lost the Docker exec stream'):
        _dump.DumpBackend.from_params(params(backup_dir)).run()
    dump_stream = [stream for stream in streams if stream._respond is None][0]  # pylint: disable=protected-access
    assert dump_stream.aborted
    _assert_discarded(backup_dir)


def test_check_mode_writes_nothing_and_names_the_expired_backup(server, backup_dir):
    result = _dump.DumpBackend.from_params(params(backup_dir), check_mode=True).run()
    assert result['msg'].startswith('Would back up') and 'remove 1 expired' in result['msg']
    assert server.dump_args == []
    assert listing(backup_dir) == [EXPIRED]


def _samples(path):
    with open(path, encoding='utf-8') as handle:
        return dict(re.findall(r'^supabase_backup_(success)\{[^}]*kind="logical"[^}]*\} (\S+)$', handle.read(), re.M))


def test_a_failed_dump_is_recorded_as_a_failure(server, backup_dir, tmp_path):
    server.dump = ([b''], 2, 'pg_dump: error: connection to server failed')
    metrics = str(tmp_path / 'metrics.prom')
    result, error, _warnings = run_backend(_dump.DumpBackend, params(backup_dir, metrics_file=metrics))
    assert result is None and isinstance(error, CommandError)
    assert _samples(metrics) == {'success': '0'}
    _assert_discarded(backup_dir)


def test_a_rejected_configuration_is_recorded_as_a_failure(server, backup_dir, tmp_path):
    metrics = str(tmp_path / 'metrics.prom')
    rejected = params(backup_dir, metrics_file=metrics, compression_level=12)
    result, error, _warnings = run_backend(_dump.DumpBackend, rejected)
    assert result is None and 'compression_level' in error.msg
    assert _samples(metrics) == {'success': '0'}
    assert server.dump_args == []


def test_a_good_dump_is_recorded_as_a_success(server, backup_dir, tmp_path):
    metrics = str(tmp_path / 'metrics.prom')
    result, error, _warnings = run_backend(_dump.DumpBackend, params(backup_dir, metrics_file=metrics))
    assert error is None and result['size'] > 0
    assert _samples(metrics) == {'success': '1'}


def test_the_backup_is_on_disk_before_its_name_appears(server, backup_dir, monkeypatch):
    """Through the whole engine: the backup's own data is fsynced while its final name does not exist yet,
    and the directory is fsynced once it does."""
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        info = os.fstat(fd)
        synced.append(((info.st_dev, info.st_ino), info.st_size, listing(backup_dir)))
        return real_fsync(fd)

    monkeypatch.setattr(os, 'fsync', recording_fsync)
    result = _dump.DumpBackend.from_params(params(backup_dir)).run()
    name, info = os.path.basename(result['path']), os.stat(result['path'])
    own = [(size, visible) for inode, size, visible in synced if inode == (info.st_dev, info.st_ino)]
    assert len(own) == 1, synced
    assert own[0][0] == info.st_size and name not in own[0][1], 'synced after its name appeared, or before the end'
    directory = os.stat(str(backup_dir))
    assert any(inode == (directory.st_dev, directory.st_ino) and name in visible
               for inode, _size, visible in synced), synced


# Restore points with more parts: extra databases, globals, database settings

def _manifest(result):
    with open(result['manifest'], encoding='utf-8') as handle:
        return json.load(handle)


def test_every_other_database_is_an_extra_part_but_our_own_copies(server, backup_dir):
    server.databases.update({
        '_supabase': FakeDatabase(owner='supabase_admin', settings=[(None, ['statement_timeout=5s'])]),
        'app.v2': FakeDatabase(),
        'postgres_pre_restore_20260101_020000': FakeDatabase(),
        'postgres_restore_20260101_020000': FakeDatabase(),
        'postgres_validate_20260101_020000': FakeDatabase(),
        'template1': FakeDatabase(),
    })
    server.dumps['_supabase'] = ([dump_text({'_analytics.sources': 2}).encode()], 0, '')
    result = _dump.DumpBackend.from_params(params(backup_dir)).run()
    stem = result['restore_point']
    assert result['extra_databases'] == ['_supabase', 'app.v2']
    assert [part['name'] for part in result['parts']] == [
        stem + '.sql.gz', stem + '.db._supabase.pgsql.gz', stem + '.db.app%2Ev2.pgsql.gz', stem + '.globals.pgsql.gz']
    assert server.dump_args == [['--dbname', 'postgres'], ['--dbname', '_supabase'], ['--dbname', 'app.v2']]
    manifest = _manifest(result)
    assert manifest['components'] == ['database', 'extra_database', 'globals']
    assert manifest['not_found'] == [{'component': 'db_config', 'what': '/etc/postgresql-custom/pgsodium_root.key'}]
    extra = manifest['parts'][1]
    assert extra['database'] == '_supabase' and extra['tables'] == {'_analytics.sources': 2}
    assert extra['database_settings']['owner'] == 'supabase_admin'
    assert extra['database_settings']['settings'] == [{'role': None, 'name': 'statement_timeout', 'value': '5s'}]
    assert manifest['parts'][0]['database_settings']['encoding'] == 'UTF8'
    assert manifest['parts'][3]['roles'] == ['anon', 'postgres']
    globals_path = os.path.join(str(backup_dir), stem + '.globals.pgsql.gz')
    assert b'SCRAM-SHA-256$' in gzip.decompress(open(globals_path, 'rb').read())
    assert oct(os.stat(globals_path).st_mode & 0o777) == '0o600'
    assert server.globals_args == [['--roles-only', '--database', 'postgres']]
    for name in os.listdir(str(backup_dir)):
        assert not name.endswith('.partial')


def test_named_extra_databases_and_none(server, backup_dir):
    server.databases.update({'_supabase': FakeDatabase(), 'other': FakeDatabase()})
    result = _dump.DumpBackend.from_params(params(backup_dir, extra_databases=['other'], globals=False)).run()
    assert result['extra_databases'] == ['other'] and [part['role'] for part in result['parts']] == [
        'database', 'extra_database']
    result = _dump.DumpBackend.from_params(params(backup_dir, extra_databases=[], globals=False)).run()
    assert [part['role'] for part in result['parts']] == ['database']


@pytest.mark.parametrize('options,message', [
    ({'extra_databases': ['missing']}, 'extra_databases: missing does not exist or does not allow connections; '
                                       'nothing was written'),
    ({'extra_databases': ['postgres']}, 'extra_databases must not name the main database postgres (db)'),
    ({'extra_databases': ['a', 'a']}, 'extra_databases must name each database once, none empty'),
    ({'extra_databases': ['']}, 'extra_databases must name each database once, none empty'),
])
def test_bad_extra_databases_are_refused_before_anything_is_written(server, backup_dir, options, message):
    result, error, _warnings = run_backend(_dump.DumpBackend, params(backup_dir, **options))
    assert result is None and error.msg == message
    assert listing(backup_dir) == [EXPIRED]


@pytest.mark.parametrize('check_mode', [False, True])
def test_globals_without_a_superuser_fail_in_one_line(server, backup_dir, check_mode):
    server.superuser = False
    result, error, _warnings = run_backend(_dump.DumpBackend, params(backup_dir, login_user='backup'),
                                           check_mode=check_mode)
    assert result is None
    assert error.msg == 'globals need a superuser (login_user backup is not one); set globals: false'
    assert listing(backup_dir) == [EXPIRED] and server.globals_args == [] and server.dump_args == []
    result = _dump.DumpBackend.from_params(params(backup_dir, login_user='backup', globals=False)).run()
    assert [part['role'] for part in result['parts']] == ['database']


@pytest.mark.parametrize('failing', ['extra', 'globals', 'globals_incomplete'])
def test_a_failing_later_part_leaves_no_file_of_the_run(server, backup_dir, failing):
    server.databases['_supabase'] = FakeDatabase()
    if failing == 'extra':
        server.dumps['_supabase'] = ([b'--\n'], 1, 'pg_dump: error: connection to database "_supabase" failed')
        expected = 'pg_dump of database _supabase failed (exit 1): pg_dump: error: connection'
    elif failing == 'globals':
        server.globals_dump = ([b'--\n'], 1, 'pg_dumpall: error: query failed: permission denied for table pg_authid')
        expected = 'pg_dumpall --roles-only failed (exit 1): pg_dumpall: error: query failed'
    else:
        server.globals_dump = ([b'--\n-- PostgreSQL database cluster dump\n--\n'], 0, '')
        expected = 'pg_dumpall --roles-only exited 0 but its output lacks the completion marker'
    result, error, _warnings = run_backend(_dump.DumpBackend, params(backup_dir))
    assert result is None and error.msg.startswith(expected)
    # Nothing of the run, and retention did not run.
    assert listing(backup_dir) == [EXPIRED]


def test_check_mode_predicts_the_parts_and_writes_nothing(server, backup_dir):
    server.databases['_supabase'] = FakeDatabase()
    result = _dump.DumpBackend.from_params(params(backup_dir, encrypt_passphrase='x'), check_mode=True).run()
    stem = os.path.basename(result['path'])[:-len('.sql.gz.gpg')]
    assert [part['name'] for part in result['parts']] == [
        stem + '.sql.gz.gpg', stem + '.db._supabase.pgsql.gz.gpg', stem + '.globals.pgsql.gz.gpg']
    assert 'with 2 more part(s)' in result['msg']
    assert listing(backup_dir) == [EXPIRED] and server.dump_args == [] and server.globals_args == []
