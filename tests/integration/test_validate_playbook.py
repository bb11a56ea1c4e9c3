"""playbooks/validate.yml on the real stack: a good backup passes, a broken one fails the play, an
encrypted one passes with the inherited passphrase and fails cleanly with a wrong one."""

import glob
import gzip
import json
import os
import shutil
import sys
import tempfile

import pytest

import testbed

PLAYBOOK = testbed.REPO_ROOT / "playbooks" / "validate.yml"
PASSPHRASE = "validate playbook passphrase 3Kd"


@pytest.fixture(scope="module")
def scratch(stack, run_module):
    db = "validate_pb_%d" % os.getpid()
    base = tempfile.mkdtemp(prefix="cortexreview-validate-pb-")
    testbed.psql('CREATE DATABASE "%s" TEMPLATE template0' % db, "template1")
    try:
        testbed.psql(testbed.SEED_SQL.read_text(), db)
        good_dir = os.path.join(base, "good")
        dump = run_module("supabase_dump", {"backup_dir": good_dir, "db": db})
        assert not dump.get("failed"), dump
        # The same dump with a statement that fails after the first COPY block.
        with gzip.open(dump["path"], "rb") as handle:
            text = handle.read()
        cut = text.index(b"\\.\n") + 3
        broken_dir = os.path.join(base, "broken")
        os.makedirs(broken_dir, mode=0o700)
        broken = os.path.join(broken_dir, os.path.basename(dump["path"]))
        with gzip.open(broken, "wb") as handle:
            handle.write(text[:cut] + b"SELECT 1/0;\n" + text[cut:])
        encrypted = run_module("supabase_dump", {"backup_dir": os.path.join(base, "encrypted"), "db": db,
                                                 "encrypt_passphrase": PASSPHRASE})
        assert not encrypted.get("failed"), encrypted
        assert encrypted["path"].endswith(".sql.gz.gpg"), encrypted["path"]
        wrong = os.path.join(base, "wrong-passphrase")
        fd = os.open(wrong, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("not the passphrase\n")
        yield {"db": db, "good": dump["path"], "broken": broken, "tables": dump["tables"],
               "encrypted": encrypted["path"], "wrong_passphrase_file": wrong}
    finally:
        testbed.psql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % db, "template1")
        shutil.rmtree(base, ignore_errors=True)


def _run(run_playbook, scratch, src, **extra_vars):
    # The test runner's Python has the Docker SDK and zlib-ng, as the role's virtualenv would.
    venv = os.path.dirname(os.path.dirname(sys.executable))
    return run_playbook(PLAYBOOK, dict(testbed.stack_role_vars(), supabase_validate_hosts="localhost",
                                       supabase_validate_db=scratch["db"], supabase_validate_src=src,
                                       supabase_validate_venv_dir=venv, **extra_vars), extra_args=["-v"])


def _staging_databases(db):
    return [name for name in testbed.list_databases() if name.startswith(db + "_validate_")]


def test_good_backup_passes_with_a_report(run_playbook, scratch):
    proc = _run(run_playbook, scratch, scratch["good"])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "Supabase backup validation: PASSED" in proc.stdout
    with open(scratch["good"] + ".validation.json", encoding="utf-8") as handle:
        report = json.load(handle)
    assert report["passed"] is True and report["row_counts"] == scratch["tables"]
    assert report["contract_queries"]["row_counts"]["knowledge_base"] == 300
    for path in glob.glob(scratch["good"] + ".validation.*"):
        assert os.stat(path).st_mode & 0o777 == 0o600
    assert _staging_databases(scratch["db"]) == []


def test_broken_backup_fails_the_play_and_leaves_nothing(run_playbook, scratch):
    before = testbed.table_counts(scratch["db"])
    proc = _run(run_playbook, scratch, scratch["broken"])
    assert proc.returncode != 0
    assert "Backup validation FAILED" in proc.stdout and "division by zero" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    with open(scratch["broken"] + ".validation.json", encoding="utf-8") as handle:
        report = json.load(handle)
    assert report["passed"] is False and "division by zero" in report["error"]
    assert _staging_databases(scratch["db"]) == []
    assert testbed.table_counts(scratch["db"]) == before


def test_encrypted_backup_passes_with_the_inherited_passphrase(run_playbook, scratch):
    # The backup inventory's passphrase (the supabase_backup role's variable) is validate.yml's default.
    proc = _run(run_playbook, scratch, scratch["encrypted"], supabase_backup_encrypt_passphrase=PASSPHRASE)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "Supabase backup validation: PASSED" in proc.stdout
    assert PASSPHRASE not in proc.stdout + proc.stderr
    with open(scratch["encrypted"] + ".validation.json", encoding="utf-8") as handle:
        report = json.load(handle)
    assert report["passed"] is True and report["row_counts"] == scratch["tables"]
    assert _staging_databases(scratch["db"]) == []


def test_encrypted_backup_with_a_wrong_passphrase_file_fails_cleanly(run_playbook, scratch):
    # supabase_validate_encrypt_passphrase_file wins over the inherited passphrase: no conflict, and it is wrong.
    proc = _run(run_playbook, scratch, scratch["encrypted"], supabase_backup_encrypt_passphrase=PASSPHRASE,
                supabase_validate_encrypt_passphrase_file=scratch["wrong_passphrase_file"])
    assert proc.returncode != 0
    assert "Backup validation FAILED" in proc.stdout and "wrong passphrase" in proc.stdout, proc.stdout[-4000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert PASSPHRASE not in proc.stdout + proc.stderr
    assert _staging_databases(scratch["db"]) == []


def test_restore_point_picks_an_older_backup_over_the_newest(run_playbook, scratch):
    good_dir = os.path.dirname(scratch["good"])
    stem = os.path.basename(scratch["good"])[:-len(".sql.gz")]
    newer = os.path.join(good_dir, "supabase_backup_20991231_235959.sql.gz")
    with open(newer, "wb") as handle:
        handle.write(b"not a backup at all")  # the newest: validating it would fail
    try:
        proc = _run(run_playbook, scratch, "", supabase_validate_backup_dir=good_dir,
                    supabase_validate_restore_point=stem)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        assert "Supabase backup validation: PASSED" in proc.stdout
        assert not os.path.exists(newer + ".validation.json")
        with open(scratch["good"] + ".validation.json", encoding="utf-8") as handle:
            assert json.load(handle)["passed"] is True
        refused = _run(run_playbook, scratch, "", supabase_validate_backup_dir=good_dir,
                       supabase_validate_restore_point="supabase_backup_2099")
        assert refused.returncode != 0
        assert "is not a logical restore point name" in refused.stdout, refused.stdout[-3000:]
    finally:
        os.unlink(newer)
