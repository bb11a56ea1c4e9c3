"""Point-in-time recovery on paper: the target, the chain it starts from, the WAL it copies, the server's log."""

import datetime
import json
import os
import stat

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _pitr_restore as restore
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _pitr_wal as wal
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    BackupFileError,
    ConfigError,
)

SIZE = 16 * 1024 * 1024
UTC = datetime.timezone.utc


def seg(timeline, number):
    return wal.segment_name(timeline, number, SIZE)


def entry(name, epoch, start, stop_lsn, kind='full', parent=None):
    return {'format': 1, 'name': name, 'type': kind, 'parent': parent, 'timeline': 1,
            'start_lsn': '0/%X' % (start * SIZE + 40), 'stop_lsn': stop_lsn, 'start_wal': seg(1, start),
            'stop_wal': seg(1, start), 'started_at': '', 'finished_at': '', 'finished_epoch': epoch,
            'pg_version': '18', 'system_identifier': '1', 'wal_segment_size': SIZE, 'size': 1000}


FULL1 = entry('pitr-base-20261120_020000', 1000.0, 2, '0/2000120')
INCR1 = entry('pitr-base-20261121_020000', 2000.0, 4, '0/4000120', 'incremental', FULL1['name'])
FULL2 = entry('pitr-base-20261122_020000', 3000.0, 6, '0/6000120')
INCR2 = entry('pitr-base-20261123_020000', 4000.0, 8, '0/8000120', 'incremental', FULL2['name'])
CATALOG = [FULL1, INCR1, FULL2, INCR2]


# ---------------------------------------------------------------------------------- target time --

@pytest.mark.parametrize('text, expected', [
    ('2026-11-27 10:42:00+00', datetime.datetime(2026, 11, 27, 10, 42, tzinfo=UTC)),
    ('2026-11-27T10:42:00Z', datetime.datetime(2026, 11, 27, 10, 42, tzinfo=UTC)),
    ('2026-11-27 10:42+00:00', datetime.datetime(2026, 11, 27, 10, 42, tzinfo=UTC)),
    ('2026-11-27 12:42:00.5+02', datetime.datetime(2026, 11, 27, 10, 42, 0, 500000, tzinfo=UTC)),
    ('2026-11-27 05:12:00-0530', datetime.datetime(2026, 11, 27, 10, 42, tzinfo=UTC)),
    ('2026-11-27 10:42:00.123456 UTC', datetime.datetime(2026, 11, 27, 10, 42, 0, 123456, tzinfo=UTC)),
])
def test_a_time_with_a_zone_is_read_in_utc(text, expected):
    assert restore.parse_target_time(text) == expected


@pytest.mark.parametrize('text', ['2026-11-27 10:42:00', 'yesterday', '2026-11-27', '2026-13-01 10:00:00+00',
                                  '2026-11-27 10:42:00+16', '2026-11-27 25:00:00Z', "2026-11-27 10:42:00+00'; --", ''])
def test_a_malformed_time_is_refused_in_one_line(text):
    with pytest.raises(ConfigError) as failure:
        restore.parse_target_time(text)
    assert 'target_time' in failure.value.msg and '\n' not in failure.value.msg


def test_the_server_reads_the_target_in_utc():
    target = restore.RecoveryTarget(target_time='2026-11-27 12:42:00.25+02')
    assert target.server_time() == '2026-11-27 10:42:00.250000+00'
    assert dict(target.settings('cp x')) == {
        'restore_command': 'cp x', 'recovery_target_timeline': 'latest',
        'recovery_target_time': '2026-11-27 10:42:00.250000+00', 'recovery_target_action': 'promote'}


def test_a_name_target_and_latest_set_only_their_own_settings():
    named = dict(restore.RecoveryTarget(target_name='before_migration').settings('cp x'))
    assert named['recovery_target_name'] == 'before_migration' and 'recovery_target_time' not in named
    latest = dict(restore.RecoveryTarget().settings('cp x'))
    assert latest == {'restore_command': 'cp x', 'recovery_target_timeline': 'latest'}


def test_time_and_name_together_are_refused():
    with pytest.raises(ConfigError, match='mutually exclusive'):
        restore.RecoveryTarget(target_time='2026-11-27 10:42:00+00', target_name='x')


