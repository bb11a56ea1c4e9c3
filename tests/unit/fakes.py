"""Fakes at the Docker/psql boundary for the engine's unit tests.

* :class:`FakeServer` models the PostgreSQL server as the engine sees it through psql and
  pg_dump: a catalog of databases (tables with row counts, indexes, extensions), each
  ``psql --command`` string run as ONE transaction (all of it or nothing, as the simple
  query protocol does), CREATE/DROP DATABASE refused inside a multi-statement string, and
  failures injected on statements matching a pattern. Unknown SQL fails loudly.
* :class:`FakeDockerAPI` records inspect/list/stop/start calls; failures can be scripted.
* :class:`FakeTarget` is the real PgTarget (argv building, run/feed/query) whose client
  programs are the server's fake streams and whose Docker client is the fake.
"""

from __future__ import annotations

import copy
import gzip
import io
import json
import os
import re
import socket as socket_module
import struct
import subprocess
import sys
import tarfile
import threading

from docker.errors import APIError, NotFound

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._commands import PgTarget
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._dump_stream import DumpInspector
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._restore_journal import process_identity

DB_CONTAINER = 'fake-db'
FIELD = '\x1f'


# ----------------------------------------------------------------- streams --

class FakeStream:
    """A client program: ``respond(input bytes or None) -> (rc, stdout bytes, stderr text)``.

    With input, the answer is computed once the input is closed (as psql answers a fed dump).
    ``chunks`` may be given instead of ``respond`` for a streaming program (pg_dump); an
    exception in that list is raised when it is reached.
    """

    def __init__(self, respond=None, with_input=False, chunks=None, returncode=0, stderr=''):
        self._respond = respond
        self._with_input = with_input
        self._input = []
        self._closed = threading.Event()
        self._answer = None if respond else (returncode, chunks or [], stderr)
        self.aborted = False
        self.finished = False

    def _answered(self):
        if self._answer is None:
            if self._with_input:
                self._closed.wait(30)
            rc, out, err = self._respond(b''.join(self._input) if self._with_input else None)
            self._answer = (rc, [out] if out else [], err)
        return self._answer

    def chunks(self):
        for item in self._answered()[1]:
            if isinstance(item, BaseException):
                raise item
            yield item

    def send(self, data):
        self._input.append(bytes(data))

    def close_input(self):
        self._closed.set()

    def finish(self):
        self._closed.set()
        self.finished = True
        rc, _out, err = self._answered()
        return rc, err

    def abort(self):
        self.aborted = True
        self._closed.set()


# ------------------------------------------------------------------ docker --

class FakeDockerAPI:
    """The slice of docker.APIClient the engine uses, recording ``calls``.

    ``archives`` maps a path in a container to the tar the archive API sends for it (missing: 404).
    """

    base_url = 'http+docker://fake'
    api_version = '1.45'

    def __init__(self):
        self.archives = {}
        self.containers_by_name = {}
        self.calls = []
        self.stop_errors = {}
        self.start_errors = {}
        self.on_stop = None

    def add(self, name, running=True, project=None, service=None, host_port=None):
        info = {'Id': 'id-' + name, 'Name': '/' + name, 'State': {'Running': running,
                                                                  'Status': 'running' if running else 'exited'},
                'Config': {'Labels': {}}, 'HostConfig': {'PortBindings': {}}}
        if project:
            info['Config']['Labels'] = {'com.docker.compose.project': project, 'com.docker.compose.service': service}
        if host_port:
            info['HostConfig']['PortBindings'] = {'5432/tcp': [{'HostIp': '127.0.0.1', 'HostPort': str(host_port)}]}
        self.containers_by_name[name] = info
        return info

    def _find(self, name):
        for known, info in self.containers_by_name.items():
            if name in (known, info['Id']):
                return info
        raise NotFound('No such container: %s' % name)

    def inspect_container(self, name):
        self.calls.append(('inspect', name))
        return copy.deepcopy(self._find(name))

    def containers(self, all=False, filters=None):  # pylint: disable=redefined-builtin
        self.calls.append(('list', filters))
        key, _sep, value = (filters or {}).get('label', '').partition('=')
        return [{'Id': info['Id'], 'Names': [info['Name']], 'Labels': info['Config']['Labels']}
                for info in self.containers_by_name.values()
                if info['Config']['Labels'].get(key) == value and (all or info['State']['Running'])]

    def stop(self, name, timeout=None):
        self.calls.append(('stop', name))
        if self.on_stop:
            self.on_stop(name)
        if name in self.stop_errors:
            raise self.stop_errors[name]
        self._find(name)['State']['Running'] = False

    def start(self, name):
        self.calls.append(('start', name))
        if name in self.start_errors:
            raise self.start_errors[name]
        self._find(name)['State']['Running'] = True

    def actions(self, kind):
        return [name for action, name in self.calls if action == kind]

    def get(self, url, params=None, **_kwargs):
        self.calls.append(('get', (url.rsplit('/containers/', 1)[-1], params)))
        data = self.archives.get(params['path'])
        return FakeResponse(404, b'not found') if data is None else FakeResponse(200, data)

    def info(self):
        """The engine's host: 8 GiB and 2 CPUs (the restore sizes its index builds from them)."""
        self.calls.append(('info', None))
        return {'MemTotal': 8 << 30, 'NCPU': 2}


