# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 11's test on the real stack: a Supabase-shaped stack backed up with every part,
removed with all its volumes and its project directory, brought up fresh (new passwords, a new
root key, empty Storage) and restored with ``components: all`` comes back identical: both
databases, the roles, the root key, Storage's files with their owners, modes and attributes,
and the deployment files; pg_cron's jobs (the fingerprint's cron.* rows and sequences); the
services log in with their old passwords and a Vault secret stored before the backup reads back.
Plain and encrypted."""

from __future__ import annotations

import os
import time

import pytest

import testbed

PASSPHRASE = "fresh-stack passphrase ✓ 'quoted' $HOME"
NEW_PASSWORD = "a-new-hosts-Password.2"


def _deployment_files(stack):
    return [stack.env_file, os.path.join(stack.project_dir, "docker-compose.yml")]


def _roles(result):
    return sorted(part["role"] for part in result.get("parts", []))


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_every_part_restores_onto_a_fresh_stack(make_stack, run_module, workdir, encrypted):
    source = make_stack(f"supa-e2e-{'enc' if encrypted else 'plain'}", seed=True, profile="supabase")
    old_password = source.db_password()
    secret_id = source.psql_value("SELECT vault.create_secret('stored before the backup ✓')")
    seeded_id = source.psql_value("SELECT id FROM vault.secrets WHERE name = 'seed_api_key'")
    seeded_secret = source.psql_value(f"SELECT vault.read_secret('{seeded_id}')")
    before = testbed.supabase_fingerprint(source)

    backup_dir = os.path.join(workdir, "backups")
    crypt = {"encrypt_passphrase": PASSPHRASE} if encrypted else {}
    dumped = run_module("supabase_dump", dict(crypt, backup_dir=backup_dir,
                                              deployment_files=_deployment_files(source),
                                              storage_path=source.storage_dir), stack=source)
    assert not dumped.get("failed"), dumped.get("msg")
    assert _roles(dumped) == ["database", "db_config", "deployment", "extra_database", "globals", "storage"], dumped
    assert dumped.get("not_found") == [], dumped.get("not_found")
    assert not dumped.get("warnings"), dumped.get("warnings")
    stem = os.path.basename(dumped["path"]).split(".", 1)[0]
    for name in os.listdir(backup_dir):
        assert os.stat(os.path.join(backup_dir, name)).st_mode & 0o077 == 0, name
        if encrypted and not name.endswith((".sha256", ".json")):
            assert name.endswith(".gpg"), name
    # the parts that hold secrets never hold them in the clear when encrypted
    if encrypted:
        for name in os.listdir(backup_dir):
            with open(os.path.join(backup_dir, name), "rb") as fh:
                data = fh.read()
            assert old_password.encode() not in data, name

    # the stack goes, with its volumes, its project directory, its key and its files
    source.down()
    assert not os.path.exists(source.project_dir)
    fresh = testbed.stack_up(source.name, seed=False, profile="supabase", postgres_password=NEW_PASSWORD)
    assert fresh.db_password() == NEW_PASSWORD != old_password
    assert testbed.root_key_fingerprint(fresh)["sha256"] != before["root_key"]["sha256"]
    assert os.listdir(fresh.storage_dir) == []
    assert not testbed.can_log_in(fresh, "authenticator", old_password)
    with pytest.raises(testbed.PsqlError, match="not found"):
        fresh.psql(f"SELECT vault.read_secret('{secret_id}')")

    started = time.monotonic()
    restored = run_module("supabase_restore", dict(crypt, backup_dir=backup_dir, restore_point=stem,
                                                   components=["all"], confirm=True,
                                                   storage_container=fresh.storage_container), stack=fresh)
    elapsed = time.monotonic() - started
    assert not restored.get("failed"), restored.get("msg")
    assert restored["changed"] is True
    assert not restored.get("not_in_backup"), restored.get("not_in_backup")
    kb_rows = fresh.psql_value("SELECT count(*) FROM public.knowledge_base")
    size = sum(part["size"] for part in dumped["parts"])
    print(f"full restore onto a fresh stack ({'encrypted' if encrypted else 'plain'}, {kb_rows} knowledge_base rows,"
          f" {len(dumped['parts'])} parts, {size / 1e6:.1f} MB): {elapsed:.1f}s")

    # pg_cron (not on the fresh stack) came back after the swap, its jobs and sequence as they were
    assert "; pg_cron's objects restored into postgres after the swap" in restored["msg"]
    assert fresh.psql_rows("SELECT jobid, coalesce(jobname, '') FROM cron.job ORDER BY 1") == [
        ("1", ""), ("2", "nightly-vacuum")]

    fresh.wait_for_db()
    after = testbed.supabase_fingerprint(fresh)
    diff = testbed.fingerprint_diff(before, after)
    assert diff == [], "\n".join(diff)
    # the services log in with their old passwords, the fresh stack's no longer work
    for role in testbed.SERVICE_LOGINS:
        assert testbed.can_log_in(fresh, role, old_password), role
        assert not testbed.can_log_in(fresh, role, NEW_PASSWORD), role
    assert testbed.can_log_in(fresh, "cortexreview_app", "cortexreview-app-test-password")
    # the old key is back: secrets stored before the backup read back
    assert fresh.psql_value(f"SELECT vault.read_secret('{secret_id}')") == "stored before the backup ✓"
    assert fresh.psql_value(f"SELECT vault.read_secret('{seeded_id}')") == seeded_secret
    assert fresh.env_values()["POSTGRES_PASSWORD"] == old_password  # the old deployment files
    # every container runs again (the writers log in again once compose gives them the old passwords)
    for name in fresh.containers:
        assert fresh.container_status(name) == "running", name

    # compose up with the old deployment files recreates the containers whose settings changed; the
    # database, its key and the files stay as restored
    db_id = fresh.container(fresh.db_container).id
    testbed.stack_cmd("up", name=fresh.name, profile="supabase")
    assert fresh.container(fresh.db_container).id != db_id
    assert fresh.container(fresh.db_container).attrs["Config"]["Env"].count(f"POSTGRES_PASSWORD={old_password}") == 1
    diff = testbed.fingerprint_diff(before, testbed.supabase_fingerprint(fresh))
    assert diff == [], "\n".join(diff)
    for role in testbed.SERVICE_LOGINS:
        assert testbed.can_log_in(fresh, role, old_password), role
    assert fresh.psql_value(f"SELECT vault.read_secret('{secret_id}')") == "stored before the backup ✓"
    # the role the restore connects as (postgres) has its old password too, set last
    assert restored["password_restored"] == "postgres" and "postgres" not in restored["roles_kept"]
    assert testbed.can_log_in(fresh, "postgres", old_password)
    assert not testbed.can_log_in(fresh, "postgres", NEW_PASSWORD)
    rows = fresh.writer_rows()
    fresh.wait_until(lambda: fresh.writer_rows() > rows, timeout=60, what="the writers to write again")
