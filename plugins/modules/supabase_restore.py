#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: supabase_restore
short_description: Restore a Supabase PostgreSQL database from a SQL dump without risking the live data
version_added: 0.1.0
description:
  - Restores a C(.sql.gz) backup made by M(cortexreview.supabase_backup.supabase_dump) or by the contract's shell
    procedure (C(pg_dump | gzip)), following the contract's steps (stop the writers, replace the database,
    start the writers, verify) in an order that never loses the live database.
  - "1. With O(writers_stop_at=load) (the contract's order), the backup is read in full before anything changes: it
    must exist, decompress to the end, match its C(.sha256) sidecar and manifest when they exist, and be a complete
    C(pg_dump) plain dump; then the writer containers (O(stop_containers), and services of O(stop_compose_project))
    are stopped and the remaining sessions on the database are ended. With O(writers_stop_at=swap) (the default)
    the writers keep running and these checks ride on the load's own read of the file."
  - "2. The dump is loaded into a new scratch database with C(ON_ERROR_STOP), so any SQL error fails the restore:
    schema and data in one session, then the indexes and constraints in parallel sessions (O(restore_jobs)), then
    the rest of the post-data section. A backup that fails its checks fails here, before any post-data statement
    and with nothing stopped in the default mode. When the module runs as root on the Docker host, the first
    session's psql reads the dump from a named pipe in the DB container's C(/tmp) (created for the load, removed
    once opened) instead of through the Docker engine's exec stream, which costs the engine about 2 CPU-seconds per
    350 MB; otherwise, or if psql cannot open the pipe, the exec stream is used (see RV(load)). Past its first
    8 MB, a table's COPY rows go in turns of whole lines to that session and to helper sessions running the
    same COPY (one fewer than the post-data sessions), so more than one backend parses them; the helpers end
    before any post-data statement, and the row counts are checked as always."
  - "With O(writers_stop_at=swap), the Docker engine's file system is written out (C(syncfs)) while the scratch
    database is verified: a container's stop writes out what is dirty there first, so after a large load the
    writers' stop took most of a second longer."
  - "3. The scratch database is verified: the row count of every table equals the backup's, every index of the
    backup exists and is valid, the manifest's extensions exist, and a vector search through C(match_knowledge)
    returns the exact nearest neighbours (probes equal to lists, compared with an exact scan)."
  - "4. With O(writers_stop_at=swap), the writers are stopped now; then the live database is renamed to
    C(<db>_pre_restore_<timestamp>) and the scratch database takes its name, both renames in one transaction run
    from O(maintenance_db), which also ends the sessions left on both. Database-level settings, grants, connection
    limit and comment are carried over from the live database."
  - "5. The writers are started again in every case, success or failure; RV(downtime) is how long they were down."
  - A durable record beside the backup (C(.cortexreview-restore-<container>-<db>.json), mode 0600) says what the
    run stopped and created; a restore whose process died is finished by the next run, which drops its scratch
    database and starts the writers it stopped, and M(cortexreview.supabase_backup.backup_status) fails meanwhile.
  - A failure at any step leaves the live database exactly as it was, and drops the scratch database.
  - "O(components) restores more of a restore point than its main database, in this order: every selected part is
    checked first (present, matching the sha256 of the manifest and of its sidecar, decryptable), and a part missing or
    altered is refused, naming it, before anything changes; the roles the cluster lacks are created (C(CREATE ROLE)
    only); the main database and each extra database go through their own scratch database, load and verification,
    and are swapped in together in one transaction (an extra database missing on the server is created by the rename,
    with no previous copy); only then do the roles of the backup get their attributes, password hashes, comments,
    settings and memberships, in one transaction, so a failure before leaves every existing role as it was; then the
    file components. No role is ever dropped; the role the restore connects as keeps its own attributes and password."
  - "The file components, after the databases and the roles, each read whole and its target checked before anything
    changes (member names that stay inside, no links leading out): V(db_config) puts the DB config files into
    O(container) (owner and mode from the backup, each renamed into place) and restarts it, waiting until PostgreSQL
    accepts connections; V(deployment) writes each host file atomically with its owner and mode; V(storage) replaces
    Storage's objects (see O(storage_path))."
  - A database restored from a backup that records its settings gets the backup's owner, encoding and locale,
    connection limit, grants, comment and C(ALTER DATABASE ... SET) / C(ALTER ROLE ... IN DATABASE ... SET) settings;
    from an older backup, the live database's (a role they name that does not exist is left out, with a warning).
  - "C(pg_cron) creates its objects only in the database C(cron.database_name) names, never in the scratch database:
    its entries (the extension, its comment, everything of schema C(cron): jobs, runs, sequence values, ACLs, default
    ACLs, and the schema's ACL) are taken out of the load into a private spool file and run in the restored database
    right after the swap, writers still stopped, in one transaction, their row counts then checked. If that fails
    the swap is undone in one transaction and the live databases are as they were. Before anything changes (check
    mode too), a database whose manifest lists C(pg_cron) needs a server that offers it and whose
    C(cron.database_name) names that database. The test bed's C(pg_cron) is a stand-in without a worker: that no job
    runs meanwhile, and the launcher's reconnection after the swap, are not tested."
author:
  - CortexReview engineering (@cortexreview)
extends_documentation_fragment:
  - cortexreview.supabase_backup.attributes
  - cortexreview.supabase_backup.attributes.restore_source
  - cortexreview.supabase_backup.connection
  - cortexreview.supabase_backup.encryption
  - cortexreview.supabase_backup.offsite
attributes:
  check_mode:
    support: full
    details: >-
      Checks the backup and reports the plan; stops nothing and changes nothing. O(confirm) is not needed.
      A backup with a checksum sidecar and a manifest is checked by its checksum (and, when encrypted, the
      passphrase by decrypting its start); one without them is read and checked in full.
  diff_mode:
    support: none
  idempotent:
    support: none
    details: Every run replaces the database, so it always reports changed.
options:
  confirm:
    description:
      - Must be V(true) for a real run; the restore replaces the current contents of O(db).
    type: bool
    default: false
  components:
    description:
      - What to restore from the restore point. V(database) is the main database (O(db)); V(extra_databases) every
        other database of the restore point; V(globals) the cluster's roles (needs a superuser O(login_user));
        V(db_config), V(deployment) and V(storage) the file parts.
      - V(all) is every component the restore point holds; from an older backup (its main database only) it restores
        that and reports the rest in RV(not_in_backup). A component named explicitly that the restore point lacks is
        refused before anything changes.
    type: list
    elements: str
    choices: [database, extra_databases, globals, db_config, deployment, storage, all]
    default: [database]
  storage_path:
    description:
      - Where the V(storage) component goes, a host directory; default, where it was taken from (O(storage_path) or
        O(storage_volume) of the backup, as its manifest records).
      - Its previous contents are moved aside inside it (renames), put back if the restore fails, and deleted once the
        objects are extracted (owners, modes, extended attributes) and matched their checksum. A filesystem that
        cannot hold C(user.*) extended attributes is refused before anything changes.
      - Not with O(storage_volume).
    type: path
  storage_volume:
    description:
      - Where the V(storage) component goes, a Docker volume, written by a helper container from the image of
        O(container); otherwise as O(storage_path).
    type: str
  storage_container:
    description:
      - Storage's container, stopped while its objects are replaced and started again in every case (when it ran).
        Unset, nothing is stopped.
    type: str
  stop_containers:
    description:
      - Containers that write to the database, stopped during the restore and started again afterwards.
        Only those running at the start are stopped and started; names that do not exist are skipped with a warning.
    type: list
    elements: str
    default: [cortexreview-api, cortexreview-worker]
  stop_compose_project:
    description:
      - Also stop the containers of this Docker Compose project (label C(com.docker.compose.project)),
        except the database container itself.
    type: str
  stop_compose_services:
    description:
      - With O(stop_compose_project), only the containers of these compose services.
    type: list
    elements: str
    default: []
  stop_timeout:
    description:
      - Seconds each writer gets to stop before it is killed.
    type: int
    default: 30
  metrics_file:
    description:
      - Prometheus textfile-collector file to update after every restore, successful or not
        (labels C(kind="logical"), C(operation="restore")); the backups' samples in it are kept.
    type: path
  keep_previous:
    description:
      - Keep the live database as C(<db>_pre_restore_<timestamp>) until the next successful restore replaces it,
        so at most one such copy exists. V(false) drops it once the restore succeeded.
    type: bool
    default: true
  writers_stop_at:
    description:
      - When the writers are stopped. V(swap) keeps them running while the backup loads into the scratch database
        and is verified, and stops them only for the swap, so they are down for seconds; what they write during
        the load stays in the previous database, which is therefore always kept (O(keep_previous=false) is refused).
      - V(load) stops them before the load, as the contract's procedure does (stop, drop, create, restore, start),
        and verifies the backup in full before that; they are down for the whole restore.
    type: str
    choices: [swap, load]
    default: swap
  restore_jobs:
    description:
      - Sessions that build the indexes and constraints in parallel after the data is loaded. V(0) is one per CPU
        the database container may use, at most 4. Their O(maintenance_work_mem) is lowered so that together they use
        at most a quarter of the memory the database container may use (its memory limit, else the host's memory).
    type: int
    default: 0
  lock_timeout:
    description:
      - Seconds to wait for a backup or restore that holds the backup's directory.
    type: int
    default: 600
seealso:
  - module: cortexreview.supabase_backup.supabase_dump
'''

EXAMPLES = r'''
- name: Restore the newest backup, encrypted or not, decrypting with the passphrase from Vault
  cortexreview.supabase_backup.supabase_restore:
    backup_dir: /var/backups/supabase
    encrypt_passphrase: "{{ vault_backup_passphrase }}"
    confirm: true

- name: Restore a backup, keeping the current database as postgres_pre_restore_<timestamp>
  cortexreview.supabase_backup.supabase_restore:
    src: /var/backups/supabase/supabase_backup_20260101_020000.sql.gz
    confirm: true

- name: Restore the restore point of a given night
  cortexreview.supabase_backup.supabase_restore:
    backup_dir: /var/backups/supabase
    restore_point: supabase_backup_20260101_020000
    confirm: true

- name: Restore the databases and the roles of a restore point onto a new host
  cortexreview.supabase_backup.supabase_restore:
    backup_dir: /var/backups/supabase
    restore_point: supabase_backup_20260101_020000
    components: [database, extra_databases, globals]
    confirm: true

- name: Plan a restore (check mode needs no confirmation)
  cortexreview.supabase_backup.supabase_restore:
    src: /var/backups/supabase/supabase_backup_20260101_020000.sql.gz
  check_mode: true

- name: Restore, stopping every service of the compose project except the DB
  cortexreview.supabase_backup.supabase_restore:
    src: /var/backups/supabase/supabase_backup_20260101_020000.sql.gz
    confirm: true
    stop_containers: []
    stop_compose_project: cortexreview
'''

RETURN = r'''
restore_point:
  description: The restore point restored (its stem); null for a backup not named like one.
  returned: always
  type: str
  sample: supabase_backup_20260101_020000
components:
  description: The components restored (in check mode, that would be), in the order they are applied.
  returned: always
  type: list
  elements: str
not_in_backup:
  description: With O(components=all), the components the restore point does not hold.
  returned: always
  type: list
  elements: str
databases:
  description: Each database restored (C(database), C(part), C(sha256), C(tables), C(created), C(previous_database),
    C(settings_from) V(backup), V(live) or V(none), and C(after_swap) with the C(extensions) and C(tables) restored
    after the swap, see C(pg_cron)); in check mode the plan for each (C(after_swap) lists the extensions).
  returned: always
  type: list
  elements: dict
roles_created:
  description: Roles of the backup that the cluster lacked and that were (in check mode, would be) created.
  returned: always
  type: list
  elements: str
roles_changed:
  description: Roles given their attributes, passwords, settings and memberships from the backup.
  returned: success, not in check mode
  type: list
  elements: str
roles_kept:
  description: Roles of the backup whose attributes were left as they are (the role the restore connects as), and
    whose password too when the backup holds none for it.
  returned: success, not in check mode
  type: list
password_restored:
  description: The role the restore connects as, when it got its password hash from the backup. That is done
    last, after every other step, so that no later step needs the old password; a failure there is a warning.
  returned: success with the globals component, when the backup holds that role's password
  type: str
  elements: str
files:
  description: What each file component's restore did (or, in check mode, would do).
  returned: always
  type: dict
src:
  description: The backup restored.
  returned: always
  type: str
size:
  description: Size in bytes of the backup file restored (also the metrics' C(size_bytes)).
  returned: success, not in check mode
  type: int
sha256:
  description: SHA-256 of the backup file.
  returned: always
  type: str
tables:
  description: Row count of every table of the restored database (in check mode, of the backup).
  returned: always
  type: dict
indexes:
  description: Indexes of the restored database.
  returned: success, not in check mode
  type: list
  elements: str
verification:
  description: What was verified in the restored database before it was swapped in.
  returned: success, not in check mode
  type: dict
previous_database:
  description: Name under which the previous live database is kept, or null when it was dropped.
  returned: always
  type: str
scratch_database:
  description: Name of the database the backup is restored into before the swap (check mode).
  returned: check mode
  type: str
stopped:
  description: Containers stopped for the restore.
  returned: always
  type: list
  elements: str
started:
  description: Containers started again afterwards.
  returned: always
  type: list
  elements: str
sessions_ended:
  description: Number of sessions on the database ended before the load (O(writers_stop_at=load)).
  returned: success, not in check mode
  type: int
downtime:
  description: Seconds from the first writer's stop to all of them running again; null when none was stopped.
  returned: not in check mode
  type: float
writers_stop_at:
  description: When the writers were (or would be) stopped.
  returned: always
  type: str
timings:
  description: Seconds of each phase (C(load), C(post_data), C(verify), C(swap)).
  returned: success, not in check mode
  type: dict
load:
  description: How the dump reached psql (C(transport) V(pipe), V(exec) or V(local), and C(not_piped), why a
    container's load did not use the named pipe), the tables whose rows more than one session parsed
    (C(rows_shared)), and how the post-data section was built (C(sessions), C(maintenance_work_mem),
    C(max_parallel_maintenance_workers), C(parallel_entries)).
  returned: success, not in check mode
  type: dict
interrupted_restore:
  description:
    - An earlier restore that did not end and that this run finished (or, in check mode, would finish).
    - In check mode, its record as found, with C(running) true while a run still holds the backup directory (the
      record is then a running restore's, not a dead one's).
  returned: always
  type: dict
checksum_only:
  description: In check mode, whether the backup was checked by its checksum sidecar rather than read in full.
  returned: check mode
  type: bool
duration:
  description: Seconds the restore took, the verifications and the writers' restart included.
  returned: always
  type: float
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._ansible_module import run_module
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_kinds import LOGICAL
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import (
    SOURCE_RULES,
    restore_argument_spec,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._restore import RestoreBackend


def main():
    module = AnsibleModule(argument_spec=restore_argument_spec(), supports_check_mode=True, **SOURCE_RULES)
    run_module(module, RestoreBackend, fetch_kind=LOGICAL)


if __name__ == '__main__':
    main()
