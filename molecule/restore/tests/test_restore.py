# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Verify the restore scenario: the data is the backup's again, the damaged contents are kept
once as <db>_pre_restore_<timestamp>, the writer was stopped and runs again, the validation
passed, and the check-mode run (molecule check) changed nothing."""

from __future__ import annotations

import base64
import json
import os
import re
import time

import pytest
import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ['MOLECULE_INVENTORY_FILE']).get_hosts('all')

FINGERPRINT_SQL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'fingerprint.sql')
STAMP = r'\d{8}_\d{6}'


@pytest.fixture(scope='module')
def scenario(host):
    """The scenario's inventory variables (molecule.yml host_vars)."""
    return host.ansible.get_variables()


@pytest.fixture(scope='module')
def state(host, scenario):
    """What converge recorded after the restore (before the check-mode run)."""
    path = scenario['molecule_restore_state_file']
    return json.loads(host.file(path).content_string)


@pytest.fixture(scope='module')
def fingerprint(host, scenario):
    path = os.path.join(os.path.dirname(scenario['molecule_restore_state_file']), 'fingerprint.json')
    return json.loads(host.file(path).content_string)


@pytest.fixture(scope='module')
def psql(host, scenario):
    def run(sql, db=None, variables=None):
        args = ['docker', 'exec', '-i', scenario['molecule_restore_db_container'], 'psql', '-XAtq',
                '-v', 'ON_ERROR_STOP=1', '-U', 'postgres', '-d', db or scenario['supabase_backup_db']]
        for name, value in (variables or {}).items():
            args += ['-v', '%s=%s' % (name, value)]
        # SQL on stdin (psql interpolates :variables only there), base64 so that no quoting is involved.
        encoded = base64.b64encode(sql.encode('utf-8')).decode('ascii')
        result = host.run('echo %s | base64 -d | ' + ' '.join(['%s'] * len(args)), encoded, *args)
        assert result.rc == 0, result.stderr
        return result.stdout.strip()
    return run


@pytest.fixture(scope='module')
def databases(psql, scenario):
    prefix = scenario['supabase_backup_db']
    names = psql("SELECT datname FROM pg_catalog.pg_database WHERE datname LIKE '%s%%'" % prefix, db='template1')
    return names.split()


def test_restored_contents_are_the_backups(psql, fingerprint):
    with open(FINGERPRINT_SQL, encoding='utf-8') as handle:
        sql = handle.read()
    now = json.loads(psql(sql, variables={'max_id': fingerprint['max_id']}))
    assert now == fingerprint['tables']


def test_damage_is_gone(psql):
    assert psql("SELECT pg_catalog.to_regclass('public.molecule_damage_marker') IS NULL") == 't'
    assert psql('SELECT count(*) FROM public.knowledge_base') == '300'
    assert psql('SELECT count(*) FROM public.learned_constraints') == '50'
    assert psql('''SELECT count(*) FROM public."Weird Table" WHERE "Mixed Case" = 'damaged' ''') == '0'


def test_vector_search_works(psql):
    # The restored IVFFlat index exists and is used; a stored vector finds itself first.
    assert psql("SELECT indisvalid FROM pg_catalog.pg_index WHERE indexrelid = "
                "'public.knowledge_base_embedding_ivfflat_idx'::regclass") == 't'
    ids = psql('SELECT id FROM public.match_knowledge('
               '(SELECT embedding FROM public.knowledge_base WHERE id = 7), -1, 3)').split()
    assert ids and ids[0] == '7'


def test_damaged_contents_kept_once_as_pre_restore_copy(psql, databases, scenario, state):
    pattern = re.compile(r'^%s_pre_restore_%s$' % (re.escape(scenario['supabase_backup_db']), STAMP))
    kept = [name for name in databases if pattern.match(name)]
    assert kept == [state['previous_database']]
    # It is the damaged database: the marker is there and the dropped table is not.
    assert psql("SELECT pg_catalog.to_regclass('public.molecule_damage_marker') IS NOT NULL", db=kept[0]) == 't'
    assert psql("SELECT pg_catalog.to_regclass('public.learned_constraints') IS NULL", db=kept[0]) == 't'


def test_no_scratch_or_staging_database_left(databases, scenario):
    leftovers = [name for name in databases
                 if re.match(r'^%s_(restore|validate)_%s$' % (re.escape(scenario['supabase_backup_db']), STAMP), name)]
    assert leftovers == []


def test_writer_was_stopped_and_runs_again(host, scenario):
    writer = host.docker(scenario['molecule_restore_writer'])
    assert writer.is_running
    logs = host.run('docker logs %s', scenario['molecule_restore_writer'])
    # The writer's loop logs a TERM; only the restore stops it in this scenario.
    assert logs.stdout.count('stopping (signal received)') == 1, logs.stdout


def test_writer_writes_into_the_restored_database(psql):
    sql = "SELECT count(*) FROM public.feedback_audit_log WHERE actor = 'molecule'"
    before = int(psql(sql))
    deadline = time.monotonic() + 15
    while int(psql(sql)) <= before:
        assert time.monotonic() < deadline, 'the writer added no row to the restored database in 15 s'
        time.sleep(0.5)


def test_the_newest_backup_was_restored(host, scenario, state):
    assert state['restored'] == sorted(state['backups'])[-1]
    assert state['restored'].endswith('.sql.gz.gpg')  # encrypted, and restored with the inherited passphrase
    backup = host.file(state['restored'])
    assert backup.mode == 0o600
    assert host.file(state['restored'] + '.sha256').exists


def test_validation_passed(host, state):
    report = host.file(state['validation_report'])
    assert report.mode == 0o600
    data = json.loads(report.content_string)
    assert data['passed'] is True, data.get('error')
    assert data['backup'] == state['restored']
    assert data['vector_search']['checked'] is True
    summary = host.file(state['validation_report'][:-len('.json')] + '.txt').content_string
    assert summary.startswith('Supabase backup validation: PASSED')


def test_check_mode_run_changed_nothing(host, scenario, state, databases):
    # molecule check ran the whole converge in check mode after converge: it made no backup,
    # did not restore (the kept copy is still converge's), and did not restart the writer.
    found = host.run('find %s -maxdepth 1 -type f -name %s', scenario['supabase_backup_dir'], 'supabase_backup_*.sql.gz.gpg')
    assert sorted(found.stdout.split()) == state['backups']
    assert state['previous_database'] in databases
    started_at = host.run('docker inspect --format %s %s', '{{.State.StartedAt}}', scenario['molecule_restore_writer'])
    assert started_at.stdout.strip() == state['writer_started_at']
