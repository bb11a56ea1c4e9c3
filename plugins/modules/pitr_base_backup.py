#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: pitr_base_backup
short_description: Take a base backup for point-in-time recovery, full or incremental, verified and cataloged
version_added: 0.1.0
description:
  - Takes a base backup of the Supabase database for the point-in-time archive that
    M(cortexreview.supabase_backup.pitr_archive) set up, with PostgreSQL's own C(pg_basebackup)
    (plain format, C(-X stream), C(--checkpoint=fast)), run in a one-shot container made from the DB container's own
    image (no pull) on the DB's network. The password reaches it only through C(<backup_dir>/pitr/.pgpass), never its
    command line or environment.
  - The backup is written to C(<backup_dir>/pitr/base/.pitr-base-YYYYMMDD_HHMMSS.partial), checked against its
    manifest with C(pg_verifybackup), made private (files C(0600), directories C(0700)), described by the catalog
    entry C(<backup_dir>/pitr/base/pitr-base-YYYYMMDD_HHMMSS.json) (written atomically) and only then renamed to
    C(pitr-base-YYYYMMDD_HHMMSS). A base backup exists for the restore if and only if its catalog entry does. On any
    failure the partial directory is removed and nothing else changes.
  - With O(incremental=true) the backup is incremental (C(pg_basebackup --incremental)) on the newest base backup,
    where the server is PostgreSQL 17 or later, C(summarize_wal) is on and a full base backup exists; otherwise a
    full one is taken with a warning that says why (the server is detected, not configured). On PostgreSQL 15 and 16
    every base backup is full.
  - After a successful backup, retention removes whole chains (a full backup with the incrementals built on it),
    those beyond the newest O(retention_full) chains and older than O(retention_days), the age of a chain being the
    time the next full backup finished, so that every moment of the window stays recoverable. Each catalog entry goes
    before its directory, the newest member of a chain first. Then the WAL segments older than the oldest kept base
    backup's first segment are removed from C(<backup_dir>/pitr/wal); C(.history) files are never removed, and
    nothing at all is removed while a catalog entry cannot be read. Problems of retention are warnings; the backup
    just taken stands.
  - Base backup, retention and point-in-time restore hold the same lock, C(<backup_dir>/pitr/.lock); partial
    directories left by a run that died are removed by the next one.
  - Every run outside check mode is recorded in O(metrics_file) with the labels C(kind="pitr"),
    C(operation="base_backup").
  - Fails with one line naming what is missing when the archive is not set up (its directories, C(.pgpass), the
    replication slot or the C(pg_hba.conf) line for replication connections); run
    M(cortexreview.supabase_backup.pitr_archive) first.
author:
  - CortexReview engineering (@cortexreview)
extends_documentation_fragment:
  - cortexreview.supabase_backup.attributes
  - cortexreview.supabase_backup.pitr
attributes:
  check_mode:
    support: full
    details:
      - Reads the server and the catalog and reports the kind of backup a real run would take (with the same warnings)
        and what retention would remove; it writes nothing and takes no lock.
  diff_mode:
    support: none
  idempotent:
    support: none
    details: Every run takes a new base backup, so it always reports changed.
options:
  incremental:
    description:
      - Take an incremental base backup on the newest one, where the server supports it (see above); else a full one,
        with a warning.
    type: bool
    default: false
  retention_full:
    description:
      - The newest O(retention_full) chains (full base backups with their incrementals) are always kept.
    type: int
    default: 2
  retention_days:
    description:
      - Older chains are removed once the next full base backup finished more than O(retention_days) days ago, with the
        WAL only they needed. V(0) keeps only the newest O(retention_full) chains.
    type: int
    default: 14
notes:
  - The base backup's own WAL is in it (C(-X stream)); recovery to a later moment needs the archive's WAL from the
    backup's C(start_wal) on, which the receiver of M(cortexreview.supabase_backup.pitr_archive) keeps.
  - Tablespaces other than the default ones are refused, since a plain-format backup would write them to their
    original paths inside the short-lived tool container.
seealso:
  - module: cortexreview.supabase_backup.pitr_archive
'''

EXAMPLES = r'''
- name: Take a full base backup
  cortexreview.supabase_backup.pitr_base_backup:
    backup_dir: /var/backups/supabase

- name: Take an incremental base backup where the server supports it, keep three full chains for 30 days
  cortexreview.supabase_backup.pitr_base_backup:
    backup_dir: /var/backups/supabase
    incremental: true
    retention_full: 3
    retention_days: 30
    metrics_file: /var/lib/prometheus/node-exporter/supabase_backup.prom
'''

RETURN = r'''
name:
  description: The base backup taken (in check mode, the one that would be taken).
  returned: success
  type: str
  sample: pitr-base-20261127_101500
path:
  description: Its directory.
  returned: success
  type: str
  sample: /var/backups/supabase/pitr/base/pitr-base-20261127_101500
type:
  description: V(full) or V(incremental); what was (would be) taken, after the fallbacks to a full backup.
  returned: success
  type: str
  sample: incremental
parent:
  description: The base backup an incremental one builds on; null for a full one.
  returned: success
  type: str
  sample: pitr-base-20261126_020000
entry:
  description: The catalog entry written, C(<path>.json).
  returned: success, not in check mode
  type: dict
  sample:
    format: 1
    name: pitr-base-20261127_101500
    type: full
    parent: null
    timeline: 1
    start_lsn: 0/2000028
    stop_lsn: 0/2000120
    start_wal: "000000010000000000000002"
    stop_wal: "000000010000000000000002"
    started_at: "2026-11-27T10:15:00.123456+00:00"
    finished_at: "2026-11-27T10:15:04.654321+00:00"
    finished_epoch: 1795774504.654321
    pg_version: "18"
    system_identifier: "7441234567890123456"
    wal_segment_size: 16777216
    size: 41234567
size:
  description: Bytes of the base backup's directory.
  returned: success, not in check mode
  type: int
verified:
  description: Whether C(pg_verifybackup) passed; a backup that fails it is removed and the module fails.
  returned: success, not in check mode
  type: bool
removed:
  description: The base backups retention removed (would remove), each chain's newest first.
  returned: success
  type: list
  elements: str
removed_wal:
  description: The WAL files retention removed (would remove).
  returned: success
  type: list
  elements: str
removed_wal_bytes:
  description: Their total size in bytes.
  returned: success
  type: int
removed_partials:
  description: Partial directories of earlier runs that died, removed before this one.
  returned: success, not in check mode
  type: list
  elements: str
wal_gaps:
  description: WAL segments (or C(.history) files of a broken timeline) missing from the archive since the oldest
    kept base backup; each is also a warning.
  returned: success
  type: list
  elements: str
duration:
  description: Seconds the run took.
  returned: success, not in check mode
  type: float
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._ansible_module import run_module
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import (
    pitr_base_backup_argument_spec,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._pitr_base import PitrBaseBackend


def main():
    module = AnsibleModule(argument_spec=pitr_base_backup_argument_spec(), supports_check_mode=True)
    run_module(module, PitrBaseBackend)


if __name__ == '__main__':
    main()
