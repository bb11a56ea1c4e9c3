# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The disaster-recovery drill, playbooks/dr_restore.yml: a new host rebuilt from the off-site copy alone.

The backups are made on the running stack and copied to a real S3 server (``rclone serve s3``).
The new host is a second stack created with empty volumes; the drill gets only the remote, its
rclone config and the passphrase. Its data must come back, every phase timed and printed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import testbed

PLAYBOOK = Path(__file__).resolve().parents[2] / "playbooks" / "dr_restore.yml"
PASSPHRASE = "dr drill passphrase"
SAME_ROWS = ("SELECT count(*), md5(string_agg(id::text || ':' || content, ',' ORDER BY id)) FROM public.knowledge_base "
             "UNION ALL SELECT count(*), md5(string_agg(id::text, ',' ORDER BY id)) FROM public.learned_constraints")


def test_a_new_host_is_rebuilt_from_the_off_site_copy(stack, make_stack, run_module, run_playbook, s3, tmp_path):
    made = run_module("supabase_dump", {"backup_dir": str(tmp_path / "old-host"), "encrypt_passphrase": PASSPHRASE,
                                        "extra_databases": [], "offsite_remote": s3.remote,
                                        "offsite_config": s3.config})
    assert not made.get("failed"), made.get("msg")
    expected = testbed.psql_rows(SAME_ROWS, container=stack.db_container)
    new_host = make_stack("dr")
    assert testbed.psql_value("SELECT to_regclass('public.knowledge_base') IS NULL",
                              container=new_host.db_container) == "t"
    with open(s3.config, encoding="utf-8") as handle:
        rclone_config = handle.read()
    etc = tmp_path / "etc"
    etc.mkdir(mode=0o700)
    drill_vars = {
        "dr_restore_hosts": "localhost",
        "supabase_backup_dir": str(tmp_path / "new-host-backups"),
        "supabase_backup_config_file": str(etc / "backup.json"),
        "supabase_backup_cron_enabled": False,
        "supabase_backup_logrotate_enabled": False,
        "supabase_backup_log_file": str(tmp_path / "backup.log"),
        "supabase_backup_metrics_file": str(tmp_path / "metrics" / "supabase_backup.prom"),
        "supabase_backup_offsite_remote": s3.remote,
        "supabase_backup_offsite_rclone_config": rclone_config,
        "supabase_backup_encrypt_passphrase": PASSPHRASE,
        "supabase_backup_container": new_host.db_container,
        "supabase_restore_stop_containers": [new_host.api_container, new_host.worker_container],
    }
    # Without the confirmation and without a terminal: refused at the prompt, after the fetch, before anything
    # on the new host is stopped or changed.
    writers_started = {name: testbed.container(name).attrs["State"]["StartedAt"]
                       for name in (new_host.api_container, new_host.worker_container)}
    refused = run_playbook(PLAYBOOK, drill_vars)
    assert refused.returncode != 0 and "stdin is not interactive" in refused.stdout, refused.stdout[-3000:]
    assert testbed.psql_value("SELECT to_regclass('public.knowledge_base') IS NULL",
                              container=new_host.db_container) == "t"
    assert {name: testbed.container(name).attrs["State"]["StartedAt"] for name in writers_started} == writers_started
    drill = run_playbook(PLAYBOOK, dict(drill_vars, supabase_restore_confirm=True))
    assert drill.returncode == 0, drill.stdout[-4000:] + drill.stderr[-2000:]
    assert testbed.psql_rows(SAME_ROWS, container=new_host.db_container) == expected
    assert s3.secret_key not in drill.stdout
    phases = dict(re.findall(r'"(runtime|fetch|restore|validate|total) +([0-9.]+) s"', drill.stdout))
    assert set(phases) == {"runtime", "fetch", "restore", "validate", "total"}, drill.stdout[-3000:]
    assert float(phases["total"]) >= float(phases["restore"]) > 0
    assert "restore point %s" % made["restore_point"] in drill.stdout
    fetched = sorted(os.listdir(tmp_path / "new-host-backups"))
    assert any(name.startswith(made["restore_point"]) and name.endswith(".sql.gz.gpg") for name in fetched)
    for container in (new_host.api_container, new_host.worker_container):
        assert testbed.container_status(container) == "running"