@pytest.mark.parametrize('name', ['', ' x', "it's", 'a b', 'x' * 64, '-x', 'semi;colon', None, 'ü'])
def test_an_odd_restore_point_name_is_refused(name):
    with pytest.raises(ConfigError, match='not a restore point name'):
        restore.check_restore_point_name(name)


@pytest.mark.parametrize('name', ['before_migration', 'v2.1:pre-deploy', 'x' * 63, '0'])
def test_a_plain_restore_point_name_is_accepted(name):
    assert restore.check_restore_point_name(name) == name


# --------------------------------------------------------------------------------- chain choice --

def names(chain):
    return [item['name'] for item in chain]


def test_a_time_starts_from_the_newest_backup_finished_before_it_with_its_full():
    chain, _why = restore.choose_chain(CATALOG, restore.RecoveryTarget(target_time='1970-01-01 01:08:20Z'))
    assert names(chain) == [FULL2['name'], INCR2['name']]  # 4100 s
    chain, _why = restore.choose_chain(CATALOG, restore.RecoveryTarget(target_time='1970-01-01 00:58:20Z'))
    assert names(chain) == [FULL2['name']]  # 3500 s: INCR2 (4000) is too late
    chain, _why = restore.choose_chain(CATALOG, restore.RecoveryTarget(target_time='1970-01-01 00:41:00Z'))
    assert names(chain) == [FULL1['name'], INCR1['name']]  # 2460 s: FULL2 (3000) is too late


def test_a_time_exactly_at_the_end_of_a_backup_uses_it():
    chain, _why = restore.choose_chain(CATALOG, restore.RecoveryTarget(target_time='1970-01-01 00:50:00Z'))
    assert names(chain) == [FULL2['name']]


def test_a_time_before_the_oldest_backup_names_the_earliest_recoverable_moment():
    with pytest.raises(ConfigError) as failure:
        restore.choose_chain(CATALOG, restore.RecoveryTarget(target_time='1970-01-01 00:10:00Z'))
    assert 'earliest recoverable moment 1970-01-01T00:16:40+00:00' in failure.value.msg
    assert FULL1['name'] in failure.value.msg


def test_latest_starts_from_the_newest_chain():
    chain, _why = restore.choose_chain(CATALOG, restore.RecoveryTarget())
    assert names(chain) == [FULL2['name'], INCR2['name']]


def test_a_recorded_name_starts_from_the_newest_backup_before_its_newest_record():
    points = [{'name': 'mig', 'lsn': '0/3000000', 'time': 'a'}, {'name': 'other', 'lsn': '0/9000000', 'time': 'b'},
              {'name': 'mig', 'lsn': '0/7000000', 'time': 'c'}]
    chain, why = restore.choose_chain(CATALOG, restore.RecoveryTarget(target_name='mig'), points)
    assert names(chain) == [FULL2['name']]
    assert '0/7000000' in why


def test_a_name_recorded_before_every_backup_is_refused():
    points = [{'name': 'mig', 'lsn': '0/1000000', 'time': 'a'}]
    with pytest.raises(ConfigError, match='older than every base backup'):
        restore.choose_chain(CATALOG, restore.RecoveryTarget(target_name='mig'), points)


def test_an_unrecorded_name_starts_from_the_oldest_full_backup():
    chain, why = restore.choose_chain(CATALOG, restore.RecoveryTarget(target_name='made_by_sql'), [])
    assert names(chain) == [FULL1['name']]
    assert 'not in restore_points.jsonl' in why


def test_an_empty_catalog_or_a_broken_chain_is_refused():
    with pytest.raises(BackupFileError, match='no base backup'):
        restore.choose_chain([], restore.RecoveryTarget())
    with pytest.raises(BackupFileError, match='not in the catalog'):
        restore.choose_chain([INCR2], restore.RecoveryTarget())


# ------------------------------------------------------------------------------------ WAL copied --

def test_the_wal_from_the_start_on_is_copied_with_the_histories_and_the_partial():
    listing = [seg(1, 1), seg(1, 2), seg(1, 3), seg(1, 4) + '.partial', '00000001.history', 'junk.tmp']
    segments, partial = restore.wal_to_copy(listing, seg(1, 2), SIZE)
    assert segments == ['00000001.history', seg(1, 2), seg(1, 3)]
    assert partial == seg(1, 4) + '.partial'


