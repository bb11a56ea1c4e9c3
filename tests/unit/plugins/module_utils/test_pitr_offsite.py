# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure parts of the archive's off-site copy: which remote copies retention removes, which WAL a fetch takes."""

from __future__ import annotations

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import BackupFileError
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._offsite import OffsiteSettings
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._pitr_offsite import (
    _ChunkReader,
    _parse_entry,
    _wanted_wal,
    expired_remote_copies,
    sub_remote,
)

ENTRIES = [{'name': 'pitr-base-20261120_020000', 'start_wal': '000000010000000000000005'},
           {'name': 'pitr-base-20261127_020000', 'start_wal': '000000020000000000000009'}]


def listing(*names):
    return {name: {'size': 1, 'hashes': {}} for name in names}


def test_retention_removes_older_bases_entry_first_and_the_wal_before_the_oldest_start():
    base = listing('pitr-base-20261113_020000.tar.gz.gpg', 'pitr-base-20261113_020000.json',
                   'pitr-base-20261120_020000.tar.gz.gpg', 'pitr-base-20261120_020000.json', 'unrelated.txt')
    wal = listing('000000010000000000000004.gz.gpg', '000000010000000000000005.gz.gpg',
                  '000000010000000000000003.partial.gz.gpg', '00000002.history.gz.gpg')
    assert expired_remote_copies(ENTRIES, wal, base) == [
        'base/pitr-base-20261113_020000.json', 'base/pitr-base-20261113_020000.tar.gz.gpg',
        'wal/000000010000000000000004.gz.gpg']


def test_retention_removes_nothing_without_a_catalog():
    assert expired_remote_copies([], listing('000000010000000000000001.gz.gpg'),
                                 listing('pitr-base-20261113_020000.json')) == []


@pytest.mark.parametrize('name, wanted', [
    ('00000002.history', True),
    ('000000010000000000000004', False),
    ('000000010000000000000005', True),
    ('000000020000000000000006.partial', True),
    ('000000010000000000000004.partial', False),
    ('000000020000000000000006', True),
    ('000000000000000000000009', False),
    ('.000000010000000000000007.tmp', False),
])
def test_a_fetch_takes_history_files_and_wal_from_the_chains_start(name, wanted):
    assert _wanted_wal(name, '000000010000000000000005') is wanted


def test_a_fetch_leaves_an_earlier_timeline_past_the_chains_start():
    assert _wanted_wal('000000010000000000000009', '000000020000000000000005') is False
    assert _wanted_wal('000000020000000000000009', '000000020000000000000005') is True


def test_remote_paths_below_the_configured_one():
    settings = OffsiteSettings()
    settings.remote = 's3test:bucket/db1/'
    assert sub_remote(settings, 'pitr/wal').remote == 's3test:bucket/db1/pitr/wal'
    settings.remote = 'local:'
    assert sub_remote(settings, 'pitr/base').remote == 'local:pitr/base'
    assert settings.remote == 'local:'


def test_chunk_reader_reads_across_chunks_and_to_the_end():
    reader = _ChunkReader(iter([b'abc', b'', b'defg', b'h']))
    assert reader.read(2) == b'ab'
    assert reader.read(4) == b'cdef'
    assert reader.read(-1) == b'gh'
    assert reader.read(3) == b''


def test_a_remote_entry_must_be_a_valid_catalog_entry_of_its_name():
    with pytest.raises(BackupFileError, match='not valid'):
        _parse_entry('{"name": "pitr-base-20261120_020000"}', 'pitr-base-20261120_020000')
    with pytest.raises(BackupFileError, match='not valid'):
        _parse_entry('not json', 'pitr-base-20261120_020000')


def test_a_fetch_without_room_is_refused_before_anything_is_downloaded(monkeypatch, tmp_path):
    from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _offsite
    from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import StorageError

    class Full:
        f_bavail, f_frsize = 10, 4096

    monkeypatch.setattr(_offsite.os, 'statvfs', lambda path: Full)
    _offsite.require_room(str(tmp_path), 40960, 'fetch base backup x')
    with pytest.raises(StorageError, match='not enough room in .* to fetch base backup x: it needs 40961 bytes, '
                                           '40960 are free'):
        _offsite.require_room(str(tmp_path), 40961, 'fetch base backup x')
    with pytest.raises(StorageError, match='to fetch restore point p: it needs 42000 bytes'):
        _offsite.check_room(str(tmp_path), {'stem': 'p', 'parts': [{'name': 'absent', 'size': 40000}]})


class BadCopies:
    """A remote whose copies never verify: what it was asked to upload and delete."""

    def __init__(self):
        self.uploaded, self.deleted = [], []

    def upload(self, path, name):
        self.uploaded.append(name)

    def listing(self):
        return {name: {'size': 1, 'hashes': {}} for name in self.uploaded if name not in self.deleted}

    def verify(self, name, digests, size, listing):
        from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import OffsiteError
        raise OffsiteError('%s does not match its local copy' % name)

    def delete(self, name):
        self.deleted.append(name)


def test_a_copy_that_does_not_verify_is_removed_so_the_next_run_sends_it_again(tmp_path):
    from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import OffsiteError
    from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._pitr_offsite import PitrOffsite

    archive = PitrOffsite.__new__(PitrOffsite)
    archive.base_remote = archive.wal_remote = remote = BadCopies()
    packed = tmp_path / '000000010000000000000003.gz.gpg'
    packed.write_bytes(b'encrypted bytes')
    listing = {}
    with pytest.raises(OffsiteError, match='does not match'):
        archive._send(remote, [(str(packed), packed.name)], listing, {'uploaded': [], 'uploaded_bytes': 0})
    assert remote.deleted == [packed.name] and packed.name not in listing
