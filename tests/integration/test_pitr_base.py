# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pitr_base_backup against the real test bed: base backups of the pitr stack's archive.

The tests run in file order on one archive (set up by pitr_archive in the fixture): the refusals
first, check mode, a requested incremental without a full (a full), two incrementals on it, a
failing pg_basebackup, retention, the playbook. The fixture's teardown removes the receiver and
drops the slot whatever happened, so a dead slot never holds WAL.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import testbed

SLOT = "cortexreview_pitr"
REPO = Path(__file__).resolve().parents[2]
CATALOG_KEYS = {"format", "name", "type", "parent", "timeline", "start_lsn", "stop_lsn", "start_wal", "stop_wal",
                "started_at", "finished_at", "finished_epoch", "pg_version", "system_identifier",
                "wal_segment_size", "size"}
DAY = 86400


@pytest.fixture(scope="module")
def pitr(pitr_stack, tmp_path_factory, run_module):
    """The pitr stack archiving into a backup directory of this module; cleaned up afterwards."""
    backup_dir = tmp_path_factory.mktemp("pitr-base") / "backups"
    receiver = f"{pitr_stack.db_container}-pitr-receiver"
    args = {"container": pitr_stack.db_container, "backup_dir": str(backup_dir)}
    try:
        result = run_module("pitr_archive", dict(args, login_password=pitr_stack.db_password()))
        assert not result.get("failed"), result.get("msg")
        yield {"stack": pitr_stack, "backup_dir": backup_dir, "root": backup_dir / "pitr",
               "base": backup_dir / "pitr" / "base", "wal": backup_dir / "pitr" / "wal", "args": args}
    finally:
        testbed._run(["docker", "rm", "-f", receiver])
        pitr_stack.wait_until(lambda: pitr_stack.psql_value(
            f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{SLOT}' AND active") == "0", timeout=30)
        pitr_stack.psql("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                        f"WHERE slot_name = '{SLOT}'")
        pitr_stack.psql("DROP ROLE IF EXISTS pitr_no_hba")


def base_listing(pitr):
    base = pitr["base"]
    return sorted(os.listdir(base)) if base.is_dir() else []


def catalog(pitr):
    entries = []
    for name in base_listing(pitr):
        if name.startswith("pitr-base-") and name.endswith(".json"):
            entries.append(json.loads((pitr["base"] / name).read_text(encoding="utf-8")))
    return sorted(entries, key=lambda entry: entry["finished_epoch"])


def wal_names(pitr):
    return sorted(os.listdir(pitr["wal"]))


def assert_private(path):
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o700, path
    for root, directories, files in os.walk(path):
        for name in directories:
            assert stat.S_IMODE(os.lstat(os.path.join(root, name)).st_mode) == 0o700, os.path.join(root, name)
        for name in files:
            info = os.lstat(os.path.join(root, name))
            if stat.S_ISREG(info.st_mode):
                assert stat.S_IMODE(info.st_mode) == 0o600, os.path.join(root, name)


def assert_verifies(pitr, name):
    """pg_verifybackup of our own, in the DB container's image: the backup on disk is what the catalog says."""
    stack = pitr["stack"]
    image = testbed.docker_client().api.inspect_container(stack.db_container)["Image"]
    proc = subprocess.run(["docker", "run", "--rm", "--user", "0:0", "--network", "none", "-v",
                           f"{pitr['base']}:/base:ro", "--entrypoint", "pg_verifybackup", image, "--no-parse-wal",
                           f"/base/{name}"], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr


def test_refuses_when_the_archive_is_not_set_up(pitr, run_module, tmp_path):
    stack = pitr["stack"]
    elsewhere = tmp_path / "not-archived"
    result = run_module("pitr_base_backup", {"container": stack.db_container, "backup_dir": str(elsewhere)})
    assert result.get("failed")
    assert "not set up" in result["msg"] and "pitr_archive" in result["msg"] and "\n" not in result["msg"]
    assert not elsewhere.exists()

    result = run_module("pitr_base_backup", dict(pitr["args"], slot="no_such_slot"))
    assert result.get("failed")
    assert "no physical replication slot 'no_such_slot'" in result["msg"] and "pitr_archive" in result["msg"]

    stack.psql("DROP ROLE IF EXISTS pitr_no_hba; CREATE ROLE pitr_no_hba LOGIN SUPERUSER PASSWORD 'x'")
    result = run_module("pitr_base_backup", dict(pitr["args"], login_user="pitr_no_hba"))
    assert result.get("failed")
    assert "no pg_hba.conf line lets pitr_no_hba" in result["msg"] and "pitr_archive" in result["msg"]
    assert base_listing(pitr) == []


def test_check_mode_predicts_a_full_and_changes_nothing(pitr, run_module):
    before = base_listing(pitr)
    result = run_module("pitr_base_backup", dict(pitr["args"], incremental=True), check=True)
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True and result["type"] == "full" and result["parent"] is None
    assert result["msg"].startswith("would take a full base backup pitr-base-")
    assert any("no full base backup yet" in warning for warning in result.get("warnings", []))
    assert base_listing(pitr) == before


def test_an_incremental_without_a_full_is_a_full(pitr, run_module):
    stack = pitr["stack"]
    result = run_module("pitr_base_backup", dict(pitr["args"], incremental=True))
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True and result["type"] == "full" and result["verified"] is True
    assert any("no full base backup yet" in warning for warning in result["warnings"])
    entry = result["entry"]
    assert set(entry) == CATALOG_KEYS
    assert entry["type"] == "full" and entry["parent"] is None and entry["format"] == 1
    assert entry["pg_version"] == str(int(stack.psql_value("SHOW server_version_num")) // 10000)
    assert entry["system_identifier"] == stack.psql_value("SELECT system_identifier FROM pg_control_system()")
    assert entry["wal_segment_size"] == 16 * 1024 * 1024
    assert entry["start_wal"] <= entry["stop_wal"]
    assert catalog(pitr) == [entry]
    path = pitr["base"] / entry["name"]
    assert result["path"] == str(path)
    assert (path / "backup_manifest").is_file() and (path / "backup_label").is_file()
    assert_private(path)
    assert stat.S_IMODE(os.stat(pitr["base"] / (entry["name"] + ".json")).st_mode) == 0o600
    assert not [name for name in base_listing(pitr) if name.endswith(".partial")]
    assert_verifies(pitr, entry["name"])


def test_two_incrementals_build_a_chain(pitr, run_module):
    stack = pitr["stack"]
    if int(stack.psql_value("SHOW server_version_num")) < 170000:
        pytest.fail("the test bed's server must be PostgreSQL 17 or later for incremental base backups")
    full = catalog(pitr)[0]
    names = [full["name"]]
    for _round in range(2):
        result = run_module("pitr_base_backup", dict(pitr["args"], incremental=True))
        assert not result.get("failed"), result.get("msg")
        assert result["type"] == "incremental" and result["parent"] == names[-1], result
        assert result["verified"] is True
        names.append(result["name"])
        assert_private(pitr["base"] / result["name"])
        assert_verifies(pitr, result["name"])
    entries = catalog(pitr)
    assert [entry["name"] for entry in entries] == names
    assert [entry["parent"] for entry in entries] == [None] + names[:2]
    assert [entry["type"] for entry in entries] == ["full", "incremental", "incremental"]
    for entry in entries:
        assert set(entry) == CATALOG_KEYS
    # Each incremental starts after its parent and holds incremental files.
    assert entries[0]["start_wal"] < entries[1]["start_wal"] < entries[2]["start_wal"]
    found = [name for root, _dirs, files in os.walk(pitr["base"] / names[2]) for name in files
             if name.startswith("INCREMENTAL.")]
    assert found


def test_a_failing_pg_basebackup_leaves_nothing(pitr, run_module):
    """A wrong password in .pgpass: pg_basebackup fails, no partial directory, no catalog entry."""
    pgpass = pitr["root"] / ".pgpass"
    good = pgpass.read_bytes()
    before = base_listing(pitr)
    try:
        pgpass.write_text("*:*:*:postgres:wrong-password\n", encoding="utf-8")
        os.chmod(pgpass, 0o600)
        result = run_module("pitr_base_backup", dict(pitr["args"], incremental=True))
    finally:
        pgpass.write_bytes(good)
        os.chmod(pgpass, 0o600)
    assert result.get("failed")
    assert "pg_basebackup" in result["msg"] and "password authentication failed" in result["msg"], result["msg"]
    assert "wrong-password" not in json.dumps(result)
    assert base_listing(pitr) == before


def test_a_stale_partial_is_removed_by_the_next_run(pitr, run_module):
    stale = pitr["base"] / ".pitr-base-20000101_000000.partial"
    stale.mkdir()
    (stale / "base").mkdir()
    (stale / "base" / "junk").write_text("x", encoding="utf-8")
    result = run_module("pitr_base_backup", pitr["args"])
    assert not result.get("failed"), result.get("msg")
    assert result["removed_partials"] == [stale.name]
    assert not stale.exists()
    assert result["type"] == "full"


def _age(pitr, name, epoch):
    path = pitr["base"] / (name + ".json")
    entry = json.loads(path.read_text(encoding="utf-8"))
    entry["finished_epoch"] = epoch
    path.write_text(json.dumps(entry), encoding="utf-8")


def test_retention_skips_everything_while_an_entry_is_unreadable(pitr, run_module):
    broken = pitr["base"] / "pitr-base-20000101_000000.json"
    broken.write_text("{not json", encoding="utf-8")
    entries = catalog_without(pitr, broken.name)
    wal_before = set(wal_names(pitr))
    try:
        result = run_module("pitr_base_backup", dict(pitr["args"], retention_full=1, retention_days=0))
    finally:
        broken.unlink()
    assert not result.get("failed"), result.get("msg")
    assert result["removed"] == [] and result["removed_wal"] == []
    assert any("retention skipped" in warning and broken.name in warning for warning in result["warnings"])
    names_now = set(entry["name"] for entry in catalog(pitr))
    assert set(entry["name"] for entry in entries) <= names_now
    # (the receiver completes its .partial segment meanwhile)
    assert set(name[:24] for name in wal_before) <= set(name[:24] for name in wal_names(pitr))


def catalog_without(pitr, skip):
    entries = []
    for name in base_listing(pitr):
        if name.startswith("pitr-base-") and name.endswith(".json") and name != skip:
            entries.append(json.loads((pitr["base"] / name).read_text(encoding="utf-8")))
    return entries


def test_retention_removes_the_oldest_chain_and_its_wal_only(pitr, run_module):
    entries = catalog(pitr)
    chain_a = chain_names(entries, entries[0]["name"])
    fulls = [entry["name"] for entry in entries if entry["type"] == "full"]
    assert len(chain_a) == 3 and len(fulls) >= 2
    # Age the catalog: chain A a month old, the next full three weeks, so A is out of the 14-day window;
    # the chains after it are not (the next full of the second one is recent).
    now = time.time()
    for index, entry in enumerate(entry for entry in entries if entry["name"] in chain_a):
        _age(pitr, entry["name"], now - 30 * DAY + index)
    _age(pitr, fulls[1], now - 20 * DAY)
    entries = catalog(pitr)
    removed_a = [entry["name"] for entry in reversed(entries) if entry["name"] in chain_a]
    kept_names = [entry["name"] for entry in entries if entry["name"] not in chain_a]
    history = pitr["wal"] / "00000009.history"
    history.write_text("1\t0/1000000\tplanted by the test\n", encoding="utf-8")
    os.chmod(history, 0o600)
    kept_start = min(entry["start_wal"] for entry in entries if entry["name"] not in chain_a)
    old = [name for name in wal_names(pitr) if name[:24] < kept_start and not name.endswith(".history")]
    assert old, "the archive has no WAL older than the second chain: nothing to test"

    result = run_module("pitr_base_backup", dict(pitr["args"], retention_full=1, retention_days=14))
    assert not result.get("failed"), result.get("msg")
    assert result["removed"] == removed_a
    for name in chain_a:
        assert not (pitr["base"] / name).exists()
        assert not (pitr["base"] / (name + ".json")).exists()
    kept = catalog(pitr)
    assert [entry["name"] for entry in kept] == kept_names + [result["name"]]
    assert sorted(result["removed_wal"]) == sorted(old)
    remaining = wal_names(pitr)
    assert not set(old) & set(remaining)
    assert history.name in remaining
    # Every WAL segment from the oldest kept base backup on is still there, and none before it.
    numbers = sorted(set(segment(name) for name in remaining if not name.endswith(".history")))
    assert numbers[0] == segment(kept_start)
    assert numbers == list(range(numbers[0], numbers[-1] + 1))
    assert result["wal_gaps"] == []


def segment(name):
    """The segment number of a timeline-1 name for 16 MB segments (256 a "log"), computed here on its own."""
    assert name[:8] == "00000001", name
    return int(name[8:16], 16) * 256 + int(name[16:24], 16)


def chain_names(entries, full_name):
    names = {full_name}
    for entry in entries:
        if entry["parent"] in names:
            names.add(entry["name"])
    return names


def test_check_mode_predicts_retention_and_changes_nothing(pitr, run_module):
    entries = catalog(pitr)
    now = time.time()
    for index, entry in enumerate(entries):
        _age(pitr, entry["name"], now - 40 * DAY + index)
    before, wal = base_listing(pitr), wal_names(pitr)
    result = run_module("pitr_base_backup", dict(pitr["args"], retention_full=1, retention_days=14), check=True)
    assert not result.get("failed"), result.get("msg")
    assert result["type"] == "full" and result["changed"] is True
    # Every chain but the newest: that one still covers the window's start until the new full exists.
    newest_full = [entry for entry in entries if entry["type"] == "full"][-1]
    expected = [entry["name"] for entry in entries if entry["finished_epoch"] < newest_full["finished_epoch"]]
    assert expected and sorted(result["removed"]) == sorted(expected)
    assert result["removed_wal"] == [name for name in wal if name[:24] < newest_full["start_wal"]
                                     and not name.endswith(".history")]
    assert result["removed_wal"]
    assert base_listing(pitr) == before and wal_names(pitr) == wal


def test_the_playbook_takes_an_incremental(pitr, run_playbook):
    stack = pitr["stack"]
    venv = os.path.dirname(os.path.dirname(sys.executable))
    before = catalog(pitr)
    proc = run_playbook(REPO / "playbooks" / "pitr_backup.yml", {
        "supabase_backup_hosts": "localhost", "supabase_backup_venv_dir": venv, "ansible_become": False,
        "supabase_backup_dir": str(pitr["backup_dir"]), "supabase_backup_container": stack.db_container,
        "supabase_backup_metrics_file": str(pitr["backup_dir"] / "metrics.prom"),
        "supabase_pitr_incremental": True, "supabase_backup_pitr_retention_days": 60})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = catalog(pitr)
    assert len(after) == len(before) + 1
    assert after[-1]["type"] == "incremental" and after[-1]["parent"] == before[-1]["name"]
    assert "pitr-base-" in proc.stdout
