import gzip
import hashlib
import io
import os
import tarfile

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _volume_archive as va
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_kinds import VOLUME
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import BackupFileError


def _tar(members, fmt=tarfile.PAX_FORMAT):
    """members: (name, type, data or linkname); the archive layout of `tar -C /data .`."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode='w', format=fmt) as archive:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.uid = info.gid = 999
            if kind == 'dir':
                info.type, info.mode = tarfile.DIRTYPE, 0o700
                archive.addfile(info)
            elif kind == 'file':
                info.size, info.mode = len(payload), 0o600
                archive.addfile(info, io.BytesIO(payload))
            else:
                info.type, info.linkname = (tarfile.SYMTYPE if kind == 'symlink' else tarfile.LNKTYPE), payload
                archive.addfile(info)
    return out.getvalue()


PGDATA = [('.', 'dir', None), ('./PG_VERSION', 'file', b'18\n'), ('./global', 'dir', None),
          ('./global/pg_control', 'file', b'\1' * 8192), ('./pg_wal', 'symlink', '/mnt/wal'),
          ('./base/1/1259', 'file', os.urandom(3000))]


def _chunks(data, size=777):
    return [data[i:i + size] for i in range(0, len(data), size)]


def test_pgdata_archive_facts_and_tee_sees_every_byte():
    data = _tar(PGDATA)
    seen = []
    facts = va.inspect_tar(_chunks(data), tee=seen.append)
    assert b''.join(seen) == data
    assert facts['pg_version'] == '18' and facts['pg_control'] is True
    assert facts['root'] == {'uid': 999, 'gid': 999, 'mode': 0o700}
    assert facts['members'] == len(PGDATA) and facts['size'] == len(data)
    assert va.pgdata_problem(facts) is None


def test_pgdata_below_the_volume_root():
    data = _tar([('./pgdata/PG_VERSION', 'file', b'17\n'), ('./pgdata/global/pg_control', 'file', b'x')])
    assert va.pgdata_problem(va.inspect_tar([data], 'pgdata'), 'pgdata') is None
    assert 'no PG_VERSION' in va.pgdata_problem(va.inspect_tar([data]))


def _layout(data):
    """(header offset of each member, end of the last member's data)."""
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = archive.getmembers()
        return [member.offset for member in members], archive.offset


@pytest.mark.parametrize('cut', ['member_boundary', 'inside_member', 'inside_end_marker'])
def test_truncated_tar_is_refused(cut):
    data = _tar(PGDATA)
    headers, end = _layout(data)
    at = {'member_boundary': headers[-1], 'inside_member': headers[-1] + 1024, 'inside_end_marker': end + 512}[cut]
    with pytest.raises(BackupFileError, match='truncated'):
        va.inspect_tar(_chunks(data[:at]))
    # Padding after the two zero blocks of the end marker is allowed.
    assert va.inspect_tar([data[:end + va.END_MARKER_SIZE]])['members'] == len(PGDATA)


def test_damaged_header_is_refused():
    data = bytearray(_tar(PGDATA))
    headers, _end = _layout(bytes(data))
    data[headers[3] + 100] ^= 0xFF  # inside the fourth header: its checksum no longer matches
    with pytest.raises(BackupFileError, match='not a valid tar archive'):
        va.inspect_tar([bytes(data)])


@pytest.mark.parametrize('data', [b'', b'hello world' * 100, b'\0' * 100])
def test_not_a_tar(data):
    with pytest.raises(BackupFileError):
        va.inspect_tar([data])


@pytest.mark.parametrize('member', [('/etc/passwd', 'file', b'x'), ('./a/../../x', 'file', b'x'),
                                    ('./hard', 'link', '../outside')])
def test_names_that_leave_the_volume(member):
    facts = va.inspect_tar([_tar(PGDATA + [member])])
    assert 'leave the volume' in va.pgdata_problem(facts)


def test_missing_control_file_and_bad_version():
    assert 'pg_control' in va.pgdata_problem(va.inspect_tar([_tar(PGDATA[:2])]))
    bad = [(name, kind, b'eighteen\n' if name == './PG_VERSION' else data) for name, kind, data in PGDATA]
    assert 'not a PostgreSQL major version' in va.pgdata_problem(va.inspect_tar([_tar(bad)]))


def test_leftover_aside_directories_are_reported():
    members = PGDATA + [('./.cortexreview-restore-20260101_000000-abcd', 'dir', None),
                        ('./.cortexreview-restore-20260101_000000-abcd/PG_VERSION', 'file', b'18\n')]
    assert va.inspect_tar([_tar(members)])['leftovers'] == ['.cortexreview-restore-20260101_000000-abcd']


def test_gnu_format_long_names():
    long_name = './base/1/' + 'x' * 200
    facts = va.inspect_tar(_chunks(_tar(PGDATA + [(long_name, 'file', b'data')], fmt=tarfile.GNU_FORMAT)))
    assert facts['members'] == len(PGDATA) + 1 and va.pgdata_problem(facts) is None


def _archive(directory, data, sidecar=True):
    path = os.path.join(directory, 'supabase-volume-20260101_020000.tar.gz')
    compressed = gzip.compress(data)
    with open(path, 'wb') as handle:
        handle.write(compressed)
    if sidecar:
        with open(path + '.sha256', 'w', encoding='utf-8') as handle:
            handle.write('%s  %s\n' % (hashlib.sha256(compressed).hexdigest(), os.path.basename(path)))
    return path


def test_volume_archive_verify(tmp_path):
    path = _archive(str(tmp_path), _tar(PGDATA))
    facts = va.VolumeArchive(path).verify()
    assert facts['checksum_verified'] is True and facts['pg_version'] == '18'
    assert b''.join(va.VolumeArchive(path).tar_chunks()) == _tar(PGDATA)


def test_volume_archive_refusals(tmp_path):
    path = _archive(str(tmp_path), _tar(PGDATA))
    with open(path + '.sha256', 'w', encoding='utf-8') as handle:
        handle.write('0' * 64 + '  x\n')
    with pytest.raises(BackupFileError, match='checksum file'):
        va.VolumeArchive(path).verify()
    with open(path, 'r+b') as handle:
        handle.truncate(os.path.getsize(path) - 10)
    with pytest.raises(BackupFileError, match='corrupt'):
        va.VolumeArchive(path).verify()
    with open(path, 'wb') as handle:
        handle.write(_tar(PGDATA))
    with pytest.raises(BackupFileError, match='not gzip-compressed'):
        va.VolumeArchive(path).verify()


def test_snapshot_names_for_retention(tmp_path):
    for name in ('supabase-volume-20260101_020000.tar.gz', 'supabase-volume_20260101_020000.tar.gz',
                 'supabase-volume-20260101_020000.tar.gz.sha256', 'supabase_backup_20260101_020000.sql.gz'):
        (tmp_path / name).write_bytes(b'x')
    listed = VOLUME.restore_points(str(tmp_path))
    assert [item['name'] for item in listed] == ['supabase-volume-20260101_020000.tar.gz']
    assert VOLUME.newest(str(tmp_path))['path'] == str(tmp_path / 'supabase-volume-20260101_020000.tar.gz')
    assert VOLUME.open(listed[0]['path']).what == 'volume snapshot'
