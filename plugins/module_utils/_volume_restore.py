# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible.
"""The volume restore engine: a verified snapshot replaces the contents of the volume, in place.

The archive is streamed back with the API's put-archive into a short-lived helper container
made from the DB container's own image; the helper first moves the previous contents aside
inside the volume (a rename, so no space and no time) and deletes them only once PostgreSQL
accepts connections on the new contents. Every failure before that puts the previous
contents back (the rollback).
"""

from __future__ import annotations

import binascii
import hashlib
import os
import posixpath
import time

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_kinds import VOLUME
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    BackupFileError,
    ConfigError,
    SupabaseBackupError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._volume_archive import ASIDE_PREFIX
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._volume_container import VolumeBackend, VolumeHelper


class VolumeRestoreBackend(VolumeBackend):
    """Restores one snapshot (state=restored); ``run()`` returns the result dict or raises a SupabaseBackupError."""

    metrics_kind = VOLUME.metrics_kind
    metrics_operation = 'restore'

    def run(self):
        return self._restore(time.monotonic())

    def _restore(self, started):
        settings = self.settings
        archive = VOLUME.open(VOLUME.select(settings.backup_dir, settings.src, settings.restore_point),
                              settings.passphrase)
        if not settings.confirm and not self.check_mode:
            raise ConfigError('confirm must be true: restoring %s replaces everything in %s of container %s'
                              % (archive.path, settings.describe_source(), settings.container))
        db = self.container()
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
        base = {'src': archive.path, 'restore_point': VOLUME.stem_of(archive.path), 'sha256': facts['sha256'],
                'size': archive.size, 'pg_version': facts['pg_version'], 'members': facts['members'],
                'checksum_verified': facts['checksum_verified']}
        if self.check_mode:
            base.update({
                'changed': True, 'stopped': stopped, 'started': [db.name], 'downtime': None, 'ready': None,
                'previous_contents': None, 'duration': round(time.monotonic() - started, 3),
                'msg': 'Would %sreplace everything in %s with %s (PostgreSQL %s, %d entries) and start container %s'
                       % ('stop container %s, ' % db.name if stopped else '', db.source, archive.path,
                          facts['pg_version'], facts['members'], db.name),
            })
            return base
        suffix = '%s-%s' % (self.stamp(), binascii.hexlify(os.urandom(4)).decode('ascii'))
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
            helper.create()
            interrupted = self._interrupted(db, helper)
            if db.running:
                stopped = [db.name]
                db.stop(settings.stop_timeout, self.warnings)
            self._finish_interrupted(db, helper, interrupted)
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
            previous = self._delete_previous(db, helper, aside)
        except BaseException as exc:
            # The container runs again if it ran before, on whatever contents are in place now.
            started = self.start_again(db, exc) if stopped else []
            if isinstance(exc, SupabaseBackupError):
                exc.details.update({'stopped': stopped, 'started': started})
            raise
        finally:
            problem = helper.remove()
            if problem:
                self.warnings.append(problem)
        return {'stopped': stopped, 'started': [db.name], 'ready': True, 'downtime': downtime,
                'previous_contents': previous, 'interrupted_restore': interrupted}

    @staticmethod
    def _interrupted(db, helper):
        """What an earlier restore of this volume whose process died left: the contents it set aside and
        never deleted, and whether they are to be put back (PostgreSQL does not run on what is in place,
        which may be half written). None when there is nothing; more than one is refused before anything
        stops."""
        names = sorted(posixpath.basename(path) for path in helper.entries(helper.root)
                       if posixpath.basename(path).startswith(ASIDE_PREFIX))
        if len(names) > 1:
            raise ConfigError('%s holds %d sets of contents set aside by interrupted restores (%s): delete all but '
                              'the one to go back to, by hand, then restore again; nothing was changed'
                              % (db.source, len(names), ', '.join(names)))
        return {'set_aside': names[0], 'put_back': not db.running} if names else None

    def _finish_interrupted(self, db, helper, interrupted):
        """Put the contents an interrupted restore set aside back in place, so that this restore's own rollback
        returns to them; when PostgreSQL ran on what is in place, they stay aside with it instead (this restore
        deletes them with the previous contents once it succeeds)."""
        if interrupted is None:
            return
        if not interrupted['put_back']:
            self.warnings.append('%s holds %s, contents set aside by an earlier restore that did not end after '
                                 'PostgreSQL ran on its own: they go with the current contents'
                                 % (db.source, interrupted['set_aside']))
            return
        helper.clear(interrupted['set_aside'])
        helper.move_back(interrupted['set_aside'])
        self.warnings.append('an earlier restore of %s did not end (PostgreSQL was not running on what it left): '
                             'the contents it had set aside in %s were put back first'
                             % (db.source, interrupted['set_aside']))

    def _delete_previous(self, db, helper, aside):
        """Delete the previous contents once the new ones run: 'deleted', or where they still are (and a warning)."""
        try:
            helper.delete(aside)
        except SupabaseBackupError as exc:
            self.warnings.append('restore succeeded but the previous contents were not deleted: %s; '
                                 'delete %s (in %s) by hand' % (exc.msg, aside, db.source))
            return posixpath.join(db.destination, aside)
        return 'deleted'

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
