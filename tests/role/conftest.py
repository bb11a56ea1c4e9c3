# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs the supabase_backup role with ansible-playbook against a sandbox of paths on this machine."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = '/usr/bin/python3'
# The sandbox's first encryption passphrase; every passphrase a run is given is checked
# against that run's whole output.
PASSPHRASE = 'role-test passphrase #1: correct horse'
ROLE_PREFIX = 'cortexreview.supabase_backup.supabase_backup : '
TASK_LINE = re.compile(r'^TASK \[(?P<name>.*)\] \**$')
RESULT_LINE = re.compile(r'^(?P<status>ok|changed|skipping|failed|fatal): \[')
RECAP_LINE = re.compile(r'^\S+\s+: ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=\d+\s+failed=(?P<failed>\d+)')


class Run:
    """One ansible-playbook run: the tasks that reported changed, and those skipped entirely."""

    def __init__(self, proc):
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        self.changed = set()
        self.skipped = set()
        self.recap_changed = None
        task, statuses = None, {}
        for line in proc.stdout.splitlines():
            match = TASK_LINE.match(line)
            if match:
                task = match.group('name').replace(ROLE_PREFIX, '')
                statuses.setdefault(task, set())
                continue
            match = RESULT_LINE.match(line)
            if match and task:
                statuses[task].add(match.group('status'))
            match = RECAP_LINE.match(line)
            if match:
                self.recap_changed = int(match.group('changed'))
        for name, seen in statuses.items():
            if 'changed' in seen:
                self.changed.add(name)
            if seen == {'skipping'}:
                self.skipped.add(name)

    def __repr__(self):
        return 'Run(rc=%s, changed=%s)' % (self.rc, sorted(self.changed))


def tree_state(root):
    """Path -> (type, mode, uid, size, sha1) of everything under root."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            digest = None
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, 'rb') as handle:
                    digest = hashlib.sha1(handle.read()).hexdigest()
            state[path] = (info.st_mode, info.st_uid, info.st_size, digest)
    return state


class Sandbox:
    """A fresh set of paths for every file the role writes (under ``managed``), except the Debian packages."""

    def __init__(self, root, collections):
        self.root = Path(root)
        self.managed = self.root / 'managed'
        self.collections = collections
        # System directories the role expects to exist (/usr/local/sbin, /etc/cron.d, ...).
        for system_dir in ('bin', 'cron.d', 'logrotate.d', 'log'):
            (self.managed / system_dir).mkdir(mode=0o755, parents=True)
        self.variables = {
            'supabase_backup_dir': str(self.managed / 'backups'),
            'supabase_backup_install_dir': str(self.managed / 'runtime'),
            'supabase_backup_command': str(self.managed / 'bin' / 'cortexreview-supabase-backup'),
            'supabase_backup_config_file': str(self.managed / 'etc' / 'backup.json'),
            'supabase_backup_cron_file': str(self.managed / 'cron.d' / 'cortexreview-backup'),
            'supabase_backup_log_file': str(self.managed / 'log' / 'supabase_backup.log'),
            'supabase_backup_logrotate_file': str(self.managed / 'logrotate.d' / 'cortexreview-supabase-backup'),
            'supabase_backup_login_password': 'role-test-secret',
            'supabase_backup_encrypt_passphrase': PASSPHRASE,
            # Both missing at first: the role creates them.
            'supabase_backup_textfile_collector_dir': str(self.managed / 'node-exporter'),
            'supabase_backup_alert_rules_install': True,
            'supabase_backup_alert_rules_file': str(self.managed / 'prometheus' / 'rules' / 'supabase_backup.rules.yml'),
            # The cron service is the Molecule scenario's business; here it would only add a side effect.
            'supabase_backup_manage_cron_service': False,
        }
        (self.root / 'inventory.ini').write_text(
            'node ansible_connection=local ansible_python_interpreter=%s\n' % SYSTEM_PYTHON)
        (self.root / 'site.yml').write_text(
            '- hosts: all\n  gather_facts: false\n  roles:\n    - cortexreview.supabase_backup.supabase_backup\n')

    def run(self, check=False, verbose=False, must_succeed=True, **extra):
        """ansible-playbook with the sandbox's variables, overridden by ``extra``; must succeed (unless not
        ``must_succeed``).

        ``verbose`` adds -vvv and --diff. No passphrase or rclone config may appear in the output of any run.
        """
        variables = dict(self.variables, **extra)
        vars_file = self.root / 'vars.json'
        fd = os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, 'w', encoding='utf-8') as handle:
            json.dump(variables, handle)
        argv = ['ansible-playbook', '-i', str(self.root / 'inventory.ini'), str(self.root / 'site.yml'),
                '-e', '@%s' % vars_file]
        if check:
            argv.append('--check')
        if verbose:
            argv.extend(['-vvv', '--diff'])
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=self.collections, ANSIBLE_NOCOLOR='1',
                   ANSIBLE_FORCE_COLOR='0', ANSIBLE_STDOUT_CALLBACK='ansible.builtin.default')
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900, check=False)
        run = Run(proc)
        passphrase = variables.get('supabase_backup_encrypt_passphrase')
        if passphrase:
            assert passphrase not in run.output, 'the passphrase is in the output of ansible-playbook %s' % argv[1:]
        for line in (variables.get('supabase_backup_offsite_rclone_config') or '').splitlines():
            if 'secret' in line:
                assert line.split('=', 1)[1].strip() not in run.output, 'the rclone secret is in the output'
        if must_succeed:
            assert run.rc == 0, run.output
        return run

    def state(self):
        return tree_state(self.managed)


@pytest.fixture(scope='module')
def sandbox():
    collections = os.environ.get('ROLE_TEST_COLLECTIONS')
    if not collections:
        pytest.fail('ROLE_TEST_COLLECTIONS is not set: run the role tests through bash tests/role_test.sh, '
                    'which provides the collection snapshot')
    root = tempfile.mkdtemp(prefix='cortexreview-role-test.')
    try:
        yield Sandbox(root, collections)
    finally:
        shutil.rmtree(root, ignore_errors=True)
