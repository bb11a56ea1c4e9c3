#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: supabase_validate
short_description: Test-restore a Supabase backup into a staging database and run the validation queries
version_added: 0.1.0
description:
  - The contract's monthly backup validation. The backup is verified in full, restored into a staging database
    C(<db>_validate_<timestamp>) on the same server (never the live database), checked as
    M(cortexreview.supabase_backup.supabase_restore) checks a restore (row counts, indexes, extensions,
    exact nearest-neighbour vector search), and the contract's validation queries are run on it
    (row counts, a C(match_knowledge) vector search that runs on pgvector 0.8, the public indexes).
  - The staging database is dropped afterwards, whatever happened.
  - "C(pg_cron) installs only in the database C(cron.database_name) names, never staging: its entries are taken out of
    the load, their rows counted in the stream (and compared with the manifest's) and named in the message and
    RV(not_loaded)."
  - A report is written beside the backup (or in O(report_dir)) in every case, as
    C(<backup>.validation.json) and a readable C(<backup>.validation.txt), both mode C(0600).
  - Fails when the backup does not restore or does not match.
  - "Of a restore point with more parts (see M(cortexreview.supabase_backup.supabase_dump)): every part's checksum
    against the manifest and its sidecar (decrypting it), each extra database restored into a staging database of its
    own (C(<name>_validate_<timestamp>), dropped afterwards) and checked, and the roles' part read as a restore reads
    it and compared with the manifest (roles are cluster-wide and cannot be staged; those missing on this server are
    reported)."
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
    details: Reports the backup and staging database it would use; restores nothing.
  diff_mode:
    support: none
  idempotent:
    support: none
    details: Every run restores and writes a new report.
options:
  report_dir:
    description:
      - Where to write the report. Default is the backup's directory.
    type: path
  metrics_file:
    description:
      - Prometheus textfile-collector file to update with the result of every validation, successful or not
        (labels C(kind="logical"), C(operation="validate")). Samples of other kinds and operations are kept.
    type: path
seealso:
  - module: cortexreview.supabase_backup.supabase_restore
'''

EXAMPLES = r'''
- name: Validate the newest backup
  cortexreview.supabase_backup.supabase_validate:
    backup_dir: /var/backups/supabase

- name: Validate the restore point of a given night
  cortexreview.supabase_backup.supabase_validate:
    backup_dir: /var/backups/supabase
    restore_point: supabase_backup_20260101_020000

- name: Validate a given backup, report elsewhere
  cortexreview.supabase_backup.supabase_validate:
    src: /var/backups/supabase/supabase_backup_20260101_020000.sql.gz
    report_dir: /var/log/supabase-validation

- name: Validate the newest backup when backups are encrypted
  cortexreview.supabase_backup.supabase_validate:
    backup_dir: /var/backups/supabase
    encrypt_passphrase_file: /etc/cortexreview-supabase-backup/passphrase
'''

RETURN = r'''
restore_point:
  description: The restore point validated (its stem); null for a backup not named like one.
  returned: always
  type: str
  sample: supabase_backup_20260101_020000
src:
  description: The backup validated.
  returned: always
  type: str
report:
  description: Path of the JSON report (a C(.txt) summary lies beside it).
  returned: always
  type: str
passed:
  description: Whether the backup restored and matched.
  returned: success
  type: bool
row_counts:
  description: Row count of every table in the staging database.
  returned: success
  type: dict
indexes:
  description: Indexes in the staging database.
  returned: success
  type: list
  elements: str
vector_search:
  description: Result of the exact nearest-neighbour check through C(match_knowledge).
  returned: success
  type: dict
contract_queries:
  description: Results of the contract's validation queries.
  returned: success
  type: dict
parts:
  description: The restore point's other parts checked (C(name), C(role), C(sha256)).
  returned: when the backup belongs to a restore point with more parts
  type: list
  elements: dict
extra_databases:
  description: Row counts of each extra database restored into its own staging database.
  returned: when the restore point has extra databases
  type: dict
roles:
  description: The roles' part, read and compared with the manifest (C(count), C(missing_here)).
  returned: when the restore point has the roles' part
  type: dict
not_loaded:
  description: What was checked in the stream but not loaded into staging (C(pg_cron)'s entries), per database
    (C(database), C(main), C(extensions), C(tables) with their row counts).
  returned: when the backup holds such entries
  type: list
  elements: dict
staging_database:
  description: Name of the staging database (dropped afterwards).
  returned: always
  type: str
duration:
  description: Seconds the validation took, the staging database's removal included.
  returned: success
  type: float
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._ansible_module import run_module
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_kinds import LOGICAL
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import (
    SOURCE_RULES,
    validate_argument_spec,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._validate import ValidateBackend


def main():
    module = AnsibleModule(argument_spec=validate_argument_spec(), supports_check_mode=True, **SOURCE_RULES)
    run_module(module, ValidateBackend, fetch_kind=LOGICAL)


if __name__ == '__main__':
    main()