def test_a_partial_older_than_the_newest_segment_is_not_copied():
    listing = [seg(1, 2), seg(1, 3) + '.partial', seg(2, 3), seg(2, 4), '00000002.history']
    segments, partial = restore.wal_to_copy(listing, seg(1, 2), SIZE)
    assert partial is None
    assert segments == ['00000002.history', seg(1, 2), seg(2, 3), seg(2, 4)]


def test_a_partial_whose_full_segment_exists_is_not_copied():
    segments, partial = restore.wal_to_copy([seg(1, 2), seg(1, 2) + '.partial'], seg(1, 2), SIZE)
    assert (segments, partial) == ([seg(1, 2)], None)


# ------------------------------------------------------------------------------ the server's log --

LOG_TIME = """\
2026-11-27 10:43:01.001 UTC [1] LOG:  starting point-in-time recovery to 2026-11-27 10:42:00.25+00
2026-11-27 10:43:01.200 UTC [1] LOG:  redo starts at 0/2000028
2026-11-27 10:43:02.001 UTC [1] LOG:  recovery stopping before commit of transaction 791, time 2026-11-27 10:42:00.301+00
2026-11-27 10:43:02.002 UTC [1] LOG:  redo done at 0/5000148 system usage: CPU: user: 0.01 s
2026-11-27 10:43:02.003 UTC [1] LOG:  last completed transaction was at log time 2026-11-27 10:41:59.871342+00
2026-11-27 10:43:02.100 UTC [1] LOG:  selected new timeline ID: 2
2026-11-27 10:43:02.200 UTC [1] LOG:  archive recovery complete
"""


def test_the_log_tells_where_a_time_recovery_stopped():
    assert restore.parse_recovery_log(LOG_TIME) == {
        'stop': 'before commit of transaction 791', 'stop_time': '2026-11-27T10:42:00.301+00:00',
        'last_transaction': '2026-11-27T10:41:59.871342+00:00', 'timeline': 2, 'redo_done': '0/5000148'}


def test_the_log_tells_a_restore_point_and_an_offset_zone():
    text = ('LOG:  recovery stopping at restore point "before_migration", time 2026-11-27 16:12:00.5+05:30\n'
            'LOG:  last completed transaction was at log time 2026-11-27 16:11:59.9+0530\n'
            'LOG:  selected new timeline ID: 3\n')
    found = restore.parse_recovery_log(text)
    assert found['stop'] == 'at restore point "before_migration"'
    assert found['stop_time'] == '2026-11-27T16:12:00.5+05:30'
    assert found['last_transaction'] == '2026-11-27T16:11:59.9+05:30'
    assert found['timeline'] == 3


def test_a_recovery_to_the_end_has_no_stop_line():
    text = ('LOG:  redo done at 0/7000060 system usage: ...\n'
            'LOG:  last completed transaction was at log time 2026-11-27 10:50:00.1+00\n'
            'LOG:  selected new timeline ID: 2\n')
    found = restore.parse_recovery_log(text)
    assert found['stop'] is None and found['stop_time'] is None
    assert found['last_transaction'] == '2026-11-27T10:50:00.1+00:00' and found['timeline'] == 2


def test_a_log_without_recovery_lines_yields_nothing():
    assert restore.parse_recovery_log('LOG:  database system is ready to accept connections\n') == {
        'stop': None, 'stop_time': None, 'last_transaction': None, 'timeline': None, 'redo_done': None}


# ------------------------------------------------------------------------ recovery configuration --

def test_the_recovery_settings_are_appended_quoted():
    text = restore.recovery_conf("wal_level = 'logical'\n", [('restore_command', 'cp "/d/%f" "%p"'),
                                                             ('recovery_target_name', "it's")])
    assert text.startswith("wal_level = 'logical'\n")
    assert "restore_command = 'cp \"/d/%f\" \"%p\"'\n" in text
    assert "recovery_target_name = 'it''s'\n" in text


def test_a_missing_auto_conf_gets_the_servers_header():
    assert restore.recovery_conf('', [('a', 'b')]).startswith(restore.AUTO_CONF_HEADER)


