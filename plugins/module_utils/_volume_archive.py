# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible and without the Docker SDK.
"""Volume snapshots on disk: a gzip-compressed tar of a Docker volume that holds PGDATA.

The layout is the contract's ``tar czf FILE -C /data .`` (members ``./``, ``./PG_VERSION``,
...), so either side's files restore with the other's procedure. A tar stream is checked as
it passes: headers (``tarfile``), member names that stay inside the volume, the
end-of-archive marker (``tarfile`` alone takes a tar cut at a member boundary for a
complete one), and the files that make a PostgreSQL data directory.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import tarfile

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_reader import (
    READ_SIZE,
    BackupFile,
    _decompressed,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import BackupFileError

# Where a restore keeps the previous contents, inside the volume, until the new ones run.
ASIDE_PREFIX = '.cortexreview-restore-'
TAR_BLOCK = 512
END_MARKER_SIZE = 2 * TAR_BLOCK
PG_VERSION_MAX_BYTES = 32
UNSAFE_NAMES_SHOWN = 3
TRUNCATED = 'the tar archive is truncated: it ends before its end-of-archive marker'


class _ChunkReader(io.RawIOBase):
    """A read-only file over an iterator of byte chunks, for ``tarfile``'s stream mode.

    ``tee`` sees every chunk once, in order, as it is pulled. The reader counts the bytes
    and remembers where the last non-zero byte ended, for the end-of-archive check.
    """

    def __init__(self, chunks, tee=None):
        super().__init__()
        self._chunks = iter(chunks)
        self._tee = tee
        self._buffer = b''
        self._position = 0
        self.size = 0
        self.data_end = 0

    def readable(self):
        return True

    def _next_chunk(self):
        for chunk in self._chunks:
            if not chunk:
                continue
            if self._tee is not None:
                self._tee(chunk)
            if chunk[-1]:
                self.data_end = self.size + len(chunk)
            else:
                kept = len(chunk.rstrip(b'\0'))
                if kept:
                    self.data_end = self.size + kept
            self.size += len(chunk)
            return chunk
        return b''

    def read(self, size=-1):
        if self._position >= len(self._buffer):
            self._buffer = self._next_chunk()
            self._position = 0
            if not self._buffer:
                return b''
        if size is None or size < 0:
            size = len(self._buffer) - self._position
        data = self._buffer[self._position:self._position + size]
        self._position += len(data)
        return data

    def drain(self):
        """Pull (and tee) whatever follows what ``tarfile`` read: the end marker, padding."""
        self._buffer = b''
        self._position = 0
        while self._next_chunk():
            pass


def member_path(name):
    """``'./base/1'`` -> ``'base/1'``, ``'.'`` -> ``''``; None for a name that leaves the volume."""
    if name.startswith('/'):
        return None
    parts = [part for part in name.split('/') if part not in ('', '.')]
    if '..' in parts:
        return None
    return '/'.join(parts)


def read_tar(chunks, visit, tee=None):
    """Read a whole tar stream, calling ``visit(archive, member)`` for each member; returns the stream's size.

    Raises BackupFileError when it is not a complete tar (``visit`` may raise it too).
    """
    reader = _ChunkReader(chunks, tee)
    try:
        archive = tarfile.open(fileobj=reader, mode='r|', bufsize=READ_SIZE)  # pylint: disable=consider-using-with
        for member in archive:
            visit(archive, member)
        end = archive.offset
        archive.close()
    except (tarfile.TarError, EOFError, ValueError, UnicodeError) as exc:
        if 'unexpected end of data' in str(exc):
            raise BackupFileError(TRUNCATED) from None
        raise BackupFileError('not a valid tar archive: %s' % exc) from None
    reader.drain()
    if reader.data_end > end:
        raise BackupFileError('not a valid tar archive: unreadable data at byte %d (a damaged tar header?)' % end)
    if reader.size < end + END_MARKER_SIZE:
        raise BackupFileError(TRUNCATED)
    return reader.size


def inspect_tar(chunks, pgdata='', tee=None):
    """Read a whole tar stream; returns what it holds, raises BackupFileError when it is not a complete tar.

    ``pgdata`` is the data directory's path inside the archive ('' for its root).
    """
    version_path = posixpath.join(pgdata, 'PG_VERSION')
    control_path = posixpath.join(pgdata, 'global', 'pg_control')
    facts = {'members': 0, 'pg_version': None, 'pg_control': False, 'root': None, 'leftovers': [], 'unsafe': []}

    def visit(archive, member):
        facts['members'] += 1
        path = member_path(member.name)
        if path is None or (member.islnk() and member_path(member.linkname) is None):
            facts['unsafe'].append(member.name)
            return
        if not path:
            if member.isdir():
                facts['root'] = {'uid': member.uid, 'gid': member.gid, 'mode': member.mode & 0o7777}
            return
        top = path.split('/', 1)[0]
        if top.startswith(ASIDE_PREFIX) and top not in facts['leftovers']:
            facts['leftovers'].append(top)
        if path == version_path and member.isreg():
            content = archive.extractfile(member).read(PG_VERSION_MAX_BYTES + 1)
            facts['pg_version'] = content.decode('ascii', 'replace').strip()
        elif path == control_path and member.isreg():
            facts['pg_control'] = True

    facts['size'] = read_tar(chunks, visit, tee)
    return facts


def pgdata_problem(facts, pgdata=''):
    """Why the archive's contents are not a PostgreSQL data directory that can be restored, or None."""
    where = ' in %s/' % pgdata if pgdata else ''
    if facts['unsafe']:
        return 'it has member names that leave the volume (%s)' % ', '.join(
            repr(name) for name in facts['unsafe'][:UNSAFE_NAMES_SHOWN])
    if facts['pg_version'] is None:
        return 'it holds no PostgreSQL data directory: no PG_VERSION%s' % where
    if not facts['pg_version'].isdigit():
        return 'its PG_VERSION%s is not a PostgreSQL major version: %r' % (where, facts['pg_version'][:20])
    if not facts['pg_control']:
        return 'its PostgreSQL data directory has no global/pg_control%s' % where
    return None


