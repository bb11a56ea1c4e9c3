# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""Option specs shared by the modules (as Ansible argument specs) and the cron runner."""

from __future__ import annotations

import os

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import ConfigError

CONNECTION_OPTIONS = dict(
    container=dict(type='str', default='cortexreview-supabase-db'),
    db=dict(type='str', default='postgres', aliases=['login_db']),
    login_user=dict(type='str', default='postgres'),
    login_password=dict(type='str', no_log=True),
    login_host=dict(type='str'),
    login_port=dict(type='int'),
    docker_host=dict(type='str'),
    pg_bin_dir=dict(type='path'),
)

# A backup encrypted (or to encrypt) with gpg: the same two options for writing and reading.
ENCRYPTION_OPTIONS = dict(
    encrypt_passphrase=dict(type='str', no_log=True),
    # It names a file; the passphrase in it never reaches the module's arguments.
    encrypt_passphrase_file=dict(type='path', no_log=False),
)

# Every writer of backups (doc fragment "output", plus compression_level and metrics_file).
OUTPUT_OPTIONS = dict(
    retention_days=dict(type='int', default=90),
    retention_keep_min=dict(type='int', default=3),
    mode=dict(type='raw', default='0600'),
    metrics_file=dict(type='path'),
    # zlib-ng's level 5 is within about 2% of gzip -6's size at about twice level 6's speed;
    # for a volume snapshot its speed also shortens the downtime.
    compression_level=dict(type='int', default=5),
    compress_threads=dict(type='int', default=0),
    lock_timeout=dict(type='int', default=600),
    **ENCRYPTION_OPTIONS
)

# Off-site copies through rclone (doc fragment "offsite"): the writers upload, the readers fetch.
OFFSITE_OPTIONS = dict(
    offsite_remote=dict(type='str'),
    # A file: the credentials in it never reach the module's arguments.
    offsite_config=dict(type='path', default='/etc/cortexreview-supabase-backup/rclone.conf', no_log=False),
    rclone_path=dict(type='path'),
)
OFFSITE_UPLOAD_OPTIONS = dict(
    offsite_allow_plain=dict(type='bool', default=False),
    offsite_retention=dict(type='bool', default=True),
    offsite_bwlimit=dict(type='str'),
    offsite_retries=dict(type='int', default=3),
    **OFFSITE_OPTIONS
)

DUMP_OPTIONS = dict(
    backup_dir=dict(type='path', required=True),
    prefix=dict(type='str', default='supabase_backup'),
    # None: every other database that allows connections (not a template, not our scratch copies).
    extra_databases=dict(type='list', elements='str'),
    globals=dict(type='bool', default=True),
    # The file parts (_file_components): missing DB config files are recorded, missing deployment files fail.
    db_config_files=dict(type='list', elements='str', default=['/etc/postgresql-custom/pgsodium_root.key']),
    deployment_files=dict(type='list', elements='str', default=[]),
    storage_path=dict(type='path'),
    storage_volume=dict(type='str'),
    **OUTPUT_OPTIONS,
    **OFFSITE_UPLOAD_OPTIONS
)


BACKUP_SOURCE_OPTIONS = dict(
    src=dict(type='path'),
    backup_dir=dict(type='path'),
    restore_point=dict(type='str'),
    prefix=dict(type='str', default='supabase_backup'),
    **ENCRYPTION_OPTIONS,
    **OFFSITE_OPTIONS
)

RESTORE_OPTIONS = dict(
    confirm=dict(type='bool', default=False),
    components=dict(type='list', elements='str', default=['database'],
                    choices=['database', 'extra_databases', 'globals', 'db_config', 'deployment', 'storage', 'all']),
    # Where the storage component goes (default: where it came from) and the container stopped meanwhile.
    storage_path=dict(type='path'),
    storage_volume=dict(type='str'),
    storage_container=dict(type='str'),
    stop_containers=dict(type='list', elements='str', default=['cortexreview-api', 'cortexreview-worker']),
    stop_compose_project=dict(type='str'),
    stop_compose_services=dict(type='list', elements='str', default=[]),
    stop_timeout=dict(type='int', default=30),
    keep_previous=dict(type='bool', default=True),
    maintenance_work_mem=dict(type='str', default='1GB'),
    maintenance_db=dict(type='str', default='template1'),
    # swap: the writers keep writing while the backup loads and is verified, and stop for the swap only.
    writers_stop_at=dict(type='str', default='swap', choices=['swap', 'load']),
    restore_jobs=dict(type='int', default=0),
    lock_timeout=dict(type='int', default=600),
    metrics_file=dict(type='path'),
)


VALIDATE_OPTIONS = dict(
    report_dir=dict(type='path'),
    maintenance_work_mem=dict(type='str', default='1GB'),
    maintenance_db=dict(type='str', default='template1'),
    metrics_file=dict(type='path'),
)

