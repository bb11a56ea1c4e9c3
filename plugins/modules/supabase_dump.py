#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: supabase_dump
short_description: Back up a Supabase PostgreSQL database to a verified, compressed SQL dump
version_added: 0.1.0
description:
  - Runs C(pg_dump) inside the Supabase DB container (or on the node) and streams its plain SQL output
    through multi-threaded gzip into C(<backup_dir>/<prefix>_YYYYMMDD_HHMMSS.sql.gz), a file that
    C(gunzip -c FILE | psql) restores, exactly like the files of the contract's shell procedure.
  - The file appears only after C(pg_dump) exited 0, wrote its completion marker and the data is flushed
    to disk; on any failure the partial file is removed, older backups stay untouched and retention does not run.
  - One run writes one restore point, named by its stem C(<prefix>_YYYYMMDD_HHMMSS), made of the backup, its
    C(<file>.sha256) (C(sha256sum -c) format) and the restore point's manifest C(<stem>.manifest.json) with the
    checksum, size, PostgreSQL and C(pg_dump) versions, extensions and the exact row count of every table,
    counted from the dump stream itself.
  - After a successful backup, retention deletes restore points of this O(prefix) older than O(retention_days)
    (counted as C(find -mtime) does), whole (backup, checksum, manifests, validation reports), always keeping the
    newest O(retention_keep_min); only files named exactly so, never symlinks.
  - Runs on one backup directory are serialised by a lock on the directory; no lock file is left behind.
  - With O(offsite_remote), the run then uploads every restore point the remote lacks, oldest first (a backlog
    left by an outage included), verifies each copy, and only then succeeds. Local retention then never removes
    a restore point that has not reached the remote. A failed upload fails the run with rclone's reason and
    keeps the backup; the metrics record it as its own run (C(operation="offsite")).
  - "A restore point holds more than the main database: each of O(extra_databases) as
    C(<stem>.db.<name>.pgsql.gz) (the name percent-encoded, C(.) included) and, with O(globals), the cluster's roles
    (C(pg_dumpall --roles-only): attributes, memberships, role settings and password hashes, never a plaintext
    password) as C(<stem>.globals.pgsql.gz). Only the main dump ends in C(.sql.gz), so C(supabase_backup_*.sql.gz)
    and \"the newest file\" always mean the main dump. Each part has its C(.sha256); the manifest lists them all, with
    each database's own settings (owner, encoding and locale, connection limit, grants, comment, C(ALTER DATABASE ...
    SET) and C(ALTER ROLE ... IN DATABASE ... SET)), which a C(pg_dump) without C(--create) omits."
  - The restore point appears only once every part is whole (the main dump is renamed into place last); a part that
    fails leaves no file of the run behind.
author:
  - CortexReview engineering (@cortexreview)
extends_documentation_fragment:
  - cortexreview.supabase_backup.attributes
  - cortexreview.supabase_backup.connection
  - cortexreview.supabase_backup.encryption
  - cortexreview.supabase_backup.output
  - cortexreview.supabase_backup.offsite
  - cortexreview.supabase_backup.offsite.upload
attributes:
  check_mode:
    support: full
    details: Connects to the database read-only, and reports the file it would write and the backups retention would remove.
  diff_mode:
    support: none
  idempotent:
    support: none
    details: Every run creates a new backup, so it always reports changed.
