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


def _status(run_module, pitr, check=False, **extra):
    args = {"backup_dir": pitr["args"]["backup_dir"], "kind": "pitr", "container": pitr["stack"].db_container}
    args.update(extra)
    return run_module("backup_status", args, check=check)


def _segments(backup_dir):
    return [name for name in _wal_files(backup_dir) if SEGMENT.match(name)]


def test_status_reports_the_streaming_archive_and_writes_its_gauges(pitr, run_module, tmp_path):
    stack = pitr["stack"]
    while len(_segments(pitr["backup_dir"])) < 3:
        count = len(_segments(pitr["backup_dir"]))
        stack.psql("INSERT INTO pitr_probe DEFAULT VALUES; SELECT pg_switch_wal();")
        stack.wait_until(lambda: len(_segments(pitr["backup_dir"])) > count, timeout=30)
    metrics = tmp_path / "textfile" / "supabase_backup.prom"
    result = _status(run_module, pitr, metrics_file=str(metrics))
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False and result["streaming"] is True
    assert result["receiver"]["running"] is True and result["slot"]["active"] is True
    assert result["gaps"] == [] and result["wal"]["count"] >= 3
    assert result["last_contact_age_seconds"] is not None and result["last_contact_age_seconds"] < 60
    assert result["base_backups"]["count"] == 0 and result["archive_size"] > 16 << 20
    text = metrics.read_text()
    assert 'supabase_backup_pitr_receiver_up{kind="pitr",operation="archive"} 1' in text
    assert 'supabase_backup_pitr_wal_gaps{kind="pitr",operation="archive"} 0' in text
    assert 'supabase_backup_pitr_base_backup_timestamp_seconds{kind="pitr",operation="archive"} 0' in text
    # No base backup yet: only a required one fails.
    required = _status(run_module, pitr, max_age="1d")
    assert required.get("failed") and "no base backup in" in required["msg"]


def test_status_fails_on_a_gap_and_on_a_stopped_receiver(pitr, run_module, docker_client, tmp_path):
    wal = pitr["backup_dir"] / "pitr" / "wal"
    middle = _segments(pitr["backup_dir"])[1]
    aside = tmp_path / middle
    os.rename(wal / middle, aside)
    metrics = tmp_path / "textfile" / "supabase_backup.prom"
    try:
        result = _status(run_module, pitr, metrics_file=str(metrics))
        assert result.get("failed") and result["gaps"] == [middle]
        assert "the WAL archive has a gap: 1 file(s) missing, first %s" % middle in result["msg"]
        assert 'supabase_backup_pitr_wal_gaps{kind="pitr",operation="archive"} 1' in metrics.read_text()
    finally:
        os.rename(aside, wal / middle)
    docker_client.api.stop(pitr["receiver"], timeout=5)
    try:
        result = _status(run_module, pitr, metrics_file=str(metrics))
        assert result.get("failed")
        assert "receiver container %s is not running (exited)" % pitr["receiver"] in result["msg"]
        assert result["streaming"] is False
        assert 'supabase_backup_pitr_receiver_up{kind="pitr",operation="archive"} 0' in metrics.read_text()
        # The next run of the archive starts it again.
        again = run_module("pitr_archive", pitr["args"])
        assert again["changes"] == ["restart receiver container %s" % pitr["receiver"]]
        assert not _status(run_module, pitr).get("failed")
    finally:
        docker_client.api.start(pitr["receiver"])


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
    # The DB image declares the data directory a VOLUME, so the receiver has an anonymous volume of its own.
    anonymous = [mount["Name"] for mount in _receiver(docker_client, pitr["receiver"])["Mounts"]
                 if mount["Type"] == "volume"]
    assert anonymous
    result = run_module("pitr_archive", args)
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True
    assert _receiver(docker_client, pitr["receiver"]) is None
    assert not [name for name in anonymous if testbed._run(["docker", "volume", "inspect", name]).returncode == 0]
    assert _slot(stack) is None
    assert set(wal_before) <= set(_wal_files(pitr["backup_dir"]))
    assert (pitr["backup_dir"] / "pitr" / ".pgpass").exists()
    assert run_module("pitr_archive", args)["changed"] is False


