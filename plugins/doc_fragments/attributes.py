# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:

    # What the attributes mean; each module says how far it supports them.
    DOCUMENTATION = r'''
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
'''

    # The backup a restore or a validation reads, and the restore session's settings.
    RESTORE_SOURCE = r'''
options:
  src:
    description:
      - The backup file, C(.sql.gz) or C(.sql.gz.gpg). One of O(src) and O(backup_dir) is required.
    type: path
  backup_dir:
    description:
      - Use the newest restore point of O(prefix) in this directory (by the timestamp in its name), or the
        one O(restore_point) names.
    type: path
  restore_point:
    description:
      - The restore point of O(backup_dir) to use, by its stem C(<prefix>_YYYYMMDD_HHMMSS), for example
        V(supabase_backup_20260101_020000), the files one backup run wrote, described by one
        C(<stem>.manifest.json). Backups older than that manifest, and those of the contract's shell
        procedure, are one-part restore points of the same name.
      - Needs O(backup_dir); mutually exclusive with O(src). A name that is not a restore point of O(prefix),
        or one that is not in O(backup_dir), fails before anything changes.
    type: str
  prefix:
    description:
      - File name prefix of the backups in O(backup_dir).
    type: str
    default: supabase_backup
  maintenance_work_mem:
    description:
      - C(maintenance_work_mem) of the restore session. An IVFFlat index of 1536-dimension vectors with
        C(lists = 100) needs about 65MB, more than PostgreSQL's default of 64MB.
    type: str
    default: 1GB
  maintenance_db:
    description:
      - Database to connect to for creating, renaming and dropping databases.
    type: str
    default: template1
notes:
  - The restore needs free space in the database server for a second copy of the database while it runs.
'''
