# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The off-site engine (``_offsite``) against a real S3 server: ``rclone serve s3`` on loopback.

Restore points here are files written as the engine's writer names them, with real manifests and
checksum sidecars; their parts' bytes are opaque to the off-site engine, so random bytes serve.
Needs no Docker stack.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest

from offsite_helpers import make_point, rclone_binary, stamp  # also puts this checkout on sys.path

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _offsite
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_kinds import LOGICAL
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    ConfigError,
    OffsiteError,
)

DAY = 86400


@pytest.fixture()
def backup_dir():
    path = tempfile.mkdtemp(prefix="cortexreview-offsite-")
    os.chmod(path, 0o700)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def settings_for(s3, **overrides):
    options = {"remote": s3.remote, "config": s3.config}
    options.update(overrides)
    return _offsite.OffsiteSettings(**options)


def sync(s3, backup_dir, retention_days=90, keep_min=3, **overrides):
    settings = settings_for(s3, **overrides)
    return _offsite.sync_restore_points(LOGICAL, backup_dir, settings, _offsite.RcloneRemote(settings),
                                        retention_days, keep_min, time.time())


def test_upload_verifies_each_file_and_sends_the_manifest_last(s3, backup_dir):
    manifest = make_point(backup_dir, 0)
    result = sync(s3, backup_dir)
    stem = manifest["stem"]
    part = manifest["parts"][0]["name"]
    assert result["uploaded"] == [part, part + ".sha256", stem + ".manifest.json"]
    assert result["uploaded_points"] == [stem] and result["newest"] == stem
    assert s3.names() == sorted(result["uploaded"])
    for name in result["uploaded"]:
        with open(os.path.join(backup_dir, name), "rb") as local, open(os.path.join(s3.objects_dir, name), "rb") as copy:
            assert local.read() == copy.read()
    # A second run has nothing to send.
    again = sync(s3, backup_dir)
    assert again["uploaded"] == [] and again["newest"] == stem


def test_backlog_goes_oldest_first_and_partial_uploads_are_completed(s3, backup_dir):
    old, middle, new = (make_point(backup_dir, age) for age in (3, 2, 1))
    # A point whose part reached the remote but not its manifest (an interrupted run): not complete.
    shutil.copy(os.path.join(backup_dir, middle["parts"][0]["name"]), s3.objects_dir) if os.path.isdir(
        s3.objects_dir) else None
    result = sync(s3, backup_dir)
    assert result["uploaded_points"] == [old["stem"], middle["stem"], new["stem"]]
    assert result["newest"] == new["stem"]
    manifests = [name for name in s3.names() if name.endswith(".manifest.json")]
    assert manifests == sorted(point["stem"] + ".manifest.json" for point in (old, middle, new))


def test_a_copy_that_differs_on_the_remote_is_caught(s3, backup_dir):
    manifest = make_point(backup_dir, 0)
    settings = settings_for(s3)
    remote = _offsite.RcloneRemote(settings)
    part = manifest["parts"][0]["name"]
    path = os.path.join(backup_dir, part)
    remote.upload(path, part)
    with open(os.path.join(s3.objects_dir, part), "r+b") as handle:
        handle.seek(1000)
        handle.write(b"\0" * 16)
    with pytest.raises(OffsiteError, match="does not match its local copy"):
        remote.verify(part, _offsite.file_digests(path), os.path.getsize(path), remote.listing())


def test_plain_data_is_refused_unless_allowed(s3, backup_dir):
    make_point(backup_dir, 0, encrypted=False)
    settings = settings_for(s3)
    remote = _offsite.RcloneRemote(settings)
    manifest = _offsite.local_manifest(backup_dir, LOGICAL.newest(backup_dir)["stem"])
    with pytest.raises(ConfigError, match="not encrypted: data goes off-site encrypted"):
        _offsite.upload_restore_point(remote, backup_dir, manifest, {}, allow_plain=False)
    assert s3.names() == []
    # In a sync, a plain point is skipped (reported), never uploaded.
    result = sync(s3, backup_dir)
    assert result["skipped"] == [{"stem": manifest["stem"], "reason": "not encrypted"}] and s3.names() == []
    allowed = sync(s3, backup_dir, allow_plain=True)
    assert allowed["uploaded_points"] == [manifest["stem"]]


