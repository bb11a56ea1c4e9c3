#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: pitr_offsite
short_description: Copy the point-in-time archive (WAL and base backups) off the host, encrypted, or fetch it back
version_added: 0.3.0
description:
  - The off-site copy of the archive that M(cortexreview.supabase_backup.pitr_archive) and
    M(cortexreview.supabase_backup.pitr_base_backup) keep under C(<backup_dir>/pitr), through rclone, to
    C(<offsite_remote>/pitr/).
  - O(state=present) uploads what the remote lacks. Base backups first, each as one C(<name>.tar.gz.gpg) (the
    directory as a tar stream, compressed on all cores and encrypted as it is written to a private staging file),
    then its catalog entry C(<name>.json) last, so a base backup is complete on the remote once its entry is there.
    Then every completed WAL segment and timeline history file as C(<name>.gz.gpg), oldest first, and the segment
    being received as C(<segment>.partial.gz.gpg), replaced on every run. Run it every few minutes (the role's
    cron entry does) and the off-site copy is at most that far behind. Every file is verified after its upload by the
    remote's hash, else by reading it back.
  - Then, unless O(offsite_retention=false), remote copies of what local retention removed go (base backups older
    than the oldest one here, catalog entry first; WAL older than its start). Nothing is removed while the local
    catalog cannot be read whole.
  - O(state=fetched) brings base backup O(base_backup) (default the newest complete one on the remote) with the
    backups it builds on, and every WAL file from the first one's start, into C(<backup_dir>/pitr) on a new host,
    before M(cortexreview.supabase_backup.pitr_restore). Each file is decrypted and decompressed to its end (gpg's
    integrity check, gzip's length and CRC) before it takes its name; a base backup's entry takes its name last.
    Files already here are kept.
  - The archive holds all the data, so it goes off-site encrypted; without a passphrase the run is refused unless
    O(offsite_allow_plain=true).
author:
  - CortexReview engineering (@cortexreview)
extends_documentation_fragment:
  - cortexreview.supabase_backup.attributes
  - cortexreview.supabase_backup.encryption
  - cortexreview.supabase_backup.offsite
  - cortexreview.supabase_backup.offsite.upload
attributes:
  check_mode:
    support: full
    details: Lists the remote and the archive and reports what would be uploaded, removed or fetched.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: A second run with nothing new uploads and fetches nothing (not changed).
options:
  state:
    description: V(present) uploads, V(fetched) brings a base backup chain and its WAL back.
    type: str
    choices: [present, fetched]
    default: present
  backup_dir:
    description: The backup directory; the archive is its C(pitr) directory (created C(0700) when fetching).
    type: path
    required: true
  base_backup:
    description: With O(state=fetched), the base backup to fetch (such as C(pitr-base-20261127_020000)), with the ones
      it builds on; default the newest complete one on the remote.
    type: str
  compression_level:
    description: gzip level (1-9) of the copies.
    type: int
    default: 5
  compress_threads:
    description: Threads compressing; V(0) for one per CPU.
    type: int
    default: 0
  lock_timeout:
    description: Seconds to wait for a base backup, retention or restore on the archive to finish.
    type: int
    default: 600
  metrics_file:
    description: Prometheus textfile-collector file updated after every real run (C(kind="pitr"), C(operation="offsite")).
    type: path
'''

EXAMPLES = r'''
- name: Copy the archive's new files off the host
  cortexreview.supabase_backup.pitr_offsite:
    backup_dir: /var/backups/supabase
    offsite_remote: s3backups:cortexreview/db1
    encrypt_passphrase_file: /etc/cortexreview-supabase-backup/passphrase

- name: On a new host, bring the newest base backup and its WAL back before pitr_restore
  cortexreview.supabase_backup.pitr_offsite:
    state: fetched
    backup_dir: /var/backups/supabase
    offsite_remote: s3backups:cortexreview/db1
    encrypt_passphrase_file: /etc/cortexreview-supabase-backup/passphrase
'''

RETURN = r'''
uploaded:
  description: Files uploaded and verified, as C(base/NAME) or C(wal/NAME) on the remote.
  returned: state=present
  type: list
  elements: str
  sample: [wal/000000010000000000000003.gz.gpg]
pending:
  description: Files the remote lacked when the run began (in check mode, what would be uploaded).
  returned: state=present
  type: list
  elements: str
removed:
  description: Remote copies removed (in check mode, that would be).
  returned: state=present
  type: list
  elements: str
partial:
  description: The segment being received whose copy was refreshed, or null.
  returned: state=present, not in check mode
  type: str
uploaded_bytes:
  description: Bytes uploaded.
  returned: state=present
  type: int
fetched:
  description: Files fetched (in check mode, that would be), as on the remote.
  returned: state=fetched
  type: list
  elements: str
fetched_bytes:
  description: Bytes downloaded.
  returned: state=fetched
  type: int
chain:
  description: The base backups fetched, the full one first.
  returned: state=fetched
  type: list
  elements: str
remote:
  description: The remote.
  returned: success
  type: str
duration:
  description: Seconds the run took.
  returned: success
  type: float
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._ansible_module import run_module
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import (
    PITR_OFFSITE_RULES,
    pitr_offsite_argument_spec,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._pitr_offsite_backend import PitrOffsiteBackend


def main():
    module = AnsibleModule(argument_spec=pitr_offsite_argument_spec(), supports_check_mode=True, **PITR_OFFSITE_RULES)
    run_module(module, PitrOffsiteBackend)


if __name__ == '__main__':
    main()
