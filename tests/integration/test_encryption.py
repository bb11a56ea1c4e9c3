# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""gpg-encrypted backups end to end, on the real stack and a DB container of our own.

Dumps and volume snapshots are encrypted as they stream to disk, opened by the plain
``gpg --decrypt`` an operator would use, and restored by the modules; a wrong passphrase
is refused before anything is stopped. A thread reads every process's command line and
environment while the module runs go on: the passphrase must never be in either.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import secrets
import subprocess
import tarfile
import threading
import time
from pathlib import Path
from typing import List

import pytest

import testbed
import volume_helpers as vh
from dump_helpers import (
    assert_clean_failure,
    copy_row_counts,
    parse_metrics,
    read_restore_point,
    restore_point_names,
    run_runner,
    sha256_file,
    write_config,
)
from restore_helpers import (
    assert_ok,
    create_seeded_db,
    databases,
    db_name,
    drop_databases,
    fingerprint,
    started_at,
    statuses,
)

SECRET = "enc-test-" + secrets.token_hex(12)
WRONG = "wrong-" + secrets.token_hex(12)
DUMP_NAME = re.compile(r"^supabase_backup_\d{8}_\d{6}\.sql\.gz\.gpg$")
SNAPSHOT_NAME = re.compile(r"^supabase-volume-\d{8}_\d{6}\.tar\.gz\.gpg$")
GZIP_MAGIC = b"\x1f\x8b"
WRITERS = (testbed.API_CONTAINER, testbed.WORKER_CONTAINER)


class ProcWatch(threading.Thread):
    """Reads /proc/*/cmdline and /proc/*/environ of every process, over and over."""

    def __init__(self, secret: str) -> None:
        super().__init__(daemon=True)
        self.secret = secret.encode()
        self.leaks: List[str] = []
        self.gpg_seen = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        own = str(os.getpid())
        while not self._stop_event.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or pid == own:
                    continue
                for part in ("cmdline", "environ"):
                    try:
                        data = Path("/proc", pid, part).read_bytes()
                    except OSError:
                        continue
                    if self.secret in data:
                        self.leaks.append(f"{pid} {part}: {data[:200]!r}")
                    if part == "cmdline" and data.startswith(b"gpg\0"):
                        self.gpg_seen += 1
            time.sleep(0.005)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


@pytest.fixture(scope="module")
def watch(stack):
    watcher = ProcWatch(SECRET)
    watcher.start()
    yield watcher
    watcher.stop()


@pytest.fixture(scope="module")
def passphrase_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("passphrase") / "passphrase"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(SECRET + "\n")
    return str(path)


def gpg_decrypt(path: str, passphrase_file: str) -> bytes:
    """What an operator gets with plain ``gpg --decrypt`` (own home, so nothing is cached)."""
    home = Path(passphrase_file).parent / "gnupg-home"
    home.mkdir(mode=0o700, exist_ok=True)
    proc = subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--passphrase-file",
         passphrase_file, "--decrypt", path], capture_output=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


def assert_private_and_encrypted(path: str) -> None:
    info = os.stat(path)
    assert info.st_mode & 0o777 == 0o600, oct(info.st_mode)
    with open(path, "rb") as handle:
        head = handle.read(2)
    assert head != GZIP_MAGIC and head[0] & 0x80, head  # an OpenPGP packet, not gzip


# ------------------------------------------------------------------ dumps --

@pytest.fixture(scope="module")
def encrypted_dump(stack, run_module, watch, tmp_path_factory):
    """An encrypted backup of a seeded database of our own."""
    name = db_name("enc")
    create_seeded_db(name)
    backup_dir = tmp_path_factory.mktemp("enc-backups") / "backups"
    metrics = backup_dir.parent / "metrics.prom"
    result = run_module("supabase_dump", {"backup_dir": str(backup_dir), "db": name, "encrypt_passphrase": SECRET,
                                          "metrics_file": str(metrics)})
    try:
        yield {"db": name, "dir": backup_dir, "result": result, "metrics": metrics}
    finally:
        drop_databases(name, prefix=name + "_")


