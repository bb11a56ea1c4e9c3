import os
import threading
import time

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import ConfigError
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._metrics import (
    escape_label_value,
    parse_sample,
    read_samples,
    write_free_bytes,
    write_metrics,
)
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


# ------------------------------------------------------------------ metrics --

# What the version before the operation label wrote (its write_metrics, verbatim): logical and
# volume backups, then a successful and a failed validation (kind="validation").
PREVIOUS_VERSION_FILE = '''\
# HELP supabase_backup_duration_seconds Duration of the last Supabase backup run, successful or not.
# TYPE supabase_backup_duration_seconds gauge
supabase_backup_duration_seconds{kind="logical"} 61.5
supabase_backup_duration_seconds{kind="validation"} 2.0
supabase_backup_duration_seconds{kind="volume"} 30.0
# HELP supabase_backup_size_bytes Size of the latest successful Supabase backup file.
# TYPE supabase_backup_size_bytes gauge
supabase_backup_size_bytes{kind="logical"} 123456.0
supabase_backup_size_bytes{kind="validation"} 123456.0
supabase_backup_size_bytes{kind="volume"} 999.0
# HELP supabase_backup_last_success_timestamp_seconds Unix time of the latest successful Supabase backup.
# TYPE supabase_backup_last_success_timestamp_seconds gauge
supabase_backup_last_success_timestamp_seconds{kind="logical"} 1790000000.0
supabase_backup_last_success_timestamp_seconds{kind="validation"} 1790100000.0
supabase_backup_last_success_timestamp_seconds{kind="volume"} 1789000000.0
# HELP supabase_backup_success 1 if the last Supabase backup run succeeded, 0 if it failed.
# TYPE supabase_backup_success gauge
supabase_backup_success{kind="logical"} 1.0
supabase_backup_success{kind="validation"} 0
supabase_backup_success{kind="volume"} 1.0
# HELP supabase_backup_free_bytes Free space, for unprivileged users, on the filesystem of the backup directory.
# TYPE supabase_backup_free_bytes gauge
supabase_backup_free_bytes{kind="logical"} 5000.0
supabase_backup_free_bytes{kind="validation"} 5000
supabase_backup_free_bytes{kind="volume"} 5000.0
'''


def metric(short, kind='logical', operation='backup'):
    return ('supabase_backup_' + short, kind, operation)


def test_metrics_success_then_failure_keeps_last_success(tmp_path):
    path = str(tmp_path / 'm' / 'backup.prom')
    write_metrics(path, 'logical', True, 12.5, size=1000, finished_at=1700000000)
    assert os.stat(path).st_mode & 0o777 == 0o644
    write_metrics(path, 'logical', False, 3.0, finished_at=1700000500)
    samples = read_samples(path)
    assert samples == {
        metric('success'): 0,
        metric('last_success_timestamp_seconds'): 1700000000,
        metric('last_run_timestamp_seconds'): 1700000500,
        metric('size_bytes'): 1000,
        metric('duration_seconds'): 3.0,
    }
    text = open(path).read()
    assert '# TYPE supabase_backup_success gauge' in text
    assert 'supabase_backup_success{kind="logical",operation="backup"} 0\n' in text
    assert os.listdir(os.path.dirname(path)) == ['backup.prom']


def test_metrics_keep_other_kinds_and_first_failure_reports_zero(tmp_path):
    path = str(tmp_path / 'backup.prom')
    write_metrics(path, 'volume', True, 1, size=5, finished_at=1600000000)
    write_metrics(path, 'logical', False, 2)
    samples = read_samples(path)
    assert samples[metric('success', 'volume')] == 1
    assert samples[metric('last_success_timestamp_seconds', 'volume')] == 1600000000
    assert samples[metric('last_success_timestamp_seconds')] == 0
    assert samples[metric('size_bytes')] == 0


