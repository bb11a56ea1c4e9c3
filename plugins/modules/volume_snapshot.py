#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: volume_snapshot
short_description: Snapshot or restore the whole data volume of the Supabase DB container, WAL included
version_added: 0.1.0
description:
  - The contract's "Volume Backup" procedure. The DB container is stopped, its data volume is archived as
    C(<backup_dir>/supabase-volume-YYYYMMDD_HHMMSS.tar.gz), and the container is started again.
    The archive has the layout of the contract's C(tar czf FILE -C /data .), so each side restores the other's files.
  - No image is pulled. The archive is read with the Docker API (C(docker cp) semantics, so owners, modes and
    symlinks survive) and compressed on all cores; the file appears only once complete and flushed to disk, with a
    C(.sha256) sidecar and the restore point's manifest C(supabase-volume-YYYYMMDD_HHMMSS.manifest.json).
    The container is started again whether the snapshot succeeded or
    not, and the downtime (from the stop until PostgreSQL accepts connections again) is returned.
  - After a successful snapshot, retention deletes restore points (snapshots with their checksum and manifests)
    older than O(retention_days), whole,
    always keeping the newest O(retention_keep_min); only files named exactly like snapshots, never symlinks.
  - "O(state=restored) replaces the contents of the volume in place, so the compose stack keeps its volume:
    1. the archive is read in full first (gzip to its end, checksum sidecar, tar structure to its end-of-archive
    marker, a PostgreSQL data directory of the same major version as the one in the volume), before anything stops;
    2. the container is stopped;
    3. a short-lived helper container made from the DB container's own image, with the volume mounted, moves the
    current contents into a hidden directory C(.cortexreview-restore-<timestamp>-<random>) inside the volume;
    4. the archive is streamed into the volume with the Docker API;
    5. the container is started and the module waits until PostgreSQL accepts connections (C(pg_isready));
    6. only then the previous contents are deleted."
  - If anything fails in steps 3 to 5, the partial new contents are deleted and the previous contents are moved back
    before the container is started again, so the database runs on its old data.
author:
  - CortexReview engineering (@cortexreview)
extends_documentation_fragment:
  - cortexreview.supabase_backup.attributes
  - cortexreview.supabase_backup.encryption
  - cortexreview.supabase_backup.output
  - cortexreview.supabase_backup.offsite
  - cortexreview.supabase_backup.offsite.upload
attributes:
  check_mode:
    support: full
    details:
      - O(state=present) inspects the container and its volume and reports the file it would write and the snapshots
        retention would remove; it stops nothing.
      - O(state=restored) verifies the archive fully and reports the plan; it stops nothing. O(confirm) is not needed.
  diff_mode:
    support: none
  idempotent:
    support: none
    details: Every snapshot creates a new file and every restore replaces the volume's contents, so both always report changed.
