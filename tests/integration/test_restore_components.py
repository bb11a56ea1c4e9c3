# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Restore points with extra databases and the cluster's roles, on the plain test bed.

A private extra database (its owner, grants, settings, comment, connection limit) and private
roles (a password, a membership, ALTER ROLE ... SET) are made here and removed afterwards; the
main database ``postgres`` is dumped but never restored here.

* dump: the extra database and the roles are parts of one restore point (check mode predicts them);
* restore ``globals`` + ``extra_databases`` after dropping and altering them: the dropped role back
  with its old password (a login over TCP), the altered one's password and settings back, the extra
  database's rows and its settings from the backup, not the live ones; a missing extra database is
  created by the rename;
* a failure after the roles' first phase (a load that fails) leaves existing roles as they were;
* a part missing or altered is refused naming it, nothing changed; check mode is refused alike;
* retention removes a multi-part restore point whole;
* ``globals`` with a login that is not a superuser fails in one line, for the dump and the restore;
* the validation restores the extra database in staging and reads the roles' part.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from types import SimpleNamespace

import pytest

import testbed
from dump_helpers import assert_clean_failure, restore_point_names, set_age, snapshot
from restore_helpers import assert_ok, databases, db_oid, drop_databases

TAG = uuid.uuid4().hex[:6]
EXTRA = f"rc_extra_{TAG}"
OWNER = f"rc_owner_{TAG}"
DROPPED = f"rc_role_{TAG}"     # dropped after the backup: created again, with its old password
ALTERED = f"rc_keep_{TAG}"     # altered after the backup: its old password and settings come back
PLAIN = f"rc_plain_{TAG}"      # not a superuser
OLD_PASSWORD = f"old-{uuid.uuid4().hex}"
ALTERED_PASSWORD = f"altered-{uuid.uuid4().hex}"
SETUP_SQL = f"""
CREATE ROLE "{OWNER}" NOLOGIN;
CREATE ROLE "{DROPPED}" LOGIN PASSWORD '{OLD_PASSWORD}' CONNECTION LIMIT 4;
ALTER ROLE "{DROPPED}" SET work_mem = '5MB';
GRANT pg_read_all_data TO "{DROPPED}";
CREATE ROLE "{ALTERED}" LOGIN PASSWORD '{OLD_PASSWORD}';
ALTER ROLE "{ALTERED}" SET statement_timeout = '21s';
CREATE DATABASE "{EXTRA}" OWNER "{OWNER}" TEMPLATE template0;
ALTER DATABASE "{EXTRA}" SET work_mem = '3MB';
ALTER DATABASE "{EXTRA}" SET "app.settings.tenant" = 'from the backup';
ALTER ROLE "{DROPPED}" IN DATABASE "{EXTRA}" SET statement_timeout = '11s';
COMMENT ON DATABASE "{EXTRA}" IS 'the backup''s comment';
ALTER DATABASE "{EXTRA}" CONNECTION LIMIT 12;
REVOKE ALL ON DATABASE "{EXTRA}" FROM PUBLIC;
GRANT CONNECT ON DATABASE "{EXTRA}" TO "{DROPPED}";
"""
EXTRA_SQL = f"""
CREATE TABLE items (id integer PRIMARY KEY, note text NOT NULL);
INSERT INTO items SELECT n, 'item ' || n FROM generate_series(1, 25) n;
GRANT SELECT ON items TO "{DROPPED}";
ALTER TABLE items OWNER TO "{OWNER}";
"""
# What the tests do to the live cluster after the backup.
ALTER_EXTRA_SQL = """
DELETE FROM items WHERE id > 5;
INSERT INTO items VALUES (1000, 'written after the backup');
"""
ALTER_SETTINGS_SQL = f"""
ALTER DATABASE "{EXTRA}" SET work_mem = '99MB';
ALTER DATABASE "{EXTRA}" RESET "app.settings.tenant";
COMMENT ON DATABASE "{EXTRA}" IS 'a live comment';
ALTER DATABASE "{EXTRA}" CONNECTION LIMIT 3;
ALTER ROLE "{ALTERED}" PASSWORD '{ALTERED_PASSWORD}';
ALTER ROLE "{ALTERED}" SET statement_timeout = '99s';
"""
NO_WRITERS = {"stop_containers": []}


