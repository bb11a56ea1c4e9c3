#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: backup_status
short_description: Report the newest Supabase backup, its age and validation, and the free space; fail when they are not as required
version_added: 0.1.0
description:
  - Reads a backup directory and reports the newest backup (by the timestamp in its name), how many backups there are
    and their total size, the free space of the filesystem, and the newest validation report
    M(cortexreview.supabase_backup.supabase_validate) wrote beside a backup. Encrypted backups (C(.gpg)) count as
    plain ones do.
  - Fails, with a one-line C(msg) naming every problem and the full status in the result, when the newest backup is
    older than O(max_age) or there is none, when O(require_validation) is set and the newest backup did not pass a
    validation, or when less than O(min_free) is free. So a playbook or an AWX job can alert without Prometheus.
  - The age of a backup is that of its file's modification time, which the engine sets when the backup is complete;
    it does not depend on the node's time zone. Copying backups without keeping their modification times
    (C(rsync) without C(-t)) makes them look new.
  - "O(kind=pitr) reports the point-in-time archive of M(cortexreview.supabase_backup.pitr_archive) instead: the receiver
    container (running, restart count), its replication slot and connection (C(pg_stat_replication): streaming, last
    contact; the slot's C(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn))), the newest WAL file, the newest base
    backup of the catalog C(pitr/base/*.json), the archive's size and any gap in the WAL sequence (from the oldest base
    backup's start, timelines included). It fails when the receiver is not running or not streaming, its last contact
    is older than O(max_lag), the slot lost WAL, the archive has a gap, a catalog entry is unreadable, or the newest
    base backup is older than O(max_age)."
  - Nothing is ever changed, so the result is never C(changed). With O(metrics_file), the free-space gauge is refreshed
    there (outside check mode); that is bookkeeping and not reported as a change.
author:
  - CortexReview engineering (@cortexreview)
extends_documentation_fragment:
  - cortexreview.supabase_backup.attributes
  - cortexreview.supabase_backup.offsite
attributes:
  check_mode:
    support: full
    details: The same report and the same failures; the metrics file is not written.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: Never reports a change.
options:
  backup_dir:
    description:
      - The backup directory. The module fails when it does not exist.
    type: path
    required: true
  kind:
    description:
      - V(logical) looks at the backups of M(cortexreview.supabase_backup.supabase_dump),
        C(<prefix>_YYYYMMDD_HHMMSS.sql.gz) and C(.sql.gz.gpg).
      - V(volume) looks at the snapshots of M(cortexreview.supabase_backup.volume_snapshot),
        C(supabase-volume-YYYYMMDD_HHMMSS.tar.gz) and C(.tar.gz.gpg); O(prefix) is ignored.
      - V(pitr) looks at the point-in-time archive in C(<backup_dir>/pitr) and at its receiver and slot on the server
        (O(container), O(login_user), O(slot)).
      - Also the C(kind) label of the metrics written to O(metrics_file).
    type: str
    choices: [logical, volume, pitr]
    default: logical
  prefix:
    description:
      - File name prefix of the logical backups.
    type: str
    default: supabase_backup
  max_age:
    description:
      - Fail when the newest backup (with O(kind=pitr), the newest base backup) is older than this, or when there is
        none.
      - A number of seconds, or a number with a unit, V(s), V(m), V(h), V(d) or V(w), such as V(26h), V(8d) or
        V(1d12h).
      - Default is not to check the age.
    type: raw
  min_free:
    description:
      - Fail when less than this is free, for unprivileged users, on the filesystem of O(backup_dir).
      - A number of bytes, or a number with a unit, V(K), V(M), V(G), V(T) (powers of 1024, with or without
        V(B) or V(iB)), such as V(20GB) or V(1.5TiB).
      - Default is not to check the free space.
    type: raw
  require_validation:
    description:
      - Fail when the newest backup has no validation report beside it, or its validation did not pass. A malformed
        report did not pass.
      - Reports written elsewhere with the O(cortexreview.supabase_backup.supabase_validate#module:report_dir) option
        of M(cortexreview.supabase_backup.supabase_validate) are not seen.
    type: bool
    default: false
  max_lag:
    description:
      - With O(kind=pitr), fail when the receiver's last contact with the server (its status reports come every 10
        seconds) is older than this, in the units of O(max_age).
      - Default V(5m) for O(kind=pitr).
    type: raw
  container:
    description:
      - With O(kind=pitr), the database container; C(psql) runs in it and its receiver is C(<container>-pitr-receiver).
    type: str
    default: cortexreview-supabase-db
  login_user:
    description:
      - With O(kind=pitr), the PostgreSQL role that reads the slot and C(pg_stat_replication).
    type: str
    default: postgres
  login_password:
    description:
      - With O(kind=pitr), the password of O(login_user), if the container's local socket needs one.
    type: str
  docker_host:
    description:
      - With O(kind=pitr), the Docker engine to talk to. Default is E(DOCKER_HOST) or the local socket.
    type: str
  slot:
    description:
      - With O(kind=pitr), the receiver's replication slot.
    type: str
    default: cortexreview_pitr
  offsite_max_age:
    description:
      - With O(offsite_remote), fail when the newest complete restore point on the remote is older than this
        (by the timestamp in its name), in the units of O(max_age). Without it, only a remote with no complete
        restore point fails.
    type: raw
  metrics_file:
    description:
      - Prometheus textfile-collector file whose C(supabase_backup_free_bytes) gauge of label C(kind=<kind>) is
        refreshed; other samples in it are kept. Not written in check mode. Fails when it cannot be written.
      - With O(kind=pitr), the archive's gauges (label C(kind="pitr"), C(operation="archive")) instead,
        C(supabase_backup_pitr_receiver_up), C(_receiver_restarts), C(_last_contact_timestamp_seconds),
        C(_newest_wal_timestamp_seconds), C(_slot_lag_bytes), C(_base_backup_timestamp_seconds), C(_archive_bytes)
        and C(_wal_gaps).
    type: path
notes:
  - The cron command the C(cortexreview.supabase_backup.supabase_backup) role installs has the same engine; its
    C(--status) refreshes the free-space gauge of the logical backups and fails with C(--max-age) and C(--min-free).
seealso:
  - module: cortexreview.supabase_backup.supabase_dump
  - module: cortexreview.supabase_backup.supabase_validate
  - module: cortexreview.supabase_backup.volume_snapshot
'''

EXAMPLES = r'''
- name: Fail when the newest backup is older than 26 hours or less than 20 GB are free
  cortexreview.supabase_backup.backup_status:
    backup_dir: /var/backups/supabase
    max_age: 26h
    min_free: 20GB

- name: Fail when the weekly volume snapshot is missing or older than 8 days
  cortexreview.supabase_backup.backup_status:
    backup_dir: /var/backups/supabase
    kind: volume
    max_age: 8d

- name: Fail when WAL archiving stalls, has a gap, or the newest base backup is older than 2 days
  cortexreview.supabase_backup.backup_status:
    backup_dir: /var/backups/supabase
    kind: pitr
    max_age: 2d
    max_lag: 5m
    metrics_file: /var/lib/node_exporter/textfile_collector/supabase_backup.prom

- name: Report the backups and refresh the free-space gauge
  cortexreview.supabase_backup.backup_status:
    backup_dir: /var/backups/supabase
    metrics_file: /var/lib/node_exporter/textfile_collector/supabase_backup.prom
  register: backups

- name: The last validation passed and is less than 35 days old
  ansible.builtin.assert:
    that:
      - backups.validation is not none
      - backups.validation.passed
      - (now(utc=true) - backups.validation.validated_at[:19] | to_datetime('%Y-%m-%dT%H:%M:%S')).days < 35
'''

RETURN = r'''
offsite:
  description: With O(offsite_remote), the remote, its newest complete restore point (C(newest)) and its age in seconds.
  returned: with offsite_remote
  type: dict
  sample: {"remote": "s3backups:cortexreview/db1", "newest": "supabase_backup_20260101_020000", "age_seconds": 3600}
backup_dir:
  description: The backup directory.
  returned: unless an option is invalid
  type: str
kind:
  description: The kind of backups looked at.
  returned: when backup_dir exists
  type: str
  sample: logical
newest:
  description: The newest backup, by the timestamp in its name; null when there is none.
  returned: when backup_dir exists
  type: dict
  contains:
    path:
      description: Path of the backup.
      type: str
      sample: /var/backups/supabase/supabase_backup_20260101_020000.sql.gz
    name:
      description: File name of the backup.
      type: str
    timestamp:
      description: The timestamp in its name, C(YYYYMMDD_HHMMSS) in the node's local time.
      type: str
      sample: '20260101_020000'
    mtime:
      description: Modification time of the file (Unix time).
      type: float
    age_seconds:
      description: Seconds since the file's modification time; 0 when it lies in the future.
      type: int
    size:
      description: Size of the file in bytes.
      type: int
    restore_point:
      description: The newest restore point's stem; its checksum, manifest and reports share it.
      type: str
      sample: supabase_backup_20260101_020000
    encrypted:
      description: Whether the backup is encrypted (C(.gpg)).
      type: bool
count:
  description: Number of backups (restore points).
  returned: when backup_dir exists
  type: int
total_size:
  description: Total size of the backups in bytes; their sidecar files (checksums, manifests, reports) are not counted.
  returned: when backup_dir exists
  type: int
free_bytes:
  description: Bytes free for unprivileged users on the filesystem of the backup directory; null when unknown.
  returned: when backup_dir exists
  type: int
total_bytes:
  description: Size of that filesystem in bytes; null when unknown.
  returned: when backup_dir exists
  type: int
validation:
  description: The validation report of the newest backup that has one beside it; null when no backup has one.
  returned: when backup_dir exists
  type: dict
  contains:
    report:
      description: Path of the report, C(<backup>.validation.json).
      type: str
    backup:
      description: The backup the report lies beside.
      type: str
    passed:
      description: Whether the validation passed; false for a malformed report.
      type: bool
    validated_at:
      description: When the validation ran, ISO 8601 in UTC, as the report says; null when it does not.
      type: str
    error:
      description: Why the validation failed, or why the report is malformed; null when it passed.
      type: str
    of_newest:
      description: Whether it is the report of the newest backup.
      type: bool
interrupted_restores:
  description:
    - Restores whose record, C(.cortexreview-restore-*.json), is in O(backup_dir), each with C(src), C(started_at),
      C(stopped_writers), C(writers_down), C(scratch_database) and C(running).
    - C(running) is true while the process that wrote the record still runs (the same process ID, started at the
      same time since the same boot). The writers a running restore stopped are no problem.
    - Writers stopped by a restore whose process died that are still down are a problem; the next restore from
      that directory drops its scratch database and starts them.
  returned: when backup_dir exists
  type: list
  elements: dict
problems:
  description: Why the module failed, one entry a problem (joined with C(; ), they are the failure's C(msg)). Empty on success.
  returned: when backup_dir exists
  type: list
  elements: str
receiver:
  description: With O(kind=pitr), the receiver container, C(name), C(exists), C(running), C(status), C(restart_count).
  returned: kind=pitr, when backup_dir exists
  type: dict
slot:
  description: With O(kind=pitr), the replication slot (C(slot_type), C(active), C(restart_lsn), C(wal_status), and
    C(behind), the bytes of WAL it holds back); null when it does not exist.
  returned: kind=pitr, when backup_dir exists
  type: dict
streaming:
  description: With O(kind=pitr), whether the receiver streams (connected, state C(streaming), slot active).
  returned: kind=pitr, when backup_dir exists
  type: bool
last_contact_age_seconds:
  description: With O(kind=pitr), seconds since the receiver last reported to the server; null when not connected.
  returned: kind=pitr, when backup_dir exists
  type: float
wal:
  description: With O(kind=pitr), the WAL directory, its number of segments, the newest file and its age.
  returned: kind=pitr, when backup_dir exists
  type: dict
base_backups:
  description: With O(kind=pitr), the number of base backups in the catalog, the newest, its age, and catalog problems.
  returned: kind=pitr, when backup_dir exists
  type: dict
gaps:
  description: With O(kind=pitr), the WAL files missing from the archive, in replay order.
  returned: kind=pitr, when backup_dir exists
  type: list
  elements: str
archive_size:
  description: With O(kind=pitr), bytes under C(<backup_dir>/pitr).
  returned: kind=pitr, when backup_dir exists
  type: int
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._ansible_module import run_module
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import status_argument_spec
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._pitr_status import PitrStatusBackend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._status import StatusBackend


def main():
    module = AnsibleModule(argument_spec=status_argument_spec(), supports_check_mode=True)
    run_module(module, PitrStatusBackend if module.params['kind'] == 'pitr' else StatusBackend)


if __name__ == '__main__':
    main()
