# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""Quoting for the few SQL statements we build ourselves."""

from __future__ import annotations

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import ConfigError

MAX_IDENTIFIER_BYTES = 63


def quote_ident(name):
    if '\x00' in name:
        raise ConfigError('identifier %r contains a NUL byte' % (name,))
    return '"%s"' % name.replace('"', '""')


def quote_literal(value):
    if '\x00' in value:
        raise ConfigError('value %r contains a NUL byte' % (value,))
    return "'%s'" % value.replace("'", "''")


def derived_name(base, suffix):
    """``base + suffix``, shortening ``base`` so the result fits PostgreSQL's 63-byte identifiers."""
    room = MAX_IDENTIFIER_BYTES - len(suffix.encode('utf-8'))
    encoded = base.encode('utf-8')[:room]
    return encoded.decode('utf-8', errors='ignore') + suffix
