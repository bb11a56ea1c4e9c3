# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""Prometheus textfile-collector metrics, written atomically.

Every sample carries two labels: ``kind``, the kind of backup (``logical``, ``volume``), and
``operation``, what the run did with it (``backup``, ``restore``, ``validate``). One file holds
them all: a run replaces only its own (kind, operation) samples, so a restore or a validation
never overwrites the last success of the backup of the same kind. A failed run keeps the last
success time and size of the previous successful run of the same kind and operation.

Files written before the ``operation`` label existed are read as ``operation="backup"``, and
their ``kind="validation"`` (the validation of the logical backups) as ``kind="logical",
operation="validate"``: upgrading keeps every last success time, so no alert fires on upgrade.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import (
    write_file_atomically,
)

METRIC_PREFIX = 'supabase_backup'
METRICS = (
    ('duration_seconds', 'Duration of the last run of this kind and operation, successful or not.'),
    ('size_bytes', 'Size of the backup written, restored or validated by the last successful run.'),
    ('last_success_timestamp_seconds', 'Unix time the last successful run of this kind and operation finished, '
                                       '0 if none has.'),
    ('last_run_timestamp_seconds', 'Unix time the last run of this kind and operation finished, successful or not.'),
    ('success', '1 if the last run of this kind and operation succeeded, 0 if it failed.'),
    ('free_bytes', 'Free space, for unprivileged users, on the filesystem of the backup directory.'),
    # The point-in-time archive's state (kind="pitr", operation="archive"), refreshed by its status.
    ('pitr_receiver_up', '1 if the WAL receiver streams from the server, 0 if not.'),
    ('pitr_receiver_restarts', 'Restarts of the WAL receiver container (Docker restart count).'),
    ('pitr_last_contact_timestamp_seconds', 'Unix time the WAL receiver last reported to the server.'),
    ('pitr_newest_wal_timestamp_seconds', 'Unix time the newest WAL file of the archive was last written.'),
    ('pitr_slot_lag_bytes', 'WAL bytes the replication slot holds back on the server (current LSN - restart_lsn).'),
    ('pitr_base_backup_timestamp_seconds', 'Unix time the newest base backup finished, 0 if there is none.'),
    ('pitr_archive_bytes', 'Size of the point-in-time archive (WAL and base backups).'),
    ('pitr_wal_gaps', 'WAL files missing from the archive (a gap or a broken timeline), 0 when it is whole.'),
)
DEFAULT_OPERATION = 'backup'
# Files written before the operation label: kind="validation" was the validation of the logical backups.
_LEGACY_KINDS = {'validation': ('logical', 'validate')}

_NAME = re.compile(r'\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*')
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\\n]|\\.)*)"\s*(,?)')
_CLOSING = re.compile(r'\s*\}')
_UNESCAPE = re.compile(r'\\(.)')


def escape_label_value(value):
    """A label value as the text exposition format requires: backslash, double quote and newline escaped."""
    return str(value).replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')


def _unescape_label_value(text):
    return _UNESCAPE.sub(lambda match: '\n' if match.group(1) == 'n' else match.group(1), text)


def parse_sample(line):
    """(name, {label: value}, value) of one sample line of the text format, or None for anything else."""
    match = _NAME.match(line)
    if not match:
        return None
    name, position, labels = match.group(1), match.end(), {}
    if line[position:position + 1] == '{':
        position += 1
        while True:
            label = _LABEL.match(line, position)
            if not label:
                break
            labels[label.group(1)] = _unescape_label_value(label.group(2))
            position = label.end()
            if not label.group(3):
                break
        closing = _CLOSING.match(line, position)
        if not closing:
            return None
        position = closing.end()
    fields = line[position:].split()
    if not fields or len(fields) > 2:  # value, and an optional timestamp
        return None
    try:
        return name, labels, float(fields[0])
    except ValueError:
        return None


def _key(name, labels):
    """(name, kind, operation) of a sample; samples written before the operation label are migrated."""
    kind = labels.get('kind', '')
    if 'operation' in labels:
        return (name, kind, labels['operation']), False
    kind, operation = _LEGACY_KINDS.get(kind, (kind, DEFAULT_OPERATION))
    return (name, kind, operation), True


