#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: backup_engine
short_description: Install this collection's backup engine on the node, for the cron runner
version_added: 0.1.0
description:
  - Writes the collection's engine files (its private module_utils) into O(dest), where the cron runner of the
    P(cortexreview.supabase_backup.supabase_backup#role) role imports them from. The module carries every engine
    file in its own payload, so all of them are written in one module run (a C(copy) task takes about a second for
    each file).
  - Only the files of O(files) whose content, mode C(0644) or owner differ are written, each atomically (a temporary
    file renamed into place). A file this module carries whose sha1 is not the one O(files) expects (a collection
    other than the controller's) fails the module before anything is written.
  - The role uses this module; playbooks need not call it themselves.
author:
  - CortexReview engineering (@cortexreview)
extends_documentation_fragment:
  - cortexreview.supabase_backup.attributes
attributes:
  check_mode:
    support: full
    details: Reports the files it would write; O(dest) need not exist yet.
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  dest:
    description:
      - The directory of the engine files. It must exist (outside check mode).
    type: path
    required: true
  files:
    description:
      - The engine files to put in place, by name (V(_restore.py)), each with the sha1 of the collection's copy.
    type: dict
    required: true
'''

EXAMPLES = r'''
- name: Put the engine in place
  cortexreview.supabase_backup.backup_engine:
    dest: /opt/cortexreview-supabase-backup/lib/ansible_collections/cortexreview/supabase_backup/plugins/module_utils
    files:
      _errors.py: "{{ lookup('ansible.builtin.file', '_errors.py', rstrip=false) | ansible.builtin.hash('sha1') }}"
'''

RETURN = r'''
dest:
  description: The directory.
  returned: always
  type: str
files:
  description: The files written (in check mode, those that would be).
  returned: always
  type: list
  elements: str
  sample: [_restore.py]
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._ansible_module import run_module
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._engine_files import EngineFilesBackend


def main():
    argument_spec = dict(dest=dict(type='path', required=True), files=dict(type='dict', required=True))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_module(module, EngineFilesBackend)


if __name__ == '__main__':
    main()