# A backup is named by src, or it is a restore point of backup_dir: the one named, or the newest.
SOURCE_RULES = dict(required_one_of=[('src', 'backup_dir')], required_by={'restore_point': 'backup_dir'},
                    mutually_exclusive=[('src', 'backup_dir'), ('src', 'restore_point'), ('src', 'offsite_remote'),
                                        ('encrypt_passphrase', 'encrypt_passphrase_file')])


def restore_argument_spec():
    spec = dict(CONNECTION_OPTIONS)
    spec.update(BACKUP_SOURCE_OPTIONS)
    spec.update(RESTORE_OPTIONS)
    return spec


def validate_argument_spec():
    spec = dict(CONNECTION_OPTIONS)
    spec.update(BACKUP_SOURCE_OPTIONS)
    spec.update(VALIDATE_OPTIONS)
    return spec


def dump_argument_spec():
    spec = dict(CONNECTION_OPTIONS)
    spec.update(DUMP_OPTIONS)
    return spec


VOLUME_SNAPSHOT_OPTIONS = dict(
    state=dict(type='str', default='present', choices=['present', 'restored']),
    container=dict(type='str', default='cortexreview-supabase-db'),
    volume=dict(type='str', default='cortexreview-supabase-db-data'),
    path=dict(type='path'),
    backup_dir=dict(type='path'),
    src=dict(type='path'),
    restore_point=dict(type='str'),
    confirm=dict(type='bool', default=False),
    docker_host=dict(type='str'),
    stop_timeout=dict(type='int', default=120),
    ready_timeout=dict(type='int', default=300),
    **OUTPUT_OPTIONS,
    **OFFSITE_UPLOAD_OPTIONS
)

# present writes into backup_dir; restored takes src, or a restore point of backup_dir (named, or the newest).
VOLUME_SNAPSHOT_RULES = dict(
    mutually_exclusive=[('volume', 'path'), ('src', 'backup_dir'), ('src', 'restore_point'), ('src', 'offsite_remote'),
                        ('encrypt_passphrase', 'encrypt_passphrase_file')],
    required_by={'restore_point': 'backup_dir'},
    required_if=[('state', 'present', ('backup_dir',)), ('state', 'restored', ('src', 'backup_dir'), True)],
)


def volume_snapshot_argument_spec():
    return dict(VOLUME_SNAPSHOT_OPTIONS)


# The restore points of one kind in a backup directory (status, fetch).
KIND_IN_DIRECTORY_OPTIONS = dict(
    backup_dir=dict(type='path', required=True),
    kind=dict(type='str', default='logical', choices=['logical', 'volume']),
    prefix=dict(type='str', default='supabase_backup'),
)

STATUS_OPTIONS = dict(
    **KIND_IN_DIRECTORY_OPTIONS,
    max_age=dict(type='raw'),
    min_free=dict(type='raw'),
    require_validation=dict(type='bool', default=False),
    metrics_file=dict(type='path'),
    offsite_max_age=dict(type='raw'),
    **OFFSITE_OPTIONS
)


def status_argument_spec():
    return dict(STATUS_OPTIONS)


FETCH_OPTIONS = dict(
    **KIND_IN_DIRECTORY_OPTIONS,
    restore_point=dict(type='str'),
    lock_timeout=dict(type='int', default=600),
    **OFFSITE_OPTIONS
)


def fetch_argument_spec():
    return dict(FETCH_OPTIONS)


def parse_mode(value):
    """'0600', '600' or an int (as Ansible's file modules take it) -> int."""
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    else:
        try:
            mode = int(str(value), 8)
        except ValueError:
            raise ConfigError('mode %r is not an octal file mode such as 0600' % (value,)) from None
    if not 0 <= mode <= 0o777:
        raise ConfigError('mode %r is out of range (0000-0777)' % (value,))
    return mode


def _coerce(name, value, option_type):
    if option_type == 'raw':
        return value
    if option_type == 'int':
        if isinstance(value, bool):
            raise ConfigError('option %s must be an integer, got %r' % (name, value))
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError('option %s must be an integer, got %r' % (name, value)) from None
    if option_type == 'bool':
        if isinstance(value, bool):
            return value
        raise ConfigError('option %s must be true or false, got %r' % (name, value))
    if option_type == 'list':
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError('option %s must be a list of strings, got %r' % (name, value))
        return list(value)
    if not isinstance(value, str):
        raise ConfigError('option %s must be a string, got %r' % (name, value))
    if option_type == 'path':
        return os.path.expanduser(os.path.expandvars(value))
    return value


