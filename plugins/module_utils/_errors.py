# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""One error type per failure domain; entry points turn them into one-line messages."""

from __future__ import annotations


class SupabaseBackupError(Exception):
    """Base error: ``msg`` is one line for the operator, ``details`` go into the result."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


class ConfigError(SupabaseBackupError):
    """An option is missing, malformed or contradicts another one."""


class DockerError(SupabaseBackupError):
    """The Docker engine or the database container cannot be used."""


class CommandError(SupabaseBackupError):
    """A PostgreSQL client program failed or produced unusable output."""


class StorageError(SupabaseBackupError):
    """The backup directory cannot be written (space, permissions, ...)."""


class FilePartError(SupabaseBackupError):
    """Files outside the backup directory (DB config, deployment, Storage) cannot be read or written."""


class LockError(SupabaseBackupError):
    """Another run holds the backup directory."""


class BackupFileError(SupabaseBackupError):
    """A backup file is missing, unreadable, corrupt or not what it claims to be."""


class VerificationError(SupabaseBackupError):
    """A restored database does not match its backup."""


class StatusError(SupabaseBackupError):
    """The backups are not as required: too old, missing, not validated, or too little free space."""


class OffsiteError(SupabaseBackupError):
    """The off-site remote cannot be listed, written, verified or read."""
