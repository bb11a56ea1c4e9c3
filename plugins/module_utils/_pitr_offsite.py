# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""Off-site copies of the point-in-time archive: WAL and base backups, compressed and encrypted, through rclone.

On the remote, under ``<offsite_remote>/pitr/``:

* ``wal/<segment>.gz.gpg`` for every completed segment and ``<timeline>.history`` file, and the
  segment being received as ``<segment>.partial.gz.gpg`` (replaced on every run, so the off-site
  copy is at most one run behind);
* ``base/<name>.tar.gz.gpg`` for every base backup of the catalog, then ``base/<name>.json``, its
  catalog entry, last: a base backup is complete on the remote when its entry is there.

Every file is verified after its upload as the restore points are (the remote's hash, else read
back). Nothing leaves the host unencrypted unless ``offsite_allow_plain``. Fetching brings a base
backup chain and the WAL from its start back into the local layout, each file checked (gzip to its
end, gpg's integrity check) before it takes its name.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tarfile
import tempfile

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import (
    AtomicFile,
    fsync_directory,
    storage_error,
    write_file_atomically,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_output import CompressedOutput
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_reader import BackupFile, _decompressed
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    BackupFileError,
    ConfigError,
    OffsiteError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._offsite import (
    RcloneRemote,
    file_digests,
    require_room,
    same_copy,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._pitr_wal import (
    HISTORY,
    PARTIAL,
    SEGMENT,
    catalog_entry_problem,
    is_base_name,
    parse_wal_name,
    read_catalog,
)

REMOTE_ROOT = 'pitr'
COMPRESSED = '.gz'
ENCRYPTED = '.gpg'
BASE_ARCHIVE = '.tar'
CATALOG_SUFFIX = '.json'
PARTIAL_SUFFIX = '.partial'
STAGING = '.offsite-staging'
# Where pitr_restore moves the archive it replaced (see _pitr.PitrLayout.retired).
RETIRED_PREFIX = 'retired-'
# The plain digest of the partial segment last sent: its encrypted copies differ every time.
PARTIAL_STATE = '.offsite-partial.json'
SMALLEST_SEGMENT_SIZE = 1 << 20
# Segments packed, uploaded, then verified against one listing at a time (bounds the staging space).
WAL_BATCH = 16


def sub_remote(settings, path):
    """The off-site settings with the remote path ``path`` below the configured one."""
    below = copy.copy(settings)
    remote = settings.remote
    below.remote = remote + path if remote.endswith(':') else '%s/%s' % (remote.rstrip('/'), path)
    return below


class OutputOptions:
    """What CompressedOutput needs of a writer's settings."""

    def __init__(self, passphrase, compression_level, compress_threads):
        self.passphrase = passphrase
        self.compression_level = compression_level
        self.compress_threads = compress_threads


class PitrOffsite:
    """The archive of one ``pitr`` directory and its copy on one remote."""

    def __init__(self, layout, offsite, output_options):
        """``layout``: the PitrLayout; ``offsite``: OffsiteSettings (enabled); ``output_options``: OutputOptions
        (passphrase None: plain)."""
        if output_options.passphrase is None and not offsite.allow_plain:
            raise ConfigError('the point-in-time archive holds all the data: it goes off-site encrypted (set '
                              'encrypt_passphrase), or set offsite_allow_plain: true')
        self.layout = layout
        self.pitr_dir = layout.root
        self.wal_dir = layout.wal
        self.base_dir = layout.base
        self.options = output_options
        self.suffix = COMPRESSED + (ENCRYPTED if output_options.passphrase is not None else '')
        self.wal_remote = RcloneRemote(sub_remote(offsite, REMOTE_ROOT + '/wal'))
        self.base_remote = RcloneRemote(sub_remote(offsite, REMOTE_ROOT + '/base'))
        self.retention = offsite.retention

    def describe(self):
        return '%s (wal/, base/)' % self.wal_remote.describe().rsplit('/', 1)[0]

    # Upload

    def local_wal(self):
        """(completed segments and history files, the segment being received or None), by name."""
        try:
            names = sorted(os.listdir(self.wal_dir))
        except FileNotFoundError:
            return [], None
        except OSError as exc:
            raise storage_error('list', self.wal_dir, exc) from None
        kinds = {name: _kind(name) for name in names}
        done = [name for name in names if kinds[name] in (SEGMENT, HISTORY)]
        partials = [name for name in names if kinds[name] == PARTIAL]
        return done, (partials[-1] if partials else None)

    def plan_upload(self):
        """What the remote lacks: (base backup names, WAL names, the partial segment or None), and the listings."""
        wal_listing = self.wal_remote.listing()
        base_listing = self.base_remote.listing()
        entries = read_catalog(self.layout)
        bases = [entry['name'] for entry in entries if entry['name'] + CATALOG_SUFFIX not in base_listing]
        done, partial = self.local_wal()
        segments = [name for name in done if name + self.suffix not in wal_listing]
        return bases, segments, partial, wal_listing, base_listing

    def upload(self, check_mode=False):
        """Upload what the remote lacks: base backups (archive, then entry), WAL oldest first, then the partial
        segment; then remove remote copies of what is gone here (retention), catalog entries first."""
        bases, segments, partial, wal_listing, base_listing = self.plan_upload()
        result = {'uploaded': [], 'removed': [], 'uploaded_bytes': 0,
                  'pending': ['base/' + name for name in bases] + ['wal/' + name for name in segments]}
        if check_mode:
            result['removed'] = self._expired(wal_listing, base_listing)
            return result
        staging = self._staging()
        try:
            for name in bases:
                archive = self._pack_base(name, staging)
                self._send(self.base_remote, [(archive, name + BASE_ARCHIVE + self.suffix)], base_listing, result)
                os.unlink(archive)
                entry = os.path.join(self.base_dir, name + CATALOG_SUFFIX)
                self._send(self.base_remote, [(entry, name + CATALOG_SUFFIX)], base_listing, result)
            for start in range(0, len(segments), WAL_BATCH):
                batch = [(self._pack_file(os.path.join(self.wal_dir, name), staging), name + self.suffix)
                         for name in segments[start:start + WAL_BATCH]]
                self._send(self.wal_remote, batch, wal_listing, result)
                for path, _name in batch:
                    os.unlink(path)
            if partial is not None:
                self._send_partial(partial, staging, wal_listing, result)
            result['partial'] = partial
            # A partial segment's copy goes once its completed segment is there, never before.
            stale = [name for name in wal_listing if name.endswith(PARTIAL_SUFFIX + self.suffix)
                     and name != (partial or '') + self.suffix
                     and name[:-len(PARTIAL_SUFFIX + self.suffix)] + self.suffix in wal_listing]
            for name in stale:
                self.wal_remote.delete(name)
                result['removed'].append('wal/' + name)
            if self.retention:
                for name in self._expired(wal_listing, base_listing):
                    remote = self.base_remote if name.startswith('base/') else self.wal_remote
                    remote.delete(name.split('/', 1)[1])
                    result['removed'].append(name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return result

    def _send_partial(self, partial, staging, wal_listing, result):
        """The segment being received, unless the remote holds a copy of these very bytes (a copy is encrypted
        anew each time, so the plain digest of the last one sent is kept here)."""
        path = os.path.join(self.wal_dir, partial)
        sent = {'name': partial + self.suffix, 'sha256': file_digests(path)['sha256']}
        state_path = os.path.join(self.pitr_dir, PARTIAL_STATE)
        try:
            with open(state_path, encoding='utf-8') as handle:
                last = json.load(handle)
        except (OSError, ValueError):
            last = None
        if last == sent and sent['name'] in wal_listing:
            return
        self._send(self.wal_remote, [(self._pack_file(path, staging), sent['name'])], wal_listing, result)
        write_file_atomically(state_path, json.dumps(sent), 0o600)

    def _expired(self, wal_listing, base_listing):
        """What remote retention removes. The archives a point-in-time restore retired (``retired-*``) are kept
        here, so their copies are kept there too; nothing goes while a catalog cannot be read whole."""
        catalog = read_catalog(self.layout)
        if not catalog or catalog.problems:
            return []
        kept = list(catalog)
        for name in sorted(os.listdir(self.pitr_dir)):
            if name.startswith(RETIRED_PREFIX) and os.path.isdir(os.path.join(self.pitr_dir, name, 'base')):
                retired = read_catalog(os.path.join(self.pitr_dir, name, 'base'))
                if retired.problems:
                    return []
                kept += retired
        return expired_remote_copies(kept, wal_listing, base_listing)

    def _send(self, remote, files, listing, result):
        """Upload ``files`` ([(local path, remote name)]), then verify them all against one listing."""
        sent = []
        for path, name in files:
            digests = file_digests(path)
            size = os.path.getsize(path)
            if name in listing and same_copy(listing[name], digests, size):
                continue
            remote.upload(path, name)
            sent.append((name, digests, size))
        if not sent:
            return
        after = remote.listing()
        prefix = 'base/' if remote is self.base_remote else 'wal/'
        for name, digests, size in sent:
            try:
                remote.verify(name, digests, size, after)
            except OffsiteError:
                # Copies are known by name: a bad one must go, or the next run would take it as sent.
                try:
                    remote.delete(name)
                except OffsiteError:
                    pass
                raise
            listing[name] = after[name]
            result['uploaded'].append(prefix + name)
            result['uploaded_bytes'] += size

    def _staging(self):
        try:
            return tempfile.mkdtemp(prefix=STAGING + '-', dir=self.pitr_dir)
        except OSError as exc:
            raise storage_error('create a staging directory in', self.pitr_dir, exc) from None

    def _pack_file(self, path, staging):
        """``path`` gzip-compressed (and encrypted) into ``staging``, 0600."""

        def copy(packed):
            with open(path, 'rb') as handle:
                for data in iter(lambda: handle.read(1 << 20), b''):
                    packed.write(data)

        return self._pack(path, os.path.basename(path) + self.suffix, staging, copy)

    def _pack_base(self, name, staging):
        """The base backup directory as one tar stream, gzip-compressed (and encrypted), into ``staging``."""
        source = os.path.join(self.base_dir, name)
        if not os.path.isdir(source):
            raise BackupFileError('base backup %s is in the catalog but %s is missing' % (name, source))

        def archive(packed):
            with tarfile.open(fileobj=packed, mode='w|', format=tarfile.PAX_FORMAT) as tar:
                tar.add(source, arcname='.')

        return self._pack(source, name + BASE_ARCHIVE + self.suffix, staging, archive)

    def _pack(self, source, name, staging, write):
        """``write(sink)`` through gzip (and gpg) into the atomic file ``staging/name`` (0600); its path."""
        target = os.path.join(staging, name)
        with AtomicFile(target, 0o600) as output:
            packed = CompressedOutput(output, self.options)
            try:
                write(packed)
            except OSError as exc:
                packed.abort()
                raise storage_error('read', source, exc) from None
            except BaseException:
                packed.abort()
                raise
            packed.close()
            output.commit()
        return target

    # Fetch

    def remote_catalog(self, base_listing=None):
        """The complete base backups on the remote (their entry is there), oldest first, entries as read."""
        base_listing = self.base_remote.listing() if base_listing is None else base_listing
        return sorted(name[:-len(CATALOG_SUFFIX)] for name in base_listing
                      if name.endswith(CATALOG_SUFFIX) and is_base_name(name[:-len(CATALOG_SUFFIX)]))

    def remote_entry(self, name):
        """The catalog entry of base backup ``name`` as the remote holds it, checked."""
        text = self.base_remote.run('read of %s' % (name + CATALOG_SUFFIX),
                                    ['cat', self.base_remote.target(name + CATALOG_SUFFIX)])
        return _parse_entry(text, name)

    def fetch(self, chain, check_mode=False):
        """Bring base backups ``chain`` (names, full first) and every WAL file from the first one's start into
        the local layout. Files already here are kept. Returns what was (or would be) fetched."""
        base_listing = self.base_remote.listing()
        wal_listing = self.wal_remote.listing()
        result = {'fetched': [], 'fetched_bytes': 0}
        entries = []
        for name in chain:
            if name + CATALOG_SUFFIX not in base_listing or name + BASE_ARCHIVE + self.suffix not in base_listing:
                raise OffsiteError('base backup %s is not complete on %s' % (name, self.base_remote.describe()))
        staging = None if check_mode else self._staging()
        try:
            for name in chain:
                entry = self._fetch_entry(name, staging, check_mode)
                entries.append(entry)
                if not os.path.isdir(os.path.join(self.base_dir, name)):
                    result['fetched'].append('base/%s%s%s' % (name, BASE_ARCHIVE, self.suffix))
                    if not check_mode:
                        result['fetched_bytes'] += self._fetch_base(name, staging, base_listing)
                if not check_mode:
                    self._commit_entry(name, staging)
            start = entries[0]['start_wal'] if entries else None
            for remote_name in sorted(wal_listing):
                plain = remote_name[:-len(self.suffix)] if remote_name.endswith(self.suffix) else None
                if plain is None or not _wanted_wal(plain, start):
                    continue
                local = os.path.join(self.wal_dir, plain)
                if plain.endswith(PARTIAL_SUFFIX):
                    complete = os.path.join(self.wal_dir, plain[:-len(PARTIAL_SUFFIX)])
                    if os.path.exists(complete):
                        continue
                elif os.path.exists(local):
                    continue
                result['fetched'].append('wal/' + remote_name)
                if not check_mode:
                    result['fetched_bytes'] += self._fetch_file(self.wal_remote, remote_name, local, staging)
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
        return result

    def _fetch_entry(self, name, staging, check_mode):
        local = os.path.join(self.base_dir, name + CATALOG_SUFFIX)
        if check_mode:
            return _read_entry(local, name) if os.path.isfile(local) else self.remote_entry(name)
        fetched = os.path.join(staging, name + CATALOG_SUFFIX)
        self.base_remote.download(name + CATALOG_SUFFIX, fetched)
        return _read_entry(fetched, name)

    def _commit_entry(self, name, staging):
        """The entry takes its place last: only then is the fetched base backup one for the readers."""
        try:
            os.replace(os.path.join(staging, name + CATALOG_SUFFIX), os.path.join(self.base_dir, name + CATALOG_SUFFIX))
            fsync_directory(self.base_dir)
        except OSError as exc:
            raise storage_error('write', os.path.join(self.base_dir, name + CATALOG_SUFFIX), exc) from None

    def _fetch_base(self, name, staging, base_listing):
        remote_name = name + BASE_ARCHIVE + self.suffix
        # Room for the archive and what it unpacks into (at least twice its size).
        require_room(self.base_dir, 3 * (base_listing[remote_name].get('size') or 0), 'fetch base backup %s' % name)
        archive = os.path.join(staging, remote_name)
        self.base_remote.download(remote_name, archive)
        unpacked = os.path.join(staging, name)
        os.mkdir(unpacked, 0o700)
        reader = BackupFile(archive, self.options.passphrase)
        try:
            with tarfile.open(fileobj=_ChunkReader(_decompressed(reader.checked_plain_chunks())), mode='r|') as tar:
                tar.extractall(unpacked, filter='data')
        except (tarfile.TarError, OSError) as exc:
            raise BackupFileError('base backup %s fetched from %s cannot be unpacked: %s'
                                  % (name, self.base_remote.describe(), exc)) from None
        _make_private(unpacked)
        if not os.path.isfile(os.path.join(unpacked, 'backup_manifest')):
            raise BackupFileError('base backup %s fetched from %s has no backup_manifest'
                                  % (name, self.base_remote.describe()))
        size = os.path.getsize(archive)
        os.unlink(archive)
        try:
            os.chmod(unpacked, 0o700)
            os.rename(unpacked, os.path.join(self.base_dir, name))
            fsync_directory(self.base_dir)
        except OSError as exc:
            raise storage_error('write', os.path.join(self.base_dir, name), exc) from None
        return size

    def _fetch_file(self, remote, remote_name, local, staging):
        fetched = os.path.join(staging, remote_name)
        remote.download(remote_name, fetched)
        size = os.path.getsize(fetched)
        with AtomicFile(local, 0o600) as output:
            try:
                for data in _decompressed(BackupFile(fetched, self.options.passphrase).checked_plain_chunks()):
                    output.write(data)
            except BackupFileError as exc:
                raise BackupFileError('%s fetched from %s: %s' % (remote_name, remote.describe(), exc.msg)) from None
            output.commit()
        os.unlink(fetched)
        return size


class _ChunkReader:
    """A read-only file object over an iterator of byte chunks (for tarfile's stream mode)."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)
        self._buffer = b''

    def read(self, size=-1):
        while size < 0 or len(self._buffer) < size:
            data = next(self._chunks, None)
            if data is None:
                break
            self._buffer += data
        if size < 0:
            data, self._buffer = self._buffer, b''
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def expired_remote_copies(entries, wal_listing, base_listing):
    """Remote copies that local retention has removed, as ``base/NAME`` / ``wal/NAME``, catalog entries first:
    base backups older than the oldest one in the local catalog ``entries``, and WAL older than its
    start. Nothing while the catalog is empty (nothing here to say what may go)."""
    if not entries:
        return []
    oldest_base = min(entry['name'] for entry in entries)
    oldest_wal = min(entry['start_wal'][8:] for entry in entries)
    removed = []
    for name in sorted(base_listing, key=lambda item: (not item.endswith(CATALOG_SUFFIX), item)):
        stem = name.split('.', 1)[0]
        if is_base_name(stem) and stem < oldest_base:
            removed.append('base/' + name)
    for name in sorted(wal_listing):
        segment = name.split('.', 1)[0]
        if _kind(segment) == SEGMENT and PARTIAL_SUFFIX not in name and segment[8:] < oldest_wal:
            removed.append('wal/' + name)
    return removed


def _wanted_wal(name, start):
    """History files always; segments (and the partial one) from ``start`` on, on its timeline or a later one
    (an earlier timeline's segments past a switch are not the chain's history)."""
    kind = _kind(name)
    if kind == HISTORY:
        return True
    if kind not in (SEGMENT, PARTIAL):
        return False
    return start is None or (name[:8] >= start[:8] and name[8:24] >= start[8:])


def _kind(name):
    """SEGMENT, PARTIAL or HISTORY for the archive's file names, else None (1 MB segments, the smallest, allow
    every name that any segment size can give)."""
    parsed = parse_wal_name(name, SMALLEST_SEGMENT_SIZE)
    return parsed.kind if parsed is not None else None


def _make_private(root):
    """Directories 0700 and files 0600, as the archive keeps them (tar's stream mode leaves directories as umask made them)."""
    for directory, _dirs, files in os.walk(root):
        os.chmod(directory, 0o700)
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                os.chmod(path, 0o600)


def _read_entry(path, name):
    try:
        with open(path, encoding='utf-8') as handle:
            return _parse_entry(handle.read(), name)
    except OSError as exc:
        raise storage_error('read', path, exc) from None


def _parse_entry(text, name):
    try:
        entry = json.loads(text)
    except ValueError:
        entry = None
    problem = catalog_entry_problem(entry, name)
    if problem is not None:
        raise BackupFileError('the catalog entry of base backup %s is not valid: %s' % (name, problem))
    return entry
