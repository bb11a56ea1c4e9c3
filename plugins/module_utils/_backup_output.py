# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""Writing a backup file: the options every backup-writing engine shares, and the gzip/gpg pipeline."""

from __future__ import annotations

import hashlib

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import ENCRYPTED_SUFFIX
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import ConfigError
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._gpg import GpgEncryptor, Passphrase
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import parse_mode
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._parallel_gzip import ParallelGzipWriter, default_threads


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

    def suffix(self, plain_suffix):
        """The name's suffix of a new backup: gpg's ``.gpg`` added when it is encrypted."""
        return plain_suffix + ENCRYPTED_SUFFIX if self.passphrase else plain_suffix


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
