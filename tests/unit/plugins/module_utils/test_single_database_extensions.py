"""pg_cron's entries taken out of a plain dump's stream (the diverter): exact boundaries whatever the
chunks, COPY data that looks like a header, settings that belong to the next entry, the spool file,
and the splitter that feeds it."""

import copy
import os
import stat
import tracemalloc

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _database_restorer, _restore
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._dump_stream import DumpInspector
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import CommandError, SupabaseBackupError
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import restore_argument_spec
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._post_data import DumpSplitter
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._single_database_extensions import (
    SPOOL_PREFIX,
    DivertedEntries,
    diversion_needed,
    listed_extensions,
    remove_leftover_spools,
)
from ansible_collections.cortexreview.supabase_backup.tests.unit.fakes import (
    FakeDatabase,
    FakeDockerAPI,
    FakeServer,
    install,
    module_params,
    write_backup,
)

HEADER = '''--
-- PostgreSQL database dump
--

\\restrict KEY123

-- Dumped from database version 18.6
-- Dumped by pg_dump version 18.6

'''
# Settings just before a diverted entry's header: the load's session and the diverted script need them.
SETTINGS = '''SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);
SET row_security = off;

--
'''
# (text, diverted; None: both): pg_dump's shape, as the stand-in pg_cron makes it (tests/testbed/db/pg_cron).
SEGMENTS = [
    (HEADER, False),
    (SETTINGS, None),
    ('''-- Name: pg_cron; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS pg_cron WITH SCHEMA pg_catalog;


--
''', True),
    # pg_dump leaves "Owner: " empty, with its space, for a comment on an extension.
    ('-- Name: EXTENSION pg_cron; Type: COMMENT; Schema: -; Owner: \n' + '''--

COMMENT ON EXTENSION pg_cron IS 'Job scheduler for PostgreSQL';


''', True),
    # Settings written before the next entry's header belong to it: they stay in the load.
    ('''SET default_tablespace = '';

SET default_table_access_method = heap;

--
''', False),
    ('''-- Name: t; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.t (
    a text
);


--
''', False),
    ('''-- Data for Name: job; Type: TABLE DATA; Schema: cron; Owner: postgres
--

COPY cron.job (jobid, schedule, command, jobname) FROM stdin;
1	*/5 * * * *	DELETE FROM x	\\N
2	0 3 * * *	VACUUM	nightly
-- Name: t; Type: TABLE DATA; Schema: public; Owner: postgres
\\.


--
''', True),
    ('''-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.t (a) FROM stdin;
-- Name: job; Type: TABLE DATA; Schema: cron; Owner: postgres
-- Data for Name: job; Type: TABLE DATA; Schema: cron; Owner: postgres
\\.\\.
plain
\\.


--
''', False),
    ('''-- Name: jobid_seq; Type: SEQUENCE SET; Schema: cron; Owner: postgres
--

SELECT pg_catalog.setval('cron.jobid_seq', 3, true);


--
''', True),
    ('''-- Name: t_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.t
    ADD CONSTRAINT t_pkey PRIMARY KEY (a);


--
''', False),
    ('''-- Name: SCHEMA cron; Type: ACL; Schema: -; Owner: postgres
--

GRANT USAGE ON SCHEMA cron TO postgres WITH GRANT OPTION;


--
''', True),
    ('''-- Name: TABLE job; Type: ACL; Schema: cron; Owner: postgres
--

GRANT SELECT ON TABLE cron.job TO anon;


--
''', True),
    ('''-- Name: TABLE t; Type: ACL; Schema: public; Owner: postgres
--

GRANT SELECT ON TABLE public.t TO anon;


--
''', False),
    ('''-- Name: DEFAULT PRIVILEGES FOR TABLES; Type: DEFAULT ACL; Schema: cron; Owner: postgres
--

ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA cron GRANT ALL ON TABLES TO postgres WITH GRANT OPTION;


--
''', True),
    ('''-- PostgreSQL database dump complete
--

\\unrestrict KEY123

''', False),
]
DUMP = ''.join(text for text, _diverted in SEGMENTS).encode()
KEPT = ''.join(text for text, diverted in SEGMENTS if diverted is not True).encode()
DIVERTED = ''.join(text for text, diverted in SEGMENTS if diverted is not False).encode()
TABLES = {'cron.job': 3}


