"""Base backups of the point-in-time archive: label and manifest, the kind chosen, the catalog entry, failure
paths (nothing stays), retention of chains and WAL, check mode, the cron runner's subcommand."""

import json
import os
import stat

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _pitr_base as base
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _runner
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    BackupFileError,
    CommandError,
    ConfigError,
    StorageError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import (
    PITR_BASE_BACKUP_OPTIONS,
    pitr_base_backup_argument_spec,
    validate_config,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._pitr_wal import Catalog, segment_name

MB = 1024 * 1024
SIZE = 16 * MB
DAY = 86400
NOW = 1_800_000_000
SERVER = {'version_num': 180001, 'wal_segment_size': SIZE, 'summarize_wal': True,
          'system_identifier': '7000000000000000001', 'timeline': 1, 'tablespaces': 0}
LABEL = ('START WAL LOCATION: 0/9000028 (file 000000010000000000000009)\nCHECKPOINT LOCATION: 0/9000080\n'
         'BACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-11-27 10:15:00 UTC\n'
         'LABEL: pitr-base-20261127_101500\nSTART TIMELINE: 1\n')
MANIFEST = json.dumps({'PostgreSQL-Backup-Manifest-Version': 2, 'System-Identifier': 7000000000000000001,
                       'Files': [], 'WAL-Ranges': [{'Timeline': 1, 'Start-LSN': '0/9000028',
                                                    'End-LSN': '0/A000000'}]})


def seg(number, timeline=1):
    return segment_name(timeline, number, SIZE)


# --------------------------------------------------------------------------------- label, manifest --

def test_parse_backup_label():
    assert base.parse_backup_label(LABEL) == {'start_lsn': '0/9000028', 'start_wal': seg(9), 'timeline': 1}
    with pytest.raises(BackupFileError, match='backup_label'):
        base.parse_backup_label('START TIME: now\n')
    with pytest.raises(BackupFileError):
        base.parse_backup_label(LABEL.replace('START TIMELINE: 1', 'START TIMELINE: one'))


def test_parse_manifest_takes_the_last_wal_range():
    text = json.dumps({'WAL-Ranges': [{'Timeline': 1, 'Start-LSN': '0/1', 'End-LSN': '0/5000000'},
                                      {'Timeline': 2, 'Start-LSN': '0/5000000', 'End-LSN': '0/6000010'}]})
    assert base.parse_manifest(text) == ('0/6000010', 2, None)
    assert base.parse_manifest(MANIFEST) == ('0/A000000', 1, '7000000000000000001')
    for bad in ('{', '{}', json.dumps({'WAL-Ranges': []}), json.dumps({'WAL-Ranges': [{'Timeline': 1}]}),
                json.dumps({'WAL-Ranges': [{'Timeline': 1, 'End-LSN': 'nope'}]})):
        with pytest.raises(BackupFileError, match='WAL-Ranges'):
            base.parse_manifest(bad)


def test_catalog_entry_has_exactly_the_spec_keys():
    entry = base.catalog_entry('pitr-base-20261127_101500', 'full', None, base.parse_backup_label(LABEL), MANIFEST,
                               SERVER, 'a', 'b', 123.5, 42)
    assert entry == {'format': 1, 'name': 'pitr-base-20261127_101500', 'type': 'full', 'parent': None,
                     'timeline': 1, 'start_lsn': '0/9000028', 'stop_lsn': '0/A000000', 'start_wal': seg(9),
                     # a stop on a segment boundary needs the segment before it only
                     'stop_wal': seg(9), 'started_at': 'a', 'finished_at': 'b', 'finished_epoch': 123.5,
                     'pg_version': '18', 'system_identifier': '7000000000000000001', 'wal_segment_size': SIZE,
                     'size': 42}


def test_catalog_entry_refuses_a_manifest_of_another_system():
    with pytest.raises(BackupFileError, match='database system'):
        base.catalog_entry('pitr-base-20261127_101500', 'full', None, base.parse_backup_label(LABEL), MANIFEST,
                           dict(SERVER, system_identifier='1'), 'a', 'b', 1.0, 1)


# ----------------------------------------------------------------------------------------- kind --

def entry(name, epoch, kind='full', parent=None, start=2, system='7000000000000000001', timeline=1):
    return {'format': 1, 'name': name, 'type': kind, 'parent': parent, 'timeline': timeline,
            'start_lsn': '0/%X' % (start * SIZE + 0x28), 'stop_lsn': '0/%X' % (start * SIZE + 0x100),
            'start_wal': seg(start, timeline), 'stop_wal': seg(start, timeline), 'started_at': 'x',
            'finished_at': 'y', 'finished_epoch': epoch, 'pg_version': '18', 'system_identifier': system,
            'wal_segment_size': SIZE, 'size': 1}


FULL_A = entry('pitr-base-20261101_000000', NOW - 3 * DAY)
INC_A = entry('pitr-base-20261102_000000', NOW - 2 * DAY, 'incremental', FULL_A['name'], start=4)


@pytest.mark.parametrize('incremental, server, catalog, expected, why', [
    (False, SERVER, Catalog([FULL_A]), ('full', None), None),
    (True, SERVER, Catalog([FULL_A, INC_A]), ('incremental', 'pitr-base-20261102_000000'), None),
    (True, SERVER, Catalog([FULL_A]), ('incremental', 'pitr-base-20261101_000000'), None),
    (True, dict(SERVER, version_num=150008), Catalog([FULL_A]), ('full', None), 'server is PostgreSQL 15: '),
    (True, dict(SERVER, version_num=160004), Catalog([FULL_A]), ('full', None), 'server is PostgreSQL 16: '),
    (True, dict(SERVER, summarize_wal=False), Catalog([FULL_A]), ('full', None), 'summarize_wal is off'),
    (True, SERVER, Catalog(), ('full', None), 'no full base backup yet'),
    (True, SERVER, Catalog([INC_A]), ('full', None), 'no full base backup yet'),
    (True, SERVER, Catalog([FULL_A], problems=['x.json: unreadable']), ('full', None), 'x.json: unreadable'),
    (True, dict(SERVER, system_identifier='9'), Catalog([FULL_A]), ('full', None), 'of database system'),
    (True, dict(SERVER, timeline=2), Catalog([FULL_A]), ('full', None), 'on timeline 1, the server on 2'),
])
def test_choose_kind(incremental, server, catalog, expected, why):
    kind, parent, reason = base.choose_kind(incremental, server, catalog)
    assert (kind, parent['name'] if parent else None) == expected
    if why is None:
        assert reason is None
    else:
        assert why in reason and 'took a full' in reason


# -------------------------------------------------------------------------------------- backend --

class FakeTools:
    """run_tool at the Docker boundary: pg_basebackup writes a backup into the partial directory."""

    def __init__(self, layout, fail=None, stderr='', label=LABEL, manifest=MANIFEST):
        self.layout = layout
        self.fail = fail
        self.stderr = stderr
        self.files = (('backup_label', label), ('backup_manifest', manifest), ('base/1/1', 'x' * 100))
        self.calls = []

    def host_path(self, container_path):
        return os.path.join(self.layout.root, container_path[len('/pitr/'):])

    def __call__(self, db, settings, argv, what, **_kwargs):
        self.calls.append(list(argv))
        if argv[0] == 'pg_basebackup':
            target = self.host_path(argv[argv.index('-D') + 1])
            os.makedirs(os.path.join(target, 'base', '1'), mode=0o755)
            for name, text in self.files:
                with open(os.path.join(target, name), 'w', encoding='utf-8') as stream:
                    stream.write(text)
                os.chmod(os.path.join(target, name), 0o644)
        if self.fail == argv[0]:
            raise CommandError('cannot %s: boom' % what, rc=1, stderr=self.stderr or 'boom')
        return ''


def make_backend(tmp_path, check_mode=False, **options):
    options = dict({'backup_dir': str(tmp_path / 'backups')}, **options)
    params = validate_config(pitr_base_backup_argument_spec(), options)
    backend = base.PitrBaseBackend.from_params(params, check_mode=check_mode, clock=lambda: NOW)
    layout = backend.settings.layout
    for path in (layout.root, layout.wal, layout.base):
        os.makedirs(path, 0o700, exist_ok=True)
    return backend


INFO = {'Name': '/db', 'NetworkSettings': {'Networks': {'net': {'IPAddress': '10.0.0.2', 'IPPrefixLen': 24}}}}


def test_a_full_backup_is_verified_private_and_cataloged(tmp_path, monkeypatch):
    backend = make_backend(tmp_path)
    layout = backend.settings.layout
    tools = FakeTools(layout)
    monkeypatch.setattr(base, 'run_tool', tools)
    new = backend.take(None, INFO, SERVER, 'pitr-base-20261127_101500', 'full', None)
    assert [call[0] for call in tools.calls] == ['pg_basebackup', 'pg_verifybackup']
    basebackup = tools.calls[0]
    assert basebackup[:8] == ['pg_basebackup', '-D', '/pitr/base/.pitr-base-20261127_101500.partial', '-Fp', '-X',
                              'stream', '--checkpoint=fast', '--label=pitr-base-20261127_101500']
    assert basebackup[8:] == ['-h', 'db', '-p', '5432', '-U', 'postgres', '-w']
    assert tools.calls[1] == ['pg_verifybackup', '/pitr/base/.pitr-base-20261127_101500.partial']
    final = layout.base_dir('pitr-base-20261127_101500')
    assert sorted(os.listdir(layout.base)) == ['pitr-base-20261127_101500', 'pitr-base-20261127_101500.json']
    for root, directories, files in os.walk(final):
        assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
        for name in files:
            assert stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode) == 0o600
    entry_path = layout.base_entry('pitr-base-20261127_101500')
    assert stat.S_IMODE(os.stat(entry_path).st_mode) == 0o600
    with open(entry_path, encoding='utf-8') as stream:
        assert json.load(stream) == new
    assert new['size'] == len(LABEL) + len(MANIFEST) + 100 and new['finished_epoch'] == NOW


