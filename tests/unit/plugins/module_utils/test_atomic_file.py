"""AtomicFile: the data is on disk before the name appears, and the name is on disk after.

A crash right after a backup run must leave either no backup or a whole one: the file's
data is fsynced before the rename makes it visible, and the directory is fsynced after it,
so the rename itself survives. os.fsync is observed, not replaced: the real call still runs.
"""

import errno
import os
import stat

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _backup_files as files
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import StorageError


class FsyncLog(list):
    """Every os.fsync as {kind, inode (st_dev, st_ino), size, visible: names in the watched directory}."""

    directory = None

    def watch(self, directory):
        self.directory = directory


@pytest.fixture
def fsyncs(monkeypatch):
    calls = FsyncLog()
    real_fsync = os.fsync

    def recording_fsync(fd):
        info = os.fstat(fd)
        kind = 'dir' if stat.S_ISDIR(info.st_mode) else 'file' if stat.S_ISREG(info.st_mode) else 'other'
        calls.append({'kind': kind, 'inode': (info.st_dev, info.st_ino), 'size': info.st_size,
                      'visible': sorted(os.listdir(calls.directory)) if calls.directory else None})
        return real_fsync(fd)

    monkeypatch.setattr(os, 'fsync', recording_fsync)
    return calls


def _inode(path):
    info = os.stat(path)
    return (info.st_dev, info.st_ino)


@pytest.mark.parametrize('overwrite', [True, False])
def test_commit_syncs_the_file_before_the_rename_and_the_directory_after(tmp_path, fsyncs, overwrite):
    final = str(tmp_path / 'supabase_backup_20260101_000000.sql.gz')
    data = b'backup bytes ' * 1000
    fsyncs.watch(str(tmp_path))
    output = files.AtomicFile(final, 0o600)
    output.write(data)
    temp_inode = _inode(output.temp_path)
    output.commit(overwrite=overwrite)

    file_syncs = [call for call in fsyncs if call['kind'] == 'file']
    dir_syncs = [call for call in fsyncs if call['kind'] == 'dir']
    assert [call['inode'] for call in file_syncs] == [temp_inode], fsyncs
    assert file_syncs[0]['size'] == len(data), 'fsync ran before all data was written'
    assert os.path.basename(final) not in file_syncs[0]['visible'], 'the file was synced after its name appeared'
    assert [call['inode'] for call in dir_syncs] == [_inode(str(tmp_path))], fsyncs
    assert os.path.basename(final) in dir_syncs[0]['visible'], 'the directory was synced before the rename'
    assert fsyncs.index(file_syncs[0]) < fsyncs.index(dir_syncs[0])
    assert _inode(final) == temp_inode
    assert os.listdir(str(tmp_path)) == [os.path.basename(final)]  # no temporary file left
    with open(final, 'rb') as handle:
        assert handle.read() == data


def test_write_file_atomically_syncs_file_and_directory(tmp_path, fsyncs):
    """Manifests, checksum files and reports go through the same commit."""
    path = str(tmp_path / 'report.json')
    files.write_file_atomically(path, '{"passed": true}\n', 0o600)
    assert [call['kind'] for call in fsyncs] == ['file', 'dir']
    assert fsyncs[0]['size'] == len('{"passed": true}\n')
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_fsync_directory_syncs_that_directory(tmp_path, fsyncs):
    files.fsync_directory(str(tmp_path))
    assert [(call['kind'], call['inode']) for call in fsyncs] == [('dir', _inode(str(tmp_path)))]


def test_a_failing_fsync_leaves_nothing_in_place(tmp_path, monkeypatch):
    """EIO on the file's fsync: a one-line StorageError, no final file, no temporary file."""
    def failing_fsync(fd):
        raise OSError(errno.EIO, 'Input/output error')

    monkeypatch.setattr(os, 'fsync', failing_fsync)
    final = str(tmp_path / 'supabase_backup_20260101_000000.sql.gz')
    with pytest.raises(StorageError) as caught:
        with files.AtomicFile(final, 0o600) as output:
            output.write(b'data')
            output.commit()
    assert 'Input/output error' in caught.value.msg and '\n' not in caught.value.msg
    assert os.listdir(str(tmp_path)) == []


def test_commit_without_overwrite_refuses_an_existing_file(tmp_path):
    final = str(tmp_path / 'supabase_backup_20260101_000000.sql.gz')
    with open(final, 'wb') as handle:
        handle.write(b'older backup')
    with pytest.raises(StorageError, match='already exists'):
        with files.AtomicFile(final, 0o600) as output:
            output.write(b'new data')
            output.commit(overwrite=False)
    with open(final, 'rb') as handle:
        assert handle.read() == b'older backup'
    assert os.listdir(str(tmp_path)) == [os.path.basename(final)]


def test_temporary_file_is_private_from_the_start(tmp_path):
    output = files.AtomicFile(str(tmp_path / 'x.sql.gz'), 0o600)
    try:
        assert stat.S_IMODE(os.stat(output.temp_path).st_mode) == 0o600
    finally:
        output.discard()
    assert os.listdir(str(tmp_path)) == []
