# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""supabase_dump against the real test bed: the backup itself, restore, check mode, retention, the lock.

Failure paths, secrets, metrics and the cron runner: test_supabase_dump_failures.py.
"""

from __future__ import annotations

import datetime
import gzip
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from types import SimpleNamespace

import pytest

import testbed
from dump_helpers import (
    DAY,
    NAME_RE,
    TIMESTAMP_FORMAT,
    backup_name,
    copy_block,
    copy_row_counts,
    descendants,
    drop_database,
    hold_directory_lock,
    normalise_dump,
    plant_backup,
    process_table,
    read_restore_point,
    restore_point_names,
    run_tasks,
    scratch_db_name,
    set_age,
    sha256_file,
    snapshot,
    verify_backup_file,
)

STABLE_TABLES = {  # manifest key -> table_counts() key
    "public.knowledge_base": "knowledge_base",
    "public.learned_constraints": "learned_constraints",
    'public."Weird Table"': "Weird Table",
    "public.empty_table": "empty_table",
}
GROWING_TABLE = "public.feedback_audit_log"


def _stamp_of(path):
    match = NAME_RE.match(os.path.basename(path))
    assert match, f"not a backup name: {path}"
    return datetime.datetime.strptime(match.group(1), TIMESTAMP_FORMAT).timestamp()


def _our_module_processes(module):
    """PIDs of this test's own ansible module processes (python .../AnsiballZ_<module>.py)."""
    table = process_table()
    found = []
    for pid in descendants(table, os.getpid()):
        argv = table[pid][1].split(b"\0")
        if len(argv) > 1 and b"python" in argv[0] and argv[1].endswith(f"/AnsiballZ_{module}.py".encode()):
            found.append(pid)
    return found


# ------------------------------------------------------------ happy path --

@pytest.fixture(scope="module")
def happy(stack, run_module):
    """One default backup into a backup_dir that does not exist yet, then the contract's own pipeline."""
    stack.ensure_healthy()
    base = tempfile.mkdtemp(prefix="cortexreview-dumptest-happy-")
    try:
        backup_dir = os.path.join(base, "new", "backups")
        started = time.time()
        result = run_module("supabase_dump", {"backup_dir": backup_dir})
        finished = time.time()
        counts = testbed.table_counts()
        contract = os.path.join(base, "contract.sql.gz")
        subprocess.run(["bash", "-o", "pipefail", "-c",
                        f"docker exec {testbed.DB_CONTAINER} pg_dump -U postgres postgres | gzip > '{contract}'"],
                       check=True, capture_output=True, timeout=120)
        assert result.get("failed") is not True, result
        with open(result["path"], "rb") as fh:
            sql = gzip.decompress(fh.read())
        with open(contract, "rb") as fh:
            contract_sql = gzip.decompress(fh.read())
        restore_point, manifest = read_restore_point(result["path"])
        yield SimpleNamespace(result=result, backup_dir=backup_dir, started=started, finished=finished,
                              counts=counts, sql=sql, contract_sql=contract_sql, manifest=manifest,
                              restore_point=restore_point)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_backup_file_name_modes_and_result(happy):
    """<prefix>_YYYYMMDD_HHMMSS.sql.gz (local time of the run), file 0600, new dir 0700, full result."""
    result = happy.result
    path = result["path"]
    assert os.path.dirname(path) == happy.backup_dir
    assert NAME_RE.match(os.path.basename(path))
    assert happy.started - 1 <= _stamp_of(path) <= happy.finished + 1
    assert sorted(os.listdir(happy.backup_dir)) == sorted(restore_point_names(path))
    assert stat.S_IMODE(os.stat(happy.backup_dir).st_mode) == 0o700
    for name in restore_point_names(path):
        assert stat.S_IMODE(os.stat(os.path.join(happy.backup_dir, name)).st_mode) == 0o600, name
    assert result["changed"] is True
    assert result["size"] == os.path.getsize(path)
    assert result["sha256"] == sha256_file(path)
    assert isinstance(result["duration"], (int, float)) and 0 < result["duration"] < 120
    assert result["removed"] == []
    stem = os.path.basename(path)[:-len(".sql.gz")]
    assert result["restore_point"] == stem
    assert result["manifest"] == os.path.join(happy.backup_dir, stem + ".manifest.json")
    assert happy.restore_point["format"] == "cortexreview.supabase_backup/restore-point/v2"
    assert happy.restore_point["stem"] == stem and happy.restore_point["kind"] == "logical"
    # The plain test bed has no other database: the main dump and the cluster's roles.
    assert [part["role"] for part in happy.restore_point["parts"]] == ["database", "globals"]
    # The plain test bed has no Vault root key: recorded as not found (db_config_files' default), no part.
    assert happy.restore_point["components"] == ["database", "globals"] and happy.restore_point["not_found"] == [
        {"component": "db_config", "what": "/etc/postgresql-custom/pgsodium_root.key"}]
    assert [part["name"] for part in result["parts"]] == [os.path.basename(path), stem + ".globals.pgsql.gz"]
    assert happy.manifest["encrypted"] is False and happy.manifest["encryption"] is None


