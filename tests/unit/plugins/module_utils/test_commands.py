import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._commands import last_line
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


def test_tail_buffer_keeps_only_the_end():
    tail = TailBuffer(limit=10)
    for piece in (b'0123456789', b'abcdefghij', b'XYZ'):
        tail.add(piece)
    assert tail.text() == 'defghijXYZ'
