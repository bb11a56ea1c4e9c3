# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible.
"""What a restore takes from a restore point: its components, their parts, checked before anything changes.

A component is a kind of part (``database``: the main dump; ``extra_databases``: every
``extra_database`` part; ``globals``; ``db_config``; ``deployment``; ``storage``). ``all`` is every
component the restore point holds; an older (one-part) restore point holds ``database`` only, and
what it lacks is reported (``not_in_backup``) rather than refused. A component named explicitly
that the restore point lacks is refused.
"""

from __future__ import annotations

import hashlib
import os

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_reader import BackupFile
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import BackupFileError, ConfigError
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._restore_points import (
    EXTRA_DATABASE_ROLE,
    restore_point_of,
)

# In the order a restore applies them.
COMPONENT_ROLES = (
    ('database', 'database'),
    ('extra_databases', EXTRA_DATABASE_ROLE),
    ('globals', 'globals'),
    ('db_config', 'db_config'),
    ('deployment', 'deployment'),
    ('storage', 'storage'),
)
COMPONENTS = tuple(component for component, _role in COMPONENT_ROLES)
ROLE_OF = dict(COMPONENT_ROLES)
FILE_COMPONENTS = ('db_config', 'deployment', 'storage')


def check_components(requested):
    """The ``components`` option, checked: a non-empty list of COMPONENTS or ``all``."""
    if not requested:
        raise ConfigError('components must name at least one of %s, or all' % ', '.join(COMPONENTS))
    unknown = [name for name in requested if name not in COMPONENTS + ('all',)]
    if unknown:
        raise ConfigError('components: unknown %s; choose from %s, or all'
                          % (', '.join(repr(name) for name in unknown), ', '.join(COMPONENTS)))
    return list(requested)


class RestorePointParts:
    """The parts of one restore point a restore selected, read from its manifest.

    ``manifest`` is None for a backup without a v2 manifest (older backups, ``src`` named otherwise):
    it then holds the main dump only.
    """

    def __init__(self, main_path, stem, requested):
        self.directory = os.path.dirname(main_path)
        self.main_path = main_path
        self.stem = stem
        self.manifest = restore_point_of(self.directory, stem) if stem else None
        held = self._held()
        if 'all' in requested:
            self.components = [component for component in COMPONENTS if component in held]
            self.not_in_backup = [component for component in COMPONENTS if component not in held]
        else:
            lacking = [component for component in requested if component not in held]
            if lacking:
                raise ConfigError('restore point %s has no %s part (it holds: %s); nothing was changed' % (
                    stem or os.path.basename(main_path), ', '.join(lacking), ', '.join(held)))
            self.components = [component for component in COMPONENTS if component in requested]
            self.not_in_backup = []

    def _held(self):
        if self.manifest is None:
            return ['database']
        roles = set(part.get('role') for part in self.manifest['parts'])
        return [component for component, role in COMPONENT_ROLES if role in roles]

    def entries(self, component):
        """The manifest entries of ``component``'s parts, each with its ``path``."""
        if self.manifest is None:
            return [{'name': os.path.basename(self.main_path), 'role': 'database', 'path': self.main_path}]
        found = []
        for part in self.manifest['parts']:
            if part.get('role') == ROLE_OF[component]:
                found.append(dict(part, path=os.path.join(self.directory, part['name'])))
        return found

    def entry(self, component):
        """The one part of a one-part component (globals, db_config, ...), or None."""
        entries = self.entries(component)
        return entries[0] if entries else None

    def verify(self, passphrase, components=None):
        """Every part of the (selected) components read whole: present, matching the sha256 of the manifest
        and of its sidecar, decryptable and gzip. The first that is not is a one-line error naming it."""
        verified = []
        for component in components if components is not None else self.components:
            for entry in self.entries(component):
                verified.append(verify_part(self.stem, entry, passphrase))
        return verified


def verify_part(stem, entry, passphrase):
    """One part checked by its bytes (see RestorePointParts.verify); returns {name, role, sha256}."""
    name, path = entry['name'], entry['path']
    where = 'restore point %s' % stem if stem else 'the backup'
    if not os.path.lexists(path):
        raise BackupFileError('%s is missing its %s part %s; nothing was changed' % (where, entry['role'], name),
                              part=name)
    try:
        part = BackupFile(path, passphrase)
        digest = hashlib.sha256()
        for _chunk in part.checked_plain_chunks(digest):
            pass
        sidecar = part.expected_sha256()
    except BackupFileError as exc:
        raise BackupFileError('%s: its %s part %s cannot be used: %s; nothing was changed'
                              % (where, entry['role'], name, exc.msg), part=name) from None
    sha256 = digest.hexdigest()
    for expected in (entry.get('sha256'), sidecar):
        if expected and expected != sha256:
            raise BackupFileError('%s: its %s part %s does not match its checksum (sha256 %s, expected %s); '
                                  'nothing was changed' % (where, entry['role'], name, sha256, expected), part=name)
    return {'name': name, 'role': entry['role'], 'sha256': sha256}
