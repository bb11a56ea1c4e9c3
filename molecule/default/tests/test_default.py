# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Verify the converged supabase_backup role: files, modes, secrets, a real encrypted backup run by cron's
command, its metrics and the status refresh."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest
import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ['MOLECULE_INVENTORY_FILE']).get_hosts('all')

# The role's defaults the scenario keeps: the contract's schedule, user and file prefix.
# Its paths are the scenario's own (molecule.yml host_vars), read through the fixtures.
SCHEDULE = ['0', '2', '*', '*', '0']
CRON_USER = 'root'
PREFIX = 'supabase_backup'
SEEDED_TABLES = ('public.knowledge_base', 'public.learned_constraints', 'public.feedback_audit_log')
# The status refresh's schedule (the role's default).
STATUS_SCHEDULE = ['*/15', '*', '*', '*', '*']
# cron's own environment: what a job gets before the cron file's variables.
CRON_ENV = 'env -i SHELL=/bin/sh PATH=/usr/bin:/bin HOME=/root'
JOB_LINE = re.compile(r'^(?P<schedule>(?:\S+\s+){5})(?P<user>\S+)\s+(?P<command>.+)$')


@pytest.fixture(scope='module')
def scenario(host):
    """The scenario's inventory variables (molecule.yml host_vars)."""
    return host.ansible.get_variables()


@pytest.fixture(scope='module')
def paths(scenario):
    return {
        'backup_dir': scenario['supabase_backup_dir'],
        'cron_file': scenario['supabase_backup_cron_file'],
        'config_file': scenario['supabase_backup_config_file'],
        'command': scenario['supabase_backup_command'],
        'venv_python': scenario['supabase_backup_install_dir'] + '/venv/bin/python3',
        'engine': scenario['supabase_backup_install_dir'] + '/lib',
        'log_file': scenario['supabase_backup_log_file'],
        'logrotate_file': scenario['supabase_backup_logrotate_file'],
        'passphrase_file': os.path.join(os.path.dirname(scenario['supabase_backup_config_file']), 'passphrase'),
        'metrics_file': scenario['supabase_backup_textfile_collector_dir'] + '/supabase_backup.prom',
        'alert_rules_file': scenario['supabase_backup_alert_rules_file'],
    }


@pytest.fixture(scope='module')
def cron_jobs(host, paths):
    """The backup's job line and the status refresh's, in this order."""
    content = host.file(paths['cron_file']).content_string
    jobs = [line for line in content.splitlines()
            if line.strip() and not line.lstrip().startswith('#') and not re.match(r'^\w+=', line)]
    assert len(jobs) == 2, 'expected the backup and the status refresh in %s, got %r' % (paths['cron_file'], jobs)
    parsed = []
    for job in jobs:
        match = JOB_LINE.match(job)
        assert match, 'not a cron.d job line: %r' % job
        parsed.append({'schedule': match.group('schedule').split(), 'user': match.group('user'),
                       'command': match.group('command'), 'content': content})
    return parsed


@pytest.fixture(scope='module')
def cron_job(cron_jobs):
    return cron_jobs[0]


def backups(host, directory):
    """The encrypted backups (the scenario sets a passphrase)."""
    listing = host.run('find %s -maxdepth 1 -type f -name %s', directory, PREFIX + '_*.sql.gz.gpg')
    assert listing.rc == 0, listing.stderr
    return set(listing.stdout.split())


def metric_samples(host, path):
    """{(name, kind): value} of the backups' samples (operation="backup") of the metrics file."""
    samples = {}
    for line in host.file(path).content_string.splitlines():
        match = re.match(r'^(\w+)\{kind="(\w+)",operation="backup"\} (\S+)$', line)
        if match:
            samples[(match.group(1), match.group(2))] = float(match.group(3))
    return samples


def test_cron_file_is_root_0644(host, paths):
    cron = host.file(paths['cron_file'])
    assert cron.is_file
    assert cron.user == 'root'
    assert cron.group == 'root'
    assert cron.mode == 0o644


def test_cron_file_sets_its_environment(cron_job):
    lines = cron_job['content'].splitlines()
    assert 'SHELL=/bin/sh' in lines
    path = [line for line in lines if line.startswith('PATH=')]
    assert path and '/usr/local/sbin' in path[0].split('=', 1)[1].split(':')


def test_cron_job_is_the_contracts_weekly_run(cron_job, paths):
    assert cron_job['schedule'] == SCHEDULE
    assert cron_job['user'] == CRON_USER
    assert cron_job['command'] == '%s --config %s >> %s 2>&1' % (
        paths['command'], paths['config_file'], paths['log_file'])
    assert '%' not in cron_job['command']


def test_command_runs_on_the_virtualenv(host, paths):
    command = host.file(paths['command'])
    assert command.is_file
    assert command.user == 'root'
    assert command.mode == 0o755
    first_line = command.content_string.splitlines()[0]
    assert first_line.split()[0] == '#!' + paths['venv_python']
    imports = host.run('%s -c %s', paths['venv_python'], 'import docker, zlib_ng')
    assert imports.rc == 0, imports.stderr