@pytest.mark.parametrize('operation', ['restore', 'validate'])
def test_restore_or_validation_never_overwrites_the_backups_samples(tmp_path, operation):
    path = str(tmp_path / 'backup.prom')
    write_metrics(path, 'logical', True, 60.0, size=1000, finished_at=1700000000, free=50)
    backup = read_samples(path)
    write_metrics(path, 'logical', True, 9.0, size=1000, finished_at=1700000900, free=40, operation=operation)
    write_metrics(path, 'logical', False, 2.0, free=30, operation=operation)
    samples = read_samples(path)
    assert dict((key, value) for key, value in samples.items() if key[2] == 'backup') == backup
    assert samples[metric('success', operation=operation)] == 0
    assert samples[metric('last_success_timestamp_seconds', operation=operation)] == 1700000900
    assert samples[metric('duration_seconds', operation=operation)] == 2.0
    assert samples[metric('free_bytes', operation=operation)] == 30
    # ... and the next backup leaves the restore's or validation's samples alone.
    write_metrics(path, 'logical', False, 1.0)
    after = read_samples(path)
    assert after[metric('success')] == 0 and after[metric('last_success_timestamp_seconds')] == 1700000000
    assert after[metric('last_success_timestamp_seconds', operation=operation)] == 1700000900


def test_write_free_bytes_touches_only_its_own_gauge(tmp_path):
    path = str(tmp_path / 'backup.prom')
    write_metrics(path, 'volume', True, 1.0, size=5, finished_at=1600000000, free=10)
    before = read_samples(path)
    write_free_bytes(path, 'volume', 7)
    write_free_bytes(path, 'logical', 8, operation='validate')
    after = read_samples(path)
    assert after.pop(metric('free_bytes', 'logical', 'validate')) == 8
    assert after.pop(metric('free_bytes', 'volume')) == 7
    before.pop(metric('free_bytes', 'volume'))
    assert after == before


def test_file_of_the_previous_version_is_migrated(tmp_path):
    path = tmp_path / 'backup.prom'
    path.write_text(PREVIOUS_VERSION_FILE)
    expected = {}
    for kind, operation, duration, size, stamp, success in (('logical', 'backup', 61.5, 123456, 1790000000, 1),
                                                            ('volume', 'backup', 30.0, 999, 1789000000, 1),
                                                            ('logical', 'validate', 2.0, 123456, 1790100000, 0)):
        expected.update({metric('duration_seconds', kind, operation): duration,
                         metric('size_bytes', kind, operation): size,
                         metric('last_success_timestamp_seconds', kind, operation): stamp,
                         metric('success', kind, operation): success,
                         metric('free_bytes', kind, operation): 5000})
    assert read_samples(str(path)) == expected
    # The first run after the upgrade (here a failed one) keeps every last success time.
    write_metrics(str(path), 'logical', False, 4.0, finished_at=1790200000)
    expected.update({metric('duration_seconds'): 4.0, metric('success'): 0,
                     metric('last_run_timestamp_seconds'): 1790200000})
    assert read_samples(str(path)) == expected
    text = path.read_text()
    assert 'kind="validation"' not in text
    assert all('operation="' in line for line in text.splitlines() if not line.startswith('#'))
    assert 'supabase_backup_last_success_timestamp_seconds{kind="logical",operation="validate"} 1790100000' in text


def test_samples_with_the_operation_label_win_over_migrated_ones(tmp_path):
    path = tmp_path / 'backup.prom'
    path.write_text('supabase_backup_success{operation="backup",kind="logical"} 1\n'
                    'supabase_backup_success{kind="logical"} 0\n'
                    'supabase_backup_success{kind="validation"} 0\n'
                    'supabase_backup_success{kind="logical",operation="validate"} 1\n'
                    'supabase_backup_success{kind="validation",operation="backup"} 0\n')
    assert read_samples(str(path)) == {metric('success'): 1, metric('success', operation='validate'): 1,
                                       metric('success', 'validation'): 0}


@pytest.mark.parametrize('kind', ['we"ird', 'back\\slash', 'new\nline', 'brace}{,=', 'ünïcode', ''])
def test_label_values_are_escaped_and_read_back(tmp_path, kind):
    path = str(tmp_path / 'backup.prom')
    write_metrics(path, kind, True, 1.0, size=3, finished_at=1700000000, operation='op"\\\n}')
    write_metrics(path, 'logical', True, 1.0, size=4, finished_at=1700000001)
    samples = read_samples(path)
    assert samples[metric('size_bytes', kind, 'op"\\\n}')] == 3
    assert samples[metric('size_bytes')] == 4
    assert len(samples) == 10
    text = open(path, encoding='utf-8').read()
    line = 'supabase_backup_size_bytes{kind="%s",operation="op\\"\\\\\\n}"} 3' % escape_label_value(kind)
    assert line + '\n' in text
    assert len(text.splitlines()) == 5 * 2 + 10  # HELP and TYPE of 5 metrics, 10 samples: no raw newline


