import json
import os

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import ConfigError, StatusError
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._metrics import read_samples
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._status import (
    StatusBackend,
    human_duration,
    human_size,
    parse_duration,
    parse_size,
    read_report,
)

NOW = 1767500000.0  # 2026-01-04, the injected clock
HOUR = 3600
DAY = 86400


def plant(directory, name, age, size=10):
    path = directory / name
    path.write_bytes(b'x' * size)
    os.utime(path, (NOW - age, NOW - age))
    return str(path)


def report(backup_path, content):
    with open(backup_path + '.validation.json', 'w', encoding='utf-8') as handle:
        handle.write(content if isinstance(content, str) else json.dumps(content))


def status(directory, check_mode=False, **params):
    params.setdefault('backup_dir', str(directory))
    params.setdefault('prefix', 'supabase_backup')
    return StatusBackend.from_params(params, check_mode=check_mode, clock=lambda: NOW).run()


def failure(directory, **params):
    with pytest.raises(StatusError) as info:
        status(directory, **params)
    assert '\n' not in info.value.msg
    return info.value


@pytest.mark.parametrize('value,expected', [
    ('8d', 8 * DAY), ('26h', 26 * HOUR), ('90m', 5400), ('3600s', 3600), ('3600', 3600), (7200, 7200),
    ('1d12h', 36 * HOUR), ('2W', 14 * DAY), (' 26h ', 26 * HOUR), (None, None), ('', None),
])
def test_parse_duration(value, expected):
    assert parse_duration('max_age', value) == expected


@pytest.mark.parametrize('value', ['8 days', 'h', '1.5h', '-5', '0', 0, True, 3.5, [1]])
def test_parse_duration_rejects(value):
    with pytest.raises(ConfigError) as info:
        parse_duration('max_age', value)
    assert info.value.msg.startswith('max_age') and '\n' not in info.value.msg


@pytest.mark.parametrize('value,expected', [
    ('20GB', 20 << 30), ('20G', 20 << 30), ('20GiB', 20 << 30), ('512mb', 512 << 20), ('1.5TiB', 3 << 39),
    ('1000000', 1000000), ('100B', 100), (4096, 4096), (0, 0), (None, None),
])
def test_parse_size(value, expected):
    assert parse_size('min_free', value) == expected


@pytest.mark.parametrize('value', ['20 gigs', 'GB', '-1', -1, True, 1.5])
def test_parse_size_rejects(value):
    with pytest.raises(ConfigError) as info:
        parse_size('min_free', value)
    assert info.value.msg.startswith('min_free')


def test_human_forms():
    assert human_duration(9 * DAY + 2 * HOUR + 5) == '9d 2h'
    assert human_duration(42) == '42s'
    assert human_duration(0) == '0s'
    assert human_size(512) == '512 B'
    assert human_size(20 << 30) == '20.0 GiB'


def test_newest_of_mixed_plain_and_encrypted_sidecars_ignored(tmp_path):
    plant(tmp_path, 'supabase_backup_20260101_020000.sql.gz', 3 * DAY, size=100)
    plant(tmp_path, 'supabase_backup_20260102_020000.sql.gz', 2 * DAY, size=200)
    newest = plant(tmp_path, 'supabase_backup_20260103_020000.sql.gz.gpg', 5 * HOUR, size=300)
    for sidecar in ('.sha256', '.manifest.json', '.validation.txt'):
        plant(tmp_path, 'supabase_backup_20260103_020000.sql.gz.gpg' + sidecar, 0, size=1000)
    # Not backups of this prefix and pattern: other prefixes, volume snapshots, temporary files, a directory.
    plant(tmp_path, 'other_20260104_020000.sql.gz', 0)
    plant(tmp_path, 'supabase-volume-20260104_020000.tar.gz', 0)
    plant(tmp_path, '.supabase_backup_20260104_020000.sql.gz.abc.partial', 0)
    (tmp_path / 'supabase_backup_20260105_020000.sql.gz').mkdir()
    result = status(tmp_path)
    assert result['changed'] is False and result['problems'] == []
    assert result['newest'] == {'path': newest, 'name': os.path.basename(newest), 'timestamp': '20260103_020000',
                                'restore_point': 'supabase_backup_20260103_020000',
                                'mtime': NOW - 5 * HOUR, 'age_seconds': 5 * HOUR, 'size': 300, 'encrypted': True}
    assert result['count'] == 3 and result['total_size'] == 600
    assert result['free_bytes'] > 0 and result['total_bytes'] >= result['free_bytes']
    assert result['validation'] is None
    assert result['msg'].startswith('newest logical backup supabase_backup_20260103_020000.sql.gz.gpg is 5h old;')


