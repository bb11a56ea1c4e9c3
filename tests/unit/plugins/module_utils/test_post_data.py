import gzip
import threading
from types import SimpleNamespace

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _database_restorer
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_reader import BackupFile
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._database_restorer import DatabaseRestorer
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._dump_stream import DumpInspector
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import CommandError
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._post_data import (
    START_BYTES,
    DumpSplitter,
    split_post_data,
)

HEAD = (
    b'--\n-- PostgreSQL database dump\n--\n\n'
    b'\\restrict KEY123\n\n'
    b'-- Dumped from database version 18.6\n'
    b'-- Dumped by pg_dump version 18.6\n\n'
    b'SET statement_timeout = 0;\n'
    b"SELECT pg_catalog.set_config('search_path', '', false);\n\n"
    b'--\n-- Name: f(); Type: FUNCTION; Schema: public; Owner: postgres\n--\n\n'
    b'CREATE FUNCTION public.f() RETURNS text AS $body$\n'
    b'SET default_tablespace = evil;\n'
    b'$body$ LANGUAGE sql;\n\n'
    b"SET default_tablespace = '';\n\n"
    b'--\n-- Name: kb; Type: TABLE; Schema: public; Owner: postgres\n--\n\n'
    b'CREATE TABLE public.kb (id bigint, body text);\n\n'
    b'COPY public.kb (id, body) FROM stdin;\n'
    b'1\t-- Name: x; Type: INDEX; Schema: public; Owner: postgres\n'
    b'2\tplain\n'
    b'\\.\n\n'
)
POST = (
    b'--\n-- Name: kb kb_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres\n--\n\n'
    b'ALTER TABLE ONLY public.kb\n    ADD CONSTRAINT kb_pkey PRIMARY KEY (id);\n\n\n'
    b'--\n-- Name: kb_body_idx; Type: INDEX; Schema: public; Owner: postgres; Tablespace: fast space\n--\n\n'
    b"CREATE INDEX kb_body_idx ON public.kb USING btree (body) WHERE (body <> ';\n-- Name: y; Type: INDEX');\n\n\n"
    b"SET default_tablespace = '';\n\n"
    b'--\n-- Name: kb_vec_idx; Type: INDEX; Schema: public; Owner: postgres\n--\n\n'
    b'CREATE INDEX kb_vec_idx ON public.kb USING ivfflat (body);\n\n\n'
    b'--\n-- Name: kb kb_fk; Type: FK CONSTRAINT; Schema: public; Owner: postgres\n--\n\n'
    b'ALTER TABLE ONLY public.kb\n    ADD CONSTRAINT kb_fk FOREIGN KEY (id) REFERENCES public.kb(id);\n\n\n'
    b'--\n-- PostgreSQL database dump complete\n--\n\n'
    b'\\unrestrict KEY123\n\n'
)
DUMP = HEAD + POST


def _split(data, size, **kwargs):
    inspector = DumpInspector()
    splitter = DumpSplitter(inspector, **kwargs)
    chunks = [data[i:i + size] for i in range(0, len(data), size)]
    first = b''.join(splitter.first_session_chunks(chunks))
    return inspector, splitter, first


@pytest.mark.parametrize('size', [1, 3, 17, 64, 1 << 20])
def test_first_session_gets_everything_before_post_data_whatever_the_chunks(size):
    inspector, splitter, first = _split(DUMP, size)
    # The comment line above the first post-data entry's header is loaded with the data.
    assert first == HEAD + b'--\n'
    assert inspector.post_data_offset == len(HEAD) + 3
    assert inspector.complete and inspector.tables == {'public.kb': 2}
    assert inspector.restrict_key == 'KEY123'
    assert inspector.preamble == ['SET statement_timeout = 0;', "SELECT pg_catalog.set_config('search_path', '', false);"]
    assert splitter.plan is not None


