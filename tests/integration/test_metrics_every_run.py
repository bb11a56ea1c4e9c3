# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every run records its own sample in metrics_file, on the real stack.

Backups, validations and restores of both kinds, through the modules and the cron runner,
successful, refused (a corrupt backup) and rejected (an invalid option) alike: each run
leaves the samples of its (kind, operation) with a last_run_timestamp_seconds taken during
the run, and every other sample of the file as it was. Check mode records nothing.

The steps of a test run in one ansible-playbook (its start-up is most of a module call's
cost); between two steps a command copies the metrics file and prints the time, so each
step is judged on the file as it left it. The metrics file is parsed here with a strict
pattern of its own, not with the engine's reader.
"""

from __future__ import annotations

import os
import re
import tempfile
import time

import pytest

import testbed
import volume_helpers as vh
from dump_helpers import run_runner, write_config
from restore_helpers import create_seeded_db, databases, db_name, drop_databases, fingerprint

SAMPLE = re.compile(r'^supabase_backup_([a-z_]+)\{kind="([a-z]+)",operation="([a-z]+)"\} (\S+)$')


def read_metrics(path):
    """{(kind, operation): {short metric name: value}}; {} when there is no file yet."""
    if not os.path.exists(path):
        return {}
    samples = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle.read().splitlines():
            if line.startswith("# HELP supabase_backup_") or line.startswith("# TYPE supabase_backup_"):
                continue
            match = SAMPLE.match(line)
            assert match, f"unexpected line {line!r} in {path}"
            name, kind, operation, value = match.groups()
            samples.setdefault((kind, operation), {})[name] = float(value)
    return samples


def run_with_metrics(collections_path, metrics, steps, workdir):
    """Run ``steps`` (vh.module_step) in one playbook; returns (results, states) where states[i] is
    (time, samples) before step i and states[-1] after the last one."""
    snapshots = tempfile.mkdtemp(prefix="metrics-states-", dir=workdir)

    def snapshot(number):
        return vh.command_step(f"state{number}", ["sh", "-c", 'cp "$1" "$2" 2>/dev/null; date +%s', "snapshot",
                                                  str(metrics), os.path.join(snapshots, f"{number}.prom")])

    playbook = [snapshot(0)]
    for number, step in enumerate(steps, start=1):
        playbook += [step, snapshot(number)]
    results = vh.run_steps(collections_path, playbook)
    states = []
    for number in range(len(steps) + 1):
        state = results[f"state{number}"]
        assert state.get("rc") == 0, state
        states.append((int(state["stdout"]), read_metrics(os.path.join(snapshots, f"{number}.prom"))))
    return results, states


def assert_recorded(states, number, kind, operation, success):
    """Step ``number`` (1-based) recorded one run of (kind, operation) and changed no other sample."""
    (started, before), (finished, after) = states[number - 1], states[number]
    before, after = dict(before), dict(after)
    assert (kind, operation) in after, f"step {number}: no {kind}/{operation} sample in {after}"
    mine, previous = after.pop((kind, operation)), before.pop((kind, operation), {})
    assert after == before, f"step {number} changed the samples of other kinds or operations"
    assert mine["success"] == (1 if success else 0), mine
    assert started <= mine["last_run_timestamp_seconds"] <= finished, (started, mine, finished)
    assert mine["duration_seconds"] >= 0
    if success:
        assert mine["last_success_timestamp_seconds"] == mine["last_run_timestamp_seconds"], mine
        assert mine["size_bytes"] > 0, mine
    else:
        # A failed run keeps the last success of its own kind and operation.
        assert mine["last_success_timestamp_seconds"] == previous.get("last_success_timestamp_seconds", 0), mine
        assert mine["size_bytes"] == previous.get("size_bytes", 0), mine


OK, CHECK = "ok", "check mode"


def labels(module, args):
    """The (kind, operation) a run of ``module`` with ``args`` records."""
    if module == "volume_snapshot":
        return "volume", "restore" if args.get("state") == "restored" else "backup"
    return "logical", {"supabase_dump": "backup", "supabase_validate": "validate", "supabase_restore": "restore"}[module]


def judge_runs(collections_path, workdir, metrics, runs):
    """Run ``runs``, [(key, module, args, outcome)], in one playbook and judge each by its outcome:
    OK (a successful run recorded), CHECK (run in check mode: nothing recorded) or a fragment of
    the one-line error of a failed run (recorded as failed). Returns (results, states)."""
    steps = [vh.module_step(key, module, args, check=outcome == CHECK) for key, module, args, outcome in runs]
    results, states = run_with_metrics(collections_path, metrics, steps, workdir)
    for number, (key, module, args, outcome) in enumerate(runs, start=1):
        if outcome == CHECK:
            assert states[number][1] == states[number - 1][1], f"{key} (check mode) changed the metrics"
            continue
        if outcome == OK:
            vh.assert_ok(results[key])
        else:
            vh.assert_clean_failure(results[key], outcome)
            assert results[key].get("changed") is not True, results[key]
        assert_recorded(states, number, *labels(module, args), success=outcome == OK)
    return results, states


def private_copy(src, dst, length=None):
    """``dst``: a 0600 copy of ``src``, cut to ``length`` bytes (a truncated, corrupt backup)."""
    with open(src, "rb") as handle:
        data = handle.read()
    return vh.write_file(dst, data[:length] if length else data)


# ------------------------------------------------------------- logical --

@pytest.fixture(scope="module")
def seeded(stack, run_module, tmp_path_factory):
    """A seeded database of our own, a backup of it, and a truncated (corrupt) copy of that backup."""
    name = db_name("metrics")
    create_seeded_db(name)
    root = tmp_path_factory.mktemp("metrics-every-run")
    backup_dir = root / "backups"
    try:
        result = run_module("supabase_dump", {"backup_dir": str(backup_dir), "db": name})
        assert result.get("failed") is not True, result
        corrupt_dir = root / "corrupt"
        corrupt_dir.mkdir(mode=0o700)
        corrupt = private_copy(result["path"], corrupt_dir / "supabase_backup_20200101_000000.sql.gz",
                               os.path.getsize(result["path"]) // 2)
        yield {"db": name, "backup": result["path"], "backup_dir": str(backup_dir), "corrupt": corrupt}
    finally:
        drop_databases(name, prefix=name)


def test_dump_records_its_runs_rejected_configuration_included(seeded, collections_path, workdir):
    metrics = os.path.join(workdir, "textfile", "supabase_backup.prom")
    backup_dir = os.path.join(workdir, "backups")
    args = {"backup_dir": backup_dir, "db": seeded["db"], "metrics_file": metrics}
    results, states = judge_runs(collections_path, workdir, metrics, [
        ("checked", "supabase_dump", args, CHECK),
        ("dump", "supabase_dump", args, OK),
        ("rejected", "supabase_dump", dict(args, retention_days=-1), "retention_days"),
    ])
    assert states[2][1][("logical", "backup")]["size_bytes"] == os.path.getsize(results["dump"]["path"])
    stem = os.path.basename(results["dump"]["path"]).split(".")[0]
    assert os.listdir(backup_dir) and all(name.startswith(stem) for name in os.listdir(backup_dir))


def test_validate_records_its_runs_apart_from_the_backup(seeded, collections_path, workdir):
    metrics = os.path.join(workdir, "supabase_backup.prom")
    # The backup's samples, written by a real run, must survive every validation.
    args = {"db": seeded["db"], "metrics_file": metrics}
    results, states = judge_runs(collections_path, workdir, metrics, [
        ("dump", "supabase_dump", dict(args, backup_dir=os.path.join(workdir, "backups")), OK),
        ("checked", "supabase_validate", dict(args, src=seeded["backup"]), CHECK),
        ("validate", "supabase_validate", dict(args, src=seeded["backup"]), OK),
        ("corrupt", "supabase_validate", dict(args, src=seeded["corrupt"]), "truncated"),
        ("rejected", "supabase_validate", dict(args, src=seeded["backup"], maintenance_work_mem="lots"),
         "maintenance_work_mem"),
    ])
    assert results["validate"]["passed"] is True
    assert states[3][1][("logical", "validate")]["size_bytes"] == os.path.getsize(seeded["backup"])
    assert databases(seeded["db"] + "_") == []  # no staging database left behind


def test_restore_records_its_runs_refused_and_rejected_included(seeded, collections_path, workdir):
    metrics = os.path.join(workdir, "supabase_backup.prom")
    before = fingerprint(seeded["db"])
    testbed.psql("DELETE FROM public.knowledge_base WHERE id % 2 = 0", seeded["db"])
    damaged = fingerprint(seeded["db"])
    assert damaged != before
    args = {"src": seeded["corrupt"], "db": seeded["db"], "confirm": True, "stop_containers": [],
            "keep_previous": False, "writers_stop_at": "load", "metrics_file": metrics}
    judge_runs(collections_path, workdir, metrics, [
        ("corrupt", "supabase_restore", args, "truncated"),
        ("rejected", "supabase_restore", dict(args, src=seeded["backup"], maintenance_work_mem="lots"),
         "maintenance_work_mem"),
        ("checked", "supabase_restore", dict(args, src=seeded["backup"]), CHECK),
        ("restore", "supabase_restore", dict(args, src=seeded["backup"]), OK),
        ("unconfirmed", "supabase_restore", dict(args, src=seeded["backup"], confirm=False), "confirm"),
    ])
    # Only the successful restore changed the data; no scratch or previous database is left.
    assert fingerprint(seeded["db"]) == before
    assert databases(seeded["db"] + "_") == []


# ------------------------------------------------------------------ cron --

def test_cron_runner_records_its_runs_rejected_configuration_included(seeded, collections_path, workdir):
    metrics = os.path.join(workdir, "supabase_backup.prom")
    backup_dir = os.path.join(workdir, "backups")
    config = {"backup_dir": backup_dir, "db": seeded["db"], "metrics_file": metrics}
    states, listings = [(int(time.time()), read_metrics(metrics))], []
    for name, extra, code in (("good", {}, 0), ("rejected", {"retention_days": -1}, 1)):
        proc = run_runner(collections_path, write_config(os.path.join(workdir, name + ".json"), dict(config, **extra)))
        assert proc.returncode == code, proc.stdout + proc.stderr
        states.append((int(time.time()), read_metrics(metrics)))
        listings.append(sorted(os.listdir(backup_dir)))
    assert_recorded(states, 1, "logical", "backup", True)
    assert len(proc.stderr.strip().splitlines()) == 1 and "retention_days" in proc.stderr, proc.stderr
    assert_recorded(states, 2, "logical", "backup", False)
    assert listings[1] == listings[0] and listings[0]  # the rejected run wrote and removed nothing


# --------------------------------------------------------------- volume --

@pytest.fixture(scope="module")
def box(stack):
    with vh.seeded_box("cortexreview-mettest-db", "cortexreview-mettest-data") as db:
        yield db


def test_volume_snapshot_records_snapshots_and_restores(box, collections_path, workdir):
    metrics = os.path.join(workdir, "supabase_backup.prom")
    backup_dir = os.path.join(workdir, "snapshots")
    args = dict(box.module_args, metrics_file=metrics)
    results, states = judge_runs(collections_path, workdir, metrics, [
        ("snapshot", "volume_snapshot", dict(args, backup_dir=backup_dir), OK),
        ("rejected", "volume_snapshot", dict(args, backup_dir=backup_dir, retention_days=-1), "retention_days"),
    ])
    snapshot = results["snapshot"]["path"]
    stem = os.path.basename(snapshot).split(".")[0]
    assert os.listdir(backup_dir) and all(name.startswith(stem) for name in os.listdir(backup_dir))

    corrupt = private_copy(snapshot, os.path.join(workdir, "supabase-volume-20200101_000000.tar.gz"),
                           os.path.getsize(snapshot) // 2)
    contents, started_at = box.fingerprint(), box.started_at()
    restore = dict(args, state="restored", src=snapshot, confirm=True)
    results, restored = judge_runs(collections_path, workdir, metrics, [
        ("corrupt", "volume_snapshot", dict(restore, src=corrupt), "truncated"),
        ("rejected", "volume_snapshot", dict(restore, stop_timeout=-1), "stop_timeout"),
        ("checked", "volume_snapshot", restore, CHECK),
        ("restore", "volume_snapshot", restore, OK),
    ])
    assert restored[0][1] == states[-1][1]
    # The refused and rejected runs stopped nothing; the restore put the same data back.
    assert results["corrupt"].get("stopped", []) == [] and results["rejected"].get("stopped", []) == []
    assert box.started_at() != started_at and box.accepts_connections()
    assert box.fingerprint() == contents