def test_backup_dir_is_0700(host, paths):
    directory = host.file(paths['backup_dir'])
    assert directory.is_directory
    assert directory.user == 'root'
    assert directory.mode == 0o700


def test_config_is_private_and_complete(host, scenario, paths):
    config_dir = host.file(os.path.dirname(paths['config_file']))
    assert config_dir.mode == 0o700
    config = host.file(paths['config_file'])
    assert config.user == 'root'
    assert config.mode == 0o600
    data = json.loads(config.content_string)
    assert data['backup_dir'] == scenario['supabase_backup_dir']
    assert data['container'] == scenario['supabase_backup_container']
    assert data['login_password'] == scenario['supabase_backup_login_password']
    assert data['retention_days'] == scenario['supabase_backup_retention_days']
    assert data['retention_keep_min'] == 3


def test_status_refresh_is_scheduled(cron_jobs, paths):
    status = cron_jobs[1]
    assert status['schedule'] == STATUS_SCHEDULE
    assert status['user'] == CRON_USER
    assert status['command'] == '%s --config %s --status >> %s 2>&1' % (
        paths['command'], paths['config_file'], paths['log_file'])


def test_passphrase_file_is_private_and_named_by_the_config(host, scenario, paths):
    passphrase = host.file(paths['passphrase_file'])
    assert passphrase.user == 'root' and passphrase.group == 'root'
    assert passphrase.mode == 0o600
    assert passphrase.content_string == scenario['supabase_backup_encrypt_passphrase'] + '\n'
    config = json.loads(host.file(paths['config_file']).content_string)
    assert config['encrypt_passphrase_file'] == paths['passphrase_file']
    assert 'encrypt_passphrase' not in config
    assert config['metrics_file'] == paths['metrics_file']
    assert host.package('gnupg').is_installed


def test_passphrase_is_only_in_its_file(host, scenario, paths, cron_jobs):
    passphrase = scenario['supabase_backup_encrypt_passphrase']
    assert passphrase not in cron_jobs[0]['content']
    places = ['/etc', paths['engine'], os.path.dirname(paths['command']), '/var/log', paths['backup_dir'],
              os.path.dirname(paths['metrics_file'])]
    found = host.run('grep -rlsF -e %s -- ' + ' '.join(['%s'] * len(places)), passphrase, *places)
    assert found.rc in (0, 1), found.stderr
    assert set(found.stdout.split()) == {paths['passphrase_file']}


def test_metrics_and_alert_rules_directories(host, paths):
    for path in (os.path.dirname(paths['metrics_file']), os.path.dirname(paths['alert_rules_file'])):
        directory = host.file(path)
        assert directory.is_directory and directory.user == 'root' and directory.mode == 0o755
    rules = host.file(paths['alert_rules_file'])
    assert rules.mode == 0o644 and 'SupabaseBackupDiskSpaceLow' in rules.content_string


def test_password_is_only_in_the_private_config(host, scenario, paths, cron_job):
    password = scenario['supabase_backup_login_password']
    assert password not in cron_job['content']
    places = ['/etc', paths['engine'], os.path.dirname(paths['command']), '/var/log', paths['backup_dir']]
    found = host.run('grep -rlsF -e %s -- ' + ' '.join(['%s'] * len(places)), password, *places)
    assert found.rc in (0, 1), found.stderr
    holders = set(found.stdout.split())
    assert holders == {paths['config_file']}
    for path in holders:
        assert not host.file(path).mode & (stat.S_IRWXG | stat.S_IRWXO)


def decrypt(host, path, passphrase_file):
    """gpg --decrypt, then gzip -t and the dump's header lines, as an operator would (a throwaway gpg home)."""
    return host.run(
        'home=$(mktemp -d) && trap \'rm -rf "$home"\' EXIT'
        ' && gpg --homedir "$home" --batch --quiet --no-autostart --pinentry-mode loopback'
        ' --passphrase-file %s --output "$home/dump.sql.gz" --decrypt %s'
        ' && gzip -t "$home/dump.sql.gz"'
        ' && gunzip -c "$home/dump.sql.gz" | grep -F -e "PostgreSQL database dump" -e "CREATE TABLE public.knowledge_base"',
        passphrase_file, path)


def test_logrotate_snippet(host, paths):
    snippet = host.file(paths['logrotate_file'])
    assert snippet.mode == 0o644
    assert snippet.content_string.count('"%s" {' % paths['log_file']) == 1


def test_cron_service_is_running(host):
    assert host.service('cron').is_running


def test_command_check_mode_changes_nothing(host, paths):
    before = backups(host, paths['backup_dir'])
    check = host.run('%s --config %s --check', paths['command'], paths['config_file'])
    assert check.rc == 0, check.stderr
    assert 'Would back up' in check.stdout
    assert backups(host, paths['backup_dir']) == before