def api_error(message):
    return APIError(message)


# ------------------------------------------------------------------ server --

class FakeDatabase:

    def __init__(self, tables=None, indexes=(), extensions=None, owner='postgres', settings=None):
        self.tables = dict(tables or {})
        self.indexes = list(indexes)
        self.extensions = dict(extensions or {})
        self.owner = owner
        # pg_db_role_setting rows: [(role or None, ['name=value', ...])]
        self.settings = list(settings or [])

    def settings_row(self):
        """What _database_settings' query answers for this database."""
        return {'columns': {'datcollate': 'C.UTF-8', 'datctype': 'C.UTF-8', 'datlocprovider': 'c',
                            'datconnlimit': -1, 'datlocale': None},
                'owner': self.owner, 'encoding': 'UTF8', 'comment': None, 'default_acl': True, 'acl': None,
                'settings': [{'role': role, 'config': config} for role, config in self.settings] or None}

    def __eq__(self, other):
        return isinstance(other, FakeDatabase) and vars(self) == vars(other)

    def __repr__(self):
        return 'FakeDatabase(%r)' % (vars(self),)


class SqlError(Exception):
    pass


def _unquote(name):
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def _literal(text):
    return text[1:-1].replace("''", "'")


IDENT = r'("(?:[^"]|"")*")'
LITERAL = r"('(?:[^']|'')*')"


