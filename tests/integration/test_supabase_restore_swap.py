# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""supabase_restore of the live ``postgres`` with ``writers_stop_at: swap`` (the default), and a
restore whose process is killed mid-load, finished by the next run.

Swap mode: the writers keep writing while the backup loads into the scratch database and stop
only for the swap; what they wrote meanwhile is in the previous database; a backup that fails
during the load stops nothing at all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

import pytest

import testbed
from restore_helpers import (
    RestoreWatch,
    assert_clean_failure,
    assert_ok,
    databases,
    db_oid,
    drop_databases,
    fingerprint,
    inject_failing_statement,
    max_feedback_id,
    restore_stable_postgres,
    stable,
    started_at,
    statuses,
    wait_for_writes,
)

API, WORKER, DB = testbed.API_CONTAINER, testbed.WORKER_CONTAINER, testbed.DB_CONTAINER
LIVE = testbed.DB_NAME
SCRATCH_PREFIX = f"{LIVE}_restore_"


def stable_of(db):
    return stable(fingerprint(db, sequences=False))


def journals(directory):
    return [name for name in os.listdir(directory) if name.startswith(".cortexreview-restore-")]


@pytest.fixture(scope="module")
def swap(stack, run_module):
    stack.ensure_healthy()
    base = tempfile.mkdtemp(prefix="cortexreview-restore-it-swap-")
    backups = os.path.join(base, "backups")
    known = set(databases(f"{LIVE}_"))
    results = {}
    try:
        wait_for_writes()
        results["dump"] = run_module("supabase_dump", {"backup_dir": backups})
        assert_ok(results["dump"])
        failing = inject_failing_statement(results["dump"]["path"],
                                           os.path.join(base, "failing", "supabase_backup_20260101_000000.sql.gz"))
        ok = SimpleNamespace(before_oid=db_oid(LIVE), stable=stable_of(LIVE), started=started_at(API, WORKER, DB),
                             watch=RestoreWatch((API, WORKER, DB), SCRATCH_PREFIX, interval=0.05))
        ok.watch.start()
        results["restore"] = run_module("supabase_restore", {"src": results["dump"]["path"], "confirm": True})
        ok.watch.stop()
        ok.after_oid = db_oid(LIVE)
        ok.after_started = started_at(API, WORKER, DB)
        ok.after_stable = stable_of(LIVE)
        wait_for_writes()
        upto = max_feedback_id(LIVE)
        time.sleep(1.0)
        bad = SimpleNamespace(oid=db_oid(LIVE), data=fingerprint(LIVE, feedback_upto=upto, sequences=False),
                              dbs=databases(f"{LIVE}_"), started=started_at(API, WORKER, DB), upto=upto)
        results["failing"] = run_module("supabase_restore", {"src": failing, "confirm": True})
        bad.after = SimpleNamespace(oid=db_oid(LIVE), data=fingerprint(LIVE, feedback_upto=upto, sequences=False),
                                    dbs=databases(f"{LIVE}_"), started=started_at(API, WORKER, DB),
                                    running=statuses(API, WORKER))
        results["refused"] = run_module("supabase_restore", {"src": results["dump"]["path"], "confirm": True,
                                                             "keep_previous": False})
        bad.after_refusal = SimpleNamespace(oid=db_oid(LIVE), started=started_at(API, WORKER, DB))
        yield SimpleNamespace(results=results, ok=ok, bad=bad, backups=backups)
    finally:
        previous = (results.get("restore") or {}).get("previous_database")
        drop_databases(*[name for name in databases(f"{LIVE}_") if name not in known and (
            name == previous or re.match(rf"^{SCRATCH_PREFIX}\d{{8}}_\d{{6}}$", name))])
        shutil.rmtree(base, ignore_errors=True)
        restore_stable_postgres(stack)