def test_remote_retention_removes_whole_points_and_keeps_the_newest(s3, backup_dir):
    points = [make_point(backup_dir, age) for age in (200, 150, 100, 5)]
    sync(s3, backup_dir, retention_days=0)
    assert len([name for name in s3.names() if name.endswith(".manifest.json")]) == 4
    # Local copies go; the remote's retention alone decides (90 days, keep 2).
    for name in os.listdir(backup_dir):
        os.unlink(os.path.join(backup_dir, name))
    kept_by_store = sync(s3, backup_dir, retention_days=90, keep_min=2, retention=False)
    assert kept_by_store["removed"] == []
    result = sync(s3, backup_dir, retention_days=90, keep_min=2)
    removed_stems = {name.split(".")[0] for name in result["removed"]}
    assert removed_stems == {points[0]["stem"], points[1]["stem"]}
    assert all(name.endswith(".manifest.json") for name in result["removed"][:1])
    assert {name.split(".")[0] for name in s3.names()} == {points[2]["stem"], points[3]["stem"]}


def test_wrong_credentials_fail_in_one_line(s3, backup_dir):
    make_point(backup_dir, 0)
    bad = s3.write_config("wrong-secret", path=os.path.join(s3.dir, "bad.conf"))
    before = sorted(os.listdir(backup_dir))
    with pytest.raises(OffsiteError) as caught:
        sync(s3, backup_dir, config=bad)
    message = caught.value.msg
    assert "\n" not in message and s3.remote in message and "wrong-secret" not in message
    assert "SignatureDoesNotMatch" in message or "403" in message or "denied" in message.lower(), message
    assert sorted(os.listdir(backup_dir)) == before and s3.names() == []


def test_a_remote_that_is_gone_fails_in_one_line(s3, backup_dir):
    make_point(backup_dir, 0)
    s3.stop()
    with pytest.raises(OffsiteError) as caught:
        sync(s3, backup_dir, retries=1)
    assert "\n" not in caught.value.msg and "connection refused" in caught.value.msg.lower()


def test_config_must_be_private_and_defined(s3):
    os.chmod(s3.config, 0o644)
    with pytest.raises(ConfigError, match="accessible to group or others"):
        settings_for(s3)
    os.chmod(s3.config, 0o600)
    with pytest.raises(ConfigError, match="not an rclone remote"):
        settings_for(s3, remote="no-colon-here")
    with pytest.raises(ConfigError, match="needs offsite_config"):
        _offsite.OffsiteSettings(remote=s3.remote)


def test_an_upload_killed_half_way_leaves_nothing_under_the_final_name(s3, backup_dir):
    name = LOGICAL.part_name(stamp(0), True)
    path = os.path.join(backup_dir, name)
    with open(path, "wb") as handle:
        for _megabyte in range(64):
            handle.write(os.urandom(1 << 20))
    argv = [rclone_binary(), "--config", s3.config, "--bwlimit", "8M", "copyto", path, s3.remote + "/" + name]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        # Wait until data is flowing: the server holds part of the object somewhere.
        while time.monotonic() < deadline and not _bytes_under(s3.root):
            time.sleep(0.1)
        assert _bytes_under(s3.root) > 0, "the upload never started"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert name not in s3.listing()
    assert name not in s3.names()


def _bytes_under(root):
    total = 0
    for directory, _dirs, files in os.walk(root):
        for item in files:
            try:
                total += os.path.getsize(os.path.join(directory, item))
            except OSError:
                pass
    return total