options:
  backup_dir:
    description:
      - Directory for the backups. Created with mode C(0700) when missing.
    type: path
    required: true
  prefix:
    description:
      - File name prefix; files are named C(<prefix>_YYYYMMDD_HHMMSS.sql.gz) in the node's local time.
      - Letters, digits, C(.), C(_) and C(-) only.
    type: str
    default: supabase_backup
  extra_databases:
    description:
      - Databases dumped besides O(db), each into a part of the same restore point.
      - Unset, every database that allows connections and is not a template, O(db) itself, or a copy this collection
        makes (C(*_restore_<timestamp>), C(*_pre_restore_<timestamp>), C(*_validate_<timestamp>)); on a self-hosted
        Supabase, C(_supabase). V([]) dumps none.
      - A database named here that does not exist (or does not allow connections) fails the run before anything is
        written.
    type: list
    elements: str
  globals:
    description:
      - Also dump the cluster's roles with C(pg_dumpall --roles-only), password hashes included (SCRAM verifiers;
        keep the backups as private as the database itself, and encrypt them before they leave the host).
      - Reading the hashes needs a superuser; with another O(login_user) the run fails in one line before anything is
        written, unless V(false).
    type: bool
    default: true
  db_config_files:
    description:
      - Files (or directories) of the DB container, by absolute path, taken into C(<stem>.db-config.tar.gz) with their
        numeric owners and modes, through the Docker archive API; with O(container=''), from this host.
      - The default is Supabase's Vault/pgsodium root key, without which every Vault secret of a restored database
        fails with C(invalid ciphertext). One that does not exist is recorded in RV(not_found) and the manifest; a
        warning only when the database has a C(vault) or C(pgsodium) schema. V([]) takes none.
      - The part holds secrets as the live files do (mode C(0600)); encrypt the backups before they leave the host.
    type: list
    elements: str
    default: [/etc/postgresql-custom/pgsodium_root.key]
  deployment_files:
    description:
      - Host files by absolute path (such as the compose project's C(.env) and C(docker-compose.yml)), taken into
        C(<stem>.deployment.tar.gz) with their numeric owners and modes; a symlink is followed. Each must exist.
    type: list
    elements: str
    default: []
  storage_path:
    description:
      - Storage's file-backend directory on this host (the stock compose project's C(volumes/storage)), taken into
        C(<stem>.storage.tar.gz), after every database, by GNU C(tar --xattrs --xattrs-include=* --numeric-owner),
        with owners, modes and the C(user.supabase.*) extended attributes Storage keeps its metadata in.
      - A directory whose filesystem cannot hold C(user.*) extended attributes is refused (a file there is probed).
        Files that change while they are read (uploads) are kept, with a warning naming them.
      - Not with O(storage_volume).
    type: path
  storage_volume:
    description:
      - Storage's objects in a Docker volume, read as O(storage_path) is, by the C(tar) of a short-lived helper
        container made from the image of O(container) (no image is pulled), the volume mounted read-only.
      - Needs O(container). Not with O(storage_path).
    type: str
  metrics_file:
    description:
      - Prometheus textfile-collector file to update after every run, successful or not (a configuration
        rejected by this module included), with C(supabase_backup_duration_seconds), C(supabase_backup_size_bytes),
        C(supabase_backup_last_success_timestamp_seconds), C(supabase_backup_success) and
        C(supabase_backup_free_bytes) (labels C(kind="logical"), C(operation="backup")).
      - Written atomically, mode C(0644). Samples of other kinds and operations in the same file are kept.
    type: path
  compression_level:
    description:
      - gzip compression level, 1 (fastest) to 9 (smallest).
      - The default, 5, gives files within about 2% of the size of gzip's default level 6 at about twice
        the speed with zlib-ng (measured on vector and text data by C(benchmarks/backup_benchmark.py)).
    type: int
    default: 5
notes:
  - Memory use is bounded (a few MiB per compression thread) whatever the size of the database.
  - The password never appears on a command line; use Ansible Vault or an AWX credential for O(login_password).
seealso:
  - name: Backup and restore contract
    description: The procedures this collection automates (shared/backup-restore-contract.md).
    link: https://www.postgresql.org/docs/current/app-pgdump.html
'''

EXAMPLES = r'''
- name: Back up the Supabase database from its container
  cortexreview.supabase_backup.supabase_dump:
    backup_dir: /var/backups/supabase

- name: Back up with a 30 day retention and Prometheus metrics
  cortexreview.supabase_backup.supabase_dump:
    backup_dir: /var/backups/supabase
    retention_days: 30
    metrics_file: /var/lib/prometheus/node-exporter/supabase_backup.prom
  register: backup

- name: Back up a server reached over TCP, running pg_dump on the node
  cortexreview.supabase_backup.supabase_dump:
    backup_dir: /var/backups/supabase
    container: ''
    login_host: 127.0.0.1
    login_port: 5432
    login_password: "{{ vault_supabase_db_password }}"

- name: Back up encrypted and copy every restore point to S3 (the remote defined in the rclone config)
  cortexreview.supabase_backup.supabase_dump:
    backup_dir: /var/backups/supabase
    encrypt_passphrase_file: /etc/cortexreview-supabase-backup/passphrase
    offsite_remote: s3backups:cortexreview/db1
    offsite_config: /etc/cortexreview-supabase-backup/rclone.conf

