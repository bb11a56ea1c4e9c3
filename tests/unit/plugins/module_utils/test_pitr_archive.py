"""pitr_archive's engine: sizes, the settings it wants, and the plan-then-act run against a fake server."""

import ipaddress
import os

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _pitr_archive as archive
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import ConfigError
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import (
    PITR_ARCHIVE_OPTIONS,
    validate_config,
)


@pytest.mark.parametrize('value,megabytes', [('10GB', 10240), ('512MB', 512), ('2048kB', 2), ('64', 64), ('-1', -1),
                                             (' 1TB ', 1024 * 1024)])
def test_sizes_in_megabytes(value, megabytes):
    assert archive.parse_size_mb(value) == megabytes


@pytest.mark.parametrize('value', ['10 gigs', '1.5GB', '100kB', '-1MB', '10gb', ''])
def test_bad_sizes_refused(value):
    with pytest.raises(ConfigError, match='max_slot_wal_keep_size'):
        archive.parse_size_mb(value)


def _current(**overrides):
    values = {'wal_level': 'replica', 'max_wal_senders': '10', 'max_replication_slots': '10',
              'max_slot_wal_keep_size': '10240', 'summarize_wal': 'on'}
    values.update(overrides)
    return dict((name, {'setting': value, 'unit': 'MB' if name == 'max_slot_wal_keep_size' else '',
                        'context': '', 'source': 'configuration file', 'pending_restart': False})
                for name, value in values.items())


def test_nothing_wanted_when_the_server_is_ready():
    assert archive.wanted_settings(180000, _current(), 0, True, 1, 10240) == ([], [])


def test_wal_level_raised_from_minimal_and_never_lowered():
    changes, _fixed = archive.wanted_settings(180000, _current(wal_level='minimal'), 0, True, 1, 10240)
    assert changes == [('wal_level', 'replica', True, 'minimal')]
    assert archive.wanted_settings(180000, _current(wal_level='logical'), 0, True, 1, 10240) == ([], [])


def test_senders_and_slots_counted_beside_the_ones_in_use():
    changes, _fixed = archive.wanted_settings(180000, _current(max_wal_senders='4', max_replication_slots='2'),
                                              2, False, 2, 10240)
    assert changes == [('max_wal_senders', '5', True, '4'), ('max_replication_slots', '3', True, '2')]
    assert archive.wanted_settings(180000, _current(max_wal_senders='3', max_replication_slots='2'),
                                   0, True, 2, 10240) == ([], [])


def test_reload_settings_and_summarize_wal_only_from_17():
    changes, _fixed = archive.wanted_settings(170000, _current(summarize_wal='off', max_slot_wal_keep_size='-1'),
                                              0, True, 1, 10240)
    assert changes == [('max_slot_wal_keep_size', '10240MB', False, '-1MB'), ('summarize_wal', 'on', False, 'off')]
    current = _current()
    del current['summarize_wal']
    assert archive.wanted_settings(150000, current, 0, True, 1, 10240) == ([], [])


def test_settings_from_the_command_line_are_reported():
    current = _current(wal_level='minimal')
    current['wal_level']['source'] = 'command line'
    assert archive.wanted_settings(180000, current, 0, True, 1, 10240)[1] == [('wal_level', 'command line')]


# The run, against fakes at the Docker/psql boundary

class FakeServer:
    def __init__(self):
        self.calls = []
        self.current = _current(max_wal_senders='1')
        self.rules = [{'line_number': '1', 'type': 'host', 'database': 'all', 'user_name': 'all', 'address': 'all',
                       'netmask': '', 'auth_method': 'scram-sha-256', 'error': ''}]
        self.slot_row = None

    def version_num(self):
        return 180000

    def role(self, name):
        return (True, True)

    def hba_file(self):
        return '/data/pg_hba.conf'

    def hba_rules(self):
        return list(self.rules)

    def slot(self, name):
        return self.slot_row

    def senders(self):
        return []

    def slot_count(self):
        return 0

    def settings(self, names):
        return dict((name, self.current[name]) for name in names)

    def __getattr__(self, name):
        # Every mutation (append_hba_line, alter_system, reload, create_slot, drop_slot) is recorded.
        return lambda *args: self.calls.append((name,) + args)


