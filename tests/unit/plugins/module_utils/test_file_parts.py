# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""File parts: option checks, the member rules that keep a restore inside its target, the part reader,
the host file restorer, tar's exit status, and the dump's db_config part through the fake engine."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _dump
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    BackupFileError,
    ConfigError,
    FilePartError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._file_components import FilePartOptions
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._file_parts import (
    FileRestorer,
    MemberRules,
    TarPart,
    UnsafeMemberError,
    absolute_paths,
    write_host_files,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import dump_argument_spec, validate_config
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._storage_files import (
    StorageLocation,
    create_argv,
    extract_argv,
    probe_archive,
    probe_survived,
    tar_create_warnings,
)
from ansible_collections.cortexreview.supabase_backup.tests.unit.fakes import (
    FakeDatabase,
    FakeDockerAPI,
    FakeServer,
    dump_text,
    install,
)

UID = os.getuid()
GID = os.getgid()


def tar_bytes(members):
    """members: (name, kind, payload); kind file/dir/symlink/hardlink/fifo/device; payload data or link target."""
    output = io.BytesIO()
    with tarfile.open(fileobj=output, mode='w', format=tarfile.PAX_FORMAT) as archive:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.uid, info.gid, info.mode = UID, GID, 0o640
            if kind == 'file':
                info.size = len(payload)
                archive.addfile(info, io.BytesIO(payload))
                continue
            info.type = {'dir': tarfile.DIRTYPE, 'symlink': tarfile.SYMTYPE, 'hardlink': tarfile.LNKTYPE,
                         'fifo': tarfile.FIFOTYPE, 'device': tarfile.CHRTYPE}[kind]
            if kind in ('symlink', 'hardlink'):
                info.linkname = payload
            archive.addfile(info)
    return output.getvalue()


def write_part(directory, data, name='supabase_backup_20260101_020000.deployment.tar.gz', facts=None,
               sidecar=True, manifest_sha=None):
    path = os.path.join(str(directory), name)
    with open(path, 'wb') as handle:
        handle.write(gzip.compress(data))
    digest = hashlib.sha256(open(path, 'rb').read()).hexdigest()
    if sidecar:
        with open(path + '.sha256', 'w', encoding='utf-8') as handle:
            handle.write('%s  %s\n' % (digest, name))
    elif os.path.exists(path + '.sha256'):
        os.unlink(path + '.sha256')
    entry = dict(facts or {}, name=name, sha256=manifest_sha or digest)
    with open(path + '.manifest.json', 'w', encoding='utf-8') as handle:
        json.dump(entry, handle)
    return path


# Options

def test_absolute_paths_are_normalised_and_checked():
    assert absolute_paths('x', ['/etc//a/', '/b/./c']) == ['/etc/a', '/b/c']
    assert absolute_paths('x', None) == []
    for bad, message in ((['relative'], 'must list absolute paths'), (['/a/../b'], 'must not contain ".."'),
                         (['/'], 'must name files, not /'), (['/a', '/a/'], 'names /a twice'),
                         ([5], 'must list absolute paths')):
        with pytest.raises(ConfigError, match=message):
            absolute_paths('x', bad)


def test_file_part_options_defaults_and_refusals():
    options = FilePartOptions({'container': 'db'})
    assert options.db_config_files == ['/etc/postgresql-custom/pgsodium_root.key']
    assert options.deployment_files == [] and options.storage is None
    assert FilePartOptions({'db_config_files': []}).db_config_files == []
    with pytest.raises(ConfigError, match='give storage_path or storage_volume, not both'):
        FilePartOptions({'storage_path': '/srv/storage', 'storage_volume': 'v'})
    with pytest.raises(ConfigError, match='storage_path must be an absolute path'):
        StorageLocation(path='volumes/storage')
    with pytest.raises(ConfigError, match='storage_path must name a directory below /'):
        StorageLocation(path='/')
    with pytest.raises(ConfigError, match='not a Docker volume name'):
        StorageLocation(volume='../x')
    with pytest.raises(BackupFileError, match='does not say where'):
        StorageLocation.from_manifest(None, 'p')
    assert StorageLocation.from_manifest({'volume': 'v'}, 'p').describe() == "storage volume 'v'"


def test_the_dump_spec_knows_the_file_options():
    params = validate_config(dump_argument_spec(), {'backup_dir': '/tmp/x', 'storage_path': '/srv/storage',
                                                    'deployment_files': ['/srv/.env']})
    assert params['db_config_files'] == ['/etc/postgresql-custom/pgsodium_root.key']
    assert params['deployment_files'] == ['/srv/.env'] and params['storage_path'] == '/srv/storage'


def test_tar_argv_keep_xattrs_and_numeric_owners():
    assert create_argv('/srv/s') == ['tar', '--create', '--file=-', '--format=posix', '--xattrs',
                                     '--xattrs-include=*', '--numeric-owner', '--directory', '/srv/s', '--', '.']
    assert extract_argv('/srv/s') == ['tar', '--extract', '--file=-', '--xattrs', '--xattrs-include=*',
                                      '--numeric-owner', '--same-permissions', '--same-owner', '--directory', '/srv/s']


# tar's exit status at backup

def test_tar_exit_status_at_backup():
    assert tar_create_warnings(0, '', 'storage') == []
    warnings = tar_create_warnings(1, 'tar: ./a: file changed as we read it\n', 'storage')
    assert len(warnings) == 1 and 'file changed as we read it' in warnings[0] and '1 file(s) changed' in warnings[0]
    with pytest.raises(FilePartError, match='cannot read storage: tar: ./b: Cannot open: Permission denied'):
        tar_create_warnings(2, 'tar: ./b: Cannot open: Permission denied\n'
                               'tar: Exiting with failure status due to previous errors\n', 'storage')
    # exit 1 for anything but a changed file is not accepted
    with pytest.raises(FilePartError, match='File shrank'):
        tar_create_warnings(1, 'tar: ./a: file changed as we read it\ntar: ./c: File shrank by 3 bytes; padding '
                               'with zeros\n', 'storage')
    with pytest.raises(FilePartError, match='tar exit 1'):
        tar_create_warnings(1, '', 'storage')


def test_probe_archive_round_trip_logic():
    data = probe_archive('.cortexreview-xattr-probe-x')
    assert probe_survived(data)
    stripped = io.BytesIO()
    with tarfile.open(fileobj=stripped, mode='w', format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo('.cortexreview-xattr-probe-x')
        info.size = 1
        archive.addfile(info, io.BytesIO(b'1'))
    assert not probe_survived(stripped.getvalue())
    assert not probe_survived(b'not a tar')


# Member rules: every refusal fires

@pytest.mark.parametrize('members, links, message', [
    ([('/etc/passwd', 'file', b'x')], True, 'leaves the target'),
    ([('a/../../etc/passwd', 'file', b'x')], True, 'leaves the target'),
    ([('link', 'symlink', '/etc')], True, 'symbolic link to an absolute path'),
    ([('d/link', 'symlink', '../../outside')], True, 'symbolic link that leaves the target'),
    ([('link', 'symlink', 'd'), ('link/x', 'file', b'x')], True, 'lies behind a symbolic link'),
    ([('hard', 'hardlink', '/etc/shadow')], True, 'hard link to something outside'),
    ([('hard', 'hardlink', 'not-in-archive')], True, 'hard link to something outside'),
    ([('fifo', 'fifo', None)], True, 'is a FIFO'),
    ([('dev', 'device', None)], True, 'is a device'),
    ([('link', 'symlink', 'x')], False, 'is a symbolic link, which this part never holds'),
    ([('.', 'file', b'x')], True, 'is the target itself but not a directory'),
])
def test_unsafe_members_are_refused(tmp_path, members, links, message):
    path = write_part(tmp_path, tar_bytes(members))
    with pytest.raises(BackupFileError, match=message) as caught:
        TarPart(path).verify(MemberRules(links=links))
    assert 'cannot be restored' in caught.value.msg


def test_safe_links_and_xattrs_are_counted(tmp_path):
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode='w', format=tarfile.PAX_FORMAT) as archive:
        for name in ('.', './d'):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o2751
            archive.addfile(info)
        info = tarfile.TarInfo('./d/object')
        info.size = 2
        info.pax_headers = {'SCHILY.xattr.user.supabase.etag': '"e"'}
        archive.addfile(info, io.BytesIO(b'ok'))
        for name, kind, target in (('./d/sym', tarfile.SYMTYPE, 'object'), ('./d/hard', tarfile.LNKTYPE, './d/object')):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            archive.addfile(info)
    rules = MemberRules(links=True, keep_paths=False)
    TarPart(write_part(tmp_path, data.getvalue())).verify(rules)
    assert (rules.file_count, rules.xattr_files, rules.root['mode']) == (1, 1, 0o2751)


def test_unsafe_member_error_is_a_backup_file_error():
    assert issubclass(UnsafeMemberError, BackupFileError)


# The part reader

def test_part_checksums(tmp_path):
    data = tar_bytes([('etc/x', 'file', b'x')])
    with pytest.raises(BackupFileError, match='neither a checksum file nor a manifest entry'):
        path = write_part(tmp_path, data, sidecar=False)
        os.unlink(path + '.manifest.json')
        TarPart(path).verify(MemberRules())
    path = write_part(tmp_path, data, manifest_sha='0' * 64)
    with pytest.raises(BackupFileError, match='its checksum file and its manifest disagree'):
        TarPart(path).verify(MemberRules())
    path = write_part(tmp_path, data, sidecar=False, manifest_sha='0' * 64)
    with pytest.raises(BackupFileError, match='does not match its checksum'):
        TarPart(path).verify(MemberRules())
    path = write_part(tmp_path, data[:700])
    with pytest.raises(BackupFileError, match='truncated'):
        TarPart(path).verify(MemberRules())


# Host files: written and restored

def test_host_files_round_trip_with_owner_and_mode(tmp_path):
    config = tmp_path / 'deploy'
    config.mkdir()
    env = config / '.env'
    env.write_bytes(b'POSTGRES_PASSWORD=secret\n')
    os.chmod(env, 0o600)
    os.symlink('.env', config / 'env-link')
    sink = MemorySink()
    written, missing = write_host_files(sink, [str(env), str(config / 'env-link')], missing_ok=False)
    assert written == [str(env), str(config / 'env-link')] and missing == []
    path = write_part(tmp_path, sink.data(), facts={'paths': written})
    env.write_bytes(b'POSTGRES_PASSWORD=new\n')
    os.chmod(env, 0o644)
    os.unlink(config / 'env-link')
    restorer = FileRestorer(TarPart(path), [])
    assert restorer.check() == written
    assert restorer.restore() == {'files': written}
    assert env.read_bytes() == b'POSTGRES_PASSWORD=secret\n' and os.stat(env).st_mode & 0o7777 == 0o600
    # the link came back as the file it pointed to, as it was read
    assert not os.path.islink(config / 'env-link') and (config / 'env-link').read_bytes() == env.read_bytes()
    assert sorted(os.listdir(config)) == ['.env', 'env-link']


def test_missing_deployment_file_is_an_error_and_a_fifo_is_refused(tmp_path):
    with pytest.raises(FilePartError, match='does not exist'):
        write_host_files(MemorySink(), [str(tmp_path / 'missing')], missing_ok=False)
    assert write_host_files(MemorySink(), [str(tmp_path / 'missing')], missing_ok=True) == ([], [str(tmp_path / 'missing')])
    os.mkfifo(tmp_path / 'fifo')
    with pytest.raises(FilePartError, match='is not a regular file'):
        write_host_files(MemorySink(), [str(tmp_path / 'fifo')], missing_ok=False)
    with pytest.raises(FilePartError, match='is not a regular file'):
        write_host_files(MemorySink(), [str(tmp_path)], missing_ok=False)


def test_file_restore_refusals_change_nothing(tmp_path):
    target = tmp_path / 'app.env'
    target.write_bytes(b'live')
    data = tar_bytes([(str(target).lstrip('/'), 'file', b'from the backup')])
    # the manifest lists other files than the part holds
    path = write_part(tmp_path, data, facts={'paths': ['/somewhere/else']})
    with pytest.raises(BackupFileError, match='does not hold the files its manifest lists'):
        FileRestorer(TarPart(path), []).check()
    # a directory of the archive
    path = write_part(tmp_path, tar_bytes([('srv', 'dir', None)]))
    with pytest.raises(BackupFileError, match='holds directories'):
        FileRestorer(TarPart(path), []).check()
    # a target directory that does not exist
    path = write_part(tmp_path, tar_bytes([(str(tmp_path / 'gone' / 'x').lstrip('/'), 'file', b'x')]))
    with pytest.raises(FilePartError, match='directory .*gone does not exist'):
        FileRestorer(TarPart(path), []).check()
    # the part replaced between the check and the restore: nothing staged stays, nothing changes
    path = write_part(tmp_path, data)
    restorer = FileRestorer(TarPart(path), [])
    restorer.check()
    write_part(tmp_path, tar_bytes([(str(target).lstrip('/'), 'file', b'another backup')]))
    with pytest.raises(BackupFileError, match='changed while it was being restored'):
        restorer.restore()
    assert target.read_bytes() == b'live' and os.listdir(tmp_path).count('app.env') == 1
    assert not [name for name in os.listdir(tmp_path) if name.startswith('.cortexreview-staged-')]


class MemorySink:
    def __init__(self):
        self._buffer = io.BytesIO()
        self.facts = {}

    def write(self, data):
        self._buffer.write(data)

    def data(self):
        return self._buffer.getvalue()


# The dump's db_config part, through the fake engine

def _dump_params(backup_dir, **overrides):
    params = validate_config(dump_argument_spec(), dict({'backup_dir': str(backup_dir), 'container': 'fake-db',
                                                         'extra_databases': [], 'globals': False}, **overrides))
    return params


def fake_server():
    server = FakeServer({'postgres': FakeDatabase()})
    server.dump = ([dump_text({'public.t': 1}).encode()], 0, '')
    return server


def _run_dump(monkeypatch, backup_dir, server, docker, **overrides):
    install(monkeypatch, server, docker)
    backend = _dump.DumpBackend.from_params(_dump_params(backup_dir, **overrides))
    return backend, backend.run()


def test_dump_takes_the_root_key_from_the_container(monkeypatch, tmp_path):
    server = fake_server()
    docker = FakeDockerAPI()
    docker.archives['/etc/postgresql-custom/pgsodium_root.key'] = tar_bytes([('pgsodium_root.key', 'file', b'k' * 64)])
    backend, result = _run_dump(monkeypatch, tmp_path, server, docker)
    assert result['not_found'] == [] and backend.warnings == []
    part = [entry for entry in result['parts'] if entry['role'] == 'db_config'][0]
    assert part['name'] == result['restore_point'] + '.db-config.tar.gz'
    with open(os.path.join(str(tmp_path), result['restore_point'] + '.manifest.json'), encoding='utf-8') as handle:
        entry = [item for item in json.load(handle)['parts'] if item['role'] == 'db_config'][0]
    assert entry['paths'] == ['/etc/postgresql-custom/pgsodium_root.key'] and entry['files'] == 1
    with tarfile.open(os.path.join(str(tmp_path), part['name'])) as archive:
        member = archive.getmember('etc/postgresql-custom/pgsodium_root.key')
        assert archive.extractfile(member).read() == b'k' * 64 and member.mode == 0o640


def test_a_missing_root_key_warns_only_where_vault_is_used(monkeypatch, tmp_path):
    server = fake_server()
    backend, result = _run_dump(monkeypatch, tmp_path / 'plain', server, FakeDockerAPI())
    assert backend.warnings == [] and [entry['role'] for entry in result['parts']] == ['database']
    server.key_schemas = ['vault']
    backend, result = _run_dump(monkeypatch, tmp_path / 'vault', server, FakeDockerAPI())
    assert result['not_found'] == [{'component': 'db_config', 'what': '/etc/postgresql-custom/pgsodium_root.key'}]
    assert len(backend.warnings) == 1 and 'pgsodium_root.key was not found' in backend.warnings[0]


def test_a_missing_deployment_file_fails_the_run_and_leaves_nothing(monkeypatch, tmp_path):
    backup_dir = tmp_path / 'backups'
    with pytest.raises(FilePartError, match='does not exist'):
        _run_dump(monkeypatch, backup_dir, fake_server(), FakeDockerAPI(),
                  deployment_files=[str(tmp_path / 'missing.env')])
    assert os.listdir(backup_dir) == []


def test_check_mode_predicts_the_file_parts_and_writes_nothing(monkeypatch, tmp_path):
    env = tmp_path / '.env'
    env.write_bytes(b'X=1\n')
    storage = tmp_path / 'storage'
    storage.mkdir()
    docker = FakeDockerAPI()
    docker.archives['/etc/postgresql-custom/pgsodium_root.key'] = tar_bytes([('pgsodium_root.key', 'file', b'k')])
    install(monkeypatch, fake_server(), docker)
    params = _dump_params(tmp_path / 'backups', deployment_files=[str(env)], storage_path=str(storage),
                          db_config_files=['/etc/postgresql-custom/pgsodium_root.key', '/etc/missing'])
    plan = _dump.DumpBackend.from_params(params, check_mode=True).run()
    stem = os.path.basename(plan['path'])[:-len('.sql.gz')]
    assert [(part['name'][len(stem):], part['role']) for part in plan['parts']] == [
        ('.sql.gz', 'database'), ('.db-config.tar.gz', 'db_config'), ('.deployment.tar.gz', 'deployment'),
        ('.storage.tar.gz', 'storage')]
    assert plan['not_found'] == [{'component': 'db_config', 'what': '/etc/missing'}]
    assert not os.path.exists(tmp_path / 'backups') and os.listdir(storage) == []
    # what would fail the run fails the plan
    params['storage_path'] = str(tmp_path / 'nowhere')
    with pytest.raises(ConfigError, match='storage_path .*nowhere does not exist'):
        _dump.DumpBackend.from_params(params, check_mode=True).run()
