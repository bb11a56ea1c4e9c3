"""Restoring a restore point's components (extra databases, roles, file parts) at the Docker/psql
boundary: every part checked before anything changes, the roles in two phases around the swap of
all the databases at once, a missing database created by the rename."""

import copy
import json
import os

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import (
    _database_restorer,
    _dump,
    _restore,
    _validate,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    BackupFileError,
    CommandError,
    ConfigError,
    VerificationError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import (
    dump_argument_spec,
    restore_argument_spec,
    validate_argument_spec,
    validate_config,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._restore_journal import (
    RestoreJournal,
    journal_path,
)
from ansible_collections.cortexreview.supabase_backup.tests.unit.fakes import (
    FakeDatabase,
    FakeDockerAPI,
    FakeServer,
    dump_text,
    install,
    module_params,
    write_backup,
)

NOW = 1_800_000_000
WRITERS = ['api']
MAIN_DUMP = dump_text({'public.t': 3}, ['public.t_idx'])
EXTRA_DUMP = dump_text({'_analytics.sources': 2})


class World:

    def __init__(self, monkeypatch, tmp_path):
        self.server = FakeServer({'postgres': FakeDatabase(tables={'public.t': 1}),
                                  '_supabase': FakeDatabase(tables={'_analytics.sources': 9}, owner='anon',
                                                            settings=[(None, ['work_mem=3MB'])]),
                                  'template1': FakeDatabase()})
        self.server.dump = ([MAIN_DUMP.encode()], 0, '')
        self.server.dumps['_supabase'] = ([EXTRA_DUMP.encode()], 0, '')
        self.docker = FakeDockerAPI()
        self.docker.add('api')
        install(monkeypatch, self.server, self.docker)
        monkeypatch.setattr(_database_restorer.time, 'sleep', lambda seconds: None)
        self.backup_dir = str(tmp_path / 'backups')
        dumped = _dump.DumpBackend.from_params(validate_config(dump_argument_spec(), {
            'backup_dir': self.backup_dir, 'container': 'fake-db', 'compress_threads': 1}), clock=lambda: NOW).run()
        self.stem = dumped['restore_point']
        self.path = dumped['path']
        # After the backup: a role is gone and the extra database changed.
        self.server.roles.remove('anon')
        self.server.databases['_supabase'] = FakeDatabase(tables={'_analytics.sources': 1}, owner='postgres',
                                                          settings=[(None, ['work_mem=99MB'])])
        self.server.log.clear()
        self.server.transactions.clear()

    def backend(self, check_mode=False, **options):
        params = module_params(restore_argument_spec(), **dict(
            {'backup_dir': self.backup_dir, 'restore_point': self.stem, 'confirm': True, 'container': 'fake-db',
             'stop_containers': WRITERS}, **options))
        return _restore.RestoreBackend.from_params(params, check_mode=check_mode, clock=lambda: NOW + 60)

    def part(self, suffix):
        return os.path.join(self.backup_dir, self.stem + suffix)

    def changes(self):
        """Every statement or script that could change the server."""
        return [entry for entry in self.server.log if entry[2] in ('<roles>', '<input>') or
                not entry[2].startswith('SELECT')]


@pytest.fixture
def world(monkeypatch, tmp_path):
    return World(monkeypatch, tmp_path)


def test_roles_in_two_phases_around_the_swap_of_the_extra_database(world):
    backend = world.backend(components=['globals', 'extra_databases'])
    result = backend.run()
    stamp = backend.stamp()
    databases = world.server.databases
    assert sorted(databases) == ['_supabase', '_supabase_pre_restore_' + stamp, 'postgres', 'template1']
    assert databases['_supabase'].tables == {'_analytics.sources': 2}
    # The backup's owner (created again in phase 1) and settings, not the live ones.
    assert databases['_supabase'].owner == 'anon' and databases['_supabase'].settings == [(None, ['work_mem=3MB'])]
    assert databases['postgres'].tables == {'public.t': 1}
    assert result['components'] == ['extra_databases', 'globals'] and result['not_in_backup'] == []
    assert result['roles_created'] == ['anon'] and result['roles_changed'] == ['anon']
    # The role the restore connects as gets its password from the backup last, after the tidying.
    assert result['roles_kept'] == [] and result['password_restored'] == 'postgres'
    assert result['databases'][0]['settings_from'] == 'backup' and result['databases'][0]['created'] is False
    # Phase 1 before the load, the swap, then phase 2 (the roles' attributes and passwords).
    order = [entry[2] if entry[2] in ('<roles>', '<input>') else 'swap' for entry in world.server.log
             if entry[2] in ('<roles>', '<input>') or 'RENAME TO' in entry[2]]
    assert order == ['<roles>', '<input>', 'swap', '<roles>', '<roles>']
    first, second, last = world.server.role_scripts
    assert 'CREATE ROLE "anon";' in first and 'PASSWORD' not in first
    assert 'ALTER ROLE anon WITH NOSUPERUSER' in second and 'ALTER ROLE postgres' not in second
    # Last, alone: the connecting role's password hash from the backup, nothing else of it.
    assert 'ALTER ROLE "postgres" PASSWORD \'' in last and 'SUPERUSER' not in last and 'anon' not in last
    assert result['stopped'] == result['started'] == WRITERS
    assert world.server.unmodelled == []


def test_all_databases_are_swapped_in_one_transaction(world):
    backend = world.backend(components=['all'])
    result = backend.run()
    stamp = backend.stamp()
    renames = [statements for statements in world.server.transactions
               if any('RENAME TO' in statement for statement in statements)]
    assert len(renames) == 1
    assert 'ALTER DATABASE "postgres" RENAME TO "postgres_pre_restore_%s"' % stamp in renames[0]
    assert 'ALTER DATABASE "_supabase_restore_%s" RENAME TO "_supabase"' % stamp in renames[0]
    assert result['components'] == ['database', 'extra_databases', 'globals']
    assert result['not_in_backup'] == ['db_config', 'deployment', 'storage']
    assert result['tables'] == {'public.t': 3} and result['previous_database'] == 'postgres_pre_restore_' + stamp


def test_a_missing_extra_database_is_created_by_the_rename(world):
    del world.server.databases['_supabase']
    world.server.roles.append('anon')
    backend = world.backend(components=['extra_databases'])
    plan = world.backend(check_mode=True, components=['extra_databases']).run()
    assert plan['databases'][0]['created'] is True and plan['databases'][0]['previous_database'] is None
    result = backend.run()
    assert result['databases'][0]['created'] is True and result['databases'][0]['previous_database'] is None
    assert sorted(world.server.databases) == ['_supabase', 'postgres', 'template1']
    assert world.server.databases['_supabase'].tables == {'_analytics.sources': 2}


def test_a_load_failure_after_phase_one_changes_no_existing_role_and_no_database(world):
    before = copy.deepcopy(world.server.databases)
    world.server.load_error = (3, 'psql:x:12: ERROR:  division by zero')
    with pytest.raises(CommandError) as caught:
        world.backend(components=['globals', 'extra_databases']).run()
    assert 'division by zero' in caught.value.msg and 'the live database was not touched' in caught.value.msg
    # Phase 1 ran (the missing role exists now, bare); phase 2 never did.
    assert len(world.server.role_scripts) == 1 and 'anon' in world.server.roles
    assert world.server.databases == before
    assert caught.value.details['stopped'] == caught.value.details['started']


def test_a_failing_second_phase_is_reported_after_the_swap(world):
    def fail_second(script):
        world.server.roles_error = 'psql:<stdin>:9: ERROR:  role "x" does not exist' if 'RESET ALL' in script else None

    original = world.server.apply_roles

    def apply_roles(script):
        fail_second(script)
        return original(script)

    world.server.apply_roles = apply_roles
    with pytest.raises(CommandError) as caught:
        world.backend(components=['globals', 'extra_databases']).run()
    assert caught.value.msg.startswith('giving the roles their attributes, passwords and memberships from the backup '
                                       '(the databases are restored) failed, no role was changed by it')
    assert caught.value.details['stopped'] == caught.value.details['started'] == WRITERS


@pytest.mark.parametrize('damage', ['missing', 'altered', 'sidecar'])
@pytest.mark.parametrize('check_mode', [False, True])
def test_a_part_missing_or_altered_is_refused_before_anything(world, damage, check_mode):
    name = world.stem + '.db._supabase.pgsql.gz'
    path = world.part('.db._supabase.pgsql.gz')
    if damage == 'missing':
        os.unlink(path)
        message = 'restore point %s is missing its extra_database part %s; nothing was changed' % (world.stem, name)
    elif damage == 'altered':
        with open(path, 'ab') as handle:
            handle.write(b'\0')
        message = 'restore point %s: its extra_database part %s does not match its checksum' % (world.stem, name)
    else:
        with open(path + '.sha256', 'w', encoding='utf-8') as handle:
            handle.write('%s  %s\n' % ('0' * 64, name))
        message = 'restore point %s: its extra_database part %s does not match its checksum' % (world.stem, name)
    before = copy.deepcopy(world.server.databases)
    with pytest.raises(BackupFileError) as caught:
        world.backend(check_mode=check_mode, components=['globals', 'extra_databases']).run()
    assert caught.value.msg.startswith(message) and caught.value.details['part'] == name
    assert world.changes() == [] and world.server.databases == before and world.docker.actions('stop') == []
    assert not any(entry.startswith('.cortexreview-restore-') for entry in os.listdir(world.backup_dir))


def test_a_wrong_passphrase_is_refused_before_anything(world, tmp_path):
    encrypted_dir = str(tmp_path / 'encrypted')
    dumped = _dump.DumpBackend.from_params(validate_config(dump_argument_spec(), {
        'backup_dir': encrypted_dir, 'container': 'fake-db', 'compress_threads': 1,
        'encrypt_passphrase': 'the right one'}), clock=lambda: NOW).run()
    assert [part['name'][-4:] for part in dumped['parts']] == ['.gpg'] * 3
    world.server.log.clear()
    with pytest.raises(BackupFileError) as caught:
        world.backend(backup_dir=encrypted_dir, restore_point=dumped['restore_point'], encrypt_passphrase='wrong',
                      components=['extra_databases', 'globals']).run()
    assert 'part %s.db._supabase.pgsql.gz.gpg cannot be used' % dumped['restore_point'] in caught.value.msg
    assert world.changes() == []
    result = world.backend(backup_dir=encrypted_dir, restore_point=dumped['restore_point'],
                           encrypt_passphrase='the right one', components=['extra_databases', 'globals']).run()
    assert result['roles_created'] == ['anon']


def test_check_mode_predicts_and_changes_nothing(world):
    before = copy.deepcopy(world.server.databases)
    plan = world.backend(check_mode=True, components=['all']).run()
    assert plan['components'] == ['database', 'extra_databases', 'globals']
    assert plan['roles_created'] == ['anon'] and plan['not_in_backup'] == ['db_config', 'deployment', 'storage']
    assert [database['database'] for database in plan['databases']] == ['postgres', '_supabase']
    assert all(database['settings_from'] == 'backup' for database in plan['databases'])
    assert 'creating role(s) anon' in plan['msg']
    assert world.changes() == [] and world.server.databases == before and world.docker.actions('stop') == []


def test_a_component_the_restore_point_lacks_is_refused(world):
    with pytest.raises(ConfigError, match='restore point %s has no storage part \\(it holds: database, extra_databases, '
                                          'globals\\); nothing was changed' % world.stem):
        world.backend(components=['storage']).run()
    os.unlink(world.part('.globals.pgsql.gz'))
    os.unlink(world.part('.globals.pgsql.gz.sha256'))
    with open(world.part('.manifest.json'), encoding='utf-8') as handle:
        manifest = json.load(handle)
    manifest['parts'] = [part for part in manifest['parts'] if part['role'] != 'globals']
    with open(world.part('.manifest.json'), 'w', encoding='utf-8') as handle:
        json.dump(manifest, handle)
    with pytest.raises(ConfigError, match='has no globals part'):
        world.backend(components=['globals']).run()
    assert world.changes() == []


@pytest.mark.parametrize('components,message', [
    ([], 'components must name at least one of database, extra_databases, globals, db_config, deployment, storage'),
    (['roles'], "components: unknown 'roles'; choose from"),
])
def test_bad_components_are_one_line_errors(world, components, message):
    with pytest.raises(ConfigError, match=message):
        world.backend(components=components)


def test_all_on_an_older_backup_restores_what_it_holds(world, tmp_path):
    old = write_backup(tmp_path / 'supabase_backup_20200101_000000.sql.gz', MAIN_DUMP)
    result = world.backend(src=old, backup_dir=None, restore_point=None, components=['all']).run()
    assert result['components'] == ['database']
    assert result['not_in_backup'] == ['extra_databases', 'globals', 'db_config', 'deployment', 'storage']
    assert 'not in the backup: extra_databases, globals' in result['msg']
    assert world.server.databases['postgres'].tables == {'public.t': 3}
    assert result['databases'][0]['settings_from'] == 'live'
    with pytest.raises(ConfigError, match='has no globals part'):
        world.backend(src=old, backup_dir=None, restore_point=None, components=['globals']).run()


def test_globals_need_a_superuser_to_restore(world):
    world.server.superuser = False
    with pytest.raises(ConfigError) as caught:
        world.backend(components=['globals'], login_user='backup').run()
    assert caught.value.msg == 'globals need a superuser (login_user backup is not one); set globals: false'
    assert world.changes() == []


def test_file_components_need_their_restorer_and_run_after_the_roles(world, monkeypatch):
    manifest_path = world.part('.manifest.json')
    with open(manifest_path, encoding='utf-8') as handle:
        manifest = json.load(handle)
    with open(world.part('.storage.tar.gz'), 'wb') as handle:
        handle.write(open(world.part('.globals.pgsql.gz'), 'rb').read())
    entry = dict(manifest['parts'][-1], name=world.stem + '.storage.tar.gz', role='storage')
    manifest['parts'].append(entry)
    with open(manifest_path, 'w', encoding='utf-8') as handle:
        json.dump(manifest, handle)
    # The real storage restorer reads its part whole as it is built: this one is no tar.
    with pytest.raises(BackupFileError, match='storage.tar.gz cannot be restored: not a valid tar archive'):
        world.backend(components=['storage']).run()
    events = []

    class Restorer:
        def __init__(self, backend, parts):
            self.parts = parts

        def plan(self):
            return {'would': self.parts.entry('storage')['name']}

        def restore(self):
            events.append(('storage', len(world.server.role_scripts)))
            return {'restored': self.parts.entry('storage')['path']}

    monkeypatch.setitem(_restore.COMPONENT_RESTORERS, 'storage', Restorer)
    plan = world.backend(check_mode=True, components=['globals', 'storage']).run()
    assert plan['files'] == {'storage': {'would': entry['name']}}
    result = world.backend(components=['globals', 'storage']).run()
    # After both phases of the roles.
    assert events == [('storage', 2)] and result['files'] == {'storage': {'restored': world.part('.storage.tar.gz')}}


def test_an_interrupted_restore_of_several_databases_is_finished(world):
    target = world.backend().settings.target
    path = journal_path(world.backup_dir, target)
    RestoreJournal.begin(path, target, world.path, 'then').note(
        scratch_database='postgres_restore_20260101_000000',
        scratch_databases=['postgres_restore_20260101_000000', '_supabase_restore_20260101_000000', 'postgres'])
    for name in ('postgres_restore_20260101_000000', '_supabase_restore_20260101_000000'):
        world.server.databases[name] = FakeDatabase()
    backend = world.backend(components=['extra_databases'])
    result = backend.run()
    assert result['interrupted_restore']['dropped'] == ['postgres_restore_20260101_000000',
                                                        '_supabase_restore_20260101_000000']
    assert 'postgres' in world.server.databases


def test_a_restore_that_died_after_the_swap_says_pg_cron_is_missing_and_its_spool_goes(world):
    target = world.backend().settings.target
    RestoreJournal.begin(journal_path(world.backup_dir, target), target, world.path, 'then').note(
        scratch_databases=['postgres_restore_20260101_000000'], previous_database='postgres_pre_restore_20260101_000000',
        phase='restoring after the swap')
    spool = os.path.join(world.backup_dir, '.cortexreview-diverted-abc123')
    os.mkdir(spool, 0o700)
    with open(os.path.join(spool, 'diverted.sql'), 'w', encoding='utf-8') as handle:
        handle.write('COPY cron.job FROM stdin;')
    backend = world.backend(components=['extra_databases'])
    backend.run()
    assert not os.path.exists(spool)
    assert any("it ended after the swap, before pg_cron's objects were restored: the live database lacks them (its "
               "previous contents are kept as postgres_pre_restore_20260101_000000)" in warning
               for warning in backend.warnings), backend.warnings


@pytest.mark.parametrize('name', ['postgres', 'template1', 'template0', '', None])
def test_an_extra_part_naming_a_database_it_may_not_replace_is_refused(world, name):
    manifest_path = world.part('.manifest.json')
    with open(manifest_path, encoding='utf-8') as handle:
        manifest = json.load(handle)
    for part in manifest['parts']:
        if part['role'] == 'extra_database':
            part['database'] = name
    with open(manifest_path, 'w', encoding='utf-8') as handle:
        json.dump(manifest, handle)
    with pytest.raises(ConfigError, match='part %s.db._supabase.pgsql.gz names no database this restore may replace'
                                          % world.stem):
        world.backend(components=['extra_databases']).run()
    assert world.changes() == []


def test_an_owner_or_grantee_missing_on_the_server_is_left_out_with_a_warning(world):
    # Without the globals component the backup's owner (anon) does not exist here.
    backend = world.backend(components=['extra_databases'])
    result = backend.run()
    assert world.server.databases['_supabase'].owner == 'postgres'
    assert any('its owner anon in the backup does not exist; postgres owns it' in warning
               for warning in backend.warnings)
    assert result['databases'][0]['settings_from'] == 'backup'


# supabase_validate over every part

def validate(world, **options):
    params = module_params(validate_argument_spec(), **dict(
        {'backup_dir': world.backup_dir, 'restore_point': world.stem, 'container': 'fake-db'}, **options))
    return _validate.ValidateBackend.from_params(params, clock=lambda: NOW + 120)


def test_validation_covers_every_part_and_touches_no_live_database(world):
    before = copy.deepcopy(world.server.databases)
    report = validate(world).run()
    assert report['passed'] is True
    assert [part['role'] for part in report['parts']] == ['extra_database', 'globals']
    assert report['extra_databases'] == {'_supabase': {'_analytics.sources': 2}}
    # anon was dropped after the backup: reported, not restored.
    assert report['roles'] == {'count': 2, 'missing_here': ['anon']}
    assert world.server.databases == before and world.server.role_scripts == []
    with open(world.path + '.validation.txt', encoding='utf-8') as handle:
        summary = handle.read()
    assert 'database: _supabase restored in staging, 1 tables, 2 rows' in summary
    assert 'roles:    2 in the backup, as its manifest lists them; not on this server: anon' in summary


def test_validation_fails_on_an_altered_part_or_roles_that_differ_from_the_manifest(world):
    with open(world.part('.manifest.json'), encoding='utf-8') as handle:
        manifest = json.load(handle)
    for part in manifest['parts']:
        if part['role'] == 'globals':
            part['roles'] = ['postgres']
    with open(world.part('.manifest.json'), 'w', encoding='utf-8') as handle:
        json.dump(manifest, handle)
    with pytest.raises(VerificationError, match='the roles of %s.globals.pgsql.gz differ from its manifest' % world.stem):
        validate(world).run()
    with open(world.part('.db._supabase.pgsql.gz'), 'ab') as handle:
        handle.write(b'\0')
    with pytest.raises(BackupFileError, match='does not match its checksum'):
        validate(world).run()
    assert sorted(world.server.databases) == ['_supabase', 'postgres', 'template1']


def _list_pg_cron(world, role='extra_database'):
    manifest_file = world.part('.manifest.json')
    with open(manifest_file, encoding='utf-8') as handle:
        manifest = json.load(handle)
    for part in manifest['parts']:
        if part['role'] == role:
            part['extensions'] = dict(part.get('extensions') or {}, pg_cron='1.6')
    with open(manifest_file, 'w', encoding='utf-8') as handle:
        json.dump(manifest, handle)


@pytest.mark.parametrize('check_mode', [False, True])
def test_pg_cron_needs_a_target_whose_cron_database_name_names_the_database(world, check_mode):
    _list_pg_cron(world)
    # cron.database_name names postgres: pg_cron of _supabase could only be created there.
    with pytest.raises(ConfigError, match=r"^restore point %s: database _supabase has pg_cron, whose objects can only "
                                          r"be created in the database cron.database_name names, and this server's "
                                          r"cron.database_name is 'postgres'; set cron.database_name = '_supabase' "
                                          r"in postgresql.conf" % world.stem):
        world.backend(check_mode=check_mode, components=['all']).run()
    world.server.server_settings = {}
    with pytest.raises(ConfigError, match=r"this server's cron.database_name is not set"):
        world.backend(check_mode=check_mode, components=['extra_databases']).run()
    assert world.changes() == []
    # The main database alone is still restorable: the check is per database restored.
    assert world.backend(check_mode=True, components=['database']).run()['changed'] is True


@pytest.mark.parametrize('check_mode', [False, True])
def test_pg_cron_needs_a_target_that_offers_it(world, check_mode):
    _list_pg_cron(world, role='database')
    world.server.available_extensions = ['vector']
    with pytest.raises(ConfigError, match=r'^restore point %s: database postgres has pg_cron, which this server does '
                                          r'not offer \(pg_available_extensions\); install pg_cron on it first; '
                                          r'nothing was changed$' % world.stem):
        world.backend(check_mode=check_mode).run()
    assert world.changes() == []


def test_the_plan_says_pg_cron_is_restored_after_the_swap(world):
    _list_pg_cron(world, role='database')
    plan = world.backend(check_mode=True, components=['all']).run()
    assert "; pg_cron's objects of postgres restored after the swap" in plan['msg']
    assert [database['after_swap'] for database in plan['databases']] == [['pg_cron'], []]
    assert world.changes() == []