def test_backup_file_verifies_with_gzip_and_sha256sum(happy):
    verify_backup_file(happy.result["path"])
    assert b"-- PostgreSQL database dump complete" in happy.sql[-500:]


def test_manifest_matches_file_and_database(happy):
    manifest, result = happy.manifest, happy.result
    assert manifest["sha256"] == sha256_file(result["path"]) == result["sha256"]
    assert manifest["size"] == os.path.getsize(result["path"])
    assert manifest["uncompressed_size"] == len(happy.sql)
    assert manifest["server_version"].startswith("18")
    assert manifest["pg_dump_version"].startswith("18")
    vector_version = testbed.psql("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    assert manifest["extensions"]["vector"] == vector_version
    assert "plpgsql" in manifest["extensions"]
    # the stable tables: exactly what the database holds
    for key, name in STABLE_TABLES.items():
        assert manifest["tables"][key] == happy.counts[name], key
    assert manifest["tables"]["public.empty_table"] == 0
    assert manifest["tables"]["public.knowledge_base"] == testbed.SEED_ROW_COUNTS["knowledge_base"]
    # every table of the database is counted
    assert len(manifest["tables"]) == len(happy.counts)
    # the growing table: exactly the rows the dump holds (counted here, independently of the engine)
    in_dump = copy_row_counts(happy.sql)
    assert in_dump == manifest["tables"]
    assert manifest["tables"][GROWING_TABLE] >= testbed.SEED_ROW_COUNTS["feedback_audit_log"]
    assert manifest["tables"][GROWING_TABLE] <= happy.counts["feedback_audit_log"]
    assert result["tables"] == manifest["tables"]


def test_backup_has_the_content_of_the_contract_pipeline(happy):
    """Same dump as `docker exec ... pg_dump -U postgres postgres | gzip`, modulo \\restrict keys and new rows."""
    ours, theirs = happy.sql, happy.contract_sql
    assert normalise_dump(ours) == normalise_dump(theirs)
    assert copy_block(ours, "public.knowledge_base") == copy_block(theirs, "public.knowledge_base")
    assert len(copy_block(ours, "public.knowledge_base")) == 300
    our_rows = copy_block(ours, GROWING_TABLE)
    their_rows = copy_block(theirs, GROWING_TABLE)
    assert set(our_rows) <= set(their_rows)  # the later contract dump has every row ours has
    assert len(their_rows) >= len(our_rows)


def test_backup_restores_with_gunzip_and_psql(happy):
    """gunzip -c FILE | psql -v ON_ERROR_STOP=1 into a fresh database: counts, vector search, IVFFlat."""
    name = scratch_db_name("restore")
    try:
        testbed.psql(f'CREATE DATABASE "{name}"', "template1")
        proc = subprocess.run(
            ["bash", "-o", "pipefail", "-c",
             f"gunzip -c '{happy.result['path']}' | docker exec -i {testbed.DB_CONTAINER} "
             f"psql -X -q -v ON_ERROR_STOP=1 -U postgres -d {name}"],
            capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        restored = testbed.table_counts(name)
        for key, table in list(STABLE_TABLES.items()) + [(GROWING_TABLE, "feedback_audit_log")]:
            assert restored[table] == happy.manifest["tables"][key], table
        rows = testbed.psql_rows(
            "SELECT id, similarity FROM match_knowledge((SELECT embedding FROM knowledge_base WHERE id = 1), 0.0, 3)",
            name)
        assert len(rows) == 3 and rows[0][0] == "1" and abs(float(rows[0][1]) - 1.0) < 1e-6
        testbed.psql("SELECT * FROM match_knowledge("
                     "'[0.1, 0.2]'::vector || array_fill(0.0, ARRAY[1534])::vector, 0.75, 3)", name)
        assert testbed.psql(
            "SELECT am.amname FROM pg_class c JOIN pg_am am ON am.oid = c.relam "
            "WHERE c.relname = 'knowledge_base_embedding_ivfflat_idx'", name) == "ivfflat"
        assert set(testbed.SEED_INDEXES) <= set(testbed.index_names(name))
        assert set(testbed.SEED_FUNCTIONS) <= set(testbed.function_names(name))
        assert testbed.psql('SELECT "Mixed Case" FROM "Weird Table" WHERE "ID" = 4', name) == \
            "first line\n\\.\nlast line"
    finally:
        drop_database(name)
    assert not testbed.database_exists(name)


# ------------------------------------------------------------ check mode --

def test_check_mode_changes_nothing_and_predicts(healthy_stack, collections_path, workdir):
    absent = os.path.join(workdir, "absent", "backups")
    existing = os.path.join(workdir, "existing")
    os.mkdir(existing, 0o700)
    now = time.time()
    expired = [plant_backup(existing, days * DAY, now=now) for days in (200, 210, 220, 230)]
    plant_backup(existing, 1 * DAY, now=now)
    before = snapshot(existing)
    started = time.time()
    results, _output = run_tasks(collections_path, [
        {"args": {"backup_dir": absent}, "check": True},
        {"args": {"backup_dir": existing}, "check": True},
    ])
    finished = time.time()
    fresh, planted = results
    for result, directory in ((fresh, absent), (planted, existing)):
        assert result.get("failed") is not True, result
        assert result["changed"] is True
        assert os.path.dirname(result["path"]) == directory
        assert started - 1 <= _stamp_of(result["path"]) <= finished + 1
        assert not os.path.lexists(result["path"])
    assert not os.path.exists(os.path.join(workdir, "absent"))  # no directory created
    assert fresh["removed"] == []
    # keep_min 3 keeps the new one, the 1-day one and the 200-day one; the three oldest would go
    would_remove = sorted(p for paths in expired[1:] for p in paths)
    assert sorted(planted["removed"]) == would_remove
    assert snapshot(existing) == before  # ...but nothing was removed, nothing was written


# ------------------------------------------------------------- retention --

def test_retention_rules(healthy_stack, collections_path, workdir):
    """find -mtime +N ages, exact name pattern only, sidecars, symlinks, dirs, keep_min, retention_days=0."""
    outside = os.path.join(workdir, "outside")
    r_dir, k_dir, z_dir = (os.path.join(workdir, name) for name in ("r", "k", "z"))
    for path in (outside, r_dir, k_dir, z_dir):
        os.mkdir(path, 0o700)
    now = time.time()
    # -- r: retention_days 90, keep_min 3 --------------------------------------------
    a = plant_backup(r_dir, 91 * DAY, now=now)               # age exactly 91 days: find -mtime +90 -> expired
    b = plant_backup(r_dir, 200 * DAY, now=now, sidecars=False)
    f = plant_backup(r_dir, 150 * DAY, now=now)
    os.unlink(f[2])                                          # its manifest is a symlink to a file outside
    outside_manifest = os.path.join(outside, "manifest.json")
    with open(outside_manifest, "w", encoding="utf-8") as fh:
        fh.write("{}")
    os.symlink(outside_manifest, f[2])
    set_age(f[2], 150 * DAY, now)
    c = plant_backup(r_dir, 91 * DAY - 600, now=now)         # 90 days 23h50m: not +90
    d = plant_backup(r_dir, 90 * DAY, now=now)               # exactly 90 days: not +90
    recent = [plant_backup(r_dir, days * DAY, now=now) for days in (10, 5, 1)]
    survivors = [plant_backup(r_dir, 200 * DAY, now=now, name=backup_name(200 * DAY, prefix=other, now=now))
                 for other in ("other_backup", "supabase_backup_prod", "supabase")]
    for near_miss in ("supabase_backup_2025010_020000.sql.gz", "supabase_backup_20250101_0200001.sql.gz",
                      "supabase_backup_20250101_020000.sql.gz.bak", "supabase_backup_20250101_020000.sql",
                      "supabase_backup_20250101_020000.tar.gz", "xsupabase_backup_20250101_020000.sql.gz",
                      "Supabase_backup_20250101_020000.sql.gz", "supabase_backup_20250101_020000.sql.gz.old",
                      ".supabase_backup_20250101_020000.sql.gz.abc123.partial"):
        survivors.append(plant_backup(r_dir, 300 * DAY, now=now, name=near_miss, sidecars=False))
    outside_target = os.path.join(outside, "precious.sql.gz")
    with open(outside_target, "wb") as fh:
        fh.write(gzip.compress(b"precious"))
    set_age(outside_target, 300 * DAY, now)
    link = os.path.join(r_dir, backup_name(300 * DAY, now=now))
    os.symlink(outside_target, link)
    set_age(link, 300 * DAY, now)
    fake_dir = os.path.join(r_dir, backup_name(310 * DAY, now=now))
    os.mkdir(fake_dir)
    with open(os.path.join(fake_dir, "inside"), "w", encoding="utf-8") as fh:
        fh.write("x")
    set_age(fake_dir, 310 * DAY, now)
    r_before = snapshot(r_dir)
    # the contract's own command agrees on which backups are past 90 days
    found = subprocess.run(["find", r_dir, "-maxdepth", "1", "-type", "f", "-name", "supabase_backup_*.sql.gz",
                            "-mtime", "+90"], capture_output=True, text=True, check=True).stdout.split()
    assert {p for p in found if NAME_RE.match(os.path.basename(p))} == {a[0], b[0], f[0]}
    # -- k: everything is old, keep_min 3 keeps the new one and the two newest old ones ----
    k_backups = [plant_backup(k_dir, days * DAY, now=now) for days in (140, 130, 120, 110, 100)]
    # -- z: retention_days 0 keeps everything -----------------------------------------
    z_backups = [plant_backup(z_dir, days * DAY, now=now) for days in (1000, 500)]
    z_before = snapshot(z_dir)

    results, _output = run_tasks(collections_path, [
        {"args": {"backup_dir": r_dir}},
        {"args": {"backup_dir": k_dir, "retention_days": 90, "retention_keep_min": 3}},
        {"args": {"backup_dir": z_dir, "retention_days": 0, "retention_keep_min": 1}},
    ])
    r_res, k_res, z_res = results
    for result in results:
        assert result.get("failed") is not True, result
        verify_backup_file(result["path"])

    expected = sorted(a + b + f[:2])  # the symlinked sidecar is not a regular file: left alone
    assert sorted(r_res["removed"]) == expected
    assert not any(os.path.lexists(p) for p in expected)
    r_after = snapshot(r_dir)
    new_files = set(restore_point_names(r_res["path"]))
    assert set(r_after) == (set(r_before) - {os.path.basename(p) for p in expected}) | new_files
    for name in set(r_after) - new_files:
        assert r_after[name] == r_before[name], name  # untouched
    for kept in c + d + [p for paths in recent for p in paths] + [p for s in survivors for p in s] + [f[2]]:
        assert os.path.lexists(kept), kept
    assert os.path.islink(link) and os.path.isfile(outside_target)
    assert os.path.isdir(fake_dir) and os.path.isfile(os.path.join(fake_dir, "inside"))
    assert os.path.isfile(outside_manifest)

    assert sorted(k_res["removed"]) == sorted(p for paths in k_backups[:3] for p in paths)
    assert all(os.path.isfile(p) for paths in k_backups[3:] for p in paths)
    assert not any(os.path.lexists(p) for paths in k_backups[:3] for p in paths)

    assert z_res["removed"] == []
    z_after = snapshot(z_dir)
    assert {name: z_after[name] for name in z_before} == z_before
    assert all(os.path.isfile(p) for paths in z_backups for p in paths)


# ----------------------------------------------------------- concurrency --

def test_concurrent_runs_are_serialised_by_the_lock(healthy_stack, run_module, workdir):
    """Two ansible-playbook runs at once on one backup_dir: both wait for the lock, both succeed."""
    backup_dir = os.path.join(workdir, "shared")
    os.mkdir(backup_dir, 0o700)
    results = [None, None]

    def run(index):
        results[index] = run_module("supabase_dump", {"backup_dir": backup_dir})

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    with hold_directory_lock(backup_dir):
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while True:  # both module processes are running, so both are (or soon are) waiting for the lock
            running = _our_module_processes("supabase_dump")
            if len(running) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(running) >= 2, "the two runs never overlapped"
        time.sleep(1)
        assert os.listdir(backup_dir) == []  # nobody got past the lock
    for thread in threads:
        thread.join(timeout=300)
    for result in results:
        assert result is not None and result.get("failed") is not True, result
    paths = {result["path"] for result in results}
    assert len(paths) == 2
    for path in paths:
        verify_backup_file(path)
        with gzip.open(path) as fh:
            copy_row_counts(fh.read())  # a complete dump: no COPY block left open
    assert sorted(os.listdir(backup_dir)) == sorted(name for p in paths for name in restore_point_names(p))
