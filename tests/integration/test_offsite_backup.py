# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""supabase_dump with ``offsite_remote`` on the real stack, to a real S3 server (``rclone serve s3``).

The upload comes after a complete local backup and is verified; a failed upload fails the run
in one line, keeps the backup and its own success in the metrics, and records the upload's
failure in its own sample; local retention never removes a restore point the remote lacks;
the next run uploads the backlog; a plain backup is refused unless allowed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

import testbed
from dump_helpers import DAY, parse_metrics, set_age
from offsite_helpers import make_point
from restore_helpers import assert_clean_failure, assert_ok, create_seeded_db, db_name, drop_databases, fingerprint

PASSPHRASE = "offsite test passphrase"


@pytest.fixture()
def backup_dir():
    path = tempfile.mkdtemp(prefix="cortexreview-offsite-dump-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def dump(run_module, backup_dir, s3, **extra):
    args = {"backup_dir": backup_dir, "encrypt_passphrase": PASSPHRASE, "offsite_remote": s3.remote,
            "offsite_config": s3.config, "metrics_file": os.path.join(backup_dir, "metrics.prom")}
    args.update(extra)
    return run_module("supabase_dump", args)


def test_backup_goes_off_site_verified_and_a_failed_upload_keeps_it(stack, run_module, s3, backup_dir):
    first = dump(run_module, backup_dir, s3)
    assert not first.get("failed"), first.get("msg")
    stem = first["restore_point"]
    assert first["offsite"]["uploaded_points"] == [stem] and first["offsite"]["remote_newest"] == stem
    # Every part (the main dump, the roles, ...), its checksum and the manifest: the restore point whole.
    local = sorted(name for name in os.listdir(backup_dir) if name.startswith(stem + "."))
    assert len(local) >= 3 and s3.names() == local
    for name in local:
        with open(os.path.join(backup_dir, name), "rb") as mine, open(os.path.join(s3.objects_dir, name), "rb") as copy:
            assert mine.read() == copy.read(), name
    metrics = os.path.join(backup_dir, "metrics.prom")
    assert parse_metrics(metrics, "logical", "offsite")["supabase_backup_success"] == 1
    first_upload_success = parse_metrics(metrics, "logical", "offsite")["supabase_backup_last_success_timestamp_seconds"]

    # The remote goes away: the run fails in one line, the new backup is kept and so is its success.
    s3.stop()
    second = dump(run_module, backup_dir, s3, offsite_retries=1)
    assert second.get("failed")
    assert "\n" not in second["msg"] and "was written and kept" in second["msg"], second["msg"]
    assert "connection refused" in second["msg"].lower()
    kept = second["backup"]["path"]
    assert os.path.isfile(kept)
    backup_sample = parse_metrics(metrics, "logical", "backup")
    upload_sample = parse_metrics(metrics, "logical", "offsite")
    assert backup_sample["supabase_backup_success"] == 1 and upload_sample["supabase_backup_success"] == 0
    assert upload_sample["supabase_backup_last_success_timestamp_seconds"] == first_upload_success

    # Both are old now; local retention (0 days would remove them) must keep the one not uploaded.
    for name in os.listdir(backup_dir):
        set_age(os.path.join(backup_dir, name), 10 * DAY, time.time())
    s3.start()
    third = dump(run_module, backup_dir, s3, retention_days=5, retention_keep_min=1, offsite_retention=False)
    assert not third.get("failed"), third.get("msg")
    second_stem = os.path.basename(kept).split(".")[0]
    # The backlog went first, then the new point; the first (already off-site) point was removed locally.
    assert third["offsite"]["uploaded_points"] == [second_stem, third["restore_point"]]
    remaining = {name.split(".")[0] for name in os.listdir(backup_dir) if name.startswith("supabase_backup_")}
    assert remaining == {third["restore_point"]}, remaining
    assert {stem, second_stem, third["restore_point"]} <= {name.split(".")[0] for name in s3.names()}


def test_local_retention_keeps_what_the_remote_lacks(stack, run_module, s3, backup_dir):
    uploaded = dump(run_module, backup_dir, s3)
    assert not uploaded.get("failed"), uploaded.get("msg")
    # The store now refuses writes (full, or a key that lost its rights) but still lists.
    s3.stop()
    s3.start(read_only=True)
    failed = dump(run_module, backup_dir, s3, offsite_retries=1)
    assert failed.get("failed") and "was written and kept" in failed["msg"], failed.get("msg")
    waiting = failed["backup"]["restore_point"]
    for name in os.listdir(backup_dir):
        set_age(os.path.join(backup_dir, name), 30 * DAY, time.time())
    again = dump(run_module, backup_dir, s3, offsite_retries=1, retention_days=1, retention_keep_min=1)
    assert again.get("failed")
    stems = {name.split(".")[0] for name in os.listdir(backup_dir) if name.startswith("supabase_backup_")}
    # What is off-site went (the outage does not stop retention); what never got there stays.
    assert uploaded["restore_point"] not in stems
    assert {waiting, again["backup"]["restore_point"]} <= stems, stems


def test_plain_backups_do_not_go_off_site_unless_allowed(stack, run_module, s3, backup_dir):
    refused = run_module("supabase_dump", {"backup_dir": backup_dir, "offsite_remote": s3.remote,
                                           "offsite_config": s3.config})
    assert refused.get("failed") and "needs encryption" in refused["msg"]
    assert os.listdir(backup_dir) == [] and s3.names() == []
    allowed = run_module("supabase_dump", {"backup_dir": backup_dir, "offsite_remote": s3.remote,
                                           "offsite_config": s3.config, "offsite_allow_plain": True})
    assert not allowed.get("failed"), allowed.get("msg")
    assert allowed["offsite"]["uploaded_points"] == [allowed["restore_point"]]


def test_check_mode_predicts_the_upload_and_sends_nothing(stack, run_module, s3, backup_dir):
    made = dump(run_module, backup_dir, s3)
    assert not made.get("failed"), made.get("msg")
    s3.rclone("delete", s3.remote)
    assert s3.listing() == {}
    predicted = run_module("supabase_dump", {"backup_dir": backup_dir, "encrypt_passphrase": PASSPHRASE,
                                             "offsite_remote": s3.remote, "offsite_config": s3.config}, check=True)
    assert predicted["changed"] and predicted["offsite"]["uploaded_points"] == [made["restore_point"]]
    assert s3.names() == []
    # A new host's first check: the backup directory does not exist yet, and check mode does not make it.
    new_dir = os.path.join(backup_dir, "not-yet")
    first = run_module("supabase_dump", {"backup_dir": new_dir, "encrypt_passphrase": PASSPHRASE,
                                         "offsite_remote": s3.remote, "offsite_config": s3.config}, check=True)
    assert not first.get("failed"), first.get("msg")
    assert first["changed"] and first["offsite"]["uploaded_points"] == [] and not os.path.exists(new_dir)


def test_the_cron_runner_uploads_and_fails_in_one_line(stack, s3, backup_dir, tmp_path, collections_path):
    import json

    passphrase = tmp_path / "passphrase"
    passphrase.write_text(PASSPHRASE + "\n")
    passphrase.chmod(0o600)
    config = tmp_path / "backup.json"
    config.write_text(json.dumps({"backup_dir": backup_dir, "encrypt_passphrase_file": str(passphrase),
                                  "offsite_remote": s3.remote, "offsite_config": s3.config,
                                  "offsite_retries": 1}))
    config.chmod(0o600)
    env = dict(os.environ, PYTHONPATH=collections_path)
    runner = [sys.executable, "-c", "import sys; from ansible_collections.cortexreview.supabase_backup.plugins."
              "module_utils import _runner; sys.exit(_runner.main())", "--config", str(config)]
    done = subprocess.run(runner, capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert "offsite OK" in done.stdout and any(name.endswith(".manifest.json") for name in s3.names())
    s3.stop()
    failed = subprocess.run(runner, capture_output=True, text=True, env=env, check=False)
    assert failed.returncode == 1
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and "backup written and kept; offsite upload FAILED" in lines[0], failed.stderr


def test_restore_fetches_from_the_remote_alone_and_refuses_an_altered_copy(stack, run_module, s3, backup_dir,
                                                                           tmp_path):
    name = db_name("offsite")
    create_seeded_db(name)
    try:
        before = fingerprint(name)
        made = dump(run_module, backup_dir, s3, db=name)
        assert not made.get("failed"), made.get("msg")
        testbed.psql("DELETE FROM learned_constraints", name)
        # A new host: an empty backup directory, the remote and the passphrase.
        new_dir = str(tmp_path / "fetched")
        restore = {"backup_dir": new_dir, "db": name, "confirm": True, "stop_containers": [],
                   "keep_previous": False, "writers_stop_at": "load", "encrypt_passphrase": PASSPHRASE,
                   "offsite_remote": s3.remote, "offsite_config": s3.config}
        planned = run_module("supabase_restore", restore, check=True)
        assert planned["changed"] and planned["restore_point"] == made["restore_point"], planned
        assert not os.path.exists(new_dir) and fingerprint(name) != before
        result = run_module("supabase_restore", restore)
        assert_ok(result)
        assert fingerprint(name) == before
        assert os.stat(new_dir).st_mode & 0o777 == 0o700
        assert all(os.stat(os.path.join(new_dir, item)).st_mode & 0o777 == 0o600 for item in os.listdir(new_dir))
        # An altered copy on the remote: refused before anything is stopped or changed, nothing takes its name.
        other_dir = str(tmp_path / "altered")
        part = os.path.basename(made["path"])
        s3.rclone("copyto", os.path.join(new_dir, part + ".sha256"), s3.remote + "/" + part)
        testbed.psql("DELETE FROM learned_constraints", name)
        changed = fingerprint(name)
        refused = run_module("supabase_restore", dict(restore, backup_dir=other_dir))
        assert_clean_failure(refused, "does not match its manifest")
        assert fingerprint(name) == changed
        assert part not in os.listdir(other_dir)
        # src stays a local path.
        both = run_module("supabase_restore", {"src": made["path"], "db": name, "confirm": True,
                                               "offsite_remote": s3.remote})
        assert both.get("failed") and "mutually exclusive" in both["msg"]
    finally:
        drop_databases(name, prefix=name + "_")


def test_backup_status_checks_the_remote(run_module, s3, backup_dir):
    status = {"backup_dir": backup_dir, "offsite_remote": s3.remote, "offsite_config": s3.config}
    empty = run_module("backup_status", status)
    assert empty.get("failed") and "no complete logical restore point on %s" % s3.remote in empty["msg"]
    assert not empty["changed"]
    old_stem = "supabase_backup_" + time.strftime("%Y%m%d_%H%M%S", time.localtime(time.time() - 3 * DAY))
    manifest = os.path.join(backup_dir, old_stem + ".manifest.json")
    with open(manifest, "w", encoding="utf-8") as handle:
        handle.write("{}")
    s3.rclone("copyto", manifest, s3.remote + "/" + old_stem + ".manifest.json")
    fresh = run_module("backup_status", dict(status, offsite_max_age="4d"))
    assert not fresh.get("failed"), fresh.get("msg")
    assert fresh["offsite"]["newest"] == old_stem and 3 * DAY - 60 < fresh["offsite"]["age_seconds"] < 3 * DAY + 60
    stale = run_module("backup_status", dict(status, offsite_max_age="2d"))
    assert stale.get("failed") and "more than offsite_max_age 2d" in stale["msg"], stale["msg"]
    lone = run_module("backup_status", {"backup_dir": backup_dir, "offsite_max_age": "2d"})
    assert lone.get("failed") and lone["msg"] == "offsite_max_age needs offsite_remote"


def test_offsite_fetch_brings_the_newest_or_a_named_point(run_module, s3, backup_dir, tmp_path):
    old = make_point(backup_dir, 2)
    new = make_point(backup_dir, 1)
    s3.rclone("copy", backup_dir, s3.remote)
    target = str(tmp_path / "new-host")
    fetch = {"backup_dir": target, "offsite_remote": s3.remote, "offsite_config": s3.config}
    planned = run_module("offsite_fetch", fetch, check=True)
    assert planned["changed"] and planned["restore_point"] == new["stem"] and not os.path.exists(target)
    fetched = run_module("offsite_fetch", fetch)
    assert fetched["changed"] and fetched["restore_point"] == new["stem"]
    assert sorted(os.listdir(target)) == sorted(name for name in os.listdir(backup_dir) if name.startswith(new["stem"]))
    again = run_module("offsite_fetch", fetch)
    assert not again["changed"]
    named = run_module("offsite_fetch", dict(fetch, restore_point=old["stem"]))
    assert named["changed"] and any(name.startswith(old["stem"]) for name in os.listdir(target))
    missing = run_module("offsite_fetch", dict(fetch, restore_point="supabase_backup_19990101_000000"))
    assert missing.get("failed") and "no complete restore point supabase_backup_19990101_000000" in missing["msg"]


def test_a_volume_snapshot_goes_off_site_and_comes_back_from_there(stack, run_module, s3, tmp_path):
    import volume_helpers as vh

    with vh.seeded_box("cortexreview-offsite-voltest-db", "cortexreview-offsite-voltest-data") as box:
        before = box.fingerprint()
        snapshot = run_module("volume_snapshot", dict(box.module_args, backup_dir=str(tmp_path / "old-host"),
                                                      encrypt_passphrase=PASSPHRASE, offsite_remote=s3.remote,
                                                      offsite_config=s3.config))
        vh.assert_ok(snapshot)
        stem = snapshot["restore_point"]
        assert snapshot["offsite"]["uploaded_points"] == [stem]
        assert os.path.basename(snapshot["path"]) in s3.names() and stem + ".manifest.json" in s3.names()
        box.psql("DROP TABLE learned_constraints CASCADE; DELETE FROM knowledge_base")
        assert box.fingerprint() != before
        # A new host: only the remote; the newest snapshot there is fetched, checked and restored.
        restored = run_module("volume_snapshot", dict(box.module_args, state="restored", confirm=True,
                                                      backup_dir=str(tmp_path / "new-host"),
                                                      encrypt_passphrase=PASSPHRASE, offsite_remote=s3.remote,
                                                      offsite_config=s3.config))
        vh.assert_ok(restored)
        assert restored["restore_point"] == stem and restored["checksum_verified"] is True
        assert box.fingerprint() == before
