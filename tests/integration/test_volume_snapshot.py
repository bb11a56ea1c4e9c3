# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""volume_snapshot and playbooks/volume_{backup,restore}.yml against real Docker.

The tests run DB containers of their own (the shared stack is never stopped or touched):
``cortexreview-voltest-db`` on the named volume ``cortexreview-voltest-data`` and
``cortexreview-voltest-bind-db`` on a host directory (a tmpfs, so a restore can run out
of space for real). Both are seeded with tests/testbed/seed.sql and carry probe files
(owners, modes, setgid, symlinks) inside the data directory.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import subprocess
import sys
import tarfile

import pytest

import testbed
import volume_helpers as vh
from dump_helpers import parse_metrics, read_restore_point

REPO = testbed.REPO_ROOT
NAME_RE = re.compile(r"^supabase-volume-\d{8}_\d{6}\.tar\.gz$")


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -------------------------------------------------------------- fixtures --

@pytest.fixture(scope="module")
def box(stack):
    """Our own DB container on our own named volume, seeded, with probe files."""
    with vh.seeded_box("cortexreview-voltest-db", "cortexreview-voltest-data", probes=True) as db:
        yield db


@pytest.fixture(scope="module")
def backup_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("volume-backups")
    os.chmod(path, 0o700)
    return path


@pytest.fixture(scope="module")
def planted(backup_dir):
    """Files retention must (and must not) delete, planted before the first snapshot."""
    expired, kept = [], []
    for day, age in (("20200101", 400), ("20200102", 300), ("20200103", 200), ("20200104", 10)):
        path = backup_dir / f"supabase-volume-{day}_000000.tar.gz"
        vh.write_file(path, b"old")
        vh.write_file(str(path) + ".sha256", b"x")
        vh.set_age(path, age)
        vh.set_age(str(path) + ".sha256", age)
        (expired if age > 250 else kept).append(str(path))
    decoys = ["supabase-volume_20190101_000000.tar.gz", "supabase-volume-20190101_000000.tar.gz.bak",
              "supabase_backup_20190101_000000.sql.gz", "supabase-volume-2019010_000000.tar.gz"]
    for name in decoys:
        vh.write_file(backup_dir / name, b"decoy")
        vh.set_age(backup_dir / name, 500)
    target = backup_dir / "symlink-target"
    vh.write_file(target, b"target")
    link = backup_dir / "supabase-volume-20190102_000000.tar.gz"
    os.symlink(target, link)
    vh.set_age(link, 500)
    os.mkdir(backup_dir / "supabase-volume-20190103_000000.tar.gz")
    return {"expired": expired, "kept": kept, "decoys": decoys, "link": str(link), "target": str(target)}


@pytest.fixture(scope="module")
def first_snapshot(box, backup_dir, planted, collections_path):
    """Check mode, then a real snapshot (retention 90 days, keep 3) of the seeded volume."""
    before = {"fingerprint": box.fingerprint(), "probes": box.probes(), "started_at": box.started_at()}
    args = dict(box.module_args, backup_dir=str(backup_dir), retention_days=90, retention_keep_min=3)
    results = vh.run_steps(collections_path, [
        vh.module_step("check", "volume_snapshot", args, check=True),
        vh.module_step("snap", "volume_snapshot", args),
    ])
    vh.assert_ok(results["snap"])
    return dict(before, check=results["check"], result=results["snap"], path=results["snap"]["path"])


# ----------------------------------------------------------------- tests --

