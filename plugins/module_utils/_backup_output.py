# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""Writing backups: the options every writer shares, the gzip/gpg pipeline, and the writer's base.

A writer makes one restore point a run (see _restore_points): each part in an atomic file
(RestorePointWriter), their checksum sidecars and the restore point's manifest, then retention
of whole restore points.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backend import Backend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import (
    ENCRYPTED_SUFFIX,
    AtomicFile,
    ensure_directory,
    remove_quietly,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import ConfigError, StorageError
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._gpg import ENCRYPTION_FACTS, GpgEncryptor, Passphrase
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._offsite import offsite_settings
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import parse_mode
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._parallel_gzip import ZLIB_IMPLEMENTATION, ParallelGzipWriter, default_threads
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._restore_points import (
    remove_restore_points,
    restore_point_manifest,
    write_restore_point_sidecars,
)

FREE_NAME_ATTEMPTS = 30


class OutputSettings:
    """Options of every backend that writes backups: retention, file mode, compression, encryption,
    lock, metrics."""

    def __init__(self, params):
        self.retention_days = params['retention_days']
        self.retention_keep_min = params['retention_keep_min']
        self.mode = parse_mode(params['mode'])
        self.compression_level = params['compression_level']
        self.compress_threads = params['compress_threads'] or default_threads()
        self.lock_timeout = params['lock_timeout']
        self.metrics_file = params.get('metrics_file')
        if self.retention_days < 0:
            raise ConfigError('retention_days must be 0 (keep everything) or more')
        if self.retention_keep_min < 1:
            raise ConfigError('retention_keep_min must be at least 1, so the new backup is always kept')
        if not 1 <= self.compression_level <= 9:
            raise ConfigError('compression_level must be between 1 and 9')
        if params['compress_threads'] < 0:
            raise ConfigError('compress_threads must be 0 (one per core) or more')
        if self.lock_timeout < 0:
            raise ConfigError('lock_timeout must be 0 or more seconds')
        self.passphrase = Passphrase.from_params(params)
        # With an off-site remote, retention is the off-site step's (it knows what has been uploaded).
        self.offsite = offsite_settings(params)
        if self.offsite.enabled and self.passphrase is None and not self.offsite.allow_plain:
            raise ConfigError('offsite_remote needs encryption: data goes off-site encrypted (set '
                              'encrypt_passphrase or encrypt_passphrase_file), or set offsite_allow_plain: true')


class CompressedOutput:
    """gzip (then gpg, with a passphrase) into an open AtomicFile; hashes and counts what reaches the disk.

    ``write()`` plain bytes, then ``close()``; on any failure ``abort()``. No unencrypted byte of an
    encrypted backup is ever written to disk.
    """

    def __init__(self, output, settings):
        self._output = output
        self.digest = hashlib.sha256()
        self.size = 0
        self.encrypted = settings.passphrase is not None
        self._encryptor = GpgEncryptor(settings.passphrase, self._to_file) if self.encrypted else None
        try:
            self._compressor = ParallelGzipWriter(self._encryptor.write if self._encryptor else self._to_file,
                                                  level=settings.compression_level, threads=settings.compress_threads)
        except BaseException:
            self.abort()
            raise

    def _to_file(self, data):
        self.digest.update(data)
        self._output.write(data)
        self.size += len(data)

    @property
    def uncompressed_size(self):
        return self._compressor.uncompressed_size

    def write(self, data):
        self._compressor.write(data)

    def close(self):
        try:
            self._compressor.close()
            if self._encryptor:
                self._encryptor.close()
        except BaseException:
            self.abort()
            raise

    def abort(self):
        compressor = getattr(self, '_compressor', None)
        if compressor is not None:
            compressor.abort()
        if self._encryptor:
            self._encryptor.abort()


class BackupWriter(Backend):
    """A backend that writes restore points of its ``kind`` (a _backup_kinds record) into ``backup_dir``."""

    kind = None

    def run(self):
        """Make sure the backup directory exists (0700), then ``write()`` one restore point."""
        started = time.monotonic()
        dir_changed, warnings = ensure_directory(self.settings.backup_dir, self.check_mode)
        self.warnings.extend(warnings)
        return self.write(started, dir_changed)

    def write(self, started, dir_changed):
        """The run's result; ``dir_changed``: the directory is new (in check mode: would be)."""
        raise NotImplementedError

    def backup_kind(self):
        """The record this writer names its files by (a writer with a prefix option adapts it)."""
        return self.kind

    def backup_path(self, stamp=None):
        encrypted = self.settings.passphrase is not None
        return os.path.join(self.settings.backup_dir, self.backup_kind().part_name(stamp or self.stamp(), encrypted))

    def free_stamp(self):
        """The timestamp of a restore point no file of ``backup_dir`` is named after yet (any part, plain or
        encrypted, or its manifest); within the same second as the last run, it waits a tick."""
        kind = self.backup_kind()
        for _attempt in range(FREE_NAME_ATTEMPTS):
            stamp = self.stamp()
            taken = kind.stem(stamp) + '.'
            try:
                names = os.listdir(self.settings.backup_dir)
            except OSError as exc:
                raise StorageError('cannot list %s: %s' % (self.settings.backup_dir, exc.strerror or exc)) from None
            if not any(name.startswith(taken) for name in names):
                return stamp
            time.sleep(0.1)
        raise ConfigError('cannot find a free backup name in %s' % self.settings.backup_dir)

    def free_backup_path(self):
        """The main part's path of a free restore point (see free_stamp)."""
        return self.backup_path(self.free_stamp())

    def remove_expired(self, include_new=None):
        """Retention: whole restore points past retention_days, never the newest retention_keep_min.

        ``include_new`` counts a backup about to be written (check mode); in check mode nothing is removed.
        """
        settings = self.settings
        if settings.offsite.enabled:
            return []
        expired = self.backup_kind().expired(settings.backup_dir, settings.retention_days,
                                             settings.retention_keep_min, self.clock(), include_new)
        return remove_restore_points(expired, self.check_mode)

    def part_manifest(self, path, written, role=None):
        """What the manifest says of every part; ``written`` is its closed CompressedOutput."""
        return {
            'name': os.path.basename(path),
            'role': role or self.backup_kind().role,
            'sha256': written.digest.hexdigest(),
            'size': written.size,
            'uncompressed_size': written.uncompressed_size,
            'encrypted': written.encrypted,
            'compression': {'format': 'gzip', 'level': self.settings.compression_level,
                            'implementation': ZLIB_IMPLEMENTATION},
            'encryption': dict(ENCRYPTION_FACTS) if written.encrypted else None,
        }

    def commit_restore_point(self, output, path, part):
        """The part's ``.sha256`` and the restore point's manifest, then the part itself in place: all or nothing.

        Returns the manifest's path.
        """
        kind = self.backup_kind()
        manifest = restore_point_manifest(kind.name, kind.stem_of(path), self.utc_now(), [part])
        created = []
        try:
            manifest_path = write_restore_point_sidecars(self.settings.backup_dir, manifest, self.settings.mode,
                                                         created)
            output.commit(overwrite=False)
        except BaseException:
            remove_quietly(created)
            raise
        return manifest_path


class PartSink:
    """What a part's producer writes to: ``write(bytes)`` (compressed, hashed, encrypted as any backup),
    and ``facts``, extra keys of the part's manifest entry."""

    def __init__(self, written, path, role):
        self._written = written
        self.path = path
        self.name = os.path.basename(path)
        self.role = role
        self.facts = {}

    def write(self, data):
        self._written.write(data)


class RestorePointWriter:
    """One restore point of one backup run: its parts, then ``commit()``, or ``abort()`` on any failure.

    ``backend`` is the BackupWriter (settings: backup_dir, mode, compression, encryption). Each
    ``part(suffix, role)`` is written to a temporary file; ``commit()`` writes every part's ``.sha256``
    and the manifest, then renames the parts into place, the main part (the kind's own suffix) last,
    so a restore point is visible only once it is whole. ``abort()`` removes every temporary file:
    nothing of a failed run stays behind.
    """

    def __init__(self, backend, stamp):
        self._backend = backend
        self.kind = backend.backup_kind()
        self.directory = backend.settings.backup_dir
        self.stem = self.kind.stem(stamp)
        self.encrypted = backend.settings.passphrase is not None
        self.main_path = backend.backup_path(stamp)
        self.entries = []
        self.not_found_entries = []
        self._outputs = []

    @contextlib.contextmanager
    def part(self, suffix, role):
        """A PartSink for the part ``<stem><suffix>[.gpg]``; an exception inside discards the part."""
        name = self.stem + suffix + (ENCRYPTED_SUFFIX if self.encrypted else '')
        match = self.kind.part_pattern().match(name)
        if not match or match.group('stem') != self.stem:
            raise ConfigError('%s is not the name of a part of %s restore points' % (name, self.kind.name))
        if any(entry['name'] == name for entry in self.entries):
            raise ConfigError('restore point %s already has a part %s' % (self.stem, name))
        path = os.path.join(self.directory, name)
        output = AtomicFile(path, self._backend.settings.mode)
        try:
            written = CompressedOutput(output, self._backend.settings)
            sink = PartSink(written, path, role)
            try:
                yield sink
                written.close()
            except BaseException:
                written.abort()
                raise
        except BaseException:
            output.discard()
            raise
        entry = self._backend.part_manifest(path, written, role)
        entry.update(sink.facts)
        self.entries.append(entry)
        self._outputs.append(output)

    def not_found(self, component, what, warn=False):
        """Record something looked for and not found; ``warn`` where its absence is surprising."""
        self.not_found_entries.append({'component': component, 'what': what})
        if warn:
            self._backend.warnings.append('%s: %s was not found; the restore point %s has no copy of it'
                                          % (component, what, self.stem))

    @property
    def parts(self):
        """name, role and size of each part written, for the run's result."""
        return [{'name': entry['name'], 'role': entry['role'], 'size': entry['size']} for entry in self.entries]

    def commit(self):
        """Sidecars and manifest, then the parts in place (main part last): all or nothing. Returns the manifest's path."""
        manifest = restore_point_manifest(self.kind.name, self.stem, self._backend.utc_now(), self.entries,
                                          self.not_found_entries)
        ordered = sorted(self._outputs, key=lambda output: output.final_path == self.main_path)
        created = []
        try:
            manifest_path = write_restore_point_sidecars(self.directory, manifest, self._backend.settings.mode,
                                                         created)
            for output in ordered:
                output.commit(overwrite=False)
                created.append(output.final_path)
        except BaseException:
            remove_quietly(reversed(created))
            self.abort()
            raise
        return manifest_path

    def abort(self):
        """Remove every temporary file of the parts (committed parts are the caller's)."""
        for output in self._outputs:
            output.discard()
