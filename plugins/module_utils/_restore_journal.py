# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner's status check reads it too.
"""A restore's durable record of what it stopped and created, so that a restore whose process
died (SIGKILL, a lost session, a reboot) is finished by the next one.

The record lives beside the backups (0600), one per database, written atomically before each
step that would need undoing; a restore that ends, successfully or not, removes it. A restore
that finds one first drops the scratch database the earlier run created and starts the writers
it stopped (the contract's step 7). ``backup_status`` reports it, and fails while those writers
are still down.
"""

from __future__ import annotations

import json
import os
import re

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import (
    directory_in_use,
    storage_error,
    write_file_atomically,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._docker import (
    docker_client,
    inspect_container,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    BackupFileError,
    DockerError,
    SupabaseBackupError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._restore_points import read_json_object

JOURNAL_PREFIX = '.cortexreview-restore-'
JOURNAL_SUFFIX = '.json'
JOURNAL_MODE = 0o600
FORMAT = 'cortexreview.supabase_backup/restore-journal/v1'
_UNSAFE = re.compile(r'[^A-Za-z0-9_.-]')


def journal_path(directory, target):
    """One record per database and server: ``.cortexreview-restore-<container or host>-<db>.json``."""
    where = target.container or target.login_host or 'local'
    name = '%s%s-%s%s' % (JOURNAL_PREFIX, _UNSAFE.sub('_', where), _UNSAFE.sub('_', target.db), JOURNAL_SUFFIX)
    return os.path.join(directory, name)


def recovery_journal_path(directory, container):
    """The record of a point-in-time recovery of ``container``: ``.cortexreview-restore-<container>+pitr.json``
    beside the logical backups, where ``backup_status`` looks for unfinished restores ("+" never appears in a
    logical restore's record name, so no database name can make the two meet)."""
    return os.path.join(directory, '%s%s+pitr%s' % (JOURNAL_PREFIX, _UNSAFE.sub('_', container), JOURNAL_SUFFIX))


def read_journal(path):
    """The record at ``path``, or None when there is none; a damaged one is an error naming it."""
    record = read_json_object(path, 'restore record')
    if record is not None and record.get('format') != FORMAT:
        raise BackupFileError('the restore record %s is not one this collection wrote; remove it' % path,
                              journal=path)
    return record


def journals(directory):
    """(path, record) of every restore record in ``directory``, damaged ones as (path, None)."""
    found = []
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return found
    for name in names:
        if name.startswith(JOURNAL_PREFIX) and name.endswith(JOURNAL_SUFFIX):
            path = os.path.join(directory, name)
            try:
                found.append((path, read_journal(path)))
            except SupabaseBackupError:
                found.append((path, None))
    return found


class RestoreJournal:
    """The record of the running restore: ``note()`` each step before taking it, ``close()`` at the end."""

    def __init__(self, path, record):
        self.path = path
        self.record = record

    @classmethod
    def begin(cls, path, target, src, started_at):
        record = {'format': FORMAT, 'src': src, 'started_at': started_at, 'pid': os.getpid(),
                  'process': process_identity(os.getpid()), 'container': target.container, 'db': target.db,
                  'scratch_database': None, 'stopped_writers': [], 'phase': 'started'}
        journal = cls(path, record)
        journal.write()
        return journal

    def note(self, **changes):
        self.record.update(changes)
        self.write()

    def write(self):
        write_file_atomically(self.path, json.dumps(self.record, indent=2, sort_keys=True) + '\n', JOURNAL_MODE)

    def close(self):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise storage_error('remove the restore record', self.path, exc) from None


def process_identity(pid):
    """[boot id, start time in clock ticks since boot] of process ``pid``, or None when there is none: a
    pid alone may name another process after its own ended, both together name one process."""
    try:
        with open('/proc/sys/kernel/random/boot_id', encoding='ascii') as handle:
            boot_id = handle.read().strip()
        with open('/proc/%d/stat' % pid, encoding='utf-8', errors='replace') as handle:
            # The fields after the command name, which may hold spaces and ")"; the start time is the 22nd.
            fields = handle.read().rpartition(')')[2].split()
        # A zombie has ended; only its parent has not collected it yet.
        return None if fields[0] in ('Z', 'X') else [boot_id, int(fields[19])]
    except (OSError, ValueError, IndexError, TypeError):
        return None


def restore_running(record, directory=None):
    """Whether the process that wrote ``record`` still runs. A record of an older release names no process:
    with ``directory``, whether a run holds its lock answers instead (a backup's lock then counts too);
    without, it never counts as running."""
    pid = record.get('pid')
    identity = record.get('process')
    if not identity:
        return directory is not None and directory_in_use(directory)
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    return process_identity(pid) == identity


def interrupted_restores(directory, docker_host=None):
    """The restores whose records are in ``directory``: each with the writers it stopped that are
    still down (``writers_down``; all of them when Docker cannot be asked, with ``error``), and whether its
    process still runs (``running``: a restore under way, not one that died)."""
    found = []
    for path, record in journals(directory):
        if record is None:
            found.append({'journal': path, 'src': None, 'started_at': None, 'stopped_writers': [],
                          'writers_down': [], 'running': False, 'error': 'the record cannot be read'})
            continue
        writers = [name for name in record.get('stopped_writers') or [] if isinstance(name, str)]
        entry = {'journal': path, 'src': record.get('src'), 'started_at': record.get('started_at'),
                 'db': record.get('db'), 'container': record.get('container'), 'stopped_writers': writers,
                 'scratch_database': record.get('scratch_database'), 'writers_down': [],
                 'running': restore_running(record), 'error': None}
        if writers:
            try:
                api = docker_client(docker_host)
                entry['writers_down'] = [name for name in writers if not _running(api, name)]
            except SupabaseBackupError as exc:
                entry['writers_down'] = writers
                entry['error'] = exc.msg
        found.append(entry)
    return found


def _running(api, name):
    try:
        return bool(inspect_container(api, name)['State'].get('Running'))
    except DockerError:
        return False


def interrupted_restore_problems(restores):
    """One line per restore whose process died and that still keeps writers down (a restore under way
    stops them on purpose)."""
    problems = []
    for entry in restores:
        if entry.get('running'):
            continue
        if entry['src'] is None:
            problems.append('restore record %s cannot be read; check what it describes and remove it'
                            % entry['journal'])
        elif entry['writers_down']:
            problems.append('the restore of %s that started at %s did not finish and %s it stopped %s down%s; run '
                            'the restore again to finish it, or start them' % (
                                entry['src'], entry['started_at'], ', '.join(entry['writers_down']),
                                'is' if len(entry['writers_down']) == 1 else 'are',
                                ' (%s)' % entry['error'] if entry['error'] else ''))
    return problems