def validate_config(spec, config):
    """Check a plain mapping (the cron runner's config file) against an argument spec."""
    if not isinstance(config, dict):
        raise ConfigError('the configuration must be a mapping of option names to values')
    names = {}
    for name, option in spec.items():
        names[name] = name
        for alias in option.get('aliases', []):
            names[alias] = name
    unknown = sorted(set(config) - set(names))
    if unknown:
        raise ConfigError('unknown option(s): %s' % ', '.join(unknown))
    params = dict((name, option.get('default')) for name, option in spec.items())
    for key, value in config.items():
        if value is not None:
            params[names[key]] = _coerce(key, value, spec[names[key]].get('type', 'str'))
    missing = sorted(name for name, option in spec.items() if option.get('required') and params[name] is None)
    if missing:
        raise ConfigError('missing required option(s): %s' % ', '.join(missing))
    return params


# Point-in-time recovery (issue 13), part A: the options every PITR entry point shares, and pitr_archive's.
PITR_OPTIONS = dict(
    container=dict(type='str', default='cortexreview-supabase-db'),
    backup_dir=dict(type='path', required=True),
    # Also the replication user of the receiver and the tools: it needs REPLICATION (or superuser).
    login_user=dict(type='str', default='postgres'),
    login_password=dict(type='str', no_log=True),
    docker_host=dict(type='str'),
    slot=dict(type='str', default='cortexreview_pitr'),
    lock_timeout=dict(type='int', default=600),
    metrics_file=dict(type='path'),
)

PITR_ARCHIVE_OPTIONS = dict(
    state=dict(type='str', default='present', choices=['present', 'absent']),
    allow_restart=dict(type='bool', default=False),
    max_slot_wal_keep_size=dict(type='str', default='10GB'),
    **PITR_OPTIONS
)


def pitr_archive_argument_spec():
    return dict(PITR_ARCHIVE_OPTIONS)


# Point-in-time recovery (issue 13), part B: pitr_base_backup's options.
PITR_BASE_BACKUP_OPTIONS = dict(
    incremental=dict(type='bool', default=False),
    # Chains (a full and its incrementals): the newest retention_full are always kept.
    retention_full=dict(type='int', default=2),
    retention_days=dict(type='int', default=14),
    **PITR_OPTIONS
)


def pitr_base_backup_argument_spec():
    return dict(PITR_BASE_BACKUP_OPTIONS)


# Part A: backup_status kind=pitr reaches the server and the receiver container too.
PITR_STATUS_OPTIONS = dict(
    container=PITR_OPTIONS['container'],
    login_user=PITR_OPTIONS['login_user'],
    login_password=PITR_OPTIONS['login_password'],
    docker_host=PITR_OPTIONS['docker_host'],
    slot=PITR_OPTIONS['slot'],
    max_lag=dict(type='raw'),
)
STATUS_OPTIONS.update(PITR_STATUS_OPTIONS)
STATUS_OPTIONS['kind'] = dict(STATUS_OPTIONS['kind'], choices=['logical', 'volume', 'pitr'])


# Point-in-time recovery (issue 13), part C: pitr_restore and pitr_restore_point.
PITR_RESTORE_OPTIONS = dict(
    # A timestamp with a zone, or a restore point's name; neither: the end of the archive (latest).
    target_time=dict(type='str'),
    target_name=dict(type='str'),
    confirm=dict(type='bool', default=False),
    volume=dict(type='str', default='cortexreview-supabase-db-data'),
    path=dict(type='path'),
    stop_containers=dict(type='list', elements='str', default=['cortexreview-api', 'cortexreview-worker']),
    stop_compose_project=dict(type='str'),
    stop_compose_services=dict(type='list', elements='str', default=[]),
    stop_timeout=dict(type='int', default=120),
    # Replaying a week of WAL takes a while: the wait covers the replay and the promotion.
    ready_timeout=dict(type='int', default=900),
    **PITR_OPTIONS
)

PITR_RESTORE_RULES = dict(mutually_exclusive=[('target_time', 'target_name'), ('volume', 'path')])

PITR_RESTORE_POINT_OPTIONS = dict(
    name=dict(type='str', required=True),
    **PITR_OPTIONS
)


def pitr_restore_argument_spec():
    return dict(PITR_RESTORE_OPTIONS)


def pitr_restore_point_argument_spec():
    return dict(PITR_RESTORE_POINT_OPTIONS)


# Point-in-time recovery: the archive's off-site copy (pitr_offsite).
PITR_OFFSITE_OPTIONS = dict(
    state=dict(type='str', default='present', choices=['present', 'fetched']),
    backup_dir=dict(type='path', required=True),
    base_backup=dict(type='str'),
    compression_level=dict(type='int', default=5),
    compress_threads=dict(type='int', default=0),
    lock_timeout=dict(type='int', default=600),
    metrics_file=dict(type='path'),
    **ENCRYPTION_OPTIONS,
    **OFFSITE_UPLOAD_OPTIONS
)
PITR_OFFSITE_RULES = dict(mutually_exclusive=[('encrypt_passphrase', 'encrypt_passphrase_file')],
                          required_if=[('state', 'fetched', ('offsite_remote',)), ('state', 'present', ('offsite_remote',))])


def pitr_offsite_argument_spec():
    return dict(PITR_OFFSITE_OPTIONS)
