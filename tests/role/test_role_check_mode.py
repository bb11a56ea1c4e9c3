# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The supabase_backup role: check mode changes nothing and predicts the real run; a second run changes nothing.

The tests run in order on one sandbox (see conftest.py): a new host, converge, converge
again, then the encryption passphrase, the metrics directory, the status refresh and the
alert rules, one change of configuration and the removal of the schedule. No run may
show a passphrase (conftest.py checks every run's output).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess

from pathlib import Path

import yaml

CONFIG_TASK = "Write the backup command's configuration"
PASSPHRASE_TASK = 'Install the encryption passphrase'
REMOVE_PASSPHRASE_TASK = 'Remove the encryption passphrase'
OFFSITE_CONFIG_TASK = 'Install the rclone config of the off-site remote'
REMOVE_OFFSITE_CONFIG_TASK = 'Remove the rclone config the role installed'
SHARED_DIRECTORIES_TASK = "Create the textfile collector's and the alert rules' directories when missing"
ALERT_RULES_TASK = 'Install the Prometheus alert rules'
CRON_TASK = 'Install the cron schedule'
# On a new host, check mode cannot compare files inside directories that do not exist
# yet; the role skips those tasks (the directory task reports the change instead).
SKIPPED_ON_A_NEW_HOST = {CONFIG_TASK, PASSPHRASE_TASK, ALERT_RULES_TASK}
RULES_SOURCE = Path(__file__).resolve().parents[2] / 'roles' / 'supabase_backup' / 'files' / 'supabase_backup.rules.yml'
JOB_LINE = re.compile(r'^(?P<schedule>(?:\S+\s+){5})(?P<user>\S+)\s+(?P<command>.+)$')


def read_config(sandbox):
    with open(sandbox.variables['supabase_backup_config_file'], encoding='utf-8') as handle:
        return json.load(handle)


def passphrase_file(sandbox):
    return os.path.join(os.path.dirname(sandbox.variables['supabase_backup_config_file']), 'passphrase')


def metrics_dir(sandbox):
    return sandbox.variables['supabase_backup_textfile_collector_dir']


def cron_jobs(sandbox):
    with open(sandbox.variables['supabase_backup_cron_file'], encoding='utf-8') as handle:
        lines = handle.read().splitlines()
    return [JOB_LINE.match(line).groupdict() for line in lines
            if line.strip() and not line.startswith('#') and not re.match(r'^\w+=', line)]


def mode_and_owner(path):
    info = os.stat(path)
    return stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid


def test_check_mode_on_a_new_host_predicts_changes_and_changes_nothing(sandbox):
    before = sandbox.state()
    check = sandbox.run(check=True)
    assert sandbox.state() == before
    assert {
        'Create the directories of the engine, the configuration and the backups',
        'Create the virtualenv and install the Python packages the engine needs',
        "Copy the collection's backup engine onto the node",
        'Install the backup command',
        'Create the log file, readable by root\'s group only',
        'Install the cron schedule',
        'Install the log rotation',
        SHARED_DIRECTORIES_TASK,
    } <= check.changed, check.output
    sandbox.predicted = check


def test_first_run_changes_what_check_mode_predicted(sandbox):
    predicted = sandbox.predicted
    run = sandbox.run()
    assert predicted.changed <= run.changed, run.output
    # What check mode did not report, it skipped for a directory it would have created.
    assert run.changed - predicted.changed <= SKIPPED_ON_A_NEW_HOST & predicted.skipped, (
        sorted(run.changed - predicted.changed), sorted(predicted.skipped))
    config = read_config(sandbox)
    assert config['login_password'] == 'role-test-secret'
    assert os.stat(sandbox.variables['supabase_backup_config_file']).st_mode & 0o777 == 0o600
    # The passphrase: its own file, 0600, the cron user's; the configuration only names it.
    assert mode_and_owner(passphrase_file(sandbox)) == (0o600, 0, 0)
    with open(passphrase_file(sandbox), encoding='utf-8') as handle:
        assert handle.read() == sandbox.variables['supabase_backup_encrypt_passphrase'] + '\n'
    assert config['encrypt_passphrase_file'] == passphrase_file(sandbox)
    assert 'encrypt_passphrase' not in config
    # The metrics directory was missing: made 0755, the metrics file named in the configuration.
    assert mode_and_owner(metrics_dir(sandbox)) == (0o755, 0, 0)
    assert config['metrics_file'] == os.path.join(metrics_dir(sandbox), 'supabase_backup.prom')
    rules = sandbox.variables['supabase_backup_alert_rules_file']
    assert mode_and_owner(rules) == (0o644, 0, 0)
    assert mode_and_owner(os.path.dirname(rules)) == (0o755, 0, 0)
    with open(rules, 'rb') as installed, open(RULES_SOURCE, 'rb') as shipped:
        assert installed.read() == shipped.read()


def test_second_run_changes_nothing(sandbox):
    before = sandbox.state()
    run = sandbox.run()
    assert run.changed == set() and run.recap_changed == 0, run.output
    assert sandbox.state() == before


def test_check_mode_on_a_converged_host_predicts_nothing(sandbox):
    run = sandbox.run(check=True)
    assert run.changed == set() and run.recap_changed == 0, run.output


def test_installed_alert_rules_are_valid(sandbox):
    rules = sandbox.variables['supabase_backup_alert_rules_file']
    promtool = shutil.which('promtool')
    if promtool:
        proc = subprocess.run([promtool, 'check', 'rules', rules], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert 'SUCCESS' in proc.stdout, proc.stdout
    with open(rules, encoding='utf-8') as handle:
        groups = yaml.safe_load(handle)['groups']
    alerts = {rule['alert'] for group in groups for rule in group['rules']}
    assert {'SupabaseBackupFailed', 'SupabaseBackupMissing', 'SupabaseBackupDiskSpaceLow'} <= alerts


def test_cron_file_refreshes_the_free_space_gauge(sandbox):
    jobs = cron_jobs(sandbox)
    command, config = sandbox.variables['supabase_backup_command'], sandbox.variables['supabase_backup_config_file']
    log_file = sandbox.variables['supabase_backup_log_file']
    assert [job['command'] for job in jobs] == [
        '%s --config %s >> %s 2>&1' % (command, config, log_file),
        '%s --config %s --status >> %s 2>&1' % (command, config, log_file),
    ]
    assert jobs[1]['schedule'].split() == ['*/15', '*', '*', '*', '*'] and jobs[1]['user'] == 'root'
    # As cron runs it: silent (nothing in the log), and the gauge is in the metrics file.
    metrics = read_config(sandbox)['metrics_file']
    log_size = os.path.getsize(log_file)
    proc = subprocess.run(['env', '-i', 'PATH=/usr/bin:/bin', 'sh', '-c', jobs[1]['command']],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout == proc.stderr == '', proc
    assert os.path.getsize(log_file) == log_size
    with open(metrics, encoding='utf-8') as handle:
        assert re.search(r'^supabase_backup_free_bytes\{kind="logical",operation="backup"\} [1-9]\d*$', handle.read(), re.M)
    assert mode_and_owner(metrics)[0] == 0o644


def test_without_metrics_there_is_no_status_refresh(sandbox):
    check = sandbox.run(check=True, supabase_backup_metrics_file='')
    assert check.changed == {CONFIG_TASK, CRON_TASK}, check.output
    run = sandbox.run(supabase_backup_metrics_file='')
    assert run.changed == {CONFIG_TASK, CRON_TASK}, run.output
    assert len(cron_jobs(sandbox)) == 1
    assert 'metrics_file' not in read_config(sandbox)
    assert sandbox.run().changed == {CONFIG_TASK, CRON_TASK}
    assert len(cron_jobs(sandbox)) == 2


def test_an_existing_metrics_directory_keeps_its_owner_and_mode(sandbox):
    directory = metrics_dir(sandbox)
    nobody = 65534
    os.chown(directory, nobody, nobody)
    os.chmod(directory, 0o2775)
    try:
        assert sandbox.run(check=True).changed == set()
        run = sandbox.run()
        assert run.changed == set() and run.recap_changed == 0, run.output
        assert mode_and_owner(directory) == (0o2775, nobody, nobody)
    finally:
        os.chown(directory, 0, 0)
        os.chmod(directory, 0o755)


def test_check_mode_predicts_a_passphrase_change(sandbox):
    new_passphrase = 'role-test passphrase #2'
    before = sandbox.state()
    check = sandbox.run(check=True, verbose=True, supabase_backup_encrypt_passphrase=new_passphrase)
    assert check.changed == {PASSPHRASE_TASK}, check.output
    assert sandbox.state() == before
    run = sandbox.run(verbose=True, supabase_backup_encrypt_passphrase=new_passphrase)
    assert run.changed == {PASSPHRASE_TASK}, run.output
    with open(passphrase_file(sandbox), encoding='utf-8') as handle:
        assert handle.read() == new_passphrase + '\n'
    assert mode_and_owner(passphrase_file(sandbox)) == (0o600, 0, 0)
    sandbox.variables['supabase_backup_encrypt_passphrase'] = new_passphrase
    run = sandbox.run(verbose=True)
    assert run.changed == set() and run.recap_changed == 0, run.output


def test_the_passphrase_is_in_no_other_file(sandbox):
    secret = sandbox.variables['supabase_backup_encrypt_passphrase'].encode()
    holders = set()
    for dirpath, _dirnames, filenames in os.walk(sandbox.managed):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, 'rb') as handle:
                    if secret in handle.read():
                        holders.add(path)
    assert holders == {passphrase_file(sandbox)}


def test_alert_rules_not_requested_are_left_alone(sandbox):
    rules = sandbox.variables['supabase_backup_alert_rules_file']
    with open(rules, 'ab') as handle:
        handle.write(b'# the operator\'s edit\n')
    for check in (True, False):
        run = sandbox.run(check=check, supabase_backup_alert_rules_install=False)
        assert run.changed == set(), run.output
    with open(rules, 'rb') as handle:
        assert handle.read().endswith(b'# the operator\'s edit\n')
    # Requested again, the shipped file replaces it.
    assert sandbox.run(check=True).changed == {ALERT_RULES_TASK}
    assert sandbox.run().changed == {ALERT_RULES_TASK}
    with open(rules, 'rb') as installed, open(RULES_SOURCE, 'rb') as shipped:
        assert installed.read() == shipped.read()


def test_removing_the_passphrase_removes_its_file(sandbox):
    path = passphrase_file(sandbox)
    before = sandbox.state()
    check = sandbox.run(check=True, supabase_backup_encrypt_passphrase='')
    assert check.changed == {CONFIG_TASK, REMOVE_PASSPHRASE_TASK}, check.output
    assert sandbox.state() == before
    run = sandbox.run(supabase_backup_encrypt_passphrase='')
    assert run.changed == {CONFIG_TASK, REMOVE_PASSPHRASE_TASK}, run.output
    assert not os.path.lexists(path)
    assert not [key for key in read_config(sandbox) if key.startswith('encrypt')]
    sandbox.variables['supabase_backup_encrypt_passphrase'] = None
    run = sandbox.run()
    assert run.changed == set() and run.recap_changed == 0, run.output


def test_the_off_site_remote_gets_a_private_rclone_config_and_loses_it_with_the_remote(sandbox):
    secret = 'role-test-rclone-secret'
    offsite = {'supabase_backup_offsite_remote': 's3role:bucket/db1', 'supabase_backup_offsite_allow_plain': True,
               'supabase_backup_offsite_rclone_config': '[s3role]\ntype = s3\nprovider = Rclone\n'
                                                        'access_key_id = AKROLE\nsecret_access_key = %s\n' % secret}
    path = os.path.join(os.path.dirname(sandbox.variables['supabase_backup_config_file']), 'rclone.conf')
    before = sandbox.state()
    check = sandbox.run(check=True, **offsite)
    assert check.changed == {CONFIG_TASK, OFFSITE_CONFIG_TASK}, check.output
    assert sandbox.state() == before
    run = sandbox.run(**offsite)
    assert run.changed == {CONFIG_TASK, OFFSITE_CONFIG_TASK}, run.output
    with open(path, encoding='utf-8') as handle:
        assert secret in handle.read()
    assert mode_and_owner(path) == (0o600, 0, 0)
    config = read_config(sandbox)
    assert config['offsite_remote'] == 's3role:bucket/db1' and config['offsite_config'] == path
    assert secret not in json.dumps(config)
    sandbox.variables.update(offsite)
    assert sandbox.run().changed == set()
    # Plain data never goes off-site by surprise: refused before anything changes.
    before = sandbox.state()
    refused = sandbox.run(must_succeed=False, supabase_backup_offsite_allow_plain=False)
    assert refused.rc != 0 and 'supabase_backup_offsite_allow_plain' in refused.output, refused.output
    assert sandbox.state() == before
    # No remote: the configuration stops naming it, and the role's file goes.
    run = sandbox.run(supabase_backup_offsite_remote='')
    assert run.changed == {CONFIG_TASK, REMOVE_OFFSITE_CONFIG_TASK}, run.output
    assert not os.path.lexists(path) and 'offsite_remote' not in read_config(sandbox)
    for key in offsite:
        sandbox.variables.pop(key)
    assert sandbox.run().changed == set()


def test_point_in_time_base_backups_add_two_cron_lines(sandbox):
    pitr = {'supabase_backup_pitr_cron_enabled': True, 'supabase_backup_pitr_retention_full': 3}
    before = sandbox.state()
    check = sandbox.run(check=True, **pitr)
    assert check.changed == {CRON_TASK}, check.output
    assert sandbox.state() == before
    run = sandbox.run(**pitr)
    assert run.changed == {CRON_TASK}, run.output
    command, config = sandbox.variables['supabase_backup_command'], sandbox.variables['supabase_backup_config_file']
    log_file = sandbox.variables['supabase_backup_log_file']
    jobs = cron_jobs(sandbox)
    base_jobs = [job for job in jobs if ' pitr-base ' in job['command']]
    base = '%s pitr-base --config %s --slot cortexreview_pitr --retention-full 3 --retention-days 14' % (command, config)
    assert [(job['schedule'].split(), job['command']) for job in base_jobs] == [
        (['30', '1', '*', '*', '0'], '%s >> %s 2>&1' % (base, log_file)),
        (['30', '1', '*', '*', '1-6'], '%s --incremental >> %s 2>&1' % (base, log_file)),
    ]
    assert sandbox.run(**pitr).changed == set()
    # As cron runs it, on a backup directory without an archive: one line in the log, naming the way out.
    log_size = os.path.getsize(log_file)
    proc = subprocess.run(['env', '-i', 'PATH=/usr/bin:/bin', 'sh', '-c', base_jobs[-1]['command']],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and proc.stdout == proc.stderr == '', proc
    with open(log_file, encoding='utf-8') as handle:
        handle.seek(log_size)
        lines = handle.read().splitlines()
    assert len(lines) == 1 and 'pitr base backup FAILED: the WAL archive of container' in lines[0], lines
    assert 'pitr_archive' in lines[0]
    # A schedule field that is not one cron token fails before anything changes.
    before = sandbox.state()
    bad = sandbox.run(must_succeed=False, supabase_backup_pitr_full_cron_hour='1 2', **pitr)
    assert bad.rc != 0 and "The base backups' cron fields must be single cron tokens" in bad.output
    assert sandbox.state() == before
    bad = sandbox.run(must_succeed=False, **dict(pitr, supabase_backup_pitr_retention_full=0))
    assert bad.rc != 0 and 'supabase_backup_pitr_retention_full at least 1' in bad.output
    # Turned off again, the two lines go.
    assert sandbox.run().changed == {CRON_TASK}
    assert cron_jobs(sandbox) == [job for job in jobs if job not in base_jobs]


def test_check_mode_predicts_exactly_a_configuration_change(sandbox):
    before = sandbox.state()
    check = sandbox.run(check=True, supabase_backup_retention_days=30)
    assert check.changed == {CONFIG_TASK}, check.output
    assert sandbox.state() == before
    run = sandbox.run(supabase_backup_retention_days=30)
    assert run.changed == {CONFIG_TASK}, run.output
    assert read_config(sandbox)['retention_days'] == 30
    assert sandbox.run(supabase_backup_retention_days=30).changed == set()


def test_disabling_the_schedule_removes_it(sandbox):
    cron_file = sandbox.variables['supabase_backup_cron_file']
    check = sandbox.run(check=True, supabase_backup_retention_days=30, supabase_backup_cron_enabled=False)
    assert check.changed == {'Remove the cron schedule'}, check.output
    assert os.path.exists(cron_file)
    run = sandbox.run(supabase_backup_retention_days=30, supabase_backup_cron_enabled=False)
    assert run.changed == {'Remove the cron schedule'}, run.output
    assert not os.path.exists(cron_file)


def test_the_point_in_time_archive_goes_off_site_every_five_minutes(sandbox):
    settings = {'supabase_backup_pitr_cron_enabled': True, 'supabase_backup_offsite_remote': 's3role:bucket/db1',
                'supabase_backup_offsite_allow_plain': True,
                'supabase_backup_offsite_rclone_config': '[s3role]\ntype = s3\nprovider = Rclone\n'}
    assert sandbox.run(**settings).changed
    command, config = sandbox.variables['supabase_backup_command'], sandbox.variables['supabase_backup_config_file']
    jobs = [job for job in cron_jobs(sandbox) if ' pitr-offsite ' in job['command']]
    assert [(job['schedule'].split(), job['command']) for job in jobs] == [(
        ['*/5', '*', '*', '*', '*'],
        '%s pitr-offsite --config %s >> %s 2>&1' % (command, config, sandbox.variables['supabase_backup_log_file']))]
    assert sandbox.run(**settings).changed == set()
    before = sandbox.state()
    bad = sandbox.run(must_succeed=False, supabase_backup_pitr_offsite_cron_minute='5 *', **settings)
    assert bad.rc != 0 and 'supabase_backup_pitr_offsite_cron_minute one cron minute token' in bad.output
    assert sandbox.state() == before
    # Without the remote the line goes; the base backups' lines stay.
    settings['supabase_backup_offsite_remote'] = ''
    assert CRON_TASK in sandbox.run(**settings).changed
    assert not [job for job in cron_jobs(sandbox) if 'pitr-offsite' in job['command']]
    assert [job for job in cron_jobs(sandbox) if 'pitr-base' in job['command']]
