# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""What every backend shares, and how a module runs one."""

from __future__ import annotations

import datetime
import hashlib
import os
import time

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import (
    ENCRYPTED_SUFFIX,
    TIMESTAMP_FORMAT,
    list_backups,
    select_expired,
    suffix_variants,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    ConfigError,
    SupabaseBackupError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._gpg import (
    ENCRYPTION_FACTS,
    GpgEncryptor,
    Passphrase,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._metrics import free_bytes, write_metrics
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import parse_mode
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._parallel_gzip import (
    ZLIB_IMPLEMENTATION,
    ParallelGzipWriter,
    default_threads,
)


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


class Backend:
    """A unit of work: ``run()`` returns the result dict or raises a SupabaseBackupError.

    ``metrics_kind`` labels the Prometheus samples of backends whose settings have a ``metrics_file``.
    """

    metrics_kind = None

    def __init__(self, settings, check_mode=False, clock=time.time):
        self.settings = settings
        self.check_mode = check_mode
        self.clock = clock
        self.warnings = []

    def run(self):
        raise NotImplementedError

    def measured(self, work):
        """``work(started)``, with its outcome recorded in the metrics file, failure included."""
        started = time.monotonic()
        try:
            result = work(started)
        except SupabaseBackupError as exc:
            self.record_metrics(False, time.monotonic() - started, failure=exc)
            raise
        self.record_metrics(True, result['duration'], size=result.get('size'))
        return result

    def record_metrics(self, success, duration, size=None, failure=None):
        metrics_file = getattr(self.settings, 'metrics_file', None)
        if self.check_mode or not metrics_file:
            return
        directory = self.metrics_directory()
        try:
            write_metrics(metrics_file, self.metrics_kind, success, duration, size=size, finished_at=int(self.clock()),
                          free=free_bytes(directory) if directory else None)
        except (OSError, SupabaseBackupError) as exc:
            if failure is not None:
                # The run's own error is the one the operator must see.
                failure.details['metrics_error'] = str(exc)
                return
            self.warnings.append('the %s run succeeded but metrics_file %s was not written: %s'
                                 % (self.metrics_kind, metrics_file, exc))

    def metrics_directory(self):
        """The directory whose free space the metrics report: the backup directory, where there is one."""
        return getattr(self.settings, 'backup_dir', None)

    def naming(self):
        """(directory, prefix, separator, suffix) of the files a backup-writing backend makes."""
        raise NotImplementedError

    def backup_path(self):
        directory, prefix, separator, suffix = self.naming()
        return os.path.join(directory, '%s%s%s%s' % (prefix, separator, self.stamp(), suffix))

    def free_backup_path(self):
        """The timestamped name, free in plain and encrypted form alike; within the same second as
        the last run, it waits a tick."""
        suffix = self.naming()[3]
        for _attempt in range(30):
            path = self.backup_path()
            stem = path[:-len(suffix)]
            if not any(os.path.lexists(stem + variant) for variant in suffix_variants(suffix)):
                return path
            time.sleep(0.1)
        raise ConfigError('cannot find a free backup name in %s' % self.naming()[0])

    def expired(self, include_new=None):
        """Backups retention removes now, encrypted or not; ``include_new`` counts a backup about to be written."""
        directory, prefix, separator, suffix = self.naming()
        backups = list_backups(directory, prefix, suffix_variants(suffix), separator)
        if include_new and all(item['path'] != include_new for item in backups):
            backups.append({'path': include_new, 'mtime': self.clock(), 'timestamp': '~'})
        return select_expired(backups, self.settings.retention_days, self.settings.retention_keep_min, self.clock())

    def file_manifest(self, manifest_format, path, written):
        """The part of a manifest every backup file has; ``written`` is its closed CompressedOutput."""
        return {
            'format': manifest_format,
            'file': os.path.basename(path),
            'sha256': written.digest.hexdigest(),
            'size': written.size,
            'uncompressed_size': written.uncompressed_size,
            'created_at': self.utc_now(),
            'compression': {'format': 'gzip', 'level': self.settings.compression_level,
                            'implementation': ZLIB_IMPLEMENTATION},
            'encryption': dict(ENCRYPTION_FACTS) if written.encrypted else None,
        }

    def stamp(self):
        """Now as ``YYYYMMDD_HHMMSS`` in the node's local time, as the contract names files."""
        return datetime.datetime.fromtimestamp(self.clock()).strftime(TIMESTAMP_FORMAT)

    def utc_now(self):
        return datetime.datetime.fromtimestamp(self.clock(), datetime.timezone.utc).isoformat()


def run_module(module, make_backend):
    """Run the backend ``make_backend()`` builds and exit the module with its result.

    Our errors become one-line failures with their details; warnings are shown either way.
    """
    backend = None
    try:
        backend = make_backend()
        result = backend.run()
    except SupabaseBackupError as exc:
        for warning in backend.warnings if backend else []:
            module.warn(warning)
        module.fail_json(msg=exc.msg, **exc.details)
    for warning in backend.warnings:
        module.warn(warning)
    module.exit_json(**result)
