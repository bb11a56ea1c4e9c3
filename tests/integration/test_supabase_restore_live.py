# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""supabase_restore of the live ``postgres`` database with the real writers (the Supabase case).

Runs last (file name order) and keeps to two restores in one ansible-playbook run:

1. a backup of ``postgres`` restored with the default ``stop_containers`` (api, worker), the
   writers stopped before the load (``writers_stop_at: load``, the contract's order);
2. a copy of that backup whose SQL fails part-way, restored with the writers selected by
   compose project and services -- it must fail and leave ``postgres`` exactly as it was.

A thread samples the containers' state and the scratch database while each restore runs.
Afterwards ``postgres`` is seeded and the writers run, whatever happened.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import tempfile
import time
from types import SimpleNamespace

import pytest

import testbed
from restore_helpers import (
    Pause,
    RestoreWatch,
    Task,
    TaskSession,
    assert_clean_failure,
    assert_ok,
    databases,
    db_oid,
    drop_databases,
    fingerprint,
    inject_failing_statement,
    max_feedback_id,
    parse_docker_time,
    restore_stable_postgres,
    stable,
    started_at,
    statuses,
    wait_for_writes,
)

API, WORKER, DB = testbed.API_CONTAINER, testbed.WORKER_CONTAINER, testbed.DB_CONTAINER
WATCHED = (API, WORKER, DB)
LIVE = testbed.DB_NAME
SCRATCH_PREFIX = f"{LIVE}_restore_"


def feedback_ids_in_dump(path):
    """ids of the feedback_audit_log rows in a .sql.gz dump (first column of its COPY block)."""
    with open(path, "rb") as fh:
        lines = gzip.decompress(fh.read()).split(b"\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(b"COPY public.feedback_audit_log "))
    end = lines.index(b"\\.", start)
    return sorted(int(line.split(b"\t", 1)[0]) for line in lines[start + 1:end])


def writer_rows_after(db, first_id):
    """{actor: epoch of its earliest row with id >= first_id}."""
    return {actor: float(value) for actor, value in testbed.psql_rows(
        "SELECT actor, extract(epoch FROM min(created_at)) FROM feedback_audit_log "
        f"WHERE actor IN ('api', 'worker') AND id >= {int(first_id)} GROUP BY actor", db)}


def compose_project_started_at():
    """StartedAt of every container of the compose project (running or not)."""
    containers = testbed.docker_client().containers.list(
        all=True, filters={"label": f"com.docker.compose.project={testbed.PROJECT}"})
    return {c.name: c.attrs["State"]["StartedAt"] for c in containers}


@pytest.fixture(scope="module")
def live(stack, collections_path):
    stack.ensure_healthy()
    base = tempfile.mkdtemp(prefix="cortexreview-restore-it-live-")
    failing = os.path.join(base, "failing", "supabase_backup_20260101_000000.sql.gz")
    known_databases = set(databases(f"{LIVE}_"))
    results = {}
    try:
        wait_for_writes()
        steps = [
            Task("dump", "supabase_dump", {"backup_dir": os.path.join(base, "backups")}),
            Pause("dumped"),
            # The contract's order: writers stopped for the whole restore (swap mode: test_supabase_restore_swap.py).
            Task("restore", "supabase_restore", {"src": "{{ r_dump.path }}", "confirm": True,
                                                 "writers_stop_at": "load"}, template=True),
            Pause("restored"),
            Task("failing", "supabase_restore", {
                "src": failing, "confirm": True, "stop_containers": [], "writers_stop_at": "load",
                "stop_compose_project": testbed.PROJECT, "stop_compose_services": ["api", "worker"]}),
        ]
        ok = SimpleNamespace()
        bad = SimpleNamespace()
        with TaskSession(collections_path, steps) as session:
            results.update(session.wait("dumped"))
            assert_ok(results["dump"])
            inject_failing_statement(results["dump"]["path"], failing)
            ok.dump_ids = feedback_ids_in_dump(results["dump"]["path"])
            ok.before = SimpleNamespace(oid=db_oid(LIVE), stable=stable(fingerprint(LIVE, sequences=False)),
                                        started=started_at(*WATCHED))
            ok.watch = RestoreWatch(WATCHED, SCRATCH_PREFIX)
            ok.watch.start()
            results.update(session.step("dumped", "restored"))
            ok.watch.stop()
            ok.after = SimpleNamespace(
                oid=db_oid(LIVE), started=started_at(*WATCHED), running=statuses(*WATCHED),
                stable=stable(fingerprint(LIVE, sequences=False)),
                ids=[int(r[0]) for r in testbed.psql_rows(
                    f"SELECT id FROM feedback_audit_log WHERE id <= {ok.dump_ids[-1]} ORDER BY id", LIVE)],
                seed_rows=testbed.seed_row_counts(LIVE))
            ok.previous_last_write = None
            previous = results["restore"].get("previous_database")
            if previous and testbed.database_exists(previous):
                ok.previous_last_write = float(testbed.psql_value(
                    "SELECT extract(epoch FROM max(created_at)) FROM feedback_audit_log "
                    "WHERE actor IN ('api', 'worker')", previous) or 0)
            wait_for_writes()
            ok.new_rows = writer_rows_after(LIVE, ok.dump_ids[-1] + 1)

            # before the failing restore: every row up to `upto` is committed (inserts take milliseconds)
            upto = max_feedback_id(LIVE)
            time.sleep(1.0)
            bad.before = SimpleNamespace(
                oid=db_oid(LIVE), data=fingerprint(LIVE, feedback_upto=upto, sequences=False),
                dbs=databases(f"{LIVE}_"), started=started_at(*WATCHED), project=compose_project_started_at())
            bad.upto = upto
            bad.watch = RestoreWatch(WATCHED, SCRATCH_PREFIX)
            bad.watch.start()
            results.update(session.finish("restored"))
            bad.watch.stop()
        bad.after = SimpleNamespace(
            oid=db_oid(LIVE), data=fingerprint(LIVE, feedback_upto=bad.upto, sequences=False),
            dbs=databases(f"{LIVE}_"), started=started_at(*WATCHED), running=statuses(*WATCHED),
            project=compose_project_started_at())
        wait_for_writes()
        yield SimpleNamespace(results=results, ok=ok, bad=bad)
    finally:
        # our copies only: the previous database of our restore, scratch databases that appeared meanwhile
        leftovers = [name for name in databases(f"{LIVE}_") if name not in known_databases and (
            name == (results.get("restore") or {}).get("previous_database")
            or re.match(rf"^{SCRATCH_PREFIX}\d{{8}}_\d{{6}}$", name))]
        drop_databases(*leftovers)
        shutil.rmtree(base, ignore_errors=True)
        restore_stable_postgres(stack)


# ------------------------------------------------------------- success --

def test_live_restore_replaces_postgres_with_the_backup(live):
    result, ok = live.results["restore"], live.ok
    assert_ok(result)
    assert result["tables"] == live.results["dump"]["tables"]
    assert ok.after.oid != ok.before.oid  # postgres is now the restored database
    assert ok.after.stable == ok.before.stable
    assert ok.after.ids == ok.dump_ids  # exactly the feedback rows of the backup, no more, no less
    assert ok.after.seed_rows == testbed.SEED_ROW_COUNTS
    assert re.match(rf"^{LIVE}_pre_restore_\d{{8}}_\d{{6}}$", result["previous_database"])
    assert result["verification"]["vector_search"]["checked"] is True


def test_live_writers_stopped_during_restore_and_running_after(live):
    result, ok = live.results["restore"], live.ok
    assert result["stopped"] == [API, WORKER] and result["started"] == [API, WORKER]
    during = ok.watch.during_restore()
    assert during, f"the scratch database was never seen ({len(ok.watch.samples)} samples, {ok.watch.errors})"
    for state in during:
        assert state[API] != "running" and state[WORKER] != "running", state
        assert state[DB] == "running", state
    assert all(status == "running" for status in ok.after.running.values()), ok.after.running
    for name in (API, WORKER):
        assert ok.after.started[name] != ok.before.started[name], f"{name} was not restarted"
    assert ok.after.started[DB] == ok.before.started[DB]


def test_live_no_rows_written_during_the_swap_window(live):
    """Nothing reached the old database once the restore had begun, and nothing reached the new one
    before the writers were started again."""
    ok = live.ok
    assert ok.previous_last_write < ok.watch.first_scratch_time()
    assert set(ok.new_rows) == {"api", "worker"}  # the writers write into the restored database
    for actor, name in (("api", API), ("worker", WORKER)):
        assert ok.new_rows[actor] >= parse_docker_time(ok.after.started[name]), actor


# ------------------------------------------------------------- failure --

def test_live_failed_restore_leaves_postgres_exactly_as_it_was(live):
    result, bad = live.results["failing"], live.bad
    assert_clean_failure(result, "division by zero", "live database was not touched")
    assert bad.after.oid == bad.before.oid
    assert bad.after.data == bad.before.data  # all tables, feedback rows up to the last one before
    assert bad.after.dbs == bad.before.dbs  # no scratch database left, nothing renamed


def test_live_writers_running_after_a_failed_restore(live):
    bad = live.bad
    during = bad.watch.during_restore()
    assert during, f"the scratch database was never seen ({len(bad.watch.samples)} samples, {bad.watch.errors})"
    for state in during:
        assert state[API] != "running" and state[WORKER] != "running", state
    assert all(status == "running" for status in bad.after.running.values()), bad.after.running
    for name in (API, WORKER):
        assert bad.after.started[name] != bad.before.started[name], f"{name} was not restarted"


def test_live_compose_selection_stops_exactly_api_and_worker(live):
    """stop_containers: [], stop_compose_project: cortexreview, stop_compose_services: [api, worker]."""
    bad = live.bad
    for state in bad.watch.during_restore():
        assert state[DB] == "running", state
    changed = sorted(name for name, when in bad.after.project.items() if bad.before.project.get(name) != when)
    assert changed == sorted([API, WORKER])
    assert bad.after.started[DB] == bad.before.started[DB]


def test_live_failed_restore_reports_stopped_and_started(live):
    result = live.results["failing"]
    assert sorted(result.get("stopped") or []) == sorted([API, WORKER])
    assert sorted(result.get("started") or []) == sorted([API, WORKER])
