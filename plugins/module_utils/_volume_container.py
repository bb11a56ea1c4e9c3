# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible.
"""The DB container and its data volume, as both volume engines (snapshot and restore) see them.

No image is ever pulled: the volume is read through the Docker API's archive of the stopped
container's mount point, and written by a short-lived helper container made from the DB
container's own image, whose commands are argv lists of that image's own coreutils.
"""

from __future__ import annotations

import os
import posixpath
import time

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backend import Backend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_output import OutputSettings
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._commands import PgTarget, last_line
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._docker import (
    API_ERRORS,
    READ_SIZE,
    api_call,
    inspect_container,
    open_archive,
    reason,
    run_in_container,
    volume_mount,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    BackupFileError,
    ConfigError,
    DockerError,
    SupabaseBackupError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._volume_archive import inspect_tar

HELPER_LABEL = 'org.cortexreview.supabase_backup.volume-helper'
READY_POLL_SECONDS = 0.5
KILLED_EXIT_CODE = 137


def same_path(left, right):
    if not left or not right:
        return False
    return os.path.normpath(left) == os.path.normpath(right) or os.path.realpath(left) == os.path.realpath(right)


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
        self.restore_point = params.get('restore_point')
        self.confirm = params['confirm']
        self.stop_timeout = params['stop_timeout']
        self.ready_timeout = params['ready_timeout']
        if not self.container:
            raise ConfigError('container must name the database container that mounts the volume')
        if not self.path and not self.volume:
            raise ConfigError('give the volume, or the path of the host directory mounted as the data directory')
        if self.state == 'present' and (self.src or self.restore_point):
            raise ConfigError('%s is only for state=restored' % ('src' if self.src else 'restore_point'))
        if self.stop_timeout < 0:
            raise ConfigError('stop_timeout must be 0 or more seconds')
        if self.ready_timeout < 1:
            raise ConfigError('ready_timeout must be at least 1 second')
        self.target = PgTarget(container=self.container, docker_host=params.get('docker_host'))

    def describe_source(self):
        return "directory '%s'" % self.path if self.path else "volume '%s'" % self.volume


class DbContainer:
    """The database container and where the volume is mounted in it."""

    def __init__(self, api, settings, name=None):
        """``settings`` name the container and its data volume; without them (None), ``name`` is the
        container and no volume is looked for (the DB restarted, or its image borrowed)."""
        self.api = api
        self.name = settings.container if settings is not None else name
        info = inspect_container(self.api, self.name)
        self.id = info['Id']
        self.image = info['Image']
        self.running = bool(info['State'].get('Running'))
        if settings is not None:
            self.source = settings.describe_source()
            mount = self._find_mount(info, settings)
            self.destination = mount['Destination']
            self.mount = volume_mount(self.destination, settings.volume, settings.path)
            self.pgdata = self._pgdata_in_volume(info)
        self._started = None
        # The image's own superuser and database (the official image's POSTGRES_USER/POSTGRES_DB), so
        # the server does not log a failed connection for every probe.
        env = self._env(info)
        user = env.get('POSTGRES_USER') or 'postgres'
        self._ready_argv = ['pg_isready', '--quiet', '--timeout', '5', '--username', user,
                            '--dbname', env.get('POSTGRES_DB') or user]

    def _find_mount(self, info, settings):
        mounts = info.get('Mounts') or []
        for mount in mounts:
            if settings.volume and mount.get('Type') == 'volume' and mount.get('Name') == settings.volume:
                return mount
            if settings.path and mount.get('Type') == 'bind' and same_path(mount.get('Source'), settings.path):
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
        response = api_call('read %s in container %s' % (path, self.name), open_archive, self.api, self.id, path,
                            missing_ok=True)
        if response is None:
            return None
        try:
            return inspect_tar(response.iter_content(READ_SIZE), '')['pg_version']
        except (BackupFileError,) + API_ERRORS as exc:
            raise DockerError('cannot read %s in container %s: %s' % (path, self.name, reason(exc))) from None
        finally:
            response.close()

    def info(self):
        return api_call('inspect container %s' % self.name, self.api.inspect_container, self.id)

    def state(self):
        return self.info()['State']

    def stop(self, timeout, warnings):
        api_call('stop container %s' % self.name, self.api.stop, self.id, timeout=timeout)
        state = self.state()
        if state.get('Running'):
            raise DockerError('container %s is still running after docker stop' % self.name)
        if state.get('ExitCode') == KILLED_EXIT_CODE or state.get('OOMKilled'):
            warnings.append('container %s did not shut down within stop_timeout (%ss) and was killed; PostgreSQL '
                            'replays its WAL on the next start' % (self.name, timeout))

    def start(self):
        self._started = time.time()
        api_call('start container %s' % self.name, self.api.start, self.id)

    def restart(self, timeout):
        self._started = time.time()
        api_call('restart container %s' % self.name, self.api.restart, self.id, timeout=timeout)

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

    def create(self, extra_mounts=()):
        host_config = self.api.create_host_config(mounts=[self.db.mount] + list(extra_mounts), network_mode='none')
        created = api_call('create the helper container %s from the image of %s' % (self.name, self.db.name),
                           self.api.create_container, self.db.image, entrypoint=['tail', '-f', '/dev/null'],
                           command=[], user='0:0', name=self.name, network_disabled=True,
                           labels={HELPER_LABEL: self.db.name}, host_config=host_config)
        self.id = created['Id']
        api_call('start the helper container %s' % self.name, self.api.start, self.id)

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
        ok = api_call('write the snapshot into %s' % self.db.source, self.api.put_archive, self.id, self.root, chunks)
        if not ok:
            raise DockerError('the Docker engine refused the snapshot for %s' % self.db.source)


class VolumeBackend(Backend):
    """What the snapshot and the restore engine share: the container, and the safety net that starts it again."""

    settings_class = VolumeSettings

    # The container: stopped only when it ran, always started again, ready before success.

    def container(self):
        return DbContainer(self.settings.target.docker_api, self.settings)

    def start_again(self, db, failure, start=True):
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
