# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared fixtures for tests/integration (Docker test bed + Ansible runners).

Every test collected below tests/integration is marked ``integration``
(``pytest -m 'not integration'`` deselects them; ``pytest tests/unit`` never
loads this file). Fixtures:

``stack``             session: ``tests/testbed/stack.sh up`` once (reuses a
                      running stack) -> :class:`testbed.Stack` (the stack named by
                      CORTEXREVIEW_TESTBED, default ``cortexreview``)
``make_stack``        session: ``make_stack(suffix, seed=False, profile="plain") -> Stack``:
                      a new stack ``<stack name>-<suffix>`` beside the first, fresh (empty
                      unless ``seed``), removed at the end of the session
``second_stack``      session: ``make_stack("second")``, an empty stack (a new host)
``supabase_stack``    session: ``make_stack("supabase", seed=True, profile="supabase")``, a
                      seeded stack shaped like a self-hosted Supabase (README: test bed)
``pitr_stack``        session: ``make_stack("pitr", seed=True)``, a seeded stack of its own for point-in-time recovery
``healthy_stack``     function: like ``stack`` but re-checks/repairs the stack
                      (containers running, DB seeded) before the test
``docker_client``     session: ``docker.from_env()``
``collections_path``  session: dir containing
                      ``ansible_collections/cortexreview/supabase_backup`` -> repo
``run_module``        session: ``run_module(module, args, check=False, **kw) -> dict``
``run_playbook``      session: ``run_playbook(path, extra_vars=None, **kw) -> CompletedProcess``
``ansible_env``       session: env dict with ANSIBLE_COLLECTIONS_PATH etc.
``s3``                function: a real S3 server (``rclone serve s3``) with its rclone config
                      (:class:`offsite_helpers.S3Remote`), stopped and removed afterwards

Without a Docker daemon the Docker fixtures fail (never skip): the tests exist to
run against the real engine.
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


@pytest.fixture(scope="session")
def stack() -> testbed.Stack:
    """The running test-bed stack (started and seeded on first use)."""
    if not testbed.docker_available():
        pytest.fail("Docker daemon not reachable: the integration tests need it (bash scripts/setup.sh)")
    return testbed.stack_up()


@pytest.fixture(scope="session")
def make_stack(stack: testbed.Stack):
    """``make_stack(suffix, seed=False, profile="plain") -> Stack``: a fresh stack beside ``stack``.

    Named ``<stack name>-<suffix>`` (so two runs with different CORTEXREVIEW_TESTBED
    never share one), created from nothing (a leftover of an interrupted run is
    removed first), empty unless ``seed``; removed at the end of the session.
    ``profile="supabase"``: shaped like a self-hosted Supabase (``postgres_password``: its
    .env's password, default a new random one).
    """
    made = {}

    def make(suffix: str = "second", seed: bool = False, profile: str = "plain",
             postgres_password=None) -> testbed.Stack:
        name = f"{stack.name}-{suffix}"
        if name in made and made[name].profile != profile:
            raise ValueError(f"stack {name} was made with the {made[name].profile} profile")
        if name not in made:
            testbed.stack_down(name)
            made[name] = testbed.stack_up(name, seed=seed, profile=profile,
                                          postgres_password=postgres_password)
        return made[name]

    yield make
    for other in made.values():
        other.down()


@pytest.fixture(scope="session")
def second_stack(make_stack) -> testbed.Stack:
    """An empty second stack beside the first: the new host of a disaster-recovery drill."""
    return make_stack("second")


@pytest.fixture(scope="session")
def supabase_stack(make_stack) -> testbed.Stack:
    """A seeded stack shaped like a self-hosted Supabase (the supabase profile)."""
    return make_stack("supabase", seed=True, profile="supabase")


@pytest.fixture(scope="session")
def pitr_stack(make_stack) -> testbed.Stack:
    """A stack of its own for point-in-time recovery (its writers insert timestamped rows)."""
    return make_stack("pitr", seed=True)


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


@pytest.fixture()
def s3():
    """A real S3 endpoint on loopback (rclone serve s3) and the rclone config that defines it."""
    from offsite_helpers import S3Remote  # imports the collection: only where the off-site tests need it

    remote = S3Remote()
    yield remote
    remote.close()
