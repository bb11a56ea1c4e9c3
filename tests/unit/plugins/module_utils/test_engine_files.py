import glob
import hashlib
import os

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _engine_files as engine
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import ConfigError, StorageError

ENGINE_DIR = os.path.dirname(engine.__file__)
ENGINE_NAMES = sorted(os.path.basename(path) for path in glob.glob(os.path.join(ENGINE_DIR, '*.py')))


def _expected(names=ENGINE_NAMES):
    sums = {}
    for name in names:
        with open(os.path.join(ENGINE_DIR, name), 'rb') as handle:
            sums[name] = hashlib.sha1(handle.read()).hexdigest()
    return sums


def _run(dest, files=None, check_mode=False):
    return engine.EngineFilesBackend.from_params({'dest': str(dest), 'files': files or _expected()},
                                                 check_mode=check_mode).run()


def test_every_engine_file_is_imported_so_that_ansible_ships_it():
    # Ansible sends a module only the module_utils it imports: a file missing here would never reach the node.
    imported = {module.__name__.rpartition('.')[2] + '.py' for module in engine.ENGINE_MODULES}
    assert imported | {'__init__.py', '_engine_files.py'} == set(ENGINE_NAMES)


def test_first_run_writes_every_file_0644_and_the_second_nothing(tmp_path):
    result = _run(tmp_path)
    assert result['changed'] and result['files'] == ENGINE_NAMES
    for name in ENGINE_NAMES:
        path = tmp_path / name
        assert path.read_bytes() == (open(os.path.join(ENGINE_DIR, name), 'rb').read())
        assert path.stat().st_mode & 0o7777 == 0o644
    again = _run(tmp_path)
    assert not again['changed'] and again['files'] == []


def test_only_what_differs_is_written_content_mode_or_a_link(tmp_path):
    _run(tmp_path)
    (tmp_path / '_sql.py').write_bytes(b'# altered\n')
    os.chmod(tmp_path / '_errors.py', 0o666)
    os.unlink(tmp_path / '_gpg.py')
    os.symlink(os.path.join(ENGINE_DIR, '_gpg.py'), tmp_path / '_gpg.py')
    untouched = (tmp_path / '_restore.py').stat().st_ino
    result = _run(tmp_path)
    assert result['files'] == ['_errors.py', '_gpg.py', '_sql.py']
    assert not (tmp_path / '_gpg.py').is_symlink() and (tmp_path / '_errors.py').stat().st_mode & 0o777 == 0o644
    assert (tmp_path / '_restore.py').stat().st_ino == untouched
    assert not [name for name in os.listdir(tmp_path) if name.endswith('.partial')]


def test_check_mode_predicts_and_writes_nothing_even_without_the_directory(tmp_path):
    result = _run(tmp_path / 'not-yet', check_mode=True)
    assert result['changed'] and result['files'] == ENGINE_NAMES
    assert not (tmp_path / 'not-yet').exists()
    _run(tmp_path)
    (tmp_path / '_sql.py').write_bytes(b'# altered\n')
    assert _run(tmp_path, check_mode=True)['files'] == ['_sql.py']
    assert (tmp_path / '_sql.py').read_bytes() == b'# altered\n'


def test_a_carried_file_other_than_the_collections_is_refused_before_anything_is_written(tmp_path):
    files = dict(_expected(), **{'_sql.py': '0' * 40})
    with pytest.raises(ConfigError, match=r"_sql\.py this module carries differs from the collection's"):
        _run(tmp_path, files)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('name', ['../_sql.py', '_nonexistent.py', 'x.txt', ''])
def test_a_name_outside_the_engine_is_refused(tmp_path, name):
    with pytest.raises(ConfigError):
        _run(tmp_path, {name: '0' * 40})
    assert os.listdir(tmp_path) == []


def test_a_missing_directory_fails_in_one_line_outside_check_mode(tmp_path):
    with pytest.raises(StorageError, match='is not a directory'):
        _run(tmp_path / 'missing')