- name: Back up postgres and _supabase only, without the roles (a login_user that is not a superuser)
  cortexreview.supabase_backup.supabase_dump:
    backup_dir: /var/backups/supabase
    login_user: backup
    extra_databases: [_supabase]
    globals: false

- name: Back up encrypted for off-site storage (supabase_backup_YYYYMMDD_HHMMSS.sql.gz.gpg)
  cortexreview.supabase_backup.supabase_dump:
    backup_dir: /var/backups/supabase
    encrypt_passphrase_file: /etc/cortexreview-supabase-backup/passphrase
'''

RETURN = r'''
restore_point:
  description: The restore point this run wrote, the stem its backup, checksum and manifest share.
  returned: success, not in check mode
  type: str
  sample: supabase_backup_20260101_020000
encrypted:
  description: Whether the backup written is encrypted with gpg (O(encrypt_passphrase) or O(encrypt_passphrase_file)).
  returned: success, not in check mode
  type: bool
path:
  description: The backup file written (in check mode, the one that would be written).
  returned: always
  type: str
  sample: /var/backups/supabase/supabase_backup_20260101_020000.sql.gz
size:
  description: Size of the backup file in bytes.
  returned: success, not in check mode
  type: int
  sample: 52428800
sha256:
  description: SHA-256 of the backup file.
  returned: success, not in check mode
  type: str
uncompressed_size:
  description: Size of the SQL dump before compression, in bytes.
  returned: success, not in check mode
  type: int
duration:
  description: Seconds the backup took, from the first check to the end of retention.
  returned: always
  type: float
removed:
  description: Files retention deleted (in check mode, would delete), backups with their sidecar files.
  returned: always
  type: list
  elements: str
manifest:
  description: Path of the restore point's manifest written beside the backup, C(<stem>.manifest.json).
  returned: success, not in check mode
  type: str
tables:
  description: Exact row count of every table in the dump, keyed by its qualified name as C(pg_dump) writes it.
  returned: success
  type: dict
  sample: {"public.knowledge_base": 1200, "public.feedback_audit_log": 5321}
server_version:
  description: PostgreSQL server version.
  returned: success, not in check mode
  type: str
pg_dump_version:
  description: Version of the C(pg_dump) that wrote the dump.
  returned: success, not in check mode
  type: str
offsite:
  description:
    - What the off-site step did (with O(offsite_remote)).
    - C(uploaded) (file names), C(uploaded_points) (stems), C(uploaded_bytes), C(remote_removed) (files removed
      by remote retention), C(remote_newest) (the newest complete restore point there), C(skipped) (local
      restore points that cannot go off-site, with the reason).
  returned: success, with offsite_remote
  type: dict
parts:
  description: Every part of the restore point (in check mode, the database parts it would have), main dump first.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: File name of the part.
      type: str
    role:
      description: What it holds (C(database), C(extra_database), C(globals), ...), as the manifest says.
      type: str
    size:
      description: Size in bytes; null in check mode.
      type: int
  sample: [{"name": "supabase_backup_20260101_020000.sql.gz", "role": "database", "size": 52428800},
           {"name": "supabase_backup_20260101_020000.globals.pgsql.gz", "role": "globals", "size": 1843}]
not_found:
  description: What was looked for and not found (C(component), C(what)), as the manifest records it.
  returned: always
  type: list
  elements: dict
extra_databases:
  description: The extra databases dumped (in check mode, that would be).
  returned: always
  type: list
  elements: str
extensions:
  description: Installed extensions and their versions.
  returned: success, not in check mode
  type: dict
  sample: {"plpgsql": "1.0", "vector": "0.8.1"}
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._ansible_module import run_module
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._dump import DumpBackend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._offsite_backend import LogicalOffsiteBackend
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import dump_argument_spec


def main():
    module = AnsibleModule(argument_spec=dump_argument_spec(), supports_check_mode=True,
                           mutually_exclusive=[('encrypt_passphrase', 'encrypt_passphrase_file')])
    run_module(module, DumpBackend, LogicalOffsiteBackend)


if __name__ == '__main__':
    main()