# ------------------------------------------------------------------------------ restore points --

def test_restore_points_are_appended_atomically_and_privately(tmp_path):
    path = str(tmp_path / 'restore_points.jsonl')
    restore.append_restore_point(path, {'name': 'a', 'lsn': '0/1', 'time': 't1'})
    restore.append_restore_point(path, {'name': 'b', 'lsn': '0/2', 'time': 't2'})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    points, problems = restore.read_restore_points(path)
    assert [point['name'] for point in points] == ['a', 'b'] and problems == []
    assert os.listdir(str(tmp_path)) == ['restore_points.jsonl']


def test_an_unreadable_restore_point_line_is_a_problem_not_a_point(tmp_path):
    path = tmp_path / 'restore_points.jsonl'
    path.write_text(json.dumps({'name': 'a', 'lsn': '0/1', 'time': 't'}) + '\n{broken\n'
                    + json.dumps({'name': 'b', 'lsn': 'nope', 'time': 't'}) + '\n')
    points, problems = restore.read_restore_points(str(path))
    assert [point['name'] for point in points] == ['a']
    assert len(problems) == 2 and 'line 2' in problems[0] and 'line 3' in problems[1]


def test_a_missing_restore_point_file_is_empty(tmp_path):
    assert restore.read_restore_points(str(tmp_path / 'none.jsonl')) == ([], [])


# ---------------------------------------------------------------------------------- the settings --

def params(**overrides):
    values = {'container': 'db', 'backup_dir': '/backups', 'login_user': 'postgres', 'login_password': None,
              'docker_host': None, 'slot': 'cortexreview_pitr', 'lock_timeout': 600, 'metrics_file': None,
              'target_time': None, 'target_name': None, 'confirm': False, 'volume': 'db-data', 'path': None,
              'stop_containers': ['api'], 'stop_compose_project': None, 'stop_compose_services': [],
              'stop_timeout': 120, 'ready_timeout': 900}
    values.update(overrides)
    return values


def test_settings_refuse_a_malformed_time_before_anything_else():
    with pytest.raises(ConfigError, match='not a timestamp with a zone'):
        restore.PitrRestoreSettings(params(target_time='last tuesday'))


@pytest.mark.parametrize('overrides, message', [
    ({'stop_timeout': -1}, 'stop_timeout'), ({'ready_timeout': 0}, 'ready_timeout'),
    ({'volume': None}, 'give the volume')])
def test_settings_refuse_impossible_values(overrides, message):
    with pytest.raises(ConfigError, match=message):
        restore.PitrRestoreSettings(params(**overrides))


def test_settings_name_the_source():
    assert restore.PitrRestoreSettings(params()).describe_source() == "volume 'db-data'"
    assert restore.PitrRestoreSettings(params(path='/srv/pg')).describe_source() == "directory '/srv/pg'"


def test_a_run_without_confirm_changes_nothing(tmp_path):
    backend = restore.PitrRestoreBackend(restore.PitrRestoreSettings(params(backup_dir=str(tmp_path))))
    with pytest.raises(ConfigError, match='confirm must be true'):
        backend.run()
    assert os.listdir(str(tmp_path)) == []


def test_a_run_without_an_archive_is_refused(tmp_path):
    backend = restore.PitrRestoreBackend(restore.PitrRestoreSettings(params(backup_dir=str(tmp_path), confirm=True)))
    with pytest.raises(ConfigError, match='no point-in-time archive'):
        backend.run()
    assert os.listdir(str(tmp_path)) == []


def test_the_reason_a_recovery_failed_is_its_own_fatal_not_a_refused_probe():
    text = ('2026-11-27 14:03:50.712 UTC [34] FATAL:  the database system is starting up\n'
            '2026-11-27 14:03:50.810 UTC [24] FATAL:  recovery ended before configured recovery target was reached\n'
            '2026-11-27 14:03:51.712 UTC [35] FATAL:  the database system is not yet accepting connections\n')
    assert restore.recovery_failure(text) == 'FATAL:  recovery ended before configured recovery target was reached'
    assert restore.recovery_failure('LOG:  database system is ready to accept connections\n') is None
