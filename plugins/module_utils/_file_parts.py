# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible (the cron runner uses it too) and without the Docker SDK.
"""The file parts of a restore point: tar streams of files, written and restored.

A producer writes plain tar bytes into a part sink (an object with ``write(bytes)`` and a
``facts`` dict; the restore point's writer compresses, encrypts and hashes them). A restorer
reads its part whole first (``check()``: checksum, tar structure, and member names, types and
links that stay where they belong) before anything changes, then ``restore()``s it.

Two parts live here: files of the DB container (``db_config``, by default the Vault/pgsodium root
key) and files of the host (``deployment``, e.g. the compose project's ``.env``). Storage's
objects are in _storage_files.
"""

from __future__ import annotations

import binascii
import hashlib
import os
import posixpath
import stat
import tarfile
import tempfile

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_reader import (
    READ_SIZE,
    BackupFile,
    _decompressed,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._docker import (
    api_call,
    open_archive,
    run_in_container,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    BackupFileError,
    ConfigError,
    DockerError,
    FilePartError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._volume_archive import (
    _ChunkReader,
    member_path,
    read_tar,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._volume_container import DbContainer

DB_CONFIG_FILES_DEFAULT = ('/etc/postgresql-custom/pgsodium_root.key',)
DB_CONFIG_ROLE = 'db_config'
DEPLOYMENT_ROLE = 'deployment'
XATTR_PAX_PREFIX = 'SCHILY.xattr.'
# Staged files sit beside their target under this prefix until they are renamed into place.
STAGING_PREFIX = '.cortexreview-staged-'
# A db_config part is spooled before the Docker engine takes it: in memory up to this size.
SPOOL_MEMORY_BYTES = 16 << 20
ROOT_UID = '0'
NAMES_SHOWN = 3


def absolute_paths(option, paths):
    """The list option ``option`` checked: absolute paths, normalised, each once; ConfigError otherwise."""
    checked = []
    for path in paths or []:
        if not isinstance(path, str) or not path.startswith('/') or '\0' in path:
            raise ConfigError('%s must list absolute paths, got %r' % (option, path))
        if '..' in path.split('/'):
            raise ConfigError('%s must not contain "..": %s' % (option, path))
        normal = '/' + posixpath.normpath(path).lstrip('/')
        if normal == '/':
            raise ConfigError('%s must name files, not /' % option)
        if normal in checked:
            raise ConfigError('%s names %s twice' % (option, normal))
        checked.append(normal)
    return checked


def open_tar_writer(sink):
    """A streaming tar writer (POSIX format, numeric owners) over a part sink."""
    return tarfile.open(fileobj=sink, mode='w|', format=tarfile.PAX_FORMAT, bufsize=READ_SIZE)


def _numeric_owner(info):
    # Only the numbers travel: names mean other ids on another host or in another image.
    info.uname = info.gname = ''
    return info


# Producers

def write_host_files(sink, paths, missing_ok):
    """The host files ``paths`` into ``sink`` as one tar (names without the leading '/', owner and mode kept).

    A symlink is followed: its target's content, owner and mode are stored under the name given.
    Returns (written, not_found); a missing file is an error unless ``missing_ok``.
    """
    written = []
    not_found = []
    archive = open_tar_writer(sink)
    for path in paths:
        try:
            # O_NONBLOCK: a FIFO named by mistake must not hang the backup; it is refused below.
            descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            if not missing_ok:
                raise FilePartError('%s does not exist' % path) from None
            not_found.append(path)
            continue
        except OSError as exc:
            raise FilePartError('cannot read %s: %s' % (path, exc.strerror or exc)) from None
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            os.close(descriptor)
            raise FilePartError('%s is not a regular file' % path)
        with os.fdopen(descriptor, 'rb') as handle:
            member = _numeric_owner(archive.gettarinfo(arcname=path.lstrip('/'), fileobj=handle))
            try:
                archive.addfile(member, handle)
            except OSError as exc:
                raise FilePartError('cannot read %s: %s' % (path, exc.strerror or exc)) from None
        written.append(path)
    archive.close()
    return written, not_found


def write_container_files(sink, api, container, paths):
    """Files (or directories) ``paths`` of a container into ``sink`` as one tar, owner and mode kept.

    Read through the Docker archive API (the daemon reads, whatever the container's user;
    a stopped container too). Returns (written, not_found); missing paths are not errors.
    """
    written = []
    not_found = []
    archive = open_tar_writer(sink)
    for path in paths:
        response = api_call('read %s in container %s' % (path, container), open_archive, api, container, path,
                            missing_ok=True)
        if response is None:
            not_found.append(path)
            continue
        try:
            _copy_members(archive, response.iter_content(READ_SIZE), posixpath.dirname(path).lstrip('/'),
                          '%s in container %s' % (path, container))
        finally:
            response.close()
        written.append(path)
    archive.close()
    return written, not_found


def present_in_container(api, container, paths):
    """(present, missing) among ``paths`` of a container, asked of the Docker archive API."""
    present = []
    missing = []
    for path in paths:
        response = api_call('read %s in container %s' % (path, container), open_archive, api, container, path,
                            missing_ok=True)
        if response is None:
            missing.append(path)
        else:
            response.close()
            present.append(path)
    return present, missing


def present_on_host(paths):
    """(present, missing) among host ``paths`` (a dangling symlink is missing)."""
    present = [path for path in paths if os.path.exists(path)]
    return present, [path for path in paths if path not in present]


def _copy_members(archive, chunks, parent, what):
    """Copy the members of the tar ``chunks`` into ``archive`` under ``parent``: files and directories only."""
    source = tarfile.open(fileobj=_ChunkReader(chunks), mode='r|', bufsize=READ_SIZE)  # pylint: disable=consider-using-with
    try:
        for member in source:
            name = member_path(member.name)
            if not name:
                raise DockerError('the Docker engine sent an unexpected member %r for %s' % (member.name, what))
            if not (member.isreg() or member.isdir()):
                raise FilePartError('%s holds %s, a %s: only regular files and directories are taken'
                                    % (what, member.name, member_kind(member)))
            member.name = posixpath.join(parent, name) if parent else name
            archive.addfile(_numeric_owner(member), source.extractfile(member) if member.isreg() else None)
    except (tarfile.TarError, EOFError) as exc:
        raise DockerError('cannot read %s: the Docker engine sent a broken archive (%s)' % (what, exc)) from None
    finally:
        source.close()


def member_kind(member):
    if member.issym():
        return 'symbolic link'
    if member.islnk():
        return 'hard link'
    if member.ischr() or member.isblk():
        return 'device'
    if member.isfifo():
        return 'FIFO'
    return 'directory' if member.isdir() else 'file'


# Reading a part back

class UnsafeMemberError(BackupFileError):
    """A member of a tar that must never be extracted (see MemberRules)."""


class MemberRules:
    """What a part's members may be; called for each member, it records what the part holds.

    Names relative and inside the target; regular files and directories always; symbolic and hard
    links only with ``links`` and only when they point inside (a symlink's target resolved from its
    own directory, a hard link to a file before it); never a member behind a symlink of the archive.
    """

    def __init__(self, links=False, keep_paths=True):
        self.links = links
        self.keep_paths = keep_paths
        self.files = []            # regular files' paths (with keep_paths)
        self.directories = []      # directories' paths (with keep_paths)
        self.file_count = 0
        self.xattr_files = 0
        self.root = None           # the archive's '.' entry: {'uid', 'gid', 'mode'}
        self._symlinks = set()
        self._regular = set()

    def __call__(self, _archive, member):
        path = member_path(member.name)
        problem = self.problem(member, path)
        if problem:
            raise UnsafeMemberError('member %r %s' % (member.name, problem))
        if any(key.startswith(XATTR_PAX_PREFIX) for key in member.pax_headers):
            self.xattr_files += 1
        if not path:
            self.root = {'uid': member.uid, 'gid': member.gid, 'mode': member.mode & 0o7777}
        elif member.isreg():
            self.file_count += 1
            if self.keep_paths:
                self.files.append(path)
            if self.links:
                self._regular.add(path)
        elif member.isdir() and self.keep_paths:
            self.directories.append(path)
        elif member.issym():
            self._symlinks.add(path)

    def problem(self, member, path):
        """Why ``member`` must not be extracted, or None."""
        if path is None:
            return 'leaves the target (an absolute path or "..")'
        if not path and not member.isdir():
            return 'is the target itself but not a directory'
        parents = path.split('/')[:-1]
        for depth in range(1, len(parents) + 1):
            if '/'.join(parents[:depth]) in self._symlinks:
                return 'lies behind a symbolic link of the archive'
        if member.isreg() or member.isdir():
            return None
        if not self.links or not (member.issym() or member.islnk()):
            return 'is a %s, which this part never holds' % member_kind(member)
        if member.issym():
            target = member.linkname
            if target.startswith('/'):
                return 'is a symbolic link to an absolute path (%s)' % target
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
            if resolved == '..' or resolved.startswith('../'):
                return 'is a symbolic link that leaves the target (%s)' % target
            return None
        target = member_path(member.linkname)
        if target is None or target not in self._regular:
            return 'is a hard link to something outside the archive (%s)' % member.linkname
        return None


class TarPart(BackupFile):
    """A file part on disk (``.tar.gz`` or ``.tar.gz.gpg``) with its ``.sha256`` sidecar and manifest entry."""

    what = 'backup part'

    def tar_chunks(self, digest=None):
        """The tar stream, decrypted and decompressed as the file is read; ``digest`` sees the file's bytes."""
        return _decompressed(self.checked_plain_chunks(digest))

    def expected(self):
        """The sha256 the sidecar and the manifest agree on; refused when they disagree or say nothing."""
        name = os.path.basename(self.path)
        manifest = self.manifest() or {}
        wanted = {value for value in (self.expected_sha256(), manifest.get('sha256')) if value}
        if not wanted:
            raise BackupFileError('backup part %s has neither a checksum file nor a manifest entry' % name)
        if len(wanted) > 1:
            raise BackupFileError('backup part %s: its checksum file and its manifest disagree' % name)
        return wanted.pop()

    def verify(self, rules):
        """Read the whole part once: checksum, gzip, tar structure, every member through ``rules``.

        Returns the sha256; BackupFileError naming the part when anything is wrong.
        """
        name = os.path.basename(self.path)
        expected = self.expected()
        digest = hashlib.sha256()
        try:
            read_tar(self.tar_chunks(digest), rules)
        except BackupFileError as exc:
            raise BackupFileError('backup part %s cannot be restored: %s' % (name, exc.msg)) from None
        if digest.hexdigest() != expected:
            raise BackupFileError('backup part %s does not match its checksum (sha256 %s, expected %s)'
                                  % (name, digest.hexdigest(), expected))
        return expected

    def members(self, digest):
        """(archive, member) of each member, on a new read; ``digest`` sees the file's bytes."""
        archive = tarfile.open(fileobj=_ChunkReader(self.tar_chunks(digest)), mode='r|',  # pylint: disable=consider-using-with
                               bufsize=READ_SIZE)
        try:
            for member in archive:
                yield archive, member
        except (tarfile.TarError, EOFError) as exc:
            raise BackupFileError('backup part %s is corrupt: %s' % (os.path.basename(self.path), exc)) from None
        finally:
            archive.close()

    def drain(self, chunks):
        """Read what a consumer left of ``chunks`` (the end marker), so the digest covers the whole file."""
        for _data in chunks:
            pass


def changed_while_read(part):
    return BackupFileError('backup part %s changed while it was being restored' % os.path.basename(part.path))


# Restorers

class FileRestorer:
    """Restores the regular files of a part to the absolute paths they were taken from, each atomically.

    Every file is first staged beside its target (owner and mode set, synced); only once the whole
    part has been read and its checksum matched are they renamed into place. Any failure before
    that removes the staged files: nothing changed.
    """

    role = DEPLOYMENT_ROLE

    def __init__(self, part, warnings):
        self.part = part
        self.warnings = warnings
        self.rules = MemberRules()
        self.sha256 = None

    def check(self):
        """Before anything changes: the part whole, and the directories it restores into."""
        self.sha256 = self.part.verify(self.rules)
        if self.rules.directories:
            raise BackupFileError('backup part %s holds directories (%s): a %s part holds files only'
                                  % (os.path.basename(self.part.path), self.rules.directories[0], self.role))
        self._check_manifest_paths()
        for path in self.targets():
            parent = os.path.dirname(path)
            if not os.path.isdir(parent):
                raise FilePartError('cannot restore %s: directory %s does not exist' % (path, parent))
        return self.targets()

    def _check_manifest_paths(self):
        """The part holds exactly what its manifest says was taken (the paths named, and below them)."""
        recorded = (self.part.manifest() or {}).get('paths')
        if recorded is None:
            return
        targets = set(self.targets())
        inside = all(any(path == top or path.startswith(top.rstrip('/') + '/') for top in recorded)
                     for path in targets)
        if not inside or not set(recorded) <= targets:
            raise BackupFileError('backup part %s does not hold the files its manifest lists'
                                  % os.path.basename(self.part.path))

    def targets(self):
        return ['/' + path for path in self.rules.files]

    def restore(self):
        staged = []
        try:
            digest = hashlib.sha256()
            for archive, member in self.part.members(digest):
                if member.isreg():
                    staged.append((self._stage(archive, member), '/' + member_path(member.name)))
            if digest.hexdigest() != self.sha256:
                raise changed_while_read(self.part)
            for temporary, target in staged:
                try:
                    os.rename(temporary, target)
                except OSError as exc:
                    raise FilePartError('cannot put %s in place: %s' % (target, exc.strerror or exc)) from None
                _sync_directory(os.path.dirname(target))
        except BaseException:
            for temporary, _target in staged:
                _remove_quietly(temporary)
            raise
        return {'files': [target for _temporary, target in staged]}

    @staticmethod
    def _stage(archive, member):
        target = '/' + member_path(member.name)
        directory = os.path.dirname(target)
        try:
            descriptor, temporary = tempfile.mkstemp(prefix=STAGING_PREFIX, dir=directory)
        except OSError as exc:
            raise FilePartError('cannot write in %s: %s' % (directory, exc.strerror or exc)) from None
        try:
            with os.fdopen(descriptor, 'wb') as handle:
                source = archive.extractfile(member)
                for data in iter(lambda: source.read(READ_SIZE), b''):
                    handle.write(data)
                os.fchown(handle.fileno(), member.uid, member.gid)
                os.fchmod(handle.fileno(), member.mode & 0o7777)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            _remove_quietly(temporary)
            raise FilePartError('cannot write %s: %s' % (target, exc.strerror or exc)) from None
        except BaseException:
            _remove_quietly(temporary)
            raise
        return temporary


class HostConfigRestorer(FileRestorer):
    """The db_config part restored on this host (direct mode, no container): files only, no restart."""

    role = DB_CONFIG_ROLE

    def restore(self):
        result = super().restore()
        self.warnings.append('the DB config files were restored on this host (%s); restart PostgreSQL so it '
                             'reads them' % ', '.join(result['files']))
        return result


class ContainerConfigRestorer(FileRestorer):
    """The db_config part restored into the DB container, then the container restarted.

    The files go in through the Docker archive API under staged names beside their targets (owner
    and mode from the archive), and are renamed into place by ``mv`` in the container; then the
    container is restarted and waited for until PostgreSQL accepts connections.
    """

    role = DB_CONFIG_ROLE

    def __init__(self, part, warnings, api, container, stop_timeout, ready_timeout):
        super().__init__(part, warnings)
        self.api = api
        self.container = container
        self.stop_timeout = stop_timeout
        self.ready_timeout = ready_timeout
        self.rules = MemberRules()

    def check(self):
        self.sha256 = self.part.verify(self.rules)
        self._check_manifest_paths()
        db = DbContainer(self.api, None, name=self.container)
        if not db.running:
            raise DockerError('container %s is not running: the DB config files are restored into a running '
                              'DB container' % self.container)
        wanted = set(self.rules.directories)
        for path in self.rules.files:
            parent = posixpath.dirname(path)
            if parent and parent not in wanted:
                self._run('find directory /%s' % parent, ['test', '-d', '/' + parent])
        return self.targets()

    def targets(self):
        return ['/' + path for path in self.rules.directories + self.rules.files]

    def _run(self, what, argv):
        returncode, _out, err = run_in_container(self.api, self.container, argv, user=ROOT_UID)
        if returncode != 0:
            raise FilePartError('cannot %s in container %s: %s' % (what, self.container, err or 'exit %s' % returncode),
                                rc=returncode)

    def restore(self):
        suffix = binascii.hexlify(os.urandom(6)).decode('ascii')
        staged = []
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES) as spool:
            digest = hashlib.sha256()
            archive = tarfile.open(fileobj=spool, mode='w', format=tarfile.PAX_FORMAT)  # pylint: disable=consider-using-with
            for source, member in self.part.members(digest):
                target = member.name = member_path(member.name)
                if member.isreg():
                    member.name = posixpath.join(posixpath.dirname(target),
                                                 STAGING_PREFIX + suffix + '-' + posixpath.basename(target))
                    staged.append(('/' + member.name, '/' + target))
                archive.addfile(member, source.extractfile(member) if member.isreg() else None)
            archive.close()
            if digest.hexdigest() != self.sha256:
                raise changed_while_read(self.part)
            spool.seek(0)
            try:
                ok = api_call('write the DB config files into container %s' % self.container,
                              self.api.put_archive, self.container, '/', spool)
                if not ok:
                    raise DockerError('the Docker engine refused the DB config files for container %s' % self.container)
                for temporary, target in staged:
                    self._run('put %s in place' % target, ['mv', '-f', '-T', '--', temporary, target])
            except BaseException:
                self._remove_staged([temporary for temporary, _target in staged])
                raise
        self._restart()
        return {'files': [target for _temporary, target in staged], 'restarted': [self.container]}

    def _remove_staged(self, paths):
        try:
            run_in_container(self.api, self.container, ['rm', '-f', '--'] + paths, user=ROOT_UID)
        except DockerError as exc:
            self.warnings.append('could not remove the staged DB config files %s: %s' % (', '.join(paths), exc.msg))

    def _restart(self):
        db = DbContainer(self.api, None, name=self.container)
        db.restart(self.stop_timeout)
        try:
            db.wait_ready(self.ready_timeout)
        except DockerError as exc:
            raise DockerError('the DB config files were restored, but after the restart %s' % exc.msg) from None


def _sync_directory(path):
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _remove_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass
