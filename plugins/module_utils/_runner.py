# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: it is the cron entry point on the DB host.
"""Node-local backup command for cron: the same engine as the supabase_dump module.

The configuration is a JSON file with the module's option names; it may hold the
database password, so it must not be readable by group or others.

``--status`` backs up nothing: with the same configuration it refreshes the free-space
gauge in ``metrics_file`` (the backup_status module's engine) and prints nothing unless
it fails, so it can run every few minutes; ``--max-age``/``--min-free`` make it fail, and
cron mail, when the newest backup is too old or the disk too full.

``pitr-base [--incremental]`` takes a base backup of the point-in-time archive instead (the
pitr_base_backup module's engine), with the same configuration file's connection options and
backup directory; its own retention comes on the command line.

``pitr-status`` refreshes the point-in-time archive's gauges in ``metrics_file`` (backup_status
kind=pitr) and, like ``--status``, prints nothing unless the archive is not as required.

``pitr-offsite`` copies the archive's new files to ``offsite_remote`` (the pitr_offsite module's engine),
with the configuration's backup directory, passphrase and off-site options; it logs only uploads and failures.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import read_private_file
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backend import run_backend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._dump import DumpBackend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    ConfigError,
    SupabaseBackupError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._offsite_backend import LogicalOffsiteBackend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import (
    PITR_BASE_BACKUP_OPTIONS,
    dump_argument_spec,
    validate_config,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._pitr_base import PitrBaseBackend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._pitr_offsite_backend import PitrOffsiteBackend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._pitr_status import PitrStatusBackend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._status import StatusBackend

DEFAULT_CONFIG = '/etc/cortexreview-supabase-backup/backup.json'
PITR_BASE_COMMAND = 'pitr-base'
PITR_STATUS_COMMAND = 'pitr-status'
PITR_OFFSITE_COMMAND = 'pitr-offsite'
# What a base backup takes from the backup configuration; the rest of it is the logical backup's.
PITR_SHARED_OPTIONS = ('container', 'backup_dir', 'login_user', 'login_password', 'docker_host', 'lock_timeout',
                       'metrics_file')


def log(message, stream=None):
    stamp = datetime.datetime.now().astimezone().isoformat(timespec='seconds')
    stream = stream or sys.stdout
    stream.write('%s %s\n' % (stamp, message))
    stream.flush()


def load_config(path):
    # Owned by root or us and private: it may hold the database password, and its options
    # (pg_bin_dir) choose programs this command runs.
    content = read_private_file(path, 'config file')
    try:
        return json.loads(content.decode('utf-8'))
    except ValueError as exc:
        raise ConfigError('config file %s is not valid JSON: %s' % (path, exc)) from None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == [PITR_BASE_COMMAND]:
        return run_pitr_base(pitr_base_parser().parse_args(argv[1:]))
    if argv[:1] == [PITR_STATUS_COMMAND]:
        return run_pitr_status(pitr_status_parser().parse_args(argv[1:]))
    if argv[:1] == [PITR_OFFSITE_COMMAND]:
        return run_pitr_offsite(pitr_offsite_parser().parse_args(argv[1:]))
    parser = argparse.ArgumentParser(
        prog='cortexreview-supabase-backup',
        description='Back up the Supabase database with the cortexreview.supabase_backup engine.')
    parser.add_argument('--config', default=DEFAULT_CONFIG, help='JSON file of supabase_dump options')
    parser.add_argument('--check', action='store_true', help='only say what would be done')
    parser.add_argument('--status', action='store_true',
                        help='back up nothing: refresh the free-space gauge in metrics_file, silent unless a check fails')
    parser.add_argument('--max-age', metavar='AGE',
                        help='with --status: fail when the newest backup is older than AGE (8d, 26h, 90m, 3600s)')
    parser.add_argument('--min-free', metavar='SIZE',
                        help='with --status: fail when the backup directory has less than SIZE free (20GB, 512MB)')
    args = parser.parse_args(argv)
    if (args.max_age or args.min_free) and not args.status:
        parser.error('--max-age and --min-free go with --status')
    return run_status(args) if args.status else run_backup(args)


def run_engine(args, backend_class, name, prepare=None):
    """(result, exit code) of ``backend_class`` on the config file's options; failures become one log line.

    ``prepare(params)`` turns the validated options into the backend's.
    """
    try:
        config = load_config(args.config)
    except SupabaseBackupError as exc:
        log('%s FAILED: %s' % (name, exc.msg), sys.stderr)
        return None, 1

    def options(raw):
        params = validate_config(dump_argument_spec(), raw)
        return prepare(params) if prepare else params

    try:
        result, error, warnings = run_backend(backend_class, config, check_mode=args.check, prepare=options)
    except Exception as exc:  # pylint: disable=broad-except
        # The cron log gets one line, never a traceback.
        log('%s FAILED: unexpected %s: %s' % (name, type(exc).__name__, exc), sys.stderr)
        return None, 2
    if error is not None:
        log('%s FAILED: %s' % (name, error.msg), sys.stderr)
    for warning in warnings:
        log('warning: %s' % warning, sys.stderr)
    return (None, 1) if error is not None else (result, 0)


def run_backup(args):
    result, code = run_engine(args, DumpBackend, 'backup')
    if code:
        return code
    if args.check:
        log(result['msg'])
        return 0
    log('backup OK: %s size=%d sha256=%s duration=%.1fs removed=%d'
        % (result['path'], result['size'], result['sha256'], result['duration'], len(result['removed'])))
    return run_offsite(args)


def run_offsite(args):
    """After a backup, with offsite_remote in the config: upload what the remote lacks, then retention."""
    try:
        wanted = bool(load_config(args.config).get('offsite_remote'))
    except SupabaseBackupError:
        wanted = False
    if not wanted:
        return 0
    result, code = run_engine(args, LogicalOffsiteBackend, 'backup written and kept; offsite upload')
    if code:
        return code
    log('offsite OK: %s' % result['msg'])
    return 0


def run_status(args):
    """Every few minutes from cron: the free-space gauge of the logical backups, and nothing on stdout."""

    def status_options(params):
        return {'backup_dir': params['backup_dir'], 'kind': 'logical', 'prefix': params['prefix'],
                'metrics_file': params['metrics_file'], 'max_age': args.max_age, 'min_free': args.min_free}

    return run_engine(args, StatusBackend, 'status', prepare=status_options)[1]


def pitr_base_parser():
    defaults = PITR_BASE_BACKUP_OPTIONS
    parser = argparse.ArgumentParser(
        prog='cortexreview-supabase-backup %s' % PITR_BASE_COMMAND,
        description='Take a base backup of the point-in-time archive (pitr_base_backup), then apply its retention.')
    parser.add_argument('--config', default=DEFAULT_CONFIG,
                        help='JSON file of supabase_dump options; its connection options and backup_dir are used')
    parser.add_argument('--check', action='store_true', help='only say what would be done')
    parser.add_argument('--incremental', action='store_true',
                        help='an incremental base backup where the server supports it (else a full one, with a warning)')
    parser.add_argument('--slot', default=defaults['slot']['default'], help='the archive\'s replication slot')
    parser.add_argument('--retention-full', type=int, default=defaults['retention_full']['default'],
                        help='the newest N chains (a full with its incrementals) are always kept')
    parser.add_argument('--retention-days', type=int, default=defaults['retention_days']['default'],
                        help='older chains go once the next full is older than N days, with their WAL')
    return parser


def run_pitr_base(args):
    """One base backup from cron: one log line for the outcome (and one per warning)."""

    def pitr_options(params):
        options = dict((name, params[name]) for name in PITR_SHARED_OPTIONS)
        options.update(slot=args.slot, incremental=args.incremental, retention_full=args.retention_full,
                       retention_days=args.retention_days)
        return options

    result, code = run_engine(args, PitrBaseBackend, 'pitr base backup', prepare=pitr_options)
    if code:
        return code
    if args.check:
        log(result['msg'])
        return 0
    log('pitr base backup OK: %s type=%s parent=%s size=%d duration=%.1fs removed=%d removed_wal=%d'
        % (result['path'], result['type'], result['parent'] or '-', result['size'], result['duration'],
           len(result['removed']), len(result['removed_wal'])))
    return 0


def pitr_status_parser():
    parser = argparse.ArgumentParser(
        prog='cortexreview-supabase-backup %s' % PITR_STATUS_COMMAND,
        description='Refresh the point-in-time archive\'s gauges in metrics_file (backup_status kind=pitr); '
                    'silent unless the archive is not as required.')
    parser.add_argument('--config', default=DEFAULT_CONFIG,
                        help='JSON file of supabase_dump options; its connection options, backup_dir and metrics_file '
                             'are used')
    parser.add_argument('--slot', default=PITR_BASE_BACKUP_OPTIONS['slot']['default'],
                        help='the archive\'s replication slot')
    parser.add_argument('--max-age', metavar='AGE', help='fail when the newest base backup is older than AGE (8d, 26h)')
    parser.add_argument('--max-lag', metavar='AGE',
                        help="fail when the receiver's last contact is older than AGE (default 5m)")
    return parser


def run_pitr_status(args):
    """Every few minutes from cron: the archive's gauges, and nothing on stdout."""

    def status_options(params):
        options = dict((name, params[name]) for name in PITR_SHARED_OPTIONS if name != 'lock_timeout')
        options.update(kind='pitr', slot=args.slot, max_age=args.max_age, max_lag=args.max_lag)
        return options

    return run_engine(argparse.Namespace(config=args.config, check=False), PitrStatusBackend, 'pitr status',
                      prepare=status_options)[1]