def test_indexes_and_constraints_go_parallel_foreign_keys_stay_in_order():
    _inspector, splitter, _first = _split(DUMP, 1 << 20)
    parallel = [sql for _cost, sql in splitter.plan.parallel]
    assert len(parallel) == 3
    assert any('ADD CONSTRAINT kb_pkey PRIMARY KEY' in sql for sql in parallel)
    assert not any('FOREIGN KEY' in sql for sql in parallel)
    assert 'ADD CONSTRAINT kb_fk FOREIGN KEY' in splitter.plan.sequential
    # A header-like line inside a string literal is not an entry of its own.
    body = [sql for sql in parallel if 'kb_body_idx' in sql][0]
    assert "WHERE (body <> ';\n-- Name: y; Type: INDEX');" in body
    # The entry's tablespace comes from its header; the others are built in the default one.
    assert body.startswith('SET default_tablespace = "fast space";\n')
    assert [sql for sql in parallel if 'kb_vec_idx' in sql][0].startswith("SET default_tablespace = '';\n")
    # A setting between entries stays in the ordered part, and so does the restrict pair's end.
    assert "SET default_tablespace = '';" in splitter.plan.sequential
    assert splitter.plan.sequential.rstrip().endswith('\\unrestrict KEY123')


def test_pg_dumps_own_post_data_keeps_the_rows():
    """What pg_dump writes there (constraints, indexes, settings, row security, grants, the restrict pair's end)
    lets the data be checked while it runs."""
    end = b'--\n-- PostgreSQL database dump complete'
    entry = (b'--\n-- Name: kb; Type: ROW SECURITY\n--\n\n'
             b'ALTER TABLE public."Weird ""kb"""\n    ENABLE ROW LEVEL SECURITY;\n'
             b'GRANT ALL ON TABLE public.kb TO anon;\n\n')
    _inspector, splitter, _first = _split(DUMP.replace(end, entry + end), 1 << 20)
    assert splitter.plan.keeps_rows is True


def test_a_section_without_row_security_keeps_what_queries_see():
    _inspector, splitter, _first = _split(DUMP, 1 << 20)
    assert splitter.plan.keeps_reads_of('public.kb') is True


@pytest.mark.parametrize('planted, table', [
    (b'ALTER TABLE public."Weird ""kb"""\n    ENABLE ROW LEVEL SECURITY;\n', 'public."Weird ""kb"""'),
    (b'ALTER TABLE ONLY public.kb FORCE ROW LEVEL SECURITY;\n', 'public.kb'),
    (b'CREATE POLICY "own rows" ON public.kb FOR SELECT USING (false);\n', 'public.kb'),
    (b'CREATE RULE r AS\n    ON INSERT TO public.kb DO INSTEAD NOTHING;\n', 'public.kb'),
    (b'CREATE POLICY own ON public.kb;\n', 'public.kb'),
    (b'CREATE POLICY own ON /* hidden */ public.kb;\n', None),
])
def test_row_security_in_post_data_changes_what_queries_of_its_table_see(planted, table):
    """Policies and row level security keep the rows but may hide some from a query of their table: one run
    beside the section cannot be compared with one run after it. Where the table is not found, no table's."""
    end = b'--\n-- PostgreSQL database dump complete'
    entry = b'--\n-- Name: kb; Type: ROW SECURITY\n--\n\n' + planted + b'\n\n'
    _inspector, splitter, _first = _split(DUMP.replace(end, entry + end), 1 << 20)
    assert splitter.plan.keeps_rows is True
    assert splitter.plan.reads_changed == frozenset([table])
    assert splitter.plan.keeps_reads_of(table or 'public.kb') is False
    assert splitter.plan.keeps_reads_of('public.other') is (table is not None)
    # Rows changed as well: no query's reads are kept.
    _inspector, splitter, _first = _split(DUMP.replace(end, entry + b'DELETE FROM public.kb;\n' + end), 1 << 20)
    assert splitter.plan.keeps_rows is False and splitter.plan.keeps_reads_of('public.other') is False


