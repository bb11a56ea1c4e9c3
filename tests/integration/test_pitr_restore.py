# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pitr_restore, pitr_restore_point and playbooks/pitr_restore.yml against the real test bed.

The pitr stack's writers (api, worker) insert a timestamped row into feedback_audit_log every
0.5 s each. Every test starts from an archive that streams (pitr_archive) and a new full base
backup (pitr_base_backup): a recovery retires the archive it came from. The refusals check that
nothing stopped (the containers' start times) and nothing changed; the recoveries check the rows
against the moment, row by row. The fixture's teardown removes the receiver and drops the slot.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

import testbed

SLOT = "cortexreview_pitr"
REPO = Path(__file__).resolve().parents[2]
WRITERS = "actor IN ('api', 'worker')"


@pytest.fixture(scope="module")
def pitr(pitr_stack, tmp_path_factory):
    """The pitr stack, a backup directory of this module; the receiver removed and the slot dropped afterwards."""
    backup_dir = tmp_path_factory.mktemp("pitr-restore") / "backups"
    receiver = f"{pitr_stack.db_container}-pitr-receiver"
    try:
        yield {"stack": pitr_stack, "backup_dir": backup_dir, "root": backup_dir / "pitr", "receiver": receiver}
    finally:
        testbed._run(["docker", "rm", "-f", receiver])
        pitr_stack.start_containers()
        pitr_stack.wait_for_db()
        pitr_stack.wait_until(lambda: pitr_stack.psql_value(
            f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{SLOT}' AND active") == "0", timeout=30)
        pitr_stack.psql(f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                        f"WHERE slot_name = '{SLOT}'")


@pytest.fixture
def archive(pitr, run_module):
    """An archive that streams and a full base backup in it: ``archive.base(incremental)``,
    ``archive.restore(check=False, **args)``, ``archive.point(name)``. A test that recovered retired the
    archive, so the next one gets a new one; after a test that did not, the full base backup is shared."""
    kept = pitr.get("archive")
    if kept is not None and kept.base_backups() == [kept.full["name"]]:
        kept.stream()
        return kept
    pitr["archive"] = Archive(pitr, run_module)
    return pitr["archive"]


class Archive:
    def __init__(self, pitr, run_module):
        self.pitr = pitr
        self.stack = pitr["stack"]
        self.run_module = run_module
        self.args = {"container": self.stack.db_container, "backup_dir": str(pitr["backup_dir"])}
        self.stream()
        self.full = self.base()

    def stream(self):
        result = self.run_module("pitr_archive", dict(self.args, login_password=self.stack.db_password()))
        assert not result.get("failed"), result.get("msg")
        assert result["streaming"] is True

    def base_backups(self):
        return sorted(name[:-len(".json")] for name in os.listdir(self.pitr["root"] / "base") if name.endswith(".json"))

    def base(self, incremental=False):
        result = self.run_module("pitr_base_backup", dict(self.args, incremental=incremental))
        assert not result.get("failed"), result.get("msg")
        return result

    def restore(self, check=False, **args):
        values = dict(self.args, volume=self.stack.volume, stop_containers=list(self.stack.app_containers))
        if not check:
            values["confirm"] = True
        values.update(args)
        return self.run_module("pitr_restore", values, check=check)

    def point(self, name, check=False):
        return self.run_module("pitr_restore_point", dict(self.args, name=name), check=check)


# ------------------------------------------------------------------------------------ helpers --

def started_at(stack, receiver):
    """{container: (running, StartedAt)}: a stop and start shows as a new StartedAt."""
    found = {}
    for name in stack.containers + (receiver,):
        try:
            info = testbed.container(name).attrs["State"]
            found[name] = (info["Running"], info["StartedAt"])
        except Exception:  # docker.errors.NotFound
            found[name] = None
    return found


def server_identity(stack):
    """The timeline and system identifier: a recovery changes the first, a fresh initdb the second."""
    return stack.psql_rows("SELECT (SELECT timeline_id FROM pg_control_checkpoint()), "
                           "(SELECT system_identifier FROM pg_control_system())")[0]


def writer_ids(stack, condition="true"):
    return set(int(row[0]) for row in stack.psql_rows(
        f"SELECT id FROM feedback_audit_log WHERE {WRITERS} AND ({condition})"))


def archive_listing(root):
    """pitr/ and pitr/base (the WAL grows as the writers write: not listed)."""
    return sorted(os.listdir(root)), sorted(os.listdir(root / "base"))


def wait_for_writer_rows(stack, after_epoch, count):
    stack.wait_until(lambda: int(stack.psql_value(
        f"SELECT count(*) FROM feedback_audit_log WHERE {WRITERS} AND created_at > to_timestamp({after_epoch})"))
        >= count, timeout=60, what=f"{count} writer rows")


def time_between_writes(stack, after_epoch):
    """A moment between two writer rows committed after ``after_epoch``, at least 0.1 s apart."""
    epochs = [float(row[0]) for row in stack.psql_rows(
        f"SELECT extract(epoch FROM created_at) FROM feedback_audit_log WHERE {WRITERS} "
        f"AND created_at > to_timestamp({after_epoch}) ORDER BY created_at")]
    for earlier, later in zip(epochs, epochs[1:]):
        if later - earlier >= 0.1:
            return earlier + (later - earlier) / 2
    raise AssertionError(f"no two writer rows 0.1 s apart after {after_epoch}: {epochs}")


def as_text(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat(sep=" ")


def assert_recovered_to(stack, target_epoch, expected_ids, began_epoch):
    """Every writer row up to the target is there, and none after it that existed before the recovery."""
    assert writer_ids(stack, f"created_at <= to_timestamp({target_epoch})") == expected_ids
    assert writer_ids(stack, f"created_at > to_timestamp({target_epoch}) "
                             f"AND created_at < to_timestamp({began_epoch})") == set()


def assert_everything_runs(stack, result):
    for name in stack.containers:
        stack.wait_until(lambda name=name: testbed.container_status(name) == "running", timeout=30,
                         what=f"{name} running")
    assert set(stack.containers) <= set(result["started"])
    stack.wait_until(lambda: writer_ids(stack, "created_at > now() - interval '3 seconds'"), timeout=30,
                     what="the writers writing again")


def assert_no_leftovers(stack, root):
    assert not [name for name in os.listdir(root) if name.startswith(".restore-")]
    listing = stack.docker_exec(stack.db_container, ["ls", "-A", stack.data_dir]).stdout.split()
    assert not [name for name in listing if name.startswith(".cortexreview-")], listing
    assert "recovery.signal" not in listing
    assert stack.psql_value("SELECT count(*) FROM pg_file_settings WHERE name LIKE 'recovery_target%' "
                            "OR name = 'restore_command'") == "0"


# ------------------------------------------------------------------------------------- tests --

def test_check_mode_checks_everything_and_changes_nothing(pitr, archive):
    stack = pitr["stack"]
    containers = started_at(stack, pitr["receiver"])
    identity = server_identity(stack)
    listing = archive_listing(pitr["root"])
    result = archive.restore(check=True)
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True
    assert result["chain"] == [archive.full["name"]]
    assert set(result["stopped"]) == set(stack.containers) | {pitr["receiver"]}
    assert result["msg"].startswith("Would stop ")
    assert started_at(stack, pitr["receiver"]) == containers
    assert server_identity(stack) == identity
    assert archive_listing(pitr["root"]) == listing
    # Without confirm a real run is refused, before anything.
    refused = archive.restore(confirm=False)
    assert refused.get("failed") and "confirm must be true" in refused["msg"]
    assert started_at(stack, pitr["receiver"]) == containers


def test_bad_targets_are_refused_in_one_line_before_anything_stops(pitr, archive):
    stack = pitr["stack"]
    containers = started_at(stack, pitr["receiver"])
    listing = archive_listing(pitr["root"])
    for args, message in (
            ({"target_time": "2026-11-27 10:42"}, "is not a timestamp with a zone"),
            ({"target_time": "2000-01-01 00:00:00+00"}, "before the earliest recoverable moment"),
            ({"target_time": "2999-01-01 00:00:00+00"}, "is in the future"),
            ({"target_name": "it's"}, "is not a restore point name"),
            ({"target_time": "2026-11-27 10:42:00+00", "target_name": "x"}, "mutually exclusive")):
        result = archive.restore(**args)
        assert result.get("failed"), args
        assert message in result["msg"] and "\n" not in result["msg"], result["msg"]
    earliest = archive.restore(target_time="2000-01-01 00:00:00+00")["msg"]
    oldest = min(name for name in os.listdir(pitr["root"] / "base") if name.endswith(".json"))
    assert "(the end of base backup %s)" % oldest[:-len(".json")] in earliest
    assert started_at(stack, pitr["receiver"]) == containers
    assert archive_listing(pitr["root"]) == listing


def test_two_interrupted_restores_in_the_volume_are_refused_before_anything_stops(pitr, archive):
    stack = pitr["stack"]
    containers = started_at(stack, pitr["receiver"])
    asides = [f"{stack.data_dir}/.cortexreview-restore-20261127_00000{number}-0000000{number}" for number in (1, 2)]
    stack.docker_exec(stack.db_container, ["mkdir", "-m", "0700"] + asides, user="0")
    try:
        result = archive.restore(target_name="anything")
        assert result.get("failed")
        assert "2 sets of contents set aside by interrupted restores" in result["msg"], result["msg"]
        assert started_at(stack, pitr["receiver"]) == containers
    finally:
        stack.docker_exec(stack.db_container, ["rmdir"] + asides, user="0")


def test_recover_to_a_time_between_two_writes(pitr, archive):
    stack = pitr["stack"]
    finished = archive.full["entry"]["finished_epoch"]
    wait_for_writer_rows(stack, finished, 8)
    target = time_between_writes(stack, finished)
    time.sleep(2)  # rows after the target, in the WAL
    expected = writer_ids(stack, f"created_at <= to_timestamp({target})")
    identity = server_identity(stack)
    metrics = pitr["backup_dir"] / "metrics.prom"
    began = time.time()
    result = archive.restore(target_time=as_text(target), metrics_file=str(metrics))
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True and result["target"]["kind"] == "time"
    assert_recovered_to(stack, target, expected, began)
    assert result["reached"]["stop"].startswith("before commit of transaction"), result["reached"]
    reached = datetime.datetime.fromisoformat(result["reached"]["time"]).timestamp()
    assert max(float(row[0]) for row in stack.psql_rows(
        f"SELECT extract(epoch FROM created_at) FROM feedback_audit_log WHERE {WRITERS} "
        f"AND created_at <= to_timestamp({target})")) <= reached <= target
    assert server_identity(stack)[0] > identity[0] and server_identity(stack)[1] == identity[1]
    assert result["reached"]["timeline"] == int(server_identity(stack)[0])
    assert_everything_runs(stack, result)
    assert_no_leftovers(stack, pitr["root"])
    # The old archive is retired whole; the receiver waits for pitr_archive; the slot is there again.
    retired = Path(result["retired"])
    assert retired.parent == pitr["root"] and (retired / "wal").is_dir() and (retired / "base").is_dir()
    assert os.listdir(pitr["root"] / "base") == [] and os.listdir(pitr["root"] / "wal") == []
    assert testbed.container_status(pitr["receiver"]) == "exited"
    assert stack.psql_value(f"SELECT slot_type FROM pg_replication_slots WHERE slot_name = '{SLOT}'") == "physical"
    assert 'supabase_backup_success{kind="pitr",operation="restore"} 1' in metrics.read_text()


def test_recover_to_a_named_restore_point(pitr, archive):
    stack = pitr["stack"]
    refused = archive.point("not a name")
    assert refused.get("failed") and "not a restore point name" in refused["msg"]
    assert not (pitr["root"] / "restore_points.jsonl").exists()
    time.sleep(1)
    point = archive.point("before_migration")
    assert not point.get("failed"), point.get("msg")
    assert point["lsn"] and point["time"]
    kept = writer_ids(stack, f"created_at <= '{point['time']}'::timestamptz - interval '0.5 seconds'")
    knowledge = stack.psql_value("SELECT count(*) FROM knowledge_base")
    # The risky change the restore point was made for.
    stack.psql("CREATE TABLE pitr_migration (x int); DELETE FROM knowledge_base WHERE id <= 10")
    time.sleep(1)
    # An earlier recovery died with the writers down: its record names them, backup_status says so, and this
    # recovery starts them again with its own.
    stack.stop_containers(*stack.app_containers)
    journal = pitr["backup_dir"] / f".cortexreview-restore-{stack.db_container}+pitr.json"
    journal.write_text(json.dumps({"format": "cortexreview.supabase_backup/restore-journal/v1", "src": "base",
                                   "started_at": "2026-11-27T00:00:00+00:00", "container": stack.db_container,
                                   "db": "postgres", "stopped_writers": list(stack.app_containers)}))
    journal.chmod(0o600)
    status = archive.run_module("backup_status", {"backup_dir": str(pitr["backup_dir"]), "max_age": "52w"})
    assert status.get("failed") and "did not finish" in status["msg"], status
    began = time.time()
    result = archive.restore(target_name="before_migration")
    assert not result.get("failed"), result.get("msg")
    assert any("did not end" in warning for warning in result.get("warnings", [])), result.get("warnings")
    assert not journal.exists()
    assert result["reached"]["stop"] == 'at restore point "before_migration"'
    assert point["lsn"] in result["chain_reason"]
    assert stack.psql_value("SELECT to_regclass('public.pitr_migration') IS NULL") == "t"
    assert stack.psql_value("SELECT count(*) FROM knowledge_base") == knowledge
    assert kept <= writer_ids(stack)
    assert writer_ids(stack, f"created_at > '{point['time']}'::timestamptz + interval '0.5 seconds' "
                             f"AND created_at < to_timestamp({began})") == set()
    assert_everything_runs(stack, result)


def test_an_incremental_chain_restores(pitr, archive):
    stack = pitr["stack"]
    time.sleep(1)
    first = archive.base(incremental=True)
    time.sleep(1)
    second = archive.base(incremental=True)
    assert first["type"] == second["type"] == "incremental", (first, second)
    finished = time.time()
    wait_for_writer_rows(stack, finished, 8)
    target = time_between_writes(stack, finished)
    time.sleep(2)
    expected = writer_ids(stack, f"created_at <= to_timestamp({target})")
    began = time.time()
    result = archive.restore(target_time=as_text(target))
    assert not result.get("failed"), result.get("msg")
    assert result["chain"] == [archive.full["name"], first["name"], second["name"]]
    assert_recovered_to(stack, target, expected, began)
    assert_everything_runs(stack, result)
    assert_no_leftovers(stack, pitr["root"])


def test_a_missing_wal_segment_is_refused_before_anything_stops(pitr, archive):
    stack = pitr["stack"]
    wal = pitr["root"] / "wal"
    for _round in range(3):
        before = set(os.listdir(wal))
        # A switch with no WAL since the last one is a no-op: write a row first (the writers may not have).
        stack.psql("CREATE TABLE IF NOT EXISTS pitr_probe (at timestamptz DEFAULT now()); "
                   "INSERT INTO pitr_probe DEFAULT VALUES; SELECT pg_switch_wal()")
        stack.wait_until(lambda before=before: len([name for name in set(os.listdir(wal)) - before
                                                    if len(name) == 24]) >= 1, timeout=30, what="a new segment")
    segments = sorted(name for name in os.listdir(wal) if len(name) == 24 and name > archive.full["entry"]["start_wal"])
    missing = segments[len(segments) // 2]
    aside = pitr["backup_dir"] / missing
    shutil.move(str(wal / missing), str(aside))
    try:
        containers = started_at(stack, pitr["receiver"])
        identity = server_identity(stack)
        rows = writer_ids(stack)
        listing = archive_listing(pitr["root"])
        for check in (True, False):
            result = archive.restore(check=check)
            assert result.get("failed"), result
            assert missing in result["msg"] and "gap" in result["msg"], result["msg"]
            assert "nothing was stopped" in result["msg"]
        assert started_at(stack, pitr["receiver"]) == containers
        assert server_identity(stack) == identity
        assert rows < writer_ids(stack)  # the live data is untouched, and the writers still write
        assert archive_listing(pitr["root"]) == listing
    finally:
        shutil.move(str(aside), str(wal / missing))


def test_a_failed_recovery_puts_the_previous_data_back_and_starts_everything(pitr, archive):
    stack = pitr["stack"]
    time.sleep(1)
    identity = server_identity(stack)
    rows = writer_ids(stack)
    listing = archive_listing(pitr["root"])
    result = archive.restore(target_name="never_made")
    assert result.get("failed")
    assert "recovery ended before configured recovery target was reached" in result["msg"], result["msg"]
    assert "previous contents were put back" in result["msg"]
    assert server_identity(stack) == identity
    assert rows <= writer_ids(stack)
    assert pitr["receiver"] in result["started"] and set(stack.containers) <= set(result["started"])
    assert_everything_runs(stack, result)
    assert testbed.container_status(pitr["receiver"]) == "running"
    assert archive_listing(pitr["root"]) == listing
    assert_no_leftovers(stack, pitr["root"])


def test_lose_the_database_and_recover_the_latest(pitr, archive):
    stack = pitr["stack"]
    wait_for_writer_rows(stack, time.time(), 6)
    rows = writer_ids(stack)
    time.sleep(1)
    lost_at = time.time()
    testbed._run(["docker", "kill", stack.db_container])
    testbed._run(["docker", "stop", stack.db_container])
    testbed._run(["docker", "run", "--rm", "--entrypoint", "find", "-v", f"{stack.volume}:/data", stack.db_image,
                  "/data", "-mindepth", "1", "-delete"])
    testbed._run(["docker", "start", stack.db_container])
    stack.wait_for_db()
    # A fresh PGDATA is all there is.
    assert stack.psql_value("SELECT to_regclass('public.feedback_audit_log') IS NULL") == "t"
    result = archive.restore()
    assert not result.get("failed"), result.get("msg")
    assert result["target"]["kind"] == "latest" and result["reached"]["stop"] is None
    assert rows <= writer_ids(stack)
    last = float(stack.psql_value(f"SELECT extract(epoch FROM max(created_at)) FROM feedback_audit_log "
                                  f"WHERE {WRITERS} AND created_at < to_timestamp({lost_at})"))
    lost_seconds = lost_at - last
    lost_rows = max(0, round(lost_seconds / 0.25) - 1)  # two writers, a row every 0.25 s between them
    print(f"\nRPO after losing the database: {lost_seconds:.2f} s of writes lost (about {lost_rows} rows)")
    assert lost_seconds < 60
    assert_everything_runs(stack, result)


def test_the_playbook_asks_and_recovers_and_archives_the_new_timeline(pitr, archive, run_playbook):
    stack = pitr["stack"]
    venv = os.path.dirname(os.path.dirname(sys.executable))
    extra = {"supabase_backup_hosts": "localhost", "supabase_backup_venv_dir": venv, "ansible_become": False,
             "supabase_backup_dir": str(pitr["backup_dir"]), "supabase_backup_container": stack.db_container,
             "supabase_backup_login_password": stack.db_password(), "supabase_pitr_volume": stack.volume,
             "supabase_pitr_stop_containers": list(stack.app_containers)}
    containers = started_at(stack, pitr["receiver"])
    planned = run_playbook(REPO / "playbooks" / "pitr_restore.yml", extra, check=True)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "Check mode, nothing changed. Would stop " in planned.stdout
    assert started_at(stack, pitr["receiver"]) == containers
    unconfirmed = run_playbook(REPO / "playbooks" / "pitr_restore.yml", extra)
    assert unconfirmed.returncode != 0
    assert "supabase_pitr_restore_confirm=true" in unconfirmed.stdout, unconfirmed.stdout
    assert started_at(stack, pitr["receiver"]) == containers
    time.sleep(1)
    rows = writer_ids(stack)
    proc = run_playbook(REPO / "playbooks" / "pitr_restore.yml", dict(extra, supabase_pitr_restore_confirm=True))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "replayed the whole archive" in proc.stdout
    assert rows <= writer_ids(stack)
    assert_everything_runs(stack, {"started": stack.containers})
    # The receiver streams the new timeline into a new archive, which starts with a new full base backup.
    assert testbed.container_status(pitr["receiver"]) == "running"
    timeline = int(server_identity(stack)[0])
    base = [name for name in os.listdir(pitr["root"] / "base") if name.endswith(".json")]
    assert len(base) == 1
    stack.wait_until(lambda: any(name.startswith("%08X" % timeline) for name in os.listdir(pitr["root"] / "wal")),
                     timeout=30, what="WAL of the new timeline")
