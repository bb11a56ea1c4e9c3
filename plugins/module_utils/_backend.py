# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""What every backend shares, and the one place that runs a backend and records the run in the metrics."""

from __future__ import annotations

import datetime
import os
import time

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import (
    TIMESTAMP_FORMAT,
    list_backups,
    select_expired,
    suffix_variants,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import ConfigError, SupabaseBackupError
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._gpg import ENCRYPTION_FACTS
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._metrics import free_bytes, write_metrics
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._parallel_gzip import ZLIB_IMPLEMENTATION


class Backend:
    """A unit of work: ``run()`` returns the result dict or raises a SupabaseBackupError.

    ``settings_class`` validates the options; ``metrics_kind`` labels the run's Prometheus samples
    (None: the run is not recorded).
    """

    settings_class = None
    metrics_kind = None

    def __init__(self, settings, check_mode=False, clock=time.time):
        self.settings = settings
        self.check_mode = check_mode
        self.clock = clock
        self.warnings = []

    @classmethod
    def from_params(cls, params, check_mode=False, **kwargs):
        return cls(cls.settings_class(params), check_mode=check_mode, **kwargs)

    def run(self):
        raise NotImplementedError

    def metrics_size(self, result):
        """The size the metrics report for a successful run: the file written, by default."""
        return result.get('size')

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


def run_backend(backend_class, params, check_mode=False, prepare=None):
    """Build ``backend_class`` from ``params`` and run it: (result, error, warnings), one of result/error None.

    ``prepare(params)`` first turns raw options into the backend's (the cron runner's config file).
    Every real run of a measured kind is recorded in ``metrics_file``: success, failure and a
    configuration rejected before the backend exists alike. An unexpected exception (a bug) is
    recorded as a failure and raised.
    """
    started = time.monotonic()
    backend = None
    try:
        backend = backend_class.from_params(prepare(params) if prepare else params, check_mode=check_mode)
        result = backend.run()
    except Exception as exc:  # pylint: disable=broad-except
        _record(backend_class, params, backend, check_mode, False, time.monotonic() - started, failure=exc)
        if not isinstance(exc, SupabaseBackupError):
            raise
        return None, exc, backend.warnings if backend else []
    _record(backend_class, params, backend, check_mode, True, result.get('duration', time.monotonic() - started),
            size=backend.metrics_size(result))
    return result, None, backend.warnings


def _record(backend_class, params, backend, check_mode, success, duration, size=None, failure=None):
    """One sample in metrics_file; a metrics problem never hides the run's own outcome."""
    metrics_file = params.get('metrics_file') if isinstance(params, dict) else None
    if check_mode or not metrics_file or not backend_class.metrics_kind:
        return
    directory = backend.metrics_directory() if backend else params.get('backup_dir')
    try:
        write_metrics(metrics_file, backend_class.metrics_kind, success, duration, size=size,
                      finished_at=int(backend.clock() if backend else time.time()),
                      free=free_bytes(directory) if directory else None)
    except (OSError, SupabaseBackupError) as exc:
        if isinstance(failure, SupabaseBackupError):
            # The run's own error is the one the operator must see.
            failure.details['metrics_error'] = str(exc)
        elif backend is not None and failure is None:
            backend.warnings.append('the %s run succeeded but metrics_file %s was not written: %s'
                                    % (backend_class.metrics_kind, metrics_file, exc))
