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
    write_metrics,
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULES = os.path.join(REPO_ROOT, 'roles', 'supabase_backup', 'files', 'supabase_backup.rules.yml')
ALERTS = ('SupabaseBackupFailed', 'SupabaseBackupMissing', 'SupabaseBackupMetricsAbsent', 'SupabaseBackupDiskSpaceLow')
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
    with open(path, encoding='utf-8') as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            match = _SAMPLE.match(line)
            assert match, 'unparsable textfile line %r in %s' % (line, path)
            labels = dict(_LABEL.findall(match.group('labels') or ''))
            labels.update(SCRAPE_LABELS)
            selector = '%s{%s}' % (match.group('name'),
                                   ','.join('%s="%s"' % item for item in sorted(labels.items())))
            series[selector] = float(match.group('value'))
    # The project's own reader must agree with this one on every sample.
    project = read_samples(path)
    assert len(project) == len(series)
    for selector, value in series.items():
        kind = re.search(r'kind="([^"]*)"', selector).group(1)
        assert project[(selector.split('{')[0], kind)] == value
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


# ----------------------------------------------------------- expected alerts --

def failed(kind, last_success_age=None):
    if last_success_age is None:
        tail = 'it has never succeeded'
    else:
        tail = 'the last successful one finished %s ago' % last_success_age
    return ({'kind': kind, 'severity': 'warning', **SCRAPE_LABELS},
            {'summary': 'Supabase %s backup failed on %s' % (kind, INSTANCE),
             'description': 'The last %s backup run on %s failed; %s. See the backup log on the host.'
                            % (kind, INSTANCE, tail)})


def missing(age=None):
    if age is None:
        head = 'The logical backup on %s has never succeeded' % INSTANCE
    else:
        head = 'The last successful logical backup on %s finished %s ago' % (INSTANCE, age)
    return ({'kind': 'logical', 'severity': 'critical', **SCRAPE_LABELS},
            {'summary': 'No successful Supabase logical backup on %s for more than 8 days' % INSTANCE,
             'description': head + '; the contract is one a week (alert after 8 days).'})


def absent():
    return ({'kind': 'logical', 'severity': 'warning', **SCRAPE_LABELS},
            {'summary': 'Supabase logical backup metrics vanished on %s' % INSTANCE,
             'description': 'supabase_backup_last_success_timestamp_seconds{kind="logical"} was scraped from '
                            '%s in the last 8 days but is gone: check the metrics file and node_exporter\'s '
                            'textfile collector. Missing backups cannot be alerted on meanwhile.' % INSTANCE})


def disk_low(kind, free_si, free_iec):
    return ({'kind': kind, 'severity': 'warning', **SCRAPE_LABELS},
            {'summary': 'Low free space for Supabase %s backups on %s' % (kind, INSTANCE),
             'description': 'The filesystem of the %s backup directory on %s has %sB (%sB) free, '
                            'under 20 GB (1 GB = 10^9 bytes).' % (kind, INSTANCE, free_si, free_iec)})


# --------------------------------------------------------------------- tests --

def test_promtool_check_rules():
    code, output = run_promtool('check', 'rules', RULES)
    assert code == 0, output
    assert 'SUCCESS: %d rules found' % len(ALERTS) in output, output


def test_rule_file_names_only_metrics_the_engine_writes(tmp_path):
    path = metrics_file(tmp_path)
    write_metrics(path, 'logical', True, 1.0, size=1, finished_at=1, free=1)
    written = set(name.split('{')[0] for name in textfile_series(path))
    with open(RULES, encoding='utf-8') as handle:
        rules = yaml.safe_load(handle)
    exprs = ' '.join(rule['expr'] for group in rules['groups'] for rule in group['rules'])
    used = set(re.findall(r'\bsupabase_backup_[a-z_]+', exprs))
    assert used and used <= written
    assert sorted(rule['alert'] for group in rules['groups'] for rule in group['rules']) == sorted(ALERTS)


@pytest.mark.parametrize('kind', ['logical', 'volume', 'validation'])
def test_failed_run_fires_failed_with_its_kind(tmp_path, kind):
    path = metrics_file(tmp_path)
    write_metrics(path, 'logical', True, 60.0, size=5 * GB, finished_at=NOW - 2 * DAY, free=100 * GB)
    if kind != 'logical':
        write_metrics(path, kind, True, 30.0, size=GB, finished_at=NOW - 2 * DAY, free=100 * GB)
    write_metrics(path, kind, False, 3.0, free=100 * GB)
    run_rule_test(tmp_path, [(HISTORY, path)], {'SupabaseBackupFailed': [failed(kind, '2d 0h 0m 0s')]})


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
                  {'SupabaseBackupFailed': [failed('logical', '1d 0h 0m 0s')]})
    run_rule_test(tmp_path, [(HISTORY - 2, ok), (2, bad)], {})
    # ... and the next successful run resolves it.
    run_rule_test(tmp_path, [(HISTORY - 32, ok), (30, bad), (2, ok)], {})


def test_all_kinds_successful_and_recent_is_silent(tmp_path):
    path = metrics_file(tmp_path)
    for kind in ('logical', 'volume', 'validation'):
        write_metrics(path, kind, True, 10.0, size=GB, finished_at=NOW - DAY, free=100 * GB)
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
    assert read_samples(path)[('supabase_backup_last_success_timestamp_seconds', 'logical')] == 0
    run_rule_test(tmp_path, [(HISTORY, path)], {
        'SupabaseBackupMissing': [missing()],
        'SupabaseBackupFailed': [failed('logical')],
    })


def test_old_or_never_volume_and_validation_do_not_fire_missing(tmp_path):
    path = metrics_file(tmp_path)
    write_metrics(path, 'logical', True, 60.0, size=GB, finished_at=NOW - DAY, free=100 * GB)
    write_metrics(path, 'volume', True, 60.0, size=GB, finished_at=NOW - 9 * DAY - 3600, free=100 * GB)
    write_metrics(path, 'validation', True, 5.0, finished_at=NOW - 9 * DAY)
    write_metrics(path, 'validation', False, 5.0)
    never = metrics_file(tmp_path, 'never.prom')
    write_metrics(never, 'volume', False, 1.0)
    write_metrics(never, 'validation', False, 1.0)
    write_metrics(never, 'logical', True, 60.0, size=GB, finished_at=NOW - DAY)
    run_rule_test(tmp_path, [(HISTORY, path)], {'SupabaseBackupFailed': [failed('validation', '9d 0h 0m 0s')]})
    run_rule_test(tmp_path, [(HISTORY, never)], {
        'SupabaseBackupFailed': [failed('volume'), failed('validation')],
    })


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
    # Only volume metrics left (logical ones gone): still absent for logical.
    volume_only = metrics_file(tmp_path, 'volume.prom')
    write_metrics(volume_only, 'volume', True, 1.0, size=GB, finished_at=NOW - DAY)
    run_rule_test(tmp_path, [(HISTORY - 90, path), (90, volume_only)], {'SupabaseBackupMetricsAbsent': [absent()]})
