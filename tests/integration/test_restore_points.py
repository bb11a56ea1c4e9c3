# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Restore points against the real test bed, on a database of our own (never ``postgres``).

One ansible-playbook run, paused between the steps: two backups A and B of a database that
changes between them; refused ``restore_point`` options (nothing changes, the failed runs are
in the metrics); ``supabase_validate`` and ``supabase_restore`` of A by its stem, although B is
newer (the data comes back as it was at A); then retention of a directory of old restore points
of every version, which removes each whole and nothing else.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
import time
from types import SimpleNamespace

import pytest

import testbed
from dump_helpers import (
    DAY,
    backup_name,
    parse_metrics,
    plant_backup,
    read_restore_point,
    restore_point_names,
    set_age,
    sha256_file,
    snapshot,
)
from restore_helpers import (
    Pause,
    Task,
    TaskSession,
    assert_clean_failure,
    assert_ok,
    create_seeded_db,
    databases,
    db_name,
    drop_databases,
    fingerprint,
)

MISSING_STEM = "supabase_backup_19990101_000000"


def _v2_restore_point(directory, age_seconds, now):
    """An old restore point as this version writes it, with a validation report; returns its files."""
    part = plant_backup(directory, age_seconds, now=now, sidecars=False)[0]
    name = os.path.basename(part)
    stem = name[:-len(".sql.gz")]
    files = [part]
    contents = {
        name + ".sha256": f"{sha256_file(part)}  {name}\n",
        stem + ".manifest.json": json.dumps({
            "format": "cortexreview.supabase_backup/restore-point/v2", "stem": stem, "kind": "logical",
            "created_at": "2025-01-01T00:00:00+00:00",
            "parts": [{"name": name, "role": "database", "sha256": sha256_file(part)}]}),
        name + ".validation.json": json.dumps({"passed": True}),
        name + ".validation.txt": "PASSED\n",
    }
    for other, content in contents.items():
        path = os.path.join(directory, other)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(content)
        os.chmod(path, 0o600)
        set_age(path, age_seconds, now)
        files.append(path)
    return files