def test_newest_is_by_name_not_mtime(tmp_path):
    plant(tmp_path, 'supabase_backup_20260101_020000.sql.gz', 0)
    plant(tmp_path, 'supabase_backup_20260102_020000.sql.gz', 2 * DAY)
    result = status(tmp_path)
    assert result['newest']['timestamp'] == '20260102_020000' and result['newest']['age_seconds'] == 2 * DAY
    assert result['newest']['encrypted'] is False


def test_volume_kind_and_prefix(tmp_path):
    plant(tmp_path, 'supabase_backup_20260103_020000.sql.gz', HOUR)
    plant(tmp_path, 'nightly_20260103_030000.sql.gz', HOUR)
    plant(tmp_path, 'supabase-volume-20260101_020000.tar.gz', 3 * DAY)
    plant(tmp_path, 'supabase-volume-20260102_020000.tar.gz.gpg', 2 * DAY)
    volume = status(tmp_path, kind='volume')
    assert volume['kind'] == 'volume' and volume['count'] == 2
    assert volume['newest']['name'] == 'supabase-volume-20260102_020000.tar.gz.gpg'
    assert status(tmp_path, prefix='nightly')['newest']['name'] == 'nightly_20260103_030000.sql.gz'


def test_empty_directory_is_a_status_until_max_age(tmp_path):
    result = status(tmp_path)
    assert result['newest'] is None and result['count'] == 0 and result['total_size'] == 0
    assert result['msg'].startswith('no logical backup named supabase_backup_YYYYMMDD_HHMMSS.sql.gz[.gpg] in ')
    error = failure(tmp_path, max_age='26h')
    assert error.msg == 'no logical backup named supabase_backup_YYYYMMDD_HHMMSS.sql.gz[.gpg] in %s' % tmp_path
    assert error.details['count'] == 0 and error.details['problems'] == [error.msg]


def test_max_age(tmp_path):
    plant(tmp_path, 'supabase_backup_20260101_020000.sql.gz', 26 * HOUR + 60)
    assert status(tmp_path, max_age='27h')['problems'] == []
    assert status(tmp_path, max_age=26 * HOUR + 60)['problems'] == []  # as old as allowed is not too old
    error = failure(tmp_path, max_age='26h')
    assert error.msg == ('newest logical backup supabase_backup_20260101_020000.sql.gz is 1d 2h old, '
                         'more than max_age 1d 2h')
    assert error.details['newest']['age_seconds'] == 26 * HOUR + 60 and error.details['changed'] is False


def test_future_mtime_is_age_zero(tmp_path):
    plant(tmp_path, 'supabase_backup_20260101_020000.sql.gz', -HOUR)
    assert status(tmp_path, max_age='1s')['newest']['age_seconds'] == 0


def test_min_free(tmp_path):
    free = status(tmp_path)['free_bytes']
    assert status(tmp_path, min_free=0)['problems'] == []
    error = failure(tmp_path, min_free=free + (1 << 40))
    assert 'free on %s, less than min_free' % tmp_path in error.msg
    assert error.details['free_bytes'] > 0


def test_all_problems_in_one_line(tmp_path):
    plant(tmp_path, 'supabase_backup_20260101_020000.sql.gz', 10 * DAY)
    error = failure(tmp_path, max_age='8d', min_free='1000TB', require_validation=True)
    assert len(error.details['problems']) == 3 and error.msg == '; '.join(error.details['problems'])