def run(chunks):
    diverter = DivertedEntries()
    kept = b''.join(diverter.feed(chunk) for chunk in chunks) + diverter.finish()
    try:
        spooled = open(diverter.path, 'rb').read() if diverter.path else b''
        return kept, spooled, diverter
    finally:
        diverter.close()


def test_the_entries_of_pg_cron_and_its_schema_are_taken_out():
    kept, spooled, diverter = run([DUMP])
    assert kept == KEPT
    assert spooled == DIVERTED
    # The third "row" of cron.job is a value that looks like a header; public.t's look like cron's.
    assert diverter.tables == TABLES and diverter.found == ['pg_cron'] and diverter.diverted


@pytest.mark.parametrize('size', [1, 2, 3, 5, 64])
def test_any_chunk_size_gives_the_same_split(size):
    kept, spooled, diverter = run([DUMP[pos:pos + size] for pos in range(0, len(DUMP), size)])
    assert (kept, spooled, diverter.tables) == (KEPT, DIVERTED, TABLES)


def test_a_split_at_every_byte_gives_the_same_split():
    for cut in range(1, len(DUMP)):
        kept, spooled, diverter = run([DUMP[:cut], DUMP[cut:]])
        assert (kept, spooled, diverter.tables) == (KEPT, DIVERTED, TABLES), cut


def test_nothing_is_taken_out_of_a_dump_without_pg_cron():
    # A schema of the user's own called cron is no extension's: it stays.
    plain = DUMP.replace(b'-- Name: pg_cron; Type: EXTENSION', b'-- Name: cron; Type: SCHEMA')
    plain = plain.replace(b'EXTENSION pg_cron; Type: COMMENT', b'EXTENSION vector; Type: COMMENT')
    kept, spooled, diverter = run([plain[pos:pos + 7] for pos in range(0, len(plain), 7)])
    assert kept == plain and spooled == b''
    assert not diverter.diverted and diverter.path is None and diverter.tables == {}
    # A chunk of COPY data with nothing to take out comes back as it is, uncopied.
    diverter = DivertedEntries()
    diverter.feed(b'COPY public.t (a) FROM stdin;\n')
    rows = b'x\n' * 1000
    assert diverter.feed(rows) is rows


def test_the_spool_is_private_and_removed():
    diverter = DivertedEntries()
    diverter.feed(DUMP)
    diverter.finish()
    diverter.preamble = '\\restrict KEY123\nSET row_security = off;\n'
    path = diverter.path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert b''.join(diverter.script_chunks()) == diverter.preamble.encode() + DIVERTED
    diverter.close()
    assert not os.path.exists(os.path.dirname(path)) and diverter.path is None
    diverter.close()  # again: nothing left to do


def test_the_spool_lies_where_it_is_told_and_leftovers_are_removed(tmp_path):
    diverter = DivertedEntries(str(tmp_path))
    diverter.feed(DUMP)
    diverter.finish()
    assert os.path.dirname(os.path.dirname(diverter.path)) == str(tmp_path)
    assert os.path.basename(os.path.dirname(diverter.path)).startswith(SPOOL_PREFIX)
    (tmp_path / 'supabase_backup_20260101_000000.sql.gz').write_bytes(b'kept')
    # What a restore that died left is removed; the backups stay.
    assert remove_leftover_spools(str(tmp_path)) == [os.path.basename(os.path.dirname(diverter.path))]
    assert os.listdir(tmp_path) == ['supabase_backup_20260101_000000.sql.gz']
    assert remove_leftover_spools(str(tmp_path / 'missing')) == []
    diverter.close()


