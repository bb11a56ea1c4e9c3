# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""Reading a ``.sql.gz`` (or gpg-encrypted ``.sql.gz.gpg``) backup: a full verification pass,
then streaming it to a restore.

Memory stays bounded: the file is read, decrypted and decompressed in pieces of at most 1 MiB.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import stat

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._dump_stream import DumpInspector
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import ENCRYPTED_SUFFIX
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import BackupFileError
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._gpg import decrypted, looks_encrypted
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._restore_points import CHECKSUM_SUFFIX, part_manifest

try:
    from zlib_ng import zlib_ng as fast_zlib
except ImportError:  # pragma: no cover - depends on the node
    import zlib as fast_zlib

import zlib

READ_SIZE = 1 << 20
GZIP_MAGIC = b'\x1f\x8b'


class CorruptStreamError(BackupFileError):
    """The gzip stream itself is damaged (the caller names the file)."""


def _decompressed(compressed_chunks):
    """Plain chunks of a gzip stream (several members allowed); raises BackupFileError if corrupt."""
    decoder = fast_zlib.decompressobj(wbits=31)
    in_member = False
    try:
        for data in compressed_chunks:
            while data:
                in_member = True
                plain = decoder.decompress(data, READ_SIZE)
                while plain or decoder.unconsumed_tail:
                    if plain:
                        yield plain
                    plain = decoder.decompress(decoder.unconsumed_tail, READ_SIZE)
                data = b''
                if decoder.eof:
                    # Another member may follow; anything else fails its header check.
                    data = decoder.unused_data
                    decoder = fast_zlib.decompressobj(wbits=31)
                    in_member = False
        if in_member:
            rest = decoder.flush()
            if rest:
                yield rest
            if not decoder.eof:
                raise CorruptStreamError('the gzip stream is truncated (unexpected end of file)')
    except (zlib.error, fast_zlib.error) as exc:
        raise CorruptStreamError('not a valid gzip stream: %s' % exc) from None


def gzip_checked(chunks, message):
    """``chunks``, once their start is read and found to be gzip; BackupFileError(message) at once if not.

    Reading the start also runs into a wrong passphrase, before anything else happens.
    """
    head = b''
    chunks = iter(chunks)
    for data in chunks:
        head += data
        if len(head) >= len(GZIP_MAGIC):
            break
    if not head.startswith(GZIP_MAGIC):
        raise BackupFileError(message)
    return itertools.chain((head,), chunks)


