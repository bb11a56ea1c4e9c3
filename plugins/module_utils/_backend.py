# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""What every backend shares, and the one place that runs a backend and records the run in the metrics."""

from __future__ import annotations

import datetime
import time

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import TIMESTAMP_FORMAT
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import SupabaseBackupError
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._metrics import free_bytes, write_metrics


class Backend:
    """A unit of work: ``run()`` returns the result dict or raises a SupabaseBackupError.

    ``settings_class`` validates the options; ``metrics_kind`` and ``metrics_operation`` label the
    run's Prometheus samples (no kind: the run is not recorded).
    """

    settings_class = None
    metrics_kind = None
    metrics_operation = 'backup'

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
    operation = backend_class.metrics_operation
    # The free-space gauge is the backups': only a backup run refreshes it.
    directory = (backend.metrics_directory() if backend else params.get('backup_dir')) if operation == 'backup' else None
    try:
        write_metrics(metrics_file, backend_class.metrics_kind, success, duration, size=size,
                      finished_at=int(backend.clock() if backend else time.time()),
                      free=free_bytes(directory) if directory else None, operation=operation)
    except (OSError, SupabaseBackupError) as exc:
        if isinstance(failure, SupabaseBackupError):
            # The run's own error is the one the operator must see.
            failure.details['metrics_error'] = str(exc)
        elif backend is not None and failure is None:
            backend.warnings.append('the %s %s run succeeded but metrics_file %s was not written: %s'
                                    % (backend_class.metrics_kind, operation, metrics_file, exc))