class FakeServer:
    """A PostgreSQL server seen through psql and pg_dump (see the module doc)."""

    def __init__(self, databases=None, server_version='18.0'):
        self.databases = dict(databases or {})
        self.server_version = server_version
        self.log = []                 # (program, db, sql or '<input>')
        self.transactions = []        # each psql --command: the list of its statements
        self.failures = []            # (compiled pattern, error message)
        self.unmodelled = []
        self.load_error = None        # (rc, stderr) for the next load
        self.load_tamper = None       # callable(FakeDatabase) run after a load: data that differs
        self.dump = ([], 0, '')        # (chunks, rc, stderr) for pg_dump
        self.dumps = {}               # database -> (chunks, rc, stderr), for pg_dump of another database
        self.dump_args = []
        self.superuser = True
        # Schemas that make a missing root key surprising (vault, pgsodium).
        self.key_schemas = []
        self.roles = ['anon', 'postgres']
        self.globals_dump = ([GLOBALS_DUMP.encode()], 0, '')  # (chunks, rc, stderr) for pg_dumpall
        self.globals_args = []
        self.role_scripts = []
        self.roles_error = None
        # What pg_available_extensions offers, and the server's settings (current_setting).
        self.available_extensions = ['pg_cron', 'vector']
        self.server_settings = {'cron.database_name': 'postgres'}

    # scripting

    def fail_on(self, pattern, message, times=None):
        """Statements matching ``pattern`` (regex) raise an ERROR with ``message`` (``times`` times, or always)."""
        self.failures.append([re.compile(pattern), message, times])

    def executed(self, pattern):
        return [sql for _program, _db, sql in self.log if re.search(pattern, sql)]

    # programs

    def stream(self, program, args, with_input=False, env=None):
        if program == 'pg_dump':
            self.dump_args.append(list(args))
            db = args[args.index('--dbname') + 1]
            chunks, rc, stderr = self.dumps.get(db, self.dump)
            self.log.append(('pg_dump', db, '<dump>'))
            return FakeStream(chunks=list(chunks), returncode=rc, stderr=stderr)
        if program == 'pg_dumpall':
            self.globals_args.append(list(args))
            chunks, rc, stderr = self.globals_dump
            self.log.append(('pg_dumpall', args[args.index('--database') + 1], '<globals>'))
            return FakeStream(chunks=list(chunks), returncode=rc, stderr=stderr)
        assert program == 'psql', program
        db = args[args.index('--dbname') + 1]
        if '--command' in args:
            sql = args[args.index('--command') + 1]
            self.log.append(('psql', db, sql))
            return FakeStream(lambda _input: self.execute(db, sql))
        if '--single-transaction' in args:
            # The roles' scripts (_globals): all or nothing.
            self.log.append(('psql', db, '<roles>'))
            return FakeStream(lambda data: self.apply_roles(data.decode('utf-8')), with_input=True)
        # A load is not one transaction (its database is dropped on any failure), but errors stop it.
        assert with_input and 'ON_ERROR_STOP=1' in args, args
        self.log.append(('psql', db, '<input>'))
        return FakeStream(lambda data: self.load(db, data, env or {}), with_input=True)

    # psql --command: one transaction

    def execute(self, db, sql):
        statements = [part.strip() for part in re.split(r';\s*(?=(?:[^\']*\'[^\']*\')*[^\']*$)', sql) if part.strip()]
        self.transactions.append(statements)
        catalog = copy.deepcopy(self.databases)
        rows = []
        try:
            if db not in catalog:
                raise SqlError('FATAL:  database "%s" does not exist' % db)
            for statement in statements:
                if len(statements) > 1 and re.match(r'^(CREATE|DROP) DATABASE', statement):
                    raise SqlError('ERROR:  %s DATABASE cannot run inside a transaction block'
                                   % statement.split()[0])
                for failure in self.failures:
                    pattern, message, times = failure
                    if pattern.search(statement) and times != 0:
                        failure[2] = None if times is None else times - 1
                        raise SqlError('ERROR:  %s' % message)
                rows = self._statement(catalog, db, statement)
        except SqlError as exc:
            return 1, b'', 'psql:%s' % exc  # nothing of the transaction is kept
        self.databases = catalog
        text = ''.join(FIELD.join(str(value) for value in row) + '\n' for row in rows)
        return 0, text.encode('utf-8'), ''

    def _statement(self, catalog, db, sql):  # pylint: disable=too-many-return-statements,too-many-branches
        match = re.match(r"^SELECT 1 FROM pg_catalog\.pg_database WHERE datname = %s$" % LITERAL, sql)
        if match:
            return [['1']] if _literal(match.group(1)) in catalog else []
        if sql.startswith('SELECT count(pg_catalog.pg_terminate_backend(pid))'):
            return [['0']]
        match = re.match(r"^SELECT pg_catalog\.pg_get_userbyid\(datdba\).* WHERE datname = %s$" % LITERAL, sql)
        if match:
            name = _literal(match.group(1))
            return [[catalog[name].owner, 'UTF8', 'C.UTF-8', 'C.UTF-8']] if name in catalog else []
        match = re.match(r'^CREATE DATABASE %s WITH TEMPLATE template0(?: OWNER %s)?' % (IDENT, IDENT), sql)
        if match:
            name = _unquote(match.group(1))
            if name in catalog:
                raise SqlError('ERROR:  database "%s" already exists' % name)
            catalog[name] = FakeDatabase(owner=_unquote(match.group(2)) if match.group(2) else 'postgres')
            return []
        match = re.match(r'^DROP DATABASE IF EXISTS %s WITH \(FORCE\)$' % IDENT, sql)
        if match:
            catalog.pop(_unquote(match.group(1)), None)
            return []
        match = re.match(r'^ALTER DATABASE %s RENAME TO %s$' % (IDENT, IDENT), sql)
        if match:
            old, new = _unquote(match.group(1)), _unquote(match.group(2))
            if old not in catalog:
                raise SqlError('ERROR:  database "%s" does not exist' % old)
            if new in catalog:
                raise SqlError('ERROR:  database "%s" already exists' % new)
            catalog[new] = catalog.pop(old)
            return []
        if sql in ('BEGIN', 'COMMIT'):
            return []
        match = re.match(r"^ALTER DATABASE %s SET %s = (.+)$" % (IDENT, IDENT), sql)
        if match:
            value = match.group(3)
            catalog[_unquote(match.group(1))].settings.append(
                (None, ['%s=%s' % (_unquote(match.group(2)), _literal(value) if value.startswith("'") else value)]))
            return []
        if sql.startswith("SELECT pg_catalog.format('ALTER DATABASE"):
            return []  # no per-database settings
        match = re.match(r"^SELECT datname FROM pg_catalog\.pg_database WHERE pg_catalog\.left\(datname, (\d+)\) = %s$"
                         % LITERAL, sql)
        if match:
            prefix = _literal(match.group(2))
            return [[name] for name in sorted(catalog) if name[:int(match.group(1))] == prefix]
        if sql.startswith('SELECT datname FROM pg_catalog.pg_database WHERE datallowconn AND NOT datistemplate'):
            return [[name] for name in sorted(catalog) if name not in ('template0', 'template1')]
        if sql.startswith("SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname IN ('vault', 'pgsodium')"):
            return [[str(len(self.key_schemas))]]
        if sql == 'SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user':
            return [['t' if self.superuser else 'f']]
        if sql == 'SELECT rolname FROM pg_catalog.pg_roles':
            return [[name] for name in self.roles + ['pg_read_all_data']]
        match = re.search(r"FROM pg_catalog\.pg_database d WHERE d\.datname = %s\s*$" % LITERAL, sql)
        if match and sql.lstrip().startswith('SELECT pg_catalog.json_build_object('):
            name = _literal(match.group(1))
            return [[json.dumps(catalog[name].settings_row())]] if name in catalog else []
        database = catalog[db]
        if re.match(r'^SELECT \d+, count\(\*\) FROM ONLY ', sql):
            rows = []
            for number, table in re.findall(r'SELECT (\d+), count\(\*\) FROM ONLY (.+?)(?= UNION ALL |$)', sql):
                if table not in database.tables:
                    raise SqlError('ERROR:  relation "%s" does not exist' % table)
                rows.append([number, database.tables[table]])
            return rows
        if sql.startswith("SELECT 'index', ") and 'i.indisvalid AND i.indisready' in sql:
            # Tag, index, valid, lists of the vector table's IVFFlat index (empty: another index).
            return [['index', index, 't', ''] for index in database.indexes]
        match = re.match(r"^SELECT EXISTS \(SELECT 1 FROM pg_catalog\.pg_available_extensions WHERE name = %s\), "
                         r"coalesce\(pg_catalog\.current_setting\(%s, true\), ''\)$" % (LITERAL, LITERAL), sql)
        if match:
            return [['t' if _literal(match.group(1)) in self.available_extensions else 'f',
                     self.server_settings.get(_literal(match.group(2)), '')]]
        if sql == 'SELECT extname, extversion FROM pg_catalog.pg_extension':
            return sorted(database.extensions.items())
        if sql.startswith('SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_proc'):
            return [['f']]  # no match_knowledge: the vector check reports itself skipped
        if sql.startswith("SELECT 'extension', extname, extversion"):
            return ([['extension', name, version] for name, version in sorted(database.extensions.items())]
                    + [['setting', 'server_version', self.server_version]])
        match = re.match(r'^SELECT count\(\*\) FROM public\.(\w+)$', sql)
        if match:
            return [[database.tables.get('public.' + match.group(1), 0)]]
        if sql.startswith('SELECT count(*) FROM public.match_knowledge('):
            return [['0']]
        if sql.startswith('SELECT indexname FROM pg_catalog.pg_indexes'):
            return [[index.split('.', 1)[1]] for index in sorted(database.indexes)]
        self.unmodelled.append(sql)
        raise SqlError('ERROR:  the fake server does not model: %s' % sql[:200])

    # psql fed the roles' script: one transaction

    def apply_roles(self, script):
        self.role_scripts.append(script)
        if self.roles_error:
            return 3, b'', self.roles_error
        for name in re.findall(r'^CREATE ROLE ("(?:[^"]|"")*"|\w+);$', script, re.MULTILINE):
            self.roles.append(_unquote(name))
        return 0, b'', ''

    # psql fed a dump: ON_ERROR_STOP

    def load(self, db, data, env):
        if self.load_error:
            return self.load_error[0], b'', self.load_error[1]
        if db not in self.databases:
            return 2, b'', 'psql: error: FATAL:  database "%s" does not exist' % db
        inspector = DumpInspector()
        inspector.feed(data)
        loaded = FakeDatabase(tables=inspector.tables, indexes=inspector.indexes,
                              extensions=dict(re.findall(r'CREATE EXTENSION IF NOT EXISTS (\w+) WITH SCHEMA \w+; '
                                                         r'-- version (\S+)', data.decode('utf-8'))),
                              owner=self.databases[db].owner)
        if self.load_tamper:
            self.load_tamper(loaded)
        self.databases[db] = loaded
        self.log.append(('psql', db, '<loaded with PGOPTIONS=%s>' % env.get('PGOPTIONS')))
        return 0, b'', ''


