# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: it is the cron entry point on the DB host.
"""Node-local backup command for cron: the same engine as the supabase_dump module.

The configuration is a JSON file with the module's option names; it may hold the
database password, so it must not be readable by group or others.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import stat
import sys

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._dump import DumpBackend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    ConfigError,
    SupabaseBackupError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import (
    dump_argument_spec,
    validate_config,
)

DEFAULT_CONFIG = '/etc/cortexreview-supabase-backup/backup.json'


def log(message, stream=None):
    stamp = datetime.datetime.now().astimezone().isoformat(timespec='seconds')
    stream = stream or sys.stdout
    stream.write('%s %s\n' % (stamp, message))
    stream.flush()


def load_config(path):
    try:
        with open(path, encoding='utf-8') as handle:
            info = os.fstat(handle.fileno())
            if info.st_uid not in (0, os.geteuid()):
                # Its options (pg_bin_dir) choose programs this command runs.
                raise ConfigError('config file %s is owned by uid %d; it must be owned by root or the user '
                                  'running this command' % (path, info.st_uid))
            if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ConfigError('config file %s is accessible to group or others (mode %04o); it may hold '
                                  'a password, make it 0600' % (path, stat.S_IMODE(info.st_mode)))
            return json.load(handle)
    except OSError as exc:
        raise ConfigError('cannot read config file %s: %s' % (path, exc.strerror or exc)) from None
    except ValueError as exc:
        raise ConfigError('config file %s is not valid JSON: %s' % (path, exc)) from None


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='cortexreview-supabase-backup',
        description='Back up the Supabase database with the cortexreview.supabase_backup engine.')
    parser.add_argument('--config', default=DEFAULT_CONFIG, help='JSON file of supabase_dump options')
    parser.add_argument('--check', action='store_true', help='only say what would be done')
    args = parser.parse_args(argv)
    backend = None
    try:
        params = validate_config(dump_argument_spec(), load_config(args.config))
        backend = DumpBackend.from_params(params, check_mode=args.check)
        result = backend.run()
    except SupabaseBackupError as exc:
        log('backup FAILED: %s' % exc.msg, sys.stderr)
        return 1
    except Exception as exc:  # pylint: disable=broad-except
        # The cron log gets one line, never a traceback.
        log('backup FAILED: unexpected %s: %s' % (type(exc).__name__, exc), sys.stderr)
        return 2
    finally:
        for warning in backend.warnings if backend else []:
            log('warning: %s' % warning, sys.stderr)
    if args.check:
        log(result['msg'])
        return 0
    log('backup OK: %s size=%d sha256=%s duration=%.1fs removed=%d'
        % (result['path'], result['size'], result['sha256'], result['duration'], len(result['removed'])))
    return 0
