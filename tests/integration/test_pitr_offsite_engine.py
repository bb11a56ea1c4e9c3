# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pitr_offsite against a real S3 server (``rclone serve s3``), on an archive laid out as the PITR modules lay it out.

The archive's files here are random bytes under the real names (segments, a partial segment, a
timeline history, base backup directories with their catalog entries): what this engine does
depends on the names and the bytes, not on what PostgreSQL wrote into them. The drill with a real
archive, from a real server, is in test_pitr_offsite_drill.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from restore_helpers import assert_ok

PASSPHRASE = "pitr offsite test passphrase"
SEGMENT_SIZE = 16 * 1024 * 1024
MARKER = b"PLAIN-ARCHIVE-BYTES-"


def digest_tree(root):
    """{relative path: (sha256, mode)} of every file and directory below ``root``."""
    found = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, root)
            mode = stat.S_IMODE(os.lstat(path).st_mode)
            if name in filenames:
                with open(path, "rb") as handle:
                    found[relative] = (hashlib.sha256(handle.read()).hexdigest(), mode)
            else:
                found[relative] = (None, mode)
    return found


def write_private(path, data):
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
        handle.write(data)


def add_base(backup_dir, name, start_wal, finished_epoch, kind="full", parent=None):
    base = os.path.join(backup_dir, "pitr", "base")
    directory = os.path.join(base, name)
    os.makedirs(os.path.join(directory, "global"), mode=0o700)
    os.chmod(directory, 0o700)
    write_private(os.path.join(directory, "PG_VERSION"), b"18\n")
    write_private(os.path.join(directory, "backup_manifest"), b'{"PostgreSQL-Backup-Manifest-Version": 2}\n')
    write_private(os.path.join(directory, "global", "pg_control"), MARKER + os.urandom(8192))
    entry = {"format": 1, "name": name, "type": kind, "parent": parent, "timeline": 1, "start_lsn": "0/%X" % (
        int(start_wal[16:], 16) * SEGMENT_SIZE + 40), "stop_lsn": "0/%X" % (int(start_wal[16:], 16) * SEGMENT_SIZE + 300),
        "start_wal": start_wal, "stop_wal": start_wal, "started_at": "2026-11-27T10:00:00+00:00",
        "finished_at": "2026-11-27T10:00:05+00:00", "finished_epoch": finished_epoch, "pg_version": "18",
        "system_identifier": "7400000000000000001", "wal_segment_size": SEGMENT_SIZE, "size": 20000}
    write_private(os.path.join(base, name + ".json"), json.dumps(entry).encode())


def add_wal(backup_dir, *names, size=64 * 1024):
    wal = os.path.join(backup_dir, "pitr", "wal")
    for name in names:
        write_private(os.path.join(wal, name), MARKER + os.urandom(size))


@pytest.fixture()
def archive():
    """A backup directory with an archive: two full base backups and an incremental, WAL, a partial segment."""
    backup_dir = tempfile.mkdtemp(prefix="cortexreview-pitr-offsite-")
    os.chmod(backup_dir, 0o700)
    for sub in ("pitr", "pitr/wal", "pitr/base"):
        os.makedirs(os.path.join(backup_dir, sub), mode=0o700)
    now = time.time()
    add_base(backup_dir, "pitr-base-20261120_020000", "000000010000000000000002", now - 7 * 86400)
    add_base(backup_dir, "pitr-base-20261127_020000", "000000010000000000000005", now - 3600)
    add_base(backup_dir, "pitr-base-20261127_030000", "000000010000000000000006", now - 60, kind="incremental",
             parent="pitr-base-20261127_020000")
    add_wal(backup_dir, *("0000000100000000000000%02X" % number for number in range(2, 8)))
    add_wal(backup_dir, "000000010000000000000008.partial", "00000002.history")
    yield backup_dir
    shutil.rmtree(backup_dir, ignore_errors=True)


def offsite(run_module, s3, backup_dir, check=False, **extra):
    args = {"backup_dir": backup_dir, "offsite_remote": s3.remote, "offsite_config": s3.config,
            "encrypt_passphrase": PASSPHRASE}
    args.update(extra)
    return run_module("pitr_offsite", args, check=check)


def remote_names(s3):
    return sorted(os.path.relpath(os.path.join(directory, name), os.path.join(s3.objects_dir, "pitr"))
                  for directory, _dirs, names in os.walk(os.path.join(s3.objects_dir, "pitr")) for name in names)