def test_swap_restore_replaces_postgres_with_the_backup(swap):
    result, ok = swap.results["restore"], swap.ok
    assert_ok(result)
    assert result["writers_stop_at"] == "swap"
    assert ok.after_oid != ok.before_oid
    assert ok.after_stable == ok.stable
    assert result["tables"] == swap.results["dump"]["tables"]
    assert result["verification"]["vector_search"]["checked"] is True
    assert set(result["timings"]) >= {"load", "verify", "swap"}
    assert journals(swap.backups) == []


def test_swap_restore_keeps_the_writers_running_while_the_backup_loads(swap):
    result, ok = swap.results["restore"], swap.ok
    during = ok.watch.during_restore()
    assert during, f"the scratch database was never seen ({len(ok.watch.samples)} samples, {ok.watch.errors})"
    assert during[0][API] == "running" and during[0][WORKER] == "running", during[0]
    assert result["stopped"] == [API, WORKER] and result["started"] == [API, WORKER]
    for name in (API, WORKER):
        assert ok.after_started[name] != ok.started[name], f"{name} was not restarted"
    assert ok.after_started[DB] == ok.started[DB]
    assert 0 < result["downtime"] < result["duration"]


def test_swap_restore_keeps_what_was_written_during_the_load_in_the_previous_database(swap):
    result, ok = swap.results["restore"], swap.ok
    previous = result["previous_database"]
    assert re.match(rf"^{LIVE}_pre_restore_\d{{8}}_\d{{6}}$", previous)
    first_scratch = ok.watch.first_scratch_time()
    written_meanwhile = int(testbed.psql_value(
        "SELECT count(*) FROM feedback_audit_log WHERE actor IN ('api', 'worker') "
        f"AND created_at > to_timestamp({first_scratch})", previous))
    assert written_meanwhile > 0


def test_swap_restore_failing_during_the_load_stops_nothing(swap):
    result, bad = swap.results["failing"], swap.bad
    assert_clean_failure(result, "division by zero", "live database was not touched")
    assert result["stopped"] == [] and result["started"] == []
    assert bad.after.oid == bad.oid
    assert bad.after.data == bad.data
    assert bad.after.dbs == bad.dbs
    assert bad.after.started == bad.started  # no container was stopped or restarted
    assert all(status == "running" for status in bad.after.running.values())
    assert journals(swap.backups) == []


def test_swap_mode_refuses_to_drop_the_previous_database(swap):
    result, bad = swap.results["refused"], swap.bad
    assert_clean_failure(result, "keep_previous: false cannot go with writers_stop_at: swap")
    assert bad.after_refusal.oid == bad.after.oid
    assert bad.after_refusal.started == bad.after.started


# ------------------------------------------------- an interrupted restore --

