"""The kinds of backup file and their restore points: names, manifests (v1, v2, none), retention, selection."""

import gzip
import hashlib
import json
import os

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import select_expired
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_kinds import (
    KINDS,
    LOGICAL,
    VOLUME,
    kind_named,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_output import (
    BackupWriter,
    OutputSettings,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_reader import BackupFile
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    BackupFileError,
    ConfigError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import (
    dump_argument_spec,
    validate_config,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._restore_points import (
    MANIFEST_FORMAT,
    part_manifest,
    remove_restore_points,
    restore_point_files,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._volume_archive import VolumeArchive

DAY = 86400
NOW = 1_800_000_000
DUMP = (b'--\n-- PostgreSQL database dump\n--\n\nCOPY public.t (id) FROM stdin;\n1\n2\n\\.\n\n'
        b'--\n-- PostgreSQL database dump complete\n--\n\n')


def _make(directory, name, age_days=0, content=b'x'):
    path = os.path.join(str(directory), name)
    with open(path, 'wb') as handle:
        handle.write(content)
    stamp = NOW - age_days * DAY
    os.utime(path, (stamp, stamp))
    return path


def _dump(directory, stem, age_days=0):
    """A real (tiny) pg_dump file and its sha256."""
    content = gzip.compress(DUMP)
    return _make(directory, stem + '.sql.gz', age_days, content), hashlib.sha256(content).hexdigest()


def _v2(directory, stem, parts, **extra):
    manifest = {'format': MANIFEST_FORMAT, 'stem': stem, 'kind': 'logical', 'created_at': '2026-01-01T02:00:00+00:00',
                'parts': parts}
    manifest.update(extra)
    _make(directory, stem + '.manifest.json', content=json.dumps(manifest).encode())


# The records

def test_one_record_per_kind_holds_its_facts():
    assert set(KINDS) == {'logical', 'volume'}
    assert LOGICAL.part_name('20260101_020000') == 'supabase_backup_20260101_020000.sql.gz'
    assert LOGICAL.part_name('20260101_020000', encrypted=True) == 'supabase_backup_20260101_020000.sql.gz.gpg'
    assert VOLUME.part_name('20260101_020000', encrypted=True) == 'supabase-volume-20260101_020000.tar.gz.gpg'
    assert LOGICAL.describe_names() == 'supabase_backup_YYYYMMDD_HHMMSS.sql.gz[.gpg]'
    assert VOLUME.describe_names() == 'supabase-volume-YYYYMMDD_HHMMSS.tar.gz[.gpg]'
    assert (LOGICAL.reader, VOLUME.reader) == (BackupFile, VolumeArchive)
    assert (LOGICAL.metrics_kind, VOLUME.metrics_kind) == ('logical', 'volume')
    assert (LOGICAL.role, VOLUME.role) == ('database', 'data_directory')


def test_prefix_option_only_where_the_kind_has_one():
    nightly = kind_named('logical', 'nightly')
    assert nightly.part_name('20260101_020000') == 'nightly_20260101_020000.sql.gz' and LOGICAL.prefix == 'supabase_backup'
    assert kind_named('volume', 'nightly') is VOLUME
    with pytest.raises(ConfigError, match='prefix'):
        kind_named('logical', '../x')
    with pytest.raises(ConfigError, match='kind must be one of logical, volume'):
        kind_named('roles')


def test_name_pattern_is_exact():
    pattern = LOGICAL.part_pattern()
    match = pattern.match('supabase_backup_20260101_020000.sql.gz')
    assert match.group('stem') == 'supabase_backup_20260101_020000' and match.group('timestamp') == '20260101_020000'
    assert pattern.match('supabase_backup_20260101_020000.sql.gz.gpg')
    for name in ('supabase_backup_20260101_020000.sql.gz.sha256', 'supabase_backup_2026_0101.sql.gz',
                 'xsupabase_backup_20260101_020000.sql.gz', 'supabase_backup_20260101_020000.sql',
                 'supabase_backup_extra_20260101_020000.sql.gz', 'supabase_backup_20260101_020000.sql.gz~',
                 'supabase_backup_20260101_020000.manifest.json', 'supabase-volume-20260101_020000.tar.gz',
                 'supabase_backup_20260101_020000.sql.gz\n'):
        assert not pattern.match(name), name
    assert LOGICAL.stem_of('/x/supabase_backup_20260101_020000.sql.gz.gpg') == 'supabase_backup_20260101_020000'
    assert LOGICAL.stem_of('/x/backup.sql.gz') is None


# Manifests: v2, v1, none

def test_v2_manifest_describes_its_part(tmp_path):
    path, sha256 = _dump(tmp_path, 'supabase_backup_20260101_020000')
    _make(tmp_path, os.path.basename(path) + '.sha256', content=('%s  x\n' % sha256).encode())
    _v2(tmp_path, 'supabase_backup_20260101_020000',
        [{'name': os.path.basename(path), 'role': 'database', 'sha256': sha256, 'tables': {'public.t': 2}}])
    manifest = part_manifest(path)
    assert manifest['sha256'] == sha256 and manifest['stem'] == 'supabase_backup_20260101_020000'
    assert manifest['format'] == MANIFEST_FORMAT and manifest['created_at'].startswith('2026')
    facts = BackupFile(path).verify()
    assert facts['checksum_verified'] and facts['tables'] == {'public.t': 2}


def test_v2_manifest_that_disagrees_is_refused(tmp_path):
    path, _sha256 = _dump(tmp_path, 'supabase_backup_20260101_020000')
    _v2(tmp_path, 'supabase_backup_20260101_020000',
        [{'name': os.path.basename(path), 'role': 'database', 'sha256': '0' * 64}])
    with pytest.raises(BackupFileError, match='does not match the sha256 in its manifest'):
        BackupFile(path).verify()
    _v2(tmp_path, 'supabase_backup_20260101_020000',
        [{'name': os.path.basename(path), 'role': 'database', 'tables': {'public.t': 3}}])
    with pytest.raises(BackupFileError, match="does not match its manifest's row counts"):
        BackupFile(path).verify()


@pytest.mark.parametrize('content,message', [
    (b'{not json', 'cannot read manifest'),
    (b'[]', 'not a JSON object'),
    (json.dumps({'format': 'other', 'parts': []}).encode(), 'not a %s manifest' % MANIFEST_FORMAT),
    (json.dumps({'format': MANIFEST_FORMAT, 'parts': [{'name': 'another.sql.gz'}]}).encode(), 'does not list'),
])
def test_malformed_v2_manifest_is_a_one_line_error(tmp_path, content, message):
    path, _sha256 = _dump(tmp_path, 'supabase_backup_20260101_020000')
    _make(tmp_path, 'supabase_backup_20260101_020000.manifest.json', content=content)
    with pytest.raises(BackupFileError, match=message) as error:
        BackupFile(path).verify()
    assert '\n' not in error.value.msg


def test_v1_manifest_still_read(tmp_path):
    path, sha256 = _dump(tmp_path, 'supabase_backup_20260101_020000')
    _make(tmp_path, os.path.basename(path) + '.manifest.json',
          content=json.dumps({'format': 'cortexreview.supabase_backup/dump-manifest/v1', 'file': 'x',
                              'sha256': sha256, 'tables': {'public.t': 2}}).encode())
    assert part_manifest(path)['format'].endswith('dump-manifest/v1')
    assert BackupFile(path).verify()['checksum_verified']
    _make(tmp_path, os.path.basename(path) + '.manifest.json',
          content=json.dumps({'sha256': sha256, 'tables': {'public.t': 1}}).encode())
    with pytest.raises(BackupFileError, match="row counts"):
        BackupFile(path).verify()


def test_contract_backup_without_any_sidecar_is_a_one_part_restore_point(tmp_path):
    path, sha256 = _dump(tmp_path, 'supabase_backup_20260101_020000')
    assert part_manifest(path) is None
    facts = BackupFile(path).verify()
    assert facts['sha256'] == sha256 and not facts['checksum_verified'] and facts['manifest'] is None
    point = LOGICAL.restore_point(str(tmp_path), 'supabase_backup_20260101_020000')
    assert point['parts'] == [path] and restore_point_files(point) == [path]
    # A file named otherwise (src) has no restore point, and no manifest is looked for.
    other = _make(tmp_path, 'backup.sql.gz', content=gzip.compress(DUMP))
    assert part_manifest(other) is None and BackupFile(other).verify()['manifest'] is None


# Restore points and retention

def test_restore_points_group_their_files_and_list_only_ours(tmp_path):
    old = _dump(tmp_path, 'supabase_backup_20200101_000000', 300)[0]
    for suffix in ('.sha256', '.manifest.json', '.validation.json', '.validation.txt'):
        _make(tmp_path, os.path.basename(old) + suffix, 300)
    old_manifest = _make(tmp_path, 'supabase_backup_20200101_000000.manifest.json', 300)
    new = _dump(tmp_path, 'supabase_backup_20200102_000000', 1)[0]
    foreign = _make(tmp_path, 'other_20200101_000000.sql.gz', 300)
    note = _make(tmp_path, 'supabase_backup_notes.txt', 300)
    orphan = _make(tmp_path, 'supabase_backup_20191231_000000.manifest.json', 300)
    loose = _make(tmp_path, 'supabase_backup_20200101_000000.sql.gz.bak', 300)
    outside = tmp_path.parent / ('outside-%d.sql.gz' % os.getpid())
    outside.write_bytes(b'precious')
    os.symlink(str(outside), str(tmp_path / 'supabase_backup_20200103_000000.sql.gz'))
    os.symlink(str(outside), str(tmp_path / 'supabase_backup_20200102_000000.sql.gz.validation.txt'))
    os.mkdir(str(tmp_path / 'supabase_backup_20200104_000000.sql.gz'))
    points = LOGICAL.restore_points(str(tmp_path))
    assert [point['stem'] for point in points] == ['supabase_backup_20200101_000000', 'supabase_backup_20200102_000000']
    assert points[0]['parts'] == [old] and points[0]['size'] == os.path.getsize(old)
    expired = select_expired(points, 90, 1, NOW)
    assert [point['stem'] for point in expired] == ['supabase_backup_20200101_000000']
    predicted = remove_restore_points(expired, check_mode=True)
    assert os.path.exists(old)
    removed = remove_restore_points(expired, check_mode=False)
    # Whole: manifests and sidecars first, the part last.
    assert removed == predicted == [old_manifest] + [old + suffix for suffix in (
        '.sha256', '.manifest.json', '.validation.json', '.validation.txt')] + [old]
    assert sorted(os.listdir(str(tmp_path))) == sorted([
        os.path.basename(path) for path in (new, foreign, note, orphan, loose)] + [
        'supabase_backup_20200103_000000.sql.gz', 'supabase_backup_20200102_000000.sql.gz.validation.txt',
        'supabase_backup_20200104_000000.sql.gz'])
    # The symlinked report of a kept point is not one of its files either.
    assert restore_point_files(points[1]) == [new]
    assert outside.read_bytes() == b'precious'
    outside.unlink()


def test_writer_retention_removes_whole_restore_points_plain_and_encrypted(tmp_path):
    for day, suffix in ((1, '.sql.gz'), (2, '.sql.gz.gpg'), (3, '.sql.gz')):
        stem = 'supabase_backup_2020010%d_000000' % day
        _make(tmp_path, stem + suffix, 400 - day)
        _make(tmp_path, stem + suffix + '.sha256', 400 - day)
        _make(tmp_path, stem + '.manifest.json', 400 - day)

    class Writer(BackupWriter):
        kind = LOGICAL

    options = {'backup_dir': str(tmp_path), 'retention_days': 90, 'retention_keep_min': 2}
    settings = OutputSettings(validate_config(dump_argument_spec(), options))
    settings.backup_dir = str(tmp_path)
    planned = Writer(settings, check_mode=True, clock=lambda: NOW).remove_expired(
        include_new=str(tmp_path / 'supabase_backup_20260101_000000.sql.gz'))
    # The new backup counts as one of the two kept: two old restore points go, whole.
    assert sorted(os.path.basename(path) for path in planned) == sorted(
        ['supabase_backup_20200101_000000.manifest.json', 'supabase_backup_20200101_000000.sql.gz.sha256',
         'supabase_backup_20200101_000000.sql.gz', 'supabase_backup_20200102_000000.manifest.json',
         'supabase_backup_20200102_000000.sql.gz.gpg.sha256', 'supabase_backup_20200102_000000.sql.gz.gpg'])
    assert len(os.listdir(str(tmp_path))) == 9
    removed = Writer(settings, clock=lambda: NOW).remove_expired()
    assert [os.path.basename(path) for path in removed] == [
        'supabase_backup_20200101_000000.manifest.json', 'supabase_backup_20200101_000000.sql.gz.sha256',
        'supabase_backup_20200101_000000.sql.gz']
    assert len(os.listdir(str(tmp_path))) == 6


def test_newest_is_by_the_timestamp_in_the_name(tmp_path):
    _make(tmp_path, 'supabase_backup_20260102_020000.sql.gz', 5)
    _make(tmp_path, 'supabase_backup_20260101_020000.sql.gz', 0)
    assert LOGICAL.newest(str(tmp_path))['stem'] == 'supabase_backup_20260102_020000'
    assert VOLUME.newest(str(tmp_path)) is None
    assert LOGICAL.newest(str(tmp_path / 'missing')) is None


# Selection: src, restore_point, the newest

def test_select_by_restore_point_src_or_newest(tmp_path):
    first = _make(tmp_path, 'supabase_backup_20260101_020000.sql.gz')
    second = _make(tmp_path, 'supabase_backup_20260102_020000.sql.gz.gpg')
    snapshot = _make(tmp_path, 'supabase-volume-20260101_020000.tar.gz')
    directory = str(tmp_path)
    assert LOGICAL.select(directory) == second
    assert LOGICAL.select(directory, restore_point='supabase_backup_20260101_020000') == first
    assert LOGICAL.select(directory, restore_point='supabase_backup_20260102_020000') == second
    assert LOGICAL.select(src='/elsewhere/x.sql.gz') == '/elsewhere/x.sql.gz'
    assert VOLUME.select(directory, restore_point='supabase-volume-20260101_020000') == snapshot
    nightly = _make(tmp_path, 'nightly_20260103_020000.sql.gz')
    assert kind_named('logical', 'nightly').select(directory, restore_point='nightly_20260103_020000') == nightly


@pytest.mark.parametrize('stem', ['supabase_backup_2026010_020000', 'supabase_backup_20260101_020000.sql.gz',
                                  '../supabase_backup_20260101_020000', 'nightly_20260101_020000',
                                  'supabase-volume-20260101_020000', '', 'supabase_backup_20260101_020000\n'])
def test_bad_restore_point_name_is_a_one_line_error(tmp_path, stem):
    _make(tmp_path, 'supabase_backup_20260101_020000.sql.gz')
    with pytest.raises(ConfigError) as error:
        LOGICAL.select(str(tmp_path), restore_point=stem)
    assert error.value.msg.startswith('restore_point %r is not a logical restore point name: give '
                                      'supabase_backup_YYYYMMDD_HHMMSS' % stem)
    assert '\n' not in error.value.msg.replace(repr(stem), '')


def test_missing_restore_point_and_conflicting_options(tmp_path):
    _make(tmp_path, 'supabase_backup_20260101_020000.sql.gz')
    # The stem's manifest alone is not a restore point: there is nothing to restore.
    _make(tmp_path, 'supabase_backup_20260102_020000.manifest.json')
    with pytest.raises(BackupFileError, match='no restore point supabase_backup_20260102_020000 in %s' % tmp_path):
        LOGICAL.select(str(tmp_path), restore_point='supabase_backup_20260102_020000')
    with pytest.raises(ConfigError, match='give src or restore_point, not both'):
        LOGICAL.select(str(tmp_path), src='/x.sql.gz', restore_point='supabase_backup_20260101_020000')
    with pytest.raises(ConfigError, match='give src, or backup_dir'):
        LOGICAL.select(restore_point='supabase_backup_20260101_020000')
    with pytest.raises(BackupFileError, match='no snapshot named supabase-volume-YYYYMMDD_HHMMSS.tar.gz'):
        VOLUME.select(str(tmp_path))
