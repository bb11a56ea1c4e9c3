# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The test bed's supabase profile: a stack shaped like a self-hosted Supabase holds what
issue 11 names, its Vault-like function works only with its own root key, every fresh stack
gets a new key and its own password, and `down` removes all of it."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess

import psycopg2
import pytest

import testbed


def _stack_sh(name, *args, profile="supabase", extra_env=None):
    env = dict(os.environ, CORTEXREVIEW_TESTBED=name)
    for key in ("CORTEXREVIEW_TESTBED_PORT", "CORTEXREVIEW_TESTBED_PROFILE", "CORTEXREVIEW_TESTBED_POSTGRES_PASSWORD"):
        env.pop(key, None)
    if profile is not None:
        env["CORTEXREVIEW_TESTBED_PROFILE"] = profile
    env.update(extra_env or {})
    return subprocess.run(["bash", str(testbed.STACK_SH), *args], env=env, capture_output=True, text=True,
                          check=False)


def _rows(stack, sql, db="postgres"):
    return [list(row) for row in stack.psql_rows(sql, db)]


# ------------------------------------------------------------------ names --

def test_supabase_names_agree_with_lib_sh():
    proc = _stack_sh("cortexreview-supa-names", "names")
    assert proc.returncode == 0, proc.stderr
    names = dict(line.split("=", 1) for line in proc.stdout.splitlines())
    names["port"] = int(names["port"])
    assert names == testbed.stack_names("cortexreview-supa-names", "supabase")
    assert names["project_dir"] == "/var/tmp/cortexreview-testbed-cortexreview-supa-names"
    assert names["storage_dir"] == names["project_dir"] + "/volumes/storage"
    assert names["config_volume"] == "cortexreview-supa-names-db-config"
    # the plain profile's names are today's
    plain = _stack_sh("cortexreview-supa-names", "names", profile=None)
    assert "profile=" not in plain.stdout and "storage" not in plain.stdout


def test_bad_profile_is_refused_in_one_line():
    proc = _stack_sh("cortexreview-supa-bad", "up", profile="supabse")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == "CORTEXREVIEW_TESTBED_PROFILE=supabse: use plain or supabase"
    with pytest.raises(ValueError, match="profile"):
        testbed.Stack("cortexreview-supa-bad", profile="supabse")


