# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Test-only callback for ``testbed.save_result_task``: writes the value its ``debug: var=...``
task (named by CORTEXREVIEW_RESULT_TASK) shows to the file named by CORTEXREVIEW_RESULT_FILE.

A ``copy`` task on the host did the same, but it runs two more modules: about 2 s of every
``run_module`` on a 2-core machine. The ``debug`` action runs on the controller.
"""

from __future__ import annotations

import json
import os

from ansible.module_utils.common.json import AnsibleJSONEncoder
from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "registered_result"
    CALLBACK_NEEDS_ENABLED = True

    def v2_runner_on_ok(self, result):
        if result.task.get_name() != os.environ["CORTEXREVIEW_RESULT_TASK"]:
            return
        path = os.environ["CORTEXREVIEW_RESULT_FILE"]
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            json.dump(result.result[result.task.args["var"]], out, cls=AnsibleJSONEncoder)
