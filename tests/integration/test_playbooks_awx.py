# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The playbooks as AWX/Tower runs them, and by their collection name.

AWX runs every job through ansible-runner: a private data directory, the extra variables in
its env/extravars file, and ansible-playbook on a pseudo-terminal that no one answers. There,
backup.yml backs up; restore.yml with supabase_restore_confirm=true restores; without it,
restore.yml and volume_restore.yml fail at once, naming the variable, with the live data, the
writers and the DB container untouched (a prompt would wait for ever). On a real terminal
the prompt is still asked, and an answer other than yes changes nothing.

One scratch database of the test's own on the stack's server; the stack's writers are the
writers the restore stops and starts again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import ansible_runner
import pexpect
import pytest

import testbed
from restore_helpers import inject_failing_statement

PLAYBOOKS = testbed.REPO_ROOT / "playbooks"
# The test runner's Python has the Docker SDK and zlib-ng, as the role's virtualenv would.
VENV = os.path.dirname(os.path.dirname(sys.executable))
# A run with no one to answer must end long before this; the job timeout only keeps a
# regression from hanging the suite (ansible-runner then kills the job: status "timeout").
AT_ONCE = 60
JOB_TIMEOUT = 300


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _started_at(*names):
    return {name: testbed.container(name).attrs["State"]["StartedAt"] for name in names}


class RunnerJob:
    """One ansible-runner job, laid out as AWX lays it out; ``run()`` -> (runner, stdout, seconds)."""

    def __init__(self, base: Path, collections_path: str) -> None:
        self.base = base
        self.collections_path = collections_path
        self.count = 0

    def run(self, playbook, extravars, **kwargs):
        self.count += 1
        private = self.base / ("job-%d" % self.count)
        (private / "env").mkdir(parents=True)
        (private / "inventory").mkdir()
        os.chmod(private, 0o700)
        _write_private(private / "env" / "extravars", json.dumps(extravars))
        (private / "inventory" / "hosts").write_text(
            "localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable, encoding="utf-8")
        env = testbed.ansible_env(self.collections_path)
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        started = time.monotonic()
        runner = ansible_runner.run(private_data_dir=str(private), playbook=str(playbook), envvars=env,
                                    quiet=True, timeout=JOB_TIMEOUT, **kwargs)
        seconds = time.monotonic() - started
        stdout = runner.stdout.read()
        return runner, stdout, seconds


@pytest.fixture(scope="module")
def runner_job(collections_path, tmp_path_factory):
    return RunnerJob(tmp_path_factory.mktemp("ansible-runner"), collections_path)


@pytest.fixture(scope="module")
def scratch(stack, tmp_path_factory):
    db = "awx_restore_%d" % os.getpid()
    backup_dir = tmp_path_factory.mktemp("awx-backups")
    os.chmod(backup_dir, 0o700)
    testbed.psql('CREATE DATABASE "%s" TEMPLATE template0' % db, "template1")
    try:
        testbed.psql(testbed.SEED_SQL.read_text(), db)
        yield {"db": db, "backup_dir": str(backup_dir), "seed_counts": testbed.table_counts(db)}
    finally:
        for name in testbed.list_databases():
            if name == db or name.startswith(db + "_"):
                testbed.psql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name, "template1")
        testbed.start_containers(*testbed.APP_CONTAINERS)
        shutil.rmtree(backup_dir, ignore_errors=True)


def _backup_vars(scratch):
    return dict(testbed.stack_role_vars(), supabase_backup_hosts="localhost", supabase_backup_db=scratch["db"],
                supabase_backup_dir=scratch["backup_dir"], supabase_backup_venv_dir=VENV, supabase_backup_metrics_file="")


def _restore_vars(scratch, **extra):
    return dict(testbed.stack_role_vars(), supabase_restore_hosts="localhost", supabase_backup_db=scratch["db"],
                supabase_backup_dir=scratch["backup_dir"], supabase_backup_venv_dir=VENV, **extra)


def _backups(scratch):
    return sorted(name for name in os.listdir(scratch["backup_dir"]) if name.endswith(".sql.gz"))


def _untouched_state(scratch):
    """What a refused restore must leave as it was: the data, the databases, the writers."""
    return {"counts": testbed.table_counts(scratch["db"]), "databases": testbed.list_databases(),
            "writers": _started_at(*testbed.APP_CONTAINERS)}


def test_backup_through_ansible_runner(runner_job, scratch):
    runner, stdout, _seconds = runner_job.run(PLAYBOOKS / "backup.yml", _backup_vars(scratch), skip_tags="provision")
    assert runner.status == "successful" and runner.rc == 0, stdout[-4000:]
    backups = _backups(scratch)
    assert len(backups) == 1, backups
    path = os.path.join(scratch["backup_dir"], backups[0])
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert path in stdout