def test_encrypted_dump_is_what_gpg_decrypt_opens(encrypted_dump, passphrase_file):
    result = encrypted_dump["result"]
    assert_ok(result)
    assert result["changed"] is True and result["encrypted"] is True
    path = result["path"]
    assert DUMP_NAME.match(os.path.basename(path)), path
    assert_private_and_encrypted(path)
    # Only the encrypted file and its sidecars: no plaintext or temporary file was left.
    assert sorted(os.listdir(encrypted_dump["dir"])) == sorted(restore_point_names(path))
    assert (Path(path + ".sha256").read_text().split()[0]) == sha256_file(path) == result["sha256"]
    _restore_point, manifest = read_restore_point(path)
    assert manifest["encrypted"] is True and manifest["name"].endswith(".sql.gz.gpg")
    assert manifest["encryption"] == {"format": "openpgp-symmetric", "cipher": "AES256", "program": "gpg"}
    sql = gzip.decompress(gpg_decrypt(path, passphrase_file))
    assert b"PostgreSQL database dump complete" in sql
    counts = copy_row_counts(sql)
    assert counts == result["tables"] and counts["public.knowledge_base"] > 0


def test_encrypted_dump_writes_metrics(encrypted_dump):
    metrics = parse_metrics(encrypted_dump["metrics"])
    assert metrics["supabase_backup_success"] == 1
    assert metrics["supabase_backup_size_bytes"] == os.path.getsize(encrypted_dump["result"]["path"])
    assert metrics["supabase_backup_free_bytes"] > 0
    assert abs(metrics["supabase_backup_last_success_timestamp_seconds"] - time.time()) < 600


def test_wrong_passphrase_is_refused_before_anything_stops(encrypted_dump, run_module):
    name = encrypted_dump["db"]
    before = fingerprint(name)
    writers_started = started_at(*WRITERS)
    metrics = str(encrypted_dump["metrics"])
    for module, extra in (("supabase_restore", {"confirm": True}), ("supabase_validate", {"metrics_file": metrics})):
        result = run_module(module, dict(extra, src=encrypted_dump["result"]["path"], db=name,
                                         encrypt_passphrase=WRONG))
        assert_clean_failure(result, "wrong passphrase")
    result = run_module("supabase_restore", {"src": encrypted_dump["result"]["path"], "db": name, "confirm": True})
    assert_clean_failure(result, "is encrypted", "encrypt_passphrase")
    # The writers were never stopped, no scratch database was made, the data is untouched.
    assert started_at(*WRITERS) == writers_started
    assert set(statuses(*WRITERS).values()) == {"running"}
    assert databases(name + "_") == []
    assert fingerprint(name) == before
    assert parse_metrics(metrics, "logical", "validate")["supabase_backup_success"] == 0
    assert parse_metrics(metrics)["supabase_backup_success"] == 1  # the backup's own samples are kept


def test_encrypted_dump_restores_and_validates(encrypted_dump, run_module, passphrase_file):
    name = encrypted_dump["db"]
    before = fingerprint(name)
    testbed.psql("DELETE FROM public.knowledge_base", name)
    assert fingerprint(name) != before
    # The newest backup of the directory, decrypted with the passphrase file.
    result = run_module("supabase_restore", {"backup_dir": str(encrypted_dump["dir"]), "db": name, "confirm": True,
                                             "stop_containers": [], "keep_previous": False, "writers_stop_at": "load",
                                             "encrypt_passphrase_file": passphrase_file})
    assert_ok(result)
    assert result["src"] == encrypted_dump["result"]["path"]
    assert fingerprint(name) == before
    result = run_module("supabase_validate", {"backup_dir": str(encrypted_dump["dir"]), "db": name,
                                              "encrypt_passphrase": SECRET,
                                              "metrics_file": str(encrypted_dump["metrics"])})
    assert_ok(result)
    assert result["passed"] is True
    validation = parse_metrics(encrypted_dump["metrics"], "logical", "validate")
    assert validation["supabase_backup_success"] == 1
    assert validation["supabase_backup_size_bytes"] == os.path.getsize(encrypted_dump["result"]["path"])