def sql(text, db="template1"):
    return testbed.psql(text, db)


def value(text, db="template1"):
    return testbed.psql_value(text, db)


def drop_role(name):
    """DROP ROLE after its grants in the extra database (if it exists) are gone."""
    if testbed.database_exists(EXTRA):
        testbed.psql(f'DROP OWNED BY "{name}"', EXTRA, check=False)
    testbed.psql(f'DROP ROLE IF EXISTS "{name}"', "template1", check=False)


def can_log_in(role, password):
    """A login over TCP (127.0.0.1, scram-sha-256 in the test bed's pg_hba) with ``password``."""
    proc = testbed.docker_exec(testbed.DB_CONTAINER, [
        "psql", "-X", "-At", "-h", "127.0.0.1", "-U", role, "-d", "postgres", "-c", "SELECT current_user"],
        env={"PGPASSWORD": password, "PGCONNECT_TIMEOUT": "10"}, check=False)
    return proc.returncode == 0 and proc.stdout.strip() == role


def role_facts(role):
    """What phase 2 restores: attributes, settings, memberships (not the password, checked by a login)."""
    rows = testbed.psql_rows(
        "SELECT rolcanlogin, rolconnlimit, coalesce(array_to_string(rolconfig, ','), ''), "
        "coalesce((SELECT string_agg(b.rolname, ',' ORDER BY b.rolname) FROM pg_auth_members m "
        "JOIN pg_roles b ON b.oid = m.roleid WHERE m.member = r.oid), '') "
        f"FROM pg_roles r WHERE rolname = '{role}'", "template1")
    return rows[0] if rows else None