def test_an_incremental_names_its_parents_manifest(tmp_path, monkeypatch):
    backend = make_backend(tmp_path)
    tools = FakeTools(backend.settings.layout)
    monkeypatch.setattr(base, 'run_tool', tools)
    new = backend.take(None, INFO, SERVER, 'pitr-base-20261127_101500', 'incremental', FULL_A)
    assert tools.calls[0][-1] == '--incremental=/pitr/base/pitr-base-20261101_000000/backup_manifest'
    assert new['type'] == 'incremental' and new['parent'] == FULL_A['name']


def _refuse_rename(_source, _destination):
    raise PermissionError(13, 'Permission denied')


def _refuse_write(path, _content, _mode):
    raise StorageError('cannot write %s: No space left on device' % path)


@pytest.mark.parametrize('tool_options, patch, error, match', [
    ({'fail': 'pg_basebackup'}, None, CommandError, 'boom'),
    ({'fail': 'pg_verifybackup'}, None, CommandError, 'boom'),
    ({'label': 'LABEL: not a base backup\n'}, None, BackupFileError, 'backup_label'),
    ({'manifest': '{"Files": []}'}, None, BackupFileError, 'WAL-Ranges'),
    ({}, ('write_file_atomically', _refuse_write), StorageError, 'No space left'),
    ({}, ('os.rename', _refuse_rename), StorageError, 'move the base backup into place'),
])
def test_a_failure_at_any_step_leaves_nothing(tmp_path, monkeypatch, tool_options, patch, error, match):
    """Tool, label, manifest, catalog write or rename: no partial directory, no catalog entry."""
    backend = make_backend(tmp_path)
    monkeypatch.setattr(base, 'run_tool', FakeTools(backend.settings.layout, **tool_options))
    if patch:
        monkeypatch.setattr(base.os if patch[0] == 'os.rename' else base, patch[0].split('.')[-1], patch[1])
    with pytest.raises(error, match=match):
        backend.take(None, INFO, SERVER, 'pitr-base-20261127_101500', 'full', None)
    assert os.listdir(backend.settings.layout.base) == []


