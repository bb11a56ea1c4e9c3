# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""backup_status through ansible-playbook, and the cron runner's --status, on backups planted in a private directory.

Neither needs the Docker test bed: they only read a directory (and write a metrics file).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from dump_helpers import (
    DAY,
    assert_clean_failure,
    backup_name,
    parse_metrics,
    plant_backup,
    write_config,
)

HOUR = 3600
RUNNER_SNIPPET = (
    "import sys; "
    "from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._runner import main; "
    "sys.exit(main(sys.argv[1:]))"
)
STATUS_KEYS = {"backup_dir", "kind", "newest", "count", "total_size", "free_bytes", "total_bytes", "validation",
               "problems"}


def plant_directory(workdir):
    """Two plain backups, a newer encrypted one with sidecars and a passed validation report of the oldest."""
    backups = os.path.join(workdir, "backups")
    os.mkdir(backups, 0o700)
    oldest = plant_backup(backups, 3 * DAY, size=1000)[0]
    plant_backup(backups, 2 * DAY, size=2000, sidecars=False)
    newest = plant_backup(backups, 30 * HOUR, name=backup_name(30 * HOUR) + ".gpg", size=3000)[0]
    with open(oldest + ".validation.json", "w", encoding="utf-8") as fh:
        json.dump({"passed": True, "validated_at": "2026-01-01T03:00:00+00:00", "backup": oldest}, fh)
    return backups, oldest, newest


def backup_sizes(backups):
    return sum(os.path.getsize(os.path.join(backups, name)) for name in os.listdir(backups)
               if name.endswith((".sql.gz", ".sql.gz.gpg")))


def run_runner(collections_path, *args):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": collections_path, "LANG": "C.UTF-8"}
    return subprocess.run([sys.executable, "-c", RUNNER_SNIPPET, *args], capture_output=True, text=True,
                          timeout=120, env=env, check=False)


def parse_metrics_kind(path, kind):
    values = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("supabase_backup_") and '{kind="%s",operation="backup"}' % kind in line:
                name, value = line.split('{', 1)[0], line.rsplit(" ", 1)[1]
                values[name] = float(value)
    return values


def test_status_reports_the_newest_backup_and_changes_nothing(run_module, workdir):
    backups, oldest, newest = plant_directory(workdir)
    before = sorted(os.listdir(backups))
    metrics = os.path.join(workdir, "metrics", "supabase_backup.prom")
    result = run_module("backup_status", {"backup_dir": backups, "max_age": "31h", "min_free": "1MB",
                                          "metrics_file": metrics})
    assert result.get("failed") is not True, result
    assert result["changed"] is False
    assert STATUS_KEYS <= set(result), result
    assert result["newest"]["path"] == newest and result["newest"]["encrypted"] is True
    assert 30 * HOUR - 5 <= result["newest"]["age_seconds"] <= 30 * HOUR + 120
    assert result["newest"]["size"] == os.path.getsize(newest)
    assert result["count"] == 3 and result["total_size"] == backup_sizes(backups)
    assert result["free_bytes"] > 0 and result["total_bytes"] >= result["free_bytes"]
    assert result["validation"]["backup"] == oldest and result["validation"]["passed"] is True
    assert result["validation"]["of_newest"] is False
    assert result["problems"] == []
    assert sorted(os.listdir(backups)) == before
    assert parse_metrics_kind(metrics, "logical") == {"supabase_backup_free_bytes": result["free_bytes"]}