class VolumeArchive(BackupFile):
    """A volume snapshot on disk (``.tar.gz`` or gpg-encrypted ``.tar.gz.gpg``), with its optional
    ``.sha256`` sidecar and manifest (see _restore_points)."""

    what = 'volume snapshot'

    def tar_chunks(self, digest=None):
        """The tar stream, decrypted and decompressed as the file is read; ``digest`` sees the file's bytes."""
        return _decompressed(self.plain_chunks(digest))

    def verify(self, pgdata=''):
        """Read the whole file once: gzip to its end, checksum, tar structure, PGDATA. Returns the facts."""
        name = os.path.basename(self.path)
        digest = hashlib.sha256()
        compressed = self.checked_plain_chunks(digest)
        try:
            facts = inspect_tar(_decompressed(compressed), pgdata)
        except BackupFileError as exc:
            raise BackupFileError('volume snapshot %s is corrupt: %s' % (name, exc.msg)) from None
        facts['sha256'] = digest.hexdigest()
        expected = self.expected_sha256()
        if expected and expected != facts['sha256']:
            raise BackupFileError('volume snapshot %s does not match its checksum file (sha256 %s, expected %s)'
                                  % (name, facts['sha256'], expected))
        manifest = self.manifest()
        if manifest is not None and manifest.get('sha256') not in (None, facts['sha256']):
            raise BackupFileError('volume snapshot %s does not match the sha256 in its manifest' % name)
        problem = pgdata_problem(facts, pgdata)
        if problem:
            raise BackupFileError('volume snapshot %s cannot be restored: %s' % (name, problem))
        facts['checksum_verified'] = bool(expected) or bool(manifest and manifest.get('sha256'))
        return facts