def test_stale_partials_are_removed_and_other_names_kept(tmp_path):
    backend = make_backend(tmp_path)
    layout = backend.settings.layout
    os.makedirs(os.path.join(layout.base, '.pitr-base-20261101_000000.partial', 'base'))
    open(os.path.join(layout.base, '.pitr-base-20261101_000000.json.abc.partial'), 'w').close()
    assert backend.remove_stale_partials() == ['.pitr-base-20261101_000000.partial']
    assert os.listdir(layout.base) == ['.pitr-base-20261101_000000.json.abc.partial']


def test_a_taken_name_waits_for_the_next_second(tmp_path, monkeypatch):
    backend = make_backend(tmp_path)
    layout = backend.settings.layout
    ticks = iter([NOW, NOW, NOW + 1])
    backend.clock = lambda: next(ticks)
    monkeypatch.setattr(base.time, 'sleep', lambda _seconds: None)
    first = base.BASE_PREFIX + backend.stamp()
    os.makedirs(layout.base_dir(first))
    assert backend.new_name() != first


# ------------------------------------------------------------------------------------ retention --

def write_catalog(layout, entries):
    for item in entries:
        os.makedirs(layout.base_dir(item['name']), exist_ok=True)
        with open(layout.base_entry(item['name']), 'w', encoding='utf-8') as stream:
            json.dump(item, stream)


