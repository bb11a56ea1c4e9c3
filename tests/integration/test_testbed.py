# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Smoke tests of the test bed itself (seed, writers, official-image behaviour, helpers)."""

from __future__ import annotations

import subprocess

import testbed


def test_seed_schema_and_counts(healthy_stack):
    assert healthy_stack.seed_counts() == testbed.SEED_ROW_COUNTS
    indexes = set(healthy_stack.index_names())
    assert set(testbed.SEED_INDEXES) <= indexes
    ivfflat = healthy_stack.psql(
        "SELECT am.amname FROM pg_class c JOIN pg_am am ON am.oid = c.relam "
        "WHERE c.relname = 'knowledge_base_embedding_ivfflat_idx'")
    assert ivfflat == "ivfflat"
    assert set(testbed.SEED_FUNCTIONS) <= set(healthy_stack.function_names())
    assert healthy_stack.psql("SELECT extversion FROM pg_extension WHERE extname = 'vector'").startswith("0.8")


def test_vector_search_and_constraints(healthy_stack):
    rows = healthy_stack.psql_rows(
        "SELECT id, similarity FROM match_knowledge("
        "(SELECT embedding FROM knowledge_base WHERE id = 1), 0.0, 3)")
    assert len(rows) == 3
    assert rows[0][0] == "1" and abs(float(rows[0][1]) - 1.0) < 1e-6
    # the contract's validation query runs (probably with no rows)
    healthy_stack.psql("SELECT * FROM match_knowledge("
                       "'[0.1, 0.2]'::vector || array_fill(0.0, ARRAY[1534])::vector, 0.75, 3)")
    assert int(healthy_stack.psql("SELECT count(*) FROM check_constraints('TODO: password = 1')")) > 0


def test_weird_table_round_trips_through_pg_dump(healthy_stack):
    dump = healthy_stack.pg_dump()
    assert b'COPY public."Weird Table"' in dump
    assert b"\tfirst line\\n\\\\.\\nlast line\t" in dump  # the "\." line, COPY-escaped
    assert b"COPY public.empty_table (id, label) FROM stdin;\n\\.\n" in dump
    note = healthy_stack.psql_rows('SELECT "Mixed Case" FROM "Weird Table" WHERE "ID" = 4')
    assert note == [("first line\n\\.\nlast line",)]


def test_official_image_behaviour(healthy_stack):
    # docker exec as root, no password, local socket -- like the official image
    out = subprocess.run(
        f"docker exec {testbed.DB_CONTAINER} pg_dump -U postgres postgres | gzip | wc -c",
        shell=True, capture_output=True, text=True, check=True)
    assert int(out.stdout) > 100_000
    c = healthy_stack.container(testbed.DB_CONTAINER)
    assert c.labels["com.docker.compose.project"] == "cortexreview"
    assert c.labels["com.docker.compose.service"] == "supabase-db"
    assert any(m["Name"] == testbed.DB_VOLUME and m["Destination"] == testbed.DB_DATA_DIR
               for m in c.attrs["Mounts"])
    assert c.attrs["State"]["Health"]["Status"] == "healthy"
    ps = healthy_stack.docker_exec(testbed.DB_CONTAINER, ["ps", "-o", "user=,comm=", "-p", "1"]).stdout
    assert ps.split() == ["postgres", "postgres"]
    hba = healthy_stack.psql("SELECT type, database[1], user_name[1], auth_method "
                             "FROM pg_hba_file_rules ORDER BY rule_number")
    assert hba.splitlines() == ["local|all|all|trust", "host|all|all|scram-sha-256"]


def test_writers_keep_writing(healthy_stack):
    before = healthy_stack.writer_rows()
    healthy_stack.wait_until(lambda: healthy_stack.writer_rows() >= before + 4, timeout=30,
                             what="api/worker rows to grow")
    for name in testbed.ALL_CONTAINERS:
        assert healthy_stack.container_status(name) == "running"


def test_tcp_password_login(healthy_stack):
    psycopg2 = __import__("pytest").importorskip("psycopg2")
    with psycopg2.connect(healthy_stack.dsn()) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM knowledge_base")
        assert cur.fetchone()[0] == testbed.SEED_ROW_COUNTS["knowledge_base"]
    conn.close()


def test_run_module_and_playbook_helpers(run_module, run_playbook, tmp_path):
    ok = run_module("ansible.builtin.command", {"argv": ["echo", "{{ not templated }}", "yes"]})
    assert ok["rc"] == 0 and ok["stdout"] == "{{ not templated }} yes"
    failed = run_module("ansible.builtin.command", {"argv": ["false"]})
    assert failed["failed"] is True and failed["rc"] == 1
    checked = run_module("ansible.builtin.file", {"path": str(tmp_path / "x"), "state": "touch"},
                         check=True)
    assert checked["changed"] is True and not (tmp_path / "x").exists()

    pb = tmp_path / "pb.yml"
    pb.write_text("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                  "    - ansible.builtin.copy:\n        content: '{{ secret }}'\n"
                  "        dest: '{{ dest }}'\n")
    proc = run_playbook(pb, {"secret": "s3cr3t", "dest": str(tmp_path / "out")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "out").read_text() == "s3cr3t"
    assert "s3cr3t" not in " ".join(proc.args)
