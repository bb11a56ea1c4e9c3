"""The cron runner: one log line per outcome, never a traceback, exit codes cron can act on."""

import json
import os

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _dump, _runner
from ansible_collections.cortexreview.supabase_backup.tests.unit.fakes import (
    FakeDatabase,
    FakeServer,
    dump_text,
    install,
)


@pytest.fixture
def server(monkeypatch):
    server = FakeServer({'postgres': FakeDatabase()})
    server.dump = ([dump_text({'public.t': 2}).encode()], 0, '')
    install(monkeypatch, server)
    return server


def write_config(tmp_path, mode=0o600, content=None, **options):
    path = tmp_path / 'backup.json'
    path.write_text(content if content is not None else json.dumps(
        dict({'backup_dir': str(tmp_path / 'backups'), 'container': 'fake-db',
              'login_password': 'secret-password'}, **options)))
    os.chmod(path, mode)
    return str(path)


def run(capsys, *argv):
    code = _runner.main(list(argv))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def assert_one_failure_line(err, *fragments):
    assert len(err) == 1, err
    assert 'FAILED' in err[0] and 'Traceback' not in err[0]
    for fragment in fragments:
        assert fragment in err[0], err[0]
    assert 'secret-password' not in err[0]


def test_success_is_one_line_on_stdout(server, tmp_path, capsys):
    code, out, err = run(capsys, '--config', write_config(tmp_path))
    assert code == 0 and err == []
    assert len(out) == 1 and ' backup OK: ' in out[0] and 'sha256=' in out[0]
    assert len(os.listdir(str(tmp_path / 'backups'))) >= 1


@pytest.mark.parametrize('mode', [0o644, 0o640, 0o604])
def test_a_config_readable_by_others_is_refused(server, tmp_path, capsys, mode):
    code, out, err = run(capsys, '--config', write_config(tmp_path, mode=mode))
    assert code == 1 and out == []
    assert_one_failure_line(err, 'backup FAILED', 'accessible to group or others', '0600')
    assert server.dump_args == [] and not (tmp_path / 'backups').exists()


def test_a_missing_config_is_one_line(server, tmp_path, capsys):
    code, _out, err = run(capsys, '--config', str(tmp_path / 'absent.json'))
    assert code == 1
    assert_one_failure_line(err, 'cannot read config file', 'absent.json')


def test_invalid_json_is_one_line(server, tmp_path, capsys):
    code, _out, err = run(capsys, '--config', write_config(tmp_path, content='{"backup_dir": '))
    assert code == 1
    assert_one_failure_line(err, 'not valid JSON')


def test_an_unknown_option_is_one_line(server, tmp_path, capsys):
    code, _out, err = run(capsys, '--config', write_config(tmp_path, retention=3))
    assert code == 1
    assert_one_failure_line(err, 'unknown option(s): retention')
    assert server.dump_args == []


def test_a_failed_dump_exits_1_with_the_reason(server, tmp_path, capsys):
    server.dump = ([b''], 1, 'pg_dump: error: connection to server failed: FATAL:  password authentication failed')
    code, out, err = run(capsys, '--config', write_config(tmp_path))
    assert code == 1 and out == []
    assert_one_failure_line(err, 'pg_dump failed (exit 1)', 'password authentication failed')


def test_an_unexpected_error_exits_2_without_a_traceback(server, tmp_path, capsys, monkeypatch):
    def bug(*_args, **_kwargs):
        raise KeyError('surprise')

    monkeypatch.setattr(_dump, 'database_facts', bug)
    code, out, err = run(capsys, '--config', write_config(tmp_path))
    assert code == 2 and out == []
    assert_one_failure_line(err, 'unexpected KeyError', 'surprise')


def test_check_mode_says_what_it_would_do(server, tmp_path, capsys):
    code, out, err = run(capsys, '--config', write_config(tmp_path), '--check')
    assert code == 0 and err == []
    assert len(out) == 1 and 'Would back up' in out[0]
    assert server.dump_args == []


def test_status_options_without_status_are_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        _runner.main(['--config', write_config(tmp_path), '--max-age', '8d'])
    assert caught.value.code == 2
    assert '--max-age and --min-free go with --status' in capsys.readouterr().err


def test_status_is_silent_when_all_is_well_and_one_line_when_not(server, tmp_path, capsys):
    config = write_config(tmp_path)
    assert run(capsys, '--config', config)[0] == 0  # one backup
    code, out, err = run(capsys, '--config', config, '--status', '--max-age', '1d')
    assert (code, out, err) == (0, [], [])
    code, out, err = run(capsys, '--config', config, '--status', '--min-free', '999999TB')
    assert code == 1 and out == []
    assert_one_failure_line(err, 'status FAILED')