def write_wal(layout, names):
    for name in names:
        with open(os.path.join(layout.wal, name), 'w', encoding='utf-8') as stream:
            stream.write('w' * 10)


def three_chains():
    """Chain A (full at -30 d, incrementals), chain B (full at -20 d), chain C (full now)."""
    full_a = entry('pitr-base-20261001_000000', NOW - 30 * DAY, start=2)
    inc_a1 = entry('pitr-base-20261002_000000', NOW - 29 * DAY, 'incremental', full_a['name'], start=3)
    inc_a2 = entry('pitr-base-20261003_000000', NOW - 28 * DAY, 'incremental', inc_a1['name'], start=4)
    full_b = entry('pitr-base-20261010_000000', NOW - 20 * DAY, start=6)
    full_c = entry('pitr-base-20261030_000000', NOW, start=9)
    return [full_a, inc_a1, inc_a2, full_b, full_c]


def test_retention_removes_whole_chains_newest_first_then_their_wal(tmp_path):
    backend = make_backend(tmp_path, retention_full=1, retention_days=14)
    layout = backend.settings.layout
    entries = three_chains()
    write_catalog(layout, entries)
    write_wal(layout, [seg(n) for n in range(1, 11)] + [seg(11) + '.partial', '00000002.history', 'stray.tmp'])
    result = backend.apply_retention()
    assert result['removed'] == ['pitr-base-20261003_000000', 'pitr-base-20261002_000000', 'pitr-base-20261001_000000']
    assert sorted(os.listdir(layout.base)) == ['pitr-base-20261010_000000', 'pitr-base-20261010_000000.json',
                                               'pitr-base-20261030_000000', 'pitr-base-20261030_000000.json']
    # chain B starts in segment 6: 1-5 go, 6 on stay, and so do history files and unknown names
    assert result['removed_wal'] == [seg(n) for n in range(1, 6)]
    assert result['removed_wal_bytes'] == 50
    assert sorted(os.listdir(layout.wal)) == sorted([seg(n) for n in range(6, 11)]
                                                    + [seg(11) + '.partial', '00000002.history', 'stray.tmp'])
    assert result['wal_gaps'] == [] and backend.warnings == []


def test_retention_within_the_window_removes_nothing(tmp_path):
    backend = make_backend(tmp_path, retention_full=1, retention_days=25)
    layout = backend.settings.layout
    write_catalog(layout, three_chains())
    write_wal(layout, [seg(n) for n in range(1, 11)])
    result = backend.apply_retention()
    # chain A is still needed: chain B's full finished 20 days ago, inside the 25-day window
    assert result['removed'] == [] and result['removed_wal'] == [seg(1)]


def test_retention_does_nothing_while_the_catalog_has_a_problem(tmp_path):
    backend = make_backend(tmp_path, retention_full=1, retention_days=0)
    layout = backend.settings.layout
    write_catalog(layout, three_chains())
    write_wal(layout, [seg(n) for n in range(1, 11)])
    with open(os.path.join(layout.base, 'pitr-base-20261005_000000.json'), 'w', encoding='utf-8') as stream:
        stream.write('{')
    result = backend.apply_retention()
    assert result['removed'] == [] and result['removed_wal'] == []
    assert len(os.listdir(layout.wal)) == 10 and len(os.listdir(layout.base)) == 11
    assert any('retention skipped' in warning and 'pitr-base-20261005_000000.json' in warning
               for warning in backend.warnings)


