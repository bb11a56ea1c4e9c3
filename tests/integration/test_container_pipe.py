# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The restore's bulk input into a container through a named pipe (_container_pipe), on a real engine:
it arrives whole and once, leaves nothing behind, and each check that keeps it to the exec fires."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import time
import uuid

import pytest

import testbed

if testbed._default_collections_path() not in sys.path:  # pylint: disable=protected-access
    sys.path.insert(0, testbed._default_collections_path())  # pylint: disable=protected-access

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._commands import PgTarget, feed_stream
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._container_pipe import (
    PIPE_PREFIX,
    TRANSPORT_EXEC,
    TRANSPORT_PIPE,
    container_tmp,
    start_with_input,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._docker import (
    docker_client,
    run_in_container,
)
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._writers import WriterControl

DATA = os.urandom(1 << 20) * 6 + b'the end\n'
CHUNK = 1 << 20
# Appends its input to a file: a second delivery of any of it would show in the file's size.
APPEND = ['sh', '-c', 'cat >> /tmp/received && sha256sum /tmp/received']


@pytest.fixture(scope='module')
def api(stack):
    return docker_client()


@pytest.fixture
def make_container(api):
    """``make_container(script='', user='0:0')``: a running container of the base image, removed afterwards."""
    made = []

    def make(script='', user='0:0'):
        name = 'cortexreview-pipe-%s' % uuid.uuid4().hex[:8]
        created = api.create_container(testbed.BASE_IMAGE, name=name, user=user,
                                       entrypoint=['sh', '-c', script + 'touch /dev/shm/ready; exec sleep infinity'])
        made.append(created['Id'])
        api.start(created['Id'])
        deadline = time.monotonic() + 30
        while run_in_container(api, name, ['test', '-e', '/dev/shm/ready'])[0] != 0:
            assert time.monotonic() < deadline, 'container %s did not get ready' % name
            time.sleep(0.05)
        return name

    yield make
    for container in made:
        api.remove_container(container, force=True)


def feed(api, container, argv=None):
    stream, transport, reason = start_with_input(api, container, argv or APPEND, {})
    returncode, output, stderr = feed_stream(stream, (DATA[start:start + CHUNK] for start in range(0, len(DATA), CHUNK)))
    return transport, reason, returncode, output, stderr


def in_container(api, container, command):
    returncode, output, stderr = run_in_container(api, container, ['sh', '-c', command])
    assert returncode == 0, stderr
    return output


def test_the_input_goes_through_a_pipe_whole_once_and_as_stdin(api, make_container):
    container = make_container()
    transport, reason, returncode, output, stderr = feed(api, container, [
        'sh', '-c', 'readlink /proc/self/fd/0 > /tmp/stdin-was; cat >> /tmp/received && sha256sum /tmp/received'])
    assert (transport, reason, returncode) == (TRANSPORT_PIPE, None, 0), stderr
    assert output.split()[0] == hashlib.sha256(DATA).hexdigest()
    # Its standard input was the named pipe, whose name is gone: nothing is left in /tmp.
    assert in_container(api, container, 'cat /tmp/stdin-was').startswith('/tmp/' + PIPE_PREFIX)
    assert PIPE_PREFIX not in in_container(api, container, 'ls -a /tmp')


def test_a_program_that_fails_gets_its_status_through_the_pipe(api, make_container):
    container = make_container()
    gives_up = ['sh', '-c', 'head -c 10 >/dev/null; echo gave up >&2; exit 3']
    transport, _reason, returncode, _output, stderr = feed(api, container, gives_up)
    assert (transport, returncode) == (TRANSPORT_PIPE, 3)
    assert 'gave up' in stderr


def test_a_tmp_that_is_a_link_is_not_followed_from_this_host(api, make_container):
    escape = tempfile.mkdtemp(prefix='cortexreview-pipe-escape-')
    try:
        # Followed from this host's root, the link would lead into this host's directory.
        container = make_container('rm -rf /tmp && ln -s %s /tmp && ' % escape)
        transport, reason, returncode, output, stderr = feed(
            api, container, ['sh', '-c', 'cat > /dev/null; echo received'])
        assert (transport, reason, returncode) == (TRANSPORT_EXEC, "the container's /tmp is not a directory", 0), \
            stderr
        assert output.strip() == 'received'
        assert os.listdir(escape) == []
    finally:
        shutil.rmtree(escape, ignore_errors=True)


def test_a_program_that_cannot_open_the_pipe_gets_the_input_once_through_the_exec(api, make_container):
    container = make_container(user='65534:65534')  # nobody: the pipe is for the container's root only
    transport, reason, returncode, output, stderr = feed(api, container)
    assert (transport, returncode) == (TRANSPORT_EXEC, 0), stderr
    assert reason.startswith('the program in the container could not open the pipe (')
    assert 'ermission denied' in reason
    assert output.split()[0] == hashlib.sha256(DATA).hexdigest()
    assert PIPE_PREFIX not in in_container(api, container, 'ls -a /tmp')


def test_another_containers_process_is_not_taken_for_the_container(api, make_container):
    first, second = make_container(), make_container()
    first_info, second_info = api.inspect_container(first), api.inspect_container(second)
    directory, reason = container_tmp(first_info['State']['Pid'], second_info['Id'])
    assert (directory, reason) == (None, 'the Docker engine runs on another host or in another PID namespace')
    directory, reason = container_tmp(first_info['State']['Pid'], first_info['Id'])
    assert reason is None
    os.close(directory)


def test_the_engines_filesystem_is_written_out_before_the_writers_stop(api, make_container):
    """A stop unmounts the container's root filesystem, which writes out what is dirty there first: the
    restore writes it out beforehand, while it verifies, when there are writers to stop."""
    dirty_file = os.path.join(api.info()['DockerRootDir'], 'cortexreview-dirty-%s' % uuid.uuid4().hex[:8])
    writer = make_container()
    try:
        with open(dirty_file, 'wb') as handle:
            handle.write(os.urandom(64 << 20) * 3)
        before = dirty_kb()
        assert before > 150 << 10, 'the test needs the file dirty in the page cache'
        no_writers = WriterControl(PgTarget(container=writer), [])
        no_writers.flush_before_stop()
        no_writers.wait_for_flush()
        assert dirty_kb() > 150 << 10, 'nothing to stop, nothing written out'
        control = WriterControl(PgTarget(container=writer), [writer])
        control.flush_before_stop()
        control.wait_for_flush()
        assert dirty_kb() < before - (150 << 10)
    finally:
        os.remove(dirty_file)


def dirty_kb():
    with open('/proc/meminfo', encoding='ascii') as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith('Dirty:'))