@pytest.mark.parametrize('value,escaped', [('a"b', 'a\\"b'), ('a\\b', 'a\\\\b'), ('a\nb', 'a\\nb'), ('\\n', '\\\\n')])
def test_escape_label_value(value, escaped):
    assert escape_label_value(value) == escaped


@pytest.mark.parametrize('line,expected', [
    ('m{kind="a",operation="b"} 1', ('m', {'kind': 'a', 'operation': 'b'}, 1.0)),
    ('m{kind="a",} 2.5 1700000000000', ('m', {'kind': 'a'}, 2.5)),
    ('m 3', ('m', {}, 3.0)),
    ('m{kind="a\\\\n\\"x"} 4', ('m', {'kind': 'a\\n"x'}, 4.0)),
    ('m{kind="}"} NaN', ('m', {'kind': '}'}, float('nan'))),
    ('# HELP m text', None),
    ('', None),
    ('m{kind="a" 1', None),
    ('m{kind="a"} one', None),
    ('m{kind=a} 1', None),
    ('m{kind="a"} 1 2 3', None),
])
def test_parse_sample(line, expected):
    parsed = parse_sample(line)
    if expected is None or expected[2] == expected[2]:
        assert parsed == expected
    else:  # NaN != NaN
        assert parsed[:2] == expected[:2] and parsed[2] != parsed[2]


def test_unknown_metrics_and_lines_are_kept_or_skipped(tmp_path):
    path = tmp_path / 'backup.prom'
    path.write_text('# a comment\n'
                    'garbage line\n'
                    'supabase_backup_upload_bytes{kind="logical",operation="upload"} 77\n'
                    'supabase_backup_future_gauge{kind="volume"} 5\n'
                    'supabase_backup_success{kind="logical"} not-a-number\n')
    write_metrics(str(path), 'logical', True, 1.0, size=1, finished_at=1700000000)
    samples = read_samples(str(path))
    assert samples[('supabase_backup_upload_bytes', 'logical', 'upload')] == 77
    assert samples[('supabase_backup_future_gauge', 'volume', 'backup')] == 5
    assert samples[metric('success')] == 1
    assert len(samples) == 7
    assert 'supabase_backup_upload_bytes{kind="logical",operation="upload"} 77\n' in path.read_text()


def test_unreadable_or_missing_file_reads_as_empty(tmp_path):
    assert read_samples(str(tmp_path / 'missing.prom')) == {}
    (tmp_path / 'binary.prom').write_bytes(b'\xff\xfe\x00')
    assert read_samples(str(tmp_path / 'binary.prom')) == {}


def test_success_without_finished_at_records_now(tmp_path):
    path = str(tmp_path / 'backup.prom')
    before = int(time.time())
    write_metrics(path, 'volume', True, 1.0, size=1, operation='restore')
    samples = read_samples(path)
    assert before <= samples[metric('last_success_timestamp_seconds', 'volume', 'restore')] <= time.time()
    assert samples[metric('last_run_timestamp_seconds', 'volume', 'restore')] == \
        samples[metric('last_success_timestamp_seconds', 'volume', 'restore')]
    write_metrics(path, 'volume', False, 1.0, operation='restore')
    samples = read_samples(path)
    assert samples[metric('last_success_timestamp_seconds', 'volume', 'restore')] >= before
    assert before <= samples[metric('last_run_timestamp_seconds', 'volume', 'restore')] <= time.time()


def test_concurrent_writers_never_put_back_old_samples(tmp_path):
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
            stamp = read_samples(path).get(metric('last_success_timestamp_seconds'), 0)
            if stamp < last:
                seen_backwards.append((last, stamp))
            last = stamp

    threads = [threading.Thread(target=backups), threading.Thread(target=status_refreshes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    samples = read_samples(path)
    assert samples[metric('last_success_timestamp_seconds')] == 1700000000 + rounds
    assert samples[metric('size_bytes')] == rounds
    assert seen_backwards == []
    assert os.listdir(tmp_path / 'textfile') == ['supabase_backup.prom']