@pytest.mark.parametrize('planted', [
    b'DELETE FROM public.kb WHERE id % 2 = 0;\n',
    b'SELECT public.f();\n',
    b'REFRESH MATERIALIZED VIEW public.mv;\n',
    b"CREATE INDEX kb_x ON public.kb USING btree (id); TRUNCATE public.kb;\n",
    b'    UPDATE public.kb SET body = NULL;\n',
    b'ALTER TABLE ONLY public.kb\n    RENAME TO gone;\n',
    b'\\unrestrict KEY123\nDELETE FROM public.kb;\n',
])
def test_anything_else_in_post_data_has_the_data_checked_after_it(planted):
    """A planted statement that may change rows, wherever it sits in the section (an entry of its own, the same
    line as an index, a continuation line), has the data checks wait for the whole section."""
    post = POST.replace(b'CREATE INDEX kb_vec_idx ON public.kb USING ivfflat (body);\n',
                        b'CREATE INDEX kb_vec_idx ON public.kb USING ivfflat (body);\n' + planted)
    assert post != POST
    _inspector, splitter, _first = _split(HEAD + post, 1 << 20)
    assert splitter.plan is not None and splitter.plan.keeps_rows is False
    # A comment is no statement.
    commented = b''.join(b'-- ' + line + b'\n' for line in planted.splitlines())
    _inspector, splitter, _first = _split(HEAD + POST.replace(b'\n\n\n', b'\n' + commented, 1), 1 << 20)
    assert splitter.plan.keeps_rows is True


def test_a_tables_constraints_go_first_in_the_session_building_its_heaviest_index():
    _inspector, splitter, _first = _split(DUMP, 1 << 20)
    sessions = splitter.plan.sessions(2, splitter.preamble())
    assert len(sessions) == 2
    # The primary key locks its table against everything: built first, where the vector index is built next.
    (vector_constraints, vector_indexes), (other_constraints, other_indexes) = sorted(
        sessions, key=lambda scripts: 'kb_vec_idx' not in scripts[1])
    assert 'ADD CONSTRAINT kb_pkey PRIMARY KEY' in vector_constraints and 'CREATE INDEX' not in vector_constraints
    assert 'kb_body_idx' not in vector_indexes and 'kb_pkey' not in vector_indexes
    assert other_constraints is None and 'kb_body_idx' in other_indexes
    assert all(script.startswith('\\restrict KEY123\nSET statement_timeout = 0;\n')
               for scripts in sessions for script in scripts if script)
    assert len(splitter.plan.sessions(8, '')) == 2


def test_a_vector_index_outweighs_b_trees_of_a_table_fourteen_times_larger():
    """The benchmark's tables: IVFFlat on 20 000 vectors took 2 s, two B-trees on 281 542 audit rows 0.5 s. The
    vector index's session gets nothing more, or what follows it waits for the slowest build."""
    post = b''.join(b'--\n-- Name: %s; Type: INDEX; Schema: public; Owner: postgres\n--\n\n%s\n\n\n' % (name, sql) for name, sql in [
        (b'kb_vec_idx', b'CREATE INDEX kb_vec_idx ON public.kb USING ivfflat (embedding vector_cosine_ops);'),
        (b'kb_meta_idx', b'CREATE INDEX kb_meta_idx ON public.kb USING gin (metadata jsonb_path_ops);'),
        (b'log_actor_idx', b'CREATE INDEX log_actor_idx ON public.log USING btree (actor);'),
        (b'log_at_idx', b'CREATE INDEX log_at_idx ON public.log USING btree (at);')])
    plan = split_post_data(post, {'public.kb': 20000, 'public.log': 281542})
    indexes = [indexes for _constraints, indexes in plan.sessions(2, '')]
    assert [script.count('CREATE INDEX') for script in indexes] == [1, 3]
    assert 'kb_vec_idx' in indexes[0]


def test_the_data_checks_begin_once_the_constraints_are_built(tmp_path, monkeypatch):
    """A primary key's build locks its table against reads too: the row counts beside the post-data section would
    hold it up, and the index build that follows it in its session."""
    path = tmp_path / 'supabase_backup_20260101_000000.sql.gz'
    # Past the bytes checked before anything is loaded: only then is the post-data section held back.
    path.write_bytes(gzip.compress(DUMP.replace(b'CREATE TABLE', b'-- %s\nCREATE TABLE' % (b'-' * START_BYTES), 1)))
    checks_began = threading.Event()
    scripts = []

    def psql(_target, _name, _backup, chunks, _options, bulk=False):
        script = b''.join(chunks).decode('utf-8')
        if 'ADD CONSTRAINT kb_pkey' in script:
            scripts.append(('constraints', checks_began.wait(0.5)))  # checks begun by now would be seen
        elif 'CREATE INDEX' in script:
            scripts.append(('indexes', checks_began.wait(5)))
        return ('pipe', None) if bulk else (None, None)

    monkeypatch.setattr(_database_restorer, 'database_resources', lambda target: (8 << 30, 2))
    monkeypatch.setattr(DatabaseRestorer, '_psql', staticmethod(psql))
    target = SimpleNamespace(copy=lambda: target)
    findings = DatabaseRestorer(target, 'template1', '1GB').load(
        'scratch', BackupFile(str(path)), beside_post_data=lambda loaded, checks: checks_began.set())
    assert sorted(scripts) == [('constraints', False), ('indexes', True), ('indexes', True)]
    assert findings['tables'] == {'public.kb': 2}


