import os
import threading
import time

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _backup_files as files
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    ConfigError,
    LockError,
    StorageError,
)

DAY = 86400
NOW = 1_800_000_000


def _make(directory, name, age_days, content=b'x'):
    path = os.path.join(directory, name)
    with open(path, 'wb') as handle:
        handle.write(content)
    stamp = NOW - age_days * DAY
    os.utime(path, (stamp, stamp))
    return path


@pytest.mark.parametrize('prefix', ['', '../x', 'a/b', '-lead', 'sp ace'])
def test_bad_prefix_refused(prefix):
    with pytest.raises(ConfigError):
        files.validate_prefix(prefix)


@pytest.mark.parametrize('age,expired', [(89, False), (90, False), (90.99, False), (91, True), (400, True)])
def test_age_counts_whole_days_like_find_mtime(age, expired):
    backups = [{'path': 'a', 'mtime': NOW - age * DAY}, {'path': 'new', 'mtime': NOW}]
    assert bool(files.select_expired(backups, 90, 1, NOW)) is expired


def test_keep_min_protects_newest_even_when_old():
    backups = [{'path': str(i), 'mtime': NOW - (200 - i) * DAY} for i in range(5)]
    assert [item['path'] for item in files.select_expired(backups, 90, 3, NOW)] == ['0', '1']
    assert files.select_expired(backups[:3], 90, 3, NOW) == []


def test_retention_zero_keeps_everything():
    backups = [{'path': str(i), 'mtime': NOW - 1000 * DAY} for i in range(5)]
    assert files.select_expired(backups, 0, 1, NOW) == []


def test_ensure_directory_creates_0700_and_check_mode_does_not(tmp_path):
    target = str(tmp_path / 'a' / 'backups')
    assert files.ensure_directory(target, check_mode=True) == (True, [])
    assert not os.path.exists(target)
    assert files.ensure_directory(target, check_mode=False)[0] is True
    assert os.stat(target).st_mode & 0o777 == 0o700
    assert files.ensure_directory(target, check_mode=False) == (False, [])


def test_ensure_directory_warns_on_open_mode_and_refuses_files(tmp_path):
    os.chmod(str(tmp_path), 0o755)
    changed, warnings = files.ensure_directory(str(tmp_path), check_mode=False)
    assert not changed and 'recommended' in warnings[0]
    plain = _make(str(tmp_path), 'plain', 0)
    with pytest.raises(ConfigError):
        files.ensure_directory(plain, check_mode=False)


def test_atomic_file_is_private_and_vanishes_on_failure(tmp_path):
    final = str(tmp_path / 'b.sql.gz')
    with pytest.raises(RuntimeError):
        with files.AtomicFile(final, 0o600) as handle:
            assert os.stat(handle.temp_path).st_mode & 0o777 == 0o600
            handle.write(b'half')
            raise RuntimeError('boom')
    assert os.listdir(str(tmp_path)) == []


def test_atomic_file_never_overwrites_without_permission(tmp_path):
    final = str(tmp_path / 'b.sql.gz')
    _make(str(tmp_path), 'b.sql.gz', 0, b'old')
    with pytest.raises(StorageError):
        with files.AtomicFile(final, 0o600) as handle:
            handle.write(b'new')
            handle.commit(overwrite=False)
    assert open(final, 'rb').read() == b'old'
    assert os.listdir(str(tmp_path)) == ['b.sql.gz']


def test_directory_lock_excludes_and_leaves_nothing(tmp_path):
    directory = str(tmp_path)
    with files.DirectoryLock(directory, timeout=0):
        with pytest.raises(LockError):
            with files.DirectoryLock(directory, timeout=0.3):
                pass
    with files.DirectoryLock(directory, timeout=0):
        pass
    assert os.listdir(directory) == []


def test_directory_in_use_while_a_run_holds_it(tmp_path):
    directory = str(tmp_path)
    assert files.directory_in_use(directory) is False
    with files.DirectoryLock(directory, timeout=0):
        assert files.directory_in_use(directory) is True
    assert files.directory_in_use(directory) is False
    # The question takes nothing: a run can lock the directory right after it.
    with files.DirectoryLock(directory, timeout=0):
        pass
    assert files.directory_in_use(str(tmp_path / 'missing')) is False


def test_directory_lock_waits_for_release(tmp_path):
    directory = str(tmp_path)
    released = []

    def hold():
        with files.DirectoryLock(directory, timeout=0):
            time.sleep(0.5)
            released.append(time.monotonic())

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(0.1)
    with files.DirectoryLock(directory, timeout=5):
        acquired = time.monotonic()
    holder.join()
    assert acquired >= released[0]


def test_storage_error_names_a_full_disk():
    import errno
    error = files.storage_error('write', '/b/x', OSError(errno.ENOSPC, 'No space left on device'))
    assert 'no space left' in error.msg and 'older backups are intact' in error.msg
