# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible (the cron runner uses it too) and without the Docker SDK.
"""The file components of a restore point, as the backup run and the restore call them.

A backup run (_dump.DumpBackend) calls each ``write_*_part(backend, point)`` after the database
parts, Storage last (so every ``storage.objects`` row has its file). A restore (_restore) builds one
``*Component(backend, parts)`` per selected file component before anything changes: building it
reads its part whole and checks its target, so a bad part or target refuses the restore while
everything is still as it was; ``plan()`` says what would change, ``restore()`` changes it.
"""

from __future__ import annotations

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import ConfigError, FilePartError, SupabaseBackupError
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._file_parts import (
    DB_CONFIG_FILES_DEFAULT,
    DB_CONFIG_ROLE,
    DEPLOYMENT_ROLE,
    ContainerConfigRestorer,
    FileRestorer,
    HostConfigRestorer,
    TarPart,
    absolute_paths,
    present_in_container,
    present_on_host,
    write_container_files,
    write_host_files,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._storage_files import (
    STORAGE_ROLE,
    StorageLocation,
    StorageRestorer,
    check_storage_source,
    write_storage,
)

PART_SUFFIXES = {DB_CONFIG_ROLE: '.db-config.tar.gz', DEPLOYMENT_ROLE: '.deployment.tar.gz',
                 STORAGE_ROLE: '.storage.tar.gz'}
# Where a missing root key is surprising: the database uses Vault or pgsodium.
KEY_SCHEMAS_SQL = "SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname IN ('vault', 'pgsodium')"
# A DB container restarted for its config files has this long to accept connections again.
DB_READY_TIMEOUT = 300


class FilePartOptions:
    """The backup's file options, checked before anything is written."""

    def __init__(self, params):
        configured = params.get('db_config_files')
        self.db_config_files = absolute_paths('db_config_files',
                                              DB_CONFIG_FILES_DEFAULT if configured is None else configured)
        self.deployment_files = absolute_paths('deployment_files', params.get('deployment_files'))
        self.storage = StorageLocation.from_options(params.get('storage_path'), params.get('storage_volume'))
        self.container = params.get('container') or ''


# Backup

def write_db_config_part(backend, point):
    """The DB container's files (the host's in direct mode); missing ones are recorded, not errors."""
    options = backend.settings.file_parts
    if not options.db_config_files:
        return
    target = backend.settings.target
    if options.container:
        present, missing = present_in_container(target.docker_api, options.container, options.db_config_files)
    else:
        present, missing = present_on_host(options.db_config_files)
    if present:
        # Only what is there makes a part: without any, the restore point simply has no db_config.
        with point.part(PART_SUFFIXES[DB_CONFIG_ROLE], DB_CONFIG_ROLE) as sink:
            if options.container:
                written, gone = write_container_files(sink, target.docker_api, options.container, present)
            else:
                written, gone = write_host_files(sink, present, missing_ok=True)
            sink.facts.update({'paths': written, 'files': len(written), 'container': options.container or None})
        missing += gone
    if missing:
        surprising = int(target.query(KEY_SCHEMAS_SQL)[0][0]) > 0
        for path in missing:
            point.not_found(DB_CONFIG_ROLE, path, warn=surprising)


def write_deployment_part(backend, point):
    """The operator's deployment files from the host; each must exist."""
    options = backend.settings.file_parts
    if not options.deployment_files:
        return
    with point.part(PART_SUFFIXES[DEPLOYMENT_ROLE], DEPLOYMENT_ROLE) as sink:
        written, _missing = write_host_files(sink, options.deployment_files, missing_ok=False)
        sink.facts.update({'paths': written, 'files': len(written)})


def write_storage_part(backend, point):
    """Storage's objects with their extended attributes, when storage_path or storage_volume is set."""
    options = backend.settings.file_parts
    if options.storage is None:
        return
    api = backend.settings.target.docker_api if options.storage.volume else None
    with point.part(PART_SUFFIXES[STORAGE_ROLE], STORAGE_ROLE) as sink:
        write_storage(sink, options.storage, api, options.container, backend.warnings)


FILE_PART_WRITERS = (write_db_config_part, write_deployment_part, write_storage_part)


def plan_file_parts(backend, stem, encrypted):
    """Check mode: (the file parts a run would write, what it would not find), reading only.

    What would fail the run fails the plan too (a deployment file or the storage place missing); the
    extended-attribute probe writes a file, so only the real run makes it.
    """
    options = backend.settings.file_parts
    parts = []
    not_found = []

    def add(role):
        parts.append({'name': stem + PART_SUFFIXES[role] + encrypted, 'role': role, 'size': None})

    if options.db_config_files:
        if options.container:
            present, missing = present_in_container(backend.settings.target.docker_api, options.container,
                                                    options.db_config_files)
        else:
            present, missing = present_on_host(options.db_config_files)
        if present:
            add(DB_CONFIG_ROLE)
        not_found += [{'component': DB_CONFIG_ROLE, 'what': path} for path in missing]
    if options.deployment_files:
        missing = present_on_host(options.deployment_files)[1]
        if missing:
            raise FilePartError('%s does not exist' % missing[0])
        add(DEPLOYMENT_ROLE)
    if options.storage is not None:
        check_storage_source(options.storage, backend.settings.target.docker_api if options.storage.volume else None,
                             options.container)
        add(STORAGE_ROLE)
    return parts, not_found


# Restore

class FileComponent:
    """One file component of a restore: its part checked (and its target) as soon as it is built."""

    component = None

    def __init__(self, backend, parts):
        entry = parts.entry(self.component)
        settings = backend.settings
        self.name = entry['name']
        try:
            self.part = TarPart(entry['path'], settings.passphrase)
            self.restorer = self.make_restorer(backend, settings.params)
            self.checked = self.restorer.check()
        except SupabaseBackupError as exc:
            exc.msg = '%s; nothing was changed' % exc.msg
            exc.details.setdefault('part', self.name)
            raise

    def make_restorer(self, backend, params):
        raise NotImplementedError

    def plan(self):
        return {'part': self.name, 'would_restore': self.checked}

    def restore(self):
        result = self.restorer.restore()
        result['part'] = self.name
        return result


class DbConfigComponent(FileComponent):
    """The DB config files into the DB container (then restarted), or onto this host in direct mode."""

    component = DB_CONFIG_ROLE

    def make_restorer(self, backend, params):
        target = backend.settings.target
        if not target.container:
            return HostConfigRestorer(self.part, backend.warnings)
        return ContainerConfigRestorer(self.part, backend.warnings, target.docker_api, target.container,
                                       params['stop_timeout'], DB_READY_TIMEOUT)


class DeploymentComponent(FileComponent):
    """The deployment files to their host paths, each atomically."""

    component = DEPLOYMENT_ROLE

    def make_restorer(self, backend, params):
        return FileRestorer(self.part, backend.warnings)


class StorageComponent(FileComponent):
    """Storage's objects into storage_path / storage_volume (default: where they came from)."""

    component = STORAGE_ROLE

    def make_restorer(self, backend, params):
        target = backend.settings.target
        location = StorageLocation.from_options(params.get('storage_path'), params.get('storage_volume'))
        volume = location.volume if location else ((self.part.manifest() or {}).get('source') or {}).get('volume')
        if volume and not target.container:
            raise ConfigError('storage_volume needs container (the DB container, whose image runs the helper container)')
        needs_api = volume or params.get('storage_container')
        return StorageRestorer(self.part, backend.warnings, location=location,
                               api=target.docker_api if needs_api else None, db_container=target.container,
                               storage_container=params.get('storage_container'), stop_timeout=params['stop_timeout'])

    def plan(self):
        plan = super().plan()
        plan['msg'] = 'Would %s' % self.restorer.plan()
        return plan


COMPONENT_RESTORERS = {DB_CONFIG_ROLE: DbConfigComponent, DEPLOYMENT_ROLE: DeploymentComponent,
                       STORAGE_ROLE: StorageComponent}
