# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""Prometheus textfile-collector metrics, written atomically.

One file can hold several kinds of backup (label ``kind``): a run replaces only its
own kind's samples and keeps the others. A failed run keeps the last success time
and size of the previous successful one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import (
    write_file_atomically,
)

METRIC_PREFIX = 'supabase_backup'
METRICS = (
    ('duration_seconds', 'Duration of the last Supabase backup run, successful or not.'),
    ('size_bytes', 'Size of the latest successful Supabase backup file.'),
    ('last_success_timestamp_seconds', 'Unix time of the latest successful Supabase backup.'),
    ('success', '1 if the last Supabase backup run succeeded, 0 if it failed.'),
    ('free_bytes', 'Free space, for unprivileged users, on the filesystem of the backup directory.'),
)
_SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def read_samples(path):
    """{(name, kind): value} from an existing metrics file; empty when missing or unreadable."""
    samples = {}
    try:
        with open(path, encoding='utf-8') as handle:
            lines = handle.readlines()
    except OSError:
        return samples
    for line in lines:
        match = _SAMPLE.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match.group('labels')))
        try:
            samples[(match.group('name'), labels.get('kind', ''))] = float(match.group('value'))
        except ValueError:
            continue
    return samples


def _format(value):
    return repr(float(value)) if isinstance(value, float) else str(int(value))


def free_bytes(directory):
    """Space an unprivileged user can still write on ``directory``'s filesystem, or None when unknown."""
    try:
        info = os.statvfs(directory)
    except OSError:
        return None
    return info.f_bavail * info.f_frsize


def write_metrics(path, kind, success, duration, size=None, finished_at=None, free=None):
    """Record one run of ``kind``. ``size``/``finished_at`` are those of this run when it succeeded."""
    with _exclusive(path):
        samples = read_samples(path)
        if success:
            samples[(METRIC_PREFIX + '_size_bytes', kind)] = size or 0
            samples[(METRIC_PREFIX + '_last_success_timestamp_seconds', kind)] = finished_at
        samples.setdefault((METRIC_PREFIX + '_size_bytes', kind), 0)
        samples.setdefault((METRIC_PREFIX + '_last_success_timestamp_seconds', kind), 0)
        samples[(METRIC_PREFIX + '_duration_seconds', kind)] = round(float(duration), 3)
        samples[(METRIC_PREFIX + '_success', kind)] = 1 if success else 0
        if free is not None:
            samples[(METRIC_PREFIX + '_free_bytes', kind)] = free
        _write_samples(path, samples)


def write_free_bytes(path, kind, free):
    """Refresh only the free-space gauge of ``kind`` (between runs, so a filling disk is seen early)."""
    with _exclusive(path):
        samples = read_samples(path)
        samples[(METRIC_PREFIX + '_free_bytes', kind)] = free
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


def _write_samples(path, samples):
    names = dict(('%s_%s' % (METRIC_PREFIX, short), short) for short, _help in METRICS)
    lines = []
    for short, help_text in METRICS:
        name = '%s_%s' % (METRIC_PREFIX, short)
        present = [(kind, value) for (sample_name, kind), value in sorted(samples.items()) if sample_name == name]
        if not present:
            continue
        lines.append('# HELP %s %s' % (name, help_text))
        lines.append('# TYPE %s gauge' % name)
        for sample_kind, value in present:
            lines.append('%s{kind="%s"} %s' % (name, sample_kind, _format(value)))
    # Keep samples of metrics this version does not know, so newer writers are not undone.
    for (sample_name, sample_kind), value in sorted(samples.items()):
        if sample_name not in names:
            lines.append('%s{kind="%s"} %s' % (sample_name, sample_kind, _format(value)))
    # node_exporter runs unprivileged and must read it; it holds no secrets.
    write_file_atomically(path, '\n'.join(lines) + '\n', 0o644)
