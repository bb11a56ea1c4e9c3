"""The point-in-time recovery foundation: settings, layout, lock, .pgpass, pg_hba rules, tool and receiver containers."""

import ipaddress
import os
import stat
import threading

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _pitr as pitr
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    CommandError,
    ConfigError,
    LockError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import (
    PITR_OPTIONS,
    pitr_archive_argument_spec,
    validate_config,
)


def _params(tmp_path, **overrides):
    params = validate_config(PITR_OPTIONS, {'backup_dir': str(tmp_path / 'backups')})
    params.update(overrides)
    return params


# Settings

def test_settings_defaults_and_layout(tmp_path):
    settings = pitr.PitrSettings(_params(tmp_path))
    assert settings.slot == 'cortexreview_pitr'
    assert settings.container == 'cortexreview-supabase-db'
    assert settings.layout.root == str(tmp_path / 'backups' / 'pitr')
    assert settings.layout.in_container(settings.layout.wal) == '/pitr/wal'
    assert settings.layout.in_container(settings.layout.base_partial('pitr-base-x')) == '/pitr/base/.pitr-base-x.partial'
    assert settings.target.login_user == 'postgres'


@pytest.mark.parametrize('overrides,fragment', [
    ({'slot': 'Bad-Slot'}, 'slot'),
    ({'slot': 'x' * 64}, 'slot'),
    ({'backup_dir': None}, 'backup_dir'),
    ({'container': ''}, 'container'),
    ({'lock_timeout': -1}, 'lock_timeout'),
    ({'login_user': 'we"ird'}, 'login_user'),
    ({'login_user': 'new\nline'}, 'login_user'),
])
def test_settings_refuse_bad_options(tmp_path, overrides, fragment):
    with pytest.raises(ConfigError) as error:
        pitr.PitrSettings(_params(tmp_path, **overrides))
    assert fragment in error.value.msg


def test_archive_argument_spec_has_the_common_options():
    spec = pitr_archive_argument_spec()
    assert spec['login_password']['no_log'] is True
    assert spec['state']['choices'] == ['present', 'absent']
    assert spec['allow_restart']['default'] is False
    assert set(PITR_OPTIONS) <= set(spec)


# Layout

def test_layout_ensure_creates_0700_and_check_mode_does_not(tmp_path):
    layout = pitr.PitrLayout(str(tmp_path / 'backups'))
    planned = layout.ensure(check_mode=True)
    assert len(planned) == 4 and not os.path.exists(layout.backup_dir)
    assert layout.ensure() == planned
    for path in (layout.root, layout.wal, layout.base):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    assert layout.ensure() == []


def test_layout_ensure_tightens_a_loose_mode(tmp_path):
    layout = pitr.PitrLayout(str(tmp_path))
    layout.ensure()
    os.chmod(layout.wal, 0o755)
    assert layout.ensure(check_mode=True) == ['set mode 0700 on %s' % layout.wal]
    assert stat.S_IMODE(os.stat(layout.wal).st_mode) == 0o755
    layout.ensure()
    assert stat.S_IMODE(os.stat(layout.wal).st_mode) == 0o700


def test_layout_refuses_a_file_in_place_of_a_directory(tmp_path):
    layout = pitr.PitrLayout(str(tmp_path))
    os.mkdir(layout.root, 0o700)
    open(layout.wal, 'w').close()
    with pytest.raises(ConfigError, match='not a directory'):
        layout.ensure()


# Lock

def test_pitr_lock_is_exclusive_and_private(tmp_path):
    layout = pitr.PitrLayout(str(tmp_path))
    layout.ensure()
    with pitr.PitrLock(layout, 0):
        assert stat.S_IMODE(os.stat(layout.lock).st_mode) == 0o600
        failures = []

        def second():
            try:
                with pitr.PitrLock(layout, 0):
                    pass
            except LockError as exc:
                failures.append(exc)

        thread = threading.Thread(target=second)
        thread.start()
        thread.join()
        assert failures and layout.lock in failures[0].msg
    with pitr.PitrLock(layout, 0):
        pass


# .pgpass

@pytest.mark.parametrize('user,password,line', [
    ('postgres', 'secret', '*:*:*:postgres:secret\n'),
    ('a:b', 'p:w\\x', '*:*:*:a\\:b:p\\:w\\\\x\n'),
])
def test_pgpass_content_escapes(user, password, line):
    assert pitr.pgpass_content(user, password) == line


def test_pgpass_refuses_a_line_break():
    with pytest.raises(ConfigError, match='line break'):
        pitr.pgpass_content('postgres', 'a\nb')


