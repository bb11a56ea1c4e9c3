"""The volume snapshot and volume restore engines against a fake Docker engine (tests/unit/fakes.py).

Snapshot: the container is stopped only when it ran, started again whatever happens, and a
snapshot that is not a data directory is never kept. Restore: a snapshot that fails its own
verification stops nothing; every failure after the previous contents were moved aside puts
them back and starts the container again.
"""

import gzip
import os

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _volume_container
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    BackupFileError,
    ConfigError,
    DockerError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import volume_snapshot_argument_spec
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._volume_archive import ASIDE_PREFIX
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._volume_restore import VolumeRestoreBackend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._volume_snapshot import (
    VolumeSnapshotBackend,
)
from ansible_collections.cortexreview.supabase_backup.tests.unit.fakes import (
    DB_CONTAINER,
    VOLUME_NAME,
    FakeServer,
    FakeVolumeDocker,
    api_error,
    files_of_tar,
    install,
    module_params,
    pgdata_files,
    tar_of,
)

NOW = 1_800_000_000
SNAPSHOT = 'supabase-volume-20260101_000000.tar.gz'


class FakeClock:
    """monotonic() that sleep() advances: waiting for readiness takes no real time."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def time(self):
        return NOW + self.now

    def sleep(self, seconds):
        self.now += seconds


@pytest.fixture
def docker(monkeypatch):
    engine = FakeVolumeDocker(pgdata_files(marker=b'live'))
    install(monkeypatch, FakeServer(), engine)
    monkeypatch.setattr(_volume_container, 'time', FakeClock())
    return engine


def backend(cls, tmp_path, check_mode=False, **options):
    params = module_params(volume_snapshot_argument_spec(), **dict(
        {'container': DB_CONTAINER, 'volume': VOLUME_NAME, 'ready_timeout': 10, 'stop_timeout': 5}, **options))
    return cls.from_params(params, check_mode=check_mode, clock=lambda: NOW)


def snapshot(tmp_path, **options):
    return backend(VolumeSnapshotBackend, tmp_path, state='present', backup_dir=str(tmp_path / 'snapshots'),
                   **options)


def restore(tmp_path, src, **options):
    return backend(VolumeRestoreBackend, tmp_path, **dict({'state': 'restored', 'src': src, 'confirm': True}, **options))


def write_snapshot(tmp_path, files):
    path = tmp_path / SNAPSHOT
    path.write_bytes(gzip.compress(tar_of(files)))
    os.chmod(path, 0o600)
    return str(path)


def assert_runs_again(docker):
    assert docker.db['State']['Running'], 'the DB container was left stopped'
    assert docker.helpers == {}, 'a helper container was left behind'


# ----------------------------------------------------------------- snapshot --

def test_snapshot_stops_reads_and_starts_the_container(docker, tmp_path):
    result = snapshot(tmp_path).run()
    assert result['stopped'] == result['started'] == [DB_CONTAINER] and result['ready'] is True
    assert docker.actions('stop') == docker.actions('start') == [docker.db['Id']]
    with open(result['path'], 'rb') as handle:
        assert files_of_tar(gzip.decompress(handle.read())) == pgdata_files(marker=b'live')
    assert result['pg_version'] == '18'
    assert_runs_again(docker)


def test_a_stopped_container_is_neither_stopped_nor_started(docker, tmp_path):
    docker.db['State'].update(Running=False)
    result = snapshot(tmp_path).run()
    assert result['stopped'] == [] and docker.actions('stop') == [] and docker.actions('start') == []
    assert os.path.exists(result['path'])


def test_a_volume_without_a_data_directory_stops_nothing(docker, tmp_path):
    docker.files = {'lost+found': None}
    with pytest.raises(ConfigError, match='no PG_VERSION'):
        snapshot(tmp_path).run()
    assert docker.actions('stop') == []


def test_a_failing_read_keeps_nothing_and_starts_the_container(docker, tmp_path):
    original_get = docker.get

    def get(url, params=None, **kwargs):
        if params['path'].endswith('/.'):
            raise api_error('archive stream broke')
        return original_get(url, params=params, **kwargs)

    docker.get = get
    with pytest.raises(DockerError) as caught:
        snapshot(tmp_path).run()
    assert 'archive stream broke' in caught.value.msg and 'runs again' in caught.value.msg
    assert caught.value.details['stopped'] == caught.value.details['started'] == [DB_CONTAINER]
    assert os.listdir(str(tmp_path / 'snapshots')) == []
    assert_runs_again(docker)


def test_a_snapshot_without_pg_control_is_discarded(docker, tmp_path):
    read = {'count': 0}
    original_get = docker.get

    def get(url, params=None, **kwargs):
        response = original_get(url, params=params, **kwargs)
        if params['path'].endswith('/.'):
            read['count'] += 1
            files = dict(docker.files)
            del files['global/pg_control']
            response = type(response)(200, tar_of(files))
        return response

    docker.get = get
    with pytest.raises(BackupFileError, match='no global/pg_control'):
        snapshot(tmp_path).run()
    assert read['count'] == 1
    assert os.listdir(str(tmp_path / 'snapshots')) == []
    assert_runs_again(docker)


def test_a_server_that_does_not_come_back_fails_the_snapshot_but_keeps_it(docker, tmp_path):
    docker.ready = lambda files: False
    with pytest.raises(DockerError) as caught:
        snapshot(tmp_path).run()
    assert 'was written, but' in caught.value.msg and 'does not accept connections' in caught.value.msg
    assert len([name for name in os.listdir(str(tmp_path / 'snapshots')) if name.endswith('.tar.gz')]) == 1


def test_snapshot_check_mode_stops_nothing(docker, tmp_path):
    result = snapshot(tmp_path, check_mode=True).run()
    assert result['msg'].startswith('Would stop the container')
    assert docker.actions('stop') == [] and not os.path.exists(str(tmp_path / 'snapshots'))


# ------------------------------------------------------------------ restore --

def test_restore_replaces_the_contents_and_deletes_the_previous_ones(docker, tmp_path):
    src = write_snapshot(tmp_path, pgdata_files(marker=b'snapshot'))
    result = restore(tmp_path, src).run()
    assert docker.files == pgdata_files(marker=b'snapshot')  # nothing aside is left
    assert result['previous_contents'] == 'deleted' and result['ready'] is True
    assert docker.actions('stop') == docker.actions('start') == [docker.db['Id']]
    assert_runs_again(docker)


@pytest.mark.parametrize('damage,message', [
    (lambda data: data[:len(data) // 2], 'corrupt'),
    (lambda data: gzip.compress(tar_of({'PG_VERSION': b'18\n'})), 'pg_control'),
    (lambda data: gzip.compress(b'not a tar at all' * 100), 'corrupt'),
])
def test_a_snapshot_failing_its_verification_stops_nothing(docker, tmp_path, damage, message):
    src = write_snapshot(tmp_path, pgdata_files(marker=b'snapshot'))
    with open(src, 'rb') as handle:
        data = damage(handle.read())
    with open(src, 'wb') as handle:
        handle.write(data)
    with pytest.raises(BackupFileError, match=message):
        restore(tmp_path, src).run()
    assert docker.actions('stop') == [] and docker.helpers == {} and ('create', None) not in docker.calls
    assert docker.files == pgdata_files(marker=b'live')


def test_another_major_version_stops_nothing(docker, tmp_path):
    src = write_snapshot(tmp_path, pgdata_files(version=b'17\n', marker=b'snapshot'))
    with pytest.raises(BackupFileError, match='PostgreSQL 17 data but'):
        restore(tmp_path, src).run()
    assert docker.actions('stop') == []
    assert docker.files == pgdata_files(marker=b'live')


def test_without_confirm_nothing_happens(docker, tmp_path):
    src = write_snapshot(tmp_path, pgdata_files(marker=b'snapshot'))
    with pytest.raises(ConfigError, match='confirm must be true'):
        restore(tmp_path, src, confirm=False).run()
    assert docker.calls == []


def test_a_failing_write_puts_the_previous_contents_back(docker, tmp_path):
    src = write_snapshot(tmp_path, pgdata_files(marker=b'snapshot'))
    docker.fail['put_archive'] = api_error('no space left on device')
    with pytest.raises(DockerError) as caught:
        restore(tmp_path, src).run()
    assert caught.value.msg.startswith('restore failed and the previous contents were put back')
    assert caught.value.details['rolled_back'] is True
    assert docker.files == pgdata_files(marker=b'live')
    assert docker.root_metadata == (999, 999, 0o700)
    assert_runs_again(docker)


def test_a_server_that_does_not_start_on_the_snapshot_gets_the_previous_contents_back(docker, tmp_path):
    src = write_snapshot(tmp_path, pgdata_files(marker=b'snapshot'))
    docker.ready = lambda files: files.get('base/1/1259') == b'rows-live'
    with pytest.raises(DockerError) as caught:
        restore(tmp_path, src).run()
    assert 'does not accept connections' in caught.value.msg and caught.value.details['rolled_back'] is True
    assert docker.files == pgdata_files(marker=b'live')
    assert caught.value.details['ready'] is True  # on the previous contents, PostgreSQL runs again
    assert_runs_again(docker)


def test_a_failing_move_aside_changes_nothing_and_starts_the_container(docker, tmp_path):
    src = write_snapshot(tmp_path, pgdata_files(marker=b'snapshot'))
    docker.fail['mv'] = 'Permission denied'
    with pytest.raises(DockerError):
        restore(tmp_path, src).run()
    assert {name: content for name, content in docker.files.items()
            if not name.startswith(ASIDE_PREFIX)} == pgdata_files(marker=b'live')
    assert_runs_again(docker)


def test_restore_check_mode_stops_nothing(docker, tmp_path):
    src = write_snapshot(tmp_path, pgdata_files(marker=b'snapshot'))
    result = restore(tmp_path, src, check_mode=True, confirm=False).run()
    assert result['msg'].startswith('Would stop container')
    assert docker.actions('stop') == [] and docker.helpers == {}
    assert docker.files == pgdata_files(marker=b'live')
