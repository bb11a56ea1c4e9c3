# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""A database's own settings, which a ``pg_dump`` without ``--create`` omits: owner, encoding and
locale, connection limit, grants, comment and the ``pg_db_role_setting`` rows (``ALTER DATABASE
... SET`` and ``ALTER ROLE ... IN DATABASE ... SET``).

A backup records them per database part (manifest key ``database_settings``); a restore creates
its scratch database and applies them from there, so a new host gets the backup's settings.
"""

from __future__ import annotations

import json

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import CommandError
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._sql import quote_ident, quote_literal

# GUCs whose stored value is a list to be written unquoted (as pg_dump's variable_is_guc_list_quote).
LIST_SETTINGS = ('search_path', 'temp_tablespaces', 'session_preload_libraries',
                 'shared_preload_libraries', 'local_preload_libraries')
LOCALE_PROVIDERS = {'c': 'libc', 'i': 'icu', 'b': 'builtin'}

# row_to_json(d) keeps this working across versions whose pg_database columns differ (datlocale, daticulocale).
_READ_SQL = '''
SELECT pg_catalog.json_build_object(
  'columns', pg_catalog.row_to_json(d),
  'owner', pg_catalog.pg_get_userbyid(d.datdba),
  'encoding', pg_catalog.pg_encoding_to_char(d.encoding),
  'comment', pg_catalog.shobj_description(d.oid, 'pg_database'),
  'default_acl', d.datacl IS NULL,
  'acl', (SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
            'grantee', CASE WHEN a.grantee = 0 THEN NULL ELSE pg_catalog.pg_get_userbyid(a.grantee) END,
            'privilege', a.privilege_type, 'grantable', a.is_grantable)
            ORDER BY pg_catalog.pg_get_userbyid(a.grantee), a.privilege_type)
          FROM pg_catalog.aclexplode(d.datacl) a WHERE a.grantee <> d.datdba),
  'settings', (SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
            'role', CASE WHEN s.setrole = 0 THEN NULL ELSE pg_catalog.pg_get_userbyid(s.setrole) END,
            'config', s.setconfig) ORDER BY s.setrole)
          FROM pg_catalog.pg_db_role_setting s WHERE s.setdatabase = d.oid))
FROM pg_catalog.pg_database d WHERE d.datname = %s
'''


def read_database_settings(target, db):
    """The settings of database ``db`` (as the manifest records them)."""
    rows = target.query(_READ_SQL % quote_literal(db))
    if not rows:
        raise CommandError('database %s does not exist; its settings cannot be read' % db)
    raw = json.loads(rows[0][0])
    columns = raw['columns']
    settings = []
    for row in raw['settings'] or []:
        for entry in row['config'] or []:
            name, _equals, value = entry.partition('=')
            settings.append({'role': row['role'], 'name': name, 'value': value})
    return {
        'owner': raw['owner'], 'encoding': raw['encoding'],
        'collate': columns.get('datcollate'), 'ctype': columns.get('datctype'),
        'locale_provider': LOCALE_PROVIDERS.get(columns.get('datlocprovider')),
        'locale': columns.get('datlocale') or columns.get('daticulocale'),
        'icu_rules': columns.get('daticurules'),
        'connection_limit': columns.get('datconnlimit', -1),
        'acl': None if raw['default_acl'] else (raw['acl'] or []),
        'comment': raw['comment'],
        'settings': settings,
    }


def create_database_statement(name, settings, roles):
    """``CREATE DATABASE`` with the recorded owner, encoding and locale; (statement, skipped owner or None).

    ``roles`` are the roles that exist: an owner that does not is left out (the database is then
    owned by the user restoring), and said.
    """
    options = ['TEMPLATE template0']
    owner = settings.get('owner')
    skipped = None
    if owner and owner in roles:
        options.append('OWNER %s' % quote_ident(owner))
    elif owner:
        skipped = owner
    for option, key in (('ENCODING', 'encoding'), ('LC_COLLATE', 'collate'), ('LC_CTYPE', 'ctype')):
        if settings.get(key):
            options.append('%s %s' % (option, quote_literal(settings[key])))
    provider = settings.get('locale_provider')
    if provider:
        options.append('LOCALE_PROVIDER %s' % provider)
        if provider == 'icu' and settings.get('locale'):
            options.append('ICU_LOCALE %s' % quote_literal(settings['locale']))
        if provider == 'builtin' and settings.get('locale'):
            options.append('BUILTIN_LOCALE %s' % quote_literal(settings['locale']))
        if provider == 'icu' and settings.get('icu_rules'):
            options.append('ICU_RULES %s' % quote_literal(settings['icu_rules']))
    return 'CREATE DATABASE %s WITH %s' % (quote_ident(name), ' '.join(options)), skipped


def setting_value(name, value):
    return value if name in LIST_SETTINGS else quote_literal(value)


def apply_statements(name, settings, roles):
    """The statements that give database ``name`` the recorded connection limit, comment, grants and
    settings; (statements, roles named there that do not exist, whose lines are left out)."""
    database = quote_ident(name)
    statements = []
    missing = []
    if settings.get('connection_limit', -1) != -1:
        statements.append('ALTER DATABASE %s CONNECTION LIMIT %d' % (database, int(settings['connection_limit'])))
    if settings.get('comment') is not None:
        statements.append('COMMENT ON DATABASE %s IS %s' % (database, quote_literal(settings['comment'])))
    if settings.get('acl') is not None:
        statements.append('REVOKE ALL ON DATABASE %s FROM PUBLIC' % database)
        for grant in settings['acl']:
            grantee = grant.get('grantee')
            if grantee is not None and grantee not in roles:
                missing.append(grantee)
                continue
            statements.append('GRANT %s ON DATABASE %s TO %s%s' % (
                grant['privilege'], database, quote_ident(grantee) if grantee is not None else 'PUBLIC',
                ' WITH GRANT OPTION' if grant.get('grantable') else ''))
    for setting in settings.get('settings') or []:
        assignment = '%s = %s' % (quote_ident(setting['name']), setting_value(setting['name'], setting['value']))
        if setting.get('role') is None:
            statements.append('ALTER DATABASE %s SET %s' % (database, assignment))
        elif setting['role'] in roles:
            statements.append('ALTER ROLE %s IN DATABASE %s SET %s'
                              % (quote_ident(setting['role']), database, assignment))
        else:
            missing.append(setting['role'])
    return statements, sorted(set(missing))
