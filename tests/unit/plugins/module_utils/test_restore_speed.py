"""Pure parts of the fast restore: session sizing, the restore record, the checksum-only plan."""

import gzip
import hashlib
import json
import os
import stat
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_reader import BackupFile
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._database_restorer import (
    memory_bytes,
    plan_sessions,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    BackupFileError,
    ConfigError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._restore import RestoreSettings
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._restore_journal import (
    RestoreJournal,
    interrupted_restore_problems,
    interrupted_restores,
    journal_path,
    process_identity,
    read_journal,
    recovery_journal_path,
)
from ansible_collections.cortexreview.supabase_backup.tests.unit.fakes import ended_process

GIB = 1 << 30
DUMP = (b'--\n-- PostgreSQL database dump\n--\n\n-- Dumped from database version 18.6\n\n'
        b'COPY public.kb (id) FROM stdin;\n1\n2\n\\.\n\n--\n-- PostgreSQL database dump complete\n--\n\n')


def test_memory_bytes_reads_postgres_units():
    assert memory_bytes('1GB') == GIB
    assert memory_bytes('512MB') == 512 << 20
    assert memory_bytes('64') == 64 << 10  # a bare number is kB, as PostgreSQL reads it


@pytest.mark.parametrize('jobs, memory, cpus, expected', [
    (0, 24 * GIB, 2, (2, GIB >> 10, 0)),             # one session per CPU, each with the option's 1GB
    (0, 4 * GIB, 2, (2, (GIB // 2) >> 10, 0)),        # a quarter of 4 GiB shared by two sessions
    (0, None, 8, (4, GIB >> 10, 1)),                  # at most 4 sessions; CPUs left go to parallel workers
    (1, 8 * GIB, 4, (1, GIB >> 10, 3)),
    (3, 12 * GIB, None, (3, GIB >> 10, 0)),
])
def test_sessions_never_take_more_than_a_quarter_of_the_database_memory(jobs, memory, cpus, expected):
    sessions, memory_kb, workers = plan_sessions('1GB', jobs, memory, cpus)
    assert (sessions, memory_kb, workers) == expected
    if memory:
        assert sessions * memory_kb * 1024 <= memory // 4


def _restore_params(**overrides):
    params = {'src': '/backups/supabase_backup_20260101_000000.sql.gz', 'backup_dir': None,
              'prefix': 'supabase_backup', 'encrypt_passphrase': None, 'encrypt_passphrase_file': None,
              'confirm': True, 'keep_previous': True, 'maintenance_work_mem': '1GB', 'maintenance_db': 'template1',
              'writers_stop_at': 'swap', 'restore_jobs': 0, 'lock_timeout': 600, 'stop_containers': [],
              'stop_compose_project': None, 'stop_compose_services': [], 'stop_timeout': 30,
              'container': 'db', 'db': 'postgres', 'login_user': 'postgres'}
    params.update(overrides)
    return params


def test_swap_mode_refuses_to_drop_the_previous_database():
    with pytest.raises(ConfigError, match='keep_previous: false cannot go with writers_stop_at: swap'):
        RestoreSettings(_restore_params(keep_previous=False))
    assert RestoreSettings(_restore_params(keep_previous=False, writers_stop_at='load')).keep_previous is False


@pytest.mark.parametrize('option, value', [('restore_jobs', -1), ('lock_timeout', -1)])
def test_negative_counts_are_refused(option, value):
    with pytest.raises(ConfigError, match=option):
        RestoreSettings(_restore_params(**{option: value}))


TARGET = SimpleNamespace(container='supabase db', login_host=None, db='post/gres')


def test_restore_record_is_private_and_named_after_the_database(tmp_path):
    path = journal_path(str(tmp_path), TARGET)
    assert os.path.basename(path) == '.cortexreview-restore-supabase_db-post_gres.json'
    journal = RestoreJournal.begin(path, TARGET, '/b/x.sql.gz', '2026-11-27T00:00:00+00:00')
    journal.note(stopped_writers=['api'], phase='stopping writers')
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert read_journal(path)['stopped_writers'] == ['api']
    journal.close()
    assert read_journal(path) is None
    journal.close()  # twice is fine


def test_a_recovery_record_never_shares_a_name_with_a_logical_restore_record(tmp_path):
    recovery = recovery_journal_path(str(tmp_path), 'db')
    assert os.path.basename(recovery) == '.cortexreview-restore-db+pitr.json'
    for container, db in (('db', 'pitr'), ('db+pitr', 'x'), ('db', '+pitr')):
        assert journal_path(str(tmp_path), SimpleNamespace(container=container, login_host=None, db=db)) != recovery
    RestoreJournal.begin(recovery, TARGET, 'base', 'then').note(stopped_writers=['api'])
    assert [entry['stopped_writers'] for entry in interrupted_restores(str(tmp_path), docker_host='unix:///nonexistent')] \
        == [['api']]


def test_damaged_or_foreign_records_are_named_not_trusted(tmp_path):
    path = journal_path(str(tmp_path), TARGET)
    with open(path, 'w') as handle:
        handle.write('{"format": "something else"}')
    with pytest.raises(BackupFileError, match='not one this collection wrote'):
        read_journal(path)
    with open(path, 'w') as handle:
        handle.write('{broken')
    with pytest.raises(BackupFileError, match='cannot read restore record'):
        read_journal(path)
    restores = interrupted_restores(str(tmp_path))
    assert [entry['journal'] for entry in restores] == [path]
    assert 'cannot be read' in interrupted_restore_problems(restores)[0]


def test_a_record_without_stopped_writers_is_no_problem(tmp_path):
    RestoreJournal.begin(journal_path(str(tmp_path), TARGET), TARGET, '/b/x.sql.gz', 'then')
    restores = interrupted_restores(str(tmp_path))
    assert len(restores) == 1 and restores[0]['writers_down'] == []
    assert interrupted_restore_problems(restores) == []
    assert interrupted_restore_problems([dict(restores[0], writers_down=['api', 'worker'], running=False)])[0].startswith(
        'the restore of /b/x.sql.gz that started at then did not finish and api, worker it stopped are down')


def _record_of(tmp_path, **fields):
    path = journal_path(str(tmp_path), TARGET)
    RestoreJournal.begin(path, TARGET, '/b/x.sql.gz', 'then').note(stopped_writers=['api'], **fields)
    [entry] = interrupted_restores(str(tmp_path), docker_host='unix:///nonexistent')
    return entry


def test_a_restore_under_way_is_running_and_no_problem(tmp_path):
    entry = _record_of(tmp_path)
    assert entry['running'] is True and entry['writers_down'] == ['api']
    assert interrupted_restore_problems([entry]) == []


def test_a_restore_whose_process_ended_did_not_finish(tmp_path):
    pid, identity = ended_process()
    entry = _record_of(tmp_path, pid=pid, process=identity)
    assert entry['running'] is False
    assert 'did not finish and api it stopped is down' in interrupted_restore_problems([entry])[0]


@pytest.mark.parametrize('fields', [
    {'process': None},  # a record of an older release
    {'pid': True},
    {'pid': -1},
])
def test_a_record_that_cannot_name_a_live_process_did_not_finish(tmp_path, fields):
    entry = _record_of(tmp_path, **fields)
    assert entry['running'] is False and interrupted_restore_problems([entry])


def test_a_process_that_ended_but_is_not_yet_collected_runs_no_restore():
    process = subprocess.Popen([sys.executable, '-c', 'import sys; sys.stdin.read()'], stdin=subprocess.PIPE)
    try:
        identity = process_identity(process.pid)
        process.stdin.close()
        deadline = time.monotonic() + 30
        while _state(process.pid) != 'Z' and time.monotonic() < deadline:
            time.sleep(0.01)
        assert identity is not None and _state(process.pid) == 'Z'
        assert process_identity(process.pid) is None
    finally:
        process.wait()


def _state(pid):
    with open('/proc/%d/stat' % pid, encoding='utf-8') as handle:
        return handle.read().rpartition(')')[2].split()[0]


def test_a_live_process_that_started_at_another_time_reused_the_pid(tmp_path):
    boot_id, started = process_identity(os.getpid())
    entry = _record_of(tmp_path, process=[boot_id, started + 1])
    assert entry['running'] is False and interrupted_restore_problems([entry])
    assert _record_of(tmp_path, process=['another boot', started])['running'] is False


def _backup(tmp_path, sidecars=True, tables=None, sha=None):
    path = tmp_path / 'supabase_backup_20260101_000000.sql.gz'
    data = gzip.compress(DUMP)
    path.write_bytes(data)
    if sidecars:
        digest = sha or hashlib.sha256(data).hexdigest()
        (tmp_path / (path.name + '.sha256')).write_text('%s  %s\n' % (digest, path.name))
        (tmp_path / (path.name + '.manifest.json')).write_text(json.dumps(
            {'sha256': digest, 'tables': tables if tables is not None else {'public.kb': 2}}))
    return BackupFile(str(path))


def test_plan_checks_a_backup_with_sidecars_by_its_checksum(tmp_path):
    found = _backup(tmp_path).verify_checksum()
    assert found['checksum_verified'] and found['indexes'] is None
    assert found['tables'] == {'public.kb': 2}


def test_plan_refuses_a_backup_that_does_not_match_its_checksum(tmp_path):
    with pytest.raises(BackupFileError, match='does not match its checksum'):
        _backup(tmp_path, sha='0' * 64).verify_checksum()


def test_plan_reads_a_backup_without_sidecars_in_full(tmp_path):
    found = _backup(tmp_path, sidecars=False).verify_checksum()
    assert found['indexes'] == [] and found['tables'] == {'public.kb': 2}
    broken = tmp_path / 'supabase_backup_20260101_000000.sql.gz'
    broken.write_bytes(broken.read_bytes()[:-12])
    with pytest.raises(BackupFileError, match='corrupt'):
        BackupFile(str(broken)).verify_checksum()


def test_one_read_checks_what_the_load_saw(tmp_path):
    from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._dump_stream import DumpInspector

    backup = _backup(tmp_path, tables={'public.kb': 3})
    chunks, findings = backup.sql_stream()
    inspector = DumpInspector()
    for chunk in chunks:
        inspector.feed(chunk)
    with pytest.raises(BackupFileError, match="manifest's row counts"):
        findings(inspector)