def test_a_failed_constraint_leaves_the_data_unchecked_and_is_raised(tmp_path, monkeypatch):
    path = tmp_path / 'supabase_backup_20260101_000000.sql.gz'
    path.write_bytes(gzip.compress(DUMP.replace(b'CREATE TABLE', b'-- %s\nCREATE TABLE' % (b'-' * START_BYTES), 1)))
    checked = []

    def psql(_target, _name, _backup, chunks, _options, bulk=False):
        if 'ADD CONSTRAINT kb_pkey' in b''.join(chunks).decode('utf-8'):
            raise CommandError('could not create unique index "kb_pkey"')
        return ('pipe', None) if bulk else (None, None)

    monkeypatch.setattr(_database_restorer, 'database_resources', lambda target: (8 << 30, 2))
    monkeypatch.setattr(DatabaseRestorer, '_psql', staticmethod(psql))
    target = SimpleNamespace(copy=lambda: target)
    with pytest.raises(CommandError, match='kb_pkey'):
        DatabaseRestorer(target, 'template1', '1GB').load('scratch', BackupFile(str(path)),
                                                          beside_post_data=lambda loaded, checks: checked.append(1))
    assert checked == []


@pytest.mark.parametrize('planted, beside', [
    (b'', ('row_counts', 'extensions', 'exact_search')),
    (b'CREATE POLICY own ON public.kb USING (false);\n', ('row_counts', 'extensions', 'exact_search')),
    (b'CREATE POLICY own ON public.knowledge_base USING (false);\n', ('row_counts', 'extensions', 'search_usable')),
    (b'ALTER TABLE public.knowledge_base FORCE ROW LEVEL SECURITY;\n', ('row_counts', 'extensions', 'search_usable')),
])
def test_the_exact_vector_search_runs_beside_the_section_unless_it_hides_rows_of_the_vector_table(
        tmp_path, monkeypatch, planted, beside):
    """The exact search would be compared with the indexed one run after the section: a policy or row level
    security on the vector table in between could make them differ."""
    end = b'--\n-- PostgreSQL database dump complete'
    dump = DUMP.replace(b'CREATE TABLE', b'-- %s\nCREATE TABLE' % (b'-' * START_BYTES), 1)
    path = tmp_path / 'supabase_backup_20260101_000000.sql.gz'
    path.write_bytes(gzip.compress(dump.replace(end, planted + b'\n' + end)))
    checked = []
    monkeypatch.setattr(_database_restorer, 'database_resources', lambda target: (8 << 30, 2))

    def psql(_target, _name, _backup, chunks, _options, bulk=False):
        b''.join(chunks)
        return ('pipe', None) if bulk else (None, None)

    monkeypatch.setattr(DatabaseRestorer, '_psql', staticmethod(psql))
    target = SimpleNamespace(copy=lambda: target)
    DatabaseRestorer(target, 'template1', '1GB').load('scratch', BackupFile(str(path)),
                                                      beside_post_data=lambda loaded, checks: checked.append(checks))
    assert checked == [beside]


def test_on_end_runs_before_post_data_is_released_and_can_stop_it():
    inspector = DumpInspector()
    splitter = DumpSplitter(inspector)

    def refuse():
        raise RuntimeError('checks failed')

    released = []
    with pytest.raises(RuntimeError):
        for chunk in splitter.first_session_chunks([DUMP], on_end=refuse):
            released.append(chunk)
    assert b''.join(released) == HEAD + b'--\n'
    assert splitter.plan is None