def test_the_archive_goes_off_site_encrypted_verified_and_comes_back_whole(run_module, s3, archive, tmp_path):
    planned = offsite(run_module, s3, archive, check=True)
    assert_ok(planned)
    assert planned["changed"] is True and remote_names(s3) == []
    assert "base/pitr-base-20261120_020000" in planned["pending"]

    first = offsite(run_module, s3, archive, metrics_file=str(tmp_path / "metrics.prom"))
    assert_ok(first)
    assert first["changed"] is True
    names = remote_names(s3)
    assert "base/pitr-base-20261127_020000.tar.gz.gpg" in names and "base/pitr-base-20261127_020000.json" in names
    assert "wal/000000010000000000000007.gz.gpg" in names
    assert "wal/000000010000000000000008.partial.gz.gpg" in names and "wal/00000002.history.gz.gpg" in names
    # Nothing of the data leaves the host in plain: every archive byte is encrypted (entries hold no data).
    for name in names:
        with open(os.path.join(s3.objects_dir, "pitr", name), "rb") as handle:
            data = handle.read()
        assert MARKER not in data, name
        if not name.endswith(".json"):
            assert not data.startswith(b"\x1f\x8b"), name
    metrics = (tmp_path / "metrics.prom").read_text()
    assert 'supabase_backup_success{kind="pitr",operation="offsite"} 1' in metrics

    second = offsite(run_module, s3, archive)
    assert_ok(second)
    assert second["changed"] is False and second["uploaded"] == []

    # The partial segment grows: its copy is replaced; once complete, the segment goes and its partial copy too.
    add_wal(archive, "000000010000000000000008.partial", size=128 * 1024)
    grown = offsite(run_module, s3, archive)
    assert grown["uploaded"] == ["wal/000000010000000000000008.partial.gz.gpg"]
    os.rename(os.path.join(archive, "pitr/wal/000000010000000000000008.partial"),
              os.path.join(archive, "pitr/wal/000000010000000000000008"))
    completed = offsite(run_module, s3, archive)
    assert completed["uploaded"] == ["wal/000000010000000000000008.gz.gpg"]
    assert "wal/000000010000000000000008.partial.gz.gpg" in completed["removed"]

    # A new host: the newest base backup, the full one it builds on and the WAL from its start.
    new_host = str(tmp_path / "new-host")
    fetched = offsite(run_module, s3, new_host, state="fetched")
    assert_ok(fetched)
    assert fetched["chain"] == ["pitr-base-20261127_020000", "pitr-base-20261127_030000"]
    here = digest_tree(os.path.join(new_host, "pitr"))
    there = digest_tree(os.path.join(archive, "pitr"))
    for relative in ("base/pitr-base-20261127_020000/global/pg_control", "base/pitr-base-20261127_030000.json",
                     "wal/000000010000000000000005", "wal/000000010000000000000008", "wal/00000002.history"):
        assert here[relative] == there[relative], relative
    assert "base/pitr-base-20261120_020000" not in here and "wal/000000010000000000000004" not in here
    assert {mode for _digest, mode in here.values()} <= {0o600, 0o700}
    again = offsite(run_module, s3, new_host, state="fetched")
    assert again["changed"] is False


def test_an_altered_copy_is_refused_and_takes_no_name(run_module, s3, archive, tmp_path):
    assert_ok(offsite(run_module, s3, archive))
    altered = os.path.join(s3.objects_dir, "pitr", "wal", "000000010000000000000006.gz.gpg")
    with open(altered, "r+b") as handle:
        handle.seek(200)
        handle.write(b"\0" * 16)
    new_host = str(tmp_path / "new-host")
    failed = offsite(run_module, s3, new_host, state="fetched")
    assert failed["failed"] is True
    assert "000000010000000000000006" in failed["msg"] and "\n" not in failed["msg"]
    assert not os.path.exists(os.path.join(new_host, "pitr", "wal", "000000010000000000000006"))
    wrong = offsite(run_module, s3, str(tmp_path / "other"), state="fetched", encrypt_passphrase="not the passphrase")
    assert wrong["failed"] is True and "wrong passphrase" in wrong["msg"]


def test_plain_copies_are_refused_unless_allowed(run_module, s3, archive):
    refused = run_module("pitr_offsite", {"backup_dir": archive, "offsite_remote": s3.remote,
                                          "offsite_config": s3.config})
    assert refused["failed"] is True and "encrypted" in refused["msg"]
    assert remote_names(s3) == []
    allowed = run_module("pitr_offsite", {"backup_dir": archive, "offsite_remote": s3.remote,
                                          "offsite_config": s3.config, "offsite_allow_plain": True})
    assert_ok(allowed)
    assert "wal/000000010000000000000002.gz" in remote_names(s3)