options:
  state:
    description:
      - V(present) takes a snapshot, V(restored) restores one.
    type: str
    choices: [present, restored]
    default: present
  container:
    description:
      - Name or ID of the DB container. It must mount O(volume) (or O(path)); it is stopped while the volume is read
        or replaced, and started again afterwards.
    type: str
    default: cortexreview-supabase-db
  volume:
    description:
      - The named Docker volume that holds the data directory.
      - Mutually exclusive with O(path).
    type: str
    default: cortexreview-supabase-db-data
  path:
    description:
      - A host directory bind-mounted as the data directory instead of a named volume, as in Supabase's own compose
        file (C(./volumes/db/data)). Give the absolute path the container was created with.
    type: path
  backup_dir:
    description:
      - Directory of the snapshots. Required for O(state=present); created with mode C(0700) when missing.
      - With O(state=restored) and no O(src), the snapshot of O(restore_point), or else the newest one in it (by the
        timestamp in its name), is restored.
    type: path
  src:
    description:
      - The snapshot to restore, C(.tar.gz) or C(.tar.gz.gpg). Only for O(state=restored).
    type: path
  restore_point:
    description:
      - The restore point of O(backup_dir) to restore, by its stem C(supabase-volume-YYYYMMDD_HHMMSS), for example
        V(supabase-volume-20260101_020000), the files one snapshot wrote, described by one C(<stem>.manifest.json).
        Snapshots older than that manifest, and those of the contract's shell procedure, are one-part restore points
        of the same name.
      - Only for O(state=restored); needs O(backup_dir) and is mutually exclusive with O(src). A name that is not a
        snapshot's restore point, or one that is not in O(backup_dir), fails before anything stops.
    type: str
  confirm:
    description:
      - Must be V(true) for a real O(state=restored); the restore replaces everything in the volume.
    type: bool
    default: false
  docker_host:
    description:
      - Docker engine to talk to, for example V(unix:///var/run/docker.sock). Default is E(DOCKER_HOST) or the local socket.
      - With O(path), the engine must run on the managed node, where the path is.
    type: str
  compression_level:
    description:
      - gzip compression level, 1 (fastest) to 9 (smallest). The container is stopped while the volume is
        compressed, so a faster level is a shorter downtime; zlib-ng's V(5) is within about 2% of gzip C(-6)'s size.
    type: int
    default: 5
  stop_timeout:
    description:
      - Seconds PostgreSQL gets to shut down cleanly before Docker kills it. A killed server is snapshotted anyway
        (it replays its WAL on the next start) and a warning says so.
    type: int
    default: 120
  ready_timeout:
    description:
      - Seconds to wait, after the container was started, until PostgreSQL accepts connections.
    type: int
    default: 300
  metrics_file:
    description:
      - Prometheus textfile-collector file updated after every snapshot and every restore, successful or not
        (labels C(kind="volume") and C(operation="backup") or C(operation="restore")).
        Samples of other kinds and operations in the same file are kept.
    type: path
notes:
  - The DB container's image must contain C(pg_isready), C(find), C(mv), C(rm), C(mkdir), C(rmdir), C(stat),
    C(chown), C(chmod) and C(tail), as the official C(postgres) and Supabase images do. The helper container is
    named C(cortexreview-volume-helper-*) and removed at the end.
  - A restore needs free space in the volume for the new contents while the previous ones are kept aside.
  - If the module is interrupted in the middle of a restore, the previous contents stay in the hidden directory inside
    the volume (a later snapshot warns about it). The next restore finishes it first. When PostgreSQL does not run
    on what is in place (it may be half written), the set-aside contents are put back before anything else, so that
    a failure of that restore too returns to them; when PostgreSQL runs, they go with the current contents (deleted
    once the restore succeeds). More than one such directory is refused before anything stops.
  - Other containers that use the database (API, workers) are not stopped; they lose their connections for the
    downtime, as with the contract's C(docker compose stop supabase-db).
requirements:
  - The Python package C(docker) on the managed node.
seealso:
  - module: cortexreview.supabase_backup.supabase_dump
  - module: cortexreview.supabase_backup.supabase_restore
'''

EXAMPLES = r'''
- name: Snapshot the volume encrypted for off-site storage (.tar.gz.gpg)
  cortexreview.supabase_backup.volume_snapshot:
    backup_dir: /var/backups/supabase
    encrypt_passphrase: "{{ vault_backup_passphrase }}"

- name: Snapshot the Supabase DB volume (the DB is stopped for the duration)
  cortexreview.supabase_backup.volume_snapshot:
    backup_dir: /var/backups/supabase
  register: snapshot

- name: Snapshot a Supabase stack that keeps its data in a host directory
  cortexreview.supabase_backup.volume_snapshot:
    backup_dir: /var/backups/supabase
    container: supabase-db
    path: /srv/supabase/docker/volumes/db/data
    retention_days: 30

- name: Plan a restore (check mode verifies the archive and needs no confirmation)
  cortexreview.supabase_backup.volume_snapshot:
    state: restored
    src: /var/backups/supabase/supabase-volume-20260101_020000.tar.gz
  check_mode: true

- name: Restore the snapshot of a given night
  cortexreview.supabase_backup.volume_snapshot:
    state: restored
    backup_dir: /var/backups/supabase
    restore_point: supabase-volume-20260101_020000
    confirm: true

- name: Restore the newest snapshot of the backup directory
  cortexreview.supabase_backup.volume_snapshot:
    state: restored
    backup_dir: /var/backups/supabase
    confirm: true
'''

RETURN = r'''
restore_point:
  description: The restore point written (state=present) or restored (state=restored), by its stem; null when
    restoring a snapshot not named like one.
  returned: success, not in check mode for state=present; always for state=restored
  type: str
  sample: supabase-volume-20260101_020000
encrypted:
  description: Whether the snapshot written is encrypted with gpg (O(encrypt_passphrase) or O(encrypt_passphrase_file)).
  returned: success, not in check mode for state=present
  type: bool
path:
  description: The snapshot written (in check mode, the one that would be written).
  returned: state=present
  type: str
  sample: /var/backups/supabase/supabase-volume-20260101_020000.tar.gz
src:
  description: The snapshot restored.
  returned: state=restored
  type: str
size:
  description: Size of the snapshot file in bytes.
  returned: success, not in check mode for state=present
  type: int
sha256:
  description: SHA-256 of the snapshot file.
  returned: success, not in check mode for state=present
  type: str
uncompressed_size:
  description: Size of the tar archive before compression, in bytes.
  returned: success, state=present, not in check mode
  type: int
manifest:
  description: Path of the restore point's manifest written beside the snapshot, C(<stem>.manifest.json).
  returned: success, state=present, not in check mode
  type: str
members:
  description: Number of entries (files, directories, links) in the archive.
  returned: success, not in check mode for state=present
  type: int
pg_version:
  description: PostgreSQL major version of the data directory (C(PG_VERSION)).
  returned: success
  type: str
  sample: "18"
downtime:
  description: Seconds from stopping the container until PostgreSQL accepted connections again; null when the container was not running.
  returned: success, not in check mode
  type: float
stopped:
  description: Containers stopped (in check mode, that would be stopped).
  returned: always
  type: list
  elements: str
started:
  description: Containers started again (in check mode, that would be started).
  returned: always
  type: list
  elements: str
ready:
  description: Whether PostgreSQL accepted connections after the start.
  returned: success, not in check mode
  type: bool
removed:
  description: Files retention deleted (in check mode, would delete), snapshots with their sidecar files.
  returned: state=present
  type: list
  elements: str
previous_contents:
  description:
    - After a restore, V(deleted) once the previous contents were deleted; otherwise the path inside the container
      where they are still kept (a warning says why).
  returned: state=restored, not in check mode
  type: str
interrupted_restore:
  description:
    - What an earlier restore whose process died had left, finished before this restore (see the notes), else null.
    - C(set_aside) names the hidden directory; C(put_back) tells whether its contents were put back first.
  returned: state=restored, not in check mode
  type: dict
checksum_verified:
  description: Whether a C(.sha256) sidecar or manifest confirmed the snapshot's checksum before the restore.
  returned: state=restored
  type: bool
duration:
  description: Seconds the snapshot or restore took, the wait for PostgreSQL included.
  returned: always
  type: float
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._ansible_module import run_module
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_kinds import VOLUME
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._offsite_backend import VolumeOffsiteBackend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import (
    VOLUME_SNAPSHOT_RULES,
    volume_snapshot_argument_spec,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._volume_restore import VolumeRestoreBackend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._volume_snapshot import VolumeSnapshotBackend


def main():
    module = AnsibleModule(argument_spec=volume_snapshot_argument_spec(), supports_check_mode=True,
                           **VOLUME_SNAPSHOT_RULES)
    if module.params['state'] == 'restored':
        run_module(module, VolumeRestoreBackend, fetch_kind=VOLUME)
    else:
        run_module(module, VolumeSnapshotBackend, offsite_class=VolumeOffsiteBackend)


if __name__ == '__main__':
    main()