# What the archive's off-site copy takes from the backup configuration.
PITR_OFFSITE_SHARED_OPTIONS = ('backup_dir', 'encrypt_passphrase', 'encrypt_passphrase_file', 'offsite_remote',
                               'offsite_config', 'rclone_path', 'offsite_allow_plain', 'offsite_retention',
                               'offsite_bwlimit', 'offsite_retries', 'compression_level', 'compress_threads',
                               'lock_timeout', 'metrics_file')


def pitr_offsite_parser():
    parser = argparse.ArgumentParser(
        prog='cortexreview-supabase-backup %s' % PITR_OFFSITE_COMMAND,
        description='Copy the point-in-time archive\'s new files to offsite_remote (pitr_offsite), every few minutes.')
    parser.add_argument('--config', default=DEFAULT_CONFIG,
                        help='JSON file of supabase_dump options; its backup_dir, encryption and offsite options are used')
    parser.add_argument('--check', action='store_true', help='only say what would be done')
    return parser


def run_pitr_offsite(args):
    """From cron: upload what the remote lacks; silent unless it uploaded or failed (one line each)."""

    def offsite_options(params):
        return dict((name, params[name]) for name in PITR_OFFSITE_SHARED_OPTIONS)

    result, code = run_engine(args, PitrOffsiteBackend, 'pitr offsite upload', prepare=offsite_options)
    if code:
        return code
    if args.check or result['changed']:
        log('pitr offsite OK: %s' % result['msg'])
    return 0
