# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""supabase_validate against the real test bed: the contract's monthly validation.

One ansible-playbook run on a database of our own: a backup, then validate it (passes),
validate a copy whose SQL fails part-way (fails), validate the newest backup of a
directory, and a check-mode run. The staging database must be gone after each run and
the live database untouched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
from types import SimpleNamespace

import pytest

import testbed
from restore_helpers import (
    Pause,
    Task,
    TaskSession,
    assert_clean_failure,
    assert_ok,
    create_seeded_db,
    databases,
    db_name,
    db_oid,
    drop_databases,
    fingerprint,
    inject_failing_statement,
    write_file,
)

OLD_BROKEN = "supabase_backup_20200101_000000.sql.gz"
NEWEST_GOOD = "supabase_backup_20300101_000000.sql.gz"


def live_state(db):
    return SimpleNamespace(oid=db_oid(db), data=fingerprint(db), dbs=databases(db))


@pytest.fixture(scope="module")
def validation(stack, collections_path):
    stack.ensure_healthy()
    db = db_name("val")
    base = tempfile.mkdtemp(prefix="cortexreview-validate-it-")
    broken = os.path.join(base, "broken", "supabase_backup_20260102_000000.sql.gz")
    newest_dir = os.path.join(base, "newest")
    try:
        create_seeded_db(db)
        steps = [
            Task("dump", "supabase_dump", {"backup_dir": os.path.join(base, "backups"), "db": db}),
            Pause("dumped"),
            Task("good", "supabase_validate", {"src": "{{ r_dump.path }}", "db": db}, template=True),
            Pause("good_done"),
            Task("broken", "supabase_validate", {"src": broken, "db": db}),
            Pause("broken_done"),
            Task("newest", "supabase_validate", {"backup_dir": newest_dir, "db": db}),
            Task("check", "supabase_validate", {"src": os.path.join(newest_dir, OLD_BROKEN), "db": db}, check=True),
        ]
        with TaskSession(collections_path, steps) as session:
            results = session.wait("dumped")
            dump = results["dump"]
            assert_ok(dump)
            inject_failing_statement(dump["path"], broken)
            # newest_dir: an older broken backup, the newest good one, and a newer file of another prefix
            inject_failing_statement(dump["path"], os.path.join(newest_dir, OLD_BROKEN))
            # Renamed, the part leaves its restore point's manifest behind (it names the part); the checksum goes along.
            for suffix in ("", ".sha256"):
                shutil.copy2(dump["path"] + suffix, os.path.join(newest_dir, NEWEST_GOOD + suffix))
            with open(broken, "rb") as fh:
                write_file(os.path.join(newest_dir, "other_20990101_000000.sql.gz"), fh.read())
            before = live_state(db)
            after = {}
            session.step("dumped", "good_done")
            after["good"] = live_state(db)
            session.step("good_done", "broken_done")
            after["broken"] = live_state(db)
            results = session.finish("broken_done")
            after["newest"] = live_state(db)
            all_databases = testbed.list_databases()
        yield SimpleNamespace(db=db, base=base, results=results, dump=dump, before=before, after=after,
                              broken=broken, newest_dir=newest_dir, all_databases=all_databases)
    finally:
        drop_databases(db, prefix=db)
        shutil.rmtree(base, ignore_errors=True)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("key", ["good", "broken", "newest"])
def test_staging_database_dropped_and_live_untouched(validation, key):
    result = validation.results[key]
    staging = result["staging_database"] if "staging_database" in result else None
    if staging is None:  # a failed run reports its staging database in the report
        with open(result["report"], encoding="utf-8") as fh:
            staging = json.load(fh)["staging_database"]
    assert re.match(rf"^{validation.db}_validate_\d{{8}}_\d{{6}}$", staging)
    assert staging not in validation.all_databases
    after = validation.after[key]
    assert after.dbs == validation.before.dbs == [validation.db]
    assert after.oid == validation.before.oid
    assert after.data == validation.before.data


def test_good_backup_passes(validation):
    result, dump = validation.results["good"], validation.dump
    assert_ok(result)
    assert result["passed"] is True and result["changed"] is True
    assert result["src"] == dump["path"]
    assert result["sha256"] == dump["sha256"]
    assert result["row_counts"] == dump["tables"]
    assert result["vector_search"]["checked"] is True
    assert result["vector_search"]["neighbours"][0] == 1
    assert "public.knowledge_base_embedding_ivfflat_idx" in result["indexes"]
    contract = result["contract_queries"]
    assert contract["row_counts"] == {"knowledge_base": 300, "learned_constraints": 50, "feedback_audit_log": 100}
    assert isinstance(contract["vector_search_rows"], int) and 0 <= contract["vector_search_rows"] <= 3
    assert set(contract["indexes"]) == set(testbed.SEED_INDEXES)


def test_report_written_beside_the_backup(validation):
    result, dump = validation.results["good"], validation.dump
    report = dump["path"] + ".validation.json"
    summary = dump["path"] + ".validation.txt"
    assert result["report"] == report
    assert _mode(report) == 0o600 and _mode(summary) == 0o600
    with open(report, encoding="utf-8") as fh:
        data = json.load(fh)
    assert data["passed"] is True
    assert data["backup"] == dump["path"] and data["sha256"] == dump["sha256"]
    assert data["row_counts"] == dump["tables"]
    assert data["contract_queries"] == result["contract_queries"]
    with open(summary, encoding="utf-8") as fh:
        text = fh.read()
    assert text.splitlines()[0] == "Supabase backup validation: PASSED"
    assert re.search(r"^rows:\s+public\.knowledge_base\s+300$", text, re.M), text
    assert "index:    public.knowledge_base_embedding_ivfflat_idx" in text


def test_broken_backup_fails_with_a_failed_report(validation):
    """The SQL fails part-way (SELECT 1/0 after the first COPY block): the module fails and says why."""
    result = validation.results["broken"]
    msg = assert_clean_failure(result, "division by zero")
    assert result["report"] == validation.broken + ".validation.json"
    assert _mode(result["report"]) == 0o600
    with open(result["report"], encoding="utf-8") as fh:
        data = json.load(fh)
    assert data["passed"] is False
    assert "division by zero" in data["error"] and data["error"] == msg
    assert "row_counts" not in data
    with open(validation.broken + ".validation.txt", encoding="utf-8") as fh:
        text = fh.read()
    assert text.splitlines()[0] == "Supabase backup validation: FAILED"
    assert re.search(r"^error:\s+.*division by zero", text, re.M), text


def test_backup_dir_validates_the_newest_backup(validation):
    """The newest supabase_backup_<ts>.sql.gz (good) is picked, not the older broken one nor another prefix."""
    result = validation.results["newest"]
    newest = os.path.join(validation.newest_dir, NEWEST_GOOD)
    assert_ok(result)
    assert result["src"] == newest and result["passed"] is True
    assert result["report"] == newest + ".validation.json" and os.path.exists(result["report"])
    assert not os.path.exists(os.path.join(validation.newest_dir, OLD_BROKEN + ".validation.json"))


def test_check_mode_restores_nothing(validation):
    result = validation.results["check"]
    assert_ok(result)
    assert result["msg"].startswith("Would validate")
    assert re.match(rf"^{validation.db}_validate_\d{{8}}_\d{{6}}$", result["staging_database"])
    assert not os.path.exists(result["report"])
    assert result["staging_database"] not in testbed.list_databases()
