# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""The backup directory: names, atomic writes, the run lock and the retention rule."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import tempfile
import time

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    ConfigError,
    LockError,
    StorageError,
)

TIMESTAMP_FORMAT = '%Y%m%d_%H%M%S'
# gpg's suffix: an encrypted backup is the plain name plus this.
ENCRYPTED_SUFFIX = '.gpg'
PREFIX_PATTERN = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]*$')
SECONDS_PER_DAY = 86400


def validate_prefix(prefix):
    if not prefix or not PREFIX_PATTERN.match(prefix):
        raise ConfigError('prefix %r is invalid: use letters, digits, ".", "_" and "-" only, no "/"' % (prefix,))
    return prefix


def storage_error(action, path, exc):
    """A one-line StorageError for an OSError; ``action`` is a verb phrase such as 'write'."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageError('no space left on the device of %s (%s %s failed); nothing was kept, '
                            'older backups are intact' % (os.path.dirname(path) or path, action, path), path=path)
    return StorageError('cannot %s %s: %s' % (action, path, exc.strerror or exc), path=path)


def read_private_file(path, what):
    """The bytes of a file that may hold a secret; refused unless owned by root or us and private."""
    try:
        with open(path, 'rb') as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ConfigError('%s %s is not a regular file' % (what, path))
            if info.st_uid not in (0, os.geteuid()):
                raise ConfigError('%s %s is owned by uid %d; it must be owned by root or the user running this'
                                  % (what, path, info.st_uid))
            if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ConfigError('%s %s is accessible to group or others (mode %04o); it holds a secret, make '
                                  'it 0600' % (what, path, stat.S_IMODE(info.st_mode)))
            return handle.read()
    except OSError as exc:
        raise ConfigError('cannot read %s %s: %s' % (what, path, exc.strerror or exc)) from None


def ensure_directory(path, check_mode):
    """Create the backup directory 0700 when missing. Returns (changed, warnings)."""
    warnings = []
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if not check_mode:
            try:
                os.makedirs(path, mode=0o700)
                os.chmod(path, 0o700)
            except OSError as exc:
                raise storage_error('create the backup directory', path, exc) from None
        return True, warnings
    except OSError as exc:
        raise storage_error('inspect the backup directory', path, exc) from None
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError('backup_dir %s exists and is not a directory' % path)
    if info.st_mode & 0o077:
        warnings.append('backup_dir %s is accessible to group or others (mode %04o); 0700 is recommended'
                        % (path, stat.S_IMODE(info.st_mode)))
    return False, warnings


class DirectoryLock:
    """An exclusive flock on the backup directory itself, so no lock file is ever left behind."""

    def __init__(self, path, timeout):
        self._path = path
        self._timeout = timeout
        self._fd = None

    def _open(self):
        return os.open(self._path, os.O_RDONLY | os.O_DIRECTORY)

    def __enter__(self):
        try:
            self._fd = self._open()
        except OSError as exc:
            raise storage_error('lock', self._path, exc) from None
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(self._fd)
                    self._fd = None
                    raise LockError('another backup run holds %s (waited %ss); try again later'
                                    % (self._path, self._timeout), path=self._path) from None
                time.sleep(0.2)

    def __exit__(self, *exc_info):
        os.close(self._fd)  # closing releases the flock
        self._fd = None


def directory_in_use(path):
    """Whether a run holds ``path``'s DirectoryLock now: asked without waiting, the answer released at once."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class AtomicFile:
    """A temporary file beside ``final_path``, renamed into place only by ``commit()``.

    It is created with ``mode`` from the start (never world-readable, even briefly) and
    removed on any failure, so a half-written file can never look like a backup.
    """

    def __init__(self, final_path, mode):
        self.final_path = final_path
        directory, name = os.path.split(final_path)
        try:
            fd, self.temp_path = tempfile.mkstemp(prefix='.%s.' % name, suffix='.partial', dir=directory)
        except OSError as exc:
            raise storage_error('create a temporary file in', directory, exc) from None
        os.fchmod(fd, mode)
        self._file = os.fdopen(fd, 'wb', buffering=0)
        self._committed = False

    def write(self, data):
        try:
            self._file.write(data)
        except OSError as exc:
            raise storage_error('write', self.final_path, exc) from None

    def commit(self, overwrite=True):
        """fsync, then rename into place (never replacing an existing file unless ``overwrite``)."""
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            if overwrite:
                os.replace(self.temp_path, self.final_path)
            else:
                os.link(self.temp_path, self.final_path)
                os.unlink(self.temp_path)
            fsync_directory(os.path.dirname(self.final_path))
        except FileExistsError:
            raise StorageError('%s already exists; not overwriting it' % self.final_path,
                               path=self.final_path) from None
        except OSError as exc:
            raise storage_error('write', self.final_path, exc) from None
        self._committed = True

    def discard(self):
        if self._committed:
            return
        try:
            self._file.close()
        except OSError:
            pass
        try:
            os.unlink(self.temp_path)
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *rest):
        self.discard()


def fsync_directory(path):
    fd = os.open(path or '.', os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomically(path, content, mode):
    with AtomicFile(path, mode) as handle:
        handle.write(content.encode('utf-8') if isinstance(content, str) else content)
        handle.commit()


def remove_quietly(paths):
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass


def age_in_days(mtime, now):
    """Whole days, rounded down, as ``find -mtime`` counts them."""
    return int((now - mtime) // SECONDS_PER_DAY)


def select_expired(backups, retention_days, keep_min, now):
    """Backups older than ``retention_days`` (``find -mtime +N``), never one of the newest ``keep_min``."""
    if retention_days <= 0:
        return []
    candidates = backups[:-keep_min] if keep_min > 0 else list(backups)
    return [item for item in candidates if age_in_days(item['mtime'], now) > retention_days]
