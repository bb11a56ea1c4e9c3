# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared fixtures for tests/integration (Docker test bed + Ansible runners).

Every test collected below tests/integration is marked ``integration``
(``pytest -m 'not integration'`` deselects them; ``pytest tests/unit`` never
loads this file). Fixtures:

``stack``             session: ``tests/testbed/stack.sh up`` once (reuses a
                      running stack) -> :class:`testbed.Stack`
``healthy_stack``     function: like ``stack`` but re-checks/repairs the stack
                      (containers running, DB seeded) before the test
``docker_client``     session: ``docker.from_env()``
``collections_path``  session: dir containing
                      ``ansible_collections/cortexreview/supabase_backup`` -> repo
``run_module``        session: ``run_module(module, args, check=False, **kw) -> dict``
``run_playbook``      session: ``run_playbook(path, extra_vars=None, **kw) -> CompletedProcess``
``ansible_env``       session: env dict with ANSIBLE_COLLECTIONS_PATH etc.

Without a Docker daemon the Docker fixtures skip -- except under CI=true,
where they fail.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import tempfile

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import testbed  # noqa: E402  pylint: disable=wrong-import-position


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "integration: needs Docker and the cortexreview test-bed stack (tests/integration)")


def pytest_collection_modifyitems(config, items):
    prefix = _HERE + os.sep
    for item in items:
        if str(getattr(item, "path", item.fspath)).startswith(prefix):
            item.add_marker(pytest.mark.integration)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def stack() -> testbed.Stack:
    """The running test-bed stack (started and seeded on first use)."""
    if not testbed.docker_available():
        if _in_ci():
            pytest.fail("Docker daemon not reachable (CI=true): run scripts/setup.sh")
        pytest.skip("Docker daemon not reachable")
    testbed.stack_up()
    return testbed.Stack()


@pytest.fixture
def healthy_stack(stack: testbed.Stack) -> testbed.Stack:
    """``stack``, repaired before the test if a previous test broke it."""
    stack.ensure_healthy()
    return stack


@pytest.fixture(scope="session")
def docker_client(stack: testbed.Stack):
    return testbed.docker_client()


@pytest.fixture(scope="session")
def collections_path(tmp_path_factory) -> str:
    """Path to put in ANSIBLE_COLLECTIONS_PATH (our collection symlinked in)."""
    return testbed.make_collections_path(tmp_path_factory.mktemp("collections"))


@pytest.fixture(scope="session")
def ansible_env(collections_path):
    return testbed.ansible_env(collections_path)


@pytest.fixture(scope="session")
def run_module(collections_path):
    """``run_module(module, args=None, check=False, *, diff=False, env=None) -> dict``"""
    return functools.partial(testbed.run_module, collections_path=collections_path)


@pytest.fixture(scope="session")
def run_playbook(collections_path):
    """``run_playbook(path, extra_vars=None, *, check=False, inventory=None, ...) -> CompletedProcess``"""
    return functools.partial(testbed.run_playbook, collections_path=collections_path)


@pytest.fixture
def workdir():
    """A private temporary directory (str), removed afterwards."""
    path = tempfile.mkdtemp(prefix="cortexreview-test-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
