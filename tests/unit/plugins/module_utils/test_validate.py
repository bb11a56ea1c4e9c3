"""ValidateBackend at the Docker/psql boundary: a report in every case, the staging database
always dropped, the live database never touched, and a backup that restores other data fails."""

import copy
import json
import os
import re
import stat

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _validate
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backend import run_backend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    BackupFileError,
    CommandError,
    VerificationError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import validate_argument_spec
from ansible_collections.cortexreview.supabase_backup.tests.unit.fakes import (
    FakeDatabase,
    FakeServer,
    dump_text,
    install,
    module_params,
    write_backup,
)

NOW = 1_800_000_000
TABLES = {'public.knowledge_base': 4, 'public.learned_constraints': 3, 'public.feedback_audit_log': 2}
INDEXES = ['public.knowledge_base_pkey']
LIVE = FakeDatabase(tables={'public.knowledge_base': 9}, indexes=INDEXES)


@pytest.fixture
def world(monkeypatch, tmp_path):
    server = FakeServer({'postgres': copy.deepcopy(LIVE), 'template1': FakeDatabase()})
    install(monkeypatch, server)
    server.src = write_backup(tmp_path / 'supabase_backup_20260101_000000.sql.gz', dump_text(TABLES, INDEXES))
    server.before = copy.deepcopy(server.databases)
    return server


def backend(world, check_mode=False, **options):
    params = module_params(validate_argument_spec(), **dict({'src': world.src, 'container': 'fake-db'}, **options))
    return _validate.ValidateBackend.from_params(params, check_mode=check_mode, clock=lambda: NOW)


def report_of(world):
    with open(world.src + '.validation.json', encoding='utf-8') as handle:
        report = json.load(handle)
    with open(world.src + '.validation.txt', encoding='utf-8') as handle:
        summary = handle.read()
    for path in (world.src + '.validation.json', world.src + '.validation.txt'):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    return report, summary


def assert_staging_dropped_and_live_untouched(world):
    assert world.databases == world.before
    created = world.executed('^CREATE DATABASE')
    assert len(created) == 1 and '"postgres_validate_' in created[0]
    assert world.executed('^DROP DATABASE IF EXISTS "postgres_validate_')
    assert world.executed('RENAME') == []


def test_a_good_backup_passes_with_a_report(world):
    result = backend(world).run()
    assert result['passed'] is True and result['changed'] is True
    assert result['row_counts'] == TABLES
    assert result['contract_queries']['row_counts'] == {
        'knowledge_base': 4, 'learned_constraints': 3, 'feedback_audit_log': 2}
    report, summary = report_of(world)
    assert report['passed'] is True and report['row_counts'] == TABLES
    assert summary.splitlines()[0] == 'Supabase backup validation: PASSED'
    assert re.match(r'^postgres_validate_\d{8}_\d{6}$', report['staging_database'])
    assert_staging_dropped_and_live_untouched(world)
    assert world.unmodelled == []


def test_a_backup_that_restores_other_row_counts_fails_with_a_failed_report(world):
    world.load_tamper = lambda database: database.tables.update({'public.learned_constraints': 1})
    with pytest.raises(VerificationError) as caught:
        backend(world).run()
    assert 'public.learned_constraints: 1 rows, backup has 3' in caught.value.msg
    assert caught.value.details['report'] == world.src + '.validation.json'
    report, summary = report_of(world)
    assert report['passed'] is False and report['error'] == caught.value.msg
    assert 'row_counts' not in report and 'contract_queries' not in report
    assert summary.splitlines()[0] == 'Supabase backup validation: FAILED'
    assert_staging_dropped_and_live_untouched(world)


def test_a_backup_whose_sql_fails_gives_a_failed_report(world):
    world.load_error = (3, 'psql:<stdin>:7: ERROR:  division by zero')
    with pytest.raises(CommandError, match='division by zero'):
        backend(world).run()
    report, _summary = report_of(world)
    assert report['passed'] is False and 'division by zero' in report['error']
    assert_staging_dropped_and_live_untouched(world)


