# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible.
"""A call run in a thread of its own, its outcome kept for whoever waits for it."""

from __future__ import annotations

import threading


class InThread:
    """``call(*args)`` started in a thread of its own; ``result()`` waits for it and raises its failure."""

    def __init__(self, call, *args):
        self._outcome = {}
        self._thread = threading.Thread(target=self._run, args=(call,) + args, daemon=True)
        self._thread.start()

    def _run(self, call, *args):
        try:
            self._outcome['value'] = call(*args)
        except BaseException as exc:  # pylint: disable=broad-except
            self._outcome['error'] = exc

    def running(self):
        return self._thread.is_alive()

    def join(self, timeout=None):
        self._thread.join(timeout)

    def result(self):
        self._thread.join()
        if 'error' in self._outcome:
            raise self._outcome['error']
        return self._outcome.get('value')
