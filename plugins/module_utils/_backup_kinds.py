# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""One record per kind of backup file: writing, reading, retention and status all consult it.

A record says how the kind's files are named (prefix, separator, suffix, and the same with gpg's
``.gpg``), which reader class reads and verifies one, what "newest" means and how its metrics are
labelled. Its writer is the backend that names it as its ``kind`` (``_dump.DumpBackend`` for
LOGICAL, ``_volume_snapshot.VolumeSnapshotBackend`` for VOLUME). Adding a kind is one record
here plus its writer and its reader.
"""

from __future__ import annotations

import dataclasses
import os
import re

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import (
    ENCRYPTED_SUFFIX,
    select_expired,
    validate_prefix,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_reader import BackupFile
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    BackupFileError,
    ConfigError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._restore_points import (
    EXTRA_PART_PATTERN,
    list_restore_points,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._volume_archive import VolumeArchive

TIMESTAMP_PLACEHOLDER = 'YYYYMMDD_HHMMSS'


@dataclasses.dataclass(frozen=True)
class BackupKind:
    """The facts of one kind of backup file.

    ``name`` is also its metrics ``kind`` label; ``reader`` is the class that reads and verifies
    one file; ``role`` names its (main) part in a restore point's manifest; ``what`` names one file
    in messages; ``prefix_option``: whether the ``prefix`` option may rename its files;
    ``extra_parts``: a regular expression of the suffixes of a restore point's other parts.
    """

    name: str
    prefix: str
    separator: str
    suffix: str
    reader: type
    role: str
    what: str
    prefix_option: bool = False
    extra_parts: str = ''

    @property
    def metrics_kind(self):
        return self.name

    def with_prefix(self, prefix):
        """This kind under the ``prefix`` option (validated); kinds without the option keep theirs."""
        if not self.prefix_option or prefix in (None, self.prefix):
            return self
        return dataclasses.replace(self, prefix=validate_prefix(prefix))

    # Names

    @property
    def suffixes(self):
        """The plain and the encrypted suffix: retention and "newest" treat both alike."""
        return (self.suffix, self.suffix + ENCRYPTED_SUFFIX)

    def stem(self, stamp):
        return '%s%s%s' % (self.prefix, self.separator, stamp)

    def part_name(self, stamp, encrypted=False):
        return self.stem(stamp) + self.suffixes[1 if encrypted else 0]

    def part_pattern(self):
        """Exactly ``<prefix><separator>YYYYMMDD_HHMMSS<suffix>[.gpg]``, ``suffix`` the main part's or an extra
        part's; nothing looser is ever deleted. Groups: stem, timestamp, suffix (without ``.gpg``)."""
        alternatives = re.escape(self.suffix) + ('|' + self.extra_parts if self.extra_parts else '')
        return re.compile(r'^(?P<stem>%s%s(?P<timestamp>\d{8}_\d{6}))(?P<suffix>%s)(?:%s)?\Z'
                          % (re.escape(self.prefix), re.escape(self.separator), alternatives,
                             re.escape(ENCRYPTED_SUFFIX)))

    def stem_of(self, path):
        """The restore point (stem) a main part of this kind belongs to, or None when ``path`` is not named as one."""
        match = self.part_pattern().match(os.path.basename(path))
        return match.group('stem') if match and match.group('suffix') == self.suffix else None

    def stem_pattern(self):
        return re.compile(r'^%s%s\d{8}_\d{6}\Z' % (re.escape(self.prefix), re.escape(self.separator)))

    def describe_names(self):
        """``supabase_backup_YYYYMMDD_HHMMSS.sql.gz[.gpg]``, for messages."""
        return '%s[%s]' % (self.part_name(TIMESTAMP_PLACEHOLDER), ENCRYPTED_SUFFIX)

    # Restore points

    def restore_points(self, directory):
        """This kind's restore points in ``directory`` that have their main part, oldest first: the newest
        is the last, by the timestamp in its name (then its mtime), whatever the files' own times say."""
        return [point for point in list_restore_points(self, directory) if point['path'] is not None]

    def newest(self, directory):
        points = self.restore_points(directory)
        return points[-1] if points else None

    def expired(self, directory, retention_days, keep_min, now, include_new=None):
        """Restore points retention removes now; ``include_new`` counts a main part about to be written.

        The newest ``keep_min`` restore points with a main part are kept; a stem left with other parts
        only (a removal that was interrupted) is removed by age like any other.
        """
        points = list_restore_points(self, directory)
        if include_new and all(include_new not in point['parts'] for point in points):
            points.append({'path': include_new, 'parts': [include_new], 'mtime': now, 'timestamp': '~'})
        complete = [point for point in points if point['path'] is not None]
        kept = [id(point) for point in complete[-keep_min:]] if keep_min > 0 else []
        return select_expired([point for point in points if id(point) not in kept], retention_days, 0, now)

    def restore_point(self, directory, stem):
        """The restore point ``stem`` of ``directory``; a one-line error when the name or the point is wrong."""
        if not isinstance(stem, str) or not self.stem_pattern().match(stem):
            raise ConfigError('restore_point %r is not a %s restore point name: give %s'
                              % (stem, self.name, self.stem(TIMESTAMP_PLACEHOLDER)))
        for point in self.restore_points(directory):
            if point['stem'] == stem:
                return point
        raise BackupFileError('no restore point %s in %s (no file named %s)'
                              % (stem, directory, '%s%s[%s]' % (stem, self.suffix, ENCRYPTED_SUFFIX)))

    def select(self, directory=None, src=None, restore_point=None):
        """The file to read: ``src``, the part of ``restore_point``, or the newest restore point's part."""
        if src and restore_point is not None:
            raise ConfigError('give src or restore_point, not both')
        if src:
            return src
        if not directory:
            raise ConfigError('give src, or backup_dir (with restore_point to pick one)')
        point = self.restore_point(directory, restore_point) if restore_point is not None else self.newest(directory)
        if point is None:
            raise BackupFileError('no %s named %s in %s' % (self.what, self.describe_names(), directory))
        return point['path']

    # Reading

    def open(self, path, passphrase=None):
        """The reader of one file of this kind: ``verify()`` reads it whole before anything changes."""
        return self.reader(path, passphrase)


LOGICAL = BackupKind('logical', 'supabase_backup', '_', '.sql.gz', BackupFile, role='database',
                     what='backup', prefix_option=True, extra_parts=EXTRA_PART_PATTERN)
VOLUME = BackupKind('volume', 'supabase-volume', '-', '.tar.gz', VolumeArchive, role='data_directory',
                    what='snapshot')
KINDS = {kind.name: kind for kind in (LOGICAL, VOLUME)}


def kind_named(name, prefix=None):
    """The record of kind ``name`` (under the ``prefix`` option where it has one)."""
    if name not in KINDS:
        raise ConfigError('kind must be one of %s, got %r' % (', '.join(sorted(KINDS)), name))
    return KINDS[name].with_prefix(prefix)