def test_write_pgpass_is_private_atomic_and_idempotent(tmp_path):
    layout = pitr.PitrLayout(str(tmp_path))
    layout.ensure()
    assert pitr.write_pgpass(layout, 'postgres', 's3cret', check_mode=True) is True
    assert not os.path.exists(layout.pgpass)
    assert pitr.write_pgpass(layout, 'postgres', 's3cret') is True
    assert stat.S_IMODE(os.stat(layout.pgpass).st_mode) == 0o600
    assert open(layout.pgpass).read() == '*:*:*:postgres:s3cret\n'
    assert pitr.write_pgpass(layout, 'postgres', 's3cret') is False
    assert pitr.write_pgpass(layout, 'postgres', None) is False
    assert pitr.write_pgpass(layout, 'postgres', 'other') is True
    assert open(layout.pgpass).read() == '*:*:*:postgres:other\n'
    assert [name for name in os.listdir(layout.root) if name.startswith('.') and name != '.pgpass'] == []


def test_write_pgpass_replaces_a_readable_file(tmp_path):
    layout = pitr.PitrLayout(str(tmp_path))
    layout.ensure()
    with open(layout.pgpass, 'w') as handle:
        handle.write('*:*:*:postgres:s3cret\n')
    os.chmod(layout.pgpass, 0o644)
    assert pitr.write_pgpass(layout, 'postgres', 's3cret') is True
    assert stat.S_IMODE(os.stat(layout.pgpass).st_mode) == 0o600


def test_write_pgpass_without_password_and_file_fails(tmp_path):
    layout = pitr.PitrLayout(str(tmp_path))
    layout.ensure()
    with pytest.raises(ConfigError, match='login_password is required'):
        pitr.write_pgpass(layout, 'postgres', None)


# pg_hba.conf rules

def _rule(line, type_='host', database='replication', user='all', address='samenet', netmask='', method='scram-sha-256',
          error=''):
    return {'line_number': str(line), 'type': type_, 'database': database, 'user_name': user, 'address': address,
            'netmask': netmask, 'auth_method': method, 'error': error}


SUBNET = ipaddress.ip_network('172.18.0.0/16')


def test_no_replication_rule_in_supabases_file():
    rules = [_rule(1, 'local', 'all', 'all', '', method='trust'), _rule(2, database='all', address='all')]
    assert pitr.replication_rule(rules, 'postgres', SUBNET) is None


def test_replication_rule_found_for_user_or_all():
    assert pitr.replication_rule([_rule(3, user='postgres')], 'postgres', SUBNET)['line_number'] == '3'
    assert pitr.replication_rule([_rule(3, user='other')], 'postgres', SUBNET) is None
    assert pitr.replication_rule([_rule(4, address='all')], 'postgres', SUBNET)['line_number'] == '4'


def test_loopback_replication_rule_of_the_official_image_does_not_count():
    rules = [_rule(5, address='127.0.0.1', netmask='255.255.255.255', method='trust'),
             _rule(6, address='::1', netmask='ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', method='trust')]
    assert pitr.replication_rule(rules, 'postgres', SUBNET) is None
    wide = _rule(7, address='172.16.0.0', netmask='255.240.0.0')
    assert pitr.replication_rule(rules + [wide], 'postgres', SUBNET)['line_number'] == '7'


def test_first_matching_rule_wins_even_a_reject():
    rules = [_rule(1, address='all', method='reject'), _rule(2)]
    assert pitr.replication_rule(rules, 'postgres', SUBNET)['auth_method'] == 'reject'


def test_rules_with_errors_are_reported_and_never_match():
    rules = [_rule(1, error='invalid authentication method "nope"'), _rule(2, database='all')]
    assert pitr.replication_rule(rules, 'postgres', SUBNET) is None
    assert pitr.hba_errors(rules) == ['line 1: invalid authentication method "nope"']


def test_our_hba_line_quotes_the_user():
    assert pitr.hba_line('postgres') == 'host replication "postgres" samenet scram-sha-256'
    with pytest.raises(ConfigError):
        pitr.hba_line('a"b')


# Containers

class FakeToolAPI:
    """The slice of docker.APIClient that run_tool and the receiver use."""

    def __init__(self, exit_code=0, stdout=b'', stderr=b'', wait_error=None):
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        self.wait_error = wait_error
        self.created = []
        self.removed = []
        self.started = []
        self.containers = {}

    def create_host_config(self, **kwargs):
        return kwargs

    def create_container(self, image, **kwargs):
        self.created.append(dict(kwargs, image=image))
        self.containers[kwargs['name']] = {'Config': {'Labels': kwargs.get('labels') or {}},
                                           'State': {'Running': False}}
        return {'Id': 'id-%s' % kwargs['name']}

    def start(self, container):
        self.started.append(container)

    def wait(self, container, timeout=None):
        if self.wait_error:
            raise self.wait_error
        return {'StatusCode': self.exit_code}

    def logs(self, container, stdout=True, stderr=True, tail='all'):
        return (self.stdout if stdout else b'') + (self.stderr if stderr else b'')

    def remove_container(self, container, force=False, v=False):
        self.removed.append(container)

    def inspect_container(self, name):
        if name not in self.containers:
            raise pitr.NotFound('No such container: %s' % name)
        return self.containers[name]


