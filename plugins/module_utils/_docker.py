# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible (the cron runner uses it too) and without the Docker SDK.
"""Docker access, in one place: the API client, programs run in a container, archives, errors.

Every call of the Docker engine goes through here, and every library error leaves here as a
DockerError whose message says what failed and the daemon's own reason.
"""

from __future__ import annotations

import collections
import socket
import struct
import time

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    ConfigError,
    DockerError,
    SupabaseBackupError,
)

try:
    import docker
    import requests
    from docker.errors import DockerException, NotFound
    from docker.types import Mount
    from docker.utils import socket as docker_socket
    HAS_DOCKER = True
    DOCKER_IMPORT_ERROR = None
    API_ERRORS = (DockerException, requests.exceptions.RequestException, OSError)
except ImportError as exc:  # pragma: no cover - depends on the node; docker_client() reports it
    HAS_DOCKER = False
    DOCKER_IMPORT_ERROR = exc
    API_ERRORS = (OSError,)

    class NotFound(Exception):
        """Stands in for the SDK's, so ``except NotFound`` still reads without it."""

READ_SIZE = 1 << 20
STDERR_KEEP_BYTES = 64 * 1024
CONTROL_TIMEOUT = 60
FRAME_HEADER = struct.Struct('>BxxxL')
STDOUT_FRAME = 1
STDERR_FRAME = 2


def docker_client(docker_host=None, timeout=CONTROL_TIMEOUT):
    """An API client for ``docker_host`` (default: DOCKER_HOST or the local socket)."""
    if not HAS_DOCKER:
        raise ConfigError("the Python package 'docker' is required on the node when container is set: %s"
                          % DOCKER_IMPORT_ERROR)
    kwargs = docker.utils.kwargs_from_env()
    if docker_host:
        kwargs = {'base_url': docker_host}
    try:
        return docker.APIClient(version='auto', timeout=timeout, **kwargs)
    except DockerException as exc:
        raise DockerError('cannot reach the Docker engine at %s: %s'
                          % (kwargs.get('base_url', 'the default socket'), exc)) from None


def volume_mount(destination, volume=None, path=None, read_only=False):
    """The mount of a named ``volume``, or else of the host directory ``path``, at ``destination``."""
    if volume:
        return Mount(destination, volume, type='volume', read_only=read_only)
    return Mount(destination, path, type='bind', read_only=read_only)


def api_call(what, call, *args, **kwargs):
    """One Docker API call; library errors become a DockerError saying what failed."""
    try:
        return call(*args, **kwargs)
    except SupabaseBackupError:
        raise
    except API_ERRORS as exc:
        raise DockerError('cannot %s: %s' % (what, reason(exc))) from None


def reason(exc):
    """The daemon's own explanation of an API error, without the request URL around it."""
    explanation = getattr(exc, 'explanation', None)
    if explanation:
        return explanation.decode('utf-8', 'replace') if isinstance(explanation, bytes) else str(explanation)
    return str(exc)


def inspect_container(api, container):
    """The container's inspect data; a missing container is said so."""
    try:
        return api.inspect_container(container)
    except NotFound:
        raise DockerError('container %s not found' % container) from None
    except API_ERRORS as exc:
        raise DockerError('cannot inspect container %s: %s' % (container, reason(exc))) from None


def ensure_running(api, container):
    state = inspect_container(api, container)['State']
    if not state.get('Running'):
        raise DockerError('container %s is not running (status: %s)' % (container, state.get('Status', 'unknown')))


class TailBuffer:
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


class DockerExecStream:
    """A program run inside a container through the Docker exec API.

    The attach stream is read in large pieces and its frames (8-byte header, then
    payload) are split here: dockerd sends frames of a few KiB, and handing each one
    on separately would cost more CPU than the compression.
    """

    def __init__(self, control_api, container, argv, env, with_input=False, user=''):
        self._api = control_api
        self._stderr = TailBuffer()
        try:
            self._exec_id = control_api.exec_create(
                container, argv, stdin=with_input, stdout=True, stderr=True, environment=env, user=user)['Id']
            self._socket = control_api.exec_start(self._exec_id, socket=True)
        except API_ERRORS as exc:
            raise DockerError('cannot run %s in container %s: %s' % (argv[0], container, reason(exc))) from None
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
        except API_ERRORS as exc:
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
            except API_ERRORS as exc:
                raise DockerError('cannot read the exit status of a Docker exec: %s' % reason(exc)) from None
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
        # Shutting the attach stream down ends the program's input (and its next write fails with
        # EPIPE), and wakes a thread blocked reading it: closing alone does neither.
        try:
            self._raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._close()


def drain(stream, consume):
    """Hand each chunk of a started program's output to ``consume``, then wait for it: (rc, stderr tail).

    Any failure on the way (``consume``'s own included) aborts the program first.
    """
    try:
        for data in stream.chunks():
            consume(data)
    except BaseException:
        stream.abort()
        raise
    return stream.finish()


def run_in_container(api, container, argv, env=None, user=''):
    """Run argv in a running container through the exec API; returns (rc, stdout tail, stderr tail).

    ``user`` as ``docker exec --user`` ('' = the container's own user).
    """
    output = TailBuffer()
    returncode, stderr = drain(DockerExecStream(api, container, argv, env or {}, user=user), output.add)
    return returncode, output.text(), stderr


def open_archive(api, container, path, missing_ok=False):
    """GET /containers/{id}/archive as a response the caller can close (docker cp semantics).

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
