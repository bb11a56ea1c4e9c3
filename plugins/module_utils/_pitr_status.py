# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""The state of the point-in-time archive (backup_status kind=pitr) and its node_exporter gauges.

It reads the receiver container, the slot and the receiver's connection on the server, and the
archive on disk (WAL files, base backup catalog, gaps); it changes nothing. The gauges it writes to
the metrics file are bookkeeping, so a status is never a change. When the archive is not as
required it fails with one line naming every problem, and the full status in the details.
"""

from __future__ import annotations

import os

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backend import Backend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    ConfigError,
    StatusError,
    SupabaseBackupError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._metrics import free_bytes, write_gauges
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._pitr import (
    RECEIVER_APPLICATION,
    PitrServer,
    PitrSettings,
    ReceiverContainer,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._pitr_wal import (
    DEFAULT_SEGMENT_SIZE,
    HISTORY,
    PARTIAL,
    find_gaps,
    oldest_start_wal,
    parse_wal_name,
    read_catalog,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._status import (
    human_duration,
    human_size,
    parse_duration,
    parse_size,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._volume_container import DbContainer

KIND = 'pitr'
OPERATION = 'archive'
# The receiver reports every 10 s (--status-interval=10): five minutes of silence is a stalled receiver.
DEFAULT_MAX_LAG = 300


class PitrStatusSettings(PitrSettings):
    """backup_status kind=pitr: the archive's location, how to reach the server, and the thresholds."""

    def __init__(self, params):
        super().__init__(params)
        self.max_age = parse_duration('max_age', params.get('max_age'))
        self.max_lag = parse_duration('max_lag', params.get('max_lag')) or DEFAULT_MAX_LAG
        self.min_free = parse_size('min_free', params.get('min_free'))
        for name in ('require_validation', 'offsite_remote', 'offsite_max_age'):
            if params.get(name):
                raise ConfigError('%s does not apply to kind pitr' % name)


def wal_files(directory, segment_size):
    """[(name, parsed, mtime, size)] of the WAL directory's files; names that are not WAL are left out."""
    found = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    for name in names:
        parsed = parse_wal_name(name, segment_size)
        if parsed is None:
            continue
        try:
            info = os.stat(os.path.join(directory, name))
        except OSError:
            continue
        found.append((name, parsed, info.st_mtime, info.st_size))
    return found


def directory_size(path):
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def read_histories(directory, files):
    histories = {}
    for name, parsed, _mtime, _size in files:
        if parsed.kind == HISTORY:
            try:
                with open(os.path.join(directory, name), encoding='utf-8') as handle:
                    histories[parsed.timeline] = handle.read()
            except (OSError, UnicodeDecodeError):
                pass
    return histories


def archive_gaps(files, catalog, segment_size, histories):
    """Missing WAL names from the oldest base backup's start (or the oldest segment received) on."""
    segments = sorted((parsed.timeline, parsed.number, name) for name, parsed, _m, _s in files
                      if parsed.kind != HISTORY)
    start = oldest_start_wal(catalog, segment_size) if catalog else None
    if start is None:
        if not segments:
            return []
        start = segments[0][2].replace('.partial', '')
    return find_gaps([name for name, _p, _m, _s in files], start, segment_size, histories=histories)