def plant_retention_directory(directory, outside):
    """Old restore points of every version, and files that only look like parts of them."""
    now = time.time()
    planted = SimpleNamespace()
    planted.v2 = _v2_restore_point(directory, 20 * DAY, now)
    planted.v1 = plant_backup(directory, 15 * DAY, now=now)                  # part, .sha256, <part>.manifest.json
    planted.contract = plant_backup(directory, 12 * DAY, now=now, sidecars=False)
    planted.recent = _v2_restore_point(directory, 1 * DAY, now)              # younger than retention_days
    # Not files of any restore point, however old: they stay.
    target = os.path.join(outside, "precious.txt")
    with open(target, "w", encoding="utf-8") as fh:
        fh.write("precious")
    linked_report = planted.v1[0] + ".validation.txt"
    os.symlink(target, linked_report)
    orphan_stem = backup_name(30 * DAY, now=now)[:-len(".sql.gz")]
    planted.survivors = [linked_report]
    for name in (orphan_stem + ".manifest.json", orphan_stem + ".manifest.json.bak",
                 os.path.basename(planted.v2[0]) + ".old", "other_" + os.path.basename(planted.v2[0])):
        path = os.path.join(directory, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("{}")
        set_age(path, 30 * DAY, now)
        planted.survivors.append(path)
    return planted


@pytest.fixture(scope="module")
def points(stack, collections_path):
    stack.ensure_healthy()
    db = db_name("rp")
    base = tempfile.mkdtemp(prefix="cortexreview-restore-points-it-")
    backup_dir = os.path.join(base, "backups")
    retention_dir = os.path.join(base, "retention")
    outside = os.path.join(base, "outside")
    metrics = os.path.join(base, "metrics", "supabase_backup.prom")
    for path in (retention_dir, outside):
        os.makedirs(path, 0o700)
    try:
        create_seeded_db(db)
        rp = SimpleNamespace(db=db, backup_dir=backup_dir, metrics=metrics, states={})
        rp.planted = plant_retention_directory(retention_dir, outside)
        rp.retention_before = snapshot(retention_dir)
        dump = {"backup_dir": backup_dir, "db": db, "metrics_file": metrics}
        restore = {"backup_dir": backup_dir, "db": db, "confirm": True, "stop_containers": [], "metrics_file": metrics}
        stem_a = "{{ r_dump_a.restore_point }}"
        steps = [
            Task("dump_a", "supabase_dump", dump),
            Pause("a_done"),
            Task("dump_b", "supabase_dump", dump),
            Pause("b_done"),
            Task("bad_name", "supabase_restore", {**restore, "restore_point": "supabase_backup_2026-01-01"}),
            Task("other_prefix", "supabase_restore", {**restore, "restore_point": "nightly_20260101_020000"}),
            Task("missing", "supabase_restore", {**restore, "restore_point": MISSING_STEM}),
            Task("with_src", "supabase_restore", {"src": "{{ r_dump_a.path }}", "restore_point": stem_a, "db": db,
                                                  "confirm": True, "stop_containers": []}, template=True),
            Task("without_dir", "supabase_restore", {"restore_point": stem_a, "db": db, "confirm": True},
                 template=True),
            Task("bad_validate", "supabase_validate", {"backup_dir": backup_dir, "db": db,
                                                       "restore_point": MISSING_STEM}),
            Task("plan", "supabase_restore", {**restore, "restore_point": stem_a}, check=True, template=True),
            Pause("refused"),
            Task("validate_a", "supabase_validate", {"backup_dir": backup_dir, "db": db, "metrics_file": metrics,
                                                     "restore_point": stem_a}, template=True),
            Task("restore_a", "supabase_restore", {**restore, "restore_point": stem_a, "keep_previous": False,
                                                   "writers_stop_at": "load"},
                 template=True),
            Pause("restored"),
            Task("retention", "supabase_dump", {"backup_dir": retention_dir, "db": db, "retention_days": 7,
                                                "retention_keep_min": 1}),
        ]
        with TaskSession(collections_path, steps) as session:
            results = session.wait("a_done")
            assert_ok(results["dump_a"])
            rp.states["a"] = fingerprint(db)
            testbed.psql("DELETE FROM knowledge_base WHERE id > 100; DELETE FROM learned_constraints;", db)
            rp.states["b"] = fingerprint(db)
            results = session.step("a_done", "b_done")
            assert_ok(results["dump_b"])
            testbed.psql("DELETE FROM feedback_audit_log;", db)
            rp.states["damaged"] = fingerprint(db)
            rp.backups_before_refusals = snapshot(backup_dir)
            rp.results = session.step("b_done", "refused")
            rp.states["refused"] = fingerprint(db)
            rp.databases_after_refusals = databases(db)
            rp.backups_after_refusals = snapshot(backup_dir)
            rp.restore_metrics_after_refusals = parse_metrics(metrics, "logical", "restore")
            rp.results = session.step("refused", "restored")
            rp.states["restored"] = fingerprint(db)
            rp.results = session.finish("restored")
        rp.retention_after = snapshot(retention_dir)
        yield rp
    finally:
        drop_databases(db, prefix=db)
        shutil.rmtree(base, ignore_errors=True)


def test_two_backups_are_two_restore_points(points):
    a, b = points.results["dump_a"], points.results["dump_b"]
    assert a["restore_point"] != b["restore_point"] and a["restore_point"] < b["restore_point"]
    for result in (a, b):
        assert os.path.basename(result["path"]) == result["restore_point"] + ".sql.gz"
        manifest, part = read_restore_point(result["path"])
        assert manifest["stem"] == result["restore_point"] and part["sha256"] == result["sha256"]
    # The data really differs between them: restoring the newest would not give A back.
    assert points.states["a"] != points.states["b"] != points.states["damaged"]


@pytest.mark.parametrize("key,fragments", [
    ("bad_name", ("restore_point 'supabase_backup_2026-01-01' is not a logical restore point name",
                  "supabase_backup_YYYYMMDD_HHMMSS")),
    ("other_prefix", ("restore_point 'nightly_20260101_020000' is not a logical restore point name",)),
    ("missing", ("no restore point %s in" % MISSING_STEM,)),
    ("with_src", ("mutually exclusive", "restore_point")),
    ("without_dir", ("required", "backup_dir")),
    ("bad_validate", ("no restore point %s in" % MISSING_STEM,)),
])
def test_bad_restore_point_is_a_one_line_error(points, key, fragments):
    assert_clean_failure(points.results[key], *fragments)


def test_refusals_and_check_mode_change_nothing(points):
    assert points.states["refused"] == points.states["damaged"]
    assert points.databases_after_refusals == [points.db]
    assert points.backups_after_refusals == points.backups_before_refusals
    plan = points.results["plan"]
    assert_ok(plan)
    assert plan["changed"] is True and plan["src"] == points.results["dump_a"]["path"]
    assert plan["restore_point"] == points.results["dump_a"]["restore_point"]
    # The rejected configurations that reached the engine are failed restores in the metrics.
    assert points.restore_metrics_after_refusals["supabase_backup_success"] == 0
    assert points.restore_metrics_after_refusals["supabase_backup_last_success_timestamp_seconds"] == 0


def test_validate_by_restore_point_takes_that_one_not_the_newest(points):
    result = points.results["validate_a"]
    assert_ok(result)
    a = points.results["dump_a"]
    assert result["src"] == a["path"] and result["restore_point"] == a["restore_point"] and result["passed"]
    assert result["report"] == a["path"] + ".validation.json"
    with open(result["report"], encoding="utf-8") as fh:
        report = json.load(fh)
    assert report["passed"] is True and report["restore_point"] == a["restore_point"]
    # A's data, not B's (B has no learned_constraints left)
    assert report["contract_queries"]["row_counts"]["learned_constraints"] > 0
    validate = parse_metrics(points.metrics, "logical", "validate")
    assert validate["supabase_backup_success"] == 1 and validate["supabase_backup_size_bytes"] == a["size"]


def test_restore_by_restore_point_brings_that_one_back(points):
    result = points.results["restore_a"]
    assert_ok(result)
    a = points.results["dump_a"]
    assert result["src"] == a["path"] and result["restore_point"] == a["restore_point"]
    assert points.states["restored"] == points.states["a"]
    restore = parse_metrics(points.metrics, "logical", "restore")
    assert restore["supabase_backup_success"] == 1 and restore["supabase_backup_last_success_timestamp_seconds"] > 0
    # The backups' own samples are kept beside the restore's and the validation's.
    assert parse_metrics(points.metrics)["supabase_backup_size_bytes"] == points.results["dump_b"]["size"]


def test_retention_removes_whole_restore_points_and_nothing_else(points):
    result = points.results["retention"]
    assert_ok(result)
    planted = points.planted
    expired = planted.v2 + planted.v1 + planted.contract
    assert sorted(result["removed"]) == sorted(expired)
    assert not any(os.path.lexists(path) for path in expired)
    new_files = set(restore_point_names(result["path"]))
    gone = {os.path.basename(path) for path in expired}
    assert set(points.retention_after) == (set(points.retention_before) - gone) | new_files
    for name in set(points.retention_after) - new_files:
        assert points.retention_after[name] == points.retention_before[name], name  # untouched
    for path in planted.recent + planted.survivors:
        assert os.path.lexists(path), path
    with gzip.open(result["path"]) as fh:
        assert b"PostgreSQL database dump complete" in fh.read()