def _start_restore(collections_path, workdir, args):
    playbook = os.path.join(workdir, "restore.yml")
    with open(playbook, "w", encoding="utf-8") as handle:
        handle.write("- hosts: localhost\n  gather_facts: false" + testbed.play_module_defaults() + "\n  tasks:\n"
                     "    - cortexreview.supabase_backup.supabase_restore: %s\n" % json.dumps(args))
    inventory = os.path.join(workdir, "inventory.ini")
    with open(inventory, "w", encoding="utf-8") as handle:
        handle.write(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    return subprocess.Popen([sys.executable, "-m", "ansible", "playbook", "-i", inventory, playbook],
                            env=testbed.ansible_env(collections_path), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def interrupted(stack, run_module, collections_path):
    stack.ensure_healthy()
    base = tempfile.mkdtemp(prefix="cortexreview-restore-it-killed-")
    backups = os.path.join(base, "backups")
    known = set(databases(f"{LIVE}_"))
    state = SimpleNamespace(results={})
    try:
        dump = run_module("supabase_dump", {"backup_dir": backups})
        assert_ok(dump)
        # The same backup with a long sleep after its first table's data: the load stops there.
        slow = inject_failing_statement(dump["path"], os.path.join(base, "slow", "supabase_backup_20260101_000000.sql.gz"),
                                        statement=b"SELECT pg_catalog.pg_sleep(120);")
        state.before_oid = db_oid(LIVE)
        state.stable = stable_of(LIVE)
        process = _start_restore(collections_path, base, {"src": slow, "confirm": True, "writers_stop_at": "load"})
        journal_dir = os.path.dirname(slow)
        record = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            names = journals(journal_dir)
            if names:
                with open(os.path.join(journal_dir, names[0]), encoding="utf-8") as handle:
                    record = json.load(handle)
                if record["phase"] == "loading" and databases(SCRATCH_PREFIX):
                    break
            time.sleep(0.2)
        assert record and record["phase"] == "loading", f"the restore never reached the load: {record}"
        time.sleep(1.0)  # inside the sleep statement
        state.results["status_while_running"] = run_module("backup_status", {"backup_dir": journal_dir})
        os.kill(record["pid"], signal.SIGKILL)
        process.communicate(timeout=120)
        state.record = record
        state.journal = os.path.join(journal_dir, journals(journal_dir)[0])
        state.journal_mode = stat.S_IMODE(os.stat(state.journal).st_mode)
        state.killed = SimpleNamespace(running=statuses(API, WORKER), oid=db_oid(LIVE), stable=stable_of(LIVE),
                                       scratch=databases(SCRATCH_PREFIX))
        state.results["status_meanwhile"] = run_module("backup_status", {"backup_dir": journal_dir})
        # The next restore from the same directory finishes the interrupted one first.
        good = shutil.copy(dump["path"], os.path.join(journal_dir, "supabase_backup_20260101_000001.sql.gz"))
        state.results["rerun"] = run_module("supabase_restore", {"src": good, "confirm": True})
        state.after = SimpleNamespace(running=statuses(API, WORKER), scratch=databases(SCRATCH_PREFIX),
                                      journals=journals(journal_dir), stable=stable_of(LIVE))
        state.results["status_after"] = run_module("backup_status", {"backup_dir": journal_dir})
        state.dump = dump
        yield state
    finally:
        drop_databases(*[name for name in databases(f"{LIVE}_") if name not in known])
        shutil.rmtree(base, ignore_errors=True)
        restore_stable_postgres(stack)


def test_killed_restore_leaves_its_record_and_the_live_database(interrupted):
    assert interrupted.journal_mode == 0o600
    assert interrupted.record["stopped_writers"] == [API, WORKER]
    assert interrupted.killed.running == {API: "exited", WORKER: "exited"}
    assert interrupted.killed.oid == interrupted.before_oid
    assert interrupted.killed.stable == interrupted.stable
    assert interrupted.killed.scratch == [interrupted.record["scratch_database"]]


def test_backup_status_reports_a_restore_under_way_as_running_not_as_a_problem(interrupted):
    result = interrupted.results["status_while_running"]
    assert result.get("failed") is not True, result
    [entry] = result["interrupted_restores"]
    assert entry["running"] is True and sorted(entry["writers_down"]) == sorted([API, WORKER]), entry


def test_backup_status_fails_while_writers_stopped_by_a_restore_are_down(interrupted):
    result = interrupted.results["status_meanwhile"]
    assert result.get("failed") is True, result
    assert "did not finish" in result["msg"] and API in result["msg"] and WORKER in result["msg"], result["msg"]
    assert [entry["running"] for entry in result["interrupted_restores"]] == [False]
    assert interrupted.results["status_after"].get("failed") is not True, interrupted.results["status_after"]


def test_next_restore_finishes_the_interrupted_one(interrupted):
    result = interrupted.results["rerun"]
    assert_ok(result)
    finished = result["interrupted_restore"]
    assert finished["dropped"] == interrupted.record["scratch_database"]
    assert sorted(finished["started"]) == sorted([API, WORKER])
    assert any("did not end" in warning for warning in result.get("warnings", [])), result.get("warnings")
    assert interrupted.after.running == {API: "running", WORKER: "running"}
    assert interrupted.after.scratch == []
    assert interrupted.after.journals == []
    assert interrupted.after.stable == interrupted.stable