def test_fetch_checks_every_part_against_the_manifest(s3, backup_dir):
    manifest = make_point(backup_dir, 0)
    sync(s3, backup_dir)
    target = tempfile.mkdtemp(prefix="cortexreview-fetch-", dir=backup_dir)
    settings = settings_for(s3)
    remote = _offsite.RcloneRemote(settings)
    _offsite.fetch_restore_point(remote, target, manifest["stem"])
    part = manifest["parts"][0]["name"]
    with open(os.path.join(target, part), "rb") as fetched, open(os.path.join(backup_dir, part), "rb") as local:
        assert fetched.read() == local.read()
    assert os.stat(os.path.join(target, part)).st_mode & 0o777 == 0o600
    # An altered copy on the remote is refused and never takes the part's name.
    shutil.rmtree(target)
    os.mkdir(target, 0o700)
    with open(os.path.join(s3.objects_dir, part), "r+b") as handle:
        handle.write(b"tampered")
    with pytest.raises(OffsiteError, match="does not match its manifest"):
        _offsite.fetch_restore_point(remote, target, manifest["stem"])
    assert part not in os.listdir(target)
    with pytest.raises(OffsiteError, match="no complete restore point"):
        _offsite.fetch_restore_point(remote, target, LOGICAL.stem("19990101_000000"))


def test_credentials_never_reach_a_command_line_or_an_environment(s3, backup_dir):
    for age in (2, 1, 0):
        make_point(backup_dir, age, size=2_000_000)
    seen = {"hits": [], "rclone": 0}
    stop = threading.Event()

    def scan():
        me = os.getpid()
        while not stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or int(pid) == me or int(pid) == s3.process.pid:
                    continue
                for what in ("cmdline", "environ"):
                    try:
                        with open("/proc/%s/%s" % (pid, what), "rb") as handle:
                            content = handle.read()
                    except OSError:
                        continue
                    if what == "cmdline" and b"rclone" in content and b"copyto" in content:
                        seen["rclone"] += 1
                    if s3.secret_key.encode() in content:
                        seen["hits"].append((pid, what))
            time.sleep(0.002)

    thread = threading.Thread(target=scan, daemon=True)
    thread.start()
    try:
        sync(s3, backup_dir)
    finally:
        stop.set()
        thread.join()
    assert seen["rclone"] > 0, "the scan never saw rclone run"
    assert seen["hits"] == []
    assert json.dumps(s3.listing())  # the remote answered with the same key from the config


@pytest.mark.parametrize("mode,verified_by", [("shell", "remote hash"), ("sftp-only", "read-back")])
def test_sftp_remotes_with_and_without_a_shell(backup_dir, mode, verified_by):
    from offsite_helpers import SftpRemote

    sftp = SftpRemote(mode=mode)
    try:
        manifest = make_point(backup_dir, 0)
        settings = _offsite.OffsiteSettings(remote=sftp.remote, config=sftp.config)
        remote = _offsite.RcloneRemote(settings)
        part = manifest["parts"][0]["name"]
        path = os.path.join(backup_dir, part)
        remote.upload(path, part)
        how = remote.verify(part, _offsite.file_digests(path), os.path.getsize(path), remote.listing())
        assert (how == "read-back") == (verified_by == "read-back"), how
        with open(path, "rb") as local:
            assert sftp.read(part) == local.read()
        # An altered copy is caught whichever way the remote is checked.
        sftp.container.exec_run(["sh", "-c", "printf tampered | dd of=/home/offsite/backups/db1/%s bs=1 seek=100 "
                                 "conv=notrunc 2>/dev/null" % part], user="offsite")
        with pytest.raises(OffsiteError, match="does not match its local copy"):
            remote.verify(part, _offsite.file_digests(path), os.path.getsize(path), remote.listing())
        # A whole sync then fetch through this remote.
        remote.delete(part)
        result = _offsite.sync_restore_points(LOGICAL, backup_dir, settings, remote, 90, 3, time.time())
        assert result["uploaded_points"] == [manifest["stem"]]
        target = tempfile.mkdtemp(dir=backup_dir)
        _offsite.fetch_restore_point(remote, target, manifest["stem"])
        with open(os.path.join(target, part), "rb") as fetched, open(path, "rb") as local:
            assert fetched.read() == local.read()
    finally:
        sftp.close()
