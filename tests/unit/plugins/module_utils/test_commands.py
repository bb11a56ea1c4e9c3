import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._commands import last_line, without_row_data
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._docker import TailBuffer


@pytest.mark.parametrize('stderr,expected', [
    ('pg_dump: error: Dumping the contents of table "big" failed: PQgetCopyData() failed.\n'
     'pg_dump: detail: Error message from server: FATAL:  terminating connection due to administrator command\n'
     'pg_dump: detail: Command was: COPY public.big (a) TO stdout;',
     'pg_dump: error: Dumping the contents of table "big" failed: PQgetCopyData() failed. '
     '(FATAL:  terminating connection due to administrator command)'),
    ('SET\npsql:<stdin>:12: ERROR:  division by zero\nCONTEXT:  SQL function', 'psql:<stdin>:12: ERROR:  division by zero'),
    ('psql: error: connection to server failed: FATAL:  database "x" does not exist',
     'psql: error: connection to server failed: FATAL:  database "x" does not exist'),
    ('first\n\nlast\n', 'last'),
    ('', ''),
])
def test_last_line_names_the_client_error_and_the_server_reason(stderr, expected):
    assert last_line(stderr) == expected


# PostgreSQL 18's own messages for a failing COPY, as psql printed them.
@pytest.mark.parametrize('stderr,expected', [
    ('psql:<stdin>:4: ERROR:  extra data after last expected column\n'
     'CONTEXT:  COPY t, line 1: "1\tBearer sekrit-one"\n',
     'psql:<stdin>:4: ERROR:  extra data after last expected column\nCONTEXT:  COPY t, line 1\n'),
    ('ERROR:  duplicate key value violates unique constraint "t_pkey"\nDETAIL:  Key (token)=(sekrit-one) already exists.\n'
     'CONTEXT:  COPY t, line 2\n',
     'ERROR:  duplicate key value violates unique constraint "t_pkey"\n'
     'DETAIL:  (left out: it can quote the data)\nCONTEXT:  COPY t, line 2\n'),
    ('ERROR:  invalid input syntax for type json\nDETAIL:  Token "sekrit" is invalid.\n'
     'CONTEXT:  JSON data, line 1: {"a": sekrit...\nCOPY t, line 1, column j: "{"a": sekrit-json}"\n'
     'HINT:  kept\n',
     'ERROR:  invalid input syntax for type json\nDETAIL:  (left out: it can quote the data)\n'
     'CONTEXT:  COPY t, line 1, column j\nHINT:  kept\n'),
    ('CONTEXT:  COPY cron.job, line 1: "COPY sekrit, line 9 and more"\n', 'CONTEXT:  COPY cron.job, line 1\n'),
    ('ERROR:  syntax error at or near "2"\nLINE 1: 2 Bearer sekrit-one\n        ^\n',
     'ERROR:  syntax error at or near "2"\nLINE 1: (left out: it can quote the data)\n'),
    ('CONTEXT:  SQL function "f" statement 1: sekrit\n', 'CONTEXT:  (left out: it can quote the data)\n'),
    ('SET\npsql:<stdin>:12: ERROR:  division by zero\n', 'SET\npsql:<stdin>:12: ERROR:  division by zero\n'),
    ('', ''),
])
def test_errors_of_a_load_keep_where_it_failed_but_never_the_rows(stderr, expected):
    cleaned = without_row_data(stderr)
    assert cleaned == expected
    assert 'sekrit' not in cleaned
    assert last_line(cleaned) == last_line(stderr) or 'CONTEXT' in last_line(stderr)


def test_tail_buffer_keeps_only_the_end():
    tail = TailBuffer(limit=10)
    for piece in (b'0123456789', b'abcdefghij', b'XYZ'):
        tail.add(piece)
    assert tail.text() == 'defghijXYZ'
