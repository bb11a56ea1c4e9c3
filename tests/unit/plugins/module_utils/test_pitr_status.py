"""backup_status kind=pitr: gaps from the archive on disk, problems, gauges, and the cron runner's pitr-status."""

import json
import os

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _pitr_status as status
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _runner
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import ConfigError, StatusError
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._metrics import read_samples
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import (
    status_argument_spec,
    validate_config,
)

SEGMENT_SIZE = 16 << 20
NOW = 1_800_000_000


def _wal(directory, *names):
    os.makedirs(directory, exist_ok=True)
    for name in names:
        with open(os.path.join(directory, name), 'wb') as handle:
            handle.write(b'x' * 10)


def _entry(name, start_wal, finished_epoch):
    return {'format': 1, 'name': name, 'type': 'full', 'parent': None, 'timeline': 1, 'start_lsn': '0/2000028',
            'stop_lsn': '0/2000120', 'start_wal': start_wal, 'stop_wal': start_wal, 'started_at': 'x',
            'finished_at': 'y', 'finished_epoch': finished_epoch, 'pg_version': '18', 'system_identifier': '7',
            'wal_segment_size': SEGMENT_SIZE, 'size': 1}


def test_gaps_count_from_the_oldest_segment_without_a_base_backup(tmp_path):
    wal = str(tmp_path)
    _wal(wal, '000000010000000000000003', '000000010000000000000005', '000000010000000000000006.partial')
    files = status.wal_files(wal, SEGMENT_SIZE)
    assert status.archive_gaps(files, [], SEGMENT_SIZE, {}) == ['000000010000000000000004']
    assert status.archive_gaps([], [], SEGMENT_SIZE, {}) == []


def test_gaps_count_from_the_oldest_base_backup(tmp_path):
    wal = str(tmp_path)
    _wal(wal, '000000010000000000000003', '000000010000000000000004.partial')
    files = status.wal_files(wal, SEGMENT_SIZE)
    catalog = [_entry('pitr-base-20260101_000000', '000000010000000000000001', NOW)]
    expected = ['000000010000000000000001', '000000010000000000000002']
    assert status.archive_gaps(files, catalog, SEGMENT_SIZE, {}) == expected


def test_a_new_timeline_without_its_history_is_a_gap(tmp_path):
    wal = str(tmp_path)
    _wal(wal, '000000010000000000000003', '000000020000000000000004')
    files = status.wal_files(wal, SEGMENT_SIZE)
    assert '00000002.history' in status.archive_gaps(files, [], SEGMENT_SIZE, {})


def _settings(tmp_path, **overrides):
    params = validate_config(status_argument_spec(), dict({'backup_dir': str(tmp_path), 'kind': 'pitr'}, **overrides))
    return status.PitrStatusSettings(params)


def test_settings_default_max_lag_and_refuse_what_does_not_apply(tmp_path):
    assert _settings(tmp_path).max_lag == 300
    assert _settings(tmp_path, max_lag='2m').max_lag == 120
    for option in ({'require_validation': True}, {'offsite_remote': 'r:x'}):
        with pytest.raises(ConfigError, match='does not apply to kind pitr'):
            _settings(tmp_path, **option)
    with pytest.raises(ConfigError, match='max_lag'):
        _settings(tmp_path, max_lag='soon')


def _status(**overrides):
    value = {
        'changed': False, 'backup_dir': '/b', 'kind': 'pitr', 'database_running': True,
        'receiver': {'name': 'db-pitr-receiver', 'exists': True, 'running': True, 'status': 'running',
                     'restart_count': 2},
        'slot': {'slot_type': 'physical', 'active': True, 'restart_lsn': '0/1', 'wal_status': 'reserved',
                 'behind': 4096},
        'streaming': True, 'last_contact_age_seconds': 3.0,
        'wal': {'directory': '/b/pitr/wal', 'count': 3, 'newest': 'x', 'newest_age_seconds': 2,
                'newest_mtime': NOW - 2, 'partial': True},
        'base_backups': {'count': 1, 'newest': 'pitr-base-1', 'newest_epoch': NOW - 3600, 'newest_age_seconds': 3600,
                         'problems': []},
        'gaps': [], 'archive_size': 100, 'free_bytes': 1 << 40,
    }
    value.update(overrides)
    return value


class FixedStatus(status.PitrStatusBackend):
    """The backend with the reading of Docker and the server replaced by a prepared status."""

    prepared = None

    def status(self):
        return dict(self.prepared)


def _backend(tmp_path, prepared, check_mode=False, **options):
    backend = FixedStatus(_settings(tmp_path, **options), check_mode=check_mode, clock=lambda: NOW)
    backend.prepared = prepared
    return backend


