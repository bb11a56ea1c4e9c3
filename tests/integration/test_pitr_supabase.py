# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Point-in-time recovery on a Supabase-shaped stack of its own: archive, base backup, a named
restore point, then damage to both databases, the roles and pg_cron's jobs, and a recovery to
the point. The whole cluster comes back as it was (the fingerprint of both databases, the roles
with their passwords and settings, pg_cron's rows); what lives outside PGDATA (the root key,
Storage's files, the deployment files) is left as it was; the services log in again."""

from __future__ import annotations

import pytest

import testbed
from restore_helpers import assert_ok

CHANGED_PASSWORD = "changed-after-the-point.1"


@pytest.fixture
def supabase_pitr(make_stack, tmp_path):
    stack = make_stack("pitr-supa", seed=True, profile="supabase")
    receiver = f"{stack.db_container}-pitr-receiver"
    try:
        yield {"stack": stack, "args": {"container": stack.db_container, "backup_dir": str(tmp_path / "backups")}}
    finally:
        testbed._run(["docker", "rm", "-f", receiver])


def test_a_supabase_stack_recovers_to_a_restore_point(supabase_pitr, run_module):
    stack, args = supabase_pitr["stack"], supabase_pitr["args"]
    password = stack.db_password()
    archived = run_module("pitr_archive", dict(args, login_password=password, allow_restart=True), stack=stack)
    assert_ok(archived)
    assert archived["streaming"] is True
    assert_ok(run_module("pitr_base_backup", args, stack=stack))
    before = testbed.supabase_fingerprint(stack)
    assert_ok(run_module("pitr_restore_point", dict(args, name="before_the_change"), stack=stack))

    # After the point: both databases, the roles and pg_cron's jobs change.
    stack.psql("DELETE FROM knowledge_base WHERE id <= 10; SELECT cron.unschedule(min(jobid)) FROM cron.job; "
               f"CREATE ROLE pitr_intruder LOGIN; ALTER ROLE authenticator PASSWORD '{CHANGED_PASSWORD}'")
    stack.psql("CREATE TABLE _analytics.pitr_damage (x int)", "_supabase")
    assert testbed.fingerprint_diff(before, testbed.supabase_fingerprint(stack))

    result = run_module("pitr_restore", dict(
        args, volume=stack.volume, target_name="before_the_change", confirm=True,
        stop_containers=list(stack.app_containers) + [stack.storage_container]), stack=stack)
    assert_ok(result)
    assert result["reached"]["stop"] == 'at restore point "before_the_change"'
    for name in stack.containers:
        stack.wait_until(lambda name=name: testbed.container_status(name) == "running", timeout=30,
                         what=f"{name} running")
    diff = testbed.fingerprint_diff(before, testbed.supabase_fingerprint(stack))
    assert diff == [], "\n".join(diff)
    assert testbed.can_log_in(stack, "authenticator", password)
    assert not testbed.can_log_in(stack, "authenticator", CHANGED_PASSWORD)
    stack.wait_until(lambda: stack.psql_value(
        "SELECT count(*) FROM feedback_audit_log WHERE created_at > now() - interval '3 seconds'") != "0",
        timeout=30, what="the writers writing again")
