# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/volume_backup.yml and volume_restore.yml with an encryption passphrase.

The snapshot is encrypted with the inherited supabase_backup_encrypt_passphrase, a restore
with a wrong volume_snapshot_encrypt_passphrase_file fails while the snapshot is verified
(nothing stopped), and the restore with the inherited passphrase brings the contents back.
No run shows the passphrase. A DB container of the test's own (the stack is never touched).
"""

from __future__ import annotations

import os
import re
import sys

import pytest

import testbed
import volume_helpers as vh

REPO = testbed.REPO_ROOT
PASSPHRASE = "volume playbook passphrase 8Rt"  # test-only
ENCRYPTED_NAME = re.compile(r"^supabase-volume-\d{8}_\d{6}\.tar\.gz\.gpg$")


@pytest.fixture(scope="module")
def box(stack):
    with vh.seeded_box("cortexreview-volpb-enc-db", "cortexreview-volpb-enc-data") as db:
        yield db


@pytest.fixture(scope="module")
def common(box, tmp_path_factory):
    backup_dir = tmp_path_factory.mktemp("volume-playbook-encryption")
    os.chmod(backup_dir, 0o700)
    # The test runner's Python has the Docker SDK and zlib-ng, as the role's virtualenv would.
    venv = os.path.dirname(os.path.dirname(sys.executable))
    return {"volume_snapshot_hosts": "localhost", "volume_snapshot_container": box.name,
            "volume_snapshot_volume": box.volume, "volume_snapshot_backup_dir": str(backup_dir),
            "volume_snapshot_venv_dir": venv, "supabase_backup_encrypt_passphrase": PASSPHRASE}


def _run(collections_path, playbook, variables, check=False):
    proc = vh.run_playbook(collections_path, REPO / "playbooks" / playbook, variables, check=check)
    assert PASSPHRASE not in proc.stdout + proc.stderr, "the passphrase is in the output of %s" % playbook
    return proc


def test_encrypted_snapshot_and_restore(box, common, collections_path, tmp_path):
    backup_dir = common["volume_snapshot_backup_dir"]
    contents = box.fingerprint()
    proc = _run(collections_path, "volume_backup.yml", common)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    snapshots = [name for name in vh.snapshot_names(backup_dir) if ENCRYPTED_NAME.match(name)]
    assert len(snapshots) == 1, vh.snapshot_names(backup_dir)
    snapshot = os.path.join(backup_dir, snapshots[0])
    with open(snapshot, "rb") as handle:
        assert handle.read(2) != b"\x1f\x8b"  # not gzip: OpenPGP
    assert os.stat(snapshot).st_mode & 0o777 == 0o600

    box.psql("CREATE TABLE after_encrypted_snapshot (x int)")
    started_at = box.started_at()

    # A passphrase file of the playbook's own wins over the inherited passphrase, and is wrong:
    # the verification fails before anything is stopped.
    wrong = vh.write_file(tmp_path / "wrong-passphrase", b"not the passphrase\n")
    proc = _run(collections_path, "volume_restore.yml",
                dict(common, volume_snapshot_encrypt_passphrase_file=wrong, volume_snapshot_confirm=True))
    assert proc.returncode != 0 and "wrong passphrase" in proc.stdout, proc.stdout[-4000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert box.started_at() == started_at and "after_encrypted_snapshot" in box.fingerprint()

    proc = _run(collections_path, "volume_restore.yml", common, check=True)
    assert proc.returncode == 0 and "Check mode, nothing changed." in proc.stdout, proc.stdout[-4000:]
    assert snapshot in proc.stdout
    assert box.started_at() == started_at

    proc = _run(collections_path, "volume_restore.yml", dict(common, volume_snapshot_confirm=True))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert snapshot in proc.stdout
    assert box.accepts_connections()
    assert box.fingerprint() == contents