class FakeDbContainer:
    def __init__(self, api, settings, name=None):
        self.api = api
        self.name = name
        self.id = 'id-' + name
        self.running = True
        self.restarts = 0

    def restart(self, timeout):
        self.restarts += 1


class FakeReceiver:
    actions = []

    def __init__(self, db, settings):
        self.db = db
        self.name = db.name + '-pitr-receiver'
        self.db_info = {'Name': '/' + db.name, 'NetworkSettings': {'Networks': {
            'net': {'IPAddress': '172.18.0.2', 'IPPrefixLen': 16}}}}

    def state(self):
        return 'missing'

    def inspect(self):
        return None

    def __getattr__(self, name):
        return lambda *args: FakeReceiver.actions.append(name)


@pytest.fixture
def fake_run(tmp_path, monkeypatch):
    server = FakeServer()
    monkeypatch.setattr(archive, 'PitrServer', lambda target: server)
    monkeypatch.setattr(archive, 'DbContainer', FakeDbContainer)
    monkeypatch.setattr(archive, 'ReceiverContainer', FakeReceiver)
    FakeReceiver.actions = []

    def run(check_mode=False, **options):
        params = validate_config(PITR_ARCHIVE_OPTIONS, dict({'backup_dir': str(tmp_path / 'b'), 'login_password': 'pw'},
                                                            **options))
        backend = archive.PitrArchiveBackend.from_params(params, check_mode=check_mode)
        backend.settings.target._control_api = object()
        return backend.run()

    return server, run


def test_restart_refused_before_anything_changes(fake_run, tmp_path):
    server, run = fake_run
    for check_mode in (True, False):
        with pytest.raises(ConfigError) as error:
            run(check_mode=check_mode)
        assert 'max_wal_senders = 3 (now 1)' in error.value.msg and 'allow_restart' in error.value.msg
        assert error.value.details['needs_restart'] == ['max_wal_senders']
    assert server.calls == [] and FakeReceiver.actions == []
    assert not os.path.exists(tmp_path / 'b')


def test_check_mode_predicts_every_change_and_makes_none(fake_run, tmp_path):
    server, run = fake_run
    result = run(check_mode=True, allow_restart=True)
    assert result['changed'] is True
    assert result['changes'][5:] == [
        'append to /data/pg_hba.conf: host replication "postgres" samenet scram-sha-256',
        'set max_wal_senders = 3 (now 1)', 'create physical replication slot cortexreview_pitr',
        'create receiver container cortexreview-supabase-db-pitr-receiver', 'restart container cortexreview-supabase-db']
    assert result['msg'].startswith('Would change: create directory')
    assert server.calls == [] and FakeReceiver.actions == []
    assert not os.path.exists(tmp_path / 'b')


def test_hba_with_errors_is_refused(fake_run):
    server, run = fake_run
    server.current = _current()
    server.rules.append(dict(server.rules[0], line_number='2', error='invalid IP address "x"'))
    with pytest.raises(ConfigError, match='line 2: invalid IP address'):
        run()
    assert server.calls == []


def test_logical_slot_of_the_same_name_is_refused(fake_run):
    server, run = fake_run
    server.current = _current()
    server.slot_row = {'slot_type': 'logical', 'active': False, 'restart_lsn': None, 'wal_status': None,
                       'behind': None}
    with pytest.raises(ConfigError, match='is logical'):
        run(check_mode=True)


def test_role_without_replication_is_refused(fake_run, monkeypatch):
    server, run = fake_run
    monkeypatch.setattr(server, 'role', lambda name: (False, False), raising=False)
    with pytest.raises(ConfigError, match='WITH REPLICATION'):
        run(check_mode=True)


def test_present_needs_a_password_or_an_existing_pgpass(tmp_path):
    params = validate_config(PITR_ARCHIVE_OPTIONS, {'backup_dir': str(tmp_path)})
    with pytest.raises(ConfigError, match='login_password is required'):
        archive.PitrArchiveSettings(params)
    assert archive.PitrArchiveSettings(dict(params, state='absent')).state == 'absent'


def test_subnet_of_the_fake_network_is_the_one_checked():
    assert ipaddress.ip_network('172.18.0.0/16').subnet_of(ipaddress.ip_network('172.16.0.0/12'))
