# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The supabase_backup role: check mode changes nothing and predicts the real run; a second run changes nothing.

The tests run in order on one sandbox (see conftest.py): a new host, converge, converge
again, then one change of configuration and the removal of the schedule.
"""

from __future__ import annotations

import json
import os

CONFIG_TASK = "Write the backup command's configuration"
# On a new host, check mode cannot compare files inside directories that do not exist
# yet; the role skips those tasks (the directory task reports the change instead).
SKIPPED_ON_A_NEW_HOST = {CONFIG_TASK}


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
    } <= check.changed, check.output
    sandbox.predicted = check


def test_first_run_changes_what_check_mode_predicted(sandbox):
    predicted = sandbox.predicted
    run = sandbox.run()
    assert predicted.changed <= run.changed, run.output
    # What check mode did not report, it skipped for a directory it would have created.
    assert run.changed - predicted.changed <= SKIPPED_ON_A_NEW_HOST & predicted.skipped, (
        sorted(run.changed - predicted.changed), sorted(predicted.skipped))
    config = json.loads(open(sandbox.variables['supabase_backup_config_file'], encoding='utf-8').read())
    assert config['login_password'] == 'role-test-secret'
    assert os.stat(sandbox.variables['supabase_backup_config_file']).st_mode & 0o777 == 0o600


def test_second_run_changes_nothing(sandbox):
    before = sandbox.state()
    run = sandbox.run()
    assert run.changed == set() and run.recap_changed == 0, run.output
    assert sandbox.state() == before


def test_check_mode_on_a_converged_host_predicts_nothing(sandbox):
    run = sandbox.run(check=True)
    assert run.changed == set() and run.recap_changed == 0, run.output


def test_check_mode_predicts_exactly_a_configuration_change(sandbox):
    before = sandbox.state()
    check = sandbox.run(check=True, supabase_backup_retention_days=30)
    assert check.changed == {CONFIG_TASK}, check.output
    assert sandbox.state() == before
    run = sandbox.run(supabase_backup_retention_days=30)
    assert run.changed == {CONFIG_TASK}, run.output
    config = json.loads(open(sandbox.variables['supabase_backup_config_file'], encoding='utf-8').read())
    assert config['retention_days'] == 30
    assert sandbox.run(supabase_backup_retention_days=30).changed == set()


def test_disabling_the_schedule_removes_it(sandbox):
    cron_file = sandbox.variables['supabase_backup_cron_file']
    check = sandbox.run(check=True, supabase_backup_retention_days=30, supabase_backup_cron_enabled=False)
    assert check.changed == {'Remove the cron schedule'}, check.output
    assert os.path.exists(cron_file)
    run = sandbox.run(supabase_backup_retention_days=30, supabase_backup_cron_enabled=False)
    assert run.changed == {'Remove the cron schedule'}, run.output
    assert not os.path.exists(cron_file)
