# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""Running PostgreSQL client programs, inside the DB container (through _docker) or on the node.

Commands are argv lists. A password only ever reaches the environment of the one client
process that needs it (PGPASSWORD), never argv, and never this module's results.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._container_pipe import start_with_input
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._docker import (
    CONTROL_TIMEOUT,
    READ_SIZE,
    DockerExecStream,
    TailBuffer,
    docker_client,
    drain,
    ensure_running,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    CommandError,
    ConfigError,
)

APPLICATION_NAME = 'cortexreview-supabase-backup'


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


# A server message's lines that can quote the data being loaded (a COPY row, a key's values, a JSON value).
_QUOTING_LABEL = re.compile(r'^(CONTEXT|DETAIL):\s*')
# Any other line that starts a message of its own.
_MESSAGE_START = re.compile(r'^(psql:|pg_\w+:|ERROR:|FATAL:|PANIC:|WARNING:|NOTICE:|INFO:|HINT:|LOCATION:|STATEMENT:)')
# The statement psql quotes after a syntax error (a row read as SQL, past a broken COPY block), and its caret.
_QUOTED_STATEMENT = re.compile(r'^(LINE \d+):')
_CARET = re.compile(r'^\s*\^\s*$')
# What a COPY context says without its row: the table, the line and the column.
_COPY_WHERE = re.compile(r'COPY [^,:"]+, line \d+(?:, column [^:"]+)?')


def without_row_data(text):
    """A client's stderr from loading data, each CONTEXT and DETAIL block (the line and its continuation lines)
    cut down to what holds no data: a COPY context keeps its table, line and column, never the row. The
    statement quoted after a syntax error goes too.

    Rows can hold secrets (a cron job's bearer token, a password hash), and errors reach logs.
    """
    kept = []
    block = None
    for line in (text or '').splitlines() + ['']:
        label = _QUOTING_LABEL.match(line)
        if block is not None and (label or not line or _MESSAGE_START.match(line)):
            where = [match.group(0) for match in map(_COPY_WHERE.match, block[1]) if match]
            kept.append('%s:  %s' % (block[0], where[0] if where else '(left out: it can quote the data)'))
            block = None
        statement = _QUOTED_STATEMENT.match(line)
        if label:
            block = (label.group(1), [line[label.end():]])
        elif block is not None:
            block[1].append(line)
        elif statement:
            kept.append('%s: (left out: it can quote the data)' % statement.group(1))
        elif line and not (_CARET.match(line) and kept and kept[-1].startswith('LINE ')):
            kept.append(line)
    return ''.join(line + '\n' for line in kept)


class _LocalStream:
    """A client program run on this node, stdout consumed in chunks."""

    def __init__(self, argv, env, with_input=False):
        try:
            self._proc = subprocess.Popen(  # pylint: disable=consider-using-with
                argv, stdin=subprocess.PIPE if with_input else subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=env, close_fds=True)
        except OSError as exc:
            raise CommandError('cannot start %s: %s' % (argv[0], exc.strerror or exc)) from None
        self._stderr = TailBuffer()
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

    def copy(self):
        """The same target with a Docker client of its own, for a session in another thread."""
        return PgTarget(container=self.container, db=self.db, login_user=self.login_user,
                        login_password=self._password, login_host=self.login_host, login_port=self.login_port,
                        docker_host=self.docker_host, pg_bin_dir=self.pg_bin_dir)

    def describe(self, db=None):
        if self.container:
            return "database '%s' in container '%s'" % (db or self.db, self.container)
        where = self.login_host or 'the local socket'
        if self.login_port:
            where = '%s:%s' % (where, self.login_port)
        return "database '%s' on %s" % (db or self.db, where)

    # Docker

    @property
    def docker_api(self):
        if self._control_api is None:
            self._control_api = docker_client(self.docker_host, CONTROL_TIMEOUT)
        return self._control_api

    def ensure_reachable(self):
        """Fail early, before anything is written, when the database cannot be reached at all."""
        if not self.container:
            self.program_path('pg_dump')
            return
        ensure_running(self.docker_api, self.container)

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

    def _command(self, program, args, env):
        """(argv, environment) of a client program with the connection options."""
        program_env = self.client_env()
        program_env.update(env or {})
        return [self.program_path(program)] + self.connection_args() + list(args), program_env

    def start(self, program, args, with_input=False, env=None):
        """Start a client program with the connection options; returns a stream object."""
        argv, program_env = self._command(program, args, env)
        if self.container:
            return DockerExecStream(self.docker_api, self.container, argv, program_env, with_input)
        local_env = dict(os.environ)
        local_env.pop('PGPASSWORD', None)
        local_env.update(program_env)
        return _LocalStream(argv, local_env, with_input)

    def start_bulk_input(self, program, args, env=None):
        """Start a client program that will read much input: (stream, transport, why not through a pipe).

        In a container, the input goes through a named pipe when this node can make one there
        (_container_pipe), else through the exec; on the node, through the program's own stdin.
        """
        if not self.container:
            return self.start(program, args, with_input=True, env=env), 'local', None
        argv, program_env = self._command(program, args, env)
        return start_with_input(self.docker_api, self.container, argv, program_env)

    def run(self, program, args, output_limit=16 << 20):
        """Run a client program to completion; returns (rc, stdout text, stderr text)."""
        collected = []
        size = 0

        def keep(data):
            nonlocal size
            size += len(data)
            collected.append(data)
            if size > output_limit:
                raise CommandError('%s printed more than %d bytes' % (program, output_limit))

        returncode, stderr = drain(self.start(program, args), keep)
        return returncode, b''.join(collected).decode('utf-8', errors='replace'), stderr

    def feed(self, program, args, chunks, env=None):
        """Run a client program with ``chunks`` as its standard input.

        Returns (rc, stdout tail, stderr tail). When the program stops reading (it
        failed), feeding stops and its exit status tells why.
        """
        return feed_stream(self.start(program, args, with_input=True, env=env), chunks)

    def query(self, sql, db=None):
        """Rows of a query, as lists of strings; ``db`` defaults to the target database."""
        returncode, out, err = self.run('psql', [
            '--dbname', db or self.db, '--no-psqlrc', '--quiet', '--tuples-only', '--no-align',
            '--field-separator', '\x1f', '--set', 'ON_ERROR_STOP=1', '--command', sql])
        if returncode != 0:
            raise CommandError('query on %s failed: %s' % (self.describe(db), last_line(err) or 'exit %s' % returncode),
                               rc=returncode, stderr=err)
        return [line.split('\x1f') for line in out.splitlines() if line]


def feed_stream(stream, chunks):
    """Feed ``chunks`` to a started program's standard input while its output is drained.

    Returns (rc, stdout tail, stderr tail). When the program stops reading (it failed),
    feeding stops and its exit status tells why.
    """
    output = TailBuffer()
    reader_errors = []

    def drain_output():
        try:
            for data in stream.chunks():
                output.add(data)
        except Exception as exc:  # pylint: disable=broad-except
            reader_errors.append(exc)

    reader = threading.Thread(target=drain_output, daemon=True)
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
