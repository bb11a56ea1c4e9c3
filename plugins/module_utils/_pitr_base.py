# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""Base backups of the point-in-time archive: ``pg_basebackup``, ``pg_verifybackup``, the catalog, retention.

One run, under the archive's lock: the backup is written to ``base/.pitr-base-STAMP.partial`` by
``pg_basebackup`` in a tool container, checked against its manifest by ``pg_verifybackup``, made
private (0600/0700), described by ``base/pitr-base-STAMP.json`` and only then renamed into place.
Any failure removes the partial directory (and the .json, if written), so the catalog never names a
backup that is not complete and verified. Then retention removes whole chains and the WAL only
they needed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import time

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backend import Backend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import (
    storage_error,
    write_file_atomically,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._docker import ensure_running
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    BackupFileError,
    CommandError,
    ConfigError,
    StorageError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._pitr import (
    PitrLock,
    PitrServer,
    PitrSettings,
    connection_argv,
    db_network,
    replication_rule,
    run_tool,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._pitr_wal import (
    BASE_PREFIX,
    CATALOG_FORMAT,
    FULL,
    INCREMENTAL,
    HISTORY,
    chains,
    expired_chains,
    find_gaps,
    lsn_segment,
    oldest_start_wal,
    parse_lsn,
    parse_wal_name,
    read_catalog,
    wal_before,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._volume_container import DbContainer

INCREMENTAL_MIN_VERSION = 170000
PARTIAL_PATTERN = re.compile(r'^\.pitr-base-\d{8}_\d{6}\.partial$')
# Two runs in one second would share a name: the next one waits for the next second (runs hold the lock).
NAME_WAIT_SECONDS = 2.5
ARCHIVE_HINT = 'run cortexreview.supabase_backup.pitr_archive (state=present) first'


class PitrBaseSettings(PitrSettings):
    """pitr_base_backup's options: the common PITR ones plus the kind of backup and retention."""

    def __init__(self, params):
        super().__init__(params)
        self.incremental = bool(params.get('incremental'))
        self.retention_full = params.get('retention_full', 2)
        self.retention_days = params.get('retention_days', 14)
        if self.retention_full is None or self.retention_full < 1:
            raise ConfigError('retention_full must be at least 1: the newest full base backup is always kept')
        if self.retention_days is None or self.retention_days < 0:
            raise ConfigError('retention_days must be 0 or more')


# ------------------------------------------------------------------------------- pure helpers --

def parse_backup_label(text):
    """start_lsn, start_wal and timeline from a base backup's ``backup_label``; BackupFileError if absent."""
    fields = {}
    for line in text.splitlines():
        key, separator, value = line.partition(':')
        if separator:
            fields[key.strip()] = value.strip()
    match = re.match(r'^([0-9A-Fa-f]+/[0-9A-Fa-f]+) \(file ([0-9A-F]{24})\)$', fields.get('START WAL LOCATION', ''))
    timeline = fields.get('START TIMELINE', '')
    if not match or not timeline.isdigit():
        raise BackupFileError('backup_label has no START WAL LOCATION / START TIMELINE: not a base backup')
    return {'start_lsn': match.group(1), 'start_wal': match.group(2), 'timeline': int(timeline)}


def parse_manifest(data):
    """(stop_lsn, stop timeline, system identifier or None) from a ``backup_manifest``'s JSON text."""
    try:
        manifest = json.loads(data)
        ranges = manifest['WAL-Ranges']
        last = ranges[-1]
        stop_lsn, stop_timeline = last['End-LSN'], int(last['Timeline'])
        parse_lsn(stop_lsn)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise BackupFileError('backup_manifest has no usable WAL-Ranges: %s' % exc) from None
    system = manifest.get('System-Identifier')
    return stop_lsn, stop_timeline, str(system) if system is not None else None


def catalog_entry(name, kind, parent, label, manifest_text, server, started_at, finished_at, finished_epoch, size):
    """The catalog entry of a verified base backup (SPEC-13's keys, exactly)."""
    stop_lsn, stop_timeline, system = parse_manifest(manifest_text)
    if system is not None and system != server['system_identifier']:
        raise BackupFileError('the backup manifest names database system %s, the server is %s'
                              % (system, server['system_identifier']))
    size_bytes = server['wal_segment_size']
    return {
        'format': CATALOG_FORMAT, 'name': name, 'type': kind, 'parent': parent, 'timeline': label['timeline'],
        'start_lsn': label['start_lsn'], 'stop_lsn': stop_lsn, 'start_wal': label['start_wal'],
        'stop_wal': lsn_segment(stop_lsn, stop_timeline, size_bytes, previous=True),
        'started_at': started_at, 'finished_at': finished_at, 'finished_epoch': finished_epoch,
        'pg_version': str(server['version_num'] // 10000), 'system_identifier': server['system_identifier'],
        'wal_segment_size': size_bytes, 'size': size,
    }


def choose_kind(incremental, server, catalog):
    """(type, parent entry or None, why a requested incremental became a full or None)."""
    if not incremental:
        return FULL, None, None
    version = server['version_num']
    if version < INCREMENTAL_MIN_VERSION:
        return FULL, None, ('server is PostgreSQL %d: incremental base backups need PostgreSQL 17 or later; '
                            'took a full one' % (version // 10000))
    if not server['summarize_wal']:
        return FULL, None, ('summarize_wal is off on the server, so there are no WAL summaries for an incremental '
                            'base backup (pitr_archive turns it on); took a full one')
    if catalog.problems:
        return FULL, None, ('the catalog has entries that cannot be read (%s); took a full base backup rather than '
                            'build on a chain that may be incomplete' % '; '.join(catalog.problems))
    groups = chains(catalog)
    if not groups:
        return FULL, None, 'there is no full base backup yet to build an incremental one on; took a full one'
    parent = groups[-1][-1]
    if parent['system_identifier'] != server['system_identifier']:
        return FULL, None, ('the newest base backup %s is of database system %s, the server is %s; took a full one'
                            % (parent['name'], parent['system_identifier'], server['system_identifier']))
    if parent['timeline'] != server['timeline']:
        return FULL, None, ('the newest base backup %s is on timeline %d, the server on %d; took a full one'
                            % (parent['name'], parent['timeline'], server['timeline']))
    return INCREMENTAL, parent, None


def restrict_modes(path):
    """Directories 0700, files 0600 under ``path`` (itself included); symlinks are not followed."""
    os.chmod(path, 0o700)
    for root, directories, files in os.walk(path):
        for name in directories + files:
            child = os.path.join(root, name)
            info = os.lstat(child)
            if stat.S_ISDIR(info.st_mode):
                os.chmod(child, 0o700)
            elif stat.S_ISREG(info.st_mode):
                os.chmod(child, 0o600)


def directory_size(path):
    """Bytes of the regular files under ``path``."""
    total = 0
    for root, _directories, files in os.walk(path):
        for name in files:
            info = os.lstat(os.path.join(root, name))
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    return total


def remove_tree(path):
    """Remove a directory tree, or a file; nothing when absent."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass


def wal_histories(wal_dir, names):
    """{timeline: text} of the ``.history`` files among ``names`` (unreadable ones left out)."""
    histories = {}
    for name in names:
        parsed = parse_wal_name(name)
        if parsed is not None and parsed.kind == HISTORY:
            try:
                with open(os.path.join(wal_dir, name), encoding='utf-8') as stream:
                    histories[parsed.timeline] = stream.read()
            except (OSError, ValueError):
                continue
    return histories


# ---------------------------------------------------------------------------------------- backend --

class PitrBaseBackend(Backend):
    """Take one base backup (full or incremental), verify it, catalog it, then apply retention."""

    settings_class = PitrBaseSettings
    metrics_kind = 'pitr'
    metrics_operation = 'base_backup'

    def run(self):
        started = time.monotonic()
        settings = self.settings
        layout = settings.layout
        self.check_layout()
        db = DbContainer(settings.target.docker_api, None, name=settings.container)
        ensure_running(db.api, db.name)
        info = db.info()
        server = self.server_facts(PitrServer(settings.target), info)
        if self.check_mode:
            return self.predict(server)
        with PitrLock(layout, settings.lock_timeout):
            catalog = read_catalog(layout)
            kind, parent, why = choose_kind(settings.incremental, server, catalog)
            if why:
                self.warnings.append(why)
            removed_partials = self.remove_stale_partials()
            name = self.new_name()
            try:
                entry = self.take(db, info, server, name, kind, parent)
            except CommandError as exc:
                if kind != INCREMENTAL or 'summar' not in (exc.details.get('stderr') or exc.msg).lower():
                    raise
                # The server lacks WAL summaries back to the parent (summarize_wal turned on since, or
                # wal_summary_keep_time): a full backup starts a new chain.
                self.warnings.append('the server has no WAL summaries back to %s (%s); took a full base backup'
                                     % (parent['name'], exc.msg))
                kind, parent = FULL, None
                name = self.new_name()
                entry = self.take(db, info, server, name, kind, parent)
            retention = self.apply_retention()
        result = {
            'changed': True,
            'msg': 'took %s base backup %s (%s), verified with pg_verifybackup'
                   % ('an incremental' if kind == INCREMENTAL else 'a full', name, _size_text(entry['size'])),
            'name': name, 'path': layout.base_dir(name), 'type': kind, 'parent': entry['parent'],
            'entry': entry, 'size': entry['size'], 'verified': True,
            'removed_partials': removed_partials,
            'duration': round(time.monotonic() - started, 3),
        }
        result.update(retention)
        return result

    # The server

    def server_facts(self, server, info):
        """What the backup needs to know of the server; ConfigError when the archive is not set up."""
        settings = self.settings
        rows = server.query(
            "SELECT current_setting('server_version_num'), "
            "(SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'), "
            "coalesce(current_setting('summarize_wal', true), ''), "
            "(SELECT system_identifier::text FROM pg_control_system()), "
            "(SELECT timeline_id FROM pg_control_checkpoint()), "
            "(SELECT count(*) FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')), "
            "pg_is_in_recovery()")
        try:
            version, segment_size, summarize, system, timeline, tablespaces, recovery = rows[0]
            facts = {'version_num': int(version), 'wal_segment_size': int(segment_size),
                     'summarize_wal': summarize == 'on', 'system_identifier': system,
                     'timeline': int(timeline), 'tablespaces': int(tablespaces)}
        except (IndexError, ValueError):
            raise CommandError('unexpected answer of the server about its settings: %r' % (rows,)) from None
        if recovery == 't':
            raise ConfigError('container %s runs a server in recovery (a standby or a restore in progress); '
                              'base backups are taken from the primary' % settings.container)
        if facts['tablespaces']:
            raise ConfigError('the server has %d tablespace(s) besides pg_default: a plain-format base backup would '
                              'write them to their own paths inside the tool container, so it is refused'
                              % facts['tablespaces'])
        self.check_archive(server, info)
        return facts

    def not_set_up(self):
        return 'the WAL archive of container %s is not set up' % self.settings.container

    def check_layout(self):
        """The archive's directories and .pgpass, which pitr_archive makes (checked before Docker is asked)."""
        layout = self.settings.layout
        for path in (layout.wal, layout.base, layout.pgpass):
            if not os.path.exists(path):
                raise ConfigError('%s (%s is missing); %s' % (self.not_set_up(), path, ARCHIVE_HINT), path=path)

    def check_archive(self, server, info):
        """The archive's server side, which pitr_archive sets up: the slot and the pg_hba.conf line."""
        settings = self.settings
        where = self.not_set_up()
        slot = server.slot(settings.slot)
        if slot is None or slot['slot_type'] != 'physical':
            raise ConfigError("%s (no physical replication slot '%s'); %s" % (where, settings.slot, ARCHIVE_HINT),
                              slot=settings.slot)
        rule = replication_rule(server.hba_rules(), settings.login_user, db_network(info)[2])
        if rule is None or rule['auth_method'] == 'reject':
            raise ConfigError("%s (no pg_hba.conf line lets %s make replication connections from the container's "
                              'network); %s' % (where, settings.login_user, ARCHIVE_HINT), user=settings.login_user)

    # One backup

    def new_name(self):
        deadline = time.monotonic() + NAME_WAIT_SECONDS
        while True:
            name = BASE_PREFIX + self.stamp()
            layout = self.settings.layout
            taken = any(os.path.lexists(path) for path in
                        (layout.base_dir(name), layout.base_entry(name), layout.base_partial(name)))
            if not taken:
                return name
            if time.monotonic() > deadline:
                raise StorageError('base backup %s exists already; the clock of the node may have gone back' % name,
                                   path=layout.base_dir(name))
            time.sleep(0.2)

    def remove_stale_partials(self):
        """Partial directories of runs that died (we hold the lock: nobody writes them)."""
        base = self.settings.layout.base
        stale = sorted(name for name in os.listdir(base) if PARTIAL_PATTERN.match(name))
        for name in stale:
            try:
                remove_tree(os.path.join(base, name))
            except OSError as exc:
                raise storage_error('remove the stale partial base backup', os.path.join(base, name), exc) from None
        return stale

    def take(self, db, info, server, name, kind, parent):
        """pg_basebackup, pg_verifybackup, modes, catalog entry, rename; on failure nothing of it stays."""
        settings = self.settings
        layout = settings.layout
        partial = layout.base_partial(name)
        entry_path = layout.base_entry(name)
        final = layout.base_dir(name)
        started_at = self.utc_now()
        argv = (['pg_basebackup', '-D', layout.in_container(partial), '-Fp', '-X', 'stream', '--checkpoint=fast',
                 '--label=%s' % name] + connection_argv(info, settings.login_user))
        if kind == INCREMENTAL:
            parent_manifest = os.path.join(layout.base_dir(parent['name']), 'backup_manifest')
            argv.append('--incremental=%s' % layout.in_container(parent_manifest))
        entry_written = False
        try:
            run_tool(db, settings, argv, 'take the base backup %s with pg_basebackup' % name)
            run_tool(db, settings, ['pg_verifybackup', layout.in_container(partial)],
                     'verify the base backup %s with pg_verifybackup' % name)
            try:
                restrict_modes(partial)
                with open(os.path.join(partial, 'backup_label'), encoding='utf-8') as stream:
                    label = parse_backup_label(stream.read())
                with open(os.path.join(partial, 'backup_manifest'), encoding='utf-8') as stream:
                    manifest_text = stream.read()
                size = directory_size(partial)
            except OSError as exc:
                raise storage_error('read the base backup', partial, exc) from None
            entry = catalog_entry(name, kind, parent['name'] if parent else None, label, manifest_text, server,
                                  started_at, self.utc_now(), self.clock(), size)
            write_file_atomically(entry_path, json.dumps(entry, indent=2, sort_keys=True) + '\n', 0o600)
            entry_written = True
            try:
                os.rename(partial, final)
            except OSError as exc:
                raise storage_error('move the base backup into place at', final, exc) from None
        except BaseException:
            if entry_written:
                remove_tree(entry_path)
            remove_tree(partial)
            raise
        return entry

    # Retention

    def apply_retention(self):
        """Remove expired chains (newest member first: json, then directory), then WAL no kept backup needs.

        Nothing is removed when the catalog has an entry it cannot read: it might be a backup whose WAL
        would go. A removal that fails is a warning; the backup just taken stands.
        """
        settings = self.settings
        layout = settings.layout
        result = {'removed': [], 'removed_wal': [], 'removed_wal_bytes': 0, 'wal_gaps': []}
        catalog = read_catalog(layout)
        if catalog.problems:
            self.warnings.append('retention skipped: the catalog has entries that cannot be read: %s'
                                 % '; '.join(catalog.problems))
            return result
        expired = expired_chains(catalog, settings.retention_full, settings.retention_days, self.clock())
        gone = set()
        for chain in expired:
            for entry in reversed(chain):
                try:
                    os.unlink(layout.base_entry(entry['name']))
                    gone.add(entry['name'])
                    remove_tree(layout.base_dir(entry['name']))
                except OSError as exc:
                    self.warnings.append('retention stopped: cannot remove base backup %s: %s'
                                         % (entry['name'], exc.strerror or exc))
                    return result
                result['removed'].append(entry['name'])
        kept = [entry for entry in catalog if entry['name'] not in gone]
        result.update(self.remove_old_wal(kept))
        return result

    def remove_old_wal(self, kept):
        layout = self.settings.layout
        start = oldest_start_wal(kept)
        removed, removed_bytes = [], 0
        if start is None:
            return {}
        segment_size = kept[0]['wal_segment_size']
        try:
            names = os.listdir(layout.wal)
        except OSError as exc:
            self.warnings.append('WAL retention skipped: cannot list %s: %s' % (layout.wal, exc.strerror or exc))
            return {}
        for name in wal_before(names, start, segment_size):
            path = os.path.join(layout.wal, name)
            try:
                info = os.lstat(path)
                if not stat.S_ISREG(info.st_mode):
                    continue
                os.unlink(path)
            except OSError as exc:
                self.warnings.append('cannot remove WAL file %s: %s' % (path, exc.strerror or exc))
                continue
            removed.append(name)
            removed_bytes += info.st_size
        remaining = sorted(set(names) - set(removed))
        gaps = find_gaps(remaining, start, segment_size, histories=wal_histories(layout.wal, remaining))
        if gaps:
            self.warnings.append('the WAL archive has gaps since %s, the oldest base backup kept: %s missing (%s); '
                                 'point-in-time recovery cannot cross them'
                                 % (start, len(gaps), ', '.join(gaps[:5]) + (' ...' if len(gaps) > 5 else '')))
        return {'removed_wal': removed, 'removed_wal_bytes': removed_bytes, 'wal_gaps': gaps}

    # Check mode

    def predict(self, server):
        """What a real run would do: the kind of backup and what retention would remove. Nothing is written."""
        settings = self.settings
        layout = settings.layout
        catalog = read_catalog(layout)
        kind, parent, why = choose_kind(settings.incremental, server, catalog)
        if why:
            self.warnings.append(why)
        name = BASE_PREFIX + self.stamp()
        result = {'changed': True, 'name': name, 'path': layout.base_dir(name), 'type': kind,
                  'parent': parent['name'] if parent else None, 'removed': [], 'removed_wal': [],
                  'removed_wal_bytes': 0, 'wal_gaps': []}
        if catalog.problems:
            self.warnings.append('retention would be skipped: the catalog has entries that cannot be read: %s'
                                 % '; '.join(catalog.problems))
        else:
            # The new backup as retention will see it; it needs no WAL older than any existing one.
            newest = {'name': name, 'type': kind, 'parent': result['parent'], 'finished_epoch': self.clock(),
                      'start_wal': None}
            expired = expired_chains(list(catalog) + [newest], settings.retention_full, settings.retention_days,
                                     self.clock())
            gone = set(entry['name'] for chain in expired for entry in chain)
            result['removed'] = [entry['name'] for chain in expired for entry in reversed(chain)]
            kept = [entry for entry in catalog if entry['name'] not in gone]
            if kept:
                start = oldest_start_wal(kept)
                try:
                    names = os.listdir(layout.wal)
                except OSError:
                    names = []
                result['removed_wal'] = wal_before(names, start, kept[0]['wal_segment_size'])
                result['removed_wal_bytes'] = sum(_file_size(os.path.join(layout.wal, name))
                                                  for name in result['removed_wal'])
        result['msg'] = ('would take %s base backup %s%s%s'
                         % ('an incremental' if kind == INCREMENTAL else 'a full', name,
                            ' on %s' % result['parent'] if result['parent'] else '',
                            '; retention would remove %d base backup(s) and %d WAL file(s)'
                            % (len(result['removed']), len(result['removed_wal']))))
        return result


def _file_size(path):
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0


def _size_text(size):
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if size < 1024 or unit == 'GiB':
            return '%.1f %s' % (size, unit) if unit != 'B' else '%d B' % size
        size /= 1024.0
    return str(size)