def test_snapshot_writes_a_verified_archive_and_restarts_the_container(box, first_snapshot):
    result = first_snapshot["result"]
    path = result["path"]
    assert NAME_RE.match(os.path.basename(path)), path
    assert result["changed"] is True
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert result["size"] == os.path.getsize(path)
    assert result["sha256"] == _sha256(path)
    with open(path + ".sha256", encoding="utf-8") as handle:
        assert handle.read() == f"{result['sha256']}  {os.path.basename(path)}\n"
    restore_point, manifest = read_restore_point(path)
    assert result["restore_point"] == restore_point["stem"] == os.path.basename(path)[:-len(".tar.gz")]
    assert result["manifest"] == os.path.join(os.path.dirname(path), restore_point["stem"] + ".manifest.json")
    assert restore_point["kind"] == "volume" and not os.path.exists(path + ".manifest.json")
    assert manifest["sha256"] == result["sha256"] and manifest["pg_version"] == "18"
    assert manifest["role"] == "data_directory" and manifest["source"] == {"volume": box.volume}
    # gzip to the end, and the contract's `tar czf FILE -C /data .` layout.
    subprocess.run(["gzip", "-t", path], check=True)
    names = subprocess.run(["tar", "-tzf", path], check=True, capture_output=True, text=True).stdout.split()
    assert "./PG_VERSION" in names and "./global/pg_control" in names and "./pg_wal" in [n.rstrip("/") for n in names]
    assert all(name == "./" or name.startswith("./") for name in names), names[:5]
    # The container was stopped and started again, and PostgreSQL is back.
    assert result["stopped"] == [box.name] and result["started"] == [box.name]
    assert result["ready"] is True and result["pg_version"] == "18"
    assert 0 < result["downtime"] <= result["duration"]
    assert box.started_at() != first_snapshot["started_at"]
    assert box.accepts_connections()
    assert box.fingerprint() == first_snapshot["fingerprint"]
    assert box.helpers() == []


def test_retention_deletes_only_expired_snapshots(backup_dir, planted, first_snapshot):
    removed = first_snapshot["result"]["removed"]
    expected = sorted(p for path in planted["expired"] for p in (path, path + ".sha256"))
    assert sorted(removed) == expected
    for path in expected:
        assert not os.path.lexists(path)
    for path in planted["kept"]:  # 200 days old, but one of the newest 3 (with the new one)
        assert os.path.exists(path) and os.path.exists(path + ".sha256")
    for name in planted["decoys"]:
        assert (backup_dir / name).exists(), name
    assert os.path.islink(planted["link"]) and open(planted["target"], "rb").read() == b"target"
    assert (backup_dir / "supabase-volume-20190103_000000.tar.gz").is_dir()
    # Check mode predicted the same removals and the same kind of file.
    check = first_snapshot["check"]
    assert check["changed"] is True and sorted(check["removed"]) == expected
    assert NAME_RE.match(os.path.basename(check["path"])) and check["size"] is None


def test_check_mode_changes_nothing(box, backup_dir, first_snapshot, collections_path):
    started_at = box.started_at()
    listing = sorted(os.listdir(backup_dir))
    expired = backup_dir / "supabase-volume-20180101_000000.tar.gz"
    vh.write_file(expired, b"old")
    vh.set_age(expired, 1000)
    try:
        results = vh.run_steps(collections_path, [
            vh.module_step("snap", "volume_snapshot",
                           dict(box.module_args, backup_dir=str(backup_dir), retention_keep_min=1), check=True),
            vh.module_step("restore", "volume_snapshot",
                           dict(box.module_args, state="restored", src=first_snapshot["path"]), check=True),
            vh.module_step("newest", "volume_snapshot",
                           dict(box.module_args, state="restored", backup_dir=str(backup_dir)), check=True),
            vh.module_step("by_stem", "volume_snapshot",
                           dict(box.module_args, state="restored", backup_dir=str(backup_dir),
                                restore_point=first_snapshot["result"]["restore_point"]), check=True),
            vh.module_step("logical_stem", "volume_snapshot",
                           dict(box.module_args, state="restored", backup_dir=str(backup_dir),
                                restore_point="supabase_backup_20260101_020000"), check=True),
            vh.module_step("missing_stem", "volume_snapshot",
                           dict(box.module_args, state="restored", backup_dir=str(backup_dir),
                                restore_point="supabase-volume-19990101_000000"), check=True),
            vh.module_step("present_stem", "volume_snapshot",
                           dict(box.module_args, backup_dir=str(backup_dir),
                                restore_point=first_snapshot["result"]["restore_point"]), check=True),
        ])
        assert results["by_stem"]["src"] == first_snapshot["path"] and results["by_stem"]["changed"] is True
        vh.assert_clean_failure(results["logical_stem"], "restore_point 'supabase_backup_20260101_020000' is not a "
                                "volume restore point name: give supabase-volume-YYYYMMDD_HHMMSS")
        vh.assert_clean_failure(results["missing_stem"], "no restore point supabase-volume-19990101_000000 in")
        vh.assert_clean_failure(results["present_stem"], "restore_point is only for state=restored")
        for key in ("snap", "restore", "newest"):
            vh.assert_ok(results[key])
            assert results[key]["changed"] is True
        assert str(expired) in results["snap"]["removed"]
        assert results["restore"]["stopped"] == [box.name] and results["restore"]["pg_version"] == "18"
        assert results["restore"]["sha256"] == first_snapshot["result"]["sha256"]
        assert "Would stop container" in results["restore"]["msg"]
        assert results["newest"]["src"] == first_snapshot["path"]
        assert box.started_at() == started_at
        assert expired.exists()
        assert sorted(os.listdir(backup_dir)) == sorted(listing + [expired.name])
    finally:
        expired.unlink()


