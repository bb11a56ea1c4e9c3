# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""The off-site step of a backup run: upload, then retention on both sides.

It runs after the backup (its own metrics sample, ``operation="offsite"``), under the backup
directory's lock. With ``offsite_remote`` set, local retention is done here rather than by the
backup: a restore point that can go off-site but is not there yet is never removed locally.
"""

from __future__ import annotations

import contextlib
import os
import time

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backend import Backend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import (
    DirectoryLock,
    ensure_directory,
    select_expired,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_kinds import LOGICAL, VOLUME, kind_named
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import ConfigError, OffsiteError
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._offsite import (
    RcloneRemote,
    fetch_restore_point,
    offsite_settings,
    remote_restore_points,
    sync_restore_points,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._restore_points import (
    MANIFEST_SUFFIX,
    remove_restore_points,
)


class OffsiteSyncSettings:
    def __init__(self, params, kind):
        self.kind = kind
        if not params.get('backup_dir'):
            raise ConfigError('backup_dir must not be empty')
        self.backup_dir = os.path.abspath(params['backup_dir'])
        self.retention_days = params['retention_days']
        self.retention_keep_min = params['retention_keep_min']
        self.lock_timeout = params['lock_timeout']
        self.offsite = offsite_settings(params)
        if not self.offsite.enabled:
            raise ConfigError('offsite_remote is not set')


class OffsiteSyncBackend(Backend):
    """Uploads the restore points the remote lacks, oldest first, then applies retention remotely and locally."""

    metrics_operation = 'offsite'
    kind = None

    @classmethod
    def from_params(cls, params, check_mode=False, **kwargs):
        kind = cls.kind.with_prefix(params.get('prefix')) if cls.kind.prefix_option else cls.kind
        return cls(OffsiteSyncSettings(params, kind), check_mode=check_mode, **kwargs)

    def metrics_size(self, result):
        return result.get('uploaded_bytes')

    def metrics_directory(self):
        return None

    def run(self):
        started = time.monotonic()
        settings = self.settings
        remote = RcloneRemote(settings.offsite)
        progress = {}
        # Check mode writes nothing and may run before the backup directory exists.
        lock = contextlib.nullcontext() if self.check_mode else DirectoryLock(settings.backup_dir, settings.lock_timeout)
        with lock:
            try:
                sync = sync_restore_points(settings.kind, settings.backup_dir, settings.offsite, remote,
                                           settings.retention_days, settings.retention_keep_min, self.clock(),
                                           check_mode=self.check_mode, progress=progress)
            except OffsiteError as exc:
                # An outage must not stop local retention of what is already off-site; when even the
                # listing failed, nothing is known to be there and nothing is removed.
                if 'on_remote' in progress:
                    exc.details['removed'] = self.remove_expired_locally(progress['on_remote'], progress['skipped'])
                raise
            removed_local = self.remove_expired_locally(set(sync['on_remote']), sync['skipped'])
        uploaded_bytes = sum(os.path.getsize(os.path.join(settings.backup_dir, name)) for name in sync['uploaded']
                             if os.path.isfile(os.path.join(settings.backup_dir, name)))
        for skipped in sync['skipped']:
            self.warnings.append('restore point %s stays on this host only: %s' % (
                skipped['stem'], 'it has no manifest (made by the shell procedure)' if skipped['reason'] == 'no manifest'
                else 'it is not encrypted (set offsite_allow_plain: true to upload plain backups)'))
        changed = bool(sync['uploaded'] or sync['removed'] or removed_local or sync['pending'])
        verb = 'Would upload' if self.check_mode else 'Uploaded'
        points = sync['pending'] if self.check_mode else sync['uploaded_points']
        return {
            'changed': changed, 'remote': remote.describe(), 'uploaded': sync['uploaded'],
            'uploaded_points': points, 'uploaded_bytes': uploaded_bytes, 'remote_removed': sync['removed'],
            'removed': removed_local, 'remote_newest': sync['newest'], 'skipped': sync['skipped'],
            'duration': round(time.monotonic() - started, 3),
            'msg': '%s %d restore point(s) to %s; newest there: %s'
                   % (verb, len(points), remote.describe(), sync['newest'] or 'none'),
        }

    def remove_expired_locally(self, on_remote, skipped):
        """Local retention that never removes a restore point waiting for its upload."""
        settings = self.settings
        cannot_go = {item['stem'] for item in skipped}
        points = settings.kind.restore_points(settings.backup_dir)
        expired = select_expired(points, settings.retention_days, settings.retention_keep_min, self.clock())
        allowed = [point for point in expired if point['stem'] in on_remote or point['stem'] in cannot_go]
        return remove_restore_points(allowed, self.check_mode)


class LogicalOffsiteBackend(OffsiteSyncBackend):
    kind = LOGICAL
    metrics_kind = LOGICAL.metrics_kind


class VolumeOffsiteBackend(OffsiteSyncBackend):
    kind = VOLUME
    metrics_kind = VOLUME.metrics_kind


def newest_remote_restore_point(settings, kind):
    """The stem of the newest complete restore point of ``kind`` on the remote, or None."""
    points = remote_restore_points(kind, RcloneRemote(settings).listing())
    return points[-1]['stem'] if points else None


def fetch_from_remote(settings, kind, backup_dir, stem=None, check_mode=False):
    """Bring restore point ``stem`` (default: the newest on the remote) into ``backup_dir``; returns its stem.

    Every part is checked against the manifest before it takes its name; in check mode only the
    remote is read.
    """
    remote = RcloneRemote(settings)
    listing = remote.listing()
    points = remote_restore_points(kind, listing)
    if stem is None:
        if not points:
            raise ConfigError('no complete %s restore point on %s' % (kind.name, remote.describe()))
        stem = points[-1]['stem']
    if not check_mode:
        fetch_restore_point(remote, backup_dir, stem, listing)
    return stem


def _fetch_target(params, kind):
    if not params.get('backup_dir'):
        raise ConfigError('offsite_remote needs backup_dir: the restore point is fetched into it')
    return os.path.abspath(params['backup_dir']), kind.with_prefix(params.get('prefix'))


def remote_plan(params, kind):
    """Check mode: what a fetch would bring, or None when the restore point is here already (plan it as usual)."""
    backup_dir, kind = _fetch_target(params, kind)
    settings = offsite_settings(params)
    stem = fetch_from_remote(settings, kind, backup_dir, params.get('restore_point'), check_mode=True)
    if any(point['stem'] == stem for point in kind.restore_points(backup_dir)):
        return None
    return {'changed': True, 'restore_point': stem, 'fetched_from': settings.remote,
            'msg': 'Would fetch %s from %s into %s, check every part against its manifest, and restore it'
                   % (stem, settings.remote, backup_dir)}


def fetch_first(params, kind, check_mode):
    """The reader's options with ``restore_point`` set to the one fetched from the remote."""
    backup_dir, kind = _fetch_target(params, kind)
    ensure_directory(backup_dir, check_mode)
    stem = fetch_from_remote(offsite_settings(params), kind, backup_dir, params.get('restore_point'), check_mode)
    return dict(params, restore_point=stem, backup_dir=backup_dir)