def test_cron_runner_reads_the_passphrase_from_a_private_file(stack, collections_path, tmp_path, passphrase_file):
    backup_dir = tmp_path / "backups"
    metrics = tmp_path / "metrics.prom"
    exposed = tmp_path / "exposed-passphrase"
    exposed.write_text(SECRET + "\n")
    exposed.chmod(0o644)
    config = {"backup_dir": str(backup_dir), "metrics_file": str(metrics), "encrypt_passphrase_file": str(exposed)}
    proc = run_runner(collections_path, write_config(tmp_path / "bad.json", config))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "accessible to group or others" in proc.stderr
    assert not backup_dir.exists() or not os.listdir(backup_dir)
    assert parse_metrics(metrics)["supabase_backup_success"] == 0

    config["encrypt_passphrase_file"] = passphrase_file
    proc = run_runner(collections_path, write_config(tmp_path / "good.json", config))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    written = [name for name in os.listdir(backup_dir) if DUMP_NAME.match(name)]
    assert len(written) == 1, os.listdir(backup_dir)
    path = str(backup_dir / written[0])
    assert_private_and_encrypted(path)
    assert b"PostgreSQL database dump complete" in gzip.decompress(gpg_decrypt(path, passphrase_file))
    assert parse_metrics(metrics)["supabase_backup_success"] == 1


# -------------------------------------------------------- volume snapshots --

@pytest.fixture(scope="module")
def box(stack):
    with vh.seeded_box("cortexreview-enctest-db", "cortexreview-enctest-data") as db:
        yield db


def test_encrypted_volume_snapshot_round_trip(box, run_module, watch, tmp_path, passphrase_file):
    backup_dir = tmp_path / "snapshots"
    metrics = tmp_path / "metrics.prom"
    result = run_module("volume_snapshot", dict(box.module_args, backup_dir=str(backup_dir), metrics_file=str(metrics),
                                                encrypt_passphrase_file=passphrase_file))
    assert_ok(result)
    assert result["encrypted"] is True and result["ready"] is True
    path = result["path"]
    volume = parse_metrics(metrics, "volume")
    assert volume["supabase_backup_success"] == 1 and volume["supabase_backup_free_bytes"] > 0
    assert volume["supabase_backup_size_bytes"] == os.path.getsize(path)
    # A failed snapshot (a volume the container does not mount) is recorded too; the last success stays.
    result = run_module("volume_snapshot", dict(box.module_args, volume="cortexreview-enctest-no-such-volume",
                                                backup_dir=str(backup_dir), metrics_file=str(metrics),
                                                encrypt_passphrase_file=passphrase_file))
    assert_clean_failure(result, "does not mount")
    failed = parse_metrics(metrics, "volume")
    assert failed["supabase_backup_success"] == 0
    assert failed["supabase_backup_last_success_timestamp_seconds"] == volume["supabase_backup_last_success_timestamp_seconds"]
    assert SNAPSHOT_NAME.match(os.path.basename(path)), path
    assert_private_and_encrypted(path)
    assert sorted(os.listdir(backup_dir)) == sorted(restore_point_names(path))
    with tarfile.open(fileobj=io.BytesIO(gpg_decrypt(path, passphrase_file)), mode="r:gz") as archive:
        names = archive.getnames()
    assert "./PG_VERSION" in names and "./global/pg_control" in names

    before = box.fingerprint()
    box.psql("CREATE TABLE public.after_snapshot (id int); INSERT INTO public.after_snapshot VALUES (1)")
    changed = box.fingerprint()
    assert "after_snapshot" in changed

    # A wrong passphrase: refused while the container still runs, untouched.
    started = box.started_at()
    result = run_module("volume_snapshot", dict(box.module_args, state="restored", backup_dir=str(backup_dir),
                                                confirm=True, encrypt_passphrase=WRONG))
    assert_clean_failure(result, "wrong passphrase")
    assert box.running() and box.started_at() == started
    assert box.fingerprint() == changed

    result = run_module("volume_snapshot", dict(box.module_args, state="restored", backup_dir=str(backup_dir),
                                                confirm=True, encrypt_passphrase=SECRET))
    assert_ok(result)
    assert result["src"] == path and result["ready"] is True
    box.wait_ready()
    assert box.fingerprint() == before


def test_no_passphrase_on_any_command_line_or_environment(watch):
    """Runs last: the watch saw every module run above (gpg with --passphrase-fd, never the passphrase)."""
    time.sleep(0.1)
    assert watch.is_alive()
    assert watch.leaks == []
    assert watch.gpg_seen > 0, "the watch never saw gpg run: it cannot have checked anything"
