#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: pitr_restore_point
short_description: Mark a named moment in the Supabase database's WAL that a point-in-time recovery can return to
version_added: 0.1.0
description:
  - Runs C(SELECT pg_create_restore_point(name)) in the database and appends C({"name", "lsn", "time"}) to
    C(<backup_dir>/pitr/restore_points.jsonl) (rewritten whole and renamed into place, mode C(0600)), so that
    M(cortexreview.supabase_backup.pitr_restore) with O(cortexreview.supabase_backup.pitr_restore#module:target_name)
    starts from a base backup made before it.
  - Make one before a risky change (a migration, a bulk update); the WAL archive of
    M(cortexreview.supabase_backup.pitr_archive) must be running for it to be recoverable.
author:
  - CortexReview engineering (@cortexreview)
extends_documentation_fragment:
  - cortexreview.supabase_backup.attributes
  - cortexreview.supabase_backup.pitr
attributes:
  check_mode:
    support: full
    details: Checks the name, the archive directory and the server, and changes nothing.
  diff_mode:
    support: none
  idempotent:
    support: none
    details: Every run marks a new moment, even under a name used before; a recovery stops at the first one after
      its base backup.
options:
  name:
    description:
      - The restore point's name, 1 to 63 letters, digits, C(_), C(.), C(:) or C(-), beginning with a letter or a
        digit. Anything else fails before anything changes.
    type: str
    required: true
'''

EXAMPLES = r'''
- name: Mark the moment before the migration
  cortexreview.supabase_backup.pitr_restore_point:
    backup_dir: /var/backups/supabase
    name: before_migration_2026_11_27
'''

RETURN = r'''
name:
  description: The restore point's name.
  returned: success
  type: str
lsn:
  description: Its WAL position (null in check mode).
  returned: success
  type: str
  sample: 0/5000090
time:
  description: When it was made, UTC, ISO 8601 (null in check mode).
  returned: success
  type: str
restore_points_file:
  description: The file it was recorded in, C(<backup_dir>/pitr/restore_points.jsonl).
  returned: success, not in check mode
  type: str
msg:
  description: What was done (would be done).
  returned: always
  type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._ansible_module import run_module
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import (
    pitr_restore_point_argument_spec,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._pitr_restore import PitrRestorePointBackend


def main():
    module = AnsibleModule(argument_spec=pitr_restore_point_argument_spec(), supports_check_mode=True)
    run_module(module, PitrRestorePointBackend)


if __name__ == '__main__':
    main()
