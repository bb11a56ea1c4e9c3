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
      - The backup file, C(.sql.gz). One of O(src) and O(backup_dir) is required.
    type: path
  backup_dir:
    description:
      - Use the newest backup of O(prefix) in this directory (by the timestamp in its name).
    type: path
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