class FetchSettings:
    def __init__(self, params):
        self.backup_dir, self.kind = _fetch_target(params, kind_named(params.get('kind') or 'logical',
                                                                      params.get('prefix')))
        self.offsite = offsite_settings(params)
        if not self.offsite.enabled:
            raise ConfigError('offsite_remote must not be empty')
        self.restore_point = params.get('restore_point') or None
        if self.restore_point is not None and not self.kind.stem_pattern().match(self.restore_point):
            raise ConfigError('restore_point %r is not a %s restore point name' % (self.restore_point, self.kind.name))
        self.lock_timeout = params.get('lock_timeout', 600)


class FetchBackend(Backend):
    """Brings one restore point from the remote into the backup directory, every part checked."""

    settings_class = FetchSettings

    def run(self):
        started = time.monotonic()
        settings = self.settings
        local = {point['stem'] for point in settings.kind.restore_points(settings.backup_dir)} \
            if os.path.isdir(settings.backup_dir) else set()
        remote = RcloneRemote(settings.offsite)
        listing = remote.listing()
        stem = settings.restore_point
        if stem is None:
            points = remote_restore_points(settings.kind, listing)
            if not points:
                raise OffsiteError('no complete %s restore point on %s' % (settings.kind.name, remote.describe()))
            stem = points[-1]['stem']
        changed = stem not in local
        if changed and not self.check_mode:
            ensure_directory(settings.backup_dir, False)
            with DirectoryLock(settings.backup_dir, settings.lock_timeout):
                fetch_restore_point(remote, settings.backup_dir, stem, listing)
        elif stem + MANIFEST_SUFFIX not in listing:
            raise OffsiteError('no complete restore point %s on %s' % (stem, remote.describe()))
        names = sorted(name for name in listing if name.startswith(stem + '.'))
        size = sum(int(listing[name]['size'] or 0) for name in names)
        verb = ('Would fetch' if self.check_mode else 'Fetched') if changed else 'Already here:'
        return {'changed': changed, 'restore_point': stem, 'remote': remote.describe(),
                'backup_dir': settings.backup_dir, 'files': names, 'size': size,
                'duration': round(time.monotonic() - started, 3),
                'msg': '%s %s (%d bytes) from %s into %s' % (verb, stem, size, remote.describe(), settings.backup_dir)}
