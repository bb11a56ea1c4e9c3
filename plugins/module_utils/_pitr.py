# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""Point-in-time recovery, what archive, base backups and restore share.

The layout of ``<backup_dir>/pitr``, its lock and ``.pgpass``; the server as the archive needs
it (settings, pg_hba.conf, the replication slot); PostgreSQL's own tools run in one-shot
containers made from the DB container's image, and the receiver container that runs
``pg_receivewal``. The password reaches those containers only as ``/pitr/.pgpass`` (PGPASSFILE),
never their argv or environment.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import secrets
import stat

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import (
    DirectoryLock,
    read_private_file,
    storage_error,
    write_file_atomically,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._commands import (
    PgTarget,
    feed_stream,
    last_line,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._docker import (
    API_ERRORS,
    DockerExecStream,
    NotFound,
    TailBuffer,
    api_call,
    reason,
    run_in_container,
    volume_mount,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    CommandError,
    ConfigError,
    DockerError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._sql import quote_ident, quote_literal

CONTAINER_ROOT = '/pitr'
CONTAINER_PGPASS = CONTAINER_ROOT + '/.pgpass'
CONTAINER_WAL = CONTAINER_ROOT + '/wal'
RECEIVER_APPLICATION = 'cortexreview-pitr-receiver'
TOOL_APPLICATION = 'cortexreview-pitr-tool'
PITR_LABEL = 'org.cortexreview.supabase_backup.pitr'
CONFIG_LABEL = 'org.cortexreview.supabase_backup.pitr-config'
TOOL_LABEL = 'org.cortexreview.supabase_backup.pitr-tool'
POSTGRES_PORT = 5432
# Physical slot names: lower-case letters, digits and underscores, at most 63 bytes.
SLOT_PATTERN = re.compile(r'^[a-z0-9_]{1,63}$')
# Networks without DNS for container names: the DB is reached by its address there.
NETWORKS_WITHOUT_NAMES = ('bridge', 'default')
TOOL_LOG_LINES = 200
TRUE = 't'


class PitrSettings:
    """The options every point-in-time recovery entry point shares, validated."""

    def __init__(self, params):
        self.container = params.get('container') or ''
        self.backup_dir = os.path.abspath(params['backup_dir']) if params.get('backup_dir') else None
        self.login_user = params.get('login_user') or 'postgres'
        self.login_password = params.get('login_password')
        self.docker_host = params.get('docker_host')
        self.slot = params.get('slot') or 'cortexreview_pitr'
        self.lock_timeout = params.get('lock_timeout', 600)
        self.metrics_file = params.get('metrics_file')
        if not self.container:
            raise ConfigError('container must name the database container')
        if not self.backup_dir:
            raise ConfigError('backup_dir is required: the WAL archive and base backups live under <backup_dir>/pitr')
        if not SLOT_PATTERN.match(self.slot):
            raise ConfigError('slot %r is invalid: use lower-case letters, digits and "_" only, at most 63'
                              % (self.slot,))
        if self.lock_timeout is None or self.lock_timeout < 0:
            raise ConfigError('lock_timeout must be 0 or more seconds')
        check_role_name(self.login_user)
        self.layout = PitrLayout(self.backup_dir)
        self.target = PgTarget(container=self.container, login_user=self.login_user,
                               login_password=self.login_password, docker_host=self.docker_host)


def check_role_name(name):
    """A role name we can write into pg_hba.conf (quoted) and .pgpass (escaped) without surprises."""
    if not name or '"' in name or any(ord(char) < 32 or ord(char) == 127 for char in name):
        raise ConfigError('login_user %r cannot be used for replication: no double quotes or control characters'
                          % (name,))
    return name


class PitrLayout:
    """The paths under ``<backup_dir>/pitr`` (see SPEC-13), on the host and in tool containers."""

    def __init__(self, backup_dir):
        self.backup_dir = backup_dir
        self.root = os.path.join(backup_dir, 'pitr')
        self.pgpass = os.path.join(self.root, '.pgpass')
        self.wal = os.path.join(self.root, 'wal')
        self.base = os.path.join(self.root, 'base')
        self.restore_points = os.path.join(self.root, 'restore_points.jsonl')
        self.lock = os.path.join(self.root, '.lock')

    def directories(self):
        return [self.backup_dir, self.root, self.wal, self.base]

    def base_dir(self, name):
        return os.path.join(self.base, name)

    def base_entry(self, name):
        return os.path.join(self.base, name + '.json')

    def base_partial(self, name):
        return os.path.join(self.base, '.%s.partial' % name)

    def retired(self, stamp):
        return os.path.join(self.root, 'retired-%s' % stamp)

    def in_container(self, path):
        """Where a host path under ``root`` is in a tool or receiver container (bound at /pitr)."""
        relative = os.path.relpath(path, self.root)
        if relative == '.':
            return CONTAINER_ROOT
        if relative.startswith('..'):
            raise ConfigError('%s is not under %s' % (path, self.root))
        return CONTAINER_ROOT + '/' + relative.replace(os.sep, '/')

    def ensure(self, check_mode=False):
        """Make the directories 0700 (and tighten a looser mode); returns what was (would be) changed."""
        changes = []
        for path in self.directories():
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                changes.append('create directory %s' % path)
                if not check_mode:
                    try:
                        os.makedirs(path, 0o700)
                        os.chmod(path, 0o700)
                    except OSError as exc:
                        raise storage_error('create', path, exc) from None
                continue
            except OSError as exc:
                raise storage_error('inspect', path, exc) from None
            if not stat.S_ISDIR(info.st_mode):
                raise ConfigError('%s exists and is not a directory' % path)
            if path != self.backup_dir and stat.S_IMODE(info.st_mode) != 0o700:
                changes.append('set mode 0700 on %s' % path)
                if not check_mode:
                    try:
                        os.chmod(path, 0o700)
                    except OSError as exc:
                        raise storage_error('set the mode of', path, exc) from None
        return changes


class PitrLock(DirectoryLock):
    """The flock on ``pitr/.lock``: base backup, retention, restore and archive setup never overlap."""

    def __init__(self, layout, timeout, path=None):
        super().__init__(path or layout.lock, timeout)

    def _open(self):
        return os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


# .pgpass

def pgpass_escape(value):
    return value.replace('\\', '\\\\').replace(':', '\\:')


def pgpass_content(user, password):
    if '\n' in password or '\r' in password:
        raise ConfigError('login_password cannot contain a line break (it goes into a .pgpass file)')
    return '*:*:*:%s:%s\n' % (pgpass_escape(user), pgpass_escape(password))


def write_pgpass(layout, user, password, check_mode=False):
    """Make ``pitr/.pgpass`` hold exactly the credentials (atomic, 0600); returns whether it changed.

    Without a password an existing file is kept (a run that only reads needs no password), and
    none at all is an error.
    """
    if password is None:
        if os.path.exists(layout.pgpass):
            return False
        raise ConfigError('login_password is required: the receiver and the tools connect over the network '
                          'with it (through %s)' % layout.pgpass)
    wanted = pgpass_content(user, password).encode('utf-8')
    try:
        current = read_private_file(layout.pgpass, 'the password file') if os.path.lexists(layout.pgpass) else None
    except ConfigError:
        current = None  # wrong mode or owner: replaced by a private one
    if current == wanted and stat.S_IMODE(os.stat(layout.pgpass).st_mode) == 0o600:
        return False
    if not check_mode:
        write_file_atomically(layout.pgpass, wanted, 0o600)
    return True


# The server

def parse_bool(value):
    return value == TRUE


class PitrServer:
    """The PostgreSQL server as the archive sees it, through psql in the DB container."""

    def __init__(self, target):
        self.target = target

    def query(self, sql):
        return self.target.query(sql)

    def value(self, sql):
        rows = self.query(sql)
        return rows[0][0] if rows and rows[0] else ''

    def version_num(self):
        return int(self.value('SHOW server_version_num'))

    def settings(self, names):
        """{name: {'setting', 'unit', 'context', 'source', 'pending_restart'}} of the settings that exist."""
        listed = ', '.join(quote_literal(name) for name in names)
        rows = self.query("SELECT name, setting, coalesce(unit, ''), context, source, pending_restart "
                          'FROM pg_settings WHERE name IN (%s)' % listed)
        return dict((row[0], {'setting': row[1], 'unit': row[2], 'context': row[3], 'source': row[4],
                              'pending_restart': parse_bool(row[5])}) for row in rows)

    def role(self, name):
        """(superuser, replication) of a role, or None when there is no such role."""
        rows = self.query('SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = %s' % quote_literal(name))
        if not rows:
            return None
        return parse_bool(rows[0][0]), parse_bool(rows[0][1])

    def alter_system(self, name, value):
        self.query('ALTER SYSTEM SET %s = %s' % (quote_ident(name), quote_literal(str(value))))

    def reload(self):
        if self.value('SELECT pg_reload_conf()') != TRUE:
            raise CommandError('the server refused to reload its configuration')

    # pg_hba.conf

    def hba_file(self):
        return self.value('SHOW hba_file')

    def hba_rules(self):
        """The rules of pg_hba.conf as the server reads the file now, in file order (PostgreSQL 10+)."""
        rows = self.query("SELECT line_number, coalesce(type, ''), coalesce(array_to_string(database, ','), ''), "
                          "coalesce(array_to_string(user_name, ','), ''), coalesce(address, ''), "
                          "coalesce(netmask, ''), coalesce(auth_method, ''), coalesce(error, '') "
                          'FROM pg_hba_file_rules')
        keys = ('line_number', 'type', 'database', 'user_name', 'address', 'netmask', 'auth_method', 'error')
        return [dict(zip(keys, row)) for row in rows]

    def append_hba_line(self, api, container, path, line):
        """Append ``line`` to ``path`` in the container, as the file's owner; the line goes on stdin."""
        rc, owner, err = run_in_container(api, container, ['stat', '-c', '%u:%g', '--', path])
        if rc != 0:
            raise CommandError('cannot read the owner of %s in container %s: %s'
                               % (path, container, last_line(err) or 'exit %s' % rc), rc=rc, stderr=err)
        rc, last, err = run_in_container(api, container, ['tail', '-c', '1', '--', path], user=owner.strip())
        if rc != 0:
            raise CommandError('cannot read %s in container %s: %s' % (path, container, last_line(err) or rc),
                               rc=rc, stderr=err)
        # TailBuffer strips: a file ending in a newline reads back as ''.
        text = ('\n' if last else '') + line + '\n'
        stream = DockerExecStream(api, container, ['tee', '-a', '--', path], {}, with_input=True, user=owner.strip())
        rc, _out, err = feed_stream(stream, [text.encode('utf-8')])
        if rc != 0:
            raise CommandError('cannot append to %s in container %s: %s' % (path, container, last_line(err) or rc),
                               rc=rc, stderr=err)

    # Replication slots

    def slot(self, name):
        """{'slot_type', 'active', 'restart_lsn', 'wal_status', 'behind'} of a slot, or None."""
        rows = self.query("SELECT slot_type, active, coalesce(restart_lsn::text, ''), coalesce(wal_status, ''), "
                          "coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint::text, '') "
                          'FROM pg_replication_slots WHERE slot_name = %s' % quote_literal(name))
        if not rows:
            return None
        row = rows[0]
        return {'slot_type': row[0], 'active': parse_bool(row[1]), 'restart_lsn': row[2] or None,
                'wal_status': row[3] or None, 'behind': int(row[4]) if row[4] else None}

    def slot_count(self):
        return int(self.value('SELECT count(*) FROM pg_replication_slots'))

    def create_slot(self, name):
        self.query('SELECT pg_create_physical_replication_slot(%s, true)' % quote_literal(name))

    def drop_slot(self, name):
        self.query('SELECT pg_drop_replication_slot(%s)' % quote_literal(name))

    def senders(self):
        """The WAL senders now connected: [{'application_name', 'state', 'reply_age'}]."""
        rows = self.query("SELECT coalesce(application_name, ''), coalesce(state, ''), "
                          "coalesce(extract(epoch FROM now() - reply_time)::text, '') FROM pg_stat_replication")
        return [{'application_name': row[0], 'state': row[1], 'reply_age': float(row[2]) if row[2] else None}
                for row in rows]


def hba_errors(rules):
    """'line N: error' of every rule the server could not read; with any, it keeps its old rules on reload."""
    return ['line %s: %s' % (rule['line_number'], rule['error']) for rule in rules if rule['error']]


def _address_covers(rule, subnet):
    if rule['address'] in ('all', 'samenet'):
        return True
    if subnet is None or not rule['netmask']:
        return False
    try:
        network = ipaddress.ip_network('%s/%s' % (rule['address'], rule['netmask']), strict=False)
    except ValueError:
        return False
    return network.version == subnet.version and subnet.subnet_of(network)


def replication_rule(rules, user, subnet):
    """The first rule that decides a replication connection of ``user`` from ``subnet`` (pg_hba: first match wins).

    Only plain ``host`` rules naming ``replication`` and the user (or ``all``) with an address that covers
    the whole subnet count; None when no rule does.
    """
    for rule in rules:
        if rule['error'] or rule['type'] != 'host':
            continue
        if 'replication' not in rule['database'].split(','):
            continue
        users = rule['user_name'].split(',')
        if user not in users and 'all' not in users:
            continue
        if _address_covers(rule, subnet):
            return rule
    return None


def hba_line(user):
    """Our line: replication for ``user`` from the DB's own networks, with a password."""
    return 'host replication "%s" samenet scram-sha-256' % check_role_name(user)


def db_network(info):
    """(network name, DB address, DB subnet) of the container's first network."""
    networks = (info.get('NetworkSettings') or {}).get('Networks') or {}
    for name, network in networks.items():
        if name == 'host' or name == 'none':
            continue
        address = network.get('IPAddress') or ''
        subnet = None
        if address and network.get('IPPrefixLen'):
            subnet = ipaddress.ip_network('%s/%s' % (address, network['IPPrefixLen']), strict=False)
        return name, address, subnet
    raise ConfigError('container %s is on no network another container can join (networks: %s)'
                      % (info.get('Name', '').lstrip('/'), ', '.join(networks) or 'none'))


def db_host(info):
    """How a container on the DB's network names the DB: its name, or its address where names do not resolve."""
    network, address, _subnet = db_network(info)
    if network in NETWORKS_WITHOUT_NAMES:
        if not address:
            raise ConfigError('container %s has no address on network %s' % (info['Name'].lstrip('/'), network))
        return address
    return info['Name'].lstrip('/')


def tool_environment():
    return {'PGPASSFILE': CONTAINER_PGPASS, 'PGAPPNAME': TOOL_APPLICATION}


def connection_argv(db_info, user):
    """The connection options of a tool or the receiver; the password comes from PGPASSFILE (-w)."""
    return ['-h', db_host(db_info), '-p', str(POSTGRES_PORT), '-U', user, '-w']


def _host_config(api, layout, network, extra_mounts=(), **kwargs):
    mounts = [volume_mount(CONTAINER_ROOT, path=layout.root)] + list(extra_mounts)
    return api.create_host_config(mounts=mounts, network_mode=network, **kwargs)


def run_tool(db, settings, argv, what, extra_mounts=(), user='0:0', network=True):
    """Run one of PostgreSQL's tools in a one-shot container from the DB container's image; returns stdout.

    The container (``cortexreview-pitr-tool-<random>``) is on the DB's network with ``<backup_dir>/pitr``
    at /pitr and PGPASSFILE=/pitr/.pgpass; it is removed afterwards whatever happened. A non-zero exit
    raises a CommandError with the end of the tool's stderr. ``db`` is a DbContainer.
    """
    api = db.api
    info = db.info()
    name = 'cortexreview-pitr-tool-%s' % secrets.token_hex(4)
    network_name = db_network(info)[0] if network else 'none'
    host_config = _host_config(api, settings.layout, network_name, extra_mounts)
    created = api_call('create the tool container %s from the image of %s' % (name, db.name), api.create_container,
                       db.image, entrypoint=argv[:1], command=list(argv[1:]), user=user, name=name,
                       environment=tool_environment(), labels={TOOL_LABEL: db.name}, host_config=host_config,
                       network_disabled=not network)
    container_id = created['Id']
    try:
        api_call('start the tool container %s' % name, api.start, container_id)
        # No timeout: a base backup of a large database takes as long as it takes.
        status = api_call('wait for %s in container %s' % (argv[0], name), api.wait, container_id, timeout=None)
        returncode = status.get('StatusCode', -1) if isinstance(status, dict) else -1
        stdout = api_call('read the output of %s' % argv[0], api.logs, container_id, stdout=True, stderr=False)
        stderr = TailBuffer()
        stderr.add(api_call('read the errors of %s' % argv[0], api.logs, container_id, stdout=False, stderr=True,
                            tail=TOOL_LOG_LINES))
    finally:
        try:
            api.remove_container(container_id, force=True, v=True)
        except API_ERRORS:
            pass
    err = stderr.text()
    if returncode != 0:
        raise CommandError('cannot %s: %s' % (what, last_line(err) or '%s exited with %s' % (argv[0], returncode)),
                           rc=returncode, stderr=err)
    return stdout.decode('utf-8', 'replace')


class ReceiverContainer:
    """The container running ``pg_receivewal`` into ``pitr/wal``: ``<db container>-pitr-receiver``.

    Its whole configuration is hashed into a label; a container whose label differs (or that is not
    ours) is replaced, a stopped one is started.
    """

    def __init__(self, db, settings):
        self.api = db.api
        self.db = db
        self.settings = settings
        self.db_info = db.info()
        self.db_name = self.db_info['Name'].lstrip('/')
        self.name = '%s-pitr-receiver' % self.db_name

    def command(self):
        return (['pg_receivewal', '-D', CONTAINER_WAL, '-S', self.settings.slot]
                + connection_argv(self.db_info, self.settings.login_user)
                + ['--synchronous', '--status-interval=10'])

    def desired(self):
        """Everything the container is made from; its hash is the config label."""
        return {
            'image': self.db.image,
            'command': self.command(),
            'user': '0:0',
            'environment': {'PGPASSFILE': CONTAINER_PGPASS, 'PGAPPNAME': RECEIVER_APPLICATION},
            'network': db_network(self.db_info)[0],
            'bind': [self.settings.layout.root, CONTAINER_ROOT],
            'restart': 'unless-stopped',
        }

    def config_hash(self):
        encoded = json.dumps(self.desired(), sort_keys=True).encode('utf-8')
        return hashlib.sha256(encoded).hexdigest()[:16]

    def inspect(self):
        try:
            return self.api.inspect_container(self.name)
        except NotFound:
            return None
        except API_ERRORS as exc:
            raise DockerError('cannot inspect container %s: %s' % (self.name, reason(exc))) from None

    def state(self, info=None):
        """'missing', 'outdated' (made with another config), 'stopped' or 'running'.

        A container of that name that is not ours is never touched: a ConfigError.
        """
        info = self.inspect() if info is None else info
        if info is None:
            return 'missing'
        labels = (info.get('Config') or {}).get('Labels') or {}
        if labels.get(PITR_LABEL) != self.db_name:
            raise ConfigError('a container named %s exists but is not the receiver of %s (label %s); remove or rename it'
                              % (self.name, self.db_name, PITR_LABEL))
        if labels.get(CONFIG_LABEL) != self.config_hash():
            return 'outdated'
        running = (info.get('State') or {}).get('Running') and not info['State'].get('Restarting')
        return 'running' if running else 'stopped'

    def create(self):
        desired = self.desired()
        host_config = _host_config(self.api, self.settings.layout, desired['network'],
                                   restart_policy={'Name': desired['restart']})
        created = api_call('create the receiver container %s' % self.name, self.api.create_container,
                           desired['image'], entrypoint=desired['command'][:1], command=desired['command'][1:],
                           user=desired['user'], name=self.name, environment=desired['environment'],
                           labels={PITR_LABEL: self.db_name, CONFIG_LABEL: self.config_hash()},
                           host_config=host_config)
        self.start(created['Id'])

    def start(self, container=None):
        api_call('start the receiver container %s' % self.name, self.api.start, container or self.name)

    def restart(self):
        """Restart whatever its state (stopped, or waiting in the restart policy's back-off)."""
        api_call('restart the receiver container %s' % self.name, self.api.restart, self.name, timeout=10)

    def remove(self):
        """Remove the container when it exists; returns whether it did."""
        if self.inspect() is None:
            return False
        # v=True: the image's VOLUME (the data directory) gave it an anonymous volume that would stay behind.
        api_call('remove the receiver container %s' % self.name, self.api.remove_container, self.name, force=True,
                 v=True)
        return True

    def log_tail(self):
        try:
            text = self.api.logs(self.name, stdout=True, stderr=True, tail=20).decode('utf-8', 'replace')
        except API_ERRORS:
            return ''
        return last_line(text)