def test_bad_password_is_refused_before_anything_is_made(stack):
    name = f"{stack.name}-supa-badpw"
    proc = _stack_sh(name, "up", extra_env={"CORTEXREVIEW_TESTBED_POSTGRES_PASSWORD": "it's$bad"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == \
        "CORTEXREVIEW_TESTBED_POSTGRES_PASSWORD: use 8-128 of A-Z a-z 0-9 . _ ~ -"
    assert "it's$bad" not in proc.stdout + proc.stderr
    assert not testbed.project_dir(name).exists()
    for container in testbed.Stack(name, profile="supabase").containers:
        assert testbed.container_status(container) == "absent"


# ------------------------------------------------------- what the stack holds --

def test_containers_volumes_and_project_dir(supabase_stack):
    s = supabase_stack
    assert s.containers == (s.db_container, s.api_container, s.worker_container, s.storage_container)
    for name in s.containers:
        c = s.container(name)
        assert c.status == "running"
        assert c.labels["com.docker.compose.project"] == s.project
        assert c.image.tags[0] in (testbed.DB_IMAGE, testbed.APP_IMAGE)  # local images, shared
    db_mounts = {m["Destination"]: m for m in s.container(s.db_container).attrs["Mounts"]}
    assert db_mounts["/etc/postgresql-custom"]["Name"] == s.config_volume
    assert db_mounts["/var/lib/postgresql/data"]["Name"] == s.volume
    storage_mounts = {m["Destination"]: m for m in s.container(s.storage_container).attrs["Mounts"]}
    assert storage_mounts["/var/lib/storage"]["Type"] == "bind"
    assert storage_mounts["/var/lib/storage"]["Source"] == s.storage_dir

    env_file = os.stat(s.env_file)
    assert stat.S_IMODE(env_file.st_mode) == 0o600 and env_file.st_uid == 0
    env = s.env_values()
    assert re.fullmatch(r"[0-9a-f]{48}", env["POSTGRES_PASSWORD"]) and re.fullmatch(r"[0-9a-f]{48}", env["JWT_SECRET"])
    assert sorted(os.listdir(s.project_dir)) == [".env", "docker-compose.yml", "volumes"]
    assert sorted(os.listdir(os.path.join(s.project_dir, "volumes"))) == ["db", "storage"]
    # the first-start password is the services' and postgres's; a wrong one is refused
    for role in testbed.SERVICE_LOGINS + ("postgres",):
        assert testbed.can_log_in(s, role, env["POSTGRES_PASSWORD"]), role
    assert not testbed.can_log_in(s, "authenticator", "not-the-password")
    assert s.seed_counts() == testbed.SEED_ROW_COUNTS


def test_roles_with_attributes_memberships_and_settings(supabase_stack):
    s = supabase_stack
    roles = {row[0]: row[1:] for row in _rows(s, """
        SELECT rolname, rolsuper, rolcanlogin, rolinherit, rolcreaterole, rolreplication, rolbypassrls
        FROM pg_roles""")}
    t, f = "t", "f"
    expected = {  # super, login, inherit, createrole, replication, bypassrls
        "supabase_admin": [t, t, t, t, t, t],
        "authenticator": [f, t, f, f, f, f],
        "anon": [f, f, f, f, f, f],
        "authenticated": [f, f, f, f, f, f],
        "service_role": [f, f, f, f, f, t],
        "supabase_auth_admin": [f, t, f, t, f, f],
        "supabase_storage_admin": [f, t, f, t, f, f],
        "supabase_replication_admin": [f, t, t, f, t, f],
        "supabase_read_only_user": [f, t, t, f, f, t],
        "dashboard_user": [f, f, t, t, t, f],
        "pgbouncer": [f, t, t, f, f, f],
        "cortexreview_app": [f, t, t, f, f, f],
    }
    assert {name: roles[name] for name in expected} == expected
    members = {tuple(row) for row in _rows(s, """
        SELECT r.rolname, m.rolname, am.admin_option FROM pg_auth_members am
        JOIN pg_roles r ON r.oid = am.roleid JOIN pg_roles m ON m.oid = am.member""")}
    assert {("pg_read_all_data", "supabase_read_only_user", "f"), ("anon", "authenticator", "f"),
            ("authenticated", "authenticator", "f"), ("service_role", "authenticator", "f"),
            ("cortexreview_readers", "cortexreview_app", "t"), ("authenticated", "cortexreview_app", "f")} <= members
    settings = {(row[0], row[1]): row[2] for row in _rows(s, """
        SELECT coalesce(d.datname, ''), coalesce(r.rolname, ''), array_to_string(s.setconfig, ';')
        FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole
        LEFT JOIN pg_database d ON d.oid = s.setdatabase""")}
    env = s.env_values()
    assert settings[("", "authenticator")] == "statement_timeout=8s"
    assert settings[("", "supabase_auth_admin")] == "search_path=auth"
    assert settings[("postgres", "authenticator")] == "lock_timeout=8s"
    assert settings[("postgres", "cortexreview_app")] == "work_mem=8MB"
    assert settings[("postgres", "")] == f"app.settings.jwt_secret={env['JWT_SECRET']};app.settings.jwt_exp=3600"
    assert settings[("_supabase", "")] == "statement_timeout=60s"
    assert settings[("_supabase", "supabase_admin")] == "search_path=_supavisor, _analytics, public"
    assert testbed.can_log_in(s, "cortexreview_app", "cortexreview-app-test-password")


def test_schemas_owners_rls_policies_grants(supabase_stack):
    s = supabase_stack
    owners = dict(s.psql_rows("SELECT nspname, pg_get_userbyid(nspowner) FROM pg_namespace"))
    for schema in ("auth", "storage", "realtime", "_realtime", "vault", "extensions"):
        assert owners[schema] == "supabase_admin", schema
    tables = {row[0]: row[1:] for row in _rows(s, """
        SELECT c.oid::regclass::text, pg_get_userbyid(c.relowner), c.relrowsecurity, c.relforcerowsecurity
        FROM pg_class c WHERE c.relkind = 'r'""")}
    assert tables["auth.users"] == ["supabase_auth_admin", "t", "f"]
    assert tables["storage.buckets"] == ["supabase_storage_admin", "t", "f"]
    assert tables["storage.objects"] == ["supabase_storage_admin", "t", "f"]
    assert tables["vault.secrets"] == ["supabase_admin", "f", "f"]
    assert tables["profiles"] == ["postgres", "t", "t"]
    policies = {(row[0], row[1]): row[2:] for row in _rows(s, """
        SELECT tablename, policyname, permissive, array_to_string(roles, ','), cmd FROM pg_policies""")}
    assert policies[("objects", "Avatars are public")] == ["PERMISSIVE", "anon,authenticated", "SELECT"]
    assert policies[("profiles", "Users insert their own profile")] == ["RESTRICTIVE", "authenticated", "INSERT"]
    # pg_cron's (the stand-in's) own: a user sees their jobs only
    assert policies[("job", "cron_job_policy")] == ["PERMISSIVE", "public", "ALL"]
    assert len(policies) == 8
    # the API roles' grants: through default privileges on the CortexReview tables too
    assert s.psql_value("SELECT has_table_privilege('anon', 'public.knowledge_base', 'SELECT')"
                        " AND has_table_privilege('service_role', 'public.feedback_audit_log', 'INSERT')"
                        " AND NOT has_table_privilege('anon', 'public.\"Weird Table\"', 'SELECT')"
                        " AND has_column_privilege('cortexreview_app', 'auth.users', 'email', 'SELECT')"
                        " AND NOT has_column_privilege('cortexreview_app', 'auth.users', 'encrypted_password', 'SELECT')"
                        " AND has_schema_privilege('authenticated', 'storage', 'USAGE')") == "t"
    defaults = _rows(s, "SELECT pg_get_userbyid(defaclrole), defaclnamespace::regnamespace::text, defaclobjtype"
                        " FROM pg_default_acl ORDER BY 1, 2, 3")
    assert ["postgres", "public", "r"] in defaults and ["supabase_admin", "public", "r"] in defaults
    assert ["supabase_storage_admin", "storage", "r"] in defaults and ["supabase_admin", "-", "f"] in defaults
    assert _rows(s, "SELECT evtname, evtevent, pg_get_userbyid(evtowner) FROM pg_event_trigger") == [
        ["pgrst_ddl_watch", "ddl_command_end", "supabase_admin"]]
    assert s.psql_value("SELECT string_agg(tablename, ',') FROM pg_publication_tables"
                        " WHERE pubname = 'supabase_realtime'") == "profiles"
    # anon sees the profiles through RLS, not the documents
    assert s.psql_value("SET ROLE anon; SELECT count(*) FROM public.profiles") == "3"
    assert s.psql_value("SET ROLE anon; SELECT string_agg(DISTINCT bucket_id, ',') FROM storage.objects") == "avatars"


def test_supabase_database(supabase_stack):
    s = supabase_stack
    assert s.list_databases() == ["_supabase", "postgres"]
    assert _rows(s, "SELECT pg_get_userbyid(datdba), datacl::text FROM pg_database WHERE datname = '_supabase'",
                 "template1") == [["supabase_admin", "{supabase_admin=CTc/supabase_admin,pgbouncer=c/supabase_admin,"
                                                     "dashboard_user=c/supabase_admin}"]]
    assert dict(s.psql_rows("SELECT nspname, pg_get_userbyid(nspowner) FROM pg_namespace "
                            "WHERE nspname IN ('_analytics', '_supavisor')", "_supabase")) == {
        "_analytics": "supabase_admin", "_supavisor": "supabase_admin"}
    assert s.table_counts("_supabase", None) == {
        "_analytics.schema_migrations": 2, "_analytics.sources": 4, "_supavisor.tenants": 1, "_supavisor.users": 1}


def test_storage_files_match_their_rows(supabase_stack):
    s = supabase_stack
    files = testbed.files_fingerprint(s.storage_dir)
    objects = _rows(s, "SELECT bucket_id, name, version, metadata::text FROM storage.objects ORDER BY 1, 2")
    assert len(objects) == 5
    regular = {path: entry for path, entry in files.items() if entry["type"] == "file"}
    assert len(regular) == len(objects)
    for bucket, name, version, metadata in objects:
        meta = json.loads(metadata)
        entry = regular[os.path.join("stub", "stub", bucket, name, version)]
        assert entry["size"] == meta["size"]
        assert bytes.fromhex(entry["xattrs"]["user.supabase.etag"]).decode() == meta["eTag"]
        assert bytes.fromhex(entry["xattrs"]["user.supabase.content-type"]).decode() == meta["mimetype"]
        assert "user.supabase.cache-control" in entry["xattrs"]
    # owners and modes differ from file to file, so a restore that loses them shows
    assert {(e["uid"], e["gid"], e["mode"]) for e in regular.values()} == {
        (0, 0, "0o644"), (1000, 1000, "0o600"), (999, 999, "0o640"), (1000, 1001, "0o660")}
    # the storage container sees the same files with their attributes
    listing = s.docker_exec(s.storage_container, ["find", "/var/lib/storage", "-type", "f"]).stdout.splitlines()
    assert len(listing) == 5


def test_root_key_on_the_config_volume(supabase_stack):
    s = supabase_stack
    key = s.docker_exec(s.db_container, ["cat", testbed.ROOT_KEY_PATH]).stdout
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert testbed.root_key_fingerprint(s)["owner_mode"] == "999:999 600"
    fingerprint = testbed.supabase_fingerprint(s)
    assert set(fingerprint) == {"cluster", "databases", "root_key", "storage", "deployment"}
    assert set(fingerprint["databases"]) == {"postgres", "_supabase"}
    assert fingerprint["databases"]["postgres"]["rows"]["public.knowledge_base"][0] == 300
    assert key not in json.dumps(fingerprint)
    assert testbed.fingerprint_diff(fingerprint, testbed.supabase_fingerprint(s)) == []


def test_fingerprint_sees_every_kind_of_change(supabase_stack):
    s = supabase_stack
    before = testbed.supabase_fingerprint(s)
    victim = next(os.path.join(s.storage_dir, path) for path, entry in sorted(before["storage"].items())
                  if entry["type"] == "file" and entry["size"] > 0)
    mode = stat.S_IMODE(os.stat(victim).st_mode)
    changes = [
        ("ALTER ROLE anon SET statement_timeout = '4s'", "ALTER ROLE anon SET statement_timeout = '3s'"),
        ("ALTER ROLE pgbouncer PASSWORD 'another-password'", None),
        ("ALTER TABLE public.profiles NO FORCE ROW LEVEL SECURITY", "ALTER TABLE public.profiles FORCE ROW LEVEL SECURITY"),
        ("REVOKE SELECT ON auth.users FROM dashboard_user", "GRANT SELECT ON auth.users TO dashboard_user"),
        ("UPDATE auth.users SET email = 'x' || email WHERE email = 'user1@example.test'",
         "UPDATE auth.users SET email = 'user1@example.test' WHERE email = 'xuser1@example.test'"),
    ]
    # the verifier itself goes back (the same password again would get a new salt)
    verifier = s.psql_value("SELECT rolpassword FROM pg_authid WHERE rolname = 'pgbouncer'")
    try:
        for change, _undo in changes:
            s.psql(change)
        s.psql("ALTER EVENT TRIGGER pgrst_ddl_watch DISABLE", "postgres")
        s.psql("INSERT INTO _analytics.sources (name, token, inserted_at) "
               "VALUES ('new', '30000000-0000-4000-8000-000000000001', now())", "_supabase")
        os.chmod(victim, mode ^ 0o004)
        os.setxattr(victim, "user.supabase.etag", b"changed")
        diff = testbed.fingerprint_diff(before, testbed.supabase_fingerprint(s))
    finally:
        for _change, undo in changes:
            if undo:
                s.psql(undo)
        s.psql(f"ALTER ROLE pgbouncer PASSWORD '{verifier}'")
        s.psql("ALTER EVENT TRIGGER pgrst_ddl_watch ENABLE")
        s.psql("DELETE FROM _analytics.sources WHERE name = 'new'; "
               "SELECT setval('_analytics.sources_id_seq', 4)", "_supabase")
        os.chmod(victim, mode)
        os.setxattr(victim, "user.supabase.etag", bytes.fromhex(before["storage"][
            os.path.relpath(victim, s.storage_dir)]["xattrs"]["user.supabase.etag"]))
    text = "\n".join(diff)
    for where in ("/cluster/role_settings", "/cluster/roles: only after: ['pgbouncer'",
                  "/databases/postgres/relations", "/databases/postgres/rows/auth.users",
                  "/databases/postgres/event_triggers", "/databases/_supabase/rows/_analytics.sources",
                  "/databases/_supabase/rows/sequence _analytics.sources_id_seq", "/mode:",
                  "/xattrs/user.supabase.etag:"):
        assert where in text, (where, text)
    assert testbed.fingerprint_diff(before, testbed.supabase_fingerprint(s)) == []


def _write_root_key(stack, key):
    stack.docker_exec(stack.db_container, ["sh", "-c", f"cat > {testbed.ROOT_KEY_PATH}"], input=key, user="root")


def test_vault_round_trip_and_another_key(supabase_stack):
    s = supabase_stack
    secret = "sk-live-ünïcode ✓ " + "x" * 70  # more than two keystream blocks
    secret_id = s.psql_value(f"SELECT vault.create_secret('{secret}', 'round_trip')")
    try:
        assert s.psql_value(f"SELECT vault.read_secret('{secret_id}')") == secret
        stored = s.psql_value(f"SELECT encode(secret, 'escape') FROM vault.secrets WHERE id = '{secret_id}'")
        assert "sk-live" not in stored
        # service_role may use it, anon may not
        assert s.psql_value(f"SET ROLE service_role; SELECT vault.read_secret('{secret_id}')") == secret
        with pytest.raises(testbed.PsqlError, match="permission denied"):
            s.psql(f"SET ROLE anon; SELECT vault.read_secret('{secret_id}')")
        old_key = s.docker_exec(s.db_container, ["cat", testbed.ROOT_KEY_PATH]).stdout
        _write_root_key(s, "ab" * 32)
        try:
            with pytest.raises(testbed.PsqlError, match="invalid ciphertext"):
                s.psql(f"SELECT vault.read_secret('{secret_id}')")
            with pytest.raises(testbed.PsqlError, match="invalid ciphertext"):
                s.psql("SELECT vault.read_secret(id) FROM vault.secrets WHERE name = 'seed_api_key'")
        finally:
            _write_root_key(s, old_key)
        assert s.psql_value(f"SELECT vault.read_secret('{secret_id}')") == secret
    finally:
        s.psql(f"DELETE FROM vault.secrets WHERE id = '{secret_id}'")


# ------------------------------------------------------------- fresh stacks --

def test_fresh_stacks_get_new_keys_and_their_own_passwords(make_stack):
    first = make_stack("supa-fresh-a", profile="supabase", postgres_password="first-Fresh.pass_word~1")
    second = make_stack("supa-fresh-b", profile="supabase")
    assert first.env_values()["POSTGRES_PASSWORD"] == "first-Fresh.pass_word~1"
    assert second.env_values()["POSTGRES_PASSWORD"] != first.env_values()["POSTGRES_PASSWORD"]
    assert second.env_values()["JWT_SECRET"] != first.env_values()["JWT_SECRET"]
    assert testbed.can_log_in(first, "authenticator", "first-Fresh.pass_word~1")
    assert not testbed.can_log_in(second, "authenticator", "first-Fresh.pass_word~1")
    assert testbed.can_log_in(second, "supabase_storage_admin", second.db_password())
    first_key, second_key = testbed.root_key_fingerprint(first), testbed.root_key_fingerprint(second)
    assert first_key["sha256"] != second_key["sha256"]

    # fresh: the image's shape, none of the project's data, empty Storage
    for fresh in (first, second):
        assert fresh.list_databases() == ["_supabase", "postgres"]
        assert fresh.psql_value("SELECT to_regclass('public.profiles') IS NULL AND to_regclass('storage.objects')"
                                " IS NOT NULL AND NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cortexreview_app')"
                                " AND (SELECT count(*) FROM vault.secrets) = 0") == "t"
        assert os.listdir(fresh.storage_dir) == []

    # a secret sealed with one stack's key is "invalid ciphertext" with the other's
    secret_id = first.psql_value("SELECT vault.create_secret('moved between stacks')")
    row = first.psql_value(f"SELECT format('(%L, %L, %L, %L)', id, encode(nonce, 'hex'), encode(secret, 'hex'),"
                           f" encode(mac, 'hex')) FROM vault.secrets WHERE id = '{secret_id}'")
    second.psql("INSERT INTO vault.secrets (id, nonce, secret, mac) SELECT id::uuid, decode(n, 'hex'),"
                f" decode(c, 'hex'), decode(m, 'hex') FROM (VALUES {row}) AS v(id, n, c, m)")
    with pytest.raises(testbed.PsqlError, match="invalid ciphertext"):
        second.psql(f"SELECT vault.read_secret('{secret_id}')")
    assert first.psql_value(f"SELECT vault.read_secret('{secret_id}')") == "moved between stacks"

    # the key is made only when missing: a restart keeps it, a lost one is replaced by a new one
    first.container(first.db_container).restart(timeout=30)
    first.wait_for_db()
    assert testbed.root_key_fingerprint(first) == first_key
    first.docker_exec(first.db_container, ["rm", testbed.ROOT_KEY_PATH], user="root")
    first.container(first.db_container).restart(timeout=30)
    first.wait_for_db()
    assert testbed.root_key_fingerprint(first)["sha256"] not in (first_key["sha256"], second_key["sha256"])
    with pytest.raises(testbed.PsqlError, match="invalid ciphertext"):
        first.psql(f"SELECT vault.read_secret('{secret_id}')")


def test_down_removes_containers_volumes_and_project_dir(healthy_stack, make_stack):
    doomed = make_stack("supa-doomed", seed=True, profile="supabase")
    client = testbed.docker_client()
    before = {name: healthy_stack.container(name).id for name in healthy_stack.containers}
    assert os.listdir(doomed.storage_dir)
    doomed.down()

    import docker
    for name in doomed.containers:
        assert doomed.container_status(name) == "absent"
    for volume in (doomed.volume, doomed.config_volume):
        with pytest.raises(docker.errors.NotFound):
            client.volumes.get(volume)
    with pytest.raises(docker.errors.NotFound):
        client.networks.get(doomed.network)
    assert not os.path.exists(doomed.project_dir)
    # stack.sh finds no supabase stack of that name any more; the default stack is untouched
    assert "profile=" not in _stack_sh(doomed.name, "names", profile=None).stdout
    assert {name: healthy_stack.container(name).id for name in healthy_stack.containers} == before
    assert healthy_stack.is_healthy()


def test_connections_use_the_stacks_own_password(supabase_stack):
    with psycopg2.connect(supabase_stack.dsn()) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user, count(*) FROM storage.objects GROUP BY 1")
        assert cur.fetchone() == ("postgres", 5)
    conn.close()
