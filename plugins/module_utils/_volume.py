# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible.
"""The volume snapshot engine: the contract's "Volume Backup", through the Docker API only.

No image is ever pulled. A snapshot is the Docker API's archive of the volume's mount point
in the stopped DB container (``docker cp`` semantics: owners, modes, symlinks), compressed
by the parallel gzip writer into an atomic file. A restore streams the verified archive
back with the API's put-archive into a short-lived helper container made from the DB
container's own image; the helper also moves the previous contents aside inside the
volume (a rename, so no space and no time) and deletes them only once PostgreSQL accepts
connections on the new contents. Every failure before that puts the previous contents back.
"""

from __future__ import annotations

import binascii
import datetime
import hashlib
import os
import posixpath
import time

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backend import (
    Backend,
    CompressedOutput,
    OutputSettings,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import (
    AtomicFile,
    DirectoryLock,
    TIMESTAMP_FORMAT,
    ensure_directory,
    newest_backup,
    remove_backups,
    remove_quietly,
    suffix_variants,
    write_sidecars,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._commands import (
    CONTROL_TIMEOUT,
    HAS_DOCKER,
    PgTarget,
    _DockerExecStream,
    _TailBuffer,
    last_line,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    BackupFileError,
    ConfigError,
    DockerError,
    SupabaseBackupError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._volume_archive import (
    ASIDE_PREFIX,
    READ_SIZE,
    VOLUME_PREFIX,
    VOLUME_SEPARATOR,
    VOLUME_SUFFIX,
    VolumeArchive,
    inspect_tar,
    pgdata_problem,
)

if HAS_DOCKER:
    import requests
    from docker.errors import DockerException, NotFound
    from docker.types import Mount
    API_ERRORS = (DockerException, requests.exceptions.RequestException, OSError)
else:  # pragma: no cover - depends on the node; PgTarget reports the missing SDK
    API_ERRORS = (OSError,)

MANIFEST_FORMAT = 'cortexreview.supabase_backup/volume-manifest/v1'
METRICS_KIND = 'volume'
HELPER_LABEL = 'org.cortexreview.supabase_backup.volume-helper'
READY_POLL_SECONDS = 0.5
KILLED_EXIT_CODE = 137


def _api(what, call, *args, **kwargs):
    """One Docker API call; library errors become a DockerError saying what failed."""
    try:
        return call(*args, **kwargs)
    except SupabaseBackupError:
        raise
    except API_ERRORS as exc:
        raise DockerError('cannot %s: %s' % (what, _reason(exc))) from None


def _reason(exc):
    """The daemon's own explanation of an API error, without the request URL around it."""
    explanation = getattr(exc, 'explanation', None)
    if explanation:
        return explanation.decode('utf-8', 'replace') if isinstance(explanation, bytes) else str(explanation)
    return str(exc)


def _timestamp(now):
    return datetime.datetime.fromtimestamp(now).strftime(TIMESTAMP_FORMAT)


def _same_path(left, right):
    if not left or not right:
        return False
    return os.path.normpath(left) == os.path.normpath(right) or os.path.realpath(left) == os.path.realpath(right)


def run_in_container(api, container, argv):
    """Run argv in a running container through the exec API; returns (rc, stdout tail, stderr tail)."""
    stream = _DockerExecStream(api, container, argv, {})
    output = _TailBuffer()
    try:
        for data in stream.chunks():
            output.add(data)
    except BaseException:
        stream.abort()
        raise
    returncode, stderr = stream.finish()
    return returncode, output.text(), stderr


def open_archive(api, container, path, missing_ok=False):
    """GET /containers/{id}/archive as a response this module can close (docker cp semantics).

    The SDK's get_archive returns a generator whose response cannot be closed: abandoned half
    read, it keeps the daemon's copy, and with it the container, busy.
    """
    url = '%s/v%s/containers/%s/archive' % (api.base_url, api.api_version, container)
    response = api.get(url, params={'path': path}, stream=True, timeout=CONTROL_TIMEOUT)
    if response.status_code == 404 and missing_ok:
        response.close()
        return None
    if response.status_code >= 400:
        try:
            message = response.json().get('message') or response.text
        except ValueError:
            message = response.text
        response.close()
        raise DockerError('cannot read %s in container %s: %s (HTTP %s)'
                          % (path, container, message.strip(), response.status_code))
    return response


class VolumeSettings(OutputSettings):
    """Validated options of one volume snapshot or restore."""

    def __init__(self, params):
        super().__init__(params)
        self.state = params['state']
        self.container = params['container']
        self.path = os.path.abspath(params['path']) if params.get('path') else None
        self.volume = None if self.path else params['volume']
        self.backup_dir = os.path.abspath(params['backup_dir']) if params.get('backup_dir') else None
        self.src = params.get('src')
        self.confirm = params['confirm']
        self.stop_timeout = params['stop_timeout']
        self.ready_timeout = params['ready_timeout']
        if not self.container:
            raise ConfigError('container must name the database container that mounts the volume')
        if not self.path and not self.volume:
            raise ConfigError('give the volume, or the path of the host directory mounted as the data directory')
        if self.state == 'present' and self.src:
            raise ConfigError('src is only for state=restored')
        if self.stop_timeout < 0:
            raise ConfigError('stop_timeout must be 0 or more seconds')
        if self.ready_timeout < 1:
            raise ConfigError('ready_timeout must be at least 1 second')
        self.target = PgTarget(container=self.container, docker_host=params.get('docker_host'))

    def describe_source(self):
        return "directory '%s'" % self.path if self.path else "volume '%s'" % self.volume


class DbContainer:
    """The database container and where the volume is mounted in it."""

    def __init__(self, api, settings):
        self.api = api
        self.name = settings.container
        self.source = settings.describe_source()
        info = self._inspect()
        self.id = info['Id']
        self.image = info['Image']
        self.running = bool(info['State'].get('Running'))
        mount = self._find_mount(info, settings)
        self.destination = mount['Destination']
        self.mount = (Mount(self.destination, settings.volume, type='volume') if settings.volume
                      else Mount(self.destination, settings.path, type='bind'))
        self.pgdata = self._pgdata_in_volume(info)
        self._started = None
        # The image's own superuser and database (the official image's POSTGRES_USER/POSTGRES_DB), so
        # the server does not log a failed connection for every probe.
        env = self._env(info)
        user = env.get('POSTGRES_USER') or 'postgres'
        self._ready_argv = ['pg_isready', '--quiet', '--timeout', '5', '--username', user,
                            '--dbname', env.get('POSTGRES_DB') or user]

    def _inspect(self):
        try:
            return self.api.inspect_container(self.name)
        except NotFound:
            raise DockerError('container %s not found' % self.name) from None
        except API_ERRORS as exc:
            raise DockerError('cannot inspect container %s: %s' % (self.name, _reason(exc))) from None

    def _find_mount(self, info, settings):
        mounts = info.get('Mounts') or []
        for mount in mounts:
            if settings.volume and mount.get('Type') == 'volume' and mount.get('Name') == settings.volume:
                return mount
            if settings.path and mount.get('Type') == 'bind' and _same_path(mount.get('Source'), settings.path):
                return mount
        found = ', '.join('%s:%s' % (mount.get('Name') or mount.get('Source'), mount.get('Destination'))
                          for mount in mounts) or 'none'
        raise ConfigError('container %s does not mount %s (its mounts: %s)' % (self.name, self.source, found))

    @staticmethod
    def _env(info):
        return dict(item.split('=', 1) for item in (info.get('Config') or {}).get('Env') or [] if '=' in item)

    def _pgdata_in_volume(self, info):
        """PGDATA's path inside the volume ('' when PGDATA is the mount point itself)."""
        env = self._env(info)
        pgdata = posixpath.normpath(env.get('PGDATA') or self.destination)
        if pgdata == self.destination:
            return ''
        if not pgdata.startswith(self.destination.rstrip('/') + '/'):
            raise ConfigError('PGDATA %s of container %s is not on %s (mounted at %s)'
                              % (pgdata, self.name, self.source, self.destination))
        return posixpath.relpath(pgdata, self.destination)

    def path_in_container(self, relative=''):
        return posixpath.join(self.destination, relative) if relative else self.destination

    def pg_version(self):
        """PG_VERSION of the data directory now on the volume, or None when there is none."""
        path = self.path_in_container(posixpath.join(self.pgdata, 'PG_VERSION'))
        response = _api('read %s in container %s' % (path, self.name), open_archive, self.api, self.id, path,
                        missing_ok=True)
        if response is None:
            return None
        try:
            return inspect_tar(response.iter_content(READ_SIZE), '')['pg_version']
        except (BackupFileError,) + API_ERRORS as exc:
            raise DockerError('cannot read %s in container %s: %s' % (path, self.name, _reason(exc))) from None
        finally:
            response.close()

    def info(self):
        return _api('inspect container %s' % self.name, self.api.inspect_container, self.id)

    def state(self):
        return self.info()['State']

    def stop(self, timeout, warnings):
        _api('stop container %s' % self.name, self.api.stop, self.id, timeout=timeout)
        state = self.state()
        if state.get('Running'):
            raise DockerError('container %s is still running after docker stop' % self.name)
        if state.get('ExitCode') == KILLED_EXIT_CODE or state.get('OOMKilled'):
            warnings.append('container %s did not shut down within stop_timeout (%ss) and was killed; PostgreSQL '
                            'replays its WAL on the next start' % (self.name, timeout))

    def start(self):
        self._started = time.time()
        _api('start container %s' % self.name, self.api.start, self.id)

    def log_tail(self):
        """The most telling line the container logged since it was last started here."""
        try:
            text = self.api.logs(self.id, stdout=True, stderr=True, tail=50,
                                 since=int(self._started or 0)).decode('utf-8', 'replace')
        except API_ERRORS:
            return ''
        return last_line(text)

    def wait_ready(self, timeout):
        """Wait until PostgreSQL in the container accepts connections (pg_isready through exec)."""
        deadline = time.monotonic() + timeout
        restarts = self.info().get('RestartCount')
        while True:
            info = self.info()
            state = info['State']
            # A restart policy brings a crashing server back again and again: that is a failure too.
            if not state.get('Running') or state.get('Restarting') or info.get('RestartCount') != restarts:
                raise DockerError('container %s stopped while PostgreSQL was starting (exit code %s): %s'
                                  % (self.name, state.get('ExitCode'), self.log_tail() or 'no log'))
            try:
                returncode, _out, _err = run_in_container(self.api, self.id, self._ready_argv)
            except DockerError:
                returncode = None  # the container is between states; ask again
            if returncode == 0:
                return
            if time.monotonic() >= deadline:
                raise DockerError('PostgreSQL in container %s does not accept connections %ss after the start: %s'
                                  % (self.name, timeout, self.log_tail() or 'no log'))
            time.sleep(READY_POLL_SECONDS)


class VolumeHelper:
    """A short-lived container from the DB container's own image, with the volume mounted.

    Every command is an argv list of the image's own coreutils/findutils; no shell, no pull.
    """

    def __init__(self, db, suffix):
        self.api = db.api
        self.db = db
        self.root = db.destination
        self.name = 'cortexreview-volume-helper-%s' % suffix
        self.id = None

    def create(self):
        host_config = self.api.create_host_config(mounts=[self.db.mount], network_mode='none')
        created = _api('create the helper container %s from the image of %s' % (self.name, self.db.name),
                       self.api.create_container, self.db.image, entrypoint=['tail', '-f', '/dev/null'],
                       command=[], user='0:0', name=self.name, network_disabled=True,
                       labels={HELPER_LABEL: self.db.name}, host_config=host_config)
        self.id = created['Id']
        _api('start the helper container %s' % self.name, self.api.start, self.id)

    def remove(self):
        """Remove the helper (and anonymous volumes of its image; named volumes and binds stay)."""
        if self.id is None:
            return None
        try:
            self.api.remove_container(self.id, force=True, v=True)
        except API_ERRORS as exc:
            return 'could not remove the helper container %s: %s' % (self.name, exc)
        finally:
            self.id = None
        return None

    def run(self, what, argv):
        returncode, out, err = run_in_container(self.api, self.id, argv)
        if returncode != 0:
            raise DockerError('cannot %s in %s: %s' % (what, self.db.source, last_line(err) or 'exit %s' % returncode),
                              rc=returncode, stderr=err)
        return out

    def entries(self, directory, exclude=None):
        """Names directly inside ``directory`` (one per line as find prints them)."""
        argv = ['find', directory, '-mindepth', '1', '-maxdepth', '1']
        if exclude:
            argv += ['!', '-name', exclude]
        return [line for line in self.run('list %s' % directory, argv + ['-print']).splitlines() if line]

    def root_metadata(self):
        out = self.run('read the owner and mode of the volume root', ['stat', '-c', '%u %g %a', self.root]).split()
        return {'uid': int(out[0]), 'gid': int(out[1]), 'mode': int(out[2], 8)}

    def set_root_metadata(self, metadata):
        self.run('set the owner of the volume root', ['chown', '%d:%d' % (metadata['uid'], metadata['gid']), self.root])
        self.run('set the mode of the volume root', ['chmod', '%04o' % metadata['mode'], self.root])

    def move_aside(self, aside):
        """Move everything in the volume into the hidden directory ``aside`` (renames, same filesystem)."""
        target = posixpath.join(self.root, aside)
        self.run('create %s' % aside, ['mkdir', '-m', '0700', '--', target])
        self.run('move the current contents aside', [
            'find', self.root, '-mindepth', '1', '-maxdepth', '1', '!', '-name', aside,
            '-exec', 'mv', '--', '{}', target + '/', ';'])
        left = self.entries(self.root, exclude=aside)
        if left:
            raise DockerError('cannot move the current contents of %s aside: %d entries did not move (%s)'
                              % (self.db.source, len(left), left[0]))

    def clear(self, aside):
        """Delete everything in the volume except ``aside``."""
        self.run('delete the partial new contents', [
            'find', self.root, '-mindepth', '1', '-maxdepth', '1', '!', '-name', aside,
            '-exec', 'rm', '-rf', '--', '{}', ';'])
        left = self.entries(self.root, exclude=aside)
        if left:
            raise DockerError('cannot delete the partial new contents of %s: %s remains' % (self.db.source, left[0]))

    def move_back(self, aside):
        source = posixpath.join(self.root, aside)
        self.run('move the previous contents back', [
            'find', source, '-mindepth', '1', '-maxdepth', '1', '-exec', 'mv', '--', '{}', self.root + '/', ';'])
        left = self.entries(source)
        if left:
            raise DockerError('cannot move the previous contents of %s back: %s remains in %s'
                              % (self.db.source, left[0], aside))
        self.run('remove %s' % aside, ['rmdir', '--', source])

    def delete(self, aside):
        self.run('delete the previous contents', ['rm', '-rf', '--', posixpath.join(self.root, aside)])

    def put_archive(self, chunks):
        ok = _api('write the snapshot into %s' % self.db.source, self.api.put_archive, self.id, self.root, chunks)
        if not ok:
            raise DockerError('the Docker engine refused the snapshot for %s' % self.db.source)


class VolumeBackend(Backend):
    """Runs one snapshot or restore; ``run()`` returns the result dict or raises a SupabaseBackupError."""

    metrics_kind = METRICS_KIND

    def run(self):
        if self.settings.state == 'restored':
            return self._restore(time.monotonic())
        return self.measured(self._snapshot)

    # The container: stopped only when it ran, always started again, ready before success.

    def _container(self):
        return DbContainer(self.settings.target.docker_api, self.settings)

    def _start_again(self, db, failure, start=True):
        """After ``failure``: start the container (unless done) and wait for PostgreSQL; returns the names started.

        A start problem is added to the failure's message rather than replacing it.
        """
        started = []
        try:
            if start:
                db.start()
            started = [db.name]
            db.wait_ready(self.settings.ready_timeout)
            if isinstance(failure, SupabaseBackupError):
                failure.msg = '%s (container %s runs again and accepts connections)' % (failure.msg, db.name)
                failure.details['ready'] = True
        except SupabaseBackupError as exc:
            if isinstance(failure, SupabaseBackupError):
                failure.msg = '%s; and then: %s' % (failure.msg, exc.msg)
                failure.details['ready'] = False
            else:
                self.warnings.append(exc.msg)
        return started

    # present

    def naming(self):
        return self.settings.backup_dir, VOLUME_PREFIX, VOLUME_SEPARATOR, self.settings.suffix(VOLUME_SUFFIX)

    def _snapshot(self, started):
        settings = self.settings
        dir_changed, warnings = ensure_directory(settings.backup_dir, self.check_mode)
        self.warnings.extend(warnings)
        db = self._container()
        pg_version = db.pg_version()
        if pg_version is None:
            raise ConfigError('%s holds no PostgreSQL data directory (no PG_VERSION in %s); nothing was stopped'
                              % (db.source, db.path_in_container(db.pgdata)))
        stopped = [db.name] if db.running else []
        if self.check_mode:
            path = self.backup_path()
            removed = remove_backups(self.expired(include_new=path), check_mode=True) if not dir_changed else []
            return {
                'changed': True, 'path': path, 'removed': removed, 'size': None, 'sha256': None,
                'downtime': None, 'stopped': stopped, 'started': list(stopped), 'pg_version': pg_version,
                'duration': round(time.monotonic() - started, 3),
                'msg': 'Would %ssnapshot %s of container %s to %s%s' % (
                    'stop the container, ' if stopped else '', db.source, db.name, path,
                    ' and remove %d expired file(s)' % len(removed) if removed else ''),
            }
        with DirectoryLock(settings.backup_dir, settings.lock_timeout):
            path = self.free_backup_path()
            result = self._write_snapshot(db, path, pg_version)
            result['removed'] = remove_backups(self.expired(), check_mode=False)
        result.update({'changed': True, 'duration': round(time.monotonic() - started, 3)})
        result['msg'] = 'Snapshot of %s written to %s (%d bytes, %s downtime)' % (
            db.source, path, result['size'],
            '%.1f s' % result['downtime'] if result['downtime'] is not None else 'no')
        return result

    def _write_snapshot(self, db, path, pg_version):
        settings = self.settings
        stopped = []
        stop_began = None
        sidecars = []
        with AtomicFile(path, settings.mode) as output:
            compressor = CompressedOutput(output, settings)
            try:
                if db.running:
                    # Counted as stopped from the request on: whatever the stop did, it is started again.
                    stop_began = time.monotonic()
                    stopped = [db.name]
                    db.stop(settings.stop_timeout, self.warnings)
                facts = self._stream_volume(db, compressor)
                compressor.close()
            except BaseException as exc:
                compressor.abort()
                started_again = self._start_again(db, exc) if stopped else []
                if isinstance(exc, SupabaseBackupError):
                    exc.details.update({'stopped': stopped, 'started': started_again})
                raise
            # The container runs again as soon as the data is read; the file is finished meanwhile.
            start_error = None
            if stopped:
                try:
                    db.start()
                except SupabaseBackupError as exc:
                    start_error = exc
            manifest = self.file_manifest(MANIFEST_FORMAT, path, compressor)
            manifest.update({
                'container': db.name,
                'source': {'volume': settings.volume} if settings.volume else {'path': settings.path},
                'mount_point': db.destination,
                'pgdata': db.pgdata,
                'pg_version': facts['pg_version'],
                'members': facts['members'],
            })
            try:
                write_sidecars(path, manifest['sha256'], manifest, settings.mode, sidecars)
                output.commit(overwrite=False)
            except BaseException as exc:
                remove_quietly(sidecars)
                if stopped and isinstance(exc, SupabaseBackupError):
                    if start_error is not None:
                        exc.msg = '%s; and container %s could not be started again: %s' % (
                            exc.msg, db.name, start_error.msg)
                        started_again = []
                    else:
                        started_again = self._start_again(db, exc, start=False)
                    exc.details.update({'stopped': stopped, 'started': started_again})
                raise
        ready = False
        downtime = None
        if stopped:
            if start_error is not None:
                raise DockerError('snapshot %s was written, but container %s could not be started again: %s'
                                  % (path, db.name, start_error.msg), path=path, stopped=stopped, started=[])
            try:
                db.wait_ready(settings.ready_timeout)
            except SupabaseBackupError as exc:
                raise DockerError('snapshot %s was written, but %s' % (path, exc.msg),
                                  path=path, stopped=stopped, started=stopped) from None
            ready = True
            downtime = round(time.monotonic() - stop_began, 3)
        if facts['leftovers']:
            self.warnings.append('%s holds %s, the previous contents set aside by an interrupted restore; they are '
                                 'in this snapshot too' % (db.source, ', '.join(facts['leftovers'])))
        return {
            'path': path, 'size': manifest['size'], 'sha256': manifest['sha256'],
            'uncompressed_size': manifest['uncompressed_size'], 'manifest': path + '.manifest.json',
            'members': facts['members'], 'pg_version': facts['pg_version'] or pg_version,
            'downtime': downtime, 'stopped': stopped, 'started': list(stopped), 'ready': ready,
            'encrypted': compressor.encrypted,
        }

    def _stream_volume(self, db, compressor):
        """The Docker API's archive of the mount point, checked as it passes into the compressor."""
        what = 'read %s from container %s' % (db.source, db.name)
        response = _api(what, open_archive, db.api, db.id, db.path_in_container() + '/.')
        try:
            facts = inspect_tar(response.iter_content(READ_SIZE), db.pgdata, tee=compressor.write)
        except BackupFileError as exc:
            raise DockerError('the archive of %s that Docker sent is unusable: %s; nothing was kept'
                              % (db.source, exc.msg)) from None
        except SupabaseBackupError:
            raise
        except API_ERRORS as exc:
            raise DockerError('cannot %s: %s' % (what, _reason(exc))) from None
        finally:
            # An unread archive would keep the daemon's copy, and the container, busy.
            response.close()
        problem = pgdata_problem(facts, db.pgdata)
        if problem:
            raise BackupFileError('the snapshot of %s was discarded: %s' % (db.source, problem))
        return facts

    # restored

    def _select_src(self):
        settings = self.settings
        if settings.src:
            return settings.src
        path = newest_backup(settings.backup_dir, VOLUME_PREFIX, suffix_variants(VOLUME_SUFFIX), VOLUME_SEPARATOR)
        if not path:
            raise BackupFileError('no snapshot named %s%sYYYYMMDD_HHMMSS%s[.gpg] in %s'
                                  % (VOLUME_PREFIX, VOLUME_SEPARATOR, VOLUME_SUFFIX, settings.backup_dir))
        return path

    def _restore(self, started):
        settings = self.settings
        archive = VolumeArchive(self._select_src(), settings.passphrase)
        if not settings.confirm and not self.check_mode:
            raise ConfigError('confirm must be true: restoring %s replaces everything in %s of container %s'
                              % (archive.path, settings.describe_source(), settings.container))
        db = self._container()
        facts = archive.verify(db.pgdata)
        current = db.pg_version()
        if current is not None and current != facts['pg_version']:
            raise BackupFileError('volume snapshot %s holds PostgreSQL %s data but %s holds PostgreSQL %s; '
                                  'the image would not start it'
                                  % (archive.path, facts['pg_version'], db.source, current))
        if facts['leftovers']:
            self.warnings.append('volume snapshot %s holds %s, contents set aside by an interrupted restore; '
                                 'they are restored too' % (archive.path, ', '.join(facts['leftovers'])))
        stopped = [db.name] if db.running else []
        base = {'src': archive.path, 'sha256': facts['sha256'], 'size': archive.size, 'pg_version': facts['pg_version'],
                'members': facts['members'], 'checksum_verified': facts['checksum_verified']}
        if self.check_mode:
            base.update({
                'changed': True, 'stopped': stopped, 'started': [db.name], 'downtime': None, 'ready': None,
                'previous_contents': None, 'duration': round(time.monotonic() - started, 3),
                'msg': 'Would %sreplace everything in %s with %s (PostgreSQL %s, %d entries) and start container %s'
                       % ('stop container %s, ' % db.name if stopped else '', db.source, archive.path,
                          facts['pg_version'], facts['members'], db.name),
            })
            return base
        suffix = '%s-%s' % (_timestamp(self.clock()), binascii.hexlify(os.urandom(4)).decode('ascii'))
        result = self._replace(db, archive, facts, suffix)
        result.update(base)
        result.update({'changed': True, 'duration': round(time.monotonic() - started, 3)})
        result['msg'] = 'Restored %s into %s; PostgreSQL %s accepts connections in container %s' % (
            archive.path, db.source, facts['pg_version'], db.name)
        return result

    def _replace(self, db, archive, facts, suffix):
        """Stop, swap the contents (the previous ones kept aside until PostgreSQL runs), start."""
        settings = self.settings
        aside = ASIDE_PREFIX + suffix
        stopped = []
        stop_began = time.monotonic() if db.running else None
        helper = VolumeHelper(db, suffix)
        try:
            if db.running:
                stopped = [db.name]
                db.stop(settings.stop_timeout, self.warnings)
            helper.create()
            root_before = helper.root_metadata()
            phase = 'moving'
            try:
                helper.move_aside(aside)
                phase = 'writing'
                digest = hashlib.sha256()
                helper.put_archive(archive.tar_chunks(digest))
                if digest.hexdigest() != facts['sha256']:
                    raise BackupFileError('volume snapshot %s changed while it was being restored' % archive.path)
                if facts['root']:
                    helper.set_root_metadata(facts['root'])
                phase = 'starting'
                db.start()
                db.wait_ready(settings.ready_timeout)
            except BaseException as exc:
                self._roll_back(db, helper, aside, phase, root_before, exc)
                raise
            downtime = round(time.monotonic() - stop_began, 3) if stop_began is not None else None
            leftover = None
            try:
                helper.delete(aside)
            except SupabaseBackupError as exc:
                leftover = posixpath.join(db.destination, aside)
                self.warnings.append('restore succeeded but the previous contents were not deleted: %s; '
                                     'delete %s (in %s) by hand' % (exc.msg, aside, db.source))
        except BaseException as exc:
            # The container runs again if it ran before, on whatever contents are in place now.
            started = self._start_again(db, exc) if stopped else []
            if isinstance(exc, SupabaseBackupError):
                exc.details.update({'stopped': stopped, 'started': started})
            raise
        finally:
            problem = helper.remove()
            if problem:
                self.warnings.append(problem)
        return {'stopped': stopped, 'started': [db.name], 'ready': True, 'downtime': downtime,
                'previous_contents': 'deleted' if leftover is None else leftover}

    def _roll_back(self, db, helper, aside, phase, root_before, failure):
        """Put the previous contents back, with the container stopped."""
        try:
            if phase == 'starting' and db.state().get('Running'):
                db.stop(self.settings.stop_timeout, self.warnings)
            if phase != 'moving':
                helper.clear(aside)
            helper.move_back(aside)
            helper.set_root_metadata(root_before)
        except SupabaseBackupError as exc:
            message = ('putting the previous contents back failed too (%s); they are in %s inside %s'
                       % (exc.msg, aside, db.source))
            if isinstance(failure, SupabaseBackupError):
                failure.msg = '%s; %s' % (failure.msg, message)
                failure.details.update({'rolled_back': False,
                                        'previous_contents': posixpath.join(db.destination, aside)})
            else:
                self.warnings.append(message)
            return
        if isinstance(failure, SupabaseBackupError):
            failure.msg = 'restore failed and the previous contents were put back: %s' % failure.msg
            failure.details['rolled_back'] = True
