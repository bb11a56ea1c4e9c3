# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""The state of a backup directory: the newest backup, its age and validation, and the free space.

It reads and never changes the backups. The one thing it may write is the free-space gauge of
the metrics file, which is bookkeeping, so a status is never a change. When the backups are not
as required (too old, none at all, not validated, too little space) it fails with one line
naming every problem, and the full status in the error's details.
"""

from __future__ import annotations

import json
import os
import re

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backend import Backend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import ENCRYPTED_SUFFIX
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_kinds import kind_named
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    ConfigError,
    StatusError,
    SupabaseBackupError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._offsite import offsite_settings, stamp_epoch
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._offsite_backend import (
    newest_remote_restore_point,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._metrics import (
    free_bytes,
    write_free_bytes,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._restore_journal import (
    interrupted_restore_problems,
    interrupted_restores,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._restore_points import REPORT_SUFFIX

SECONDS = {'w': 604800, 'd': 86400, 'h': 3600, 'm': 60, 's': 1}
_DURATION = re.compile(r'^(?:\d+[wdhms])+$')
_DURATION_PART = re.compile(r'(\d+)([wdhms])')
# Sizes count in powers of 1024, as PostgreSQL's settings, df -h and Ansible's human_to_bytes do.
BYTES = {'': 1, 'k': 1 << 10, 'm': 1 << 20, 'g': 1 << 30, 't': 1 << 40, 'p': 1 << 50}
_SIZE = re.compile(r'^(\d+(?:\.\d+)?)\s*(?:([kmgtp])(?:i?b)?|b)?$')


def parse_duration(name, value):
    """'8d', '26h', '90m', '3600s', '1d12h', '3600' or an int of seconds -> seconds; None stays None."""
    if value is None or value == '':
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and value.strip().isdigit():
        seconds = int(value.strip())
    elif isinstance(value, str) and _DURATION.match(value.strip().lower()):
        seconds = sum(int(count) * SECONDS[unit] for count, unit in _DURATION_PART.findall(value.strip().lower()))
    else:
        raise ConfigError('%s %r is not a duration such as 8d, 26h, 90m, 3600s or a number of seconds'
                          % (name, value))
    if seconds <= 0:
        raise ConfigError('%s must be more than 0 seconds, got %r' % (name, value))
    return seconds


def parse_size(name, value):
    """'20GB', '512M', '1.5TiB', '1000000' or an int of bytes -> bytes (K, M, G, T are powers of 1024)."""
    if value is None or value == '':
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = _SIZE.match(value.strip().lower()) if isinstance(value, str) else None
        if not match:
            raise ConfigError('%s %r is not a size such as 20GB, 512MB or a number of bytes' % (name, value))
        size = int(float(match.group(1)) * BYTES[match.group(2) or ''])
    if size < 0:
        raise ConfigError('%s must be 0 or more bytes, got %r' % (name, value))
    return size


def human_duration(seconds):
    """3h 5m, 9d 2h, 42s: the two largest units, for messages."""
    parts = []
    remaining = max(0, int(seconds))
    for unit in 'dhms':
        count, remaining = divmod(remaining, SECONDS[unit])
        if count or (unit == 's' and not parts):
            parts.append('%d%s' % (count, unit))
    return ' '.join(parts[:2])


def human_size(size):
    """20.0 GiB, 512 B: for messages."""
    if size < 1024:
        return '%d B' % size
    value = float(size)
    for unit in ('KiB', 'MiB', 'GiB', 'TiB'):
        value /= 1024.0
        if value < 1024 or unit == 'TiB':
            break
    return '%.1f %s' % (value, unit)


def read_report(path):
    """(passed, validated_at, error) of a validation report; a malformed one did not pass."""
    try:
        with open(path, encoding='utf-8') as handle:
            report = json.load(handle)
    except OSError as exc:
        return False, None, 'validation report %s cannot be read: %s' % (path, exc.strerror or exc)
    except ValueError as exc:
        return False, None, 'validation report %s is not valid JSON: %s' % (path, exc)
    if not isinstance(report, dict):
        return False, None, 'validation report %s is not a JSON object' % path
    validated_at = report.get('validated_at')
    validated_at = validated_at if isinstance(validated_at, str) else None
    if not isinstance(report.get('passed'), bool):
        return False, validated_at, 'validation report %s has no true/false "passed"' % path
    error = report.get('error')
    return report['passed'], validated_at, error if isinstance(error, str) else None


def validation_status(backups):
    """The report of the newest backup that has one beside it (``backups`` oldest first), or None."""
    for item in reversed(backups):
        report = item['path'] + REPORT_SUFFIX
        if os.path.isfile(report):
            passed, validated_at, error = read_report(report)
            return {'report': report, 'backup': item['path'], 'passed': passed, 'validated_at': validated_at,
                    'error': error, 'of_newest': item is backups[-1]}
    return None


class StatusSettings:

    def __init__(self, params):
        self.backup_dir = params['backup_dir']
        self.kind = params.get('kind') or 'logical'
        self.backup_kind = kind_named(self.kind, params.get('prefix'))
        # Encrypted backups count as their plain form does.
        self.pattern = self.backup_kind.describe_names()
        self.max_age = parse_duration('max_age', params.get('max_age'))
        self.min_free = parse_size('min_free', params.get('min_free'))
        self.require_validation = bool(params.get('require_validation'))
        self.metrics_file = params.get('metrics_file')
        self.offsite = offsite_settings(params)
        self.offsite_max_age = parse_duration('offsite_max_age', params.get('offsite_max_age'))
        if self.offsite_max_age and not self.offsite.enabled:
            raise ConfigError('offsite_max_age needs offsite_remote')


class StatusBackend(Backend):
    """Reports a backup directory; ``run()`` raises StatusError, with the status, when it is not as required."""

    settings_class = StatusSettings

    def run(self):
        settings = self.settings
        if not os.path.isdir(settings.backup_dir):
            what = 'is not a directory' if os.path.lexists(settings.backup_dir) else 'does not exist'
            raise ConfigError('backup_dir %s %s' % (settings.backup_dir, what), backup_dir=settings.backup_dir)
        status = self.status()
        problems = self.problems(status)
        if settings.metrics_file and not self.check_mode:
            try:
                self.refresh_metrics(status)
            except (OSError, SupabaseBackupError) as exc:
                problems.append('metrics_file %s not written: %s' % (settings.metrics_file,
                                                                     getattr(exc, 'msg', None) or exc))
        status['problems'] = problems
        if problems:
            raise StatusError('; '.join(problems), **status)
        status['msg'] = self.summary(status)
        return status

    def refresh_metrics(self, status):
        """Bookkeeping in metrics_file: the free-space gauge of the kind."""
        if status['free_bytes'] is not None:
            write_free_bytes(self.settings.metrics_file, self.settings.kind, status['free_bytes'])

    def backups(self):
        """The restore points of the kind, oldest first."""
        return self.settings.backup_kind.restore_points(self.settings.backup_dir)

    def status(self):
        settings = self.settings
        backups = self.backups()
        newest = None
        if backups:
            item = backups[-1]
            newest = {'path': item['path'], 'name': item['name'], 'restore_point': item['stem'],
                      'timestamp': item['timestamp'],
                      'mtime': item['mtime'], 'age_seconds': max(0, int(self.clock() - item['mtime'])),
                      'size': item['size'], 'encrypted': item['name'].endswith(ENCRYPTED_SUFFIX)}
        try:
            info = os.statvfs(settings.backup_dir)
            total = info.f_blocks * info.f_frsize
        except OSError:
            total = None
        return {'changed': False, 'backup_dir': settings.backup_dir, 'kind': settings.kind, 'newest': newest,
                'count': len(backups), 'total_size': sum(item['size'] for item in backups),
                'free_bytes': free_bytes(settings.backup_dir), 'total_bytes': total,
                'validation': validation_status(backups),
                'interrupted_restores': interrupted_restores(settings.backup_dir),
                'offsite': self.offsite_status() if settings.offsite.enabled else None}

    def offsite_status(self):
        """The newest complete restore point on the remote and its age (from its name's timestamp)."""
        settings = self.settings
        stem = newest_remote_restore_point(settings.offsite, settings.backup_kind)
        age = max(0, int(self.clock() - stamp_epoch(stem[-15:]))) if stem else None
        return {'remote': settings.offsite.remote, 'newest': stem, 'age_seconds': age}

    def problems(self, status):
        settings = self.settings
        newest = status['newest']
        problems = []
        if newest is None:
            if settings.max_age or settings.require_validation:
                problems.append('no %s backup named %s in %s' % (settings.kind, settings.pattern, settings.backup_dir))
        else:
            if settings.max_age and newest['age_seconds'] > settings.max_age:
                problems.append('newest %s backup %s is %s old, more than max_age %s'
                                % (settings.kind, newest['name'], human_duration(newest['age_seconds']),
                                   human_duration(settings.max_age)))
            if settings.require_validation:
                problem = self.validation_problem(newest, status['validation'])
                if problem:
                    problems.append(problem)
        problems.extend(interrupted_restore_problems(status['interrupted_restores']))
        offsite = status['offsite']
        if offsite is not None:
            if offsite['newest'] is None:
                problems.append('no complete %s restore point on %s' % (settings.kind, offsite['remote']))
            elif settings.offsite_max_age and offsite['age_seconds'] > settings.offsite_max_age:
                problems.append('newest %s restore point on %s, %s, is %s old, more than offsite_max_age %s'
                                % (settings.kind, offsite['remote'], offsite['newest'],
                                   human_duration(offsite['age_seconds']), human_duration(settings.offsite_max_age)))
        problems.extend(self.free_space_problems(status))
        return problems

    def free_space_problems(self, status):
        settings = self.settings
        if settings.min_free is None:
            return []
        if status['free_bytes'] is None:
            return ['free space on %s is unknown (statvfs failed)' % settings.backup_dir]
        if status['free_bytes'] < settings.min_free:
            return ['%s free on %s, less than min_free %s'
                    % (human_size(status['free_bytes']), settings.backup_dir, human_size(settings.min_free))]
        return []

    @staticmethod
    def validation_problem(newest, validation):
        if validation is None or not validation['of_newest']:
            return 'newest backup %s has no validation report' % newest['name']
        if not validation['passed']:
            return 'validation of newest backup %s did not pass: %s' % (
                newest['name'], validation['error'] or 'no error given')
        return None

    def summary(self, status):
        settings = self.settings
        newest = status['newest']
        if newest is None:
            head = 'no %s backup named %s in %s' % (settings.kind, settings.pattern, settings.backup_dir)
        else:
            head = 'newest %s backup %s is %s old; %d backup(s), %s' % (
                settings.kind, newest['name'], human_duration(newest['age_seconds']), status['count'],
                human_size(status['total_size']))
        if status['free_bytes'] is not None:
            head += '; %s free' % human_size(status['free_bytes'])
        if status['offsite'] is not None:
            offsite = status['offsite']
            head += '; newest on %s: %s (%s old)' % (
                offsite['remote'], offsite['newest'], human_duration(offsite['age_seconds']))
        return head
