"""run_backend: the one place that runs a backend and records every run in the metrics file."""

import json
import os

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _runner
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backend import Backend, run_backend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._dump import DumpBackend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    BackupFileError,
    ConfigError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._metrics import read_samples
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._restore import RestoreBackend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._status import StatusBackend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._validate import ValidateBackend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._volume_restore import VolumeRestoreBackend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._volume_snapshot import (
    VolumeSnapshotBackend,
)

NOW = 1_800_000_000


class Settings:

    def __init__(self, params):
        if params.get('reject'):
            raise ConfigError('rejected: %s' % params['reject'])
        self.backup_dir = params.get('backup_dir')
        self.outcome = params.get('outcome', 'ok')


class Fake(Backend):
    settings_class = Settings
    metrics_kind = 'logical'
    metrics_operation = 'restore'

    def __init__(self, settings, check_mode=False):
        super().__init__(settings, check_mode=check_mode, clock=lambda: NOW)

    def run(self):
        if self.settings.outcome == 'fail':
            self.warnings.append('a warning of a failed run')
            raise BackupFileError('the backup is broken', path='/x')
        if self.settings.outcome == 'bug':
            raise KeyError('bug')
        return {'changed': True, 'size': 1234, 'duration': 2.5}


def sample(metrics, name, kind='logical', operation='restore'):
    return read_samples(str(metrics)).get(('supabase_backup_' + name, kind, operation))


def test_every_backend_says_what_its_runs_are():
    assert (DumpBackend.metrics_kind, DumpBackend.metrics_operation) == ('logical', 'backup')
    assert (ValidateBackend.metrics_kind, ValidateBackend.metrics_operation) == ('logical', 'validate')
    assert (RestoreBackend.metrics_kind, RestoreBackend.metrics_operation) == ('logical', 'restore')
    assert (VolumeSnapshotBackend.metrics_kind, VolumeSnapshotBackend.metrics_operation) == ('volume', 'backup')
    assert (VolumeRestoreBackend.metrics_kind, VolumeRestoreBackend.metrics_operation) == ('volume', 'restore')
    assert StatusBackend.metrics_kind is None  # a status is no run: it only refreshes the free-space gauge


def test_success_is_recorded_with_its_labels(tmp_path):
    metrics = tmp_path / 'm.prom'
    result, error, warnings = run_backend(Fake, {'metrics_file': str(metrics), 'backup_dir': str(tmp_path)})
    assert error is None and warnings == [] and result['size'] == 1234
    assert sample(metrics, 'success') == 1 and sample(metrics, 'size_bytes') == 1234
    assert sample(metrics, 'duration_seconds') == 2.5
    assert sample(metrics, 'last_success_timestamp_seconds') == NOW
    # Only a backup run refreshes the backups' free-space gauge.
    assert sample(metrics, 'free_bytes') is None


def test_failure_is_recorded_and_returned_with_its_warnings(tmp_path):
    metrics = tmp_path / 'm.prom'
    run_backend(Fake, {'metrics_file': str(metrics)})
    result, error, warnings = run_backend(Fake, {'metrics_file': str(metrics), 'outcome': 'fail'})
    assert result is None and error.msg == 'the backup is broken' and error.details == {'path': '/x'}
    assert warnings == ['a warning of a failed run']
    assert sample(metrics, 'success') == 0 and sample(metrics, 'last_success_timestamp_seconds') == NOW


def test_rejected_configuration_is_a_failed_run(tmp_path):
    metrics = tmp_path / 'm.prom'
    result, error, warnings = run_backend(Fake, {'metrics_file': str(metrics), 'reject': 'no'})
    assert result is None and isinstance(error, ConfigError) and warnings == []
    assert sample(metrics, 'success') == 0 and sample(metrics, 'last_success_timestamp_seconds') == 0
    # Without metrics_file in the raw options there is nowhere to record it, and no failure about that.
    assert run_backend(Fake, {'reject': 'no'})[1].msg == 'rejected: no'


def test_check_mode_records_nothing(tmp_path):
    metrics = tmp_path / 'm.prom'
    run_backend(Fake, {'metrics_file': str(metrics)}, check_mode=True)
    run_backend(Fake, {'metrics_file': str(metrics), 'reject': 'no'}, check_mode=True)
    assert not metrics.exists()


def test_unexpected_exception_is_recorded_then_raised(tmp_path):
    metrics = tmp_path / 'm.prom'
    with pytest.raises(KeyError):
        run_backend(Fake, {'metrics_file': str(metrics), 'outcome': 'bug'})
    assert sample(metrics, 'success') == 0


def test_metrics_problems_never_hide_the_outcome(tmp_path):
    blocked = tmp_path / 'file'
    blocked.write_text('x')
    metrics = str(blocked / 'm.prom')  # its directory is a file: cannot be written
    result, error, warnings = run_backend(Fake, {'metrics_file': metrics})
    assert error is None and result['changed'] is True
    assert len(warnings) == 1 and warnings[0].startswith('the logical restore run succeeded but metrics_file')
    result, error, warnings = run_backend(Fake, {'metrics_file': metrics, 'outcome': 'fail'})
    assert error.msg == 'the backup is broken' and 'metrics_error' in error.details


def test_prepare_turns_raw_options_into_the_backend_s(tmp_path):
    metrics = tmp_path / 'm.prom'
    result, error, _warnings = run_backend(Fake, {'metrics_file': str(metrics), 'raw': True},
                                           prepare=lambda raw: dict(raw, outcome='fail'))
    assert result is None and error.msg == 'the backup is broken' and sample(metrics, 'success') == 0


def test_cron_runner_records_a_rejected_config_file(tmp_path, capsys):
    metrics = tmp_path / 'm.prom'
    config = tmp_path / 'backup.json'
    config.write_text(json.dumps({'backup_dir': str(tmp_path / 'b'), 'metrics_file': str(metrics),
                                  'retention_days': -1}))
    os.chmod(str(config), 0o600)
    assert _runner.main(['--config', str(config)]) == 1
    assert 'backup FAILED: retention_days must be 0' in capsys.readouterr().err
    assert sample(metrics, 'success', operation='backup') == 0
    config.write_text(json.dumps({'backup_dir': str(tmp_path / 'b'), 'metrics_file': str(metrics), 'bogus': 1}))
    assert _runner.main(['--config', str(config)]) == 1
    assert 'unknown option(s): bogus' in capsys.readouterr().err
    assert sample(metrics, 'success', operation='backup') == 0
    assert not os.path.exists(str(tmp_path / 'b'))
