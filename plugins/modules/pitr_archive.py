#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: pitr_archive
short_description: Stream the Supabase database's WAL continuously into the backup directory, for point-in-time recovery
version_added: 0.1.0
description:
  - Continuous WAL archiving with PostgreSQL's own tools. A receiver container runs C(pg_receivewal) through a physical
    replication slot into C(<backup_dir>/pitr/wal), so every committed transaction reaches the backup directory within
    seconds. With the base backups of the point-in-time recovery, the database can be recovered to any moment the
    archive covers.
  - "O(state=present) makes the server archive, checking and correcting on every run:
    1. the directories C(<backup_dir>/pitr), C(wal) and C(base) (mode C(0700)) and C(pitr/.pgpass) (mode C(0600));
    2. a C(replication) line for O(login_user) in the server's C(pg_hba.conf) (found with C(SHOW hba_file)), appended
    as C(host replication \"<login_user>\" samenet scram-sha-256) as the file's owner, checked with
    C(pg_hba_file_rules) and loaded with a reload. The file may be recreated with the container, so it is checked on
    every run. An existing rule that already lets O(login_user) stream from the container network is kept;
    3. C(wal_level) at least C(replica) (never lowered: Supabase runs C(logical)), enough C(max_wal_senders) (the
    receiver and a base backup's two connections beside the senders already in use) and C(max_replication_slots),
    C(max_slot_wal_keep_size) = O(max_slot_wal_keep_size), and C(summarize_wal = on) on PostgreSQL 17 and later (for
    incremental base backups); set with C(ALTER SYSTEM) and loaded with a reload where that suffices;
    4. the physical replication slot O(slot);
    5. the receiver container C(<container>-pitr-receiver) from the DB container's own image (no pull), on its first
    network, restart policy C(unless-stopped), with only C(<backup_dir>/pitr) mounted (at C(/pitr)). It is recreated
    when its configuration differs (a label holds a hash of it), and restarted when it is stopped or not streaming.
    The run ends when the receiver streams (it appears in C(pg_stat_replication) and the slot is active)."
  - A change that needs a restart of the database (C(wal_level), C(max_wal_senders), C(max_replication_slots)) fails
    with what is needed and changes nothing, unless O(allow_restart) is set; then the container is restarted and the
    run waits until PostgreSQL accepts connections. A setting given on the server's command line cannot be changed
    with C(ALTER SYSTEM), so the module fails and says so.
  - O(state=absent) removes the receiver container and drops the slot, so the server no longer keeps WAL for it. The
    archive, the base backups, C(.pgpass), the C(pg_hba.conf) line and the settings are kept.
author:
  - CortexReview engineering (@cortexreview)
extends_documentation_fragment:
  - cortexreview.supabase_backup.attributes
  - cortexreview.supabase_backup.pitr
attributes:
  check_mode:
    support: full
    details:
      - Reads the server, the files and the containers and reports in C(changes) what a real run would change (a
        needed restart included); changes nothing and takes no lock. A restart that is not allowed fails as in a real
        run.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: A second run with the same options reports no change, as long as the receiver is streaming.
options:
  state:
    description:
      - V(present) makes the server archive and keeps the receiver running; V(absent) stops archiving (receiver and
        slot removed, the archive kept).
    type: str
    choices: [present, absent]
    default: present
  allow_restart:
    description:
      - Restart the database container when a setting that needs it must change. Without it such a run fails and
        names the settings, so a routine run never restarts production by surprise.
    type: bool
    default: false
  max_slot_wal_keep_size:
    description:
      - The most WAL the slot may hold back for an absent receiver (C(max_slot_wal_keep_size)), so a receiver that is
        down cannot fill the database's disk. Beyond it the server removes WAL the archive has not received (a gap,
        which M(cortexreview.supabase_backup.backup_status) reports).
      - A size with the unit V(kB), V(MB), V(GB) or V(TB) (a whole number of megabytes), or V(-1) for no limit.
    type: str
    default: 10GB
notes:
  - O(login_user) needs the C(REPLICATION) attribute (or superuser); the module fails and says so otherwise. It does not
    change roles.
  - The receiver and the tools reach the database by its container name (by its address on Docker's default bridge
    network, where names do not resolve).
  - The collection never edits the operator's compose file; the receiver is a container of its own.
requirements:
  - The DB container's image has C(pg_receivewal), C(stat), C(tail) and C(tee), as the official C(postgres) and
    Supabase images do.
seealso:
  - module: cortexreview.supabase_backup.backup_status
'''

EXAMPLES = r'''
- name: Archive the WAL of the Supabase database continuously
  cortexreview.supabase_backup.pitr_archive:
    backup_dir: /var/backups/supabase
    login_password: "{{ vault_postgres_password }}"

- name: Turn archiving on, restarting the database if a setting needs it
  cortexreview.supabase_backup.pitr_archive:
    backup_dir: /var/backups/supabase
    login_password: "{{ vault_postgres_password }}"
    allow_restart: true
    max_slot_wal_keep_size: 20GB

- name: See what turning archiving on would change
  cortexreview.supabase_backup.pitr_archive:
    backup_dir: /var/backups/supabase
    login_password: "{{ vault_postgres_password }}"
  check_mode: true
  register: plan

- name: Stop archiving (the archive is kept)
  cortexreview.supabase_backup.pitr_archive:
    backup_dir: /var/backups/supabase
    state: absent
'''

RETURN = r'''
changes:
  description: What the run changed (in check mode, would change), in the order it does it.
  returned: success
  type: list
  elements: str
  sample: ["create directory /var/backups/supabase/pitr", "append to /var/lib/postgresql/data/pg_hba.conf: host
    replication \"postgres\" samenet scram-sha-256", "create physical replication slot cortexreview_pitr",
    "create receiver container cortexreview-supabase-db-pitr-receiver"]
state:
  description: O(state).
  returned: success
  type: str
slot:
  description: The replication slot.
  returned: success
  type: str
  sample: cortexreview_pitr
receiver:
  description: Name of the receiver container.
  returned: success
  type: str
  sample: cortexreview-supabase-db-pitr-receiver
wal_dir:
  description: The directory the receiver writes the WAL into.
  returned: success
  type: str
  sample: /var/backups/supabase/pitr/wal
hba_file:
  description: The server's C(pg_hba.conf).
  returned: success, state=present
  type: str
server_version_num:
  description: The server's C(server_version_num).
  returned: success, state=present
  type: int
  sample: 180001
restarted:
  description: Whether the database container was restarted.
  returned: success
  type: bool
streaming:
  description: Whether the receiver streams (in check mode, whether it streamed before the run).
  returned: success, state=present
  type: bool
duration:
  description: Seconds the run took.
  returned: success
  type: float
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._ansible_module import run_module
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import pitr_archive_argument_spec
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._pitr_archive import PitrArchiveBackend


def main():
    module = AnsibleModule(argument_spec=pitr_archive_argument_spec(), supports_check_mode=True)
    run_module(module, PitrArchiveBackend)


if __name__ == '__main__':
    main()