def test_retention_reports_gaps_since_the_oldest_kept_backup(tmp_path):
    backend = make_backend(tmp_path, retention_full=5)
    layout = backend.settings.layout
    write_catalog(layout, three_chains())
    write_wal(layout, [seg(n) for n in (2, 3, 4, 7, 8)])
    result = backend.apply_retention()
    assert result['wal_gaps'] == [seg(5), seg(6)]
    assert any('gaps since %s' % seg(2) in warning for warning in backend.warnings)


def test_a_failed_removal_stops_retention_with_a_warning(tmp_path, monkeypatch):
    backend = make_backend(tmp_path, retention_full=1, retention_days=14)
    layout = backend.settings.layout
    write_catalog(layout, three_chains())
    write_wal(layout, [seg(n) for n in range(1, 11)])
    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):
        if path.endswith('pitr-base-20261002_000000.json'):
            raise PermissionError(13, 'Permission denied')
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(base.os, 'unlink', unlink)
    result = backend.apply_retention()
    assert result['removed'] == ['pitr-base-20261003_000000']
    assert result['removed_wal'] == []  # no WAL goes while a chain is half removed
    assert any('retention stopped' in warning for warning in backend.warnings)
    assert os.path.exists(layout.base_entry('pitr-base-20261001_000000'))


# ----------------------------------------------------------------------------------- check mode --

def test_predict_reports_kind_and_retention_and_writes_nothing(tmp_path):
    backend = make_backend(tmp_path, check_mode=True, retention_full=1, retention_days=14, incremental=True)
    layout = backend.settings.layout
    entries = three_chains()
    write_catalog(layout, entries)
    write_wal(layout, [seg(n) for n in range(1, 11)])
    before = (sorted(os.listdir(layout.base)), sorted(os.listdir(layout.wal)))
    result = backend.predict(SERVER)
    assert result['type'] == 'incremental' and result['parent'] == 'pitr-base-20261030_000000'
    assert result['changed'] is True and result['msg'].startswith('would take an incremental base backup')
    assert result['removed'] == ['pitr-base-20261003_000000', 'pitr-base-20261002_000000', 'pitr-base-20261001_000000']
    assert result['removed_wal'] == [seg(n) for n in range(1, 6)] and result['removed_wal_bytes'] == 50
    assert (sorted(os.listdir(layout.base)), sorted(os.listdir(layout.wal))) == before


def test_predict_with_a_new_full_counts_it_as_the_newest_chain(tmp_path):
    backend = make_backend(tmp_path, check_mode=True, retention_full=1, retention_days=14)
    write_catalog(backend.settings.layout, three_chains())
    result = backend.predict(SERVER)
    assert result['type'] == 'full'
    # chain B stays: the next full (C's) finished inside the window, so B still covers the window's start
    assert result['removed'] == ['pitr-base-20261003_000000', 'pitr-base-20261002_000000',
                                 'pitr-base-20261001_000000']


# ---------------------------------------------------------------------------- settings, archive --

@pytest.mark.parametrize('options, fragment', [
    ({'retention_full': 0}, 'retention_full'), ({'retention_days': -1}, 'retention_days')])
def test_settings_refuse_bad_retention(tmp_path, options, fragment):
    params = validate_config(pitr_base_backup_argument_spec(), dict({'backup_dir': str(tmp_path)}, **options))
    with pytest.raises(ConfigError, match=fragment):
        base.PitrBaseSettings(params)


class FakeServer:
    def __init__(self, slot=True, rules=None):
        self._slot = {'slot_type': 'physical'} if slot else None
        self._rules = rules if rules is not None else [
            {'line_number': 1, 'type': 'host', 'database': 'replication', 'user_name': 'postgres',
             'address': 'samenet', 'netmask': '', 'auth_method': 'scram-sha-256', 'error': ''}]

    def slot(self, _name):
        return self._slot

    def hba_rules(self):
        return self._rules


def test_check_archive_passes_when_set_up(tmp_path):
    backend = make_backend(tmp_path)
    open(backend.settings.layout.pgpass, 'w').close()
    backend.check_archive(FakeServer(), INFO)