def test_without_a_spool_the_entries_are_only_counted(tmp_path):
    diverter = DivertedEntries(str(tmp_path), spool=False)
    assert diverter.feed(DUMP) + diverter.finish() == KEPT
    assert diverter.diverted and diverter.tables == TABLES and diverter.path is None
    assert os.listdir(tmp_path) == []
    diverter.close()


def test_a_large_diverted_table_never_sits_in_memory():
    diverter = DivertedEntries()
    try:
        diverter.feed(DUMP[:DUMP.index(b'1\t*/5')])
        row = b'7\t* * * * *\tSELECT 1\t' + b'x' * 90 + b'\n'
        block = row * (1 << 20 // len(row))
        tracemalloc.start()
        for _number in range(64):
            assert diverter.feed(block) == b''
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 4 << 20, peak
        diverter.feed(b'\\.\n\n')
        diverter.finish()
        assert diverter.tables == {'cron.job': 64 * (1 << 20 // len(row))}
        assert os.path.getsize(diverter.path) > 64 * len(block)
    finally:
        diverter.close()


def test_the_splitter_feeds_it_the_load_and_the_held_post_data():
    diverter = DivertedEntries()
    try:
        for size in (1, 4096):
            diverter = DivertedEntries()
            inspector = DumpInspector()
            splitter = DumpSplitter(inspector, diverter=diverter)
            chunks = [DUMP[pos:pos + size] for pos in range(0, len(DUMP), size)]
            first = b''.join(splitter.first_session_chunks(iter(chunks)))
            # The constraint is built apart; the ACLs after it run in order, without cron's.
            assert splitter.plan is not None and len(splitter.plan.parallel) == 1
            loaded = first + splitter.plan.parallel[0][1].encode() + splitter.plan.sequential.encode()
            for statement in (b'CREATE EXTENSION', b'COMMENT ON EXTENSION', b'COPY cron.job', b"setval('cron",
                              b'ON SCHEMA cron', b'ON TABLE cron.job', b'IN SCHEMA cron'):
                assert statement not in loaded, statement
            assert b'GRANT SELECT ON TABLE public.t TO anon;' in splitter.plan.sequential.encode()
            assert open(diverter.path, 'rb').read() == DIVERTED
            assert inspector.tables == {'cron.job': 3, 'public.t': 4}
            diverter.close()
    finally:
        diverter.close()


def test_which_manifests_need_the_diversion():
    assert listed_extensions(None) is None and diversion_needed(None)
    assert listed_extensions({'tables': {}}) is None and diversion_needed({'tables': {}})
    assert listed_extensions({'extensions': {'vector': '0.8'}}) == [] and not diversion_needed({'extensions': {}})
    assert listed_extensions({'extensions': {'pg_cron': '1.6', 'vector': '0.8'}}) == ['pg_cron']
    assert diversion_needed({'extensions': {'pg_cron': '1.6'}})


# The restore around it, at the Docker/psql boundary: the diverted script runs after the swap, in the
# database under its live name; when it fails the swap is undone.

WRITERS = ['api']
LIVE_TABLES = {'public.t': 1}
RESTORED_TABLES = {'public.t': 4}


class RestoreWorld:
    def __init__(self, monkeypatch, tmp_path):
        self.server = FakeServer({'postgres': FakeDatabase(tables=dict(LIVE_TABLES)), 'template1': FakeDatabase()})
        self.docker = FakeDockerAPI()
        self.docker.add('api')
        install(monkeypatch, self.server, self.docker)
        monkeypatch.setattr(_database_restorer.time, 'sleep', lambda seconds: None)
        # An older backup (no manifest) that holds pg_cron's entries.
        self.backup_dir = tmp_path
        # (without the constraint: the fake server keeps what one psql session loaded)
        self.src = write_backup(tmp_path / 'supabase_backup_20260101_000000.sql.gz', ''.join(
            text for text, _diverted in SEGMENTS if 'CONSTRAINT' not in text))
        self.runs = []
        self.before = copy.deepcopy(self.server.databases)

    def backend(self):
        params = module_params(restore_argument_spec(), src=self.src, confirm=True, container='fake-db',
                               stop_containers=WRITERS)
        return _restore.RestoreBackend.from_params(params, clock=lambda: 1_800_000_000)

    def run_diverted(self, error=None):
        def run(restorer, name, diverter):
            with open(diverter.path, 'rb') as handle:
                script = handle.read()
            self.runs.append((name, sorted(self.server.databases), b''.join(diverter.script_chunks()), script))
            if error:
                raise CommandError(error)
            return dict(diverter.tables)
        return run


@pytest.fixture
def restore_world(monkeypatch, tmp_path):
    return RestoreWorld(monkeypatch, tmp_path)


def test_the_diverted_entries_run_in_the_restored_database_after_the_swap(restore_world, monkeypatch):
    world = restore_world
    monkeypatch.setattr(_database_restorer.DatabaseRestorer, 'run_diverted', world.run_diverted())
    result = world.backend().run()
    [(name, names, script, diverted)] = world.runs
    # After the swap: the restored database carries the live name, the previous one is kept beside it.
    assert name == 'postgres' and any(item.startswith('postgres_pre_restore_') for item in names)
    assert not any(item.startswith('postgres_restore_') for item in names)
    assert diverted == DIVERTED
    assert script == b"\\restrict KEY123\nSET statement_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', " \
                     b"false);\nSET row_security = off;\n" + DIVERTED
    assert world.server.databases['postgres'].tables == RESTORED_TABLES
    assert result['databases'][0]['after_swap']['tables'] == TABLES
    assert "; pg_cron's objects restored into postgres after the swap" in result['msg']
    # The scratch load's checks left cron.job out; the spool is gone.
    assert [item for item in os.listdir(world.backup_dir) if item.startswith(SPOOL_PREFIX)] == []
    assert result['started'] == WRITERS


def test_a_failure_after_the_swap_undoes_it(restore_world, monkeypatch):
    world = restore_world
    monkeypatch.setattr(_database_restorer.DatabaseRestorer, 'run_diverted',
                        world.run_diverted('pg_cron in database postgres failed: ERROR:  role "gone" does not exist'))
    backend = world.backend()
    with pytest.raises(SupabaseBackupError) as caught:
        backend.run()
    assert caught.value.msg == (
        "restoring pg_cron's objects into postgres after the swap failed, so the swap was undone and the live "
        "database was put back as it was: pg_cron in database postgres failed: ERROR:  role \"gone\" does not exist")
    # The live database as it was, nothing else left; the writers run again.
    assert world.server.databases == world.before
    assert caught.value.details['started'] == WRITERS
    assert [item for item in os.listdir(world.backup_dir) if item.startswith(SPOOL_PREFIX)] == []


def test_when_the_undo_fails_too_the_previous_contents_are_kept_and_named(restore_world, monkeypatch):
    world = restore_world
    monkeypatch.setattr(_database_restorer.DatabaseRestorer, 'run_diverted',
                        world.run_diverted('pg_cron in database postgres failed: ERROR:  boom'))
    world.server.fail_on(r'RENAME TO "?postgres_restore_', 'the undo fails')
    backend = world.backend()
    with pytest.raises(SupabaseBackupError) as caught:
        backend.run()
    previous = next(name for name in world.server.databases if name.startswith('postgres_pre_restore_'))
    assert caught.value.msg.startswith(
        "restoring pg_cron's objects into postgres after the swap failed (pg_cron in database postgres failed: "
        "ERROR:  boom) and undoing the swap failed too (")
    assert caught.value.msg.endswith('the restored database is live without them; the previous contents are kept '
                                     'as %s' % previous)
    assert world.server.databases[previous].tables == LIVE_TABLES
    assert world.server.databases['postgres'].tables == RESTORED_TABLES
    assert caught.value.details['started'] == WRITERS