class FakeTarget(PgTarget):
    """The real PgTarget, its client programs and Docker client replaced by fakes."""

    def __init__(self, server, docker=None, **params):
        params.setdefault('container', DB_CONTAINER)
        super().__init__(**params)
        self.server = server
        self.fake_docker = docker or FakeDockerAPI()
        if self.container and self.container not in self.fake_docker.containers_by_name:
            self.fake_docker.add(self.container)
        self.started = []

    @property
    def docker_api(self):
        return self.fake_docker

    def program_path(self, program):
        return program

    def start(self, program, args, with_input=False, env=None):
        argv = [self.program_path(program)] + self.connection_args() + list(args)
        program_env = self.client_env()
        program_env.update(env or {})
        self.started.append({'argv': argv, 'env': program_env, 'with_input': with_input})
        return self.server.stream(program, list(args), with_input, program_env)

    def start_bulk_input(self, program, args, env=None):
        return self.start(program, args, with_input=True, env=env), 'exec', 'a fake engine has no pipes'


def install(monkeypatch, server, docker=None):
    """Every PgTarget the engine makes (wherever it makes it) talks to ``server`` and ``docker``.

    The real class is patched, not a module's name for it, so moving code between files changes nothing.
    Returns the list that records each program started: {'argv', 'env', 'with_input'}.
    """
    docker = docker if docker is not None else FakeDockerAPI()
    if DB_CONTAINER not in docker.containers_by_name:
        docker.add(DB_CONTAINER)
    started = []

    def start(target, program, args, with_input=False, env=None):
        argv = [program] + target.connection_args() + list(args)
        program_env = target.client_env()
        program_env.update(env or {})
        started.append({'argv': argv, 'env': program_env, 'with_input': with_input})
        return server.stream(program, list(args), with_input, program_env)

    monkeypatch.setattr(PgTarget, 'start', start)
    monkeypatch.setattr(PgTarget, 'start_bulk_input', lambda target, program, args, env=None: (
        start(target, program, args, with_input=True, env=env), 'exec', 'a fake engine has no pipes'))
    monkeypatch.setattr(PgTarget, 'docker_api', property(lambda target: docker))
    monkeypatch.setattr(PgTarget, 'program_path', lambda target, program: program)
    return started