def test_a_streaming_archive_passes_and_writes_its_gauges(tmp_path):
    metrics = str(tmp_path / 'textfile' / 'm.prom')
    result = _backend(tmp_path, _status(), metrics_file=metrics).run()
    assert result['problems'] == [] and result['msg'].startswith('receiver streaming')
    samples = read_samples(metrics)
    assert samples[('supabase_backup_pitr_receiver_up', 'pitr', 'archive')] == 1
    assert samples[('supabase_backup_pitr_receiver_restarts', 'pitr', 'archive')] == 2
    assert samples[('supabase_backup_pitr_last_contact_timestamp_seconds', 'pitr', 'archive')] == NOW - 3
    assert samples[('supabase_backup_pitr_slot_lag_bytes', 'pitr', 'archive')] == 4096
    assert samples[('supabase_backup_pitr_base_backup_timestamp_seconds', 'pitr', 'archive')] == NOW - 3600
    assert samples[('supabase_backup_pitr_wal_gaps', 'pitr', 'archive')] == 0


def test_check_mode_writes_no_gauges(tmp_path):
    metrics = str(tmp_path / 'textfile' / 'm.prom')
    _backend(tmp_path, _status(), check_mode=True, metrics_file=metrics).run()
    assert not os.path.exists(metrics)


@pytest.mark.parametrize('overrides,options,fragment', [
    ({'receiver': {'name': 'r', 'exists': False, 'running': False, 'status': 'missing', 'restart_count': 0},
      'streaming': False, 'last_contact_age_seconds': None}, {}, 'receiver container r is not running (missing)'),
    ({'streaming': False}, {}, 'the receiver does not stream WAL'),
    ({'slot': None, 'streaming': False}, {}, 'replication slot cortexreview_pitr does not exist'),
    ({'slot': {'slot_type': 'physical', 'active': False, 'restart_lsn': None, 'wal_status': 'lost', 'behind': None}},
     {}, 'lost WAL'),
    ({'last_contact_age_seconds': 400.0}, {}, "last contact was 6m 40s ago, more than max_lag 5m"),
    ({'last_contact_age_seconds': 100.0}, {'max_lag': '1m'}, 'more than max_lag 1m'),
    ({'gaps': ['000000010000000000000004']}, {}, 'gap: 1 file(s) missing, first 000000010000000000000004'),
    ({}, {'max_age': '30m'}, 'newest base backup pitr-base-1 is 1h old, more than max_age 30m'),
    ({'base_backups': {'count': 0, 'newest': None, 'newest_epoch': None, 'newest_age_seconds': None,
                       'problems': []}}, {'max_age': '1d'}, 'no base backup in'),
    ({'base_backups': {'count': 0, 'newest': None, 'newest_epoch': None, 'newest_age_seconds': None,
                       'problems': ['x.json: unreadable']}}, {}, 'base backup catalog: x.json: unreadable'),
    ({'database_running': False, 'slot': None, 'streaming': False}, {}, 'database container'),
])
def test_every_problem_fails_the_status_and_the_gauges_still_say_it(tmp_path, overrides, options, fragment):
    metrics = str(tmp_path / 'textfile' / 'm.prom')
    with pytest.raises(StatusError) as error:
        _backend(tmp_path, _status(**overrides), metrics_file=metrics, **options).run()
    assert fragment in error.value.msg
    assert error.value.details['problems']
    assert os.path.exists(metrics)


def test_a_healthy_archive_without_thresholds_and_without_base_backups_passes(tmp_path):
    empty = {'count': 0, 'newest': None, 'newest_epoch': None, 'newest_age_seconds': None, 'problems': []}
    result = _backend(tmp_path, _status(base_backups=empty)).run()
    assert result['problems'] == [] and 'newest base backup none' in result['msg']


def test_a_missing_backup_dir_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match='does not exist'):
        _backend(tmp_path / 'nope', _status()).run()


# The cron runner

def test_runner_pitr_status_passes_the_configs_connection_and_is_silent(tmp_path, capsys, monkeypatch):
    seen = []

    def fake_run(self):
        seen.append(self.settings)
        return {'msg': 'fine'}

    monkeypatch.setattr(status.PitrStatusBackend, 'run', fake_run)
    config = tmp_path / 'backup.json'
    config.write_text(json.dumps({'backup_dir': str(tmp_path), 'container': 'db', 'login_password': 'secret-password',
                                  'metrics_file': str(tmp_path / 'm.prom'), 'prefix': 'x'}))
    os.chmod(config, 0o600)
    code = _runner.main(['pitr-status', '--config', str(config), '--slot', 'other_slot', '--max-lag', '2m'])
    out, err = capsys.readouterr()
    assert (code, out, err) == (0, '', '')
    settings = seen[0]
    assert (settings.container, settings.slot, settings.max_lag, settings.login_password) == (
        'db', 'other_slot', 120, 'secret-password')
    assert settings.metrics_file == str(tmp_path / 'm.prom')


def test_runner_pitr_status_failure_is_one_line(tmp_path, capsys, monkeypatch):
    def fake_run(self):
        raise StatusError('the WAL archive has a gap: 1 file(s) missing, first X')

    monkeypatch.setattr(status.PitrStatusBackend, 'run', fake_run)
    config = tmp_path / 'backup.json'
    config.write_text(json.dumps({'backup_dir': str(tmp_path), 'container': 'db'}))
    os.chmod(config, 0o600)
    code = _runner.main(['pitr-status', '--config', str(config)])
    out, err = capsys.readouterr()
    assert code == 1 and out == ''
    assert len(err.splitlines()) == 1 and 'pitr status FAILED: the WAL archive has a gap' in err