ROLE_PLAY = """- hosts: localhost
  gather_facts: false
  roles:
    - cortexreview.supabase_backup.supabase_backup
"""
RECAP = re.compile(r"^localhost\s+: ok=\d+\s+changed=(?P<changed>\d+)\s+unreachable=0\s+failed=(?P<failed>\d+)", re.M)
PITR_TASK = "Archive the database's WAL continuously into the backup directory"


def _role_run(run_playbook, play, variables, check=False):
    proc = run_playbook(play, variables, check=check, diff=False)
    output = proc.stdout + proc.stderr
    assert variables["supabase_backup_login_password"] not in output
    recap = RECAP.search(proc.stdout)
    assert proc.returncode == 0 and recap, output[-3000:]
    # The task line, then its status line.
    task = re.search(r"TASK \[[^\]]*%s\][^\n]*\n(?P<status>\w+):" % re.escape(PITR_TASK), proc.stdout)
    assert task, output[-3000:]
    return int(recap.group("changed")), task.group("status")


def test_role_turns_archiving_on_and_a_second_run_changes_nothing(pitr, run_playbook, docker_client, tmp_path):
    stack = pitr["stack"]
    managed = tmp_path / "managed"
    for directory in ("bin", "cron.d", "logrotate.d", "log"):
        (managed / directory).mkdir(parents=True)
    variables = {
        "supabase_backup_dir": str(managed / "backups"),
        "supabase_backup_install_dir": str(managed / "runtime"),
        "supabase_backup_command": str(managed / "bin" / "cortexreview-supabase-backup"),
        "supabase_backup_config_file": str(managed / "etc" / "backup.json"),
        "supabase_backup_cron_file": str(managed / "cron.d" / "cortexreview-backup"),
        "supabase_backup_log_file": str(managed / "log" / "supabase_backup.log"),
        "supabase_backup_logrotate_file": str(managed / "logrotate.d" / "cortexreview-supabase-backup"),
        "supabase_backup_textfile_collector_dir": str(managed / "node-exporter"),
        "supabase_backup_manage_packages": False,
        "supabase_backup_manage_cron_service": False,
        "supabase_backup_container": stack.db_container,
        "supabase_backup_login_password": pitr["args"]["login_password"],
        "supabase_backup_pitr": True,
    }
    play = tmp_path / "site.yml"
    play.write_text(ROLE_PLAY)
    try:
        changed, status = _role_run(run_playbook, play, variables)
        assert changed > 0 and status == "changed"
        assert _slot(stack) == ("physical", "t")
        mounts = {mount["Destination"]: mount for mount in _receiver(docker_client, pitr["receiver"])["Mounts"]}
        assert mounts["/pitr"]["Source"] == str(managed / "backups" / "pitr")
        changed, status = _role_run(run_playbook, play, variables, check=True)
        assert (changed, status) == (0, "ok")
        changed, status = _role_run(run_playbook, play, variables)
        assert (changed, status) == (0, "ok")
        # The cron file's status refresh of the archive, run as cron would run it.
        lines = [line for line in (managed / "cron.d" / "cortexreview-backup").read_text().splitlines()
                 if " pitr-status " in line]
        assert len(lines) == 1 and lines[0].startswith("*/2 * * * * root ")
        command = lines[0].split(" root ", 1)[1]
        assert testbed._run(["sh", "-c", command]).returncode == 0, (managed / "log" / "supabase_backup.log").read_text()
        metrics = (managed / "node-exporter" / "supabase_backup.prom").read_text()
        assert 'supabase_backup_pitr_receiver_up{kind="pitr",operation="archive"} 1' in metrics
    finally:
        testbed._run(["docker", "rm", "-f", "-v", pitr["receiver"]])
