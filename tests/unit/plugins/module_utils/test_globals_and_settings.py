"""The roles' two phases from a pg_dumpall --roles-only part, and a database's own settings as statements."""

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._database_settings import (
    apply_statements,
    create_database_statement,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import BackupFileError
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._globals import RolesScript

# As PostgreSQL 18's pg_dumpall --roles-only writes it (a multi-line comment included).
DUMPALL = '''--
-- PostgreSQL database cluster dump
--

\\restrict rf13Vk24WHlAQN7pebZV9ZZYstI2gHKy3T04PZrhpyJBFcq4UgNKJVEk2utT9UW

SET default_transaction_read_only = off;

SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;

--
-- Roles
--

CREATE ROLE postgres;
ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:AZ==$xt=:V/=';
CREATE ROLE "Mixed Case";
ALTER ROLE "Mixed Case" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS;
CREATE ROLE tmp_x;
ALTER ROLE tmp_x WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 3 PASSWORD 'SCRAM-SHA-256$4096:gA==$cP=:xi=';
COMMENT ON ROLE tmp_x IS 'multi
line; with a semicolon';

--
-- User Configurations
--

--
-- User Config "tmp_x"
--

ALTER ROLE tmp_x SET statement_timeout TO '5s';


--
-- Role memberships
--

GRANT pg_read_all_data TO tmp_x WITH INHERIT TRUE GRANTED BY postgres;
GRANT "Mixed Case" TO tmp_x WITH INHERIT TRUE GRANTED BY postgres;




\\unrestrict rf13Vk24WHlAQN7pebZV9ZZYstI2gHKy3T04PZrhpyJBFcq4UgNKJVEk2utT9UW

--
-- PostgreSQL database cluster dump complete
--

'''


def test_the_roles_of_a_pg_dumpall_part():
    script = RolesScript(DUMPALL, 'S.globals.pgsql.gz')
    assert script.roles == ['postgres', 'Mixed Case', 'tmp_x']
    assert script.missing({'postgres', 'tmp_x'}) == ['Mixed Case']


def test_phase_one_creates_only_the_missing_roles():
    sql, created = RolesScript(DUMPALL, 'x').phase_one({'postgres'})
    assert created == ['Mixed Case', 'tmp_x']
    assert sql.endswith('CREATE ROLE "Mixed Case";\nCREATE ROLE "tmp_x";\n')
    assert 'PASSWORD' not in sql and 'GRANT' not in sql and 'ALTER' not in sql and '\\restrict' not in sql
    assert sql.startswith('SET default_transaction_read_only = off;\n')
    assert RolesScript(DUMPALL, 'x').phase_one({'postgres', 'Mixed Case', 'tmp_x'})[1] == []


def test_phase_two_gives_every_role_but_the_login_its_attributes_settings_and_memberships():
    sql, changed = RolesScript(DUMPALL, 'x').phase_two(keep='postgres')
    assert changed == ['Mixed Case', 'tmp_x']
    assert 'ALTER ROLE postgres' not in sql
    statements = sql.split(';\n')
    assert 'ALTER ROLE "tmp_x" RESET ALL' in statements
    # Settings are reset before the backup's are set again.
    assert statements.index('ALTER ROLE "tmp_x" RESET ALL') < statements.index("ALTER ROLE tmp_x SET statement_timeout TO '5s'")
    assert "COMMENT ON ROLE tmp_x IS 'multi\nline; with a semicolon'" in statements
    assert any(statement.startswith("ALTER ROLE tmp_x WITH ") and "PASSWORD 'SCRAM-SHA-256$" in statement
               for statement in statements)
    assert statements[-3:-1] == ['GRANT pg_read_all_data TO tmp_x WITH INHERIT TRUE GRANTED BY postgres',
                                 'GRANT "Mixed Case" TO tmp_x WITH INHERIT TRUE GRANTED BY postgres']


@pytest.mark.parametrize('extra,message', [
    ('DROP ROLE tmp_x;\n', 'holds a statement this restore does not apply: DROP ROLE tmp_x'),
    ('\\! rm -rf /\n', 'holds psql commands or data'),
    ('CREATE TABLE t (id int);\n', 'holds a statement this restore does not apply: CREATE TABLE'),
    ('ALTER ROLE tmp_x WITH LOGIN', 'ends in an unfinished statement'),
])
def test_anything_else_in_the_part_is_refused(extra, message):
    with pytest.raises(BackupFileError, match='the globals part S.globals.pgsql.gz ' + message.replace('(', r'\(')):
        RolesScript(DUMPALL + extra, 'S.globals.pgsql.gz')


SETTINGS = {
    'owner': 'supabase_admin', 'encoding': 'UTF8', 'collate': 'en_US.utf8', 'ctype': 'en_US.utf8',
    'locale_provider': 'libc', 'locale': None, 'icu_rules': None, 'connection_limit': 12,
    'acl': [{'grantee': None, 'privilege': 'CONNECT', 'grantable': False},
            {'grantee': 'anon', 'privilege': 'TEMPORARY', 'grantable': True},
            {'grantee': 'gone', 'privilege': 'CONNECT', 'grantable': False}],
    'comment': "it's ours",
    'settings': [{'role': None, 'name': 'search_path', 'value': '"$user", public'},
                 {'role': None, 'name': 'app.settings.jwt_exp', 'value': '3600'},
                 {'role': 'anon', 'name': 'statement_timeout', 'value': '3s'},
                 {'role': 'gone', 'name': 'work_mem', 'value': '1MB'}],
}


def test_create_database_with_the_backups_owner_and_locale():
    statement, skipped = create_database_statement('x_restore_1', SETTINGS, {'supabase_admin'})
    assert skipped is None
    assert statement == ('CREATE DATABASE "x_restore_1" WITH TEMPLATE template0 OWNER "supabase_admin" '
                         "ENCODING 'UTF8' LC_COLLATE 'en_US.utf8' LC_CTYPE 'en_US.utf8' LOCALE_PROVIDER libc")
    statement, skipped = create_database_statement('x', dict(SETTINGS, locale_provider='icu', locale='und'), set())
    assert skipped == 'supabase_admin' and 'OWNER' not in statement and "ICU_LOCALE 'und'" in statement


def test_the_backups_settings_as_statements_roles_that_do_not_exist_left_out():
    statements, missing = apply_statements('db"x', SETTINGS, {'anon'})
    assert missing == ['gone']
    assert statements == [
        'ALTER DATABASE "db""x" CONNECTION LIMIT 12',
        'COMMENT ON DATABASE "db""x" IS \'it\'\'s ours\'',
        'REVOKE ALL ON DATABASE "db""x" FROM PUBLIC',
        'GRANT CONNECT ON DATABASE "db""x" TO PUBLIC',
        'GRANT TEMPORARY ON DATABASE "db""x" TO "anon" WITH GRANT OPTION',
        'ALTER DATABASE "db""x" SET "search_path" = "$user", public',
        'ALTER DATABASE "db""x" SET "app.settings.jwt_exp" = \'3600\'',
        'ALTER ROLE "anon" IN DATABASE "db""x" SET "statement_timeout" = \'3s\'',
    ]
    # The default ACL (datacl NULL) and no settings: nothing to do.
    assert apply_statements('x', {'connection_limit': -1, 'acl': None, 'comment': None, 'settings': []}, set()) == ([], [])