def test_backup_by_collection_name(ansible_env, scratch, tmp_path):
    # As AWX users and the README run it: the playbook of the installed collection.
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable,
                         encoding="utf-8")
    extravars = tmp_path / "vars.json"
    _write_private(extravars, json.dumps(_backup_vars(scratch)))
    before = set(_backups(scratch))
    # The backups are named by the second.
    time.sleep(1.1)
    proc = subprocess.run([sys.executable, "-m", "ansible", "playbook", "-i", str(inventory), "-e", "@%s" % extravars,
                           "--skip-tags", "provision", "cortexreview.supabase_backup.backup"],
                          capture_output=True, text=True, env=ansible_env, cwd=tmp_path, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    new = sorted(set(_backups(scratch)) - before)
    assert len(new) == 1, new
    assert os.path.join(scratch["backup_dir"], new[0]) in proc.stdout


def test_restore_without_confirmation_fails_at_once_through_ansible_runner(runner_job, scratch):
    testbed.psql("CREATE TABLE public.awx_after_backup (note text)", scratch["db"])
    before = _untouched_state(scratch)
    runner, stdout, seconds = runner_job.run(PLAYBOOKS / "restore.yml", _restore_vars(scratch))
    assert runner.status == "failed", (runner.status, stdout[-4000:])
    assert seconds < AT_ONCE, seconds
    assert "supabase_restore_confirm=true" in stdout and "no one can answer" in stdout, stdout[-4000:]
    assert "Nothing was stopped or changed" in stdout
    # Nothing read, stopped or changed: the plan did not even run.
    assert "Verify the backup and plan the restore" not in stdout
    assert "Traceback" not in stdout
    assert _untouched_state(scratch) == before


def test_restore_without_the_runtime_fails_with_the_way_out(runner_job, scratch, tmp_path):
    before = _untouched_state(scratch)
    missing = str(tmp_path / "no-venv")
    runner, stdout, _seconds = runner_job.run(PLAYBOOKS / "restore.yml", _restore_vars(
        scratch, supabase_restore_confirm=True, supabase_restore_venv_dir=missing))
    assert runner.status == "failed", (runner.status, stdout[-4000:])
    assert "%s/bin/python3 does not run (" % missing in stdout, stdout[-4000:]
    assert "No such file or directory" in stdout or "not found" in stdout, stdout[-4000:]
    assert "playbooks/backup.yml --tags provision" in stdout and "supabase_restore_venv_dir" in stdout
    assert "Traceback" not in stdout
    assert _untouched_state(scratch) == before


def test_volume_restore_without_confirmation_fails_at_once_through_ansible_runner(runner_job, scratch):
    started_at = _started_at(testbed.DB_CONTAINER)
    runner, stdout, seconds = runner_job.run(PLAYBOOKS / "volume_restore.yml", dict(
        testbed.stack_role_vars(), volume_snapshot_hosts="localhost", volume_snapshot_backup_dir=scratch["backup_dir"],
        volume_snapshot_venv_dir=VENV))
    assert runner.status == "failed", (runner.status, stdout[-4000:])
    assert seconds < AT_ONCE, seconds
    assert "volume_snapshot_confirm=true" in stdout and "no one can answer" in stdout, stdout[-4000:]
    assert "Verify the snapshot and plan the restore" not in stdout
    assert _started_at(testbed.DB_CONTAINER) == started_at


def test_a_terminal_is_still_asked(ansible_env, scratch, tmp_path):
    # ansible-playbook on a terminal of the test's own, outside ansible-runner: the plan is shown,
    # the prompt waits for an answer, and "no" stops the run with nothing changed.
    before = _untouched_state(scratch)
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable,
                         encoding="utf-8")
    extravars = tmp_path / "vars.json"
    _write_private(extravars, json.dumps(_restore_vars(scratch)))
    child = pexpect.spawn(sys.executable, ["-m", "ansible", "playbook", "-i", str(inventory), "-e", "@%s" % extravars,
                                           str(PLAYBOOKS / "restore.yml")],
                          env=ansible_env, cwd=str(tmp_path), encoding="utf-8", timeout=300)
    try:
        child.expect("Type yes to replace")
        transcript = child.before
        child.sendline("no")
        child.expect(pexpect.EOF)
        transcript += child.before
    finally:
        child.close(force=True)
    assert child.exitstatus != 0, transcript[-4000:]
    assert scratch["db"] in transcript  # the plan names the database it replaces
    assert 'Restore not confirmed (the answer was "no", not yes)' in transcript, transcript[-4000:]
    assert _untouched_state(scratch) == before