def test_restore_brings_back_identical_data_and_files(box, first_snapshot, run_module, tmp_path):
    # Damage the data and the files.
    box.psql("DROP TABLE learned_constraints CASCADE; DELETE FROM knowledge_base WHERE id % 3 = 0; "
             "UPDATE \"Weird Table\" SET note = 'changed'; CREATE TABLE after_snapshot (x int)")
    probe = f"{vh.DB_DATA_DIR}/{vh.PROBE_DIR}"
    box.sh("chmod", "0777", f"{probe}/secret")
    box.sh("rm", f"{probe}/relative-link")
    assert box.fingerprint() != first_snapshot["fingerprint"]
    started_at = box.started_at()

    # By its restore point's stem, as an operator picks one from a listing; recorded as a volume restore.
    stem = first_snapshot["result"]["restore_point"]
    metrics = tmp_path / "metrics.prom"
    result = run_module("volume_snapshot", dict(box.module_args, state="restored", restore_point=stem,
                                                backup_dir=os.path.dirname(first_snapshot["path"]),
                                                metrics_file=str(metrics), confirm=True))
    vh.assert_ok(result)
    assert result["src"] == first_snapshot["path"] and result["restore_point"] == stem
    restore = parse_metrics(metrics, "volume", "restore")
    assert restore["supabase_backup_success"] == 1 and restore["supabase_backup_size_bytes"] == result["size"]
    assert parse_metrics(metrics, "volume") == {}  # a restore leaves the snapshots' own samples alone
    assert result["changed"] is True and result["ready"] is True
    assert result["stopped"] == [box.name] and result["started"] == [box.name]
    assert result["previous_contents"] == "deleted" and result["checksum_verified"] is True
    assert result["sha256"] == first_snapshot["result"]["sha256"] and result["downtime"] > 0
    assert box.accepts_connections() and box.started_at() != started_at
    assert box.fingerprint() == first_snapshot["fingerprint"]
    assert box.probes() == first_snapshot["probes"]
    assert "2750" in box.probes().splitlines()[1] and "1234 4321 640" in box.probes().splitlines()[2]
    assert not [name for name in box.top_level() if name.startswith(vh.ASIDE_PREFIX)]
    assert box.helpers() == []
    # The vector index works on the restored files (probes = lists: at the default of one probe an
    # IVFFlat scan may legitimately return fewer rows than asked for).
    assert box.psql("SET enable_seqscan = off; SET ivfflat.probes = 100; SELECT count(*) FROM (SELECT id FROM knowledge_base "
                    "ORDER BY embedding <=> (SELECT embedding FROM knowledge_base WHERE id = 1) LIMIT 3) s") == "3"


