# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
"""How an Ansible module runs a backend: options in, one result or one-line failure out."""

from __future__ import annotations

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backend import run_backend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import SupabaseBackupError
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._offsite_backend import (
    fetch_first,
    remote_plan,
)


def run_module(module, backend_class, offsite_class=None, fetch_kind=None):
    """Run ``backend_class`` on the module's options and exit with its result.

    With ``offsite_remote`` set, ``offsite_class`` then uploads (a run of its own in the metrics): its
    failure fails the module, with the backup it kept in the details. A reader (``fetch_kind``) with
    ``offsite_remote`` first fetches its restore point into ``backup_dir``, checked against the
    manifest (part of its run in the metrics); in check mode it only reads the remote unless the
    restore point is already here. Our errors become one-line failures with their details; warnings
    are shown either way.
    """
    prepare = None
    if fetch_kind is not None and module.params.get('offsite_remote'):
        if module.check_mode:
            try:
                plan = remote_plan(module.params, fetch_kind)
            except SupabaseBackupError as exc:
                module.fail_json(msg=exc.msg, **exc.details)
            if plan is not None:
                module.exit_json(**plan)

        def prepare(params):
            return fetch_first(params, fetch_kind, module.check_mode)

    result, error, warnings = run_backend(backend_class, module.params, check_mode=module.check_mode,
                                          prepare=prepare)
    for warning in warnings:
        module.warn(warning)
    if error is not None:
        module.fail_json(msg=error.msg, **error.details)
    if offsite_class is not None and module.params.get('offsite_remote'):
        offsite, error, warnings = run_backend(offsite_class, module.params, check_mode=module.check_mode)
        for warning in warnings:
            module.warn(warning)
        if error is not None:
            module.fail_json(msg='the backup %s was written and kept, but %s' % (result.get('path'), error.msg),
                             backup=result, **error.details)
        result['removed'] = list(result.get('removed') or []) + offsite.pop('removed')
        result['offsite'] = offsite
    module.exit_json(**result)