def read_samples(path):
    """{(name, kind, operation): value} from an existing metrics file; empty when missing or unreadable."""
    current, migrated = {}, {}
    try:
        with open(path, encoding='utf-8') as handle:
            lines = handle.readlines()
    except (OSError, UnicodeDecodeError):
        return {}
    for line in lines:
        sample = parse_sample(line)
        if sample is None:
            continue
        name, labels, value = sample
        key, legacy = _key(name, labels)
        (migrated if legacy else current)[key] = value
    # A sample with the operation label is newer than a migrated one for the same key.
    migrated.update(current)
    return migrated


def _format(value):
    # Whole numbers as integers: values read back as floats must not grow a '.0' at every rewrite.
    if isinstance(value, float) and not value.is_integer():
        return repr(value)
    return str(int(value))


def free_bytes(directory):
    """Space an unprivileged user can still write on ``directory``'s filesystem, or None when unknown."""
    try:
        info = os.statvfs(directory)
    except OSError:
        return None
    return info.f_bavail * info.f_frsize


def _metric(short):
    return '%s_%s' % (METRIC_PREFIX, short)


def write_metrics(path, kind, success, duration, size=None, finished_at=None, free=None, operation=DEFAULT_OPERATION):
    """Record one run: ``operation`` of ``kind``, finished at ``finished_at`` (default now).

    ``size`` is that of this run's backup when it succeeded; a failed run keeps the last success's.
    """
    with _exclusive(path):
        samples = read_samples(path)
        finished_at = int(time.time()) if finished_at is None else finished_at
        if success:
            samples[(_metric('size_bytes'), kind, operation)] = size or 0
            samples[(_metric('last_success_timestamp_seconds'), kind, operation)] = finished_at
        samples.setdefault((_metric('size_bytes'), kind, operation), 0)
        samples.setdefault((_metric('last_success_timestamp_seconds'), kind, operation), 0)
        samples[(_metric('last_run_timestamp_seconds'), kind, operation)] = finished_at
        samples[(_metric('duration_seconds'), kind, operation)] = round(float(duration), 3)
        samples[(_metric('success'), kind, operation)] = 1 if success else 0
        if free is not None:
            samples[(_metric('free_bytes'), kind, operation)] = free
        _write_samples(path, samples)


def write_free_bytes(path, kind, free, operation=DEFAULT_OPERATION):
    """Refresh only the free-space gauge of ``kind`` (between runs, so a filling disk is seen early)."""
    with _exclusive(path):
        samples = read_samples(path)
        samples[(_metric('free_bytes'), kind, operation)] = free
        _write_samples(path, samples)


def write_gauges(path, kind, operation, gauges):
    """Replace the ``{short name: value}`` gauges of (kind, operation); every other sample is kept."""
    with _exclusive(path):
        samples = read_samples(path)
        for short, value in gauges.items():
            samples[(_metric(short), kind, operation)] = value
        _write_samples(path, samples)


@contextlib.contextmanager
def _exclusive(path):
    """Writers of one file take turns, so none puts back samples another just replaced.

    The lock is an flock on the directory: node_exporter's directory gets no extra file.
    """
    directory = os.path.dirname(path) or '.'
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _sample_line(name, kind, operation, value):
    return '%s{kind="%s",operation="%s"} %s' % (name, escape_label_value(kind), escape_label_value(operation),
                                                _format(value))


def _write_samples(path, samples):
    known = set(_metric(short) for short, _help in METRICS)
    lines = []
    for short, help_text in METRICS:
        name = _metric(short)
        present = sorted(item for item in samples.items() if item[0][0] == name)
        if not present:
            continue
        lines.append('# HELP %s %s' % (name, help_text))
        lines.append('# TYPE %s gauge' % name)
        lines.extend(_sample_line(name, kind, operation, value) for (_name, kind, operation), value in present)
    # Keep samples of metrics this version does not know, so newer writers are not undone.
    lines.extend(_sample_line(name, kind, operation, value)
                 for (name, kind, operation), value in sorted(samples.items()) if name not in known)
    # node_exporter runs unprivileged and must read it; it holds no secrets.
    write_file_atomically(path, '\n'.join(lines) + '\n', 0o644)