def test_validation_of_the_newest_backup_with_a_report(tmp_path):
    old = plant(tmp_path, 'supabase_backup_20260101_020000.sql.gz', 3 * DAY)
    middle = plant(tmp_path, 'supabase_backup_20260102_020000.sql.gz.gpg', 2 * DAY)
    newest = plant(tmp_path, 'supabase_backup_20260103_020000.sql.gz', DAY)
    report(old, {'passed': True, 'validated_at': '2026-01-01T03:00:00+00:00', 'backup': old})
    report(middle, {'passed': False, 'validated_at': '2026-01-02T03:00:00+00:00', 'error': 'row counts differ'})
    validation = status(tmp_path)['validation']
    assert validation == {'report': middle + '.validation.json', 'backup': middle, 'passed': False,
                          'validated_at': '2026-01-02T03:00:00+00:00', 'error': 'row counts differ',
                          'of_newest': False}
    assert failure(tmp_path, require_validation=True).msg == \
        'newest backup supabase_backup_20260103_020000.sql.gz has no validation report'
    report(newest, {'passed': False, 'validated_at': '2026-01-03T03:00:00+00:00', 'error': 'restore failed'})
    assert failure(tmp_path, require_validation=True).msg == \
        'validation of newest backup supabase_backup_20260103_020000.sql.gz did not pass: restore failed'
    report(newest, {'passed': True, 'validated_at': '2026-01-03T03:00:00+00:00', 'backup': newest})
    result = status(tmp_path, require_validation=True)
    assert result['validation']['of_newest'] is True and result['validation']['passed'] is True
    assert result['validation']['error'] is None


@pytest.mark.parametrize('content,needle', [
    ('{"passed": tru', 'is not valid JSON'),
    ('[true]', 'is not a JSON object'),
    ('{"passed": "yes", "validated_at": "2026-01-03T03:00:00+00:00"}', 'has no true/false "passed"'),
    ('{}', 'has no true/false "passed"'),
    (b'\xff\xfe', 'is not valid JSON'),
])
def test_malformed_report_did_not_pass(tmp_path, content, needle):
    newest = plant(tmp_path, 'supabase_backup_20260103_020000.sql.gz', DAY)
    with open(newest + '.validation.json', 'wb') as handle:
        handle.write(content if isinstance(content, bytes) else content.encode())
    validation = status(tmp_path)['validation']
    assert validation['passed'] is False and validation['of_newest'] is True
    assert needle in validation['error'] and newest + '.validation.json' in validation['error']
    error = failure(tmp_path, require_validation=True)
    assert needle in error.msg


def test_unreadable_report_did_not_pass(tmp_path):
    assert read_report(str(tmp_path))[0] is False  # a directory: open() fails
    assert 'cannot be read' in read_report(str(tmp_path))[2]


def test_missing_or_wrong_backup_dir(tmp_path):
    with pytest.raises(ConfigError) as info:
        status(tmp_path / 'nowhere')
    assert info.value.msg == 'backup_dir %s does not exist' % (tmp_path / 'nowhere')
    plant(tmp_path, 'file', 0)
    with pytest.raises(ConfigError) as info:
        status(tmp_path / 'file')
    assert info.value.msg.endswith('is not a directory')


@pytest.mark.parametrize('params,needle', [
    ({'max_age': 'soon'}, "max_age 'soon' is not a duration"),
    ({'min_free': 'lots'}, "min_free 'lots' is not a size"),
    ({'kind': 'incremental'}, 'kind must be one of logical, volume'),
    ({'prefix': '../x'}, 'prefix'),
])
def test_bad_options_are_config_errors(tmp_path, params, needle):
    with pytest.raises(ConfigError) as info:
        status(tmp_path, **params)
    assert needle in info.value.msg and '\n' not in info.value.msg


def test_metrics_gauge_refreshed_not_in_check_mode(tmp_path):
    metrics = str(tmp_path / 'prom' / 'supabase_backup.prom')
    backups = tmp_path / 'backups'
    backups.mkdir()
    status(backups, check_mode=True, metrics_file=metrics)
    assert not os.path.exists(metrics)
    result = status(backups, kind='volume', metrics_file=metrics)
    assert result['changed'] is False
    assert read_samples(metrics) == {('supabase_backup_free_bytes', 'volume', 'backup'): result['free_bytes']}


def test_metrics_gauge_refreshed_even_when_failing_and_unwritable_gauge_fails(tmp_path):
    metrics = str(tmp_path / 'supabase_backup.prom')
    error = failure(tmp_path, max_age='1h', metrics_file=metrics)
    assert read_samples(metrics)[('supabase_backup_free_bytes', 'logical', 'backup')] == error.details['free_bytes']
    blocker = tmp_path / 'not-a-dir'
    blocker.write_text('')
    error = failure(tmp_path, metrics_file=str(blocker / 'supabase_backup.prom'))
    assert error.msg.startswith('metrics_file %s not written: ' % (blocker / 'supabase_backup.prom'))
