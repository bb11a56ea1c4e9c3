# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""Writing backups: the options every writer shares, the gzip/gpg pipeline, and the writer's base.

A writer makes one restore point a run (see _restore_points): the part in an atomic file,
its checksum sidecar and the restore point's manifest, then retention of whole restore points.
"""

from __future__ import annotations

import hashlib
import os
import time

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backend import Backend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import ensure_directory, remove_quietly
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import ConfigError
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._gpg import ENCRYPTION_FACTS, GpgEncryptor, Passphrase
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._offsite import offsite_settings
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import parse_mode
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._parallel_gzip import ZLIB_IMPLEMENTATION, ParallelGzipWriter, default_threads
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._restore_points import (
    MANIFEST_SUFFIX,
    remove_restore_points,
    restore_point_manifest,
    write_restore_point_sidecars,
)

FREE_NAME_ATTEMPTS = 30


class OutputSettings:
    """Options of every backend that writes backups: retention, file mode, compression, encryption,
    lock, metrics."""

    def __init__(self, params):
        self.retention_days = params['retention_days']
        self.retention_keep_min = params['retention_keep_min']
        self.mode = parse_mode(params['mode'])
        self.compression_level = params['compression_level']
        self.compress_threads = params['compress_threads'] or default_threads()
        self.lock_timeout = params['lock_timeout']
        self.metrics_file = params.get('metrics_file')
        if self.retention_days < 0:
            raise ConfigError('retention_days must be 0 (keep everything) or more')
        if self.retention_keep_min < 1:
            raise ConfigError('retention_keep_min must be at least 1, so the new backup is always kept')
        if not 1 <= self.compression_level <= 9:
            raise ConfigError('compression_level must be between 1 and 9')
        if params['compress_threads'] < 0:
            raise ConfigError('compress_threads must be 0 (one per core) or more')
        if self.lock_timeout < 0:
            raise ConfigError('lock_timeout must be 0 or more seconds')
        self.passphrase = Passphrase.from_params(params)
        # With an off-site remote, retention is the off-site step's (it knows what has been uploaded).
        self.offsite = offsite_settings(params)
        if self.offsite.enabled and self.passphrase is None and not self.offsite.allow_plain:
            raise ConfigError('offsite_remote needs encryption: data goes off-site encrypted (set '
                              'encrypt_passphrase or encrypt_passphrase_file), or set offsite_allow_plain: true')


class CompressedOutput:
    """gzip (then gpg, with a passphrase) into an open AtomicFile; hashes and counts what reaches the disk.

    ``write()`` plain bytes, then ``close()``; on any failure ``abort()``. No unencrypted byte of an
    encrypted backup is ever written to disk.
    """

    def __init__(self, output, settings):
        self._output = output
        self.digest = hashlib.sha256()
        self.size = 0
        self.encrypted = settings.passphrase is not None
        self._encryptor = GpgEncryptor(settings.passphrase, self._to_file) if self.encrypted else None
        try:
            self._compressor = ParallelGzipWriter(self._encryptor.write if self._encryptor else self._to_file,
                                                  level=settings.compression_level, threads=settings.compress_threads)
        except BaseException:
            self.abort()
            raise

    def _to_file(self, data):
        self.digest.update(data)
        self._output.write(data)
        self.size += len(data)

    @property
    def uncompressed_size(self):
        return self._compressor.uncompressed_size

    def write(self, data):
        self._compressor.write(data)

    def close(self):
        try:
            self._compressor.close()
            if self._encryptor:
                self._encryptor.close()
        except BaseException:
            self.abort()
            raise

    def abort(self):
        compressor = getattr(self, '_compressor', None)
        if compressor is not None:
            compressor.abort()
        if self._encryptor:
            self._encryptor.abort()


class BackupWriter(Backend):
    """A backend that writes restore points of its ``kind`` (a _backup_kinds record) into ``backup_dir``."""

    kind = None

    def run(self):
        """Make sure the backup directory exists (0700), then ``write()`` one restore point."""
        started = time.monotonic()
        dir_changed, warnings = ensure_directory(self.settings.backup_dir, self.check_mode)
        self.warnings.extend(warnings)
        return self.write(started, dir_changed)

    def write(self, started, dir_changed):
        """The run's result; ``dir_changed``: the directory is new (in check mode: would be)."""
        raise NotImplementedError

    def backup_kind(self):
        """The record this writer names its files by (a writer with a prefix option adapts it)."""
        return self.kind

    def backup_path(self, stamp=None):
        encrypted = self.settings.passphrase is not None
        return os.path.join(self.settings.backup_dir, self.backup_kind().part_name(stamp or self.stamp(), encrypted))

    def free_backup_path(self):
        """The timestamped name, its restore point free in plain and encrypted form alike; within the
        same second as the last run, it waits a tick."""
        kind = self.backup_kind()
        for _attempt in range(FREE_NAME_ATTEMPTS):
            stamp = self.stamp()
            stem = os.path.join(self.settings.backup_dir, kind.stem(stamp))
            if not any(os.path.lexists(stem + suffix) for suffix in kind.suffixes + (MANIFEST_SUFFIX,)):
                return self.backup_path(stamp)
            time.sleep(0.1)
        raise ConfigError('cannot find a free backup name in %s' % self.settings.backup_dir)

    def remove_expired(self, include_new=None):
        """Retention: whole restore points past retention_days, never the newest retention_keep_min.

        ``include_new`` counts a backup about to be written (check mode); in check mode nothing is removed.
        """
        settings = self.settings
        if settings.offsite.enabled:
            return []
        expired = self.backup_kind().expired(settings.backup_dir, settings.retention_days,
                                             settings.retention_keep_min, self.clock(), include_new)
        return remove_restore_points(expired, self.check_mode)

    def part_manifest(self, path, written):
        """What the manifest says of every part; ``written`` is its closed CompressedOutput."""
        return {
            'name': os.path.basename(path),
            'role': self.backup_kind().role,
            'sha256': written.digest.hexdigest(),
            'size': written.size,
            'uncompressed_size': written.uncompressed_size,
            'encrypted': written.encrypted,
            'compression': {'format': 'gzip', 'level': self.settings.compression_level,
                            'implementation': ZLIB_IMPLEMENTATION},
            'encryption': dict(ENCRYPTION_FACTS) if written.encrypted else None,
        }

    def commit_restore_point(self, output, path, part):
        """The part's ``.sha256`` and the restore point's manifest, then the part itself in place: all or nothing.

        Returns the manifest's path.
        """
        kind = self.backup_kind()
        manifest = restore_point_manifest(kind.name, kind.stem_of(path), self.utc_now(), [part])
        created = []
        try:
            manifest_path = write_restore_point_sidecars(self.settings.backup_dir, manifest, self.settings.mode,
                                                         created)
            output.commit(overwrite=False)
        except BaseException:
            remove_quietly(created)
            raise
        return manifest_path
