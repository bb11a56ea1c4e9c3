"""The gpg wrapper against the real gpg binary: round trips, wrong passphrases, failures, cleanup."""

import gzip
import os
import shutil
import subprocess
import tempfile

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_files import AtomicFile
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_kinds import LOGICAL
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_output import (
    BackupWriter,
    CompressedOutput,
    OutputSettings,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_reader import BackupFile
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import (
    BackupFileError,
    ConfigError,
    StorageError,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._gpg import (
    GpgEncryptor,
    Passphrase,
    decrypted,
    looks_encrypted,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._options import (
    dump_argument_spec,
    validate_config,
)

SECRET = b'correct horse battery staple'
PAYLOAD = os.urandom(300000) + b'the end'


def encrypt(data, passphrase, piece=65536):
    out = []
    encryptor = GpgEncryptor(passphrase, out.append)
    for start in range(0, len(data), piece):
        encryptor.write(data[start:start + piece])
    encryptor.close()
    return b''.join(out)


@pytest.fixture(autouse=True)
def private_tempdir(monkeypatch):
    """gpg's homes go into a directory of this test's own, so other runs on the machine cannot disturb the
    count of leftovers; a short path, as the agent's socket must fit in a unix socket address."""
    directory = tempfile.mkdtemp(prefix='crgpg-', dir='/tmp')
    monkeypatch.setattr(tempfile, 'tempdir', directory)
    yield
    shutil.rmtree(directory, ignore_errors=True)


def gpg_homes():
    return sorted(name for name in os.listdir(tempfile.gettempdir()) if name.startswith('cortexreview-gpg-'))


def test_round_trip_and_gpg_decrypt_opens_it(tmp_path):
    homes = gpg_homes()
    message = encrypt(PAYLOAD, Passphrase(SECRET, 'test'))
    assert looks_encrypted(message[:2]) and PAYLOAD[:64] not in message
    assert b''.join(decrypted([message[:1000], message[1000:]], Passphrase(SECRET, 'test'), 'x')) == PAYLOAD
    # The operator's own gpg opens it with the same passphrase.
    passphrase_file = tmp_path / 'pass'
    passphrase_file.write_bytes(SECRET + b'\n')
    (tmp_path / 'home').mkdir(mode=0o700)
    proc = subprocess.run(['gpg', '--homedir', str(tmp_path / 'home'), '--batch', '--pinentry-mode', 'loopback',
                           '--passphrase-file', str(passphrase_file), '--decrypt'],
                          input=message, capture_output=True, check=False)
    assert proc.returncode == 0 and proc.stdout == PAYLOAD, proc.stderr
    # Private homes (and their agents) are gone.
    assert gpg_homes() == homes


def test_wrong_passphrase_and_tampering_are_errors():
    message = encrypt(PAYLOAD, Passphrase(SECRET, 'test'))
    with pytest.raises(BackupFileError, match='wrong passphrase'):
        b''.join(decrypted([message], Passphrase(b'wrong', 'test'), 'x'))
    tampered = bytearray(message)
    tampered[len(message) // 2] ^= 0x01
    with pytest.raises(BackupFileError, match='cannot decrypt x'):
        b''.join(decrypted([bytes(tampered)], Passphrase(SECRET, 'test'), 'x'))
    with pytest.raises(BackupFileError, match='cannot decrypt x'):
        b''.join(decrypted([message[:len(message) // 2]], Passphrase(SECRET, 'test'), 'x'))


def test_a_failing_sink_ends_gpg_and_is_raised():
    homes = gpg_homes()

    def full_disk(_data):
        raise StorageError('no space left')

    encryptor = GpgEncryptor(Passphrase(SECRET, 'test'), full_disk)
    with pytest.raises(StorageError, match='no space left'):
        for _round in range(200):  # far more than the pipes hold
            encryptor.write(PAYLOAD)
        encryptor.close()
    encryptor.abort()
    assert gpg_homes() == homes


def test_a_failing_source_stops_decryption():
    message = encrypt(PAYLOAD, Passphrase(SECRET, 'test'))

    def source():
        yield message[:100]
        raise BackupFileError('cannot read the backup file')

    with pytest.raises(BackupFileError, match='cannot read the backup file'):
        b''.join(decrypted(source(), Passphrase(SECRET, 'test'), 'x'))


@pytest.mark.parametrize('secret,needle', [(b'', 'empty'), (b'two\nlines', 'single line'),
                                           (b'x' * 5000, 'longer than')])
def test_passphrase_rules(secret, needle):
    with pytest.raises(ConfigError, match=needle):
        Passphrase(secret, 'test')


def test_passphrase_from_params(tmp_path):
    assert Passphrase.from_params({}) is None
    path = tmp_path / 'pass'
    path.write_bytes(SECRET + b'\r\nignored second line\n')
    path.chmod(0o600)
    from_file = Passphrase.from_params({'encrypt_passphrase_file': str(path)})
    assert b''.join(decrypted([encrypt(b'data', Passphrase(SECRET, 't'))], from_file, 'x')) == b'data'
    assert SECRET.decode() not in repr(from_file)
    path.chmod(0o640)
    with pytest.raises(ConfigError, match='accessible to group or others'):
        Passphrase.from_params({'encrypt_passphrase_file': str(path)})
    with pytest.raises(ConfigError, match='not both'):
        Passphrase.from_params({'encrypt_passphrase': 'a', 'encrypt_passphrase_file': str(path)})
    with pytest.raises(ConfigError, match='cannot read'):
        Passphrase.from_params({'encrypt_passphrase_file': str(tmp_path / 'missing')})


def _settings(tmp_path, **extra):
    return OutputSettings(validate_config(dump_argument_spec(), dict({'backup_dir': str(tmp_path)}, **extra)))


def test_compressed_output_never_writes_plaintext(tmp_path):
    settings = _settings(tmp_path, encrypt_passphrase=SECRET.decode())
    path = str(tmp_path / LOGICAL.part_name('20260101_000000', encrypted=settings.passphrase is not None))
    assert path.endswith('.sql.gz.gpg')
    plain = b'-- PostgreSQL database dump\n' + b'COPY t FROM stdin;\n' * 50000
    with AtomicFile(path, 0o600) as output:
        written = CompressedOutput(output, settings)
        written.write(plain)
        written.close()
        output.commit()
    data = open(path, 'rb').read()
    assert written.encrypted and written.size == len(data) and written.uncompressed_size == len(plain)
    assert not data.startswith(b'\x1f\x8b') and b'COPY t' not in data
    backup = BackupFile(path, Passphrase(SECRET, 'test'))
    assert backup.encrypted and gzip.decompress(b''.join(backup.plain_chunks())) == plain
    with pytest.raises(BackupFileError, match='is encrypted: give encrypt_passphrase'):
        BackupFile(path)


def test_plain_and_encrypted_backups_count_alike(tmp_path):
    for stamp, suffix in (('20260101_000000', '.sql.gz'), ('20260102_000000', '.sql.gz.gpg'),
                          ('20260103_000000', '.sql.gz'), ('20260104_000000', '.sql.gz.gpg.partial')):
        (tmp_path / ('supabase_backup_%s%s' % (stamp, suffix))).write_bytes(b'x')
    assert LOGICAL.suffixes == ('.sql.gz', '.sql.gz.gpg')
    names = [point['name'] for point in LOGICAL.restore_points(str(tmp_path))]
    assert names == ['supabase_backup_20260101_000000.sql.gz', 'supabase_backup_20260102_000000.sql.gz.gpg',
                     'supabase_backup_20260103_000000.sql.gz']
    (tmp_path / 'supabase_backup_20260105_000000.sql.gz.gpg').write_bytes(b'x')
    assert LOGICAL.select(str(tmp_path)).endswith('20260105_000000.sql.gz.gpg')

    class Writer(BackupWriter):
        kind = LOGICAL

    settings = _settings(tmp_path, retention_days=1, retention_keep_min=1, encrypt_passphrase='x')
    settings.backup_dir = str(tmp_path)
    writer = Writer(settings, check_mode=True, clock=lambda: 1900000000.0)
    assert writer.backup_path().endswith('.sql.gz.gpg')
    expired = [os.path.basename(path) for path in writer.remove_expired()]
    # Everything but the newest (encrypted) one, plain and encrypted alike; never the partial file.
    assert expired == names
