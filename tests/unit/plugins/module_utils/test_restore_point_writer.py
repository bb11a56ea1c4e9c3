"""Multi-part restore points: part names, the writer (all parts or nothing, the main part last),
listing, newest, selection and retention over every part."""

import gzip
import hashlib
import json
import os

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _backup_output
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import AtomicFile
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_kinds import LOGICAL, VOLUME
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_output import (
    BackupWriter,
    OutputSettings,
    RestorePointWriter,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    BackupFileError,
    ConfigError,
    StorageError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import (
    dump_argument_spec,
    validate_config,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._restore_points import (
    MANIFEST_FORMAT,
    PART_SUFFIXES,
    extra_database_suffix,
    part_manifest,
    restore_point_of,
)

DAY = 86400
NOW = 1_800_000_000
STEM = 'supabase_backup_20260101_020000'


class Writer(BackupWriter):
    kind = LOGICAL


def _writer(tmp_path, **options):
    config = dict({'backup_dir': str(tmp_path), 'retention_days': 90, 'retention_keep_min': 1,
                   'compress_threads': 1}, **options)
    settings = OutputSettings(validate_config(dump_argument_spec(), config))
    settings.backup_dir = str(tmp_path)
    return Writer(settings, clock=lambda: NOW)


def _touch(directory, name, age_days=0):
    path = os.path.join(str(directory), name)
    with open(path, 'wb') as handle:
        handle.write(b'x')
    os.utime(path, (NOW - age_days * DAY, NOW - age_days * DAY))
    return path


def _listing(directory):
    return sorted(os.listdir(str(directory)))


# Names

@pytest.mark.parametrize('name,suffix', [
    ('_supabase', '.db._supabase.pgsql.gz'),
    ('app.v2', '.db.app%2Ev2.pgsql.gz'),
    ('my db/x', '.db.my%20db%2Fx.pgsql.gz'),
    ('sql.gz', '.db.sql%2Egz.pgsql.gz'),
    ('Ünï', '.db.%C3%9Cn%C3%AF.pgsql.gz'),
])
def test_extra_database_part_names_are_encoded_and_never_main_parts(name, suffix):
    assert extra_database_suffix(name) == suffix
    part = STEM + suffix
    match = LOGICAL.part_pattern().match(part)
    assert match and match.group('stem') == STEM and match.group('suffix') == suffix
    assert LOGICAL.part_pattern().match(part + '.gpg')
    assert not part.endswith('.sql.gz') and LOGICAL.stem_of(part) is None


def test_every_part_name_matches_and_nothing_looser():
    pattern = LOGICAL.part_pattern()
    for suffix in list(PART_SUFFIXES.values()) + ['.sql.gz', '.db.x.pgsql.gz']:
        assert pattern.match(STEM + suffix) and pattern.match(STEM + suffix + '.gpg'), suffix
    for name in (STEM + '.db..pgsql.gz', STEM + '.db.a.b.pgsql.gz', STEM + '.db.a%2e.pgsql.gz',
                 STEM + '.storage.tar.gz.sha256', STEM + '.storage.tar', STEM + '.other.tar.gz',
                 STEM + '.globals.pgsql.gz~', STEM + '.db.x.pgsql.gz.gpg.partial', STEM + '.db-config.tar.gz\n'):
        assert not pattern.match(name), name
    # The volume kind has no extra parts.
    assert not VOLUME.part_pattern().match('supabase-volume-20260101_020000.storage.tar.gz')


# The writer

def test_a_restore_point_with_several_parts_is_committed_whole(tmp_path):
    writer = _writer(tmp_path)
    point = RestorePointWriter(writer, '20260101_020000')
    with point.part('.sql.gz', role='database') as sink:
        sink.write(b'main dump')
        sink.facts['database'] = 'postgres'
    with point.part(extra_database_suffix('_supabase'), role='extra_database') as sink:
        sink.write(b'extra dump')
        sink.facts['database'] = '_supabase'
    with point.part('.storage.tar.gz', role='storage') as sink:
        sink.write(b'tar bytes')
        sink.facts['files'] = 12
    point.not_found('db_config', '/etc/postgresql-custom/pgsodium_root.key')
    # Nothing is visible before the commit.
    assert [name for name in _listing(tmp_path) if not name.endswith('.partial')] == []
    manifest_path = point.commit()
    names = [STEM + '.sql.gz', STEM + '.db._supabase.pgsql.gz', STEM + '.storage.tar.gz']
    assert _listing(tmp_path) == sorted(names + [name + '.sha256' for name in names] + [STEM + '.manifest.json'])
    for name in names:
        path = os.path.join(str(tmp_path), name)
        assert os.stat(path).st_mode & 0o777 == 0o600
        content = open(path, 'rb').read()
        with open(path + '.sha256', encoding='utf-8') as handle:
            assert handle.read() == '%s  %s\n' % (hashlib.sha256(content).hexdigest(), name)
    assert gzip.decompress(open(os.path.join(str(tmp_path), names[2]), 'rb').read()) == b'tar bytes'
    manifest = json.load(open(manifest_path, encoding='utf-8'))
    assert manifest['format'] == MANIFEST_FORMAT and manifest['stem'] == STEM
    assert manifest['components'] == ['database', 'extra_database', 'storage']
    assert manifest['not_found'] == [{'component': 'db_config', 'what': '/etc/postgresql-custom/pgsodium_root.key'}]
    assert [part['role'] for part in manifest['parts']] == ['database', 'extra_database', 'storage']
    assert manifest['parts'][2]['files'] == 12 and manifest['parts'][1]['database'] == '_supabase'
    assert point.parts == [{'name': entry['name'], 'role': entry['role'], 'size': entry['size']}
                           for entry in manifest['parts']]
    assert part_manifest(os.path.join(str(tmp_path), names[1]))['database'] == '_supabase'
    assert restore_point_of(str(tmp_path), STEM)['parts'] == manifest['parts']
    assert writer.warnings == []
    # The restore point is one, its main part its path.
    [listed] = LOGICAL.restore_points(str(tmp_path))
    assert listed['path'] == os.path.join(str(tmp_path), names[0]) and len(listed['parts']) == 3
    assert LOGICAL.select(str(tmp_path)) == listed['path']


def test_not_found_warns_only_when_asked(tmp_path):
    writer = _writer(tmp_path)
    point = RestorePointWriter(writer, '20260101_020000')
    point.not_found('db_config', '/etc/x.key', warn=True)
    assert writer.warnings == ['db_config: /etc/x.key was not found; the restore point %s has no copy of it' % STEM]


def test_the_main_part_is_renamed_into_place_last(tmp_path, monkeypatch):
    order = []
    original = AtomicFile.commit

    def commit(self, overwrite=True):
        order.append(os.path.basename(self.final_path))
        return original(self, overwrite)

    monkeypatch.setattr(AtomicFile, 'commit', commit)
    point = RestorePointWriter(_writer(tmp_path), '20260101_020000')
    for suffix, role in (('.sql.gz', 'database'), ('.globals.pgsql.gz', 'globals'), ('.storage.tar.gz', 'storage')):
        with point.part(suffix, role) as sink:
            sink.write(b'x')
    point.commit()
    parts = [name for name in order if not name.endswith(('.sha256', '.json'))]
    assert parts == [STEM + '.globals.pgsql.gz', STEM + '.storage.tar.gz', STEM + '.sql.gz']
    # The sidecars and the manifest are written before any part.
    assert order.index(parts[0]) > order.index(STEM + '.manifest.json')


def test_a_failing_part_leaves_nothing_and_the_point_aborts(tmp_path):
    point = RestorePointWriter(_writer(tmp_path), '20260101_020000')
    with point.part('.sql.gz', role='database') as sink:
        sink.write(b'main')
    with pytest.raises(RuntimeError):
        with point.part('.globals.pgsql.gz', role='globals') as sink:
            sink.write(b'half')
            raise RuntimeError('the producer failed')
    assert [entry['role'] for entry in point.entries] == ['database']
    point.abort()
    assert _listing(tmp_path) == []


def test_a_commit_that_fails_midway_removes_what_it_placed(tmp_path, monkeypatch):
    original = AtomicFile.commit

    def commit(self, overwrite=True):
        if self.final_path.endswith('.sql.gz'):
            raise StorageError('no space left on the device')
        return original(self, overwrite)

    monkeypatch.setattr(AtomicFile, 'commit', commit)
    point = RestorePointWriter(_writer(tmp_path), '20260101_020000')
    for suffix, role in (('.sql.gz', 'database'), ('.storage.tar.gz', 'storage')):
        with point.part(suffix, role) as sink:
            sink.write(b'x')
    with pytest.raises(StorageError):
        point.commit()
    assert _listing(tmp_path) == []


def test_an_existing_part_is_never_overwritten(tmp_path):
    _touch(tmp_path, STEM + '.storage.tar.gz')
    point = RestorePointWriter(_writer(tmp_path), '20260101_020000')
    for suffix, role in (('.sql.gz', 'database'), ('.storage.tar.gz', 'storage')):
        with point.part(suffix, role) as sink:
            sink.write(b'x')
    with pytest.raises(StorageError, match='already exists'):
        point.commit()
    assert _listing(tmp_path) == [STEM + '.storage.tar.gz']


def test_bad_or_repeated_part_names_are_refused(tmp_path):
    point = RestorePointWriter(_writer(tmp_path), '20260101_020000')
    with pytest.raises(ConfigError, match='is not the name of a part'):
        with point.part('.notes.txt', role='notes'):
            pass
    with point.part('.globals.pgsql.gz', role='globals') as sink:
        sink.write(b'x')
    with pytest.raises(ConfigError, match='already has a part'):
        with point.part('.globals.pgsql.gz', role='globals'):
            pass
    point.abort()
    assert _listing(tmp_path) == []


def test_encrypted_parts_carry_gpg_and_no_plain_byte(tmp_path):
    point = RestorePointWriter(_writer(tmp_path, encrypt_passphrase='correct horse'), '20260101_020000')
    for suffix, role in (('.sql.gz', 'database'), ('.globals.pgsql.gz', 'globals')):
        with point.part(suffix, role) as sink:
            sink.write(b'SECRET-ROLE-HASH' * 10)
    point.commit()
    parts = [name for name in _listing(tmp_path) if name.endswith('.gpg')]
    assert parts == [STEM + '.globals.pgsql.gz.gpg', STEM + '.sql.gz.gpg']
    for name in parts:
        assert b'SECRET-ROLE-HASH' not in open(os.path.join(str(tmp_path), name), 'rb').read()
    assert LOGICAL.newest(str(tmp_path))['name'] == STEM + '.sql.gz.gpg'


def test_the_free_stamp_skips_a_stem_any_part_uses(tmp_path, monkeypatch):
    now = [NOW]
    writer = _writer(tmp_path)
    writer.clock = lambda: now[0]
    taken = writer.stamp()
    _touch(tmp_path, writer.backup_kind().stem(taken) + '.storage.tar.gz')

    def sleep(_seconds):
        now[0] += 1

    monkeypatch.setattr(_backup_output.time, 'sleep', sleep)
    stamp = writer.free_stamp()
    assert stamp != taken and now[0] == NOW + 1
    assert writer.free_backup_path() == os.path.join(str(tmp_path), LOGICAL.part_name(stamp))


# Listing, newest, selection, retention over multi-part restore points

def test_newest_and_select_are_the_main_part_never_another(tmp_path):
    main = _touch(tmp_path, STEM + '.sql.gz', 2)
    _touch(tmp_path, STEM + '.globals.pgsql.gz', 2)
    _touch(tmp_path, STEM + '.db.x.pgsql.gz', 2)
    # A newer stem with extra parts only is never the newest and cannot be selected.
    orphan = 'supabase_backup_20260102_020000'
    _touch(tmp_path, orphan + '.storage.tar.gz', 1)
    assert LOGICAL.newest(str(tmp_path))['path'] == main
    assert LOGICAL.select(str(tmp_path)) == main
    assert [point['stem'] for point in LOGICAL.restore_points(str(tmp_path))] == [STEM]
    with pytest.raises(BackupFileError, match='no restore point %s' % orphan):
        LOGICAL.select(str(tmp_path), restore_point=orphan)
    assert LOGICAL.restore_point(str(tmp_path), STEM)['parts'][-1] == main


def test_retention_removes_multi_part_points_whole_and_orphans_by_age(tmp_path):
    old = 'supabase_backup_20200101_000000'
    old_files = [_touch(tmp_path, old + suffix, 400) for suffix in (
        '.sql.gz', '.sql.gz.sha256', '.db._supabase.pgsql.gz', '.db._supabase.pgsql.gz.sha256',
        '.globals.pgsql.gz', '.globals.pgsql.gz.sha256', '.storage.tar.gz', '.storage.tar.gz.sha256',
        '.manifest.json', '.sql.gz.validation.json')]
    orphan = [_touch(tmp_path, 'supabase_backup_20200102_000000' + suffix, 399)
              for suffix in ('.storage.tar.gz', '.storage.tar.gz.sha256')]
    kept = [_touch(tmp_path, 'supabase_backup_20200103_000000' + suffix, 398)
            for suffix in ('.sql.gz', '.globals.pgsql.gz', '.manifest.json')]
    foreign = _touch(tmp_path, old + '.notes.tar.gz', 400)
    writer = _writer(tmp_path)
    writer.check_mode = True
    planned = writer.remove_expired(include_new=str(tmp_path / 'supabase_backup_20260101_000000.sql.gz'))
    # keep_min 1: the new backup is the one kept; the old points go whole, the orphan by its age.
    assert sorted(planned) == sorted(old_files + orphan + kept)
    writer.check_mode = False
    removed = writer.remove_expired()
    # Without the new one, the newest complete point is kept, and the orphan older than it is not protected.
    assert sorted(removed) == sorted(old_files + orphan)
    # Each point's main part goes last of its files.
    old_removed = [path for path in removed if os.path.basename(path).startswith(old)]
    assert old_removed[0].endswith('.manifest.json') and old_removed[-1].endswith(old + '.sql.gz')
    assert _listing(tmp_path) == sorted(os.path.basename(path) for path in kept + [foreign])
