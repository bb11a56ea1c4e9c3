"""WriterControl against a fake Docker API: who is selected, stopped and started, and never the database."""

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import DockerError
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._writers import WriterControl
from ansible_collections.cortexreview.supabase_backup.tests.unit.fakes import (
    DB_CONTAINER,
    FakeDockerAPI,
    FakeServer,
    FakeTarget,
    api_error,
)


@pytest.fixture
def docker():
    api = FakeDockerAPI()
    api.add(DB_CONTAINER, project='supa', service='db', host_port=54322)
    api.add('api', project='supa', service='api')
    api.add('worker', project='supa', service='worker')
    api.add('stopped-cron', running=False, project='supa', service='cron')
    api.add('other', project='elsewhere', service='api')
    return api


def control(docker, names=(), project=None, services=(), **target):
    return WriterControl(FakeTarget(FakeServer(), docker, **target), names, project, services, timeout=7)


def test_named_writers_that_run_are_selected(docker):
    writers = control(docker, ['api', 'stopped-cron'])
    assert writers.running() == ['api']
    assert writers.warnings == []


def test_a_missing_named_writer_is_a_warning_not_an_error(docker):
    writers = control(docker, ['api', 'gone'])
    assert writers.running() == ['api']
    assert writers.warnings == ['container gone to stop does not exist; skipped']


def test_nothing_selected_touches_nothing(docker):
    assert control(docker).running() == []
    assert docker.calls == []


def test_compose_project_never_selects_the_database_container(docker):
    assert sorted(control(docker, project='supa').running()) == ['api', 'worker']


def test_compose_services_narrow_the_project(docker):
    assert control(docker, project='supa', services=['worker']).running() == ['worker']


def test_direct_mode_recognises_the_database_by_its_published_port(docker):
    writers = control(docker, project='supa', container='', login_host='127.0.0.1', login_port=54322)
    assert sorted(writers.running()) == ['api', 'worker']
    other_port = control(docker, project='supa', container='', login_host='127.0.0.1', login_port=5433)
    assert DB_CONTAINER in other_port.running()  # another port: that container is not our database


def test_names_and_project_are_not_selected_twice(docker):
    assert sorted(control(docker, ['api'], project='supa').running()) == ['api', 'worker']


def test_inspect_failure_is_a_docker_error(docker):
    def broken(name):
        raise api_error('engine on fire')

    docker.inspect_container = broken
    with pytest.raises(DockerError, match='cannot inspect container api: engine on fire'):
        control(docker, ['api']).running()


def test_stop_records_each_container_as_soon_as_it_is_stopped(docker):
    docker.stop_errors['worker'] = api_error('cannot kill')
    stopped = []
    with pytest.raises(DockerError, match='cannot stop writer container worker'):
        control(docker).stop(['api', 'worker'], stopped)
    assert stopped == ['api']  # the caller can start exactly this one again
    assert ('stop', 'api') in docker.calls


def test_stop_passes_the_timeout(docker):
    seen = {}
    original = docker.stop

    def stop(name, timeout=None):
        seen[name] = timeout
        original(name, timeout)

    docker.stop = stop
    control(docker).stop(['api'], [])
    assert seen == {'api': 7}


def test_start_tries_every_container_and_reports_each_failure(docker):
    docker.start_errors['api'] = api_error('port taken')
    started, errors = control(docker).start(['api', 'worker'])
    assert started == ['worker']
    assert list(errors) == ['api'] and 'port taken' in errors['api']
    assert sorted(docker.actions('start')) == ['api', 'worker']
