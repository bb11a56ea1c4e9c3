# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""The off-site runs of the point-in-time archive: upload (state=present) and fetch (state=fetched)."""

from __future__ import annotations

import contextlib
import os
import time

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backend import Backend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    BackupFileError,
    ConfigError,
    OffsiteError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._gpg import Passphrase
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._offsite import offsite_settings
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._parallel_gzip import default_threads
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._pitr import PitrLayout, PitrLock
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._pitr_offsite import OutputOptions, PitrOffsite
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._pitr_wal import chain_for

UPLOAD_LOCK = '.offsite.lock'


class PitrOffsiteSettings:
    """Validated options of one off-site run of the archive."""

    def __init__(self, params):
        if not params.get('backup_dir'):
            raise ConfigError('backup_dir must not be empty')
        self.layout = PitrLayout(os.path.abspath(params['backup_dir']))
        self.state = params.get('state') or 'present'
        self.base_backup = params.get('base_backup')
        if self.base_backup and self.state != 'fetched':
            raise ConfigError('base_backup is only for state=fetched')
        self.lock_timeout = params['lock_timeout']
        self.offsite = offsite_settings(params)
        if not self.offsite.enabled:
            raise ConfigError('offsite_remote must name the rclone remote the archive goes to')
        level = params.get('compression_level') or 5
        if not 1 <= level <= 9:
            raise ConfigError('compression_level must be between 1 and 9')
        self.output = OutputOptions(Passphrase.from_params(params), level,
                                    params.get('compress_threads') or default_threads())


class PitrOffsiteBackend(Backend):
    """Uploads the archive's new files and removes remote copies of what retention removed here (state=present),
    or brings a base backup chain and its WAL from the remote (state=fetched)."""

    settings_class = PitrOffsiteSettings
    metrics_kind = 'pitr'
    metrics_operation = 'offsite'

    def metrics_size(self, result):
        return result.get('uploaded_bytes', result.get('fetched_bytes'))

    def metrics_directory(self):
        return None

    def run(self):
        started = time.monotonic()
        settings = self.settings
        archive = PitrOffsite(settings.layout, settings.offsite, settings.output)
        if settings.state == 'fetched':
            result = self._fetch(archive)
        else:
            result = self._upload(archive)
        result['duration'] = round(time.monotonic() - started, 3)
        result['remote'] = archive.describe()
        return result

    def _lock(self, path=None):
        """The archive's lock (``path``: another lock file of it); none in check mode, which writes nothing."""
        if self.check_mode or not os.path.isdir(self.settings.layout.root):
            return contextlib.nullcontext()
        return PitrLock(self.settings.layout, self.settings.lock_timeout, path=path)

    def _upload(self, archive):
        layout = self.settings.layout
        if not os.path.isdir(layout.root):
            raise ConfigError('there is no point-in-time archive in %s: set it up with pitr_archive first' % layout.root)
        # A lock of its own: a long upload never holds up a base backup or a restore, only the next upload.
        with self._lock(os.path.join(layout.root, UPLOAD_LOCK)):
            result = archive.upload(check_mode=self.check_mode)
        changed = bool(result['uploaded'] or result['removed'] or (self.check_mode and result['pending']))
        verb = 'Would upload' if self.check_mode else 'Uploaded'
        count = len(result['pending']) if self.check_mode else len(result['uploaded'])
        result.update(changed=changed, msg='%s %d file(s) of the point-in-time archive to %s; removed %d there'
                      % (verb, count, archive.describe(), len(result['removed'])))
        return result

    def _fetch(self, archive):
        chain = self.chain(archive)
        if not self.check_mode:
            self.settings.layout.ensure()
        with self._lock():
            result = archive.fetch(chain, check_mode=self.check_mode)
        verb = 'Would fetch' if self.check_mode else 'Fetched'
        result.update(changed=bool(result['fetched']), chain=chain,
                      msg='%s base backup %s and %d WAL file(s) from %s into %s'
                          % (verb, ' + '.join(chain), len([name for name in result['fetched'] if name.startswith('wal/')]),
                             archive.describe(), self.settings.layout.root))
        return result

    def chain(self, archive):
        """``base_backup`` (default: the newest complete one on the remote) with the backups it builds on, full first."""
        names = archive.remote_catalog()
        if not names:
            raise OffsiteError('there is no complete base backup on %s' % archive.describe())
        name = self.settings.base_backup or names[-1]
        if name not in names:
            raise OffsiteError('base backup %s is not complete on %s (there: %s)'
                               % (name, archive.describe(), ', '.join(names)))
        try:
            return [entry['name'] for entry in chain_for([archive.remote_entry(item) for item in names], name)]
        except ValueError as exc:
            raise BackupFileError('on %s: %s' % (archive.describe(), exc)) from None
