"""The Prometheus alert rules shipped in roles/supabase_backup/files, tested with promtool.

The input series are not typed by hand: every case writes a metrics file with the
engine's own ``write_metrics``/``write_free_bytes`` and the series are read back from
that file, so a renamed metric or label breaks these tests as it would break the alerts.
promtool comes from scripts/setup.sh (binary only, from Debian's prometheus package).
"""

import os
import re
import shutil
import subprocess

import pytest
import yaml

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._metrics import (
    read_samples,
    write_free_bytes,
    write_gauges,
    write_metrics,
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULES = os.path.join(REPO_ROOT, 'roles', 'supabase_backup', 'files', 'supabase_backup.rules.yml')
ALERTS = ('SupabaseBackupFailed', 'SupabaseRestoreFailed', 'SupabaseOffsiteCopyFailed', 'SupabaseBackupMissing',
          'SupabaseBackupMetricsAbsent', 'SupabaseBackupDiskSpaceLow', 'SupabasePitrReceiverDown',
          'SupabasePitrArchiveBehind', 'SupabasePitrWalGap', 'SupabasePitrBaseBackupMissing')
DAY = 86400
# promtool's clock starts at 0: every case is judged at NOW, 10 days into it, so that
# time() in the rules is NOW and "9 days ago" a real timestamp. The metrics file is scraped
# once a minute (STEP), in most cases for the last HISTORY minutes only: rules reading days
# of samples are slow, and promtool caps a query at 10000 samples.
# promtool evaluates the rules every EVALUATION_INTERVAL from 0 to NOW and each evaluation
# costs: 1m makes a case take 3 s, 5m 0.7 s. The `for:` cases below allow for the 5m grid.
NOW = 10 * DAY
STEP = 60
TIMELINE = NOW // STEP
HISTORY = 3 * 60
EVALUATION_INTERVAL = '5m'
# What node_exporter adds when Prometheus scrapes the textfile.
SCRAPE_LABELS = {'instance': 'db1.example.org:9100', 'job': 'node'}
INSTANCE = SCRAPE_LABELS['instance']
GB = 10 ** 9
# One sample line of a textfile, e.g. supabase_backup_success{kind="logical"} 1
_SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def promtool():
    path = os.environ.get('PROMTOOL') or shutil.which('promtool') or '/opt/cortexreview/promtool/promtool'
    if not os.access(path, os.X_OK):
        pytest.fail('promtool not found (PROMTOOL, PATH, /opt/cortexreview/promtool): run scripts/setup.sh as root')
    return path


def run_promtool(*args):
    proc = subprocess.run([promtool()] + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=300, check=False)
    return proc.returncode, proc.stdout


def textfile_series(path):
    """{series selector as Prometheus stores it after the scrape: value} of a textfile."""
    series = {}
    project = read_samples(path)
    with open(path, encoding='utf-8') as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            match = _SAMPLE.match(line)
            assert match, 'unparsable textfile line %r in %s' % (line, path)
            labels = dict(_LABEL.findall(match.group('labels') or ''))
            # The project's own reader must agree with this one on every sample (files of the
            # previous version: as migrated).
            kind, operation = labels.get('kind', ''), labels.get('operation')
            if operation is None:
                kind, operation = ('logical', 'validate') if kind == 'validation' else (kind, 'backup')
            assert project.pop((match.group('name'), kind, operation)) == float(match.group('value')), line
            labels.update(SCRAPE_LABELS)
            selector = '%s{%s}' % (match.group('name'),
                                   ','.join('%s="%s"' % item for item in sorted(labels.items())))
            series[selector] = float(match.group('value'))
    assert project == {}
    return series


def input_series(timeline):
    """promtool input_series from [(minutes, textfile or None)]: each phase scrapes that file
    once a minute (None: the file is gone, nothing scraped)."""
    phases = [(minutes, textfile_series(path) if path else {}) for minutes, path in timeline]
    names = sorted(set().union(*(series for _minutes, series in phases)))
    result = []
    for name in names:
        values = []
        for minutes, series in phases:
            if name in series:
                values.append('%s+0x%d' % (repr(series[name]), minutes - 1))
            else:
                values.append('_x%d' % (minutes - 1))
        result.append({'series': name, 'values': ' '.join(values)})
    return result


def expected_alerts(fired, eval_minutes):
    """alert_rule_test entries: every alert is checked, the ones not in ``fired`` must be silent."""
    tests = []
    for alert in ALERTS:
        exp = []
        for labels, annotations in fired.get(alert, ()):
            exp.append({'exp_labels': dict(labels), 'exp_annotations': dict(annotations)})
        tests.append({'eval_time': '%dm' % eval_minutes, 'alertname': alert, 'exp_alerts': exp})
    return tests


def run_rule_test(tmp_path, timeline, fired):
    """Run promtool on ``timeline`` (see input_series), which ends at NOW; only ``fired`` may fire."""
    recent = sum(minutes for minutes, _path in timeline)
    assert recent <= TIMELINE
    timeline = [(TIMELINE - recent, None)] + list(timeline) if recent < TIMELINE else timeline
    test = {
        'rule_files': [RULES],
        'evaluation_interval': EVALUATION_INTERVAL,
        'tests': [{
            'interval': '%ds' % STEP,
            'input_series': input_series(timeline),
            'alert_rule_test': expected_alerts(fired, TIMELINE),
        }],
    }
    test_file = tmp_path / 'alert_rules_test.yml'
    test_file.write_text(yaml.safe_dump(test, sort_keys=False, width=1000))
    code, output = run_promtool('test', 'rules', str(test_file))
    assert code == 0, 'promtool test rules failed:\n%s\n--- %s ---\n%s' % (output, test_file, test_file.read_text())


def metrics_file(tmp_path, name='supabase_backup.prom'):
    return str(tmp_path / 'textfile' / name)


# What the version before the operation label wrote (its write_metrics' format, verbatim;
# tests/unit/plugins/module_utils/test_options_metrics.py pins it too): a logical backup, a
# volume snapshot and a validation (then kind="validation"), each with its last success time.
PREVIOUS_VERSION_FILE = '''\
# HELP supabase_backup_duration_seconds Duration of the last Supabase backup run, successful or not.
# TYPE supabase_backup_duration_seconds gauge
supabase_backup_duration_seconds{{kind="logical"}} 61.5
supabase_backup_duration_seconds{{kind="validation"}} 2.0
supabase_backup_duration_seconds{{kind="volume"}} 30.0
# HELP supabase_backup_size_bytes Size of the latest successful Supabase backup file.
# TYPE supabase_backup_size_bytes gauge
supabase_backup_size_bytes{{kind="logical"}} 123456.0
supabase_backup_size_bytes{{kind="validation"}} 123456.0
supabase_backup_size_bytes{{kind="volume"}} 999.0
# HELP supabase_backup_last_success_timestamp_seconds Unix time of the latest successful Supabase backup.
# TYPE supabase_backup_last_success_timestamp_seconds gauge
supabase_backup_last_success_timestamp_seconds{{kind="logical"}} {logical}.0
supabase_backup_last_success_timestamp_seconds{{kind="validation"}} {validation}.0
supabase_backup_last_success_timestamp_seconds{{kind="volume"}} {volume}.0
# HELP supabase_backup_success 1 if the last Supabase backup run succeeded, 0 if it failed.
# TYPE supabase_backup_success gauge
supabase_backup_success{{kind="logical"}} 1.0
supabase_backup_success{{kind="validation"}} {validation_success}
supabase_backup_success{{kind="volume"}} 1.0
# HELP supabase_backup_free_bytes Free space, for unprivileged users, on the filesystem of the backup directory.
# TYPE supabase_backup_free_bytes gauge
supabase_backup_free_bytes{{kind="logical"}} 100000000000.0
supabase_backup_free_bytes{{kind="validation"}} 100000000000
supabase_backup_free_bytes{{kind="volume"}} 100000000000.0
'''


# ----------------------------------------------------------- expected alerts --

def failed(kind, operation='backup', last_success_age=None):
    if last_success_age is None:
        tail = 'none has ever succeeded'
    else:
        tail = 'the last successful one finished %s ago' % last_success_age
    return ({'kind': kind, 'operation': operation, 'severity': 'warning', **SCRAPE_LABELS},
            {'summary': 'Supabase %s backups: the last %s run failed on %s' % (kind, operation, INSTANCE),
             'description': 'The last %s run of the %s backups on %s failed; %s. See the backup log on the host.'
                            % (operation, kind, INSTANCE, tail)})


def restore_failed(kind, age):
    return ({'kind': kind, 'operation': 'restore', 'severity': 'warning', **SCRAPE_LABELS},
            {'summary': 'Supabase %s restore failed on %s' % (kind, INSTANCE),
             'description': 'The last restore of a %s backup on %s failed %s ago. A failed restore leaves the '
                            'database as it was, unless its output says the roll-back failed: see it. This alert '
                            'ends with the next successful %s restore, or a week after the failure.'
                            % (kind, INSTANCE, age, kind)})


def missing(age=None):
    if age is None:
        head = 'The logical backup on %s has never succeeded' % INSTANCE
    else:
        head = 'The last successful logical backup on %s finished %s ago' % (INSTANCE, age)
    return ({'kind': 'logical', 'operation': 'backup', 'severity': 'critical', **SCRAPE_LABELS},
            {'summary': 'No successful Supabase logical backup on %s for more than 8 days' % INSTANCE,
             'description': head + '; the contract is one a week (alert after 8 days).'})


def absent():
    return ({'kind': 'logical', 'operation': 'backup', 'severity': 'warning', **SCRAPE_LABELS},
            {'summary': 'Supabase logical backup metrics vanished on %s' % INSTANCE,
             'description': 'supabase_backup_last_success_timestamp_seconds{kind="logical",operation="backup"} was '
                            'scraped from %s in the last 8 days but is gone: check the metrics file and '
                            'node_exporter\'s textfile collector. Missing backups cannot be alerted on meanwhile.'
                            % INSTANCE})


def disk_low(kind, free_si, free_iec):
    return ({'kind': kind, 'operation': 'backup', 'severity': 'warning', **SCRAPE_LABELS},
            {'summary': 'Low free space for Supabase %s backups on %s' % (kind, INSTANCE),
             'description': 'The filesystem of the %s backup directory on %s has %sB (%sB) free, '
                            'under 20 GB (1 GB = 10^9 bytes).' % (kind, INSTANCE, free_si, free_iec)})


def good_backups(path, age=DAY, free=100 * GB):
    """A metrics file after good logical and volume backups ``age`` seconds before NOW."""
    for kind in ('logical', 'volume'):
        write_metrics(path, kind, True, 60.0, size=GB, finished_at=NOW - age, free=free)


# --------------------------------------------------------------------- tests --

def test_promtool_check_rules():
    code, output = run_promtool('check', 'rules', RULES)
    assert code == 0, output
    assert 'SUCCESS: %d rules found' % len(ALERTS) in output, output


def test_rule_file_names_only_metrics_and_labels_the_engine_writes(tmp_path):
    path = metrics_file(tmp_path)
    write_metrics(path, 'logical', True, 1.0, size=1, finished_at=1, free=1)
    series = textfile_series(path)
    archive = metrics_file(tmp_path, 'pitr.prom')
    write_gauges(archive, 'pitr', 'archive', healthy_archive())
    written = set(name.split('{')[0] for name in list(series) + list(textfile_series(archive)))
    with open(RULES, encoding='utf-8') as handle:
        rules = yaml.safe_load(handle)
    exprs = ' '.join(rule['expr'] for group in rules['groups'] for rule in group['rules'])
    used = set(re.findall(r'\bsupabase_backup_[a-z_]+', exprs))
    assert used and used <= written
    assert set(re.findall(r'\b([a-z_]+)!?=~?"', exprs)) == {'kind', 'operation'}
    assert all('kind="logical"' in name and 'operation="backup"' in name for name in series)
    assert sorted(rule['alert'] for group in rules['groups'] for rule in group['rules']) == sorted(ALERTS)


@pytest.mark.parametrize('kind,operation', [('logical', 'backup'), ('volume', 'backup'), ('logical', 'validate')])
def test_failed_run_fires_failed_with_its_kind_and_operation(tmp_path, kind, operation):
    path = metrics_file(tmp_path)
    good_backups(path, age=2 * DAY)
    write_metrics(path, 'logical', True, 30.0, size=GB, finished_at=NOW - 2 * DAY, free=100 * GB, operation='validate')
    write_metrics(path, kind, False, 3.0, finished_at=NOW - 3600, free=100 * GB, operation=operation)
    run_rule_test(tmp_path, [(HISTORY, path)], {'SupabaseBackupFailed': [failed(kind, operation, '2d 0h 0m 0s')]})


def good_run_then(tmp_path, later_run):
    """A metrics file after a good logical run, and a copy of it that ``later_run`` then updated."""
    good = metrics_file(tmp_path / 'good')
    write_metrics(good, 'logical', True, 60.0, size=GB, finished_at=NOW - DAY, free=100 * GB)
    later = metrics_file(tmp_path / 'later')
    os.makedirs(os.path.dirname(later))
    shutil.copy(good, later)
    later_run(later)
    return good, later


def test_failure_fires_within_minutes_and_success_clears_it(tmp_path):
    ok, bad = good_run_then(tmp_path, lambda path: write_metrics(path, 'logical', False, 3.0, free=100 * GB))
    # A failed run 11 minutes ago: firing (for: 5m); 2 minutes ago: still pending.
    run_rule_test(tmp_path, [(HISTORY - 11, ok), (11, bad)],
                  {'SupabaseBackupFailed': [failed('logical', 'backup', '1d 0h 0m 0s')]})
    run_rule_test(tmp_path, [(HISTORY - 2, ok), (2, bad)], {})
    # ... and the next successful run resolves it.
    run_rule_test(tmp_path, [(HISTORY - 32, ok), (30, bad), (2, ok)], {})


def test_restore_or_validation_success_does_not_clear_a_failed_backup(tmp_path):
    def later(path):
        write_metrics(path, 'logical', False, 3.0, finished_at=NOW - 7200, free=100 * GB)
        for operation in ('restore', 'validate'):
            write_metrics(path, 'logical', True, 20.0, size=GB, finished_at=NOW - 3600, operation=operation)

    ok, bad = good_run_then(tmp_path, later)
    run_rule_test(tmp_path, [(HISTORY - 30, ok), (30, bad)],
                  {'SupabaseBackupFailed': [failed('logical', 'backup', '1d 0h 0m 0s')]})


def test_all_kinds_and_operations_successful_and_recent_is_silent(tmp_path):
    path = metrics_file(tmp_path)
    good_backups(path)
    for kind, operation in (('logical', 'validate'), ('logical', 'restore'), ('volume', 'restore')):
        write_metrics(path, kind, True, 10.0, size=GB, finished_at=NOW - DAY, free=100 * GB, operation=operation)
    write_free_bytes(path, 'logical', 90 * GB)
    run_rule_test(tmp_path, [(HISTORY, path)], {})


@pytest.mark.parametrize('days,fires', [(9, True), (8.5, True), (7, False), (7.9, False)])
def test_missing_after_eight_days(tmp_path, days, fires):
    path = metrics_file(tmp_path)
    write_metrics(path, 'logical', True, 60.0, size=GB, finished_at=int(NOW - days * DAY), free=100 * GB)
    ages = {9: '9d 0h 0m 0s', 8.5: '8d 12h 0m 0s'}
    run_rule_test(tmp_path, [(HISTORY, path)], {'SupabaseBackupMissing': [missing(ages[days])]} if fires else {})


def test_never_succeeded_fires_missing_and_failed(tmp_path):
    path = metrics_file(tmp_path)
    write_metrics(path, 'logical', False, 0.5, free=100 * GB)
    assert read_samples(path)[('supabase_backup_last_success_timestamp_seconds', 'logical', 'backup')] == 0
    run_rule_test(tmp_path, [(HISTORY, path)], {
        'SupabaseBackupMissing': [missing()],
        'SupabaseBackupFailed': [failed('logical')],
    })


def test_recent_validation_restore_or_volume_success_does_not_satisfy_missing(tmp_path):
    path = metrics_file(tmp_path)
    write_metrics(path, 'logical', True, 60.0, size=GB, finished_at=NOW - 9 * DAY, free=100 * GB)
    write_metrics(path, 'volume', True, 60.0, size=GB, finished_at=NOW - 3600, free=100 * GB)
    for operation in ('validate', 'restore'):
        write_metrics(path, 'logical', True, 5.0, size=GB, finished_at=NOW - 3600, operation=operation)
    run_rule_test(tmp_path, [(HISTORY, path)], {'SupabaseBackupMissing': [missing('9d 0h 0m 0s')]})
    # Only a validation ever succeeded: the backup never did.
    never = metrics_file(tmp_path, 'never.prom')
    write_metrics(never, 'logical', True, 5.0, size=GB, finished_at=NOW - 3600, operation='validate')
    run_rule_test(tmp_path, [(HISTORY, never)], {})  # no backup sample at all: nothing configured yet
    write_metrics(never, 'logical', False, 1.0, finished_at=NOW - 7200)
    run_rule_test(tmp_path, [(HISTORY, never)], {'SupabaseBackupMissing': [missing()],
                                                 'SupabaseBackupFailed': [failed('logical')]})


def test_old_or_never_volume_and_validation_do_not_fire_missing(tmp_path):
    path = metrics_file(tmp_path)
    write_metrics(path, 'logical', True, 60.0, size=GB, finished_at=NOW - DAY, free=100 * GB)
    write_metrics(path, 'volume', True, 60.0, size=GB, finished_at=NOW - 9 * DAY - 3600, free=100 * GB)
    write_metrics(path, 'logical', True, 5.0, finished_at=NOW - 9 * DAY, operation='validate')
    write_metrics(path, 'logical', False, 5.0, operation='validate')
    never = metrics_file(tmp_path, 'never.prom')
    write_metrics(never, 'volume', False, 1.0)
    write_metrics(never, 'logical', False, 1.0, operation='validate')
    write_metrics(never, 'logical', True, 60.0, size=GB, finished_at=NOW - DAY)
    run_rule_test(tmp_path, [(HISTORY, path)],
                  {'SupabaseBackupFailed': [failed('logical', 'validate', '9d 0h 0m 0s')]})
    run_rule_test(tmp_path, [(HISTORY, never)], {
        'SupabaseBackupFailed': [failed('volume'), failed('logical', 'validate')],
    })


@pytest.mark.parametrize('kind', ['logical', 'volume'])
def test_failed_restore_fires_restore_failed_not_backup_failed(tmp_path, kind):
    path = metrics_file(tmp_path)
    good_backups(path)
    write_metrics(path, kind, True, 30.0, size=GB, finished_at=NOW - 3 * DAY, operation='restore')
    write_metrics(path, kind, False, 3.0, finished_at=NOW - 3600, operation='restore')
    run_rule_test(tmp_path, [(HISTORY, path)], {'SupabaseRestoreFailed': [restore_failed(kind, '1h 0m 0s')]})


def test_restore_failed_waits_for_its_for_and_ends_with_a_success_or_after_a_week(tmp_path):
    def failed_restore(finished_at):
        return lambda path: write_metrics(path, 'logical', False, 3.0, finished_at=finished_at, operation='restore')

    ok, bad = good_run_then(tmp_path, failed_restore(NOW - 11 * 60))
    run_rule_test(tmp_path, [(HISTORY - 11, ok), (11, bad)],
                  {'SupabaseRestoreFailed': [restore_failed('logical', '11m 0s')]})
    run_rule_test(tmp_path, [(HISTORY - 2, ok), (2, bad)], {})  # pending (for: 5m)
    # The next successful restore of the same kind ends it; a volume restore does not.
    fixed = metrics_file(tmp_path / 'fixed')
    os.makedirs(os.path.dirname(fixed))
    shutil.copy(bad, fixed)
    write_metrics(fixed, 'volume', True, 3.0, size=GB, finished_at=NOW - 5 * 60, operation='restore')
    run_rule_test(tmp_path, [(HISTORY - 30, bad), (30, fixed)],
                  {'SupabaseRestoreFailed': [restore_failed('logical', '11m 0s')]})
    write_metrics(fixed, 'logical', True, 3.0, size=GB, finished_at=NOW - 5 * 60, operation='restore')
    run_rule_test(tmp_path, [(HISTORY - 30, bad), (30, fixed)], {})
    # A week after the failure it ends by itself (no scheduled restore would ever clear it).
    _ok, old = good_run_then(tmp_path / 'old', failed_restore(NOW - 7 * DAY - 3600))
    run_rule_test(tmp_path, [(HISTORY, old)], {})
    _ok, recent = good_run_then(tmp_path / 'recent', failed_restore(NOW - 6 * DAY))
    run_rule_test(tmp_path, [(HISTORY, recent)], {'SupabaseRestoreFailed': [restore_failed('logical', '6d 0h 0m 0s')]})


@pytest.mark.parametrize('free,fires,si,iec', [
    (19 * GB, True, '19G', '17.7Gi'),
    (int(19.99 * GB), True, '19.99G', '18.62Gi'),
    (20 * GB, False, None, None),
    (25 * GB, False, None, None),
])
def test_disk_space_low_under_20_gb(tmp_path, free, fires, si, iec):
    path = metrics_file(tmp_path)
    write_metrics(path, 'logical', True, 60.0, size=GB, finished_at=NOW - DAY, free=100 * GB)
    # The periodic status refresh, between runs.
    write_free_bytes(path, 'logical', free)
    run_rule_test(tmp_path, [(HISTORY, path)],
                  {'SupabaseBackupDiskSpaceLow': [disk_low('logical', si, iec)]} if fires else {})


def test_disk_space_low_is_one_alert_per_backup_directory(tmp_path):
    path = metrics_file(tmp_path)
    good_backups(path)
    # Every operation of the logical kind measured its (one) backup directory low ...
    for operation in ('validate', 'restore'):
        write_metrics(path, 'logical', True, 5.0, size=GB, finished_at=NOW - 3600, free=10 * GB, operation=operation)
    run_rule_test(tmp_path, [(HISTORY, path)], {})  # ... but the backups' gauge, refreshed since, says plenty
    write_free_bytes(path, 'logical', 10 * GB)
    write_free_bytes(path, 'volume', 5 * GB)
    run_rule_test(tmp_path, [(HISTORY, path)], {'SupabaseBackupDiskSpaceLow': [
        disk_low('logical', '10G', '9.313Gi'), disk_low('volume', '5G', '4.657Gi')]})


def test_disk_space_low_waits_for_its_for_duration(tmp_path):
    plenty, low = good_run_then(tmp_path, lambda path: write_free_bytes(path, 'logical', 19 * GB))
    # for: 30m
    run_rule_test(tmp_path, [(HISTORY - 20, plenty), (20, low)], {})
    run_rule_test(tmp_path, [(HISTORY - 35, plenty), (35, low)],
                  {'SupabaseBackupDiskSpaceLow': [disk_low('logical', '19G', '17.7Gi')]})


def test_vanished_logical_metrics_fire_absent(tmp_path):
    path = metrics_file(tmp_path)
    write_metrics(path, 'logical', True, 60.0, size=GB, finished_at=NOW - DAY, free=100 * GB)
    # Never scraped (metrics not configured, no run yet): nothing to miss.
    run_rule_test(tmp_path, [], {})
    # Scraped for hours, then the file is deleted: absent after `for: 1h`, not before.
    run_rule_test(tmp_path, [(HISTORY - 30, path), (30, None)], {})
    run_rule_test(tmp_path, [(HISTORY - 90, path), (90, None)], {'SupabaseBackupMetricsAbsent': [absent()]})
    # Only volume, restore and validation metrics left (the logical backup's gone): still absent.
    others = metrics_file(tmp_path, 'others.prom')
    write_metrics(others, 'volume', True, 1.0, size=GB, finished_at=NOW - DAY)
    for operation in ('validate', 'restore'):
        write_metrics(others, 'logical', True, 1.0, size=GB, finished_at=NOW - DAY, operation=operation)
    run_rule_test(tmp_path, [(HISTORY - 90, path), (90, others)], {'SupabaseBackupMetricsAbsent': [absent()]})


def previous_and_migrated(tmp_path, logical_age=2 * DAY, validation_success=1):
    """A metrics file of the previous version, and a copy the new version's first write migrated
    (the status refresh, minutes after the upgrade)."""
    previous = metrics_file(tmp_path, 'previous.prom')
    os.makedirs(os.path.dirname(previous), exist_ok=True)
    with open(previous, 'w', encoding='utf-8') as handle:
        handle.write(PREVIOUS_VERSION_FILE.format(logical=NOW - logical_age, volume=NOW - 3 * DAY,
                                                  validation=NOW - DAY, validation_success=validation_success))
    migrated = metrics_file(tmp_path / 'migrated')
    os.makedirs(os.path.dirname(migrated))
    shutil.copy(previous, migrated)
    write_free_bytes(migrated, 'logical', 100 * GB)
    assert read_samples(migrated)[('supabase_backup_last_success_timestamp_seconds', 'logical', 'backup')] == \
        NOW - logical_age
    return previous, migrated


def test_upgrade_from_the_previous_version_fires_nothing(tmp_path):
    previous, migrated = previous_and_migrated(tmp_path)
    # Before, during and hours after the switch of series: no alert (the old series vanishing
    # is no SupabaseBackupMetricsAbsent, the migrated last success no SupabaseBackupMissing).
    run_rule_test(tmp_path, [(HISTORY, previous)], {})
    run_rule_test(tmp_path, [(HISTORY - 100, previous), (100, migrated)], {})
    run_rule_test(tmp_path, [(HISTORY - 10, previous), (10, migrated)], {})


def test_upgrade_keeps_what_the_previous_file_said(tmp_path):
    # A backup 9 days old is still missing, a failed validation still failed, after the migration.
    previous, migrated = previous_and_migrated(tmp_path, logical_age=9 * DAY, validation_success=0)
    run_rule_test(tmp_path, [(HISTORY - 100, previous), (100, migrated)], {
        'SupabaseBackupMissing': [missing('9d 0h 0m 0s')],
        'SupabaseBackupFailed': [failed('logical', 'validate', '1d 0h 0m 0s')],
    })


def offsite_failed(kind, last):
    return ({'kind': kind, 'operation': 'offsite', 'severity': 'critical', **SCRAPE_LABELS},
            {'summary': 'Supabase %s backups on %s did not reach the off-site remote' % (kind, INSTANCE),
             'description': 'The last upload of %s restore points from %s to the off-site remote failed; %s. The '
                            'backups are kept on the host, which is now their only copy; the backup log has '
                            "rclone's reason." % (kind, INSTANCE, last)})


def test_a_failed_upload_is_its_own_alert_and_the_next_upload_clears_it(tmp_path):
    def failed_upload(path):
        write_metrics(path, 'logical', True, 60.0, size=GB, finished_at=NOW - 3600, free=100 * GB)
        write_metrics(path, 'logical', True, 9.0, size=GB, finished_at=NOW - DAY, operation='offsite')
        write_metrics(path, 'logical', False, 2.0, finished_at=NOW - 3600, operation='offsite')

    ok, bad = good_run_then(tmp_path, failed_upload)
    # The backup itself succeeded: only the off-site alert fires, not SupabaseBackupFailed.
    run_rule_test(tmp_path, [(HISTORY - 11, ok), (11, bad)],
                  {'SupabaseOffsiteCopyFailed': [offsite_failed(
                      'logical', 'the last successful one finished 1d 0h 0m 0s ago')]})
    run_rule_test(tmp_path, [(HISTORY - 2, ok), (2, bad)], {})  # pending (for: 5m)
    fixed = metrics_file(tmp_path / 'fixed')
    os.makedirs(os.path.dirname(fixed))
    shutil.copy(bad, fixed)
    write_metrics(fixed, 'logical', True, 9.0, size=GB, finished_at=NOW - 60, operation='offsite')
    run_rule_test(tmp_path, [(HISTORY - 30, bad), (30, fixed)], {})
    never = metrics_file(tmp_path / 'never')
    os.makedirs(os.path.dirname(never))
    good_backups(never)
    write_metrics(never, 'volume', False, 2.0, finished_at=NOW - 3600, operation='offsite')
    run_rule_test(tmp_path, [(HISTORY, never)],
                  {'SupabaseOffsiteCopyFailed': [offsite_failed('volume', 'none has ever succeeded')]})
    # The point-in-time archive's copy (pitr_offsite) fails the same way, under its own kind.
    archive = metrics_file(tmp_path / 'archive')
    os.makedirs(os.path.dirname(archive))
    good_backups(archive)
    write_metrics(archive, 'pitr', False, 2.0, finished_at=NOW - 3600, operation='offsite')
    run_rule_test(tmp_path, [(HISTORY, archive)],
                  {'SupabaseOffsiteCopyFailed': [offsite_failed('pitr', 'none has ever succeeded')]})


# ------------------------------------------------------------- point-in-time archive --

def healthy_archive(**overrides):
    """The gauges backup_status kind=pitr writes for a streaming archive with a day-old base backup."""
    gauges = {'pitr_receiver_up': 1, 'pitr_receiver_restarts': 0, 'pitr_last_contact_timestamp_seconds': NOW - 10,
              'pitr_newest_wal_timestamp_seconds': NOW - 5, 'pitr_slot_lag_bytes': 1 << 20,
              'pitr_base_backup_timestamp_seconds': NOW - DAY, 'pitr_archive_bytes': 5 * GB, 'pitr_wal_gaps': 0}
    gauges.update(overrides)
    return gauges


def archive_file(tmp_path, name, **overrides):
    path = metrics_file(tmp_path, name)
    good_backups(path)
    write_gauges(path, 'pitr', 'archive', healthy_archive(**overrides))
    return path


def pitr_labels(severity):
    return {'kind': 'pitr', 'operation': 'archive', 'severity': severity, **SCRAPE_LABELS}


def receiver_down(restarts):
    return (pitr_labels('critical'),
            {'summary': 'Supabase WAL receiver down on %s' % INSTANCE,
             'description': 'The WAL receiver of the point-in-time archive on %s does not stream from the database '
                            '(%s container restarts): nothing after its last contact can be recovered. See docker '
                            'logs of the receiver container; pitr_archive (supabase_backup_pitr) starts it again.'
                            % (INSTANCE, restarts)})


def archive_behind(contact_age, lag):
    return (pitr_labels('warning'),
            {'summary': 'Supabase WAL archive behind on %s' % INSTANCE,
             'description': "The point-in-time archive on %s is behind the database: the receiver's last contact "
                            'was %s ago and the slot holds back %sB of WAL. Past max_slot_wal_keep_size the server '
                            'drops it and the archive gets a gap.' % (INSTANCE, contact_age, lag)})


def wal_gap(count):
    return (pitr_labels('critical'),
            {'summary': 'Supabase WAL archive has a gap on %s' % INSTANCE,
             'description': '%s WAL file(s) are missing from the point-in-time archive on %s: no recovery can pass '
                            'the first one. backup_status kind=pitr names them; take a new base backup '
                            '(playbooks/pitr_backup.yml) so that recovery from now on does not need them.'
                            % (count, INSTANCE)})


def base_backup_missing(age=None):
    if age is None:
        head = 'The point-in-time archive on %s has no base backup' % INSTANCE
    else:
        head = 'The newest base backup of the point-in-time archive on %s finished %s ago' % (INSTANCE, age)
    return (pitr_labels('warning'),
            {'summary': 'No Supabase base backup on %s for more than 8 days' % INSTANCE,
             'description': head + '; see the pitr base backup lines of the backup log.'})


def test_a_streaming_archive_with_a_recent_base_backup_is_silent(tmp_path):
    run_rule_test(tmp_path, [(HISTORY, archive_file(tmp_path, 'pitr.prom'))], {})


def test_receiver_down_fires_after_five_minutes_and_names_the_restarts(tmp_path):
    up = archive_file(tmp_path, 'up.prom')
    down = archive_file(tmp_path, 'down.prom', pitr_receiver_up=0, pitr_receiver_restarts=4)
    run_rule_test(tmp_path, [(HISTORY - 11, up), (11, down)], {'SupabasePitrReceiverDown': [receiver_down(4)]})
    run_rule_test(tmp_path, [(HISTORY - 2, up), (2, down)], {})  # pending (for: 5m)
    run_rule_test(tmp_path, [(HISTORY - 30, up), (28, down), (2, up)], {})  # streaming again


def test_archive_behind_on_an_old_last_contact_or_a_large_slot_lag(tmp_path):
    # The status refresh kept writing the same last contact: the receiver went silent 30 minutes ago,
    # 15 minutes past the limit (for: 10m) ...
    silent = archive_file(tmp_path, 'silent.prom', pitr_last_contact_timestamp_seconds=NOW - 30 * 60)
    run_rule_test(tmp_path, [(HISTORY, silent)],
                  {'SupabasePitrArchiveBehind': [archive_behind('30m 0s', '1Mi')]})
    # ... 20 minutes ago: 5 minutes past it, pending.
    pending = archive_file(tmp_path, 'pending.prom', pitr_last_contact_timestamp_seconds=NOW - 20 * 60)
    run_rule_test(tmp_path, [(HISTORY, pending)], {})
    lagging = archive_file(tmp_path, 'lag.prom', pitr_slot_lag_bytes=3 << 30)
    run_rule_test(tmp_path, [(HISTORY, lagging)], {'SupabasePitrArchiveBehind': [archive_behind('10s', '3Gi')]})
    recent = archive_file(tmp_path, 'recent.prom', pitr_last_contact_timestamp_seconds=NOW - 10 * 60)
    run_rule_test(tmp_path, [(HISTORY, recent)], {})


def test_a_gap_in_the_wal_fires(tmp_path):
    run_rule_test(tmp_path, [(HISTORY, archive_file(tmp_path, 'gap.prom', pitr_wal_gaps=2))],
                  {'SupabasePitrWalGap': [wal_gap(2)]})


@pytest.mark.parametrize('finished,expected', [
    (NOW - 9 * DAY, base_backup_missing('9d 0h 0m 0s')),
    (0, base_backup_missing()),
    (NOW - 7 * DAY, None),
])
def test_base_backup_missing_after_eight_days_or_never(tmp_path, finished, expected):
    path = archive_file(tmp_path, 'base.prom', pitr_base_backup_timestamp_seconds=finished)
    run_rule_test(tmp_path, [(HISTORY, path)], {'SupabasePitrBaseBackupMissing': [expected]} if expected else {})
