# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible.
"""Stopping the containers that write to the database, and starting them again."""

from __future__ import annotations

import ctypes
import os
import threading

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._docker import (
    API_ERRORS,
    NotFound,
    reason,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import DockerError, SupabaseBackupError

COMPOSE_PROJECT_LABEL = 'com.docker.compose.project'
COMPOSE_SERVICE_LABEL = 'com.docker.compose.service'
# How long a stop waits for the flush below before it goes on regardless.
FLUSH_WAIT = 30


class WriterControl:
    """The writers: containers named in ``names`` plus, optionally, services of a compose project."""

    def __init__(self, target, names, compose_project=None, compose_services=(), timeout=30):
        self._target = target
        self._names = list(names or [])
        self._compose_project = compose_project
        self._compose_services = list(compose_services or [])
        self._timeout = timeout
        self._flush = None
        self.warnings = []

    def flush_before_stop(self):
        """Write the Docker engine's filesystem out now, in the background, when the engine is local.

        A container's stop unmounts its root filesystem, which first writes out everything dirty
        on that filesystem: after a restore's load, hundreds of MB, and the writers' downtime grew
        by most of a second. Written out while the restore verifies, the stop finds little left.
        """
        if (self._flush is not None and self._flush.is_alive()) or (not self._names and not self._compose_project):
            return
        # A Docker client of its own: the caller's may be busy in another thread.
        self._flush = threading.Thread(target=_write_out_engine_filesystem, args=(self._target.copy(),), daemon=True)
        self._flush.start()

    def _is_database(self, info):
        """The DB container itself must never be stopped as a writer.

        In container mode it is the one named by ``container``; in direct mode, the one that
        publishes the port the engine connects to.
        """
        if self._target.container:
            return self._target.container in (info.get('Id'), info.get('Name', '').lstrip('/')) or \
                info.get('Id', '').startswith(self._target.container)
        port = str(self._target.login_port or 5432)
        bindings = (info.get('HostConfig') or {}).get('PortBindings') or {}
        return any(binding.get('HostPort') == port for bound in bindings.values() for binding in bound or [])

    def _selected(self):
        if not self._names and not self._compose_project:
            return []
        api = self._target.docker_api
        selected = []
        for name in self._names:
            try:
                selected.append((name, api.inspect_container(name)))
            except NotFound:
                self.warnings.append('container %s to stop does not exist; skipped' % name)
            except API_ERRORS as exc:
                raise DockerError('cannot inspect container %s: %s' % (name, reason(exc))) from None
        if self._compose_project:
            try:
                found = api.containers(all=True, filters={'label': '%s=%s' % (COMPOSE_PROJECT_LABEL,
                                                                              self._compose_project)})
                for summary in found:
                    service = summary.get('Labels', {}).get(COMPOSE_SERVICE_LABEL)
                    if self._compose_services and service not in self._compose_services:
                        continue
                    info = api.inspect_container(summary['Id'])
                    if not self._is_database(info):
                        selected.append((summary['Names'][0].lstrip('/'), info))
            except API_ERRORS as exc:
                raise DockerError('cannot list containers of compose project %s: %s'
                                  % (self._compose_project, reason(exc))) from None
        unique = []
        for name, info in selected:
            if name not in [known for known, _info in unique]:
                unique.append((name, info))
        return unique

    def wait_for_flush(self):
        """Until flush_before_stop's writing out has ended, or FLUSH_WAIT seconds have passed."""
        if self._flush is not None:
            self._flush.join(FLUSH_WAIT)
            self._flush = None

    def running(self):
        """Names of the selected writers that are running now (only those are stopped and started)."""
        return [name for name, info in self._selected() if info.get('State', {}).get('Running')]

    def stop(self, names, stopped):
        """Stop each container, appending it to ``stopped`` at once, so a caller can always restart them.

        One after the other, so a stop that fails leaves the rest running (stopping two writers at
        once saved about 0.1 s of downtime on the test bed).
        """
        api = self._target.docker_api
        self.wait_for_flush()
        for name in names:
            try:
                api.stop(name, timeout=self._timeout)
            except API_ERRORS as exc:
                raise DockerError('cannot stop writer container %s: %s' % (name, reason(exc))) from None
            stopped.append(name)

    def start(self, names):
        """Start every container in ``names``, all at once (each start takes the engine a few tenths of a
        second, all of them downtime); returns (started, {name: error}), in ``names``' order."""
        api = self._target.docker_api
        errors = _at_once(names, api.start)
        return ([name for name in names if name not in errors],
                dict((name, reason(errors[name])) for name in names if name in errors))


def _write_out_engine_filesystem(target):
    """syncfs(2) of the file system holding the Docker engine's root directory, when it is a directory here.

    Only ever a head start for the stop: on any failure (another host's engine, no such directory here,
    no syncfs) nothing is done, and the stop writes the file system out as it always did.
    """
    try:
        path = target.docker_api.info().get('DockerRootDir') or ''
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (SupabaseBackupError, AttributeError) + API_ERRORS:
        return
    try:
        syncfs(fd)
    finally:
        os.close(fd)


def _at_once(names, action):
    """``action(name)`` for every name, each in a thread of its own; returns {name: the error it raised}."""
    errors = {}

    def run(name):
        try:
            action(name)
        except Exception as exc:  # pylint: disable=broad-except
            # Whatever the reason, that container did not start: the caller says so.
            errors[name] = exc

    threads = [threading.Thread(target=run, args=(name,), daemon=True) for name in names]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    finally:
        # Even when interrupted, every start has ended before the caller goes on.
        for thread in threads:
            thread.join()
    return errors
