#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: pitr_restore
short_description: Recover the Supabase database to a moment, a named restore point or the latest WAL received
version_added: 0.1.0
description:
  - Point-in-time recovery with PostgreSQL's own recovery, from the base backups of
    M(cortexreview.supabase_backup.pitr_base_backup) and the WAL archive of M(cortexreview.supabase_backup.pitr_archive)
    under C(<backup_dir>/pitr). The data volume keeps its name; its contents are replaced in place.
  - "Before anything stops, every file the recovery needs is checked, and any problem fails the run with the database
    untouched:
    1. the base backup chain to start from: for O(target_time) the newest base backup that finished at or before it
    (a time before the oldest one fails, naming the earliest recoverable moment); for O(target_name) the newest base
    backup made before that restore point as C(pitr/restore_points.jsonl) records it (the oldest full backup when the
    name is not recorded there); for the latest, the newest base backup. An incremental backup brings its full
    backup and the incrementals between them;
    2. C(pg_verifybackup) on every backup of the chain;
    3. the WAL sequence from the chain's start to the end of the archive: a missing segment or timeline history fails
    the run and names it;
    4. the PostgreSQL major version of the backup against the data now in the volume, and the free space of the
    volume (and, for an incremental chain, of the backup directory);
    5. an incremental chain is combined with C(pg_combinebackup) into a staging directory under C(pitr/) and
    verified again."
  - "Then: the writers (O(stop_containers), O(stop_compose_project)) stop, the DB container stops, then the receiver
    container C(<container>-pitr-receiver) (so it has received the DB's last WAL). A short-lived helper container from
    the DB container's own image moves the current contents of the volume into a hidden directory
    C(.cortexreview-restore-<timestamp>-<random>) inside it, copies the base backup in, gives it to the data
    directory's owner, copies the WAL into C(<PGDATA>/.cortexreview-pitr-wal) (the receiver's C(.partial) segment
    under its full name) and writes C(recovery.signal) with C(restore_command), C(recovery_target_time) or
    C(recovery_target_name), C(recovery_target_action=promote) and C(recovery_target_timeline=latest) into
    C(postgresql.auto.conf). The DB container starts; the module waits until the server has replayed the WAL,
    promoted itself (C(pg_is_in_recovery()) false) and answers a query, reads the moment it reached from its log
    (C(pg_last_xact_replay_timestamp()) where the log is not in the container's output), resets the recovery
    settings with C(ALTER SYSTEM RESET), removes the staged WAL and only then deletes the previous contents."
  - Any failure before that (a target the WAL does not reach, a server that does not start) puts the previous
    contents back and starts the DB on them. The writers are started again in every case, and the receiver too when
    nothing was recovered.
  - A recovery opens a new timeline. After it, C(pitr/wal), C(pitr/base) and C(pitr/restore_points.jsonl) are moved
    into C(pitr/retired-YYYYMMDD_HHMMSS) and the replication slot O(slot) is made again; the receiver stays stopped
    until M(cortexreview.supabase_backup.pitr_archive) runs, and a new full base backup should follow at once
    (C(playbooks/pitr_restore.yml) does both).
  - Only the database is recovered. Storage's files, the deployment files and anything else outside the data volume
    are not rolled back.
attributes:
  check_mode:
    support: full
    details:
      - Makes every check of a real run (the chain verified with C(pg_verifybackup), the WAL sequence, versions, free
        space) and returns the plan; stops, combines and changes nothing.
  diff_mode:
    support: none
  idempotent:
    support: none
    details: Every run recovers again and opens another timeline.
extends_documentation_fragment:
  - cortexreview.supabase_backup.attributes
  - cortexreview.supabase_backup.pitr
options:
  target_time:
    description:
      - Recover up to this moment, a timestamp with its zone, for example V(2026-11-27 10:42:00+00) or
        V(2026-11-27T10:42:00Z). Transactions committed at or before it are kept, later ones are not.
      - A time without a zone, or in the future, fails before anything changes.
    type: str
  target_name:
    description:
      - Recover up to the restore point of this name, made with M(cortexreview.supabase_backup.pitr_restore_point)
        (or C(pg_create_restore_point())).
      - A name that is not in the WAL fails the recovery, and the previous contents are put back.
    type: str
  confirm:
    description:
      - Must be V(true) for a real run; the whole database is replaced. Not needed in check mode.
    type: bool
    default: false
  volume:
    description:
      - The Docker volume mounted as the data directory of O(container). Mutually exclusive with O(path).
    type: str
    default: cortexreview-supabase-db-data
  path:
    description:
      - The host directory bind-mounted as the data directory, instead of O(volume).
    type: path
  stop_containers:
    description:
      - Containers that write to the database, stopped before the DB and started again afterwards, whatever
        happens. Only those running are stopped; a missing one is skipped with a warning.
    type: list
    elements: str
    default: [cortexreview-api, cortexreview-worker]
  stop_compose_project:
    description:
      - Also stop the containers of this Docker Compose project (all of them except the DB container, or only
        O(stop_compose_services)).
    type: str
  stop_compose_services:
    description:
      - With O(stop_compose_project), only the containers of these services.
    type: list
    elements: str
    default: []
  stop_timeout:
    description:
      - Seconds each container has to stop before Docker kills it.
    type: int
    default: 120
  ready_timeout:
    description:
      - Seconds to wait for the recovered server to replay the WAL, promote itself and accept connections.
    type: int
    default: 900
notes:
  - Nothing the server logs goes into the result except the lines about where recovery stopped.
  - The pg_hba.conf, settings and roles of the recovered server are those of the base backup, with every change the
    WAL replays.
  - A restore of the volume whose process died leaves the previous contents in a hidden directory inside it; the next
    recovery (or volume restore) finishes it first, as C(cortexreview.supabase_backup.volume_snapshot) describes.
  - A recovery keeps a record of the writers it stopped beside the backups
    (C(.cortexreview-restore-<container>+pitr.json), mode 0600) until they run again. If its process dies, the next
    recovery starts them with its own (and starts the DB again on every path when that one had stopped it), and
    C(cortexreview.supabase_backup.backup_status) fails while they are down.
seealso:
  - module: cortexreview.supabase_backup.pitr_archive
  - module: cortexreview.supabase_backup.pitr_base_backup
  - module: cortexreview.supabase_backup.pitr_restore_point
author:
  - CortexReview engineering (@cortexreview)
'''

EXAMPLES = r'''
- name: Show what a recovery to 10:42 UTC would do (every file checked, nothing stopped)
  cortexreview.supabase_backup.pitr_restore:
    backup_dir: /var/backups/supabase
    target_time: "2026-11-27 10:42:00+00"
  check_mode: true
  register: plan

- name: Recover to 10:42 UTC
  cortexreview.supabase_backup.pitr_restore:
    backup_dir: /var/backups/supabase
    target_time: "2026-11-27 10:42:00+00"
    confirm: true

- name: Recover to the restore point made before the migration
  cortexreview.supabase_backup.pitr_restore:
    backup_dir: /var/backups/supabase
    target_name: before_migration
    stop_compose_project: supabase
    confirm: true

- name: Recover everything the archive received (the database was lost)
  cortexreview.supabase_backup.pitr_restore:
    backup_dir: /var/backups/supabase
    confirm: true
'''

RETURN = r'''
msg:
  description: What was done (in check mode, the plan), the moment reached included.
  returned: always
  type: str
target:
  description: The recovery target, C(kind) V(time), V(name) or V(latest), with C(time) (UTC, ISO 8601) or C(name).
  returned: success
  type: dict
  sample: {"kind": "time", "time": "2026-11-27T10:42:00+00:00", "name": null}
chain:
  description: The base backups the recovery started from, the full one first.
  returned: success
  type: list
  elements: str
  sample: ["pitr-base-20261122_020000", "pitr-base-20261127_020000"]
base_backup:
  description: The last base backup of RV(chain).
  returned: success
  type: str
chain_reason:
  description: Why that chain.
  returned: success
  type: str
start_wal:
  description: The WAL segment the replay starts from.
  returned: success
  type: str
wal_files:
  description: How many WAL files (segments, the partial one and timeline histories) are (would be) copied.
  returned: success
  type: int
partial:
  description: The receiver's C(.partial) segment, copied under its full name, or null.
  returned: success
  type: str
earliest_recoverable:
  description: The earliest moment the archive can recover to (the end of its oldest base backup), ISO 8601.
  returned: success
  type: str
size:
  description: Bytes of base backups and WAL the recovery reads.
  returned: success
  type: int
reached:
  description:
    - Where the recovery stopped, as the server reported it. C(time) is the commit time of the last transaction
      replayed; C(stop) the server's own words ("before commit of transaction 791", "at restore point ..."), null
      when it replayed the whole archive; C(timeline) the new timeline.
  returned: success, not in check mode
  type: dict
  sample: {"time": "2026-11-27T10:41:59.871342+00:00", "stop": "before commit of transaction 791",
           "stop_time": "2026-11-27T10:42:00.112233+00:00", "timeline": 2, "redo_done": "0/5000148",
           "description": "recovery stopped before commit of transaction 791, ..."}
stopped:
  description: The writers, the DB container and the receiver, as far as they ran and were (would be) stopped.
  returned: always
  type: list
  elements: str
started:
  description: The containers started again, or that check mode predicts would be; not the receiver after a recovery.
  returned: always
  type: list
  elements: str
receiver:
  description: What became of the receiver container.
  returned: success, not in check mode
  type: str
retired:
  description: Where the old archive (wal, base, restore_points.jsonl) went, or null if it could not be moved.
  returned: success, not in check mode
  type: str
slot:
  description: The replication slot made again on the new timeline, or null if that failed (a warning says why).
  returned: success, not in check mode
  type: str
previous_contents:
  description: V(deleted), or where inside the volume the previous contents still are (a warning says why).
  returned: success, not in check mode
  type: str
interrupted_restore:
  description: What an earlier restore whose process died had left, finished first (C(set_aside), C(put_back)), or null.
  returned: success, not in check mode
  type: dict
downtime:
  description: Seconds from the first stop until the server was recovered and the writers ran again.
  returned: success, not in check mode
  type: float
duration:
  description: Seconds the run took.
  returned: always
  type: float
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._ansible_module import run_module
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import (
    PITR_RESTORE_RULES,
    pitr_restore_argument_spec,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._pitr_restore import PitrRestoreBackend


def main():
    module = AnsibleModule(argument_spec=pitr_restore_argument_spec(), supports_check_mode=True, **PITR_RESTORE_RULES)
    run_module(module, PitrRestoreBackend)


if __name__ == '__main__':
    main()