def test_too_old_fails_with_one_line_and_the_status_in_check_mode_too(run_module, workdir):
    backups, _oldest, newest = plant_directory(workdir)
    metrics = os.path.join(workdir, "supabase_backup.prom")
    args = {"backup_dir": backups, "max_age": "26h", "require_validation": True, "metrics_file": metrics}
    checked = run_module("backup_status", args, check=True)
    assert not os.path.exists(metrics)  # check mode writes no gauge
    result = run_module("backup_status", args)
    for outcome in (checked, result):
        msg = assert_clean_failure(outcome, "more than max_age 1d 2h", "has no validation report")
        assert os.path.basename(newest) in msg
        assert outcome["changed"] is False
        assert outcome["newest"]["path"] == newest and outcome["count"] == 3
        assert len(outcome["problems"]) == 2
    assert checked["newest"]["size"] == result["newest"]["size"]
    # The gauge is refreshed even when the backups are not as required.
    assert parse_metrics_kind(metrics, "logical")["supabase_backup_free_bytes"] > 0


def test_volume_kind_and_bad_options(run_module, workdir):
    backups = os.path.join(workdir, "backups")
    os.mkdir(backups, 0o700)
    snapshot = plant_backup(backups, 2 * DAY, name="supabase-volume-20260101_020000.tar.gz", sidecars=False)[0]
    result = run_module("backup_status", {"backup_dir": backups, "kind": "volume", "max_age": "3d"})
    assert result.get("failed") is not True and result["newest"]["path"] == snapshot, result
    assert_clean_failure(run_module("backup_status", {"backup_dir": backups, "max_age": "one week"}),
                         "max_age 'one week' is not a duration")
    missing = os.path.join(workdir, "nowhere")
    assert_clean_failure(run_module("backup_status", {"backup_dir": missing}), "backup_dir %s does not exist" % missing)


def test_runner_status_refreshes_the_gauge_silently(collections_path, workdir):
    backups, _oldest, _newest = plant_directory(workdir)
    metrics = os.path.join(workdir, "supabase_backup.prom")
    # The runner's supabase_dump configuration; options that do not apply to a status are ignored.
    config = write_config(os.path.join(workdir, "backup.json"),
                          {"backup_dir": backups, "metrics_file": metrics, "retention_days": 30,
                           "container": "", "login_password": "not-used"})
    with open(metrics, "w", encoding="utf-8") as fh:
        fh.write('supabase_backup_success{kind="logical"} 1\nsupabase_backup_free_bytes{kind="volume"} 7\n')
    proc = run_runner(collections_path, "--config", str(config), "--status")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    samples = parse_metrics(metrics)
    assert samples["supabase_backup_free_bytes"] > 0 and samples["supabase_backup_success"] == 1
    assert parse_metrics_kind(metrics, "volume") == {"supabase_backup_free_bytes": 7}
    assert len(os.listdir(backups)) == 8  # nothing backed up, nothing removed
    proc = run_runner(collections_path, "--config", str(config), "--status", "--max-age", "31h", "--min-free", "1")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_runner_status_failures_are_one_line(collections_path, workdir):
    backups, _oldest, newest = plant_directory(workdir)
    config = write_config(os.path.join(workdir, "backup.json"), {"backup_dir": backups})
    cases = [
        (["--max-age", "26h"], "newest logical backup %s is 1d 6h old, more than max_age 1d 2h"
         % os.path.basename(newest)),
        (["--max-age", "soon"], "max_age 'soon' is not a duration"),
        (["--min-free", "1000TB"], "less than min_free 1000.0 TiB"),
    ]
    for extra, expected in cases:
        proc = run_runner(collections_path, "--config", str(config), "--status", *extra)
        assert proc.returncode == 1, (extra, proc.stdout, proc.stderr)
        assert proc.stdout == ""
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and "status FAILED: " in lines[0] and expected in lines[0], (extra, proc.stderr)
    missing = write_config(os.path.join(workdir, "missing.json"), {"backup_dir": os.path.join(workdir, "gone")})
    proc = run_runner(collections_path, "--config", str(missing), "--status")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "does not exist" in proc.stderr
    proc = run_runner(collections_path, "--config", str(config), "--max-age", "1d")
    assert proc.returncode == 2 and "--max-age and --min-free go with --status" in proc.stderr
