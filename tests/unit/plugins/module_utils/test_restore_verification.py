"""The verdicts of a restore's last checks: the indexes and the vector search, judged from the rows the server gives."""

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._database_restorer import (
    EXACT_SEARCH,
    IVFFLAT_MAX_PROBES,
    SEARCH_USABLE,
    DatabaseRestorer,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import VerificationError

INDEXES = ['public.kb_pkey', 'public.kb_vec_idx']
EXACT = {'checked': True, 'exact': [7, 3, 9, 1, 4], 'own': 7}


class Server:
    """Answers the verification's queries with set rows; records each query."""

    def __init__(self, index_rows, matches=(), usable='t', exact_rows=()):
        self.index_rows = index_rows
        self.matches = matches
        self.usable = usable
        self.exact_rows = exact_rows
        self.queries = []

    def copy(self):
        return self

    def query(self, sql, db=None):
        self.queries.append(sql)
        if sql.startswith('SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_proc'):
            return [[self.usable]]
        if sql.startswith('SET enable_indexscan = off'):
            return [list(row) for row in self.exact_rows]
        if "SELECT 'index', " in sql:
            rows = [['index'] + list(row) for row in self.index_rows]
            if 'UNION ALL' in sql:
                rows += [['match', str(match), '', ''] for match in self.matches]
            return rows
        if sql.startswith('SELECT extname'):
            return [['vector', '0.8.1']]
        if 'count(*)' in sql:
            return [['0', '2']]
        raise AssertionError('unexpected query: %s' % sql)


def _judge(server, exact=None):
    """The checks after the builds, the exact search (``exact``) having run beside them."""
    done = {'row_counts': {}, 'extensions': {}, EXACT_SEARCH: exact or EXACT}
    findings = DatabaseRestorer(server, 'template1', '1GB').verify('scratch', {'tables': {}, 'indexes': INDEXES},
                                                                   done=done)
    return findings['indexes'], findings['vector_search']


def test_the_same_neighbours_through_the_index_pass_and_report_the_lists():
    server = Server([('public.kb_pkey', 't', ''), ('public.kb_vec_idx', 't', '100')], matches=[3, 7, 1, 9, 4])
    indexes, search = _judge(server)
    assert indexes == INDEXES
    assert search == {'checked': True, 'neighbours': [7, 3, 9, 1, 4], 'probes': 100}
    # One statement: probes at pgvector's highest, so the index scan searches every list.
    assert len(server.queries) == 1 and server.queries[0].startswith('SET ivfflat.probes = %d; ' % IVFFLAT_MAX_PROBES)


@pytest.mark.parametrize('matches', [[7, 3, 9, 1], [7, 3, 9, 1, 5], []])
def test_other_neighbours_through_the_index_fail(matches):
    server = Server([('public.kb_pkey', 't', ''), ('public.kb_vec_idx', 't', '100')], matches=matches)
    with pytest.raises(VerificationError, match='vector search through match_knowledge is wrong'):
        _judge(server)


def test_a_stored_vector_that_does_not_find_itself_first_fails():
    server = Server([('public.kb_pkey', 't', ''), ('public.kb_vec_idx', 't', '100')], matches=[7, 3, 9, 1, 4])
    with pytest.raises(VerificationError, match='is wrong'):
        _judge(server, dict(EXACT, own=3))


@pytest.mark.parametrize('index_rows, named', [
    ([('public.kb_pkey', 't', '')], 'public.kb_vec_idx'),
    ([('public.kb_pkey', 't', ''), ('public.kb_vec_idx', 'f', '100')], 'public.kb_vec_idx'),
    ([('public.kb_pkey', 't', ''), ('public.kb_vec_idx', 't', '100'), ('public.extra_idx', 'f', '')],
     'public.extra_idx'),
])
def test_a_missing_or_invalid_index_fails_before_the_search_is_judged(index_rows, named):
    server = Server(index_rows, matches=[7, 3, 9, 1, 4])
    with pytest.raises(VerificationError, match='missing or invalid.*%s' % named.replace('.', r'\.')):
        _judge(server)


def test_a_search_that_cannot_run_is_reported_and_not_queried():
    skipped = {'checked': False, 'reason': 'knowledge_base holds no vectors'}
    server = Server([('public.kb_pkey', 't', ''), ('public.kb_vec_idx', 't', '100')])
    assert _judge(server, skipped) == (INDEXES, skipped)
    assert 'UNION ALL' not in server.queries[0]


def test_the_exact_search_run_beside_the_indexes_is_not_run_again():
    server = Server([('public.kb_pkey', 't', ''), ('public.kb_vec_idx', 't', '100')], matches=[7, 3, 9, 1, 4])
    restorer = DatabaseRestorer(server, 'template1', '1GB')
    expected = {'tables': {}, 'indexes': INDEXES}
    findings = restorer.verify('scratch', expected, done={'row_counts': {}, 'extensions': {}, EXACT_SEARCH: EXACT})
    assert findings['vector_search'] == {'checked': True, 'neighbours': [7, 3, 9, 1, 4], 'probes': 100}
    assert EXACT_SEARCH not in findings
    assert not [sql for sql in server.queries if sql.startswith(('SET enable_indexscan', 'SELECT EXISTS'))]


@pytest.mark.parametrize('reason', ['', 'no public.match_knowledge function or knowledge_base table'])
def test_a_search_found_possible_beside_the_builds_runs_both_halves_after_them(reason):
    """Where row security kept the exact search from running beside the builds, only whether the search can run
    was checked there: after them its halves run at once, and the check is not run again."""
    server = Server([('public.kb_pkey', 't', ''), ('public.kb_vec_idx', 't', '100')], matches=[4, 1, 9, 3, 7],
                    exact_rows=[('7', '7'), ('3', '7'), ('9', '7'), ('1', '7'), ('4', '7')])
    findings = DatabaseRestorer(server, 'template1', '1GB').verify(
        'scratch', {'tables': {}, 'indexes': INDEXES}, done={'row_counts': {}, 'extensions': {}, SEARCH_USABLE: reason})
    assert not [sql for sql in server.queries if sql.startswith('SELECT EXISTS')]
    assert SEARCH_USABLE not in findings
    if reason:
        assert findings['vector_search'] == {'checked': False, 'reason': reason}
        assert len(server.queries) == 1 and 'UNION ALL' not in server.queries[0]
    else:
        assert findings['vector_search'] == {'checked': True, 'neighbours': [7, 3, 9, 1, 4], 'probes': 100}
        assert len(server.queries) == 2


def test_without_a_search_beside_the_last_checks_run_it_first():
    server = Server([('public.kb_pkey', 't', ''), ('public.kb_vec_idx', 't', '50')], matches=[4, 1, 9, 3, 7],
                    exact_rows=[('7', '7'), ('3', '7'), ('9', '7'), ('1', '7'), ('4', '7')])
    restorer = DatabaseRestorer(server, 'template1', '1GB')
    findings = restorer.verify('scratch', {'tables': {}, 'indexes': INDEXES})
    assert findings['vector_search'] == {'checked': True, 'neighbours': [7, 3, 9, 1, 4], 'probes': 50}
    assert sorted(findings) == ['extensions', 'indexes', 'row_counts', 'vector_search']
