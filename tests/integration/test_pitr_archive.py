# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pitr_archive against the real test bed: the pitr stack's database made to archive its WAL.

The tests run in file order on one backup directory: check mode first, then the first run, the
second run, repairs and the restart rule, and state=absent last. The fixture's teardown removes
the receiver and drops the slot whatever happened, so a dead slot never holds WAL.
"""

from __future__ import annotations

import json
import os
import re
import stat

import pytest

import testbed

SLOT = "cortexreview_pitr"
SEGMENT = re.compile(r"^[0-9A-F]{24}$")


@pytest.fixture(scope="module")
def pitr(pitr_stack, tmp_path_factory):
    """The pitr stack, a backup directory and the module's arguments; cleaned up afterwards."""
    backup_dir = tmp_path_factory.mktemp("pitr-archive") / "backups"
    receiver = f"{pitr_stack.db_container}-pitr-receiver"
    args = {"container": pitr_stack.db_container, "backup_dir": str(backup_dir),
            "login_password": pitr_stack.db_password()}
    yield {"stack": pitr_stack, "backup_dir": backup_dir, "receiver": receiver, "args": args}
    testbed._run(["docker", "rm", "-f", receiver])
    pitr_stack.wait_until(lambda: pitr_stack.psql_value(
        f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{SLOT}' AND active") == "0", timeout=30)
    pitr_stack.psql(f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{SLOT}'")


def _hba(stack):
    path = stack.psql_value("SHOW hba_file")
    return path, stack.docker_exec(stack.db_container, ["cat", path]).stdout


def _slot(stack):
    rows = stack.psql_rows(f"SELECT slot_type, active FROM pg_replication_slots WHERE slot_name = '{SLOT}'")
    return rows[0] if rows else None


def _receiver(docker_client, name):
    try:
        return docker_client.api.inspect_container(name)
    except Exception:  # docker.errors.NotFound
        return None


def _wal_files(backup_dir):
    wal = backup_dir / "pitr" / "wal"
    return sorted(os.listdir(wal)) if wal.is_dir() else []


def test_check_mode_predicts_and_changes_nothing(pitr, run_module, docker_client):
    stack = pitr["stack"]
    hba_before = _hba(stack)
    result = run_module("pitr_archive", pitr["args"], check=True)
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True
    changes = "\n".join(result["changes"])
    assert "create directory %s" % (pitr["backup_dir"] / "pitr") in changes
    assert 'append to %s: host replication "postgres" samenet scram-sha-256' % _hba(stack)[0] in changes
    assert "create physical replication slot %s" % SLOT in changes
    assert "create receiver container %s" % pitr["receiver"] in changes
    assert not pitr["backup_dir"].exists()
    assert _hba(stack) == hba_before
    assert _slot(stack) is None
    assert _receiver(docker_client, pitr["receiver"]) is None


def test_first_run_streams_wal_into_the_archive(pitr, run_module, docker_client):
    stack = pitr["stack"]
    result = run_module("pitr_archive", pitr["args"])
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True and result["streaming"] is True
    assert result["restarted"] is False
    assert _slot(stack) == ("physical", "t")
    assert stack.psql_value("SELECT state FROM pg_stat_replication "
                            "WHERE application_name = 'cortexreview-pitr-receiver'") == "streaming"
    path, hba = _hba(stack)
    assert result["hba_file"] == path
    assert hba.count('host replication "postgres" samenet scram-sha-256') == 1
    if result["server_version_num"] >= 170000:
        assert stack.psql_value("SHOW summarize_wal") == "on"
    assert stack.psql_value("SHOW max_slot_wal_keep_size") == "10GB"

    before = set(_wal_files(pitr["backup_dir"]))
    stack.psql("CREATE TABLE IF NOT EXISTS pitr_probe (at timestamptz DEFAULT now()); INSERT INTO pitr_probe DEFAULT VALUES;"
               " SELECT pg_switch_wal();")
    stack.wait_until(lambda: any(SEGMENT.match(name) for name in set(_wal_files(pitr["backup_dir"])) - before),
                     timeout=30)
    # The writers keep writing: the next segment is received as it fills.
    stack.wait_until(lambda: any(name.endswith(".partial") for name in _wal_files(pitr["backup_dir"])), timeout=30)


def test_files_are_private(pitr):
    root = pitr["backup_dir"] / "pitr"
    for directory in (root, root / "wal", root / "base"):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700, directory
    assert stat.S_IMODE(os.stat(root / ".pgpass").st_mode) == 0o600
    for name in _wal_files(pitr["backup_dir"]):
        assert stat.S_IMODE(os.stat(root / "wal" / name).st_mode) == 0o600, name


def test_password_never_in_the_receivers_config_argv_or_result(pitr, run_module, docker_client):
    password = pitr["args"]["login_password"]
    info = docker_client.api.inspect_container(pitr["receiver"])
    assert password not in json.dumps(info)
    assert info["Config"]["Env"] and "PGPASSFILE=/pitr/.pgpass" in info["Config"]["Env"]
    assert not any(item.startswith("PGPASSWORD") for item in info["Config"]["Env"])
    top = docker_client.api.top(pitr["receiver"])
    assert any("pg_receivewal" in " ".join(process) for process in top["Processes"])
    assert password not in json.dumps(top)
    result = run_module("pitr_archive", pitr["args"])
    assert password not in json.dumps(result)
    assert (pitr["backup_dir"] / "pitr" / ".pgpass").read_text() == "*:*:*:postgres:%s\n" % password


def test_second_run_changes_nothing(pitr, run_module, docker_client):
    receiver_id = docker_client.api.inspect_container(pitr["receiver"])["Id"]
    check = run_module("pitr_archive", pitr["args"], check=True)
    assert not check.get("failed"), check.get("msg")
    assert check["changed"] is False, check["changes"]
    result = run_module("pitr_archive", pitr["args"])
    assert result["changed"] is False, result["changes"]
    assert result["changes"] == []
    assert docker_client.api.inspect_container(pitr["receiver"])["Id"] == receiver_id


def test_hba_line_removed_by_hand_is_put_back(pitr, run_module):
    stack = pitr["stack"]
    path, hba = _hba(stack)
    stripped = "".join(line + "\n" for line in hba.splitlines() if "replication" not in line)
    stack.docker_exec(stack.db_container, ["sh", "-c", 'cat > "$1"', "sh", path], input=stripped, user="postgres")
    stack.psql("SELECT pg_reload_conf()")
    assert "replication" not in _hba(stack)[1]
    check = run_module("pitr_archive", pitr["args"], check=True)
    assert check["changed"] is True and any("append" in change for change in check["changes"]), check["changes"]
    assert "replication" not in _hba(stack)[1]
    result = run_module("pitr_archive", pitr["args"])
    assert result["changed"] is True
    assert [change for change in result["changes"] if not change.startswith("append")] == []
    assert _hba(stack)[1].count('host replication "postgres" samenet scram-sha-256') == 1
    assert stack.psql_value("SELECT count(*) FROM pg_hba_file_rules WHERE 'replication' = ANY(database) "
                            "AND error IS NULL") == "1"
    assert run_module("pitr_archive", pitr["args"])["changed"] is False


def _restart_db(stack):
    assert testbed._run(["docker", "restart", stack.db_container]).returncode == 0
    stack.wait_for_db(timeout=120)


def test_restart_needed_is_refused_without_allow_restart(pitr, run_module, docker_client):
    stack = pitr["stack"]
    stack.psql("ALTER SYSTEM SET max_wal_senders = 1")
    _restart_db(stack)
    assert stack.psql_value("SHOW max_wal_senders") == "1"
    started_at = docker_client.api.inspect_container(stack.db_container)["State"]["StartedAt"]
    hba = _hba(stack)
    for check in (True, False):
        result = run_module("pitr_archive", pitr["args"], check=check)
        assert result.get("failed"), result
        assert "restart of container %s" % stack.db_container in result["msg"]
        assert "max_wal_senders = 3 (now 1)" in result["msg"] and "allow_restart" in result["msg"]
        assert "\n" not in result["msg"]
    assert stack.psql_value("SHOW max_wal_senders") == "1"
    assert stack.psql_value("SELECT count(*) FROM pg_file_settings WHERE name = 'max_wal_senders' AND setting = '1'") == "1"
    assert docker_client.api.inspect_container(stack.db_container)["State"]["StartedAt"] == started_at
    assert _hba(stack) == hba


def test_restart_needed_is_done_with_allow_restart(pitr, run_module, docker_client):
    stack = pitr["stack"]
    started_at = docker_client.api.inspect_container(stack.db_container)["State"]["StartedAt"]
    args = dict(pitr["args"], allow_restart=True)
    check = run_module("pitr_archive", args, check=True)
    assert "restart container %s" % stack.db_container in check["changes"]
    assert docker_client.api.inspect_container(stack.db_container)["State"]["StartedAt"] == started_at
    result = run_module("pitr_archive", args)
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True and result["restarted"] is True and result["streaming"] is True
    assert "set max_wal_senders = 3 (now 1)" in result["changes"]
    assert stack.psql_value("SHOW max_wal_senders") == "3"
    assert docker_client.api.inspect_container(stack.db_container)["State"]["StartedAt"] != started_at
    again = run_module("pitr_archive", args)
    assert again["changed"] is False, again["changes"]


def test_absent_removes_receiver_and_slot_and_keeps_the_archive(pitr, run_module, docker_client):
    stack = pitr["stack"]
    wal_before = [name for name in _wal_files(pitr["backup_dir"]) if SEGMENT.match(name)]
    assert wal_before
    args = dict(pitr["args"], state="absent")
    check = run_module("pitr_archive", args, check=True)
    assert check["changes"] == ["remove receiver container %s" % pitr["receiver"], "drop replication slot %s" % SLOT]
    assert _receiver(docker_client, pitr["receiver"]) is not None and _slot(stack) is not None
    result = run_module("pitr_archive", args)
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True
    assert _receiver(docker_client, pitr["receiver"]) is None
    assert _slot(stack) is None
    assert set(wal_before) <= set(_wal_files(pitr["backup_dir"]))
    assert (pitr["backup_dir"] / "pitr" / ".pgpass").exists()
    assert run_module("pitr_archive", args)["changed"] is False
