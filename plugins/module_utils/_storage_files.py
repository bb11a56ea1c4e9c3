# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible (the cron runner uses it too) and without the Docker SDK.
"""Storage's objects (its file backend's directory), backed up and restored with owners, modes and
extended attributes.

Storage keeps each object's metadata in ``user.supabase.*`` extended attributes and answers a
file without them with ENODATA, so every copy goes through GNU tar with ``--xattrs
--xattrs-include=*`` (the Docker archive API drops them). A host directory (``storage_path``) is
read and written by the node's own tar; a Docker volume (``storage_volume``) by the tar of a
short-lived helper container made from the DB container's image (no pull), through the exec API.
A place without ``user.*`` extended attributes is refused, at backup and at restore.

A restore moves the previous contents aside inside the target (renames), extracts, and deletes
them only once the extraction succeeded and matched its checksum; any failure before that puts
them back. The storage container, when named, is stopped meanwhile and started again in every case.
"""

from __future__ import annotations

import binascii
import errno
import hashlib
import io
import os
import re
import shutil
import tarfile
import tempfile

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._commands import (
    _LocalStream,
    feed_stream,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._docker import (
    API_ERRORS,
    DockerExecStream,
    NotFound,
    api_call,
    drain,
    inspect_container,
    reason,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    BackupFileError,
    ConfigError,
    DockerError,
    FilePartError,
    SupabaseBackupError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._file_parts import (
    XATTR_PAX_PREFIX,
    MemberRules,
    UnsafeMemberError,
    changed_while_read,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._volume_archive import (
    ASIDE_PREFIX,
    read_tar,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._volume_container import (
    DbContainer,
    VolumeHelper,
)

try:
    from docker.types import Mount
except ImportError:  # pragma: no cover - docker_client() reports the missing SDK first
    Mount = None

STORAGE_ROLE = 'storage'
PROBE_ATTRIBUTE = 'user.cortexreview.probe'
PROBE_PREFIX = '.cortexreview-xattr-probe-'
VOLUME_MOUNT_POINT = '/storage'
PROBE_MOUNT_POINT = '/storage-probe'
VOLUME_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]*\Z')
TAR_XATTR_OPTIONS = ['--xattrs', '--xattrs-include=*', '--numeric-owner']
# tar's exit status 1 with only these: the archive is complete, a file moved under it (Storage was
# written meanwhile). Kept as a warning; anything else fails the backup.
FILE_CHANGED_MESSAGES = ('file changed as we read it', 'File removed before we read it', 'socket ignored')
TAR_SUMMARY_LINES = ('Exiting with failure status due to previous errors', 'Error is not recoverable: exiting now')
UNSUPPORTED_ERRNOS = (errno.ENOTSUP, errno.EOPNOTSUPP)
CHANGED_NAMES_SHOWN = 3


def create_argv(directory, members=('.',)):
    """GNU tar writing ``members`` of ``directory`` (all of it: ``./...``) to stdout, POSIX format, extended
    attributes kept."""
    return (['tar', '--create', '--file=-', '--format=posix'] + TAR_XATTR_OPTIONS
            + ['--directory', directory, '--'] + list(members))


def extract_argv(directory):
    """GNU tar extracting stdin into ``directory`` with owners, modes and extended attributes."""
    return (['tar', '--extract', '--file=-'] + TAR_XATTR_OPTIONS
            + ['--same-permissions', '--same-owner', '--directory', directory])


def tar_reason(stderr, returncode):
    """The first thing tar complained about (its last line only says it failed)."""
    lines = [line.strip() for line in (stderr or '').splitlines()
             if line.strip() and not line.strip().endswith(TAR_SUMMARY_LINES)]
    return lines[0] if lines else 'tar exit %s' % returncode


def tar_create_warnings(returncode, stderr, source):
    """What tar's exit status and messages mean for a backup: the warnings to keep, or FilePartError."""
    lines = [line.strip() for line in (stderr or '').splitlines() if line.strip()]
    changed = [line for line in lines if line.endswith(FILE_CHANGED_MESSAGES)]
    if returncode not in (0, 1) or (returncode == 1 and (not changed or len(changed) != len(lines))):
        problem = '\n'.join(line for line in lines if line not in changed)
        raise FilePartError('cannot read %s: %s' % (source, tar_reason(problem, returncode)),
                            rc=returncode, stderr=stderr)
    if not lines:
        return []
    return ['%s: %d file(s) changed while they were read, their copies may not be consistent (%s); stop the '
            'storage container during the backup for an exact copy'
            % (source, len(lines), '; '.join(lines[:CHANGED_NAMES_SHOWN]))]


class StorageLocation:
    """Where Storage's objects live: a host directory or a Docker volume."""

    def __init__(self, path=None, volume=None):
        if path and volume:
            raise ConfigError('give storage_path or storage_volume, not both')
        if not path and not volume:
            raise ConfigError('give storage_path or storage_volume')
        if path and (not isinstance(path, str) or not path.startswith('/')):
            raise ConfigError('storage_path must be an absolute path, got %r' % (path,))
        if path and ('..' in path.split('/') or os.path.normpath(path) == '/'):
            raise ConfigError('storage_path must name a directory below /, without "..": %s' % path)
        if volume and (not isinstance(volume, str) or not VOLUME_NAME.match(volume)):
            raise ConfigError('storage_volume is not a Docker volume name: %r' % (volume,))
        self.path = os.path.normpath(path) if path else None
        self.volume = volume or None

    @classmethod
    def from_options(cls, path=None, volume=None):
        """The location the options name, or None when they name none."""
        return cls(path, volume) if path or volume else None

    @classmethod
    def from_manifest(cls, source, part_name):
        """Where the part's objects came from, as its manifest records it."""
        if not isinstance(source, dict) or not (source.get('path') or source.get('volume')):
            raise BackupFileError('the manifest does not say where %s came from: give storage_path or storage_volume'
                                  % part_name)
        return cls(source.get('path'), source.get('volume'))

    def describe(self):
        return "storage directory '%s'" % self.path if self.path else "storage volume '%s'" % self.volume

    def source_facts(self):
        return {'path': self.path} if self.path else {'volume': self.volume}


def open_store(location, api=None, db_container=None, read_only=False):
    """The object that reads and writes ``location``: on this host, or through a helper container."""
    if location.path:
        return HostStore(location)
    if not db_container:
        raise ConfigError('storage_volume needs container (the DB container, whose image runs the helper container)')
    return VolumeStore(location, api, db_container, read_only)


# Where the objects are

class HostStore:
    """A host directory, read and written by this node's tar and by renames."""

    def __init__(self, location):
        self.location = location
        self.root = location.path
        self.source = location.describe()

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        return None

    def warnings(self):
        return []

    def exists(self):
        return os.path.isdir(self.root)

    def require_directory(self):
        if not os.path.isdir(self.root):
            raise FilePartError('%s does not exist or is not a directory' % self.source)

    def probe(self, directory=None):
        """Refuse a filesystem where ``user.*`` extended attributes cannot be set (set and removed on a temp file)."""
        directory = directory or self.root
        try:
            descriptor, path = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=directory)
        except OSError as exc:
            raise FilePartError('cannot write in %s: %s' % (directory, exc.strerror or exc)) from None
        try:
            os.setxattr(descriptor, PROBE_ATTRIBUTE, b'1')
            if os.getxattr(descriptor, PROBE_ATTRIBUTE) != b'1':
                raise FilePartError('%s does not keep extended attributes' % directory)
            os.removexattr(descriptor, PROBE_ATTRIBUTE)
        except OSError as exc:
            if exc.errno in UNSUPPORTED_ERRNOS:
                raise no_xattrs(self.source) from None
            raise FilePartError('cannot probe extended attributes in %s: %s' % (directory, exc.strerror)) from None
        finally:
            os.close(descriptor)
            os.unlink(path)

    def start(self, argv, with_input=False):
        environment = dict(os.environ, LC_ALL='C')
        return _LocalStream(argv, environment, with_input)

    def sync(self):
        os.sync()

    # The previous contents, moved aside inside the directory and back

    def create(self):
        try:
            os.mkdir(self.root, 0o700)
        except OSError as exc:
            raise FilePartError('cannot create %s: %s' % (self.source, exc.strerror)) from None

    def _entries(self, directory, exclude=None):
        try:
            return sorted(name for name in os.listdir(directory) if name != exclude)
        except OSError as exc:
            raise FilePartError('cannot list %s: %s' % (directory, exc.strerror)) from None

    def _rename(self, what, source, target):
        try:
            os.rename(source, target)
        except OSError as exc:
            raise FilePartError('cannot %s in %s: %s (%s)' % (what, self.source, exc.strerror, source)) from None

    def move_aside(self, aside):
        target = os.path.join(self.root, aside)
        try:
            os.mkdir(target, 0o700)
        except OSError as exc:
            raise FilePartError('cannot create %s in %s: %s' % (aside, self.source, exc.strerror)) from None
        for name in self._entries(self.root, exclude=aside):
            self._rename('move the current contents aside', os.path.join(self.root, name), os.path.join(target, name))

    def clear(self, aside):
        for name in self._entries(self.root, exclude=aside):
            path = os.path.join(self.root, name)
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
            except OSError as exc:
                raise FilePartError('cannot delete the partial new contents of %s: %s (%s)'
                                    % (self.source, exc.strerror, path)) from None

    def move_back(self, aside):
        source = os.path.join(self.root, aside)
        for name in self._entries(source):
            self._rename('move the previous contents back', os.path.join(source, name), os.path.join(self.root, name))
        try:
            os.rmdir(source)
        except OSError as exc:
            raise FilePartError('cannot remove %s from %s: %s' % (aside, self.source, exc.strerror)) from None

    def delete(self, aside):
        try:
            shutil.rmtree(os.path.join(self.root, aside))
        except OSError as exc:
            raise FilePartError('cannot delete %s: %s' % (aside, exc.strerror)) from None

    def root_metadata(self):
        info = os.stat(self.root)
        return {'uid': info.st_uid, 'gid': info.st_gid, 'mode': info.st_mode & 0o7777}

    def set_root_metadata(self, metadata):
        try:
            os.chown(self.root, metadata['uid'], metadata['gid'])
            os.chmod(self.root, metadata['mode'])
        except OSError as exc:
            raise FilePartError('cannot set the owner and mode of %s: %s' % (self.source, exc.strerror)) from None


class _HelperSource:
    """What a VolumeHelper needs to know of where its volume comes from."""

    def __init__(self, db, location, read_only):
        self.api = db.api
        self.name = db.name
        self.image = db.image
        self.destination = VOLUME_MOUNT_POINT
        self.source = location.describe()
        self.mount = Mount(VOLUME_MOUNT_POINT, location.volume, type='volume', read_only=read_only)


class VolumeStore:
    """A Docker volume, read and written by the tar of a helper container from the DB container's image.

    For a backup the volume is mounted read-only (and a second time, writable, for the probe only).
    """

    def __init__(self, location, api, db_container, read_only):
        self.location = location
        self.api = api
        self.root = VOLUME_MOUNT_POINT
        self.source = location.describe()
        self.read_only = read_only
        self._db_container = db_container
        self.helper = None
        self._problems = []

    def require_volume(self):
        try:
            self.api.inspect_volume(self.location.volume)
        except NotFound:
            raise ConfigError('%s does not exist' % self.source) from None
        except API_ERRORS as exc:
            raise DockerError('cannot inspect %s: %s' % (self.source, reason(exc))) from None

    def __enter__(self):
        self.require_volume()
        db = DbContainer(self.api, None, name=self._db_container)
        suffix = 'storage-%s' % binascii.hexlify(os.urandom(4)).decode('ascii')
        self.helper = VolumeHelper(_HelperSource(db, self.location, self.read_only), suffix)
        extra = [Mount(PROBE_MOUNT_POINT, self.location.volume, type='volume')] if self.read_only else []
        try:
            self.helper.create(extra_mounts=extra)
        except BaseException:
            self._remove_helper()
            raise
        return self

    def __exit__(self, *_exc):
        self._remove_helper()

    def _remove_helper(self):
        if self.helper is not None:
            problem = self.helper.remove()
            if problem:
                self._problems.append(problem)

    def warnings(self):
        return list(self._problems)

    def exists(self):
        return True

    def require_directory(self):
        return None

    def probe(self, directory=None):
        """Refuse a volume without ``user.*`` extended attributes: a file carrying one is extracted by
        the helper's own tar and read back."""
        directory = directory or (PROBE_MOUNT_POINT if self.read_only else self.root)
        name = PROBE_PREFIX + binascii.hexlify(os.urandom(6)).decode('ascii')
        path = directory + '/' + name
        try:
            returncode, _out, err = feed_stream(self.start(extract_argv(directory), with_input=True),
                                                [probe_archive(name)])
            read_back = io.BytesIO()
            if returncode == 0:
                returncode, err = drain(self.start(create_argv(directory, [name])), read_back.write)
            if returncode != 0:
                raise FilePartError('cannot probe extended attributes in %s: %s'
                                    % (self.source, tar_reason(err, returncode)))
            if not probe_survived(read_back.getvalue()):
                raise no_xattrs(self.source)
        finally:
            self.helper.run('remove the extended attribute probe', ['rm', '-f', '--', path])

    def start(self, argv, with_input=False):
        return DockerExecStream(self.api, self.helper.id, argv, {'LC_ALL': 'C'}, with_input)

    def sync(self):
        self.helper.run('flush the restored files to disk', ['sync', '--file-system', self.root])

    def create(self):
        return None

    def move_aside(self, aside):
        self.helper.move_aside(aside)

    def clear(self, aside):
        self.helper.clear(aside)

    def move_back(self, aside):
        self.helper.move_back(aside)

    def delete(self, aside):
        self.helper.delete(aside)

    def root_metadata(self):
        return self.helper.root_metadata()

    def set_root_metadata(self, metadata):
        self.helper.set_root_metadata(metadata)


def no_xattrs(source):
    return ConfigError('%s does not support user.* extended attributes, where Storage keeps each object\'s metadata: '
                       'its files would come back without them (put it on ext4, xfs, btrfs or tmpfs)' % source)


def probe_archive(name):
    """A tar of one file ``name`` carrying the probe attribute."""
    output = io.BytesIO()
    with tarfile.open(fileobj=output, mode='w', format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo(name)
        info.size = 1
        info.mode = 0o600
        info.pax_headers = {XATTR_PAX_PREFIX + PROBE_ATTRIBUTE: '1'}
        archive.addfile(info, io.BytesIO(b'1'))
    return output.getvalue()


def probe_survived(data):
    """Whether the tar ``data`` (the probe read back) still carries the probe attribute."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode='r:') as archive:
            members = archive.getmembers()
    except tarfile.TarError:
        return False
    return len(members) == 1 and members[0].pax_headers.get(XATTR_PAX_PREFIX + PROBE_ATTRIBUTE) == '1'


# Backup

def check_storage_source(location, api, db_container):
    """What a backup of ``location`` needs, checked without writing: the directory, or the volume and the
    DB container whose image reads it. Returns the store to read it with."""
    store = open_store(location, api, db_container, read_only=True)
    if location.path and not os.path.isdir(location.path):
        raise ConfigError('storage_path %s does not exist or is not a directory' % location.path)
    if location.volume:
        store.require_volume()
        DbContainer(api, None, name=db_container)
    return store


def write_storage(sink, location, api=None, db_container=None, warnings=None):
    """Storage's objects at ``location`` into ``sink`` as one tar; the part's facts go into ``sink.facts``.

    The place is probed for extended attributes first; the tar stream is checked as it passes
    (complete, every member counted).
    """
    warnings = [] if warnings is None else warnings
    store = check_storage_source(location, api, db_container)
    rules = MemberRules(links=True, keep_paths=False)
    with store:
        store.probe()
        stream = store.start(create_argv(store.root))
        try:
            read_tar(stream.chunks(), rules, tee=sink.write)
        except UnsafeMemberError as exc:
            stream.abort()
            raise FilePartError('%s cannot be backed up: %s' % (location.describe(), exc.msg)) from None
        except BackupFileError as exc:
            # tar stopped early: its own message says why.
            stream.abort()
            returncode, stderr = stream.finish()
            raise FilePartError('cannot read %s: %s' % (location.describe(),
                                                        tar_reason(stderr, returncode) if stderr else exc.msg),
                                rc=returncode) from None
        except BaseException:
            stream.abort()
            raise
        returncode, stderr = stream.finish()
        warnings.extend(tar_create_warnings(returncode, stderr, location.describe()))
    warnings.extend(store.warnings())
    sink.facts.update({'source': location.source_facts(), 'files': rules.file_count,
                       'xattr_files': rules.xattr_files})
    return sink.facts


# Restore

class StorageRestorer:
    """Restores a storage part into a host directory or a Docker volume (see the module's docstring)."""

    role = STORAGE_ROLE

    def __init__(self, part, warnings, location=None, api=None, db_container=None, storage_container=None,
                 stop_timeout=30):
        self.part, self.warnings = part, warnings
        # None: where the part came from, as its manifest says (read by check()).
        self.location = location
        # The Docker side: the API, the DB container whose image the helper borrows, the container to stop.
        self.api, self.db_container = api, db_container
        self.storage_container, self.stop_timeout = storage_container, stop_timeout
        self.rules = MemberRules(links=True, keep_paths=False)
        self.sha256 = None

    def check(self):
        """Before anything changes: the part whole, the target (xattr probe) and the storage container."""
        self.sha256 = self.part.verify(self.rules)
        if self.location is None:
            self.location = StorageLocation.from_manifest((self.part.manifest() or {}).get('source'),
                                                          os.path.basename(self.part.path))
        if self.storage_container:
            inspect_container(self.api, self.storage_container)
        store = open_store(self.location, self.api, self.db_container)
        with store:
            if store.exists():
                store.require_directory()
                store.probe()
            else:
                parent = os.path.dirname(self.location.path)
                if not os.path.isdir(parent):
                    raise FilePartError('cannot restore into %s: directory %s does not exist'
                                        % (self.location.describe(), parent))
                store.probe(parent)
        self.warnings.extend(store.warnings())
        return {'target': self.location.source_facts(), 'files': self.rules.file_count,
                'xattr_files': self.rules.xattr_files}

    def plan(self):
        return 'replace everything in %s with %s (%d files)%s' % (
            self.location.describe(), os.path.basename(self.part.path), self.rules.file_count,
            ', container %s stopped meanwhile' % self.storage_container if self.storage_container else '')

    def restore(self):
        stopped = self._stop_storage_container()
        try:
            result = self._replace()
        except BaseException as exc:
            self._start_again(stopped, exc)
            raise
        self._start_again(stopped, None)
        result.update({'stopped': stopped, 'started': stopped})
        return result

    def _replace(self):
        store = open_store(self.location, self.api, self.db_container)
        aside = ASIDE_PREFIX + binascii.hexlify(os.urandom(6)).decode('ascii')
        with store:
            if not store.exists():
                store.create()
            before = store.root_metadata()
            phase = 'moving'
            try:
                store.move_aside(aside)
                phase = 'writing'
                self._extract(store)
            except BaseException as exc:
                self._roll_back(store, aside, phase, before, exc)
                raise
            leftover = None
            try:
                store.delete(aside)
            except SupabaseBackupError as exc:
                leftover = aside
                self.warnings.append('Storage was restored but its previous contents were not deleted: %s; delete '
                                     '%s (in %s) by hand' % (exc.msg, aside, self.location.describe()))
        self.warnings.extend(store.warnings())
        return {'target': self.location.source_facts(), 'files': self.rules.file_count,
                'previous_contents': 'deleted' if leftover is None else leftover}

    def _extract(self, store):
        """The part into the (emptied) target by tar; the bytes read must be those check() verified."""
        digest = hashlib.sha256()
        returncode, _out, err = feed_stream(store.start(extract_argv(store.root), with_input=True),
                                            self.part.tar_chunks(digest))
        if returncode != 0:
            raise FilePartError('cannot write %s: %s' % (self.location.describe(), tar_reason(err, returncode)),
                                rc=returncode, stderr=err)
        if digest.hexdigest() != self.sha256:
            raise changed_while_read(self.part)
        store.sync()

    def _roll_back(self, store, aside, phase, before, failure):
        try:
            if phase != 'moving':
                store.clear(aside)
            store.move_back(aside)
            store.set_root_metadata(before)
        except SupabaseBackupError as exc:
            message = ('putting the previous contents back failed too (%s); they are in %s inside %s'
                       % (exc.msg, aside, self.location.describe()))
            if isinstance(failure, SupabaseBackupError):
                failure.msg = '%s; %s' % (failure.msg, message)
                failure.details.update({'rolled_back': False, 'previous_contents': aside})
            else:
                self.warnings.append(message)
            return
        if isinstance(failure, SupabaseBackupError):
            failure.msg = 'restoring Storage failed and its previous contents were put back: %s' % failure.msg
            failure.details['rolled_back'] = True

    def _stop_storage_container(self):
        if not self.storage_container:
            return []
        state = inspect_container(self.api, self.storage_container)['State']
        if not state.get('Running'):
            return []
        api_call('stop container %s' % self.storage_container, self.api.stop, self.storage_container,
                 timeout=self.stop_timeout)
        return [self.storage_container]

    def _start_again(self, stopped, failure):
        for name in stopped:
            try:
                api_call('start container %s again' % name, self.api.start, name)
            except SupabaseBackupError as exc:
                if isinstance(failure, SupabaseBackupError):
                    failure.msg = '%s; and then: %s' % (failure.msg, exc.msg)
                elif failure is None:
                    raise
                else:
                    self.warnings.append(exc.msg)
