# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Smoke tests of the test bed itself (seed, writers, official-image behaviour, helpers,
stacks side by side)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg2
import pytest

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
    assert c.labels["com.docker.compose.project"] == testbed.PROJECT
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


# ------------------------------------------------------- stacks side by side --

def _stack_sh_names(name, port=None):
    env = dict(os.environ, CORTEXREVIEW_TESTBED=name)
    env.pop("CORTEXREVIEW_TESTBED_PORT", None)
    if port is not None:
        env["CORTEXREVIEW_TESTBED_PORT"] = str(port)
    proc = subprocess.run(["bash", str(testbed.STACK_SH), "names"], env=env,
                          capture_output=True, text=True, check=True)
    names = dict(line.split("=", 1) for line in proc.stdout.splitlines())
    names["port"] = int(names["port"])
    return names


@pytest.mark.parametrize("name", ["cortexreview", "cortexreview-second", "ci_run-2"])
def test_stack_names_agree_with_lib_sh(name):
    assert _stack_sh_names(name) == testbed.stack_names(name)


def test_default_stack_keeps_its_names():
    assert testbed.stack_names("cortexreview") == {
        "project": "cortexreview", "db_container": "cortexreview-supabase-db",
        "api_container": "cortexreview-api", "worker_container": "cortexreview-worker",
        "volume": "cortexreview-supabase-db-data", "network": "cortexreview_default", "port": 54322}
    other = testbed.stack_names("cortexreview-second")
    assert other["port"] != 54322 and 55000 <= other["port"] < 56000


def test_run_selects_its_stack_by_environment():
    code = ("import json, testbed; print(json.dumps([testbed.PROJECT, testbed.DB_CONTAINER, "
            "testbed.ALL_CONTAINERS, testbed.DB_VOLUME, testbed.DB_PORT, testbed.Stack().port]))")
    env = dict(os.environ, CORTEXREVIEW_TESTBED="run2", CORTEXREVIEW_TESTBED_PORT="56001",
               PYTHONPATH=os.path.dirname(testbed.__file__))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == ["run2", "run2-supabase-db", ["run2-supabase-db", "run2-api", "run2-worker"],
                                      "run2-supabase-db-data", 56001, 56001]
    # the port override belongs to the run's own stack, not to the others it reaches
    assert _stack_sh_names("run2", 56001)["port"] == 56001
    env["CORTEXREVIEW_TESTBED"] = "run2"
    other = subprocess.run([sys.executable, "-c", "import testbed; print(testbed.stack_port('run3'))"],
                           env=env, capture_output=True, text=True, check=True)
    assert int(other.stdout) == testbed.stack_names("run3")["port"] != 56001


def test_empty_stack_name_means_the_default_stack():
    assert _stack_sh_names("")["project"] == "cortexreview"


