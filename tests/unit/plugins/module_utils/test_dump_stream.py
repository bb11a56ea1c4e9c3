import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._dump_stream import (
    BACKSLASH_PROBES,
    DumpInspector,
    NEWLINE_PROBES,
    _find_end_marker,
    count_lines,
    parse_copy_target,
)

DUMP = (
    b'--\n-- PostgreSQL database dump\n--\n\n'
    b'\\restrict abcDEF123\n\n'
    b'-- Dumped from database version 18.6\n'
    b'-- Dumped by pg_dump version 18.6\n\n'
    b'CREATE TABLE public.kb (id bigint, body text);\n'
    b'COPY public.kb (id, body) FROM stdin;\n'
    b'1\tplain\n'
    b'2\tback\\\\slash and \\\\.\n'
    b'3\t\\\\.\n'
    b'4\ttab\\there\\nnewline\n'
    b'\\.\n\n'
    b'COPY public."Weird ""Table""" (a) FROM stdin;\n'
    b'x\n'
    b'\\.\n\n'
    b'COPY public.empty (a) FROM stdin;\n'
    b'\\.\n\n'
    b"SELECT pg_catalog.setval('public.kb_id_seq', 4, true);\n"
    b'CREATE INDEX kb_idx ON public.kb USING btree (id);\n\n'
    b'--\n-- PostgreSQL database dump complete\n--\n\n'
    b'\\unrestrict abcDEF123\n\n'
)
EXPECTED = {'public.kb': 4, 'public."Weird ""Table"""': 1, 'public.empty': 0}


def _inspect(chunks):
    inspector = DumpInspector()
    for chunk in chunks:
        inspector.feed(chunk)
    return inspector


def test_whole_dump():
    inspector = _inspect([DUMP])
    assert inspector.tables == EXPECTED
    assert inspector.versions == {'server_version': '18.6', 'pg_dump_version': '18.6'}
    assert inspector.complete


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(DUMP) - 1), unique=True, max_size=40))
def test_any_chunking_gives_the_same_counts(cuts):
    bounds = [0] + sorted(cuts) + [len(DUMP)]
    inspector = _inspect([DUMP[a:b] for a, b in zip(bounds, bounds[1:])])
    assert inspector.tables == EXPECTED
    assert inspector.complete


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=0, max_size=300).map(lambda raw: bytes(b'\\\n.x'[byte % 4] for byte in raw)),
       st.integers(min_value=0, max_value=300))
def test_the_end_marker_is_found_where_a_plain_search_finds_it(data, pos):
    # Made of backslashes, newlines and dots: the probes and the fallback past them both run.
    assert _find_end_marker(data, pos) == data.find(b'\n\\.\n', pos)


@pytest.mark.parametrize('decoys', range(BACKSLASH_PROBES - 2, BACKSLASH_PROBES + 3))
@pytest.mark.parametrize('pos', [0, 1, 3])
def test_the_end_marker_after_as_many_backslashes_as_probes(decoys, pos):
    # The marker's backslash is the last probed one, the first left to the plain search, or one past it.
    data = b'\\.' + b'x\\' * decoys + b'\n\\.\n' + b'\n\\.\n'
    assert _find_end_marker(data, pos) == data.find(b'\n\\.\n', pos) == 2 + 2 * decoys


@pytest.mark.parametrize('data, pos, expected', [
    (b'\n\\.\n', 0, 0), (b'ab\n\\.\n', 2, 2), (b'ab\n\\.\n', 3, -1), (b'\\.\n', 0, -1), (b'a\n\\.', 0, -1)])
def test_the_end_marker_at_the_edges(data, pos, expected):
    assert _find_end_marker(data, pos) == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=40), max_size=3 * NEWLINE_PROBES),
       st.integers(min_value=0, max_value=50), st.integers(min_value=0, max_value=50))
def test_count_lines_counts_as_bytes_count(line_lengths, start, cut):
    # Fewer lines than the probes, and more: the count left to bytes.count starts where the probes stopped.
    data = b''.join(b'x' * length + b'\n' for length in line_lengths)
    end = max(start, len(data) - cut)
    assert count_lines(data, start, end) == data.count(b'\n', start, end)


@pytest.mark.parametrize('lines', [NEWLINE_PROBES - 1, NEWLINE_PROBES, NEWLINE_PROBES + 1, 3 * NEWLINE_PROBES])
def test_count_lines_around_the_probes(lines):
    data = b'row\n' * lines + b'unfinished'
    assert count_lines(data, 0, len(data)) == lines
    assert count_lines(data, 4, len(data) - 1) == lines - 1


def test_a_block_with_more_backslashes_than_probes_still_ends_at_its_marker():
    rows = b''.join(b'%d\tescaped \\\\ backslash\n' % number for number in range(BACKSLASH_PROBES * 3))
    inspector = _inspect([DUMP.replace(b'4\ttab\\there\\nnewline\n', b'4\ttab\\there\\nnewline\n' + rows)])
    assert inspector.tables == dict(EXPECTED, **{'public.kb': 4 + BACKSLASH_PROBES * 3})
    assert inspector.complete


def test_byte_by_byte():
    inspector = _inspect([DUMP[i:i + 1] for i in range(len(DUMP))])
    assert inspector.tables == EXPECTED
    assert inspector.complete


@pytest.mark.parametrize('cut', [len(DUMP) // 2, DUMP.index(b'3\t'), DUMP.index(b'-- PostgreSQL database dump complete')])
def test_truncated_dump_is_incomplete(cut):
    assert not _inspect([DUMP[:cut]]).complete


def test_marker_followed_by_sql_is_incomplete():
    assert not _inspect([DUMP + b'CREATE TABLE late (a int);\n']).complete


def test_open_copy_block_is_incomplete():
    # The marker inside COPY data is a data row, not the end of the dump.
    text = b'COPY public.t (a) FROM stdin;\n1\n--\n-- PostgreSQL database dump complete\n--\n\n'
    inspector = _inspect([text])
    assert inspector.tables == {'public.t': 5}
    assert not inspector.complete


def test_long_sql_lines_are_bounded():
    inspector = DumpInspector()
    inspector.feed(b'-- ' + b'a' * (1 << 20))
    assert len(inspector._line_start) <= 64 * 1024  # pylint: disable=protected-access
    inspector.feed(b'\nCOPY public.t (a) FROM stdin;\n1\n\\.\n')
    assert inspector.tables == {'public.t': 1}


@pytest.mark.parametrize('line,expected', [
    ('COPY public.kb (id, body) FROM stdin;', 'public.kb'),
    ('COPY public."Weird Table" (a) FROM stdin;', 'public."Weird Table"'),
    ('COPY "s p"."t ""q""" (a) FROM stdin;', '"s p"."t ""q"""'),
    ('COPY public.t FROM stdin;', 'public.t'),
    ('COPY public.t (a) TO stdout;', None),
    ('CREATE TABLE x (a int);', None),
])
def test_parse_copy_target(line, expected):
    assert parse_copy_target(line) == expected
