# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
"""How an Ansible module runs a backend: options in, one result or one-line failure out."""

from __future__ import annotations

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backend import run_backend


def run_module(module, backend_class, offsite_class=None):
    """Run ``backend_class`` on the module's options and exit with its result.

    With ``offsite_remote`` set, ``offsite_class`` then uploads (a run of its own in the metrics): its
    failure fails the module, with the backup it kept in the details. Our errors become one-line
    failures with their details; warnings are shown either way.
    """
    result, error, warnings = run_backend(backend_class, module.params, check_mode=module.check_mode)
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
