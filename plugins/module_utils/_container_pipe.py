# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible (the cron runner uses it too) and without the Docker SDK.
"""A program's input fed into a container through a named pipe, past the Docker engine.

Through the exec API, every byte of a program's standard input is copied by dockerd and by
containerd's shim: for the SQL of a restore, about 2 CPU-seconds per 350 MB on a machine whose
cores are busy with the load itself. When this process runs on the Docker host as a user that may
enter the container's filesystem (root), the input can go through a named pipe in the container's
``/tmp`` instead: the program reads it as its standard input, and the kernel alone moves the bytes.

Whenever that is not possible (another host, another PID namespace, a ``/tmp`` that is not a plain
directory, a program that cannot open the pipe), the exec's own standard input is used, as before.
Nothing reaches the program before it has opened the pipe, so falling back never runs any input twice.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import time

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._docker import (
    API_ERRORS,
    DockerExecStream,
    drain,
    inspect_container,
)

PIPE_PREFIX = 'cortexreview-input-'
# The shell opens the pipe as the program's standard input, so its messages say <stdin> as before.
SHELL_REDIRECT = 'exec "$@" < "$0"'
OPEN_TIMEOUT = 30
OPEN_POLL = 0.005
EXEC_POLL = 0.1
# Larger than Linux's 64 KiB default: fewer switches between writer and reader (best effort).
PIPE_SIZE = 1 << 20

TRANSPORT_PIPE = 'pipe'
TRANSPORT_EXEC = 'exec'


class PipedExecStream(DockerExecStream):
    """An exec whose standard input is a named pipe this process writes; its output comes as usual."""

    def __init__(self, control_api, container, argv, env, pipe_path):
        super().__init__(control_api, container, ['sh', '-c', SHELL_REDIRECT, pipe_path] + list(argv), env)
        self._pipe = None

    def exec_ended(self):
        # Right after exec_start the program may not run yet: not Running, but no exit code either.
        try:
            state = self._api.exec_inspect(self._exec_id)
        except API_ERRORS:
            return True
        return not state.get('Running') and state.get('ExitCode') is not None

    def attach_pipe(self, fd):
        self._pipe = fd

    def send(self, data):
        view = memoryview(data)
        while view:
            view = view[os.write(self._pipe, view):]

    def _close_pipe(self):
        if self._pipe is not None:
            fd, self._pipe = self._pipe, None
            try:
                os.close(fd)
            except OSError:
                pass

    def close_input(self):
        self._close_pipe()

    def finish(self):
        self._close_pipe()
        return super().finish()

    def abort(self):
        self._close_pipe()
        super().abort()


def container_tmp(pid, container_id):
    """A directory descriptor of the container's /tmp as this process can reach it, or (None, why not).

    ``pid`` is the engine's PID of the container's first process; it names that container here only
    when this process shares the engine's PID namespace, which its cgroup proves. ``/tmp`` must be a
    directory itself: a symbolic link there would be followed from this host's root, not the container's.
    """
    if not pid:
        return None, 'the container has no process'
    try:
        with open('/proc/%d/cgroup' % pid, encoding='utf-8', errors='replace') as handle:
            cgroups = handle.read()
    except OSError:
        return None, 'the Docker engine runs on another host or in another PID namespace'
    if container_id not in cgroups:
        return None, 'the Docker engine runs on another host or in another PID namespace'
    try:
        return os.open('/proc/%d/root/tmp' % pid, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC), None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return None, "the container's /tmp is not a directory"
        return None, "the container's /tmp cannot be reached from this node (%s)" % (exc.strerror or exc)


def start_with_input(control_api, container, argv, env):
    """Start ``argv`` in ``container`` with input to send: (stream, transport, why the pipe was not used)."""
    stream, reason = _start_piped(control_api, container, argv, env)
    if stream is not None:
        return stream, TRANSPORT_PIPE, None
    return DockerExecStream(control_api, container, argv, env, with_input=True), TRANSPORT_EXEC, reason


def _start_piped(control_api, container, argv, env):
    info = inspect_container(control_api, container)
    directory, reason = container_tmp((info.get('State') or {}).get('Pid'), info.get('Id') or '')
    if directory is None:
        return None, reason
    name = PIPE_PREFIX + secrets.token_hex(8)
    try:
        try:
            os.mkfifo(name, 0o600, dir_fd=directory)
        except OSError as exc:
            return None, "cannot make a pipe in the container's /tmp: %s" % (exc.strerror or exc)
        try:
            try:
                # Owned by the container's root, which is not this host's under user namespace remapping.
                owner = os.stat('/proc/self/fd/%d' % directory)
                os.chown(name, owner.st_uid, owner.st_gid, dir_fd=directory, follow_symlinks=False)
            except OSError:
                pass  # if the program then cannot open the pipe, its input goes through the exec
            stream = PipedExecStream(control_api, container, argv, env, '/tmp/' + name)
            fd = _open_for_writing(stream, name, directory)
        finally:
            _remove_pipe(name, directory)
    finally:
        os.close(directory)
    if fd is None:
        # Ended, or ends now that the pipe is gone: its message says why it did not open the pipe.
        _returncode, stderr = drain(stream, lambda _output: None)
        return None, 'the program in the container could not open the pipe (%s)' % (
            stderr.strip().splitlines()[-1] if stderr.strip() else 'it ended first')
    stream.attach_pipe(fd)
    return stream, None


def _remove_pipe(name, directory):
    """Unlink the pipe, so that nothing is left in the container. A program that opens it meanwhile
    without a writer would wait forever: a reading and writing end held across the unlink gives it an
    end of input instead (an empty input, which runs nothing)."""
    try:
        holder = os.open(name, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=directory)
    except OSError:
        holder = None
    try:
        os.unlink(name, dir_fd=directory)
    except OSError:
        pass  # gone already, or the container's /tmp refuses: a name in the container's /tmp, no more
    finally:
        if holder is not None:
            os.close(holder)


def _open_for_writing(stream, name, directory):
    """The pipe's writing end once the program has opened its reading end; None when it ended first."""
    deadline = time.monotonic() + OPEN_TIMEOUT
    next_check = time.monotonic() + EXEC_POLL
    while True:
        try:
            fd = os.open(name, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=directory)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                return None
        else:
            os.set_blocking(fd, True)
            try:
                fcntl.fcntl(fd, getattr(fcntl, 'F_SETPIPE_SZ', 1031), PIPE_SIZE)
            except OSError:
                pass
            return fd
        now = time.monotonic()
        if now >= next_check:
            if stream.exec_ended() or now >= deadline:
                return None
            next_check = now + EXEC_POLL
        time.sleep(OPEN_POLL)