@pytest.mark.parametrize('post', [
    POST.replace(b'\\unrestrict KEY123', b'\\connect other'),
    POST.replace(b'--\n-- PostgreSQL database dump complete',
                 b'COPY public.kb (id) FROM stdin;\n3\n\\.\n\n--\n-- PostgreSQL database dump complete'),
    POST.replace(b'kb_vec_idx ON', b'kb_vec_idx \xff ON'),
    POST.replace(b'--\n-- Name: kb kb_pkey; Type: CONSTRAINT', b'--\n-- Name: kb kb_pkey; Type: FK CONSTRAINT')
        .replace(b'Tablespace: fast space\n--\n\nCREATE INDEX', b'\n--\n\nCOMMENT ON').replace(b'CREATE INDEX kb_vec', b'CREATE VIEW kb_vec'),
])
def test_what_cannot_be_split_with_certainty_runs_whole_in_the_first_session(post):
    _inspector, splitter, first = _split(HEAD + post, 5)
    assert first == HEAD + post
    assert splitter.plan is None


def test_more_post_data_than_the_cap_streams_in_order():
    big = POST.replace(b'--\n-- PostgreSQL database dump complete',
                       b'--\n-- Name: v; Type: RULE; Schema: public; Owner: postgres\n--\n\n'
                       + b'SELECT 1;\n' * 2000 + b'--\n-- PostgreSQL database dump complete')
    inspector, splitter, first = _split(HEAD + big, 100, limit=4096)
    assert first == HEAD + big
    assert splitter.plan is None
    assert inspector.complete


def test_dump_without_post_data_is_passed_whole():
    data = HEAD + b'--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict KEY123\n'
    inspector, splitter, first = _split(data, 7)
    assert first == data
    assert inspector.post_data_offset is None and splitter.plan is None


def test_dollar_quoted_and_escaped_strings_hide_semicolons_and_headers():
    text = ('--\n-- Name: i; Type: INDEX; Schema: public; Owner: postgres\n--\n\n'
            "CREATE INDEX i ON public.kb USING btree (id) WHERE (body <> E'\\';\\n-- Name: z; Type: INDEX');\n\n"
            '--\n-- Name: t; Type: TRIGGER; Schema: public; Owner: postgres\n--\n\n'
            'CREATE TRIGGER t AFTER INSERT ON public.kb FOR EACH ROW EXECUTE FUNCTION public.g($x$;$x$);\n')
    plan = split_post_data(text.encode())
    assert len(plan.parallel) == 1
    assert "E'\\';\\n-- Name: z; Type: INDEX');" in plan.parallel[0][1]
    assert 'CREATE TRIGGER t' in plan.sequential and 'CREATE INDEX' not in plan.sequential


def test_a_header_inside_a_function_body_only_costs_the_parallelism():
    head = HEAD.replace(b'SET default_tablespace = evil;\n',
                        b'SET default_tablespace = evil;\n--\n-- Name: fake; Type: INDEX; Schema: public; Owner: x\n--\n')
    _inspector, splitter, first = _split(head + POST, 9)
    assert first == head + POST
    assert splitter.plan is None


@pytest.mark.parametrize('size', [5, 1 << 20])
def test_nothing_is_released_before_the_start_was_checked(size):
    inspector = DumpInspector()
    splitter = DumpSplitter(inspector)
    text = b'hello; DROP TABLE x;\n' * 1000

    def refuse():
        assert not inspector.header_seen
        raise RuntimeError('not a dump')

    released = []
    with pytest.raises(RuntimeError):
        for chunk in splitter.first_session_chunks([text[i:i + size] for i in range(0, len(text), size)],
                                                   on_start=refuse):
            released.append(chunk)
    assert released == []


def test_a_short_dump_is_checked_at_its_end_before_anything_is_released():
    inspector = DumpInspector()
    calls = []
    first = b''.join(DumpSplitter(inspector).first_session_chunks([HEAD[:100], HEAD[100:]],
                                                                  on_start=lambda: calls.append(inspector.header_seen)))
    assert first == HEAD and calls == [True]
