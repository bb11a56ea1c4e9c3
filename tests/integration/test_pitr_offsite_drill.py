# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The point-in-time archive's drill: the host is lost, its off-site copy alone brings the database back.

On the pitr stack, with a real S3 server (``rclone serve s3``): the archive streams, a full and an
incremental base backup are taken, the writers write and then stop, and the archive goes off-site
encrypted. Then everything on the host goes: the receiver, the backup directory, and the DB's data
(the container killed, its volume emptied). ``pitr_offsite state=fetched`` brings the newest chain
and its WAL into a new backup directory, and ``pitr_restore`` recovers the latest moment from it:
every row written before the copy is back. The recovery time is printed.
"""

from __future__ import annotations

import shutil
import time

import testbed
from restore_helpers import assert_ok

PASSPHRASE = "pitr drill passphrase"
SLOT = "cortexreview_pitr"
WRITERS = "actor IN ('api', 'worker')"


def writer_ids(stack):
    return set(int(row[0]) for row in stack.psql_rows(f"SELECT id FROM feedback_audit_log WHERE {WRITERS}"))


def test_the_off_site_archive_alone_recovers_the_lost_database(pitr_stack, run_module, s3, tmp_path):
    stack = pitr_stack
    old_host, new_host = tmp_path / "old-host", tmp_path / "new-host"
    receiver = f"{stack.db_container}-pitr-receiver"
    offsite = {"offsite_remote": s3.remote, "offsite_config": s3.config, "encrypt_passphrase": PASSPHRASE}
    try:
        common = {"container": stack.db_container, "backup_dir": str(old_host)}
        archived = run_module("pitr_archive", dict(common, login_password=stack.db_password()))
        assert_ok(archived)
        assert_ok(run_module("pitr_base_backup", common))
        stack.wait_until(lambda: len(writer_ids(stack)) >= 6, timeout=60, what="writer rows")
        assert_ok(run_module("pitr_base_backup", dict(common, incremental=True)))
        stack.stop_containers(*stack.app_containers)
        # Every write the writers made has reached the receiver.
        stack.wait_until(lambda: stack.psql_value(
            "SELECT count(*) FROM pg_stat_replication WHERE flush_lsn >= pg_current_wal_lsn()") == "1",
            timeout=30, what="the receiver caught up")
        expected = writer_ids(stack)
        uploaded = run_module("pitr_offsite", dict(offsite, backup_dir=str(old_host)))
        assert_ok(uploaded)
        assert any(name.endswith(".partial.gz.gpg") for name in uploaded["uploaded"])

        # The host is lost: the receiver, the backups, the database's data.
        for argv in (["docker", "rm", "-f", receiver], ["docker", "kill", stack.db_container],
                     ["docker", "run", "--rm", "--entrypoint", "find", "-v", f"{stack.volume}:/data", stack.db_image,
                      "/data", "-mindepth", "1", "-delete"], ["docker", "start", stack.db_container]):
            done = testbed._run(argv)
            assert done.returncode == 0, done.stderr
        shutil.rmtree(old_host)
        stack.wait_for_db()
        assert stack.psql_value("SELECT to_regclass('public.feedback_audit_log') IS NULL") == "t"

        began = time.monotonic()
        fetched = run_module("pitr_offsite", dict(offsite, backup_dir=str(new_host), state="fetched"))
        assert_ok(fetched)
        assert len(fetched["chain"]) == 2
        fetch_seconds = time.monotonic() - began
        restored = run_module("pitr_restore", {"container": stack.db_container, "backup_dir": str(new_host),
                                               "volume": stack.volume, "stop_containers": list(stack.app_containers),
                                               "confirm": True})
        assert_ok(restored)
        total = time.monotonic() - began
        assert writer_ids(stack) >= expected
        assert stack.psql_value("SELECT count(*) FROM knowledge_base") != "0"
        print(f"\nPITR drill from the off-site copy: fetch {fetch_seconds:.1f} s, recovery to "
              f"{restored['reached']['time']}, {total:.1f} s in all ({fetched['fetched_bytes']} bytes fetched)")
    finally:
        testbed._run(["docker", "rm", "-f", receiver])
        stack.start_containers()
        stack.wait_for_db()
        stack.wait_until(lambda: stack.psql_value(
            f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{SLOT}' AND active") == "0", timeout=30)
        stack.psql(f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{SLOT}'")
