# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""Restoring the cluster's roles from a ``pg_dumpall --roles-only`` part, in two phases.

Phase 1 creates the roles the cluster lacks (``CREATE ROLE`` only), so the databases' dumps can
name them as owners and grantees. Phase 2, once every database is swapped in, gives every role of
the backup its attributes, password hash, comment, settings and memberships, in one transaction:
a failure before it, or in it, leaves the existing roles exactly as they were. No role is ever
dropped. The role the restore is connected as keeps its own attributes (changing them under the
running restore could end it); its password from the backup is set last, after every other step,
so a new host's services log in with the old deployment's passwords, that role's included.

Only the statements ``pg_dumpall --roles-only`` writes are applied; anything else in the part
refuses the restore before anything changed.
"""

from __future__ import annotations

import re

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import BackupFileError, CommandError
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._commands import last_line
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._post_data import _scan as scan_statements
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._sql import quote_ident

_IDENT = r'("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_RESTRICT_LINE = re.compile(r'^\\(?:un)?restrict [A-Za-z0-9]+[ \t]*$', re.MULTILINE)
_STATEMENTS = (
    ('preamble', re.compile(r'^SET [a-z_]+ = ')),
    ('create', re.compile(r'^CREATE ROLE %s$' % _IDENT)),
    ('attributes', re.compile(r'^ALTER ROLE %s WITH ' % _IDENT)),
    ('settings', re.compile(r'^ALTER ROLE %s (?:IN DATABASE %s )?(?:SET|RESET) ' % (_IDENT, _IDENT))),
    ('comment', re.compile(r'^COMMENT ON ROLE %s IS ' % _IDENT)),
    ('label', re.compile(r'^SECURITY LABEL FOR \S+ ON ROLE %s IS ' % _IDENT)),
    ('membership', re.compile(r'^GRANT %s TO %s' % (_IDENT, _IDENT))),
)
_CREATE_ROLE_LINE = re.compile(r'^CREATE ROLE %s;$' % _IDENT, re.MULTILINE)


def created_roles(text):
    """The roles a pg_dumpall --roles-only output creates, in its order (what a backup's manifest lists)."""
    return [_unquote(name) for name in _CREATE_ROLE_LINE.findall(text)]


def _unquote(name):
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def _without_comments(statement):
    lines = statement.split('\n')
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith('--')):
        lines.pop(0)
    return '\n'.join(lines).strip()


# pg_dumpall's ALTER ROLE ... WITH ... PASSWORD 'hash' (a SCRAM verifier or md5 hash, never plaintext).
_PASSWORD_CLAUSE = re.compile(r"\bPASSWORD\s+('(?:[^']|'')*')", re.IGNORECASE)


class RolesScript:
    """The statements of a globals part, by kind; ``roles`` in the order the part creates them."""

    def __init__(self, text, name):
        body = _RESTRICT_LINE.sub('', text)
        scan = scan_statements(body)
        if scan is None:
            raise BackupFileError('the globals part %s holds psql commands or data this restore does not apply'
                                  % name)
        _line_starts, ends = scan
        self.roles = []
        self.preamble = []
        self.by_role = {}
        self.memberships = []
        begin = 0
        for end in ends:
            statement = _without_comments(body[begin:end])
            begin = end + 1
            if statement:
                self._classify(statement, name)
        if _without_comments(body[begin:]):
            raise BackupFileError('the globals part %s ends in an unfinished statement' % name)

    def _classify(self, statement, name):
        for kind, pattern in _STATEMENTS:
            match = pattern.match(statement)
            if not match:
                continue
            if kind == 'preamble':
                self.preamble.append(statement)
            elif kind == 'create':
                role = _unquote(match.group(1))
                if role not in self.roles:
                    self.roles.append(role)
            elif kind == 'membership':
                self.memberships.append((_unquote(match.group(2)), statement))
            else:
                self.by_role.setdefault(_unquote(match.group(1)), []).append(statement)
            return
        raise BackupFileError('the globals part %s holds a statement this restore does not apply: %s'
                              % (name, statement.split('\n')[0][:80]))

    def _script(self, statements):
        return ''.join('%s;\n' % statement for statement in self.preamble + statements)

    def missing(self, existing):
        return [role for role in self.roles if role not in existing]

    def phase_one(self, existing):
        """(SQL creating the roles the cluster lacks, their names)."""
        missing = self.missing(existing)
        return self._script(['CREATE ROLE %s' % quote_ident(role) for role in missing]), missing

    def phase_two(self, keep):
        """(SQL giving every role of the backup but ``keep`` its attributes, password, comment, settings and
        memberships; the roles it changes). A role's settings are reset first: they become the backup's."""
        statements = []
        changed = []
        for role in self.roles:
            if role == keep:
                continue
            changed.append(role)
            statements.append('ALTER ROLE %s RESET ALL' % quote_ident(role))
            statements.extend(self.by_role.get(role, []))
        statements.extend(statement for _member, statement in self.memberships)
        return self._script(statements), changed

    def password_of(self, role):
        """SQL giving ``role`` its password hash from the backup, or None when the backup holds none for it."""
        for statement in self.by_role.get(role, []):
            match = _PASSWORD_CLAUSE.search(statement)
            if match:
                return self._script(['ALTER ROLE %s PASSWORD %s' % (quote_ident(role), match.group(1))])
        return None


def apply_roles_script(target, db, sql, what):
    """Run ``sql`` (holding password hashes: on psql's standard input, never its argv) in one transaction."""
    if not sql.strip():
        return
    returncode, _output, stderr = target.feed(
        'psql', ['--dbname', db, '--no-psqlrc', '--quiet', '--set', 'ON_ERROR_STOP=1', '--single-transaction'],
        [sql.encode('utf-8')])
    if returncode != 0:
        raise CommandError('%s failed, no role was changed by it: %s' % (what, last_line(stderr) or 'psql exit %s'
                                                                         % returncode), rc=returncode)
