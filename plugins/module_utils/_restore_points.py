# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""Restore points: the set of files one run writes, named by their stem, and their manifest.

A restore point is identified by its stem ``<prefix><separator>YYYYMMDD_HHMMSS`` (for example
``supabase_backup_20260101_020000``). Its files: the parts (``<stem><suffix>[.gpg]``), each
with a ``<part>.sha256`` sidecar (``sha256sum -c``) and, once validated, ``<part>.validation.json``
and ``.txt``; and one manifest ``<stem>.manifest.json`` (format v2) describing every part.
The main part (the kind's own suffix, e.g. ``.sql.gz``) is the restore point's ``path``; a
logical restore point may hold more parts (PART_SUFFIXES, ``extra_database_suffix``), never
named like a main part, so "the newest ``*.sql.gz``" is always a main part.

Older backups keep working as one-part restore points: a per-file ``<part>.manifest.json``
(format v1) and ``.sha256``, or no sidecar at all (the contract's shell procedure).
"""

from __future__ import annotations

import json
import os
import re
import stat
import urllib.parse

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import (
    storage_error,
    write_file_atomically,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import BackupFileError

MANIFEST_FORMAT = 'cortexreview.supabase_backup/restore-point/v2'
MANIFEST_SUFFIX = '.manifest.json'
CHECKSUM_SUFFIX = '.sha256'
# A validation's report (JSON) and its readable summary.
REPORT_SUFFIX, SUMMARY_SUFFIX = REPORT_SUFFIXES = ('.validation.json', '.validation.txt')
# The files named after one part, beside it.
PART_SIDECAR_SUFFIXES = (CHECKSUM_SUFFIX, MANIFEST_SUFFIX) + REPORT_SUFFIXES
# The stem a part's name starts with: everything up to its timestamp.
_STEM_OF_PART = re.compile(r'^(.*\d{8}_\d{6})\.')

# A logical restore point's parts besides its main dump: suffix by manifest role.
EXTRA_DATABASE_ROLE = 'extra_database'
PART_SUFFIXES = {
    'globals': '.globals.pgsql.gz',
    'db_config': '.db-config.tar.gz',
    'deployment': '.deployment.tar.gz',
    'storage': '.storage.tar.gz',
}
# ``.db.<name>.pgsql.gz``: the name percent-encoded, "." included, so it cannot end like another suffix.
_EXTRA_DATABASE_PREFIX, _EXTRA_DATABASE_SUFFIX = '.db.', '.pgsql.gz'
EXTRA_PART_PATTERN = '|'.join(
    [re.escape(_EXTRA_DATABASE_PREFIX) + r'(?:[A-Za-z0-9_~-]|%[0-9A-F]{2})+' + re.escape(_EXTRA_DATABASE_SUFFIX)]
    + [re.escape(suffix) for suffix in sorted(PART_SUFFIXES.values())])


def extra_database_suffix(name):
    """``.db.<name>.pgsql.gz`` for database ``name`` (``_supabase`` -> ``.db._supabase.pgsql.gz``)."""
    return '%s%s%s' % (_EXTRA_DATABASE_PREFIX, urllib.parse.quote(name, safe='').replace('.', '%2E'),
                       _EXTRA_DATABASE_SUFFIX)


def list_restore_points(kind, directory):
    """Restore points of ``kind`` in ``directory``, oldest first (by the timestamp in the stem, then mtime).

    Each is a dict: stem, timestamp, parts (paths, the main part last), path and name (of the main
    part; None for a stem whose main part is missing), mtime (newest part's), size (of all parts).
    Only regular files named exactly like the kind's parts are parts: symlinks, directories and
    anything looser are never listed, so never deleted.
    """
    pattern = kind.part_pattern()
    points = {}
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise storage_error('list', directory, exc) from None
    for entry in sorted(entries, key=lambda item: item.name):
        match = pattern.match(entry.name)
        if not match or not entry.is_file(follow_symlinks=False):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed meanwhile (retention of a concurrent run)
        stem = match.group('stem')
        point = points.setdefault(stem, {'stem': stem, 'timestamp': match.group('timestamp'), 'parts': [],
                                         'path': None, 'mtime': info.st_mtime, 'size': 0})
        point['parts'].append(entry.path)
        if match.group('suffix') == kind.suffix and point['path'] is None:
            point['path'] = entry.path
        point['mtime'] = max(point['mtime'], info.st_mtime)
        point['size'] += info.st_size
    for point in points.values():
        if point['path'] is not None:
            # The main part last: removed last, it keeps a half-removed restore point visible.
            point['parts'].remove(point['path'])
            point['parts'].append(point['path'])
        point['name'] = os.path.basename(point['path']) if point['path'] else None
        point['directory'] = directory
    return sorted(points.values(), key=lambda item: (item['timestamp'], item['mtime'], item['stem']))


def restore_point_files(point):
    """Every file of a restore point that exists as a regular file: sidecars and manifests first, parts last.

    Only these exact names, never a symlink: a part is removed last, so an interrupted removal
    leaves a restore point the next retention still sees.
    """
    directory = point.get('directory') or os.path.dirname(point['parts'][-1])
    names = [os.path.join(directory, point['stem'] + MANIFEST_SUFFIX)]
    for part in point['parts']:
        names += [part + suffix for suffix in PART_SIDECAR_SUFFIXES]
    names += point['parts']
    return [path for path in names if _is_regular_file(path)]


def remove_restore_points(points, check_mode):
    """Delete each restore point whole (see restore_point_files); returns the paths removed."""
    removed = []
    for point in points:
        for path in restore_point_files(point):
            if not check_mode:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise storage_error('remove expired backup', path, exc) from None
            removed.append(path)
    return removed


def _is_regular_file(path):
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def stem_of_part(path):
    """``.../supabase_backup_20260101_020000.sql.gz`` -> ``supabase_backup_20260101_020000``; None if unnamed."""
    match = _STEM_OF_PART.match(os.path.basename(path))
    return match.group(1) if match else None


def manifest_path(directory, stem):
    return os.path.join(directory, stem + MANIFEST_SUFFIX)


def read_json_object(path, what):
    """The object in ``path``, None when there is no such file; BackupFileError when unreadable."""
    try:
        with open(path, encoding='utf-8') as handle:
            content = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise BackupFileError('cannot read %s %s: %s' % (what, path, exc)) from None
    if not isinstance(content, dict):
        raise BackupFileError('%s %s is malformed: not a JSON object' % (what, path))
    return content


def part_manifest(path):
    """What a manifest says about the part ``path``, or None when no manifest describes it.

    Version 1 (``<part>.manifest.json``) is returned as it is. Version 2 (``<stem>.manifest.json``)
    gives the part's entry, with the restore point's ``stem``, ``kind``, ``created_at`` and ``format``.
    """
    v1_path = path + MANIFEST_SUFFIX
    manifest = read_json_object(v1_path, 'manifest')
    if manifest is not None:
        return manifest
    stem = stem_of_part(path)
    if stem is None:
        return None
    v2_path = manifest_path(os.path.dirname(path), stem)
    manifest = restore_point_of(os.path.dirname(path), stem)
    if manifest is None:
        return None
    name = os.path.basename(path)
    for part in manifest['parts']:
        if part['name'] == name:
            entry = dict(part)
            entry.update((key, manifest.get(key)) for key in ('format', 'stem', 'kind', 'created_at'))
            return entry
    raise BackupFileError('manifest %s does not list %s, which carries its name' % (v2_path, name))


def restore_point_manifest(kind_name, stem, created_at, parts, not_found=()):
    """The v2 manifest of a restore point; ``parts`` are dicts with at least name, role, sha256, size.

    ``components`` lists the roles of its parts, ``not_found`` what was looked for and not found
    (``{component, what}``).
    """
    components = []
    for part in parts:
        if part['role'] not in components:
            components.append(part['role'])
    return {'format': MANIFEST_FORMAT, 'stem': stem, 'kind': kind_name, 'created_at': created_at,
            'parts': list(parts), 'components': components, 'not_found': list(not_found)}


def restore_point_of(directory, stem):
    """The whole manifest of restore point ``stem`` (v2), None when it has none; malformed: BackupFileError."""
    path = manifest_path(directory, stem)
    manifest = read_json_object(path, 'manifest')
    if manifest is None:
        return None
    if manifest.get('format') != MANIFEST_FORMAT or not isinstance(manifest.get('parts'), list) or not all(
            isinstance(part, dict) and isinstance(part.get('name'), str) for part in manifest['parts']):
        raise BackupFileError('manifest %s is malformed: not a %s manifest with parts' % (path, MANIFEST_FORMAT))
    return manifest


def write_restore_point_sidecars(directory, manifest, mode, created):
    """Each part's ``.sha256`` (``sha256sum -c`` format), then the manifest, atomically.

    Each path is appended to ``created`` once in place, so a caller can undo them.
    """
    for part in manifest['parts']:
        path = os.path.join(directory, part['name']) + CHECKSUM_SUFFIX
        write_file_atomically(path, '%s  %s\n' % (part['sha256'], part['name']), mode)
        created.append(path)
    path = manifest_path(directory, manifest['stem'])
    write_file_atomically(path, json.dumps(manifest, indent=2, sort_keys=True) + '\n', mode)
    created.append(path)
    return path