# ------------------------------------------------------------------- dumps --

GLOBALS_DUMP = (
    '--\n-- PostgreSQL database cluster dump\n--\n\n'
    "SET default_transaction_read_only = off;\n\nSET client_encoding = 'UTF8';\n"
    'SET standard_conforming_strings = on;\n\n--\n-- Roles\n--\n\n'
    'CREATE ROLE anon;\nALTER ROLE anon WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION '
    'NOBYPASSRLS;\nCREATE ROLE postgres;\nALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN '
    "REPLICATION BYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$a2V5:c2VydmVy';\n\n"
    '--\n-- PostgreSQL database cluster dump complete\n--\n\n')


def dump_text(tables, indexes=(), extensions=None, complete=True, extra_sql=''):
    """A plain pg_dump as text: ``tables`` {qualified name: row count}, ``indexes`` ['schema.name'].

    Extensions carry a ``-- version`` comment the fake server reads back on load.
    """
    lines = ['--', '-- PostgreSQL database dump', '--', '',
             '-- Dumped from database version 18.0', '-- Dumped by pg_dump version 18.0', '',
             "SELECT pg_catalog.set_config('search_path', '', false);", '']
    for name, version in sorted((extensions or {}).items()):
        lines.append('CREATE EXTENSION IF NOT EXISTS %s WITH SCHEMA public; -- version %s' % (name, version))
    for table, count in tables.items():
        lines += ['CREATE TABLE %s (id integer);' % table, '', 'COPY %s (id) FROM stdin;' % table]
        lines += [str(number) for number in range(1, count + 1)] + ['\\.', '']
    if extra_sql:
        lines.append(extra_sql)
    for index in indexes:
        schema, name = index.split('.', 1)
        lines.append('CREATE INDEX %s ON %s.t USING btree (id);' % (name, schema))
    if complete:
        lines += ['', '--', '-- PostgreSQL database dump complete', '--', '']
    return '\n'.join(lines) + '\n'


