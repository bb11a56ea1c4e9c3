# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:

    # The options of every module that writes backups into a backup directory.
    DOCUMENTATION = r'''
options:
  retention_days:
    description:
      - After a successful run, delete the restore points of this kind (and prefix) whose age in whole days
        exceeds this, like C(find -mtime +N), each whole (backup, checksum, manifests, validation reports).
      - V(0) disables retention.
    type: int
    default: 90
  retention_keep_min:
    description:
      - Never delete the newest this many restore points, the new one included, whatever their age.
    type: int
    default: 3
  mode:
    description:
      - File mode of the backup, its checksum and its manifest, octal as a string (V('0600')) or an integer.
    type: raw
    default: '0600'
  compress_threads:
    description:
      - Number of compression threads. V(0) uses one per available core.
    type: int
    default: 0
  lock_timeout:
    description:
      - Seconds to wait for another run on the same O(backup_dir) (a dump or a snapshot) to finish before failing.
    type: int
    default: 600
'''