def test_unusable_archives_are_refused_with_nothing_stopped(box, first_snapshot, tmp_path, collections_path):
    good = first_snapshot["path"]
    tar = vh.tar_bytes(good)
    with open(good, "rb") as handle:
        compressed = handle.read()
    cases = {
        "truncated": (vh.write_file(tmp_path / "truncated.tar.gz", compressed[:len(compressed) // 2]),
                      ["corrupt", "truncated"]),
        "not_gzip": (vh.write_file(tmp_path / "plain.tar.gz", tar), ["not gzip-compressed"]),
        "gzip_not_tar": (vh.write_file(tmp_path / "text.tar.gz", gzip.compress(b"not a tar archive\n" * 500)),
                         ["not a valid tar archive"]),
        "tar_cut": (vh.write_file(tmp_path / "cut.tar.gz", gzip.compress(tar[:len(tar) // 2])),
                    ["truncated"]),
        "no_pgdata": (vh.rewrite_archive(good, tmp_path / "nopg.tar.gz", drop=["./PG_VERSION"]), ["no PG_VERSION"]),
        "checksum": (vh.write_file(tmp_path / "sum.tar.gz", compressed), ["does not match its checksum file"]),
        "missing": (str(tmp_path / "missing.tar.gz"), ["does not exist"]),
        "unconfirmed": (good, ["confirm must be true"]),
    }
    vh.write_file(tmp_path / "sum.tar.gz.sha256", b"%s  sum.tar.gz\n" % (b"0" * 64))
    evil = tarfile.TarInfo("../escape")
    evil.size = 0
    cases["escape"] = (vh.rewrite_archive(good, tmp_path / "evil.tar.gz", append=[evil]), ["leave the volume"])
    started_at = box.started_at()
    steps = [vh.module_step(key, "volume_snapshot",
                            dict(box.module_args, state="restored", src=src, confirm=key != "unconfirmed"))
             for key, (src, _fragments) in cases.items()]
    results = vh.run_steps(collections_path, steps)
    for key, (_src, fragments) in cases.items():
        vh.assert_clean_failure(results[key], *fragments)
        assert results[key].get("changed") is not True, key
    assert box.started_at() == started_at and box.running()
    assert box.helpers() == []
    assert not [name for name in box.top_level() if name.startswith(vh.ASIDE_PREFIX)]
    assert box.fingerprint() == first_snapshot["fingerprint"]


def test_snapshot_out_of_space_keeps_nothing_and_restarts_the_container(box, first_snapshot, run_module):
    started_at = box.started_at()
    with vh.tmpfs("256k") as directory:
        result = run_module("volume_snapshot", dict(box.module_args, backup_dir=directory))
        vh.assert_clean_failure(result, "no space left", "runs again")
        assert os.listdir(directory) == []  # no partial file, no temporary file
    assert result["stopped"] == [box.name] and result["started"] == [box.name] and result["ready"] is True
    assert box.started_at() != started_at
    assert box.accepts_connections()
    assert box.fingerprint() == first_snapshot["fingerprint"]


def test_failed_restores_put_the_previous_contents_back(box, first_snapshot, tmp_path, collections_path):
    box.psql("CREATE TABLE IF NOT EXISTS restore_marker (note text); INSERT INTO restore_marker VALUES ('current')")
    current = box.fingerprint()
    assert current != first_snapshot["fingerprint"]
    # 1. Extraction fails part-way: a hard link to a file the archive does not have, after all the data.
    link = tarfile.TarInfo("./zz-hard-link")
    link.type = tarfile.LNKTYPE
    link.linkname = "./no-such-file"
    broken = vh.rewrite_archive(first_snapshot["path"], tmp_path / "hardlink.tar.gz", append=[link])
    # 2. The new contents go in, but PostgreSQL cannot start on them (no postgresql.conf).
    unstartable = vh.rewrite_archive(first_snapshot["path"], tmp_path / "noconf.tar.gz",
                                     drop=["./postgresql.conf"])
    args = dict(box.module_args, state="restored", confirm=True, ready_timeout=60)
    results = vh.run_steps(collections_path, [
        vh.module_step("extract", "volume_snapshot", dict(args, src=broken)),
        vh.module_step("start", "volume_snapshot", dict(args, src=unstartable)),
    ])
    vh.assert_clean_failure(results["extract"], "previous contents were put back", "no-such-file")
    vh.assert_clean_failure(results["start"], "previous contents were put back", "postgresql.conf")
    for key in ("extract", "start"):
        assert results[key]["rolled_back"] is True and results[key]["ready"] is True, results[key]
        assert results[key]["stopped"] == [box.name] and results[key]["started"] == [box.name]
    assert box.accepts_connections()
    assert box.fingerprint() == current
    assert box.probes() == first_snapshot["probes"]
    assert not [name for name in box.top_level() if name.startswith(vh.ASIDE_PREFIX) or name == "zz-hard-link"]
    assert box.helpers() == []


def _interrupt_a_restore(box, aside):
    """What a restore killed while writing leaves: the DB stopped, the contents in ``aside``, a partial new PGDATA."""
    client = testbed.docker_client()
    client.containers.get(box.name).stop(timeout=30)
    script = ('set -e; cd "$1"; mkdir -m 0700 "$2"; find . -mindepth 1 -maxdepth 1 ! -name "$2" -exec mv -- {} "$2"/ \\;; '
              'echo 18 > PG_VERSION; mkdir base; echo partial > base/half-written')
    client.containers.run(testbed.DB_IMAGE, entrypoint=["bash", "-c", script, "interrupt", vh.DB_DATA_DIR, aside],
                          user="0", remove=True, volumes={box.volume: {"bind": vh.DB_DATA_DIR, "mode": "rw"}},
                          labels={vh.TEST_LABEL: "volume_snapshot"})


def test_the_next_restore_finishes_an_interrupted_one(box, first_snapshot, tmp_path, collections_path):
    """A restore whose process died while writing left the DB stopped on half-written contents, the previous
    ones set aside. The next restore puts those back first: when it fails too, its rollback returns to them
    (not to the half-written ones); when it succeeds, nothing of either is left."""
    box.psql("CREATE TABLE IF NOT EXISTS restore_marker (note text); INSERT INTO restore_marker VALUES ('interrupted')")
    current = box.fingerprint()
    unstartable = vh.rewrite_archive(first_snapshot["path"], tmp_path / "noconf.tar.gz", drop=["./postgresql.conf"])
    args = dict(box.module_args, state="restored", confirm=True, ready_timeout=60)
    try:
        _interrupt_a_restore(box, vh.ASIDE_PREFIX + "20261127_000000-0badcafe")
        failed = vh.run_steps(collections_path, [vh.module_step("fail", "volume_snapshot", dict(args, src=unstartable))])
        vh.assert_clean_failure(failed["fail"], "previous contents were put back", "postgresql.conf")
        # The DB did not run when this restore began, so it is left stopped, on the contents from before.
        assert failed["fail"]["rolled_back"] is True and failed["fail"]["stopped"] == [], failed["fail"]
        assert any("were put back first" in warning for warning in failed["fail"].get("warnings", []))
        assert not box.running()
        testbed.docker_client().containers.get(box.name).start()
        box.wait_ready()
        assert box.fingerprint() == current
        assert not [name for name in box.top_level() if name.startswith(vh.ASIDE_PREFIX)]
        assert "half-written" not in box.sh("ls", "-A", f"{vh.DB_DATA_DIR}/base").split()

        _interrupt_a_restore(box, vh.ASIDE_PREFIX + "20261127_000001-0badcafe")
        done = vh.run_steps(collections_path, [vh.module_step("ok", "volume_snapshot",
                                                              dict(args, src=first_snapshot["path"]))])["ok"]
        vh.assert_ok(done)
        assert done["interrupted_restore"] == {"set_aside": vh.ASIDE_PREFIX + "20261127_000001-0badcafe",
                                               "put_back": True}
        assert done["stopped"] == [] and done["previous_contents"] == "deleted"
        assert box.fingerprint() == first_snapshot["fingerprint"] and box.probes() == first_snapshot["probes"]
        assert not [name for name in box.top_level() if name.startswith(vh.ASIDE_PREFIX)]
        assert box.helpers() == []
    finally:
        if not box.running():
            testbed.docker_client().containers.get(box.name).start()
        box.wait_ready()


def test_two_interrupted_restores_are_refused_with_nothing_stopped(box, first_snapshot, collections_path):
    started_at = box.started_at()
    for name in ("20261127_000002-00000001", "20261127_000003-00000002"):
        box.sh("mkdir", "-m", "0700", f"{vh.DB_DATA_DIR}/{vh.ASIDE_PREFIX}{name}")
    try:
        result = vh.run_steps(collections_path, [vh.module_step("refused", "volume_snapshot", dict(
            box.module_args, state="restored", confirm=True, src=first_snapshot["path"]))])["refused"]
        vh.assert_clean_failure(result, "2 sets of contents set aside by interrupted restores", "nothing was changed")
        assert box.started_at() == started_at and box.running() and box.helpers() == []
    finally:
        box.sh("sh", "-c", f"rmdir {vh.DB_DATA_DIR}/{vh.ASIDE_PREFIX}*")


def test_playbooks(box, backup_dir, first_snapshot, collections_path):
    venv = os.path.dirname(os.path.dirname(sys.executable))
    common = {"volume_snapshot_hosts": "localhost", "volume_snapshot_container": box.name,
              "volume_snapshot_volume": box.volume, "volume_snapshot_backup_dir": str(backup_dir),
              "volume_snapshot_venv_dir": venv}
    before = set(vh.snapshot_names(backup_dir))
    proc = vh.run_playbook(collections_path, REPO / "playbooks" / "volume_backup.yml", common)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    new = sorted(set(vh.snapshot_names(backup_dir)) - before)
    assert [name for name in new if name.endswith(".tar.gz")], new
    newest = str(backup_dir / [name for name in new if name.endswith(".tar.gz")][0])
    box.psql("CREATE TABLE after_playbook_backup (x int)")
    started_at = box.started_at()
    # Check mode verifies the newest snapshot and shows the plan; without a terminal and without
    # volume_snapshot_confirm, a real run asks, gets no answer and stops. Nothing happens either way.
    proc = vh.run_playbook(collections_path, REPO / "playbooks" / "volume_restore.yml", common, check=True)
    assert proc.returncode == 0 and "Check mode, nothing changed." in proc.stdout, proc.stdout[-4000:]
    assert newest in proc.stdout
    proc = vh.run_playbook(collections_path, REPO / "playbooks" / "volume_restore.yml", common)
    assert proc.returncode != 0 and "stdin is not interactive" in proc.stdout, proc.stdout[-4000:]
    assert box.started_at() == started_at and "after_playbook_backup" in box.fingerprint()
    proc = vh.run_playbook(collections_path, REPO / "playbooks" / "volume_restore.yml", dict(common, volume_snapshot_confirm=True))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert newest in proc.stdout
    assert box.accepts_connections() and box.started_at() != started_at
    assert "after_playbook_backup" not in box.fingerprint()


# ---------------------------------------------------- bind-mounted path --

@pytest.fixture(scope="module")
def bind_box(stack):
    """Our own DB container on a host directory, which is a tmpfs we can shrink."""
    with vh.tmpfs("1g") as directory:
        db = vh.DbBox(name="cortexreview-voltest-bind-db", path=directory)
        db.remove()
        try:
            db.create()
            db.psql("CREATE TABLE notes (id serial PRIMARY KEY, body text); "
                    "INSERT INTO notes (body) SELECT md5(g::text) FROM generate_series(1, 2000) g")
            db.make_probes()
            yield db
        finally:
            db.remove()


def test_bind_path_round_trip_then_out_of_space_restore_rolls_back(bind_box, tmp_path, collections_path, run_module):
    original = bind_box.fingerprint()
    probes = bind_box.probes()
    args = dict(bind_box.module_args)
    damage = ["docker", "exec", bind_box.name, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres",
              "-c", "DELETE FROM notes WHERE id > 100"]
    results = vh.run_steps(collections_path, [
        vh.module_step("snap", "volume_snapshot", dict(args, backup_dir=str(tmp_path))),
        vh.command_step("damage", damage),
        vh.module_step("restore", "volume_snapshot",
                       dict(args, state="restored", src="{{ r_snap.path }}", confirm=True), template=True),
    ])
    for key in ("snap", "damage", "restore"):
        vh.assert_ok(results[key])
    assert results["snap"]["stopped"] == [bind_box.name]
    assert read_restore_point(results["snap"]["path"])[1]["source"] == {"path": bind_box.path}
    assert bind_box.fingerprint() == original
    assert bind_box.probes() == probes

    # Now the directory has room for the current contents but not for a second copy.
    bind_box.psql("INSERT INTO notes (body) VALUES ('after the snapshot')")
    current = bind_box.fingerprint()
    room = vh.used_bytes(bind_box.path) + results["snap"]["uncompressed_size"] // 2
    vh.remount(bind_box.path, "%dk" % (room // 1024))
    try:
        result = run_module("volume_snapshot", dict(args, state="restored", src=results["snap"]["path"],
                                                    confirm=True))
    finally:
        vh.remount(bind_box.path, "1g")
    vh.assert_clean_failure(result, "previous contents were put back", "no space left")
    assert result["rolled_back"] is True and result["ready"] is True
    assert bind_box.accepts_connections()
    assert bind_box.fingerprint() == current
    assert bind_box.probes() == probes
    assert not [name for name in bind_box.top_level() if name.startswith(vh.ASIDE_PREFIX)]