def test_cron_command_makes_a_real_backup(host, paths, cron_job):
    backup_dir = paths['backup_dir']
    log_file = host.file(paths['log_file'])
    before = backups(host, backup_dir)
    log_before = log_file.size

    run = host.run('%s sh -c %s' % (CRON_ENV, '%s'), cron_job['command'])
    assert run.rc == 0, 'cron command failed: %s\n%s\n%s' % (
        run.stderr, log_file.content_string[log_before:], run.stdout)

    new = backups(host, backup_dir) - before
    assert len(new) == 1, new
    path = new.pop()
    assert re.match(r'^%s_\d{8}_\d{6}\.sql\.gz\.gpg$' % PREFIX, os.path.basename(path))
    backup = host.file(path)
    assert backup.user == 'root'
    assert backup.mode == 0o600
    assert backup.size > 0
    # Encrypted: not gzip on disk, and gpg --decrypt with the passphrase gives the gzip SQL dump.
    assert host.run('gzip -t %s', path).rc != 0
    decrypted = decrypt(host, path, paths['passphrase_file'])
    assert decrypted.rc == 0, decrypted.stderr
    assert 'PostgreSQL database dump' in decrypted.stdout
    assert 'CREATE TABLE public.knowledge_base' in decrypted.stdout
    checksum = host.run('cd %s && sha256sum -c %s', backup_dir, os.path.basename(path) + '.sha256')
    assert checksum.rc == 0, checksum.stdout + checksum.stderr

    # One manifest for the restore point, <stem>.manifest.json, describing each of its parts.
    manifest_file = host.file(path[:-len('.sql.gz.gpg')] + '.manifest.json')
    assert manifest_file.mode == 0o600
    restore_point = json.loads(manifest_file.content_string)
    assert restore_point['format'] == 'cortexreview.supabase_backup/restore-point/v2'
    assert restore_point['stem'] == os.path.basename(path)[:-len('.sql.gz.gpg')]
    # The main dump and the cluster's roles (supabase_backup_globals); the test bed has no other database.
    manifest, roles = restore_point['parts']
    assert manifest['name'] == os.path.basename(path) and manifest['role'] == 'database'
    assert roles['name'] == restore_point['stem'] + '.globals.pgsql.gz.gpg' and roles['role'] == 'globals'
    roles_file = host.file(os.path.join(backup_dir, roles['name']))
    assert roles_file.mode == 0o600 and roles_file.size == roles['size'] and roles['encrypted'] is True
    # The plain test bed has no Vault root key (db_config_files' default): recorded, no part.
    assert restore_point['components'] == ['database', 'globals'] and restore_point['not_found'] == [
        {'component': 'db_config', 'what': '/etc/postgresql-custom/pgsodium_root.key'}]
    assert manifest['size'] == backup.size and manifest['encrypted'] is True
    assert manifest['encryption']['cipher'] == 'AES256'
    for table in SEEDED_TABLES:
        assert manifest['tables'].get(table, 0) > 0, (table, manifest['tables'])
    assert 'vector' in manifest['extensions']
    # The virtualenv's zlib-ng is what the runtime was installed for.
    assert manifest['compression']['implementation'] == 'zlib-ng'

    log_lines = log_file.content_string[log_before:].splitlines()
    assert any('backup OK: %s ' % path in line for line in log_lines), log_lines

    metrics = host.file(paths['metrics_file'])
    assert metrics.mode == 0o644
    samples = metric_samples(host, paths['metrics_file'])
    assert samples[('supabase_backup_success', 'logical')] == 1
    assert samples[('supabase_backup_size_bytes', 'logical')] == backup.size
    assert samples[('supabase_backup_free_bytes', 'logical')] > 0
    assert samples[('supabase_backup_last_success_timestamp_seconds', 'logical')] > 0


def test_status_refresh_updates_the_free_space_gauge(host, paths, cron_jobs):
    # A stale gauge, as if the disk had filled since the backup; the status line puts the truth back.
    metrics = paths['metrics_file']
    stale = host.run("sed -i 's/^supabase_backup_free_bytes{kind=\"logical\",operation=\"backup\"} .*/"
                     "supabase_backup_free_bytes{kind=\"logical\",operation=\"backup\"} 1/' %s", metrics)
    assert stale.rc == 0, stale.stderr
    before = metric_samples(host, metrics)
    assert before[('supabase_backup_free_bytes', 'logical')] == 1
    log_size = host.file(paths['log_file']).size
    run = host.run('%s sh -c %s' % (CRON_ENV, '%s'), cron_jobs[1]['command'])
    assert run.rc == 0 and run.stdout == run.stderr == '', run
    assert host.file(paths['log_file']).size == log_size  # silent when it succeeds
    after = metric_samples(host, metrics)
    assert after.pop(('supabase_backup_free_bytes', 'logical')) > 1
    before.pop(('supabase_backup_free_bytes', 'logical'))
    assert after == before  # the backup's samples are kept