class FakeDb:
    def __init__(self, api, network='cortexreview_default'):
        self.api = api
        self.name = 'db'
        self.image = 'sha256:image'
        self._info = {'Name': '/db', 'Image': self.image, 'NetworkSettings': {'Networks': {
            network: {'IPAddress': '172.18.0.2', 'IPPrefixLen': 16}}}}

    def info(self):
        return self._info


def test_run_tool_runs_the_image_on_the_network_with_the_bind_and_removes_it(tmp_path):
    api = FakeToolAPI(stdout=b'done\n')
    settings = pitr.PitrSettings(_params(tmp_path, login_password='s3cret'))
    out = pitr.run_tool(FakeDb(api), settings, ['pg_basebackup', '-D', '/pitr/base/x'] + pitr.connection_argv(
        FakeDb(api).info(), 'postgres'), 'take a base backup')
    assert out == 'done\n'
    created = api.created[0]
    assert created['image'] == 'sha256:image'
    assert created['entrypoint'] == ['pg_basebackup'] and created['user'] == '0:0'
    assert created['name'].startswith('cortexreview-pitr-tool-')
    assert created['environment'] == {'PGPASSFILE': '/pitr/.pgpass', 'PGAPPNAME': 'cortexreview-pitr-tool'}
    assert created['host_config']['network_mode'] == 'cortexreview_default'
    mount = created['host_config']['mounts'][0]
    assert (mount['Target'], mount['Source'], mount['Type']) == ('/pitr', settings.layout.root, 'bind')
    assert '-h' in created['command'] and created['command'][created['command'].index('-h') + 1] == 'db'
    assert 's3cret' not in repr(created)
    assert api.removed == ['id-' + created['name']]


def test_run_tool_failure_carries_the_stderr_tail_and_still_removes(tmp_path):
    api = FakeToolAPI(exit_code=1, stderr=b'noise\npg_basebackup: error: connection failed: FATAL:  no pg_hba.conf\n')
    settings = pitr.PitrSettings(_params(tmp_path))
    with pytest.raises(CommandError) as error:
        pitr.run_tool(FakeDb(api), settings, ['pg_basebackup'], 'take a base backup')
    assert error.value.msg.startswith('cannot take a base backup: pg_basebackup: error: connection failed')
    assert error.value.details['rc'] == 1
    assert len(api.removed) == 1


def test_run_tool_removes_the_container_when_waiting_fails(tmp_path):
    api = FakeToolAPI(wait_error=OSError('connection reset'))
    settings = pitr.PitrSettings(_params(tmp_path))
    with pytest.raises(pitr.DockerError, match='connection reset'):
        pitr.run_tool(FakeDb(api), settings, ['pg_verifybackup'], 'verify')
    assert len(api.removed) == 1


def test_db_on_the_default_bridge_is_reached_by_address():
    info = FakeDb(None, network='bridge').info()
    assert pitr.connection_argv(info, 'postgres') == ['-h', '172.18.0.2', '-p', '5432', '-U', 'postgres', '-w']
    with pytest.raises(ConfigError, match='no network'):
        pitr.db_network({'Name': '/db', 'NetworkSettings': {'Networks': {'host': {}}}})


def test_receiver_states_follow_its_config_label(tmp_path):
    api = FakeToolAPI()
    settings = pitr.PitrSettings(_params(tmp_path))
    receiver = pitr.ReceiverContainer(FakeDb(api), settings)
    assert receiver.name == 'db-pitr-receiver'
    assert receiver.state() == 'missing'
    receiver.create()
    created = api.created[0]
    assert created['command'][:5] == ['-D', '/pitr/wal', '-S', 'cortexreview_pitr', '-h']
    assert created['host_config']['restart_policy'] == {'Name': 'unless-stopped'}
    assert created['environment'] == {'PGPASSFILE': '/pitr/.pgpass', 'PGAPPNAME': 'cortexreview-pitr-receiver'}
    assert api.started == ['id-db-pitr-receiver']
    assert receiver.state() == 'stopped'
    api.containers['db-pitr-receiver']['State']['Running'] = True
    assert receiver.state() == 'running'
    other = pitr.PitrSettings(_params(tmp_path, slot='other_slot'))
    assert pitr.ReceiverContainer(FakeDb(api), other).state() == 'outdated'
    api.containers['db-pitr-receiver']['Config']['Labels'] = {}
    with pytest.raises(ConfigError, match='not the receiver'):
        receiver.state()