def test_uploads_never_overlap_and_never_hold_up_the_archive(run_module, s3, archive):
    import fcntl

    def held(path):
        handle = open(path, "a")
        fcntl.flock(handle, fcntl.LOCK_EX)
        return handle

    upload_lock = held(os.path.join(archive, "pitr", ".offsite.lock"))
    try:
        busy = offsite(run_module, s3, archive, lock_timeout=0)
        assert busy["failed"] is True and "holds" in busy["msg"] and remote_names(s3) == []
    finally:
        upload_lock.close()
    # A base backup or a restore holding the archive's own lock does not stop an upload.
    archive_lock = held(os.path.join(archive, "pitr", ".lock"))
    try:
        assert_ok(offsite(run_module, s3, archive, lock_timeout=0))
    finally:
        archive_lock.close()
    assert "wal/000000010000000000000007.gz.gpg" in remote_names(s3)


def test_remote_retention_follows_the_local_one_and_never_a_broken_catalog(run_module, s3, archive):
    assert_ok(offsite(run_module, s3, archive))
    # Local retention removed the oldest chain and the WAL before the next one.
    shutil.rmtree(os.path.join(archive, "pitr/base/pitr-base-20261120_020000"))
    os.unlink(os.path.join(archive, "pitr/base/pitr-base-20261120_020000.json"))
    for number in (2, 3, 4):
        os.unlink(os.path.join(archive, "pitr/wal/0000000100000000000000%02X" % number))
    broken = os.path.join(archive, "pitr/base/pitr-base-20261127_020000.json")
    with open(broken, encoding="utf-8") as handle:
        good = handle.read()
    write_private(broken, b"{not json")
    kept = offsite(run_module, s3, archive)
    assert_ok(kept)
    assert kept["removed"] == [] and "base/pitr-base-20261120_020000.json" in remote_names(s3)
    write_private(broken, good.encode())
    planned = offsite(run_module, s3, archive, check=True)
    assert "base/pitr-base-20261120_020000.json" in planned["removed"]
    assert "base/pitr-base-20261120_020000.json" in remote_names(s3)
    pruned = offsite(run_module, s3, archive)
    assert pruned["removed"][0] == "base/pitr-base-20261120_020000.json"
    names = remote_names(s3)
    assert not [name for name in names if "20261120" in name]
    assert "wal/000000010000000000000004.gz.gpg" not in names and "wal/000000010000000000000005.gz.gpg" in names
    no_retention = offsite(run_module, s3, archive, offsite_retention=False)
    assert no_retention["changed"] is False
    # A point-in-time restore retires the archive here and a new timeline begins: the retired archive's copies stay.
    pitr = os.path.join(archive, "pitr")
    retired = os.path.join(pitr, "retired-20261127_120000")
    os.makedirs(retired, mode=0o700)
    for sub in ("wal", "base"):
        os.rename(os.path.join(pitr, sub), os.path.join(retired, sub))
        os.makedirs(os.path.join(pitr, sub), mode=0o700)
    add_base(archive, "pitr-base-20261127_120500", "00000002000000000000000A", time.time())
    add_wal(archive, "00000002.history", "00000002000000000000000A")
    after_restore = offsite(run_module, s3, archive)
    assert_ok(after_restore)
    assert after_restore["removed"] == []
    names = remote_names(s3)
    assert "base/pitr-base-20261127_020000.json" in names and "base/pitr-base-20261127_120500.json" in names


def test_the_cron_runner_uploads_quietly_and_fails_in_one_line(s3, archive, tmp_path, collections_path):
    passphrase = tmp_path / "passphrase"
    passphrase.write_text(PASSPHRASE + "\n")
    passphrase.chmod(0o600)
    config = tmp_path / "backup.json"
    config.write_text(json.dumps({"backup_dir": archive, "encrypt_passphrase_file": str(passphrase),
                                  "offsite_remote": s3.remote, "offsite_config": s3.config, "offsite_retries": 1}))
    config.chmod(0o600)
    env = dict(os.environ, PYTHONPATH=collections_path)
    runner = [sys.executable, "-c", "import sys; from ansible_collections.cortexreview.supabase_backup.plugins."
              "module_utils import _runner; sys.exit(_runner.main())", "pitr-offsite", "--config", str(config)]
    done = subprocess.run(runner, capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert "pitr offsite OK" in done.stdout and "wal/000000010000000000000007.gz.gpg" in remote_names(s3)
    quiet = subprocess.run(runner, capture_output=True, text=True, env=env, check=False)
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""
    s3.stop()
    add_wal(archive, "000000010000000000000008")
    failed = subprocess.run(runner, capture_output=True, text=True, env=env, check=False)
    assert failed.returncode == 1
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and "pitr offsite upload FAILED" in lines[0], failed.stderr
