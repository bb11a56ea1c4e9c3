# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""File parts on the real engine and real filesystems: Storage's objects through a host directory and
a Docker volume (xattrs, owners, modes), refusals of places without user xattrs, restores failing
half-way that put the previous contents back, DB config files into a private DB container."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid

import pytest

import testbed
from file_part_helpers import PartSink, populate_storage, tree

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._docker import docker_client
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    BackupFileError,
    ConfigError,
    FilePartError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._file_parts import (
    ContainerConfigRestorer,
    TarPart,
    write_container_files,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._storage_files import (
    StorageLocation,
    StorageRestorer,
    write_storage,
)

IMAGE = 'cortexreview/supabase-db:test'
ASIDE = '.cortexreview-restore-'


@pytest.fixture(scope='module')
def api():
    if not testbed.docker_available():
        pytest.fail('Docker daemon not reachable: the file-part tests need it')
    return docker_client()


@pytest.fixture
def scratch():
    path = tempfile.mkdtemp(prefix='cortexreview-fileparts-')
    try:
        yield path
    finally:
        for mount in reversed(_mounts_below(path)):
            subprocess.run(['umount', '-l', mount], check=False)
        shutil.rmtree(path, ignore_errors=True)


def _mounts_below(path):
    with open('/proc/self/mounts', encoding='utf-8') as handle:
        return [line.split()[1] for line in handle if line.split()[1].startswith(path + '/')]


def _mount(fstype, target, options=None):
    os.makedirs(target, exist_ok=True)
    argv = ['mount', '-t', fstype] + (['-o', options] if options else []) + [fstype, target]
    subprocess.run(argv, check=True)
    return target


@pytest.fixture
def helper_image_container(api):
    """A running container from the DB image (the DB container whose image the helpers borrow)."""
    name = 'cortexreview-fileparts-db-%s' % uuid.uuid4().hex[:8]
    created = api.create_container(IMAGE, entrypoint=['tail', '-f', '/dev/null'], name=name, user='0:0')
    api.start(created['Id'])
    try:
        yield name
    finally:
        api.remove_container(created['Id'], force=True)


@contextlib.contextmanager
def bound_volume(api, directory):
    """A named Docker volume whose contents are ``directory`` (local driver, bind), to look inside it."""
    name = 'cortexreview-fileparts-%s' % uuid.uuid4().hex[:8]
    api.create_volume(name, driver='local', driver_opts={'type': 'none', 'o': 'bind', 'device': directory})
    try:
        yield name
    finally:
        api.remove_volume(name, force=True)


def _backup(storage_dir, part_path, **kwargs):
    sink = PartSink(part_path)
    warnings = []
    location = kwargs.pop('location', None) or StorageLocation(path=storage_dir)
    write_storage(sink, location, warnings=warnings, **kwargs)
    sink.close()
    return sink, warnings


def _no_helpers_left(api):
    return [c['Names'] for c in api.containers(all=True, filters={'label': 'org.cortexreview.supabase_backup.volume-helper'})]


# Storage in a host directory

def test_host_storage_round_trip_keeps_xattrs_owners_modes(scratch):
    storage = os.path.join(scratch, 'storage')
    os.mkdir(storage)
    populate_storage(storage)
    before = tree(storage)
    part = os.path.join(scratch, 'supabase_backup_20260101_020000.storage.tar.gz')
    sink, warnings = _backup(storage, part)
    assert warnings == []
    assert sink.facts == {'source': {'path': storage}, 'files': 3, 'xattr_files': 3}
    assert not [name for name in os.listdir(storage) if name.startswith('.cortexreview')]  # the probe is gone

    # wipe: objects removed, changed, added; the root's mode changed
    shutil.rmtree(os.path.join(storage, 'stub', 'stub', 'avatars', 'folder'))
    with open(os.path.join(storage, 'stub', 'stub', 'avatars', 'a.png'), 'wb') as handle:
        handle.write(b'overwritten')
    with open(os.path.join(storage, 'new-object'), 'wb') as handle:
        handle.write(b'not in the backup')
    os.chmod(storage, 0o700)
    assert tree(storage) != before

    warnings = []
    restorer = StorageRestorer(TarPart(part), warnings)  # target: where it came from (the manifest)
    assert restorer.check() == {'target': {'path': storage}, 'files': 3, 'xattr_files': 3}
    result = restorer.restore()
    assert result['previous_contents'] == 'deleted' and result['stopped'] == []
    assert warnings == []
    assert tree(storage) == before


def test_host_storage_restore_into_missing_directory(scratch):
    storage = os.path.join(scratch, 'storage')
    os.mkdir(storage)
    populate_storage(storage)
    before = tree(storage)
    part = os.path.join(scratch, 'supabase_backup_20260101_020000.storage.tar.gz')
    _backup(storage, part)
    fresh = os.path.join(scratch, 'fresh', 'storage')
    os.mkdir(os.path.dirname(fresh))
    restorer = StorageRestorer(TarPart(part), [], location=StorageLocation(path=fresh))
    restorer.check()
    assert not os.path.exists(fresh)  # the check changes nothing
    restorer.restore()
    assert tree(fresh) == before


def test_storage_without_user_xattrs_is_refused_at_backup(scratch):
    storage = _mount('ramfs', os.path.join(scratch, 'ramfs'))
    with open(os.path.join(storage, 'object'), 'wb') as handle:
        handle.write(b'data')
    part = os.path.join(scratch, 'supabase_backup_20260101_020000.storage.tar.gz')
    with pytest.raises(ConfigError, match='does not support user.* extended attributes'):
        _backup(storage, part)
    assert os.listdir(storage) == ['object']


def test_restore_target_without_user_xattrs_is_refused_and_untouched(scratch):
    storage = os.path.join(scratch, 'storage')
    os.mkdir(storage)
    populate_storage(storage)
    part = os.path.join(scratch, 'supabase_backup_20260101_020000.storage.tar.gz')
    _backup(storage, part)
    target = _mount('ramfs', os.path.join(scratch, 'ramfs'))
    with open(os.path.join(target, 'previous'), 'wb') as handle:
        handle.write(b'previous contents')
    before = tree(target)
    restorer = StorageRestorer(TarPart(part), [], location=StorageLocation(path=target))
    with pytest.raises(ConfigError, match='does not support user.* extended attributes'):
        restorer.check()
    assert tree(target) == before


def test_host_restore_failing_half_way_puts_previous_contents_back(scratch):
    storage = os.path.join(scratch, 'storage')
    os.mkdir(storage)
    populate_storage(storage)
    with open(os.path.join(storage, 'big'), 'wb') as handle:
        handle.write(os.urandom(3 << 20))
    part = os.path.join(scratch, 'supabase_backup_20260101_020000.storage.tar.gz')
    _backup(storage, part)
    # A small filesystem (user xattrs: yes) that holds the previous contents but not the backup.
    target = _mount('tmpfs', os.path.join(scratch, 'small'), 'size=2m')
    os.makedirs(os.path.join(target, 'previous', 'dir'))
    with open(os.path.join(target, 'previous', 'dir', 'object'), 'wb') as handle:
        handle.write(os.urandom(500_000))
    os.setxattr(os.path.join(target, 'previous', 'dir', 'object'), 'user.supabase.etag', b'"prev"')
    os.chmod(target, 0o711)
    before = tree(target)
    warnings = []
    restorer = StorageRestorer(TarPart(part), warnings, location=StorageLocation(path=target))
    restorer.check()
    with pytest.raises(FilePartError) as failure:
        restorer.restore()
    assert failure.value.msg.startswith('restoring Storage failed and its previous contents were put back: cannot '
                                        'write storage directory')
    assert re.search('No space left on device|Wrote only', failure.value.msg)
    assert failure.value.details['rolled_back'] is True
    assert tree(target) == before
    assert not [name for name in os.listdir(target) if name.startswith(ASIDE)]


def test_storage_part_changed_after_its_check_is_rolled_back(scratch):
    storage = os.path.join(scratch, 'storage')
    os.mkdir(storage)
    populate_storage(storage)
    part = os.path.join(scratch, 'supabase_backup_20260101_020000.storage.tar.gz')
    _backup(storage, part)
    other = os.path.join(scratch, 'other')
    os.mkdir(other)
    with open(os.path.join(other, 'x'), 'wb') as handle:
        handle.write(b'another backup')
    target = os.path.join(scratch, 'target')
    os.mkdir(target)
    with open(os.path.join(target, 'previous'), 'wb') as handle:
        handle.write(b'previous contents')
    before = tree(target)
    restorer = StorageRestorer(TarPart(part), [], location=StorageLocation(path=target))
    restorer.check()
    # The part is replaced between the check and the restore (a valid tar, another checksum).
    _backup(other, part)
    with pytest.raises(BackupFileError) as failure:
        restorer.restore()
    assert failure.value.msg == ('restoring Storage failed and its previous contents were put back: backup part '
                                 'supabase_backup_20260101_020000.storage.tar.gz changed while it was being restored')
    assert failure.value.details['rolled_back'] is True
    assert tree(target) == before


def test_truncated_storage_part_is_refused_before_anything_changes(scratch):
    storage = os.path.join(scratch, 'storage')
    os.mkdir(storage)
    populate_storage(storage)
    part = os.path.join(scratch, 'supabase_backup_20260101_020000.storage.tar.gz')
    _backup(storage, part)
    with open(part, 'r+b') as handle:
        handle.truncate(os.path.getsize(part) // 2)
    before = tree(storage)
    with pytest.raises(Exception, match='truncated|does not match'):
        StorageRestorer(TarPart(part), []).check()
    assert tree(storage) == before


def test_storage_container_is_stopped_and_started_again(scratch, api, helper_image_container):
    storage = os.path.join(scratch, 'storage')
    os.mkdir(storage)
    populate_storage(storage)
    part = os.path.join(scratch, 'supabase_backup_20260101_020000.storage.tar.gz')
    _backup(storage, part)
    started_before = api.inspect_container(helper_image_container)['State']['StartedAt']
    restorer = StorageRestorer(TarPart(part), [], api=api, storage_container=helper_image_container,
                               stop_timeout=1)
    restorer.check()
    result = restorer.restore()
    assert result['stopped'] == [helper_image_container] == result['started']
    state = api.inspect_container(helper_image_container)['State']
    assert state['Running'] and state['StartedAt'] != started_before

    # and on failure too: a target that cannot take the backup
    target = _mount('tmpfs', os.path.join(scratch, 'small'), 'size=64k')
    with open(os.path.join(storage, 'big'), 'wb') as handle:
        handle.write(os.urandom(1 << 20))
    _backup(storage, part)
    started_before = state['StartedAt']
    restorer = StorageRestorer(TarPart(part), [], location=StorageLocation(path=target), api=api,
                               storage_container=helper_image_container, stop_timeout=1)
    restorer.check()
    with pytest.raises(FilePartError) as failure:
        restorer.restore()
    assert 'previous contents were put back' in failure.value.msg
    state = api.inspect_container(helper_image_container)['State']
    assert state['Running'] and state['StartedAt'] != started_before


# Storage in a Docker volume

def test_volume_storage_round_trip_keeps_xattrs_owners_modes(scratch, api, helper_image_container):
    storage = os.path.join(scratch, 'volume')
    os.mkdir(storage)
    populate_storage(storage)
    before = tree(storage)
    part = os.path.join(scratch, 'supabase_backup_20260101_020000.storage.tar.gz')
    with bound_volume(api, storage) as volume:
        location = StorageLocation(volume=volume)
        sink, warnings = _backup(None, part, location=location, api=api, db_container=helper_image_container)
        assert warnings == []
        assert sink.facts == {'source': {'volume': volume}, 'files': 3, 'xattr_files': 3}
        assert not [name for name in os.listdir(storage) if name.startswith('.cortexreview')]
        shutil.rmtree(os.path.join(storage, 'stub'))
        with open(os.path.join(storage, 'new-object'), 'wb') as handle:
            handle.write(b'not in the backup')
        warnings = []
        restorer = StorageRestorer(TarPart(part), warnings, api=api, db_container=helper_image_container)
        assert restorer.check()['target'] == {'volume': volume}
        result = restorer.restore()
        assert result['previous_contents'] == 'deleted' and warnings == []
    assert tree(storage) == before
    assert _no_helpers_left(api) == []


def test_volume_without_user_xattrs_is_refused(scratch, api, helper_image_container):
    storage = os.path.join(scratch, 'storage')
    os.mkdir(storage)
    populate_storage(storage)
    part = os.path.join(scratch, 'supabase_backup_20260101_020000.storage.tar.gz')
    _backup(storage, part)
    name = 'cortexreview-fileparts-ramfs-%s' % uuid.uuid4().hex[:8]
    api.create_volume(name, driver='local', driver_opts={'type': 'ramfs', 'device': 'ramfs'})
    try:
        with pytest.raises(ConfigError, match="storage volume '%s' does not support user" % name):
            _backup(None, os.path.join(scratch, 'other.tar.gz'), location=StorageLocation(volume=name), api=api,
                    db_container=helper_image_container)
        restorer = StorageRestorer(TarPart(part), [], location=StorageLocation(volume=name), api=api,
                                   db_container=helper_image_container)
        with pytest.raises(ConfigError, match='does not support user'):
            restorer.check()
    finally:
        api.remove_volume(name, force=True)
    assert _no_helpers_left(api) == []


def test_volume_restore_failing_half_way_puts_previous_contents_back(scratch, api, helper_image_container):
    storage = os.path.join(scratch, 'storage')
    os.mkdir(storage)
    populate_storage(storage)
    with open(os.path.join(storage, 'big'), 'wb') as handle:
        handle.write(os.urandom(3 << 20))
    part = os.path.join(scratch, 'supabase_backup_20260101_020000.storage.tar.gz')
    _backup(storage, part)
    small = _mount('tmpfs', os.path.join(scratch, 'small'), 'size=2m')
    os.makedirs(os.path.join(small, 'previous'))
    with open(os.path.join(small, 'previous', 'object'), 'wb') as handle:
        handle.write(os.urandom(400_000))
    os.setxattr(os.path.join(small, 'previous', 'object'), 'user.supabase.etag', b'"prev"')
    before = tree(small)
    with bound_volume(api, small) as volume:
        restorer = StorageRestorer(TarPart(part), [], location=StorageLocation(volume=volume), api=api,
                                   db_container=helper_image_container)
        restorer.check()
        with pytest.raises(FilePartError) as failure:
            restorer.restore()
    assert 'previous contents were put back' in failure.value.msg
    assert re.search('No space left on device|Wrote only', failure.value.msg)
    assert tree(small) == before
    assert _no_helpers_left(api) == []


def test_storage_volume_needs_the_db_container(scratch):
    with pytest.raises(ConfigError, match='storage_volume needs container'):
        _backup(None, os.path.join(scratch, 'x.tar.gz'), location=StorageLocation(volume='anything'))


# DB config files

@pytest.fixture(scope='module')
def private_stack(make_stack):
    """A DB container of our own: its restart disturbs no other test."""
    return make_stack('fileparts')


def test_db_config_files_into_a_private_db_container(private_stack, scratch, api):
    db = private_stack.db_container
    key = '/etc/postgresql-custom/pgsodium_root.key'
    secret = os.urandom(32).hex()
    _exec(api, db, ['mkdir', '-p', '/etc/postgresql-custom'])
    _exec(api, db, ['sh', '-c', 'printf %s "$0" > /etc/postgresql-custom/pgsodium_root.key', secret])
    _exec(api, db, ['chown', '999:999', key])
    _exec(api, db, ['chmod', '0640', key])
    part = os.path.join(scratch, 'supabase_backup_20260101_020000.db-config.tar.gz')
    sink = PartSink(part)
    written, not_found = write_container_files(sink, api, db, [key, '/etc/postgresql-custom/missing.conf'])
    sink.facts.update(paths=written, files=len(written))
    sink.close()
    assert written == [key] and not_found == ['/etc/postgresql-custom/missing.conf']

    # a new key (a fresh stack regenerates it), another owner and mode
    _exec(api, db, ['sh', '-c', 'echo other-key > /etc/postgresql-custom/pgsodium_root.key'])
    _exec(api, db, ['chown', '0:0', key])
    _exec(api, db, ['chmod', '0644', key])
    started_before = api.inspect_container(db)['State']['StartedAt']
    warnings = []
    restorer = ContainerConfigRestorer(TarPart(part), warnings, api, db, stop_timeout=10, ready_timeout=60)
    assert restorer.check() == [key]
    result = restorer.restore()
    assert result == {'files': [key], 'restarted': [db]}
    assert _exec(api, db, ['cat', key]) == secret
    assert _exec(api, db, ['stat', '-c', '%u:%g %a', key]) == '999:999 640'
    assert _exec(api, db, ['ls', '-A', '/etc/postgresql-custom']) == 'pgsodium_root.key'  # nothing staged left
    assert api.inspect_container(db)['State']['StartedAt'] != started_before
    assert _exec(api, db, ['pg_isready', '-U', 'postgres']).endswith('accepting connections')
    assert warnings == []


def test_db_config_restore_refuses_a_missing_directory_before_anything_changes(private_stack, scratch, api):
    db = private_stack.db_container
    _exec(api, db, ['mkdir', '-p', '/etc/cortexreview-fileparts-test'])
    _exec(api, db, ['sh', '-c', 'echo x > /etc/cortexreview-fileparts-test/file'])
    part = os.path.join(scratch, 'supabase_backup_20260101_020000.db-config.tar.gz')
    sink = PartSink(part)
    written, _missing = write_container_files(sink, api, db, ['/etc/cortexreview-fileparts-test/file'])
    sink.facts.update(paths=written)
    sink.close()
    _exec(api, db, ['rm', '-rf', '/etc/cortexreview-fileparts-test'])
    started_before = api.inspect_container(db)['State']['StartedAt']
    restorer = ContainerConfigRestorer(TarPart(part), [], api, db, stop_timeout=10, ready_timeout=60)
    with pytest.raises(FilePartError, match='cannot find directory /etc/cortexreview-fileparts-test in container'):
        restorer.check()
    assert api.inspect_container(db)['State']['StartedAt'] == started_before


def _exec(api, container, argv):
    exec_id = api.exec_create(container, argv, user='0')['Id']
    output = api.exec_start(exec_id).decode()
    assert api.exec_inspect(exec_id)['ExitCode'] == 0, output
    return output.strip()


# Through the modules: one restore point with every file part, restored by components

def test_modules_back_up_and_restore_every_file_part(private_stack, scratch, api, run_module):
    db = private_stack.db_container
    key = '/etc/postgresql-custom/pgsodium_root.key'
    secret = os.urandom(32).hex()
    _exec(api, db, ['mkdir', '-p', '/etc/postgresql-custom'])
    _exec(api, db, ['sh', '-c', 'printf %s "$0" > /etc/postgresql-custom/pgsodium_root.key', secret])
    _exec(api, db, ['chown', '999:999', key])
    _exec(api, db, ['chmod', '0600', key])
    storage = os.path.join(scratch, 'project', 'volumes', 'storage')
    os.makedirs(storage)
    populate_storage(storage)
    env = os.path.join(scratch, 'project', '.env')
    with open(env, 'w', encoding='utf-8') as handle:
        handle.write('POSTGRES_PASSWORD=from-the-backup\n')
    os.chmod(env, 0o600)
    os.chown(env, 1000, 1000)
    backup_dir = os.path.join(scratch, 'backups')
    common = {'container': db}
    dump = run_module('cortexreview.supabase_backup.supabase_dump', dict(
        common, backup_dir=backup_dir, extra_databases=[], globals=False, deployment_files=[env],
        storage_path=storage))
    assert not dump.get('failed'), dump.get('msg')
    stem = dump['restore_point']
    assert [(part['name'][len(stem):], part['role']) for part in dump['parts']] == [
        ('.sql.gz', 'database'), ('.db-config.tar.gz', 'db_config'), ('.deployment.tar.gz', 'deployment'),
        ('.storage.tar.gz', 'storage')]
    assert dump['not_found'] == [] and not dump.get('warnings')
    for name in os.listdir(backup_dir):
        assert os.stat(os.path.join(backup_dir, name)).st_mode & 0o777 == 0o600, name
    with open(os.path.join(backup_dir, stem + '.manifest.json'), encoding='utf-8') as handle:
        manifest = json.load(handle)
    storage_entry = [part for part in manifest['parts'] if part['role'] == 'storage'][0]
    assert storage_entry['source'] == {'path': storage} and storage_entry['files'] == 3

    before = tree(storage)
    # A fresh host's state: new key, new .env, empty storage.
    _exec(api, db, ['sh', '-c', 'echo new-key > /etc/postgresql-custom/pgsodium_root.key'])
    with open(env, 'w', encoding='utf-8') as handle:
        handle.write('POSTGRES_PASSWORD=new\n')
    os.chmod(env, 0o644)
    shutil.rmtree(storage)
    os.mkdir(storage)
    restore = dict(common, backup_dir=backup_dir, restore_point=stem, confirm=True,
                   components=['db_config', 'deployment', 'storage'],
                   stop_containers=list(private_stack.app_containers))
    plan = run_module('cortexreview.supabase_backup.supabase_restore', restore, check=True)
    assert not plan.get('failed'), plan.get('msg')
    assert plan['components'] == ['db_config', 'deployment', 'storage']
    assert plan['files']['deployment'] == {'part': stem + '.deployment.tar.gz', 'would_restore': [env]}
    assert os.listdir(storage) == [] and _exec(api, db, ['cat', key]) == 'new-key'  # check mode changed nothing
    started_before = api.inspect_container(db)['State']['StartedAt']
    result = run_module('cortexreview.supabase_backup.supabase_restore', restore)
    assert not result.get('failed'), result.get('msg')
    assert result['files']['db_config']['restarted'] == [db]
    assert _exec(api, db, ['cat', key]) == secret
    assert _exec(api, db, ['stat', '-c', '%u:%g %a', key]) == '999:999 600'
    assert api.inspect_container(db)['State']['StartedAt'] != started_before
    with open(env, encoding='utf-8') as handle:
        assert handle.read() == 'POSTGRES_PASSWORD=from-the-backup\n'
    assert (os.stat(env).st_mode & 0o777, os.stat(env).st_uid) == (0o600, 1000)
    assert tree(storage) == before

    # An altered part is refused before anything changes, naming it.
    part = os.path.join(backup_dir, stem + '.storage.tar.gz')
    with open(part, 'r+b') as handle:
        handle.seek(100)
        handle.write(b'\0altered\0')
    shutil.rmtree(os.path.join(storage, 'stub'))
    after_damage = tree(storage)
    refused = run_module('cortexreview.supabase_backup.supabase_restore', restore)
    assert refused.get('failed') and stem + '.storage.tar.gz' in refused['msg']
    assert tree(storage) == after_damage and _exec(api, db, ['cat', key]) == secret
