import os

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import ConfigError
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._metrics import read_samples, write_metrics
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import (
    dump_argument_spec,
    parse_mode,
    validate_config,
)


@pytest.mark.parametrize('value,expected', [('0600', 0o600), ('600', 0o600), (0o640, 0o640), ('0o600', 0o600),
                                            ('rw', None), ('01777', None), (True, None)])
def test_parse_mode(value, expected):
    if expected is None:
        with pytest.raises(ConfigError):
            parse_mode(value)
    else:
        assert parse_mode(value) == expected


def test_validate_config_defaults_aliases_and_types():
    params = validate_config(dump_argument_spec(), {'backup_dir': '/b', 'login_db': 'other', 'login_port': '5433'})
    assert params['db'] == 'other' and params['login_port'] == 5433
    assert params['retention_days'] == 90 and params['container'] == 'cortexreview-supabase-db'


@pytest.mark.parametrize('config,needle', [
    ({}, 'missing required option(s): backup_dir'),
    ({'backup_dir': '/b', 'retention': 3}, 'unknown option(s): retention'),
    ({'backup_dir': '/b', 'retention_days': 'many'}, 'retention_days must be an integer'),
    ({'backup_dir': '/b', 'retention_days': True}, 'retention_days must be an integer'),
    ({'backup_dir': 7}, 'backup_dir must be a string'),
    ([], 'must be a mapping'),
])
def test_validate_config_errors(config, needle):
    with pytest.raises(ConfigError) as info:
        validate_config(dump_argument_spec(), config)
    assert needle in info.value.msg


def test_metrics_success_then_failure_keeps_last_success(tmp_path):
    path = str(tmp_path / 'm' / 'backup.prom')
    write_metrics(path, 'logical', True, 12.5, size=1000, finished_at=1700000000)
    assert os.stat(path).st_mode & 0o777 == 0o644
    write_metrics(path, 'logical', False, 3.0)
    samples = read_samples(path)
    assert samples[('supabase_backup_success', 'logical')] == 0
    assert samples[('supabase_backup_last_success_timestamp_seconds', 'logical')] == 1700000000
    assert samples[('supabase_backup_size_bytes', 'logical')] == 1000
    assert samples[('supabase_backup_duration_seconds', 'logical')] == 3.0
    text = open(path).read()
    assert '# TYPE supabase_backup_success gauge' in text
    assert os.listdir(os.path.dirname(path)) == ['backup.prom']


def test_metrics_keep_other_kinds_and_first_failure_reports_zero(tmp_path):
    path = str(tmp_path / 'backup.prom')
    write_metrics(path, 'volume', True, 1, size=5, finished_at=1600000000)
    write_metrics(path, 'logical', False, 2)
    samples = read_samples(path)
    assert samples[('supabase_backup_success', 'volume')] == 1
    assert samples[('supabase_backup_last_success_timestamp_seconds', 'volume')] == 1600000000
    assert samples[('supabase_backup_last_success_timestamp_seconds', 'logical')] == 0


def test_concurrent_writers_never_put_back_old_samples(tmp_path):
    import threading

    from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._metrics import write_free_bytes

    (tmp_path / 'textfile').mkdir()
    path = str(tmp_path / 'textfile' / 'supabase_backup.prom')
    rounds = 300
    seen_backwards = []

    def backups():
        for number in range(1, rounds + 1):
            write_metrics(path, 'logical', True, 1.0, size=number, finished_at=1700000000 + number)

    def status_refreshes():
        last = 0
        for number in range(rounds):
            write_free_bytes(path, 'logical', number)
            stamp = read_samples(path).get(('supabase_backup_last_success_timestamp_seconds', 'logical'), 0)
            if stamp < last:
                seen_backwards.append((last, stamp))
            last = stamp

    threads = [threading.Thread(target=backups), threading.Thread(target=status_refreshes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    samples = read_samples(path)
    assert samples[('supabase_backup_last_success_timestamp_seconds', 'logical')] == 1700000000 + rounds
    assert samples[('supabase_backup_size_bytes', 'logical')] == rounds
    assert seen_backwards == []
    assert os.listdir(tmp_path / 'textfile') == ['supabase_backup.prom']