def write_backup(path, text, mode=0o600):
    data = gzip.compress(text.encode('utf-8'))
    with open(path, 'wb') as handle:
        handle.write(data)
    os.chmod(path, mode)
    return str(path)


def module_params(spec, **options):
    """What AnsibleModule would hand the engine: every option of ``spec`` at its default, then ``options``."""
    params = dict((name, copy.deepcopy(option.get('default'))) for name, option in spec.items())
    unknown = set(options) - set(params)
    assert not unknown, unknown
    params.update(options)
    return params


# ------------------------------------------------------------------ volume --

DIRECTORY = None
VOLUME_NAME = 'fake-volume'
MOUNT_POINT = '/var/lib/postgresql/data'


def pgdata_files(version=b'18\n', marker=b'old'):
    """A tiny PostgreSQL data directory: {relative path: bytes, or DIRECTORY}."""
    return {'PG_VERSION': version, 'global': DIRECTORY, 'global/pg_control': b'control-' + marker,
            'base': DIRECTORY, 'base/1': DIRECTORY, 'base/1/1259': b'rows-' + marker}


def tar_of(files, root=True):
    """A tar stream like ``docker cp`` (and ``tar -C /data .``) makes of ``files``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w', format=tarfile.PAX_FORMAT) as archive:
        entries = ([('.', DIRECTORY)] if root else []) + sorted(files.items())
        for name, content in entries:
            info = tarfile.TarInfo(name if name == '.' or not root else './' + name)
            info.uid = info.gid = 999
            if content is DIRECTORY:
                info.type, info.mode = tarfile.DIRTYPE, 0o700
                archive.addfile(info)
            else:
                info.size, info.mode = len(content), 0o600
                archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def files_of_tar(data):
    files = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode='r') as archive:
        for member in archive:
            name = '/'.join(part for part in member.name.split('/') if part not in ('', '.'))
            if name:
                files[name] = DIRECTORY if member.isdir() else archive.extractfile(member).read()
    return files


class FakeResponse:

    def __init__(self, status_code, data=b''):
        self.status_code = status_code
        self._data = data
        self.text = data.decode('utf-8', 'replace') if status_code >= 400 else ''
        self.closed = False

    def json(self):
        return {'message': self.text}

    def iter_content(self, size):
        for position in range(0, len(self._data), size):
            yield self._data[position:position + size]

    def close(self):
        self.closed = True


def _relative(path):
    """A path in the DB container -> the volume's relative path ('' for its root)."""
    return path[len(MOUNT_POINT):].strip('/')