def extra_settings():
    """The extra database's own settings, as a restore must carry them."""
    return {
        "owner": value(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{EXTRA}'"),
        "limit": value(f"SELECT datconnlimit FROM pg_database WHERE datname = '{EXTRA}'"),
        "comment": value(f"SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '{EXTRA}'"),
        "acl": value(f"SELECT datacl::text FROM pg_database WHERE datname = '{EXTRA}'"),
        "settings": sorted(testbed.psql_rows(
            "SELECT coalesce(pg_get_userbyid(NULLIF(s.setrole, 0)), ''), array_to_string(s.setconfig, ',') "
            f"FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = '{EXTRA}'",
            "template1")),
    }


def items():
    return testbed.psql_rows("SELECT id, note FROM items ORDER BY id", EXTRA)


def restore_args(point, **extra):
    args = {"backup_dir": point.backup_dir, "restore_point": point.stem, "confirm": True}
    args.update(NO_WRITERS)
    args.update(extra)
    return args


def scratch_databases():
    return [name for name in databases("rc_extra_") if "_restore_" in name and "_pre_restore_" not in name]


def rewrite_part(backup_dir, stem, name, transform):
    """Change a part's content and make its sidecar and manifest agree (a failure only the load can see)."""
    path = os.path.join(backup_dir, name)
    with open(path, "rb") as fh:
        data = gzip.compress(transform(gzip.decompress(fh.read())))
    with open(path, "wb") as fh:
        fh.write(data)
    digest = hashlib.sha256(data).hexdigest()
    with open(path + ".sha256", "w", encoding="utf-8") as fh:
        fh.write(f"{digest}  {name}\n")
    manifest_path = os.path.join(backup_dir, stem + ".manifest.json")
    with open(manifest_path, encoding="utf-8") as fh:
        manifest = json.load(fh)
    for part in manifest["parts"]:
        if part["name"] == name:
            part.update(sha256=digest, size=len(data))
    with open(manifest_path, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh)


def copy_point(point, into):
    os.makedirs(into, mode=0o700)
    for name in restore_point_names(point.path):
        shutil.copy2(os.path.join(point.backup_dir, name), into)
    return SimpleNamespace(backup_dir=into, stem=point.stem, path=os.path.join(into, os.path.basename(point.path)))


def cleanup():
    drop_databases(prefix=EXTRA)
    for role in (DROPPED, ALTERED, PLAIN, OWNER):
        testbed.psql(f'DROP ROLE IF EXISTS "{role}"', "template1", check=False)


@pytest.fixture(scope="module")
def point(stack, run_module):
    """A restore point of the test bed with the private extra database and roles."""
    stack.ensure_healthy()
    base = tempfile.mkdtemp(prefix="cortexreview-components-it-")
    cleanup()
    try:
        sql(SETUP_SQL)
        sql(EXTRA_SQL, EXTRA)
        backup_dir = os.path.join(base, "backups")
        planned = run_module("supabase_dump", {"backup_dir": backup_dir}, check=True)
        assert_ok(planned)
        assert not os.path.exists(backup_dir)
        result = run_module("supabase_dump", {"backup_dir": backup_dir})
        assert_ok(result)
        stem = result["restore_point"]
        with open(result["manifest"], encoding="utf-8") as fh:
            manifest = json.load(fh)
        yield SimpleNamespace(base=base, backup_dir=backup_dir, stem=stem, path=result["path"], result=result,
                              planned=planned, manifest=manifest, items=items(), settings=extra_settings(),
                              dropped=role_facts(DROPPED), altered=role_facts(ALTERED))
    finally:
        cleanup()
        shutil.rmtree(base, ignore_errors=True)


def test_the_dump_writes_the_extra_database_and_the_roles(point):
    stem, result, manifest = point.stem, point.result, point.manifest
    assert EXTRA in result["extra_databases"]
    names = [part["name"] for part in result["parts"]]
    assert names[0] == stem + ".sql.gz" and names[-1] == stem + ".globals.pgsql.gz"
    assert stem + f".db.{EXTRA}.pgsql.gz" in names
    # Check mode predicted exactly these parts (sizes unknown) and wrote nothing.
    planned_stem = os.path.basename(point.planned["path"])[:-len(".sql.gz")]
    assert [part["name"][len(planned_stem):] for part in point.planned["parts"]] == [name[len(stem):] for name in names]
    assert all(part["size"] is None for part in point.planned["parts"])
    assert sorted(os.listdir(point.backup_dir)) == sorted(restore_point_names(point.path))
    for name in os.listdir(point.backup_dir):
        assert os.stat(os.path.join(point.backup_dir, name)).st_mode & 0o777 == 0o600, name
    assert set(manifest["components"]) == {"database", "extra_database", "globals"}
    extra = [part for part in manifest["parts"] if part.get("database") == EXTRA][0]
    assert extra["role"] == "extra_database" and extra["tables"] == {"public.items": 25}
    settings = extra["database_settings"]
    assert settings["owner"] == OWNER and settings["connection_limit"] == 12
    assert settings["comment"] == "the backup's comment"
    assert {"role": DROPPED, "name": "statement_timeout", "value": "11s"} in settings["settings"]
    assert {"role": None, "name": "app.settings.tenant", "value": "from the backup"} in settings["settings"]
    assert {"grantee": DROPPED, "privilege": "CONNECT", "grantable": False} in settings["acl"]
    roles = [part for part in manifest["parts"] if part["role"] == "globals"][0]
    assert {DROPPED, ALTERED, OWNER} <= set(roles["roles"])
    with open(os.path.join(point.backup_dir, stem + ".globals.pgsql.gz"), "rb") as fh:
        text = gzip.decompress(fh.read()).decode()
    assert f"CREATE ROLE {DROPPED};" in text and "SCRAM-SHA-256$" in text and OLD_PASSWORD not in text
    # The main dump is still the contract's file: the newest *.sql.gz is it, and only it.
    assert glob.glob(os.path.join(point.backup_dir, "*.sql.gz")) == [point.path]


def test_restore_roles_and_extra_database_onto_the_same_stack(point, run_module):
    postgres_oid = db_oid("postgres")
    drop_role(DROPPED)
    sql(ALTER_EXTRA_SQL, EXTRA)
    sql(ALTER_SETTINGS_SQL)
    assert not can_log_in(DROPPED, OLD_PASSWORD) and can_log_in(ALTERED, ALTERED_PASSWORD)
    live_settings = extra_settings()
    assert live_settings != point.settings
    args = restore_args(point, components=["globals", "extra_databases"])
    plan = run_module("supabase_restore", args, check=True)
    assert_ok(plan)
    assert plan["roles_created"] == [DROPPED] and plan["components"] == ["extra_databases", "globals"]
    assert [database["database"] for database in plan["databases"]] == [EXTRA]
    assert plan["databases"][0]["created"] is False and plan["databases"][0]["settings_from"] == "backup"
    # Check mode changed nothing.
    assert role_facts(DROPPED) is None and extra_settings() == live_settings and not scratch_databases()
    result = run_module("supabase_restore", args)
    assert_ok(result)
    assert result["roles_created"] == plan["roles_created"]
    assert DROPPED in result["roles_changed"] and ALTERED in result["roles_changed"]
    assert result["roles_kept"] == [] and result["password_restored"] == "postgres"
    # The roles: the dropped one back with its old password and membership, the altered one as it was.
    assert can_log_in(DROPPED, OLD_PASSWORD) and can_log_in(ALTERED, OLD_PASSWORD)
    assert not can_log_in(ALTERED, ALTERED_PASSWORD)
    assert role_facts(DROPPED) == point.dropped and role_facts(ALTERED) == point.altered
    # The extra database: its rows and the backup's settings, the live one kept as the previous copy.
    assert items() == point.items
    assert extra_settings() == point.settings
    [restored] = result["databases"]
    assert restored["database"] == EXTRA and restored["settings_from"] == "backup" and restored["created"] is False
    assert restored["previous_database"] in databases(EXTRA + "_pre_restore_")
    # Its grant to the role created in phase 1 came back with the load.
    assert testbed.psql_value(f"SELECT has_table_privilege('{DROPPED}', 'items', 'SELECT')", EXTRA) == "t"
    assert db_oid("postgres") == postgres_oid and not scratch_databases()


def test_a_missing_extra_database_is_created_by_the_rename(point, run_module):
    drop_databases(prefix=EXTRA)
    result = run_module("supabase_restore", restore_args(point, components=["extra_databases"]))
    assert_ok(result)
    [restored] = result["databases"]
    assert restored["created"] is True and restored["previous_database"] is None
    assert items() == point.items and extra_settings() == point.settings
    assert databases(EXTRA) == [EXTRA]


def test_a_failure_after_the_first_phase_leaves_existing_roles_as_they_were(point, run_module):
    broken = copy_point(point, os.path.join(point.base, "broken"))
    # Sound to every check before the load: only loading it fails.
    rewrite_part(broken.backup_dir, broken.stem, f"{broken.stem}.db.{EXTRA}.pgsql.gz",
                 lambda data: data.replace(b"COPY public.items", b"SELECT 1/0;\nCOPY public.items", 1))
    drop_role(DROPPED)
    sql(ALTER_SETTINGS_SQL)
    sql(ALTER_EXTRA_SQL, EXTRA)
    before = SimpleNamespace(items=items(), settings=extra_settings(), altered=role_facts(ALTERED),
                             oid=db_oid(EXTRA))
    result = run_module("supabase_restore", restore_args(broken, components=["globals", "extra_databases"]))
    msg = assert_clean_failure(result, "division by zero", "not touched")
    assert f"db.{EXTRA}.pgsql.gz" in msg
    # Phase 1 created the missing role (bare: no login, no password); phase 2 never ran.
    assert role_facts(DROPPED) is not None and role_facts(DROPPED)[0] == "f"
    assert not can_log_in(DROPPED, OLD_PASSWORD)
    assert role_facts(ALTERED) == before.altered
    assert can_log_in(ALTERED, ALTERED_PASSWORD) and not can_log_in(ALTERED, OLD_PASSWORD)
    assert items() == before.items and extra_settings() == before.settings and db_oid(EXTRA) == before.oid
    assert not scratch_databases()


def test_validation_restores_the_extra_database_in_staging_and_reads_the_roles(point, run_module):
    before = databases(EXTRA)
    report = run_module("supabase_validate", {"backup_dir": point.backup_dir, "restore_point": point.stem})
    assert_ok(report)
    assert report["passed"] is True
    assert report["extra_databases"][EXTRA] == {"public.items": 25}
    assert {part["role"] for part in report["parts"]} == {"extra_database", "globals"}
    assert report["roles"]["count"] == len(point.manifest["parts"][-1]["roles"])
    assert databases(EXTRA) == before  # its staging copy is gone


@pytest.mark.parametrize("damage", ["missing", "altered"])
def test_a_part_missing_or_altered_is_refused_naming_it(point, run_module, damage):
    damaged = copy_point(point, os.path.join(point.base, "damaged-" + damage))
    if damage == "missing":
        name = f"{damaged.stem}.globals.pgsql.gz"
        os.unlink(os.path.join(damaged.backup_dir, name))
    else:
        name = f"{damaged.stem}.db.{EXTRA}.pgsql.gz"
        with open(os.path.join(damaged.backup_dir, name), "ab") as fh:
            fh.write(b"\0")
    sql(ALTER_SETTINGS_SQL)
    before = SimpleNamespace(items=items(), settings=extra_settings(), altered=role_facts(ALTERED),
                             oid=db_oid(EXTRA), roles=testbed.psql_rows("SELECT rolname FROM pg_roles ORDER BY 1"))
    files = snapshot(damaged.backup_dir)
    args = restore_args(damaged, components=["globals", "extra_databases"])
    for check in (True, False):
        result = run_module("supabase_restore", args, check=check)
        msg = assert_clean_failure(result, name, "nothing was changed")
        assert ("is missing its globals part" if damage == "missing" else "does not match its checksum") in msg
    assert role_facts(ALTERED) == before.altered and can_log_in(ALTERED, ALTERED_PASSWORD)
    assert testbed.psql_rows("SELECT rolname FROM pg_roles ORDER BY 1") == before.roles
    assert items() == before.items and extra_settings() == before.settings and db_oid(EXTRA) == before.oid
    assert not scratch_databases() and snapshot(damaged.backup_dir) == files


def test_a_component_the_restore_point_lacks_is_refused(point, run_module):
    lacking = copy_point(point, os.path.join(point.base, "lacking"))
    result = run_module("supabase_restore", restore_args(lacking, components=["storage"]))
    assert_clean_failure(result, f"restore point {lacking.stem} has no storage part", "nothing was changed")


def test_retention_removes_a_multi_part_restore_point_whole(point, run_module):
    directory = os.path.join(point.base, "retention")
    old = copy_point(point, directory)
    old_stem = "supabase_backup_20200101_000000"
    renamed = []
    for name in os.listdir(directory):
        path = os.path.join(directory, old_stem + name[len(old.stem):])
        os.rename(os.path.join(directory, name), path)
        set_age(path, 400 * 86400)
        renamed.append(path)
    assert len(renamed) == len(restore_point_names(point.path)) >= 7
    result = run_module("supabase_dump", {"backup_dir": directory, "retention_days": 30, "retention_keep_min": 1,
                                          "extra_databases": [EXTRA]})
    assert_ok(result)
    assert sorted(result["removed"]) == sorted(renamed)
    assert sorted(os.listdir(directory)) == sorted(restore_point_names(result["path"]))


def test_globals_need_a_superuser(point, run_module):
    sql(f'CREATE ROLE "{PLAIN}" LOGIN PASSWORD \'{uuid.uuid4().hex}\'; GRANT pg_read_all_data TO "{PLAIN}"')
    message = f"globals need a superuser (login_user {PLAIN} is not one); set globals: false"
    directory = os.path.join(point.base, "not-superuser")
    for check in (True, False):
        result = run_module("supabase_dump", {"backup_dir": directory, "login_user": PLAIN}, check=check)
        assert assert_clean_failure(result) == message
    assert not os.path.exists(directory) or os.listdir(directory) == []
    result = run_module("supabase_restore", restore_args(point, components=["globals"], login_user=PLAIN))
    assert assert_clean_failure(result) == message
    # Without the roles, the same login backs up.
    result = run_module("supabase_dump", {"backup_dir": directory, "login_user": PLAIN, "globals": False,
                                          "extra_databases": []})
    assert_ok(result)
    assert [part["role"] for part in result["parts"]] == ["database"]