def test_a_corrupt_backup_fails_on_the_load_s_own_read_and_its_staging_database_goes(world):
    with open(world.src, 'r+b') as handle:
        handle.truncate(os.path.getsize(world.src) // 2)
    with pytest.raises(BackupFileError, match='truncated'):
        backend(world).run()
    report, _summary = report_of(world)
    assert report['passed'] is False and 'truncated' in report['error']
    assert_staging_dropped_and_live_untouched(world)


def test_a_missing_backup_is_recorded_as_a_failed_validation(world, tmp_path):
    metrics = str(tmp_path / 'metrics.prom')
    params = module_params(validate_argument_spec(), src=str(tmp_path / 'absent.sql.gz'), container='fake-db',
                           metrics_file=metrics)
    result, error, _warnings = run_backend(_validate.ValidateBackend, params)
    assert result is None and isinstance(error, BackupFileError) and 'does not exist' in error.msg
    with open(metrics, encoding='utf-8') as handle:
        text = handle.read()
    assert re.search(r'^supabase_backup_success\{[^}]*operation="validate"[^}]*\} 0$', text, re.M), text
    assert world.log == []


def test_check_mode_makes_no_database_and_no_report(world):
    result = backend(world, check_mode=True).run()
    assert result['msg'].startswith('Would validate')
    assert world.executed('CREATE DATABASE|DROP') == []
    assert not os.path.exists(world.src + '.validation.json')


def test_a_report_directory_that_cannot_be_written_is_a_warning(world, tmp_path):
    blocked = tmp_path / 'blocked'
    blocked.write_text('a file, not a directory')
    validation = backend(world, report_dir=str(blocked))
    result = validation.run()
    assert result['passed'] is True
    assert any('validation report' in warning and 'not written' in warning for warning in validation.warnings)


def test_a_staging_database_that_cannot_be_dropped_still_fails_the_validation(world):
    world.load_tamper = lambda database: database.tables.update({'public.learned_constraints': 1})
    world.fail_on(r'^DROP DATABASE IF EXISTS "postgres_validate_', 'cannot drop: disk on fire')
    with pytest.raises(CommandError):
        backend(world).run()
    report, _summary = report_of(world)
    assert report['passed'] is False
    assert world.databases['postgres'] == LIVE


PG_CRON_SQL = '''
--
-- Name: pg_cron; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS pg_cron WITH SCHEMA pg_catalog;

--
-- Data for Name: job; Type: TABLE DATA; Schema: cron; Owner: postgres
--

COPY cron.job (jobid, schedule, command) FROM stdin;
1	*/5 * * * *	VACUUM
2	0 3 * * *	SELECT 1
\\.

--
-- Name: jobid_seq; Type: SEQUENCE SET; Schema: cron; Owner: postgres
--

SELECT pg_catalog.setval('cron.jobid_seq', 2, true);

--
-- Name: t2; Type: TABLE; Schema: public; Owner: postgres
--
'''


def test_pg_cron_is_counted_in_the_stream_and_never_loaded_into_staging(world):
    # Staging is never cron.database_name: pg_cron's entries are left out of the load, and said so.
    write_backup(world.src, dump_text(TABLES, INDEXES, extra_sql=PG_CRON_SQL))
    result = backend(world).run()
    assert result['passed'] is True and result['row_counts'] == TABLES
    assert result['not_loaded'] == [{'database': None, 'main': True, 'extensions': ['pg_cron'],
                                     'tables': {'cron.job': 2}}]
    assert result['msg'].endswith('; pg_cron: cron.job 2 rows checked in the stream, not loaded into staging')
    assert result.get('warnings') in (None, [])
    report, summary = report_of(world)
    assert report['not_loaded'] == result['not_loaded']
    assert 'not loaded: pg_cron: cron.job 2 rows checked in the stream, not loaded into staging' in summary
    assert_staging_dropped_and_live_untouched(world)
    # The stream's rows of cron.job are checked against the manifest's like every table's.
    with open(world.src + '.manifest.json', 'w', encoding='utf-8') as handle:
        json.dump({'version': 1, 'tables': dict(TABLES, **{'cron.job': 3})}, handle)
    with pytest.raises(BackupFileError, match="does not match its manifest's row counts"):
        backend(world).run()
    with open(world.src + '.manifest.json', 'w', encoding='utf-8') as handle:
        json.dump({'version': 1, 'tables': dict(TABLES, **{'cron.job': 2})}, handle)
    assert backend(world).run()['not_loaded'][0]['tables'] == {'cron.job': 2}
