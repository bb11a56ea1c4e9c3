# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible.
"""The volume snapshot engine: the contract's "Volume Backup", through the Docker API only.

A snapshot is the Docker API's archive of the volume's mount point in the stopped DB
container (``docker cp`` semantics: owners, modes, symlinks), compressed by the parallel
gzip writer into an atomic file. The container is started again whatever happens, and
the snapshot succeeds only once PostgreSQL accepts connections again.
"""

from __future__ import annotations

import time

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import AtomicFile, DirectoryLock
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_kinds import VOLUME
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_output import BackupWriter, CompressedOutput
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._docker import API_ERRORS, READ_SIZE, api_call, open_archive, reason
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    BackupFileError,
    ConfigError,
    DockerError,
    SupabaseBackupError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._volume_archive import inspect_tar, pgdata_problem
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._volume_container import VolumeBackend


class VolumeSnapshotBackend(VolumeBackend, BackupWriter):
    """Takes one snapshot (state=present); ``run()`` returns the result dict or raises a SupabaseBackupError."""

    kind = VOLUME
    metrics_kind = VOLUME.metrics_kind

    def write(self, started, dir_changed):
        settings = self.settings
        db = self.container()
        pg_version = db.pg_version()
        if pg_version is None:
            raise ConfigError('%s holds no PostgreSQL data directory (no PG_VERSION in %s); nothing was stopped'
                              % (db.source, db.path_in_container(db.pgdata)))
        stopped = [db.name] if db.running else []
        if self.check_mode:
            path = self.backup_path()
            removed = self.remove_expired(include_new=path) if not dir_changed else []
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
            result['removed'] = self.remove_expired()
        result.update({'changed': True, 'duration': round(time.monotonic() - started, 3)})
        result['msg'] = 'Snapshot of %s written to %s (%d bytes, %s downtime)' % (
            db.source, path, result['size'],
            '%.1f s' % result['downtime'] if result['downtime'] is not None else 'no')
        return result

    def _write_snapshot(self, db, path, pg_version):
        settings = self.settings
        stopped = []
        stop_began = None
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
                started_again = self.start_again(db, exc) if stopped else []
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
            part = self.part_manifest(path, compressor)
            part.update({
                'container': db.name,
                'source': {'volume': settings.volume} if settings.volume else {'path': settings.path},
                'mount_point': db.destination,
                'pgdata': db.pgdata,
                'pg_version': facts['pg_version'],
                'members': facts['members'],
            })
            try:
                manifest_path = self.commit_restore_point(output, path, part)
            except BaseException as exc:
                if stopped and isinstance(exc, SupabaseBackupError):
                    if start_error is not None:
                        exc.msg = '%s; and container %s could not be started again: %s' % (
                            exc.msg, db.name, start_error.msg)
                        started_again = []
                    else:
                        started_again = self.start_again(db, exc, start=False)
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
            'path': path, 'restore_point': VOLUME.stem_of(path), 'size': part['size'], 'sha256': part['sha256'],
            'uncompressed_size': part['uncompressed_size'], 'manifest': manifest_path,
            'members': facts['members'], 'pg_version': facts['pg_version'] or pg_version,
            'downtime': downtime, 'stopped': stopped, 'started': list(stopped), 'ready': ready,
            'encrypted': compressor.encrypted,
        }

    def _stream_volume(self, db, compressor):
        """The Docker API's archive of the mount point, checked as it passes into the compressor."""
        what = 'read %s from container %s' % (db.source, db.name)
        response = api_call(what, open_archive, db.api, db.id, db.path_in_container() + '/.')
        try:
            facts = inspect_tar(response.iter_content(READ_SIZE), db.pgdata, tee=compressor.write)
        except BackupFileError as exc:
            raise DockerError('the archive of %s that Docker sent is unusable: %s; nothing was kept'
                              % (db.source, exc.msg)) from None
        except SupabaseBackupError:
            raise
        except API_ERRORS as exc:
            raise DockerError('cannot %s: %s' % (what, reason(exc))) from None
        finally:
            # An unread archive would keep the daemon's copy, and the container, busy.
            response.close()
        problem = pgdata_problem(facts, db.pgdata)
        if problem:
            raise BackupFileError('the snapshot of %s was discarded: %s' % (db.source, problem))
        return facts
