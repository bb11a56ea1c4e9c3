#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: offsite_fetch
short_description: Fetch a Supabase restore point from its off-site copy, every part checked against its manifest
version_added: 0.2.0
description:
  - Lists the rclone remote O(offsite_remote), picks the restore point O(restore_point) or the newest complete one
    there (one whose manifest is there, as the manifest is uploaded last), checks that O(backup_dir) has room for it,
    and downloads it, the manifest first, then each part and its checksum file. A part takes its name only once its
    sha256 matches the manifest; until then it is a private temporary file, removed on failure.
  - A restore point already in O(backup_dir) is not fetched again (not changed).
  - What M(cortexreview.supabase_backup.supabase_restore) and the other readers do first when given
    O(offsite_remote); on its own, for a disaster-recovery drill that times each phase, or to inspect a copy.
author:
  - CortexReview engineering (@cortexreview)
extends_documentation_fragment:
  - cortexreview.supabase_backup.attributes
  - cortexreview.supabase_backup.offsite
attributes:
  check_mode:
    support: full
    details: Only lists the remote and reports what it would fetch.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: A restore point already here is not fetched again.
options:
  backup_dir:
    description: Where the restore point goes; created C(0700) when missing. Files are written C(0600).
    type: path
    required: true
  kind:
    description: V(logical) for the restore points of M(cortexreview.supabase_backup.supabase_dump), V(volume) for
      the snapshots of M(cortexreview.supabase_backup.volume_snapshot).
    type: str
    choices: [logical, volume]
    default: logical
  prefix:
    description: File name prefix of the logical restore points.
    type: str
    default: supabase_backup
  restore_point:
    description: The restore point (its stem, such as C(supabase_backup_20260101_020000)); default the newest complete
      one on the remote.
    type: str
  lock_timeout:
    description: Seconds to wait for another run on O(backup_dir) to finish.
    type: int
    default: 600
'''

EXAMPLES = r'''
- name: Fetch the newest restore point from S3
  cortexreview.supabase_backup.offsite_fetch:
    backup_dir: /var/backups/supabase
    offsite_remote: s3backups:cortexreview/db1
  register: fetched
'''

RETURN = r'''
restore_point:
  description: The restore point fetched (or that would be, or that was here already).
  returned: success
  type: str
  sample: supabase_backup_20260101_020000
files:
  description: Its files on the remote.
  returned: success
  type: list
  elements: str
size:
  description: Their total size in bytes.
  returned: success
  type: int
duration:
  description: Seconds the fetch took.
  returned: success
  type: float
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._ansible_module import run_module
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._offsite_backend import FetchBackend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import fetch_argument_spec


def main():
    module = AnsibleModule(argument_spec=fetch_argument_spec(), supports_check_mode=True)
    run_module(module, FetchBackend)


if __name__ == '__main__':
    main()
