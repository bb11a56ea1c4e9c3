# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A table larger than the sharing threshold (_parallel_copy.SHARE_AFTER, 8 MB) is loaded by two sessions
on the real stack: its rows come back identical, and a bad row among the shared ones fails the restore
cleanly, with the live database as it was and nothing left behind."""

from __future__ import annotations

import gzip
import json
import os
import time

import pytest

import testbed
from restore_helpers import assert_clean_failure, assert_ok, db_name, drop_databases, fingerprint

# 30 000 rows of about 420 bytes: 12 MB of COPY data, past the threshold.
BIG_TABLE_SQL = '''
CREATE TABLE public.big_rows (id integer PRIMARY KEY, note text NOT NULL);
INSERT INTO public.big_rows SELECT g, repeat(md5(g::text), 13) FROM generate_series(1, 30000) g;
CREATE INDEX big_rows_note ON public.big_rows (note);
'''


@pytest.fixture(scope='module')
def big(stack, workdir_module):
    name = db_name('sharecopy')
    testbed.psql(f'CREATE DATABASE "{name}" TEMPLATE template0', 'template1')
    testbed.psql(BIG_TABLE_SQL, name)
    try:
        yield name
    finally:
        drop_databases(name, prefix=name)


@pytest.fixture(scope='module')
def workdir_module(tmp_path_factory):
    path = tmp_path_factory.mktemp('sharecopy')
    os.chmod(path, 0o700)
    return str(path)


def client_sessions_on(database, settle=5.0):
    """The client sessions on the database or its scratch copies, after a short wait for exiting ones.

    Autovacuum's workers are not the restore's: they come whenever the loaded tables need them."""
    query = (f"SELECT pid, datname, application_name FROM pg_stat_activity "
             f"WHERE datname LIKE '{database}%' AND backend_type = 'client backend'")
    deadline = time.monotonic() + settle
    while True:
        rows = testbed.psql_rows(query, 'template1')
        if not rows or time.monotonic() >= deadline:
            return rows
        time.sleep(0.2)


def restore(run_module, database, src):
    return run_module('supabase_restore', {'db': database, 'src': src, 'confirm': True, 'stop_containers': []})


def test_a_large_tables_rows_are_shared_and_come_back_identical(big, workdir_module, run_module):
    dump = run_module('supabase_dump', {'db': big, 'backup_dir': workdir_module})
    assert_ok(dump)
    before = fingerprint(big)
    testbed.psql('DELETE FROM public.big_rows WHERE id % 3 = 0', big)
    result = restore(run_module, big, dump['path'])
    assert_ok(result)
    assert result['load']['rows_shared'] == ['public.big_rows']
    assert result['load']['sessions'] == 2
    assert result['tables']['public.big_rows'] == 30000
    assert fingerprint(big) == before


def test_a_bad_row_among_the_shared_ones_fails_cleanly(big, workdir_module, run_module):
    dump = run_module('supabase_dump', {'db': big, 'backup_dir': workdir_module})
    assert_ok(dump)
    with gzip.open(dump['path'], 'rb') as handle:
        text = handle.read()
    # Every row past the first 10 MB has a bad id: whichever session reads one fails.
    start = text.index(b'COPY public.big_rows ')
    cut = text.index(b'\n', start + (10 << 20)) + 1
    end = text.index(b'\n\\.\n', cut)
    rows = [b'x' + line[line.index(b'\t'):] for line in text[cut:end].split(b'\n')]
    broken = os.path.join(workdir_module, 'supabase_backup_20260101_000000.sql.gz')
    with gzip.open(broken, 'wb', compresslevel=1) as handle:
        handle.write(text[:cut] + b'\n'.join(rows) + text[end:])
    os.chmod(broken, 0o600)
    before = fingerprint(big)
    oid = testbed.psql_value(f"SELECT oid FROM pg_database WHERE datname = '{big}'", 'template1')
    result = restore(run_module, big, broken)
    assert_clean_failure(result, 'invalid input syntax for type integer', 'live database was not touched')
    assert 'COPY big_rows, line' in result['stderr']
    assert fingerprint(big) == before
    assert testbed.psql_value(f"SELECT oid FROM pg_database WHERE datname = '{big}'", 'template1') == oid
    assert testbed.psql_rows(f"SELECT datname FROM pg_database WHERE datname LIKE '{big}_restore_%'",
                             'template1') == []
    assert client_sessions_on(big) == []
    leftover = testbed.docker_exec(testbed.DB_CONTAINER, ['ls', '-a', '/tmp']).stdout
    assert 'cortexreview-input-' not in leftover
    assert 'x\t' not in json.dumps(result)