def test_restore_with_confirmation_through_ansible_runner(runner_job, scratch):
    writers = testbed.APP_CONTAINERS
    started_at = _started_at(*writers)
    runner, stdout, _seconds = runner_job.run(PLAYBOOKS / "restore.yml",
                                              _restore_vars(scratch, supabase_restore_confirm=True))
    assert runner.status == "successful" and runner.rc == 0, stdout[-4000:]
    # Confirmed beforehand, no plan is shown: the backup is read once, by the restore's own load.
    plan = [event["event"] for event in runner.events
            if event.get("event_data", {}).get("task", "").endswith("Verify the backup and plan the restore")
            and event["event"] in ("runner_on_ok", "runner_on_failed", "runner_on_skipped")]
    assert plan == ["runner_on_skipped"], plan
    counts = testbed.table_counts(scratch["db"])
    assert "awx_after_backup" not in counts
    assert counts == scratch["seed_counts"]
    # The writers were stopped for the restore and run again.
    for name in writers:
        assert testbed.container_status(name) == "running"
    assert all(_started_at(name)[name] != started_at[name] for name in writers), stdout[-4000:]
    assert [name for name in testbed.list_databases() if name.startswith(scratch["db"] + "_pre_restore_")]


def test_a_restore_killed_mid_load_gets_its_writers_started_by_the_role(ansible_env, run_module, scratch, tmp_path):
    # The module's process dies (SIGKILL) during the load, after it stopped the writers: it returns no
    # result, so the role reads the restore's own record beside the backup and starts them again (and a
    # restore that fails meanwhile does not: that record is of a restore that still runs).
    writers = testbed.APP_CONTAINERS
    dump = run_module("supabase_dump", {"db": scratch["db"], "backup_dir": str(tmp_path / "dumps")})
    assert dump.get("failed") is not True, dump
    slow_dir = tmp_path / "slow"
    slow = inject_failing_statement(dump["path"], slow_dir / "supabase_backup_20260101_000000.sql.gz",
                                    statement=b"SELECT pg_catalog.pg_sleep(120);")
    counts = testbed.table_counts(scratch["db"])
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable,
                         encoding="utf-8")
    extravars = tmp_path / "vars.json"
    _write_private(extravars, json.dumps(_restore_vars(scratch, supabase_restore_confirm=True, supabase_restore_src=slow,
                                                       supabase_restore_writers_stop_at="load")))
    play = subprocess.Popen([sys.executable, "-m", "ansible", "playbook", "-i", str(inventory), "-e", "@%s" % extravars,
                             str(PLAYBOOKS / "restore.yml")], env=ansible_env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    record = None
    try:
        record = testbed.wait_until(lambda: _loading(slow_dir, scratch["db"]), timeout=120, interval=0.2,
                                    what="the restore's load")
        assert record["stopped_writers"] == list(writers)
        assert {name: testbed.container_status(name) for name in writers} == dict.fromkeys(writers, "exited")
        # A second restore of the same database meanwhile fails on the directory's lock, without a list of
        # stopped writers: the record it then reads is the running restore's, whose writers stay stopped.
        second = tmp_path / "second.json"
        _write_private(second, json.dumps(_restore_vars(
            scratch, supabase_restore_confirm=True, supabase_restore_src=slow, supabase_restore_lock_timeout=1)))
        meanwhile = subprocess.run([sys.executable, "-m", "ansible", "playbook", "-i", str(inventory),
                                    "-e", "@%s" % second, str(PLAYBOOKS / "restore.yml")], env=ansible_env,
                                   cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
        assert meanwhile.returncode != 0 and "another backup run holds" in meanwhile.stdout, meanwhile.stdout[-4000:]
        assert {name: testbed.container_status(name) for name in writers} == dict.fromkeys(writers, "exited")
        time.sleep(1.0)  # inside the sleep statement
        os.kill(record["pid"], signal.SIGKILL)
        stdout = play.communicate(timeout=300)[0]
    finally:
        if play.poll() is None:
            if record is not None:  # the module outlives its playbook: it would go on restoring
                try:
                    os.kill(record["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass
            play.kill()
            play.communicate()
    assert play.returncode != 0, stdout[-4000:]
    assert "Restore into database '%s'" % scratch["db"] in stdout and "failed" in stdout, stdout[-4000:]
    assert {name: testbed.container_status(name) for name in writers} == dict.fromkeys(writers, "running"), stdout[-4000:]
    assert "Traceback" not in stdout
    assert testbed.table_counts(scratch["db"]) == counts


def _loading(directory, db):
    """The record of the restore into ``db`` once it loads into its scratch database, else None."""
    for name in os.listdir(directory):
        if name.startswith(".cortexreview-restore-"):
            with open(os.path.join(directory, name), encoding="utf-8") as handle:
                record = json.load(handle)
            if record.get("phase") == "loading" and any(
                    database.startswith(db + "_restore_") for database in testbed.list_databases()):
                return record
    return None