class PitrStatusBackend(Backend):
    """Reports the point-in-time archive; ``run()`` raises StatusError, with the status, when it is not as required."""

    settings_class = PitrStatusSettings

    def run(self):
        settings = self.settings
        if not os.path.isdir(settings.backup_dir):
            what = 'is not a directory' if os.path.lexists(settings.backup_dir) else 'does not exist'
            raise ConfigError('backup_dir %s %s' % (settings.backup_dir, what), backup_dir=settings.backup_dir)
        status = self.status()
        problems = self.problems(status)
        if settings.metrics_file and not self.check_mode:
            try:
                write_gauges(settings.metrics_file, KIND, OPERATION, self.gauges(status))
            except (OSError, SupabaseBackupError) as exc:
                problems.append('metrics_file %s not written: %s' % (settings.metrics_file,
                                                                     getattr(exc, 'msg', None) or exc))
        status['problems'] = problems
        if problems:
            raise StatusError('; '.join(problems), **status)
        status['msg'] = self.summary(status)
        return status

    def status(self):
        settings = self.settings
        now = self.clock()
        db = DbContainer(settings.target.docker_api, None, name=settings.container)
        receiver = ReceiverContainer(db, settings)
        info = receiver.inspect()
        state = (info or {}).get('State') or {}
        receiver_status = {'name': receiver.name, 'exists': info is not None,
                           'running': bool(state.get('Running')) and not state.get('Restarting'),
                           'status': state.get('Status') if info else 'missing',
                           'restart_count': (info or {}).get('RestartCount', 0)}
        server = PitrServer(settings.target)
        slot = server.slot(settings.slot) if db.running else None
        senders = [sender for sender in (server.senders() if db.running else [])
                   if sender['application_name'] == RECEIVER_APPLICATION]
        sender = senders[0] if senders else None
        segment_size = DEFAULT_SEGMENT_SIZE
        if db.running:
            segment_size = int(server.settings(['wal_segment_size'])['wal_segment_size']['setting'])
        catalog = read_catalog(settings.layout)
        files = wal_files(settings.layout.wal, segment_size)
        newest_wal = max(files, key=lambda item: item[2]) if files else None
        newest_base = catalog[-1] if catalog else None
        return {
            'changed': False, 'backup_dir': settings.backup_dir, 'kind': KIND, 'database_running': db.running,
            'receiver': receiver_status,
            'slot': slot,
            'streaming': bool(sender and sender['state'] == 'streaming' and slot and slot['active']),
            'last_contact_age_seconds': round(sender['reply_age'], 1) if sender and sender['reply_age'] is not None
            else None,
            'wal': {'directory': settings.layout.wal, 'count': len([item for item in files if item[1].kind != HISTORY]),
                    'newest': newest_wal[0] if newest_wal else None,
                    'newest_age_seconds': max(0, int(now - newest_wal[2])) if newest_wal else None,
                    'newest_mtime': newest_wal[2] if newest_wal else None,
                    'partial': any(item[1].kind == PARTIAL for item in files)},
            'base_backups': {'count': len(catalog), 'newest': newest_base['name'] if newest_base else None,
                             'newest_epoch': newest_base['finished_epoch'] if newest_base else None,
                             'newest_age_seconds': max(0, int(now - newest_base['finished_epoch']))
                             if newest_base else None,
                             'problems': list(catalog.problems)},
            'gaps': archive_gaps(files, catalog, segment_size, read_histories(settings.layout.wal, files)),
            'archive_size': directory_size(settings.layout.root),
            'free_bytes': free_bytes(settings.backup_dir),
        }

    def problems(self, status):
        settings = self.settings
        problems = []
        receiver = status['receiver']
        if not status['database_running']:
            problems.append('database container %s is not running' % settings.container)
        if not receiver['running']:
            problems.append('receiver container %s is not running (%s)' % (receiver['name'], receiver['status']))
        slot = status['slot']
        if status['database_running'] and slot is None:
            problems.append('replication slot %s does not exist' % settings.slot)
        elif slot is not None and slot['wal_status'] == 'lost':
            problems.append('replication slot %s lost WAL the receiver had not received '
                            '(max_slot_wal_keep_size exceeded)' % settings.slot)
        if status['database_running'] and receiver['running'] and not status['streaming']:
            problems.append('the receiver does not stream WAL from the server')
        age = status['last_contact_age_seconds']
        if age is not None and age > settings.max_lag:
            problems.append("the receiver's last contact was %s ago, more than max_lag %s"
                            % (human_duration(age), human_duration(settings.max_lag)))
        if status['gaps']:
            problems.append('the WAL archive has a gap: %d file(s) missing, first %s'
                            % (len(status['gaps']), status['gaps'][0]))
        problems.extend('base backup catalog: %s' % problem for problem in status['base_backups']['problems'])
        base = status['base_backups']
        if settings.max_age:
            if base['newest'] is None:
                problems.append('no base backup in %s' % settings.layout.base)
            elif base['newest_age_seconds'] > settings.max_age:
                problems.append('newest base backup %s is %s old, more than max_age %s'
                                % (base['newest'], human_duration(base['newest_age_seconds']),
                                   human_duration(settings.max_age)))
        if settings.min_free is not None and status['free_bytes'] is not None \
                and status['free_bytes'] < settings.min_free:
            problems.append('%s free on %s, less than min_free %s'
                            % (human_size(status['free_bytes']), settings.backup_dir, human_size(settings.min_free)))
        return problems

    def gauges(self, status):
        """The pitr samples of the metrics file (kind="pitr", operation="archive")."""
        slot = status['slot'] or {}
        gauges = {
            'pitr_receiver_up': 1 if status['streaming'] else 0,
            'pitr_receiver_restarts': status['receiver']['restart_count'] or 0,
            'pitr_wal_gaps': len(status['gaps']),
            'pitr_archive_bytes': status['archive_size'],
            'pitr_base_backup_timestamp_seconds': int(status['base_backups']['newest_epoch'] or 0),
        }
        if status['wal']['newest_mtime'] is not None:
            gauges['pitr_newest_wal_timestamp_seconds'] = int(status['wal']['newest_mtime'])
        if slot.get('behind') is not None:
            gauges['pitr_slot_lag_bytes'] = slot['behind']
        if status['last_contact_age_seconds'] is not None:
            # A timestamp, so the age the alert sees keeps growing if this refresh stops.
            gauges['pitr_last_contact_timestamp_seconds'] = int(self.clock() - status['last_contact_age_seconds'])
        return gauges

    def summary(self, status):
        base = status['base_backups']
        wal = status['wal']
        parts = ['receiver streaming (last contact %s ago)' % human_duration(status['last_contact_age_seconds'] or 0),
                 '%d WAL segment(s), newest %s' % (wal['count'], wal['newest'] or 'none'),
                 'newest base backup %s' % ('%s, %s old' % (base['newest'], human_duration(base['newest_age_seconds']))
                                            if base['newest'] else 'none'),
                 'archive %s' % human_size(status['archive_size'])]
        return '; '.join(parts)