@pytest.mark.parametrize('server, fragment', [
    (FakeServer(slot=False), "no physical replication slot 'cortexreview_pitr'"),
    (FakeServer(rules=[]), 'no pg_hba.conf line lets postgres'),
    (FakeServer(rules=[{'line_number': 1, 'type': 'host', 'database': 'replication', 'user_name': 'all',
                        'address': 'samenet', 'netmask': '', 'auth_method': 'reject', 'error': ''}]),
     'no pg_hba.conf line'),
])
def test_check_archive_names_what_is_missing(tmp_path, server, fragment):
    backend = make_backend(tmp_path)
    open(backend.settings.layout.pgpass, 'w').close()
    with pytest.raises(ConfigError) as error:
        backend.check_archive(server, INFO)
    assert fragment in error.value.msg and 'pitr_archive' in error.value.msg and '\n' not in error.value.msg


def test_check_layout_without_pgpass_wal_or_base(tmp_path):
    backend = make_backend(tmp_path)
    with pytest.raises(ConfigError, match=r'\.pgpass is missing.*pitr_archive'):
        backend.check_layout()
    open(backend.settings.layout.pgpass, 'w').close()
    backend.check_layout()
    for path in (backend.settings.layout.base, backend.settings.layout.wal):
        os.rmdir(path)
        with pytest.raises(ConfigError, match=r'%s is missing' % path):
            backend.check_layout()


def test_a_backup_dir_without_an_archive_fails_before_docker_is_asked(tmp_path, monkeypatch):
    params = validate_config(pitr_base_backup_argument_spec(), {'backup_dir': str(tmp_path / 'none')})
    backend = base.PitrBaseBackend.from_params(params)
    monkeypatch.setattr(base, 'DbContainer', lambda *args, **kwargs: pytest.fail('Docker was asked'))
    with pytest.raises(ConfigError, match='not set up'):
        backend.run()
    assert not (tmp_path / 'none').exists()


# ---------------------------------------------------------------------------------------- runner --

def test_runner_pitr_base_takes_the_configs_connection_and_its_own_retention(tmp_path, monkeypatch, capsys):
    config = tmp_path / 'backup.json'
    config.write_text(json.dumps({'backup_dir': str(tmp_path / 'b'), 'container': 'db', 'login_password': 'pw',
                                  'retention_days': 90, 'metrics_file': str(tmp_path / 'm.prom')}))
    os.chmod(config, 0o600)
    seen = {}

    class Backend(base.PitrBaseBackend):
        def run(self):
            seen.update(vars(self.settings))
            return {'path': '/x/pitr-base-1', 'type': 'incremental', 'parent': 'pitr-base-0', 'size': 5,
                    'duration': 1.0, 'removed': ['a'], 'removed_wal': ['b', 'c'], 'msg': 'm'}

    monkeypatch.setattr(_runner, 'PitrBaseBackend', Backend)
    code = _runner.main(['pitr-base', '--config', str(config), '--incremental', '--retention-full', '3',
                         '--retention-days', '30'])
    out, err = capsys.readouterr()
    assert code == 0 and err == ''
    assert 'pitr base backup OK: /x/pitr-base-1 type=incremental parent=pitr-base-0' in out
    assert 'removed=1 removed_wal=2' in out
    assert seen['incremental'] is True and seen['retention_full'] == 3 and seen['retention_days'] == 30
    assert seen['container'] == 'db' and seen['backup_dir'] == str(tmp_path / 'b')
    assert seen['slot'] == PITR_BASE_BACKUP_OPTIONS['slot']['default']
    with open(tmp_path / 'm.prom', encoding='utf-8') as stream:
        assert 'kind="pitr",operation="base_backup"' in stream.read()


def test_runner_pitr_base_failure_is_one_line(tmp_path, capsys):
    config = tmp_path / 'backup.json'
    config.write_text(json.dumps({'backup_dir': str(tmp_path / 'b'), 'container': 'db'}))
    os.chmod(config, 0o600)
    code = _runner.main(['pitr-base', '--config', str(config), '--retention-full', '0'])
    _out, err = capsys.readouterr()
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == 1 and 'pitr base backup FAILED: retention_full must be at least 1' in lines[0]