class BackupFile:
    """A logical backup on disk, with its optional ``.sha256`` sidecar and manifest (see _restore_points).

    An encrypted file (gpg's OpenPGP message) needs ``passphrase`` (a ``_gpg.Passphrase``).
    """

    what = 'backup file'

    def __init__(self, path, passphrase=None):
        self.path = os.path.abspath(path)
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            raise BackupFileError('backup file %s does not exist' % self.path) from None
        except OSError as exc:
            raise BackupFileError('cannot read backup file %s: %s' % (self.path, exc.strerror)) from None
        if not stat.S_ISREG(info.st_mode):
            raise BackupFileError('backup file %s is not a regular file' % self.path)
        if not os.access(self.path, os.R_OK):
            raise BackupFileError('backup file %s is not readable' % self.path)
        self.size = info.st_size
        if self.size == 0:
            raise BackupFileError('backup file %s is empty' % self.path)
        self.encrypted = self._is_encrypted()
        if self.encrypted and passphrase is None:
            raise BackupFileError('%s %s is encrypted: give encrypt_passphrase or encrypt_passphrase_file'
                                  % (self.what, self.path))
        self.passphrase = passphrase

    def _is_encrypted(self):
        try:
            with open(self.path, 'rb') as handle:
                head = handle.read(32)
        except OSError as exc:
            raise BackupFileError('cannot read %s %s: %s' % (self.what, self.path, exc.strerror or exc)) from None
        if head.startswith(GZIP_MAGIC):
            return False
        return self.path.endswith(ENCRYPTED_SUFFIX) or looks_encrypted(head)

    def _raw_chunks(self, digest=None):
        try:
            with open(self.path, 'rb') as handle:
                for data in iter(lambda: handle.read(READ_SIZE), b''):
                    if digest is not None:
                        digest.update(data)
                    yield data
        except OSError as exc:
            raise BackupFileError('cannot read backup file %s: %s' % (self.path, exc.strerror or exc)) from None

    def plain_chunks(self, digest=None):
        """The gzip stream: the file's bytes, decrypted as they are read when it is encrypted.

        ``digest`` sees the file's own bytes, as its checksum file does.
        """
        raw = self._raw_chunks(digest)
        if not self.encrypted:
            return raw
        return decrypted(raw, self.passphrase, os.path.basename(self.path))

    def checked_plain_chunks(self, digest=None):
        """``plain_chunks()``, failing at once unless the (decrypted) stream is gzip."""
        return gzip_checked(self.plain_chunks(digest), '%s %s is not gzip-compressed%s' % (
            self.what, self.path, ' once decrypted' if self.encrypted else ''))

    def sql_chunks(self):
        """The SQL text, decrypted and decompressed as it is read."""
        return _decompressed(self.plain_chunks())

    def expected_sha256(self):
        try:
            with open(self.path + CHECKSUM_SUFFIX, encoding='utf-8') as handle:
                text = handle.read().split()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise BackupFileError('cannot read checksum file %s.sha256: %s' % (self.path, exc)) from None
        if not text or len(text[0]) != 64:
            raise BackupFileError('checksum file %s.sha256 is malformed' % self.path)
        return text[0].lower()

    def manifest(self):
        """What the restore point's manifest (v2, or the per-file v1) says about this file, or None."""
        manifest = part_manifest(self.path)
        if manifest is not None and not isinstance(manifest.get('tables', {}), dict):
            raise BackupFileError('the manifest of %s is malformed: its tables are not a mapping' % self.path)
        return manifest

    def sql_stream(self):
        """(SQL chunks, findings) of one read of the file: ``findings(inspector)`` checks what that
        read saw (the inspector fed every SQL chunk) once the chunks are exhausted."""
        digest = hashlib.sha256()
        name = os.path.basename(self.path)

        def chunks():
            try:
                yield from _decompressed(self.checked_plain_chunks(digest))
            except CorruptStreamError as exc:
                raise BackupFileError('backup file %s is corrupt: %s' % (name, exc.msg)) from None

        def findings(inspector):
            return self._findings(digest.hexdigest(), inspector)

        return chunks(), findings

    def verify(self):
        """Read the whole file once: checksum, gzip integrity, pg_dump shape, manifest agreement.

        Returns a dict with sha256, tables (row counts from the file), indexes, versions and manifest.
        """
        inspector = DumpInspector()
        chunks, findings = self.sql_stream()
        for plain in chunks:
            inspector.feed(plain)
        return findings(inspector)

    def _findings(self, sha256, inspector):
        name = os.path.basename(self.path)
        expected = self.expected_sha256()
        if expected and expected != sha256:
            raise BackupFileError('backup file %s does not match its checksum file (sha256 %s, expected %s)'
                                  % (name, sha256, expected))
        self.check_start(inspector)
        if not inspector.complete:
            raise BackupFileError('backup file %s is an incomplete dump: pg_dump\'s completion marker is missing'
                                  % name)
        manifest = self.manifest()
        if manifest is not None:
            if manifest.get('sha256') not in (None, sha256):
                raise BackupFileError('backup file %s does not match the sha256 in its manifest' % name)
            if manifest.get('tables') is not None and manifest['tables'] != inspector.tables:
                raise BackupFileError('backup file %s does not match its manifest\'s row counts' % name)
        return {
            'sha256': sha256,
            'checksum_verified': bool(expected) or bool(manifest and manifest.get('sha256')),
            'tables': inspector.tables,
            'indexes': inspector.indexes,
            'versions': inspector.versions,
            'manifest': manifest,
        }

    def check_start(self, inspector):
        """Refuse what is not a pg_dump plain dump, from its first lines on."""
        if not inspector.header_seen:
            raise BackupFileError('backup file %s does not look like a pg_dump plain SQL dump'
                                  % os.path.basename(self.path))

    def verify_checksum(self):
        """A plan's check, reading the file's bytes only: the checksum against its sidecars, with the
        manifest's row counts. A backup without a checksum or row counts gets the full ``verify()``."""
        expected = self.expected_sha256()
        manifest = self.manifest()
        wanted = [value for value in (expected, (manifest or {}).get('sha256')) if value]
        if not wanted or not isinstance((manifest or {}).get('tables'), dict):
            return self.verify()
        if self.encrypted:
            # Only the start: a wrong passphrase fails the plan, as it fails a full read.
            plain = self.plain_chunks()
            try:
                gzip_checked(plain, '%s %s is not gzip-compressed once decrypted' % (self.what, self.path))
            finally:
                plain.close()
        digest = hashlib.sha256()
        for _data in self._raw_chunks(digest):
            pass
        sha256 = digest.hexdigest()
        if any(value != sha256 for value in wanted):
            raise BackupFileError('backup file %s does not match its checksum (sha256 %s, expected %s)'
                                  % (os.path.basename(self.path), sha256, wanted[0]))
        return {'sha256': sha256, 'checksum_verified': True, 'tables': manifest['tables'], 'indexes': None,
                'versions': {}, 'manifest': manifest}
