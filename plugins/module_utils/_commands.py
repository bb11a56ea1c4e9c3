# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""Running PostgreSQL client programs, inside the DB container (Docker API) or on the node.

Commands are argv lists. A password only ever reaches the environment of the one client
process that needs it (PGPASSWORD), never argv, and never this module's results.
"""

from __future__ import annotations

import collections
import os
import shutil
import socket
import struct
import subprocess
import threading
import time

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    CommandError,
    ConfigError,
    DockerError,
)

try:
    import docker
    from docker.errors import DockerException, NotFound
    from docker.utils import socket as docker_socket
    HAS_DOCKER = True
    DOCKER_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - depends on the node
    HAS_DOCKER = False
    DOCKER_IMPORT_ERROR = exc

READ_SIZE = 1 << 20
STDERR_KEEP_BYTES = 64 * 1024
CONTROL_TIMEOUT = 60
APPLICATION_NAME = 'cortexreview-supabase-backup'
FRAME_HEADER = struct.Struct('>BxxxL')
STDOUT_FRAME = 1
STDERR_FRAME = 2


class _TailBuffer:
    """Keeps only the last bytes of a stream, so a chatty stderr cannot grow memory."""

    def __init__(self, limit=STDERR_KEEP_BYTES):
        self._chunks = collections.deque()
        self._size = 0
        self._limit = limit

    def add(self, data):
        self._chunks.append(data)
        self._size += len(data)
        while self._size - len(self._chunks[0]) >= self._limit:
            self._size -= len(self._chunks.popleft())

    def text(self):
        data = b''.join(self._chunks)[-self._limit:]
        return data.decode('utf-8', errors='replace').strip()


def last_line(text):
    """The most telling part of a client's stderr, on one line.

    PostgreSQL's clients print their own error ("pg_dump: error: ...") first and the server's
    reason ("... ERROR: ..." or "FATAL: ...") after it; both are kept. Otherwise the last line.
    """
    lines = [line.strip() for line in (text or '').splitlines() if line.strip()]
    client = [line for line in lines if 'error:' in line]
    server = [line for line in lines if 'ERROR:' in line or 'FATAL:' in line]
    if client and server and server[0] not in client:
        reason = server[0][max(server[0].find('ERROR:'), server[0].find('FATAL:')):]
        return '%s (%s)' % (client[0], reason)
    return (client or server or lines or [''])[0 if client or server else -1]


class _LocalStream:
    """A client program run on this node, stdout consumed in chunks."""

    def __init__(self, argv, env, with_input=False):
        try:
            self._proc = subprocess.Popen(  # pylint: disable=consider-using-with
                argv, stdin=subprocess.PIPE if with_input else subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=env, close_fds=True)
        except OSError as exc:
            raise CommandError('cannot start %s: %s' % (argv[0], exc.strerror or exc)) from None
        self._stderr = _TailBuffer()
        self._stderr_reader = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_reader.start()

    def _drain_stderr(self):
        for data in iter(lambda: self._proc.stderr.read1(READ_SIZE), b''):
            self._stderr.add(data)

    def chunks(self):
        fd = self._proc.stdout.fileno()
        while True:
            data = os.read(fd, READ_SIZE)
            if not data:
                return
            yield data

    def send(self, data):
        self._proc.stdin.write(data)

    def close_input(self):
        self._proc.stdin.close()

    def finish(self):
        if self._proc.stdin and not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
        returncode = self._proc.wait()
        self._stderr_reader.join()
        self._proc.stdout.close()
        self._proc.stderr.close()
        return returncode, self._stderr.text()

    def abort(self):
        if self._proc.poll() is None:
            self._proc.kill()
        self.finish()


class _DockerExecStream:
    """A client program run inside a container through the Docker exec API.

    The attach stream is read in large pieces and its frames (8-byte header, then
    payload) are split here: dockerd sends frames of a few KiB, and handing each one
    on separately would cost more CPU than the compression.
    """

    def __init__(self, control_api, container, argv, env, with_input=False):
        self._api = control_api
        self._stderr = _TailBuffer()
        try:
            self._exec_id = control_api.exec_create(
                container, argv, stdin=with_input, stdout=True, stderr=True, environment=env)['Id']
            self._socket = control_api.exec_start(self._exec_id, socket=True)
        except DockerException as exc:
            raise DockerError('cannot run %s in container %s: %s' % (argv[0], container, exc)) from None
        # Stream reads may legitimately wait long (lock waits, big tables).
        self._raw = getattr(self._socket, '_sock', self._socket)
        if hasattr(self._raw, 'settimeout'):
            self._raw.settimeout(None)

    def send(self, data):
        self._raw.sendall(data)

    def close_input(self):
        # Half-close: the program sees end of input, its output still flows back.
        self._raw.shutdown(socket.SHUT_WR)

    def _read(self):
        try:
            return docker_socket.read(self._socket, READ_SIZE)
        except (DockerException, OSError) as exc:
            raise DockerError('lost the Docker exec stream: %s' % exc) from None

    def chunks(self):
        pending = b''
        output = []
        output_size = 0
        while True:
            data = self._read()
            if not data:
                break
            buffer = pending + data if pending else data
            position = 0
            end = len(buffer)
            while end - position >= FRAME_HEADER.size:
                stream_type, size = FRAME_HEADER.unpack_from(buffer, position)
                start = position + FRAME_HEADER.size
                if end - start < size:
                    break
                position = start + size
                if stream_type == STDOUT_FRAME:
                    output.append(buffer[start:position])
                    output_size += size
                elif stream_type == STDERR_FRAME:
                    self._stderr.add(buffer[start:position])
            pending = buffer[position:]
            if output_size >= READ_SIZE:
                yield b''.join(output)
                output = []
                output_size = 0
        if output:
            yield b''.join(output)
        if pending:
            raise DockerError('the Docker exec stream ended inside a frame')

    def finish(self):
        self._close()
        # The exec can still be marked running for a moment after its output closed.
        deadline = time.monotonic() + CONTROL_TIMEOUT
        while True:
            try:
                state = self._api.exec_inspect(self._exec_id)
            except DockerException as exc:
                raise DockerError('cannot read the exit status of a Docker exec: %s' % exc) from None
            if not state.get('Running') or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        exit_code = state.get('ExitCode')
        if state.get('Running') or exit_code is None:
            exit_code = -1
        return exit_code, self._stderr.text()

    def _close(self):
        response = getattr(self._socket, '_response', None)
        for closable in (response, self._socket):
            try:
                if closable is not None:
                    closable.close()
            except (OSError, ValueError):
                pass

    def abort(self):
        # Closing the attach stream gives the program EPIPE on its next write.
        self._close()


class PgTarget:
    """Where the database lives and how to reach it: the shared connection options."""

    def __init__(self, container='', db='postgres', login_user='postgres', login_password=None,
                 login_host=None, login_port=None, docker_host=None, pg_bin_dir=None, **_ignored):
        self.container = container or ''
        self.db = db
        self.login_user = login_user
        self._password = login_password
        self.login_host = login_host
        self.login_port = login_port
        self.docker_host = docker_host
        self.pg_bin_dir = pg_bin_dir
        self._control_api = None
        if not db:
            raise ConfigError('db must not be empty')
        if not login_user:
            raise ConfigError('login_user must not be empty')

    def describe(self, db=None):
        if self.container:
            return "database '%s' in container '%s'" % (db or self.db, self.container)
        where = self.login_host or 'the local socket'
        if self.login_port:
            where = '%s:%s' % (where, self.login_port)
        return "database '%s' on %s" % (db or self.db, where)

    # Docker

    def _docker(self, timeout):
        if not HAS_DOCKER:
            raise ConfigError("the Python package 'docker' is required on the node when container is set: %s"
                              % DOCKER_IMPORT_ERROR)
        kwargs = docker.utils.kwargs_from_env()
        if self.docker_host:
            kwargs = {'base_url': self.docker_host}
        try:
            return docker.APIClient(version='auto', timeout=timeout, **kwargs)
        except DockerException as exc:
            raise DockerError('cannot reach the Docker engine at %s: %s'
                              % (kwargs.get('base_url', 'the default socket'), exc)) from None

    @property
    def docker_api(self):
        if self._control_api is None:
            self._control_api = self._docker(CONTROL_TIMEOUT)
        return self._control_api

    def ensure_reachable(self):
        """Fail early, before anything is written, when the database cannot be reached at all."""
        if not self.container:
            self.program_path('pg_dump')
            return
        try:
            state = self.docker_api.inspect_container(self.container)['State']
        except NotFound:
            raise DockerError('container %s not found' % self.container) from None
        except DockerException as exc:
            raise DockerError('cannot inspect container %s: %s' % (self.container, exc)) from None
        if not state.get('Running'):
            raise DockerError('container %s is not running (status: %s)'
                              % (self.container, state.get('Status', 'unknown')))

    # Client programs

    def program_path(self, program):
        if self.container:
            return program
        if self.pg_bin_dir:
            path = os.path.join(self.pg_bin_dir, program)
            if not os.access(path, os.X_OK):
                raise ConfigError('%s not found or not executable in pg_bin_dir %s' % (program, self.pg_bin_dir))
            return path
        path = shutil.which(program)
        if not path:
            raise ConfigError('%s not found on PATH; install the PostgreSQL client or set pg_bin_dir' % program)
        return path

    def connection_args(self):
        args = ['--no-password', '--username', self.login_user]
        if self.login_host:
            args += ['--host', self.login_host]
        if self.login_port:
            args += ['--port', str(self.login_port)]
        return args

    def client_env(self):
        env = {'PGAPPNAME': APPLICATION_NAME, 'PGCONNECT_TIMEOUT': '30'}
        if self._password:
            env['PGPASSWORD'] = self._password
        return env

    def start(self, program, args, with_input=False, env=None):
        """Start a client program with the connection options; returns a stream object."""
        argv = [self.program_path(program)] + self.connection_args() + list(args)
        program_env = self.client_env()
        program_env.update(env or {})
        if self.container:
            return _DockerExecStream(self.docker_api, self.container, argv, program_env, with_input)
        local_env = dict(os.environ)
        local_env.pop('PGPASSWORD', None)
        local_env.update(program_env)
        return _LocalStream(argv, local_env, with_input)

    def run(self, program, args, output_limit=16 << 20):
        """Run a client program to completion; returns (rc, stdout text, stderr text)."""
        stream = self.start(program, args)
        collected = []
        size = 0
        try:
            for data in stream.chunks():
                size += len(data)
                if size > output_limit:
                    raise CommandError('%s printed more than %d bytes' % (program, output_limit))
                collected.append(data)
        except BaseException:
            stream.abort()
            raise
        returncode, stderr = stream.finish()
        return returncode, b''.join(collected).decode('utf-8', errors='replace'), stderr

    def feed(self, program, args, chunks, env=None):
        """Run a client program with ``chunks`` as its standard input.

        Returns (rc, stdout tail, stderr tail). When the program stops reading (it
        failed), feeding stops and its exit status tells why.
        """
        stream = self.start(program, args, with_input=True, env=env)
        output = _TailBuffer()
        reader_errors = []

        def drain():
            try:
                for data in stream.chunks():
                    output.add(data)
            except Exception as exc:  # pylint: disable=broad-except
                reader_errors.append(exc)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            try:
                for chunk in chunks:
                    stream.send(chunk)
                stream.close_input()
            except (BrokenPipeError, ConnectionResetError):
                pass
        except BaseException:
            stream.abort()
            reader.join()
            raise
        reader.join()
        returncode, stderr = stream.finish()
        if reader_errors and returncode == 0:
            raise reader_errors[0]
        return returncode, output.text(), stderr

    def query(self, sql, db=None):
        """Rows of a query, as lists of strings; ``db`` defaults to the target database."""
        returncode, out, err = self.run('psql', [
            '--dbname', db or self.db, '--no-psqlrc', '--quiet', '--tuples-only', '--no-align',
            '--field-separator', '\x1f', '--set', 'ON_ERROR_STOP=1', '--command', sql])
        if returncode != 0:
            raise CommandError('query on %s failed: %s' % (self.describe(db), last_line(err) or 'exit %s' % returncode),
                               rc=returncode, stderr=err)
        return [line.split('\x1f') for line in out.splitlines() if line]