class FakeVolumeDocker:
    """A Docker engine holding one DB container whose volume is ``files`` (see pgdata_files).

    The image's coreutils that the restore helper runs (find, mv, rm, mkdir, rmdir, stat, chown,
    chmod) act on ``files``; pg_isready answers ``ready(files)`` while the DB container runs.
    ``fail`` maps a program name (or 'put_archive', 'get_archive', 'start', 'stop') to an error.
    """

    base_url = 'http+docker://fake'
    api_version = '1.45'

    def __init__(self, files, running=True):
        self.files = dict(files)
        self.db = {'Id': 'id-fake-db', 'Name': '/' + DB_CONTAINER, 'Image': 'sha256:fakeimage', 'RestartCount': 0,
                   'State': {'Running': running, 'Status': 'running' if running else 'exited', 'ExitCode': 0},
                   'Mounts': [{'Type': 'volume', 'Name': VOLUME_NAME, 'Destination': MOUNT_POINT}],
                   'Config': {'Env': ['PGDATA=' + MOUNT_POINT, 'POSTGRES_USER=postgres'], 'Labels': {}},
                   'HostConfig': {'PortBindings': {}}}
        self.containers_by_name = {DB_CONTAINER: self.db}
        self.helpers = {}
        self.calls = []
        self.fail = {}
        self.ready = lambda files: True
        self.root_metadata = (999, 999, 0o700)
        self._execs = {}

    # containers

    def _container(self, name):
        if name in (DB_CONTAINER, self.db['Id']):
            return self.db
        if name in self.helpers:
            return self.helpers[name]
        raise NotFound('No such container: %s' % name)

    def _failing(self, what):
        if what in self.fail:
            raise self.fail[what]

    def inspect_container(self, name):
        return copy.deepcopy(self._container(name))

    def stop(self, name, timeout=None):
        self.calls.append(('stop', name))
        self._failing('stop')
        self._container(name)['State'].update(Running=False, Status='exited')

    def start(self, name):
        self.calls.append(('start', name))
        if self._container(name) is self.db:
            self._failing('start')
        self._container(name)['State'].update(Running=True, Status='running')

    def logs(self, name, **_kwargs):
        return b'LOG:  database system is shut down\nFATAL:  the fake server does not start\n'

    def create_host_config(self, **kwargs):
        return kwargs

    def create_container(self, image, **kwargs):
        assert image == self.db['Image']
        name = kwargs['name']
        self.helpers[name] = {'Id': name, 'State': {'Running': False}}
        self.calls.append(('create', name))
        return {'Id': name}

    def remove_container(self, name, force=False, v=False):
        self.calls.append(('remove', name))
        self.helpers.pop(name, None)

    def actions(self, kind, db_only=True):
        return [name for action, name in self.calls if action == kind and (not db_only or name == self.db['Id'])]

    # archives

    def get(self, url, params=None, stream=False, timeout=None):
        self._failing('get_archive')
        path = params['path']
        if path == MOUNT_POINT + '/.':
            return FakeResponse(200, tar_of(self.files))
        relative = path[len(MOUNT_POINT) + 1:]
        if relative in self.files and self.files[relative] is not DIRECTORY:
            return FakeResponse(200, tar_of({relative: self.files[relative]}, root=False))
        return FakeResponse(404, b'Could not find the file %s in container' % path.encode())

    def put_archive(self, name, path, chunks):
        assert path == MOUNT_POINT and name in self.helpers
        data = b''.join(chunks)
        self._failing('put_archive')
        self.files.update(files_of_tar(data))
        return True

    # exec

    def exec_create(self, container, argv, **_kwargs):
        exec_id = 'exec-%d' % len(self._execs)
        self._execs[exec_id] = {'container': container, 'argv': list(argv)}
        self.calls.append(('exec', ' '.join(argv)))
        return {'Id': exec_id}

    def exec_start(self, exec_id, socket=False):
        run = self._execs[exec_id]
        rc, out, err = self._run(run['container'], run['argv'])
        run['rc'] = rc
        reader, writer = socket_module.socketpair()
        for kind, data in ((1, out.encode()), (2, err.encode())):
            if data:
                writer.sendall(struct.pack('>BxxxL', kind, len(data)) + data)
        writer.close()
        return reader

    def exec_inspect(self, exec_id):
        return {'Running': False, 'ExitCode': self._execs[exec_id]['rc']}

    def _run(self, container, argv):  # pylint: disable=too-many-return-statements
        program = argv[0]
        if program in self.fail:
            return 1, '', '%s: %s' % (program, self.fail[program])
        if program == 'pg_isready':
            return (0, '', '') if self.db['State']['Running'] and self.ready(self.files) else (2, '', '')
        assert container in self.helpers, (container, argv)
        if program == 'stat':
            return 0, '%d %d %o\n' % self.root_metadata, ''
        if program == 'chown':
            uid, gid = argv[1].split(':')
            self.root_metadata = (int(uid), int(gid), self.root_metadata[2])
            return 0, '', ''
        if program == 'chmod':
            self.root_metadata = self.root_metadata[:2] + (int(argv[1], 8),)
            return 0, '', ''
        if program == 'mkdir':
            self.files[_relative(argv[-1])] = DIRECTORY
            return 0, '', ''
        if program in ('rmdir', 'rm'):
            gone = _relative(argv[-1])
            for name in [name for name in self.files if name == gone or name.startswith(gone + '/')]:
                del self.files[name]
            return 0, '', ''
        assert program == 'find', argv
        base = _relative(argv[1])
        exclude = argv[argv.index('-name') + 1] if '-name' in argv else None
        children = sorted({name[len(base) + 1 if base else 0:].split('/')[0] for name in self.files
                           if (name.startswith(base + '/') if base else True)})
        children = [child for child in children if child != exclude]
        if argv[-1] == '-print':
            return 0, ''.join('%s/%s\n' % (argv[1].rstrip('/'), child) for child in children), ''
        command = argv[argv.index('-exec') + 1:-1]
        if command[0] in self.fail:
            return 1, '', '%s: %s' % (command[0], self.fail[command[0]])
        for child in children:
            source = '/'.join(part for part in (base, child) if part)
            moved = {name: content for name, content in self.files.items()
                     if name == source or name.startswith(source + '/')}
            for name in moved:
                del self.files[name]
            if command[0] == 'mv':
                destination = _relative(command[-1])
                for name, content in moved.items():
                    self.files['/'.join(part for part in (destination, name[len(base) + 1 if base else 0:])
                                        if part)] = content
            else:
                assert command[:2] == ['rm', '-rf'], command
        return 0, '', ''


def ended_process():
    """(pid, identity) of a process that ran and has ended: a restore record's writer that died."""
    process = subprocess.Popen([sys.executable, '-c', 'import sys; sys.stdin.read()'], stdin=subprocess.PIPE)
    identity = process_identity(process.pid)
    process.communicate(b'')
    assert identity is not None and process_identity(process.pid) is None
    return process.pid, identity