@pytest.mark.parametrize("name", ["Upper", "-dash", "a b", "x" * 41, "a;b"])
def test_bad_stack_name_is_refused_in_one_line(name):
    env = dict(os.environ, CORTEXREVIEW_TESTBED=name)
    proc = subprocess.run(["bash", str(testbed.STACK_SH), "up"], env=env, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "CORTEXREVIEW_TESTBED" in proc.stderr
    assert proc.stdout == ""
    with pytest.raises(ValueError, match="stack name"):
        testbed.Stack(name)


def test_bad_port_is_refused_in_one_line():
    env = dict(os.environ, CORTEXREVIEW_TESTBED="cortexreview-x", CORTEXREVIEW_TESTBED_PORT="80")
    proc = subprocess.run(["bash", str(testbed.STACK_SH), "up"], env=env, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == "CORTEXREVIEW_TESTBED_PORT=80: not a port number in 1024-65535"


def _public_tables(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        return [row[0] for row in cur.fetchall()]


def test_second_stack_runs_beside_the_first(healthy_stack, second_stack):
    first, second = healthy_stack, second_stack
    assert second.name == f"{first.name}-second"
    assert not set(first.containers) & set(second.containers)
    assert len({first.port, second.port}) == 2 and first.volume != second.volume
    for stack in (first, second):
        for name in stack.containers:
            c = stack.container(name)
            assert c.status == "running"
            assert c.labels["com.docker.compose.project"] == stack.project
            assert list(c.attrs["NetworkSettings"]["Networks"]) == [stack.network]
            assert c.image.tags[0] in (testbed.DB_IMAGE, testbed.APP_IMAGE)  # images are shared
        db = stack.container(stack.db_container)
        assert [m["Name"] for m in db.attrs["Mounts"] if m["Type"] == "volume"] == [stack.volume]
        assert db.ports["5432/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(stack.port)}]

    # the second is empty, as a new host would be: PostgreSQL 18 with pgvector available, no schema
    with psycopg2.connect(second.dsn()) as conn:
        assert _public_tables(conn) == []
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting('server_version_num')::int / 10000, "
                        "(SELECT count(*) FROM pg_available_extensions WHERE name = 'vector')")
            assert cur.fetchone() == (18, 1)
    conn.close()
    assert second.list_databases() == ["postgres"]
    # its health check asks for no seed; the seeded check would call it broken
    assert second.is_healthy() and not testbed.stack_is_healthy(second.containers, seeded=True)

    # a change on one is not seen on the other
    second.psql("CREATE TABLE only_on_second (id int); INSERT INTO only_on_second VALUES (7)")
    try:
        with psycopg2.connect(first.dsn()) as conn:
            assert "only_on_second" not in _public_tables(conn)
            assert "knowledge_base" in _public_tables(conn)
        conn.close()
        assert first.psql_value("SELECT to_regclass('public.only_on_second') IS NULL") == "t"
        assert second.psql_value("SELECT sum(id) FROM only_on_second") == "7"
    finally:
        second.psql("DROP TABLE only_on_second")
    assert first.seed_counts() == testbed.SEED_ROW_COUNTS
    assert second.is_healthy()


def _state(stack):
    """What tearing down another stack must not change."""
    return {name: (stack.container(name).id, stack.container(name).attrs["State"]["StartedAt"])
            for name in stack.containers}


def test_tearing_one_stack_down_leaves_the_other_intact(healthy_stack, make_stack):
    first = healthy_stack
    doomed = make_stack("teardown")
    client = testbed.docker_client()
    before = _state(first)
    rows_before = first.writer_rows()
    assert client.volumes.get(doomed.volume) and client.networks.get(doomed.network)

    doomed.down()

    import docker
    for name in doomed.containers:
        assert doomed.container_status(name) == "absent"
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get(doomed.volume)
    with pytest.raises(docker.errors.NotFound):
        client.networks.get(doomed.network)
    # the first stack: the same containers, never restarted, its volume, data and writers
    assert _state(first) == before
    assert client.volumes.get(first.volume) and client.networks.get(first.network)
    assert first.seed_counts() == testbed.SEED_ROW_COUNTS
    first.wait_until(lambda: first.writer_rows() >= rows_before + 4, timeout=30,
                     what="the first stack's writers to keep writing")


def test_run_module_works_on_the_second_stack(healthy_stack, second_stack, run_module, workdir):
    """The modules reach the second stack by its names (a new host for a restore drill)."""
    second_stack.psql("CREATE TABLE drill_marker (id int); INSERT INTO drill_marker SELECT generate_series(1, 3)")
    try:
        result = run_module("supabase_dump", {"backup_dir": os.path.join(workdir, "second")}, stack=second_stack)
    finally:
        second_stack.psql("DROP TABLE drill_marker")
    assert not result.get("failed"), result.get("msg")
    assert result["tables"] == {"public.drill_marker": 3}
    # without stack=, this run's stack, as before
    default = run_module("supabase_dump", {"backup_dir": os.path.join(workdir, "first")})
    assert not default.get("failed"), default.get("msg")
    assert {name.split(".", 1)[1].strip('"') for name in default["tables"]} == set(testbed.SEED_ROW_COUNTS)
