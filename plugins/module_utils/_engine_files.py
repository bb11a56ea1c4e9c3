# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
"""The engine on the node, for the cron runner: these module_utils files, written in one module run.

Ansible sends a module every module_utils it imports, so the module that installs the engine carries
all of it: this file imports every one of them, and each file is written from the source Python
imported it from. One run replaces a ``copy`` per file (about a second each).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import stat

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _ansible_module
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _backend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _backup_files
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _backup_kinds
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _backup_output
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _backup_reader
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _commands
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _container_pipe
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _database_restorer
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _database_settings
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _docker
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _dump
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _dump_stream
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _errors
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _file_components
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _file_parts
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _globals
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _gpg
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _in_thread
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _metrics
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _offsite
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _offsite_backend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _options
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _parallel_copy
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _parallel_gzip
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _pitr
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _pitr_archive
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _pitr_base
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _pitr_offsite
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _pitr_offsite_backend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _pitr_restore
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _pitr_status
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _pitr_wal
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _post_data
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _restore
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _restore_components
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _restore_journal
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _restore_points
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _runner
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _single_database_extensions
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _sql
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _status
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _storage_files
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _validate
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _volume_archive
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _volume_container
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _volume_restore
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _volume_snapshot
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _writers
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backend import Backend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import (
    storage_error,
    write_file_atomically,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import ConfigError, StorageError

# Every other file of the engine (tests/unit/test_engine_files.py keeps the list whole).
ENGINE_MODULES = (
    _ansible_module, _backend, _backup_files, _backup_kinds, _backup_output, _backup_reader,
    _commands, _container_pipe, _database_restorer, _database_settings, _docker, _dump, _dump_stream, _errors,
    _file_components, _file_parts, _globals, _gpg, _in_thread, _metrics, _offsite, _offsite_backend, _options,
    _parallel_copy, _parallel_gzip, _pitr, _pitr_archive, _pitr_base, _pitr_offsite, _pitr_offsite_backend,
    _pitr_restore, _pitr_status, _pitr_wal, _post_data, _restore, _restore_components, _restore_journal,
    _restore_points, _runner, _single_database_extensions, _sql, _status, _storage_files, _validate,
    _volume_archive, _volume_container, _volume_restore, _volume_snapshot, _writers,
)
ENGINE_PACKAGE = __name__.rpartition('.')[0]
ENGINE_FILE_MODE = 0o644
_ENGINE_FILE_NAME = re.compile(r'[A-Za-z0-9_]+\.py')


def engine_source(name):
    """The bytes of engine file ``name`` (``_restore.py``, ``__init__.py``) as this Python imported them."""
    if not _ENGINE_FILE_NAME.fullmatch(name):
        raise ConfigError('%r is not the name of an engine file' % (name,))
    module = ENGINE_PACKAGE if name == '__init__.py' else '%s.%s' % (ENGINE_PACKAGE, name[:-3])
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not hasattr(spec.loader, 'get_data'):
        raise ConfigError('%s is not part of the engine this module carries' % name)
    return spec.loader.get_data(spec.origin)


class EngineFilesSettings:
    """``dest``: the directory; ``files``: engine file name -> its expected sha1 (the controller's copy)."""

    def __init__(self, params):
        self.dest = params['dest']
        self.files = params['files']


class EngineFilesBackend(Backend):
    """Writes the engine files that differ from this module's own (content, mode 0644, owner) into ``dest``."""

    settings_class = EngineFilesSettings

    def run(self):
        settings = self.settings
        sources = {}
        for name, expected in sorted(settings.files.items()):
            data = engine_source(name)
            if hashlib.sha1(data).hexdigest() != expected:
                raise ConfigError('the engine file %s this module carries differs from the collection\'s (sha1 %s, '
                                  'expected %s): run the role from one installed collection' %
                                  (name, hashlib.sha1(data).hexdigest(), expected))
            sources[name] = data
        if not os.path.isdir(settings.dest) and not self.check_mode:
            raise StorageError('%s is not a directory' % settings.dest, path=settings.dest)
        outdated = [name for name in sorted(sources) if not _in_place(os.path.join(settings.dest, name), sources[name])]
        if not self.check_mode:
            for name in outdated:
                write_file_atomically(os.path.join(settings.dest, name), sources[name], ENGINE_FILE_MODE)
        if not outdated:
            message = 'the engine is up to date'
        else:
            message = '%d engine file(s) %s %s' % (len(outdated), 'to write in' if self.check_mode else 'written to',
                                                   settings.dest)
        return {'changed': bool(outdated), 'dest': settings.dest, 'files': outdated, 'msg': message}


def _in_place(path, data):
    """Whether ``path`` holds ``data``, mode 0644, owned by this process's user and group."""
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode):
            return False
        with open(path, 'rb') as handle:
            current = handle.read()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise storage_error('read', path, exc) from None
    return (current == data and info.st_mode & 0o7777 == ENGINE_FILE_MODE
            and (info.st_uid, info.st_gid) == (os.geteuid(), os.getegid()))
