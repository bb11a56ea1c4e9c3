# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers for the integration tests: the docker-compose test bed and Ansible.

The test bed (tests/testbed/) is a docker-compose project, by default ``cortexreview``
(``CORTEXREVIEW_TESTBED=NAME`` selects another, whose names below start with NAME;
:class:`Stack` and :func:`stack_up` reach any stack by name, so one run can use a
second stack beside the first):

* ``cortexreview-supabase-db``  PostgreSQL 18 + pgvector, behaves like the
  official ``postgres`` image (``docker exec <c> pg_dump -U postgres postgres``
  works), data on the volume ``cortexreview-supabase-db-data``, published on
  127.0.0.1:54322, password :data:`DB_PASSWORD`;
* ``cortexreview-api`` / ``cortexreview-worker``  insert a row into
  ``feedback_audit_log`` every ~0.5 s (actor ``api`` / ``worker``) and
  survive the DB going away.

A stack has a profile: ``plain`` (the above) or ``supabase``
(``CORTEXREVIEW_TESTBED_PROFILE=supabase``, tests/testbed/supabase/): shaped like a
self-hosted Supabase, with its compose project directory (``.env``, ``volumes/storage``),
a storage container, the ``db-config`` volume with the Vault-like root key, both databases
(``postgres``, ``_supabase``) and the image's roles. :func:`supabase_fingerprint` takes all of
it at once, so a test can compare a stack before a backup with one restored from it.

Everything here is plain functions (usable outside pytest, e.g. from a
python shell); tests/integration/conftest.py wraps them in fixtures.
Nothing in this module needs Docker at import time.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTBED_DIR = REPO_ROOT / "tests" / "testbed"
STACK_SH = TESTBED_DIR / "stack.sh"
BUILD_IMAGES_SH = TESTBED_DIR / "build-images.sh"
COMPOSE_FILE = TESTBED_DIR / "docker-compose.yml"
SEED_SQL = TESTBED_DIR / "seed.sql"

COLLECTION_NAMESPACE = "cortexreview"
COLLECTION_NAME = "supabase_backup"
COLLECTION_PREFIX = f"{COLLECTION_NAMESPACE}.{COLLECTION_NAME}"

# Keep in sync with tests/testbed/lib.sh and docker-compose.yml (test_testbed.py compares them).
STACK_ENV = "CORTEXREVIEW_TESTBED"        # selects the stack of this run
PORT_ENV = "CORTEXREVIEW_TESTBED_PORT"    # overrides that stack's published port
PROFILE_ENV = "CORTEXREVIEW_TESTBED_PROFILE"                 # plain or supabase
POSTGRES_PASSWORD_ENV = "CORTEXREVIEW_TESTBED_POSTGRES_PASSWORD"  # a new supabase stack's password
PROFILES = ("plain", "supabase")
SUPABASE_DIR = TESTBED_DIR / "supabase"
PROJECT_DIR_BASE = Path("/var/tmp")       # a supabase stack's project dir: cortexreview-testbed-NAME
DEFAULT_STACK_NAME = "cortexreview"
DEFAULT_DB_PORT = 54322
_STACK_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


def check_stack_name(name: str) -> str:
    """``name`` if it can name a stack (a compose project name), else ValueError."""
    if not isinstance(name, str) or not _STACK_NAME_RE.fullmatch(name):
        raise ValueError(f"stack name {name!r}: use 1-40 of a-z 0-9 - _, starting with a letter or digit")
    return name


STACK_NAME = check_stack_name(os.environ.get(STACK_ENV) or DEFAULT_STACK_NAME)


def stack_port(name: str) -> int:
    """The DB port a stack publishes on 127.0.0.1: 54322 for the default stack, the
    ``CORTEXREVIEW_TESTBED_PORT`` override for this run's stack, else 55000 + the first
    4 hex digits of sha256(name) mod 1000 (as ``tb_port_of`` in lib.sh)."""
    if name == STACK_NAME and os.environ.get(PORT_ENV):
        return int(os.environ[PORT_ENV])
    if name == DEFAULT_STACK_NAME:
        return DEFAULT_DB_PORT
    return 55000 + int(hashlib.sha256(name.encode()).hexdigest()[:4], 16) % 1000


def check_profile(profile: str) -> str:
    """``profile`` if it names a test bed profile, else ValueError."""
    if profile not in PROFILES:
        raise ValueError(f"test bed profile {profile!r}: use one of {', '.join(PROFILES)}")
    return profile


def project_dir(name: str) -> Path:
    """The compose project directory of supabase stack ``name`` (as TB_PROJECT_DIR in lib.sh)."""
    return PROJECT_DIR_BASE / f"cortexreview-testbed-{check_stack_name(name)}"


def stack_names(name: str, profile: str = "plain") -> Dict[str, Any]:
    """The compose project, containers, volume, network and port of stack ``name``; for the
    supabase profile also its storage container, db-config volume, project dir, .env and
    Storage directory (what ``stack.sh names`` prints)."""
    check_stack_name(name)
    names: Dict[str, Any] = {
        "project": name, "db_container": f"{name}-supabase-db", "api_container": f"{name}-api",
        "worker_container": f"{name}-worker", "volume": f"{name}-supabase-db-data",
        "network": f"{name}_default", "port": stack_port(name)}
    if check_profile(profile) == "supabase":
        pdir = project_dir(name)
        names.update(profile="supabase", storage_container=f"{name}-storage",
                     config_volume=f"{name}-db-config", project_dir=str(pdir),
                     env_file=str(pdir / ".env"), storage_dir=str(pdir / "volumes" / "storage"))
    return names


_NAMES = stack_names(STACK_NAME)
PROJECT = _NAMES["project"]
BASE_IMAGE = "cortexreview/debian-base:bookworm"
DB_IMAGE = "cortexreview/supabase-db:test"
APP_IMAGE = "cortexreview/app:test"
DB_SERVICE = "supabase-db"
DB_CONTAINER = _NAMES["db_container"]
API_CONTAINER = _NAMES["api_container"]
WORKER_CONTAINER = _NAMES["worker_container"]
APP_CONTAINERS = (API_CONTAINER, WORKER_CONTAINER)
ALL_CONTAINERS = (DB_CONTAINER, API_CONTAINER, WORKER_CONTAINER)
DB_VOLUME = _NAMES["volume"]
NETWORK = _NAMES["network"]
DB_HOST = "127.0.0.1"
DB_PORT = _NAMES["port"]
DB_USER = "postgres"
DB_NAME = "postgres"
DB_PASSWORD = "postgres-test-password"  # test-only; also in docker-compose.yml
DB_DATA_DIR = "/var/lib/postgresql/data"  # PGDATA inside the DB container

# What tests/testbed/seed.sql creates (default kb_rows).
SEED_ROW_COUNTS = {
    "knowledge_base": 300,
    "learned_constraints": 50,
    "feedback_audit_log": 100,  # rows with actor = 'seed'; api/worker add more
    "Weird Table": 6,
    "empty_table": 0,
}
SEED_TABLES = tuple(SEED_ROW_COUNTS)
WRITER_ACTORS = ("api", "worker")
SEED_INDEXES = (
    "Weird Table_pkey",
    "empty_table_pkey",
    "feedback_audit_log_actor_idx",
    "feedback_audit_log_created_at_idx",
    "feedback_audit_log_pkey",
    "knowledge_base_content_fts_idx",
    "knowledge_base_created_at_idx",
    "knowledge_base_embedding_ivfflat_idx",
    "knowledge_base_metadata_gin_idx",
    "knowledge_base_pkey",
    "learned_constraints_expires_at_idx",
    "learned_constraints_pkey",
    "learned_constraints_type_idx",
)
SEED_FUNCTIONS = ("check_constraints", "match_knowledge")

_FS = "\x1f"  # psql field separator used by psql_rows()
_RS = "\x1e"  # psql record separator used by psql_rows()


class TestbedError(RuntimeError):
    """A test-bed command failed; carries the command's output."""

    def __init__(self, msg: str, *, returncode: Optional[int] = None,
                 stdout: str = "", stderr: str = "") -> None:
        details = msg
        if returncode is not None:
            details += f" (exit {returncode})"
        if stderr.strip():
            details += f"\n--- stderr ---\n{stderr.strip()[-4000:]}"
        if stdout.strip():
            details += f"\n--- stdout ---\n{stdout.strip()[-4000:]}"
        super().__init__(details)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


class PsqlError(TestbedError):
    """psql exited non-zero."""


# --------------------------------------------------------------- processes --

def _run(argv: Sequence[str], *, input: Optional[str] = None, timeout: float = 600,
         env: Optional[Mapping[str, str]] = None, cwd: Optional[os.PathLike] = None,
         ) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), input=input, capture_output=True, text=True,
                          timeout=timeout, env=None if env is None else dict(env),
                          cwd=None if cwd is None else str(cwd), check=False)


def docker_available() -> bool:
    """True when the docker CLI exists and the daemon answers."""
    if shutil.which("docker") is None:
        return False
    try:
        return _run(["docker", "info"], timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def stack_cmd(*args: str, name: Optional[str] = None, timeout: float = 1800,
              check: bool = True, profile: Optional[str] = None,
              postgres_password: Optional[str] = None) -> subprocess.CompletedProcess:
    """Run ``tests/testbed/stack.sh <args>`` (up, down, reset, seed, wait, status, names)
    on stack ``name`` (default: this run's stack) with ``profile`` (default: what stack.sh
    finds: supabase when the stack's project directory exists). ``postgres_password``: the
    password a new supabase stack's .env gets (default: a new random one)."""
    name = check_stack_name(name or STACK_NAME)
    env = dict(os.environ, **{STACK_ENV: name, PORT_ENV: str(stack_port(name))})
    env.pop(PROFILE_ENV, None)
    env.pop(POSTGRES_PASSWORD_ENV, None)
    if profile is not None:
        env[PROFILE_ENV] = check_profile(profile)
    if postgres_password is not None:
        env[POSTGRES_PASSWORD_ENV] = postgres_password
    proc = _run(["bash", str(STACK_SH), *args], timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise TestbedError(f"stack.sh {' '.join(args)} failed for stack {name}",
                           returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)
    return proc


def stack_up(name: Optional[str] = None, *, seed: bool = True, profile: str = "plain",
             postgres_password: Optional[str] = None) -> "Stack":
    """Build images if needed, start stack ``name`` (default: this run's) with ``profile``,
    wait for the DB, seed it if unseeded (``seed=False``: leave it as it is, empty when new:
    for the supabase profile the image's roles, schemas and ``_supabase`` without the project's
    data, and an empty Storage directory); return it. ``postgres_password``: see :func:`stack_cmd`."""
    stack_cmd("up", *(() if seed else ("--no-seed",)), name=name, profile=profile,
              postgres_password=postgres_password)
    return Stack(name or STACK_NAME, seed=seed, profile=profile)


def stack_down(name: Optional[str] = None, *, profile: Optional[str] = None) -> None:
    """Remove stack ``name``'s containers, network and volumes, and a supabase stack's
    project directory (images stay)."""
    stack_cmd("down", name=name, profile=profile)


def stack_reset(name: Optional[str] = None) -> None:
    """Remove containers + volume and bring up a freshly seeded stack."""
    stack_cmd("reset", name=name)


def reseed(name: Optional[str] = None) -> None:
    """Reload seed.sql into database ``postgres`` (drops and recreates its tables)."""
    stack_cmd("seed", name=name)


def docker_exec(container: str, argv: Sequence[str], *, input: Optional[str] = None,
                user: Optional[str] = None, env: Optional[Mapping[str, str]] = None,
                timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """``docker exec -i [-u user] [-e K=V] <container> argv...`` (text mode)."""
    cmd: List[str] = ["docker", "exec", "-i"]
    if user:
        cmd += ["-u", user]
    proc_env = None
    if env:
        # pass values through our environment, not argv ("-e NAME" form)
        proc_env = dict(os.environ)
        for key, value in env.items():
            cmd += ["-e", key]
            proc_env[key] = value
    cmd += [container, *argv]
    proc = _run(cmd, input=input, timeout=timeout, env=proc_env)
    if check and proc.returncode != 0:
        raise TestbedError(f"docker exec {container} {argv[0]} failed",
                           returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)
    return proc


# --------------------------------------------------------------------- SQL --

def psql(sql: str, db: str = DB_NAME, *, user: str = DB_USER, container: str = DB_CONTAINER,
         timeout: float = 300, check: bool = True) -> str:
    """Run SQL with ``psql -X -q -At -v ON_ERROR_STOP=1`` inside the DB container.

    The SQL goes in on stdin, so several statements (each in its own
    transaction, e.g. ``CREATE DATABASE``) and psql meta-commands work.
    Returns stdout without the trailing newline (rows '\\n'-separated,
    columns '|'-separated). Raises :class:`PsqlError` on a non-zero exit.
    """
    argv = ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-U", user, "-d", db, "-f", "-"]
    proc = docker_exec(container, argv, input=sql, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise PsqlError(f"psql on {db!r} failed for SQL: {sql.strip()[:300]}",
                        returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)
    return proc.stdout.rstrip("\n")


def psql_rows(sql: str, db: str = DB_NAME, **kwargs: Any) -> List[tuple]:
    """Like :func:`psql` but returns a list of tuples of strings (NULL -> '').

    Uses ASCII unit/record separators, so values may contain '|', tabs and
    newlines. Only the output of the last statement is meaningful.
    """
    wrapped = f"\\pset fieldsep '{_FS}'\n\\pset recordsep '{_RS}'\n{sql}"
    out = psql(wrapped, db, **kwargs)
    if out == "":
        return []
    return [tuple(rec.split(_FS)) for rec in out.rstrip("\n").split(_RS)]


def psql_value(sql: str, db: str = DB_NAME, **kwargs: Any) -> str:
    """First column of the first row ('' when no rows)."""
    rows = psql_rows(sql, db, **kwargs)
    return rows[0][0] if rows else ""


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def database_exists(db: str, *, container: str = DB_CONTAINER) -> bool:
    lit = "'" + db.replace("'", "''") + "'"
    return psql_value(f"SELECT count(*) FROM pg_database WHERE datname = {lit}", "template1",
                      container=container) == "1"


def list_databases(*, container: str = DB_CONTAINER) -> List[str]:
    return [r[0] for r in psql_rows(
        "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1", "template1",
        container=container)]


def table_counts(db: str = DB_NAME, schema: Optional[str] = "public", *,
                 container: str = DB_CONTAINER) -> Dict[str, int]:
    """Exact ``count(*)`` of every ordinary/partitioned table.

    Keys are bare table names for ``schema`` (default public, e.g.
    ``'knowledge_base'``, ``'Weird Table'``); with ``schema=None`` all
    non-system schemas are counted and keys are ``'schema.table'``.
    """
    where = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'"
    if schema is not None:
        where = "n.nspname = '" + schema.replace("'", "''") + "'"
    tables = psql_rows(f"""
        SELECT n.nspname, c.relname
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND {where}
        ORDER BY 1, 2""", db, container=container)
    counts: Dict[str, int] = {}
    if not tables:
        return counts
    # one round trip; rows identified by position (names may contain anything)
    union = "\nUNION ALL ".join(
        f"SELECT {i}, count(*) FROM {_quote_ident(nsp)}.{_quote_ident(rel)}"
        for i, (nsp, rel) in enumerate(tables))
    for i, n in psql_rows(union, db, container=container):
        nsp, rel = tables[int(i)]
        counts[rel if schema is not None else f"{nsp}.{rel}"] = int(n)
    return counts


def seed_row_counts(db: str = DB_NAME, *, container: str = DB_CONTAINER) -> Dict[str, int]:
    """Row counts comparable with :data:`SEED_ROW_COUNTS` (feedback_audit_log
    counts only actor='seed' rows, ignoring the api/worker writers)."""
    counts = table_counts(db, container=container)
    result = {t: counts.get(t, -1) for t in SEED_TABLES}
    if "feedback_audit_log" in counts:
        result["feedback_audit_log"] = int(psql_value(
            "SELECT count(*) FROM feedback_audit_log WHERE actor = 'seed'", db, container=container))
    return result


def writer_rows(db: str = DB_NAME, *, container: str = DB_CONTAINER) -> int:
    """Rows written by the api/worker containers (actor 'api' or 'worker')."""
    return int(psql_value(
        "SELECT count(*) FROM feedback_audit_log WHERE actor IN ('api', 'worker')", db,
        container=container) or 0)


def index_names(db: str = DB_NAME, schema: str = "public", *, container: str = DB_CONTAINER) -> List[str]:
    lit = "'" + schema.replace("'", "''") + "'"
    return [r[0] for r in psql_rows(
        f"SELECT indexname FROM pg_indexes WHERE schemaname = {lit} ORDER BY 1", db, container=container)]


def function_names(db: str = DB_NAME, schema: str = "public", *,
                   container: str = DB_CONTAINER) -> List[str]:
    lit = "'" + schema.replace("'", "''") + "'"
    return [r[0] for r in psql_rows(
        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        f"WHERE n.nspname = {lit} AND p.prokind = 'f' "
        "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e') "
        "ORDER BY 1", db, container=container)]


def pg_dump(db: str = DB_NAME, *args: str, timeout: float = 600, container: str = DB_CONTAINER) -> bytes:
    """``docker exec <db> pg_dump -U postgres [args] <db>`` -> raw bytes."""
    proc = subprocess.run(["docker", "exec", container, "pg_dump", "-U", DB_USER, *args, db],
                          capture_output=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise TestbedError("pg_dump failed", returncode=proc.returncode,
                           stderr=proc.stderr.decode("utf-8", "replace"))
    return proc.stdout


def wait_until(predicate: Callable[[], Any], timeout: float = 60, interval: float = 0.5,
               what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns a truthy value (returned); exceptions count as falsy."""
    deadline = time.monotonic() + timeout
    last_exc: Optional[BaseException] = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - polling
            last_exc = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}"
                               + (f" (last error: {last_exc})" if last_exc else ""))
        time.sleep(interval)


def wait_for_db(timeout: float = 120, *, container: str = DB_CONTAINER) -> None:
    """Wait until the DB container accepts SQL on database template1."""
    wait_until(lambda: psql("SELECT 1", "template1", timeout=10, container=container) == "1",
               timeout=timeout, what=f"{container} to accept connections")


_SEEDED_SQL = (
    "SELECT to_regclass('public.knowledge_base') IS NOT NULL"
    " AND to_regclass('public.learned_constraints') IS NOT NULL"
    " AND to_regclass('public.feedback_audit_log') IS NOT NULL"
    " AND to_regprocedure('public.match_knowledge(vector,double precision,integer)') IS NOT NULL")


def stack_is_healthy(containers: Sequence[str] = ALL_CONTAINERS, *, seeded: bool = True) -> bool:
    """Quick check (~0.2 s): containers running, DB (the first container) answering
    on database ``postgres``, seed schema present (when ``seeded``)."""
    if any(container_status(name) != "running" for name in containers):
        return False
    try:
        answer = psql(_SEEDED_SQL if seeded else "SELECT true", DB_NAME, timeout=20, container=containers[0])
    except (TestbedError, subprocess.TimeoutExpired):
        return False
    return answer == "t"


# ------------------------------------------------------------------ docker --

@functools.lru_cache(maxsize=None)
def docker_client():
    """A cached ``docker.from_env()`` client (Docker SDK for Python)."""
    import docker  # imported lazily: unit tests must not need it

    return docker.from_env()


def container(name: str):
    """docker SDK Container object (reloaded)."""
    c = docker_client().containers.get(name)
    c.reload()
    return c


def container_status(name: str) -> str:
    """'running', 'exited', ... or 'absent'."""
    import docker

    try:
        return container(name).status
    except docker.errors.NotFound:
        return "absent"


def start_containers(*names: str) -> None:
    """Start the named containers (default: this run's stack)."""
    for name in names or ALL_CONTAINERS:
        c = container(name)
        if c.status != "running":
            c.start()


def stop_containers(*names: str, timeout: int = 10) -> None:
    """Stop the named containers (default: this run's stack)."""
    for name in names or ALL_CONTAINERS:
        c = container(name)
        if c.status == "running":
            c.stop(timeout=timeout)


# ----------------------------------------------------------------- ansible --

def make_collections_path(base_dir: Optional[os.PathLike] = None) -> str:
    """Create ``<base>/ansible_collections/cortexreview/supabase_backup`` as a
    symlink to the repo root and return ``<base>`` (for ANSIBLE_COLLECTIONS_PATH)."""
    base = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="cortexreview-collections-"))
    ns_dir = base / "ansible_collections" / COLLECTION_NAMESPACE
    ns_dir.mkdir(parents=True, exist_ok=True)
    link = ns_dir / COLLECTION_NAME
    if link.is_symlink() and Path(os.readlink(link)) != REPO_ROOT:
        link.unlink()
    if not link.exists():
        link.symlink_to(REPO_ROOT, target_is_directory=True)
    return str(base)


@functools.lru_cache(maxsize=None)
def _default_collections_path() -> str:
    return make_collections_path()


def ansible_env(collections_path: Optional[str] = None,
                extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """Environment for ansible-playbook: our collection first, then the default
    collection paths; python interpreter pinned to ``sys.executable``."""
    cpath = collections_path or _default_collections_path()
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": os.pathsep.join(
            [cpath, os.path.expanduser("~/.ansible/collections"), "/usr/share/ansible/collections"]),
        "ANSIBLE_ROLES_PATH": str(REPO_ROOT / "roles"),
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_HOST_KEY_CHECKING": "0",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
        "PY_COLORS": "0",
    })
    env.pop("ANSIBLE_CONFIG", None)
    if extra:
        env.update(extra)
    return env


def _local_inventory(workdir: Path) -> Path:
    inv = workdir / "inventory.ini"
    inv.write_text(
        "localhost ansible_connection=local "
        f"ansible_python_interpreter={sys.executable}\n", encoding="utf-8")
    return inv


# Characters PyYAML refuses even inside quoted scalars (must be escaped).
_YAML_NON_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _unsafe_flow_yaml(value: Any) -> str:
    """``value`` as a YAML flow node tagged ``!unsafe``: Ansible passes every
    string in it verbatim (no Jinja2 templating of '{{', '{%').

    NB ansible-core 2.19: ``!unsafe "yes"`` on a *single quoted scalar* loses
    its quoting and becomes a bool -- so the tag goes on the whole JSON
    (= YAML flow) collection, whose inner scalars keep their quotes.
    """
    text = json.dumps(value, ensure_ascii=False, default=os.fspath)
    text = _YAML_NON_PRINTABLE.sub(lambda m: "\\u%04x" % ord(m.group()), text)
    return "!unsafe " + text


def fqcn(module: str) -> str:
    """``supabase_dump`` -> ``cortexreview.supabase_backup.supabase_dump``."""
    return module if "." in module else f"{COLLECTION_PREFIX}.{module}"


def stack_module_defaults(stack: "Stack") -> Dict[str, Dict[str, Any]]:
    """``module_defaults`` that point the collection's modules at ``stack`` (its DB container,
    writers and volume) instead of the default stack's names built into the modules."""
    return {
        f"group/{COLLECTION_PREFIX}.supabase": {"container": stack.db_container},
        fqcn("supabase_restore"): {"stop_containers": list(stack.app_containers)},
        fqcn("volume_snapshot"): {"volume": stack.volume},
        fqcn("pitr_restore"): {"stop_containers": list(stack.app_containers), "volume": stack.volume},
    }


def play_module_defaults(stack: Optional["Stack"] = None) -> str:
    """A play's ``module_defaults:`` line (with its leading newline and indent) pointing the
    modules at ``stack``, default this run's; '' for the default stack, whose names the
    modules have built in. For the playbooks tests write themselves."""
    if stack is None:
        if STACK_NAME == DEFAULT_STACK_NAME:
            return ""
        stack = Stack()
    # JSON is YAML; the names hold only [a-z0-9_-], nothing to template
    return "\n  module_defaults: " + json.dumps(stack_module_defaults(stack))


def stack_role_vars(stack: Optional["Stack"] = None) -> Dict[str, Any]:
    """Role variables that point the roles at ``stack`` (default: this run's) instead of the default
    stack's names in the roles' defaults: its DB container, writers and volume."""
    stack = stack or Stack()
    return {"supabase_backup_container": stack.db_container,
            "supabase_restore_stop_containers": list(stack.app_containers),
            "volume_snapshot_volume": stack.volume}


RESULT_TASK_NAME = "Show the registered result"


def save_result_task(expression: str) -> str:
    """A last task (YAML, in a play's task list) whose value of ``expression`` the test-only callback
    callback_plugins/registered_result.py writes to the file :func:`saving_result_env` names: the
    ``debug`` action runs on the controller, where a ``copy`` task would run two modules on the host
    (about 2 s a play on 2 cores)."""
    return (f"    - name: {RESULT_TASK_NAME}\n"
            "      ansible.builtin.debug:\n"
            f"        var: {json.dumps(expression)}\n")


def saving_result_env(env: Mapping[str, str], out: os.PathLike) -> Dict[str, str]:
    """``env`` with the callback of :func:`save_result_task` enabled, writing to ``out``."""
    env = dict(env)
    enabled = [name for name in env.get("ANSIBLE_CALLBACKS_ENABLED", "").split(",") if name]
    env.update({
        "CORTEXREVIEW_RESULT_FILE": str(out),
        "CORTEXREVIEW_RESULT_TASK": RESULT_TASK_NAME,
        "ANSIBLE_CALLBACK_PLUGINS": str(Path(__file__).resolve().parent / "callback_plugins"),
        "ANSIBLE_CALLBACKS_ENABLED": ",".join(enabled + ["registered_result"]),
    })
    return env


def run_module(module: str, args: Optional[Mapping[str, Any]] = None, check: bool = False, *,
               diff: bool = False, collections_path: Optional[str] = None,
               env: Optional[Mapping[str, str]] = None, timeout: float = 1800,
               keep_workdir: bool = False, stack: Optional["Stack"] = None) -> Dict[str, Any]:
    """Run one module on localhost through ``ansible-playbook``; return its result dict.

    ``stack``: the stack the module works on when ``args`` name none (see
    :func:`stack_module_defaults`); default: this run's stack, whose names the modules
    already have built in when it is the default stack.

    A one-task playbook registers the result (``ignore_errors: true``) and a
    ``debug`` task shows it, which callback_plugins/registered_result.py writes to a
    file, so failures come back as dicts too (``result['failed']``, ``result['msg']``). ``module`` may be
    a short name (prefixed with ``cortexreview.supabase_backup.``) or a FQCN.
    Args are tagged ``!unsafe`` (strings are never templated). Raises
    :class:`TestbedError` only when ansible-playbook produced no result.
    """
    workdir = Path(tempfile.mkdtemp(prefix="cortexreview-run-module-"))
    try:
        os.chmod(workdir, 0o700)
        out = workdir / "result.json"
        task_args = " " + _unsafe_flow_yaml(dict(args or {}))
        defaults = play_module_defaults(stack)
        playbook = workdir / "playbook.yml"
        playbook.write_text(f"""---
- name: run_module {module}
  hosts: localhost
  gather_facts: false{defaults}
  tasks:
    - name: Run {fqcn(module)}
      {fqcn(module)}:{task_args}
      register: result
      ignore_errors: true
      check_mode: {"true" if check else "false"}
      diff: {"true" if diff else "false"}

{save_result_task("result")}""", encoding="utf-8")
        inv = _local_inventory(workdir)
        proc = _run([sys.executable, "-m", "ansible", "playbook", "-i", str(inv), str(playbook)],
                    env=saving_result_env(ansible_env(collections_path, env), out), cwd=workdir, timeout=timeout)
        if not out.exists():
            raise TestbedError(f"ansible-playbook produced no result for {fqcn(module)}",
                               returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)
        return json.loads(out.read_text(encoding="utf-8"))
    finally:
        if not keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def run_playbook(path: os.PathLike, extra_vars: Optional[Mapping[str, Any]] = None, *,
                 check: bool = False, diff: bool = False, inventory: Optional[os.PathLike] = None,
                 limit: Optional[str] = None, tags: Optional[Iterable[str]] = None,
                 extra_args: Sequence[str] = (), collections_path: Optional[str] = None,
                 env: Optional[Mapping[str, str]] = None, cwd: Optional[os.PathLike] = None,
                 timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run ``ansible-playbook <path>`` (as ``sys.executable -m ansible playbook``).

    ``extra_vars`` go through a 0600 JSON file (``-e @file``), never argv.
    Default inventory: localhost, local connection, ``sys.executable`` as
    interpreter. Returns the CompletedProcess (text, not checked).
    """
    workdir = Path(tempfile.mkdtemp(prefix="cortexreview-run-playbook-"))
    try:
        os.chmod(workdir, 0o700)
        argv: List[str] = [sys.executable, "-m", "ansible", "playbook",
                           "-i", str(inventory) if inventory else str(_local_inventory(workdir))]
        if extra_vars:
            ev = workdir / "extra_vars.json"
            fd = os.open(ev, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(dict(extra_vars), fh, default=os.fspath)
            argv += ["-e", f"@{ev}"]
        if check:
            argv.append("--check")
        if diff:
            argv.append("--diff")
        if limit:
            argv += ["--limit", limit]
        if tags:
            argv += ["--tags", ",".join(tags)]
        argv += [*extra_args, str(Path(path).resolve())]
        return _run(argv, env=ansible_env(collections_path, env),
                    cwd=cwd if cwd is not None else workdir, timeout=timeout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# ------------------------------------------------------------------- Stack --

def _on_db(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` as a Stack method run on that stack's DB container."""
    @functools.wraps(func)
    def method(self: "Stack", *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("container", self.db_container)
        return func(*args, **kwargs)
    return method


@dataclass
class Stack:
    """One test-bed stack by name (default: this run's): its names and helpers bound to it.

    ``Stack("other")`` only names a stack; :func:`stack_up` starts one and returns it.
    ``seed=False`` marks a stack kept empty (a new host): its health check and
    :meth:`ensure_healthy` then never load the seed.
    """

    name: str = STACK_NAME
    seed: bool = True
    profile: str = "plain"
    project: str = field(init=False)
    db_container: str = field(init=False)
    api_container: str = field(init=False)
    worker_container: str = field(init=False)
    app_containers: tuple = field(init=False)
    containers: tuple = field(init=False)
    volume: str = field(init=False)
    network: str = field(init=False)
    port: int = field(init=False)
    # the supabase profile's (None for a plain stack)
    storage_container: Optional[str] = field(init=False, default=None)
    config_volume: Optional[str] = field(init=False, default=None)
    project_dir: Optional[str] = field(init=False, default=None)
    env_file: Optional[str] = field(init=False, default=None)
    storage_dir: Optional[str] = field(init=False, default=None)
    db_image: str = DB_IMAGE
    app_image: str = APP_IMAGE
    host: str = DB_HOST
    user: str = DB_USER
    password: str = DB_PASSWORD
    database: str = DB_NAME
    data_dir: str = DB_DATA_DIR
    compose_file: Path = COMPOSE_FILE
    stack_sh: Path = STACK_SH
    seed_sql: Path = SEED_SQL
    expected_seed_counts: Dict[str, int] = field(default_factory=lambda: dict(SEED_ROW_COUNTS))

    def __post_init__(self) -> None:
        for key, value in stack_names(self.name, self.profile).items():
            setattr(self, key, value)
        self.app_containers = (self.api_container, self.worker_container)
        self.containers = (self.db_container, *self.app_containers)
        if self.storage_container:
            self.containers += (self.storage_container,)

    @property
    def docker(self):
        """docker SDK client (``docker.from_env()``)."""
        return docker_client()

    def env_values(self) -> Dict[str, str]:
        """A supabase stack's ``.env`` as a dict ({} for a plain stack)."""
        if not self.env_file:
            return {}
        values = {}
        for line in Path(self.env_file).read_text(encoding="utf-8").splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                key, value = line.split("=", 1)
                values[key.strip()] = value
        return values

    def db_password(self) -> str:
        """The ``postgres`` role's first-start password: the .env's POSTGRES_PASSWORD for a
        supabase stack (new for every fresh stack), :data:`DB_PASSWORD` for a plain one."""
        return self.env_values()["POSTGRES_PASSWORD"] if self.env_file else self.password

    def dsn(self, db: str = DB_NAME, *, user: Optional[str] = None, password: Optional[str] = None) -> str:
        password = self.db_password() if password is None else password
        return f"host={self.host} port={self.port} user={user or self.user} password={password} dbname={db}"

    # helpers on this stack's DB container (see the module-level functions for docs)
    psql = _on_db(psql)
    psql_rows = _on_db(psql_rows)
    psql_value = _on_db(psql_value)
    table_counts = _on_db(table_counts)
    seed_counts = _on_db(seed_row_counts)
    writer_rows = _on_db(writer_rows)
    index_names = _on_db(index_names)
    function_names = _on_db(function_names)
    database_exists = _on_db(database_exists)
    list_databases = _on_db(list_databases)
    pg_dump = _on_db(pg_dump)
    wait_for_db = _on_db(wait_for_db)
    wait_until = staticmethod(wait_until)
    container = staticmethod(container)
    container_status = staticmethod(container_status)
    docker_exec = staticmethod(docker_exec)

    def start_containers(self, *names: str) -> None:
        start_containers(*(names or self.containers))

    def stop_containers(self, *names: str, timeout: int = 10) -> None:
        stop_containers(*(names or self.containers), timeout=timeout)

    def up(self) -> None:
        """``stack.sh up`` (``--no-seed`` for a stack kept empty)."""
        stack_up(self.name, seed=self.seed, profile=self.profile)

    def down(self) -> None:
        """Remove the containers, network and volumes (and a supabase stack's project dir)."""
        stack_down(self.name, profile=self.profile)

    def reset(self, postgres_password: Optional[str] = None) -> None:
        """Fresh volumes: seeded, or empty for a stack with ``seed=False``; a supabase
        stack also gets a new .env (``postgres_password`` or a random one) and root key."""
        stack_down(self.name, profile=self.profile)
        stack_up(self.name, seed=self.seed, profile=self.profile, postgres_password=postgres_password)

    def reseed(self) -> None:
        stack_cmd("seed", name=self.name, profile=self.profile)

    def is_healthy(self) -> bool:
        """All containers running, database ``postgres`` answering (and seeded)."""
        return stack_is_healthy(self.containers, seeded=self.seed)

    def ensure_healthy(self) -> None:
        """Make the stack usable again after a destructive test: all three
        containers running, database ``postgres`` present (and seeded).
        Cheap check first; ``stack.sh up`` only when something is off."""
        if not self.is_healthy():
            self.up()


# ------------------------------------------------- supabase profile: fingerprint --
# What must come back identical after a backup is restored onto a fresh stack. Rows the
# writers add all the time, and their sequence, are left out (they keep writing).
WRITER_ROWS = {("public", "feedback_audit_log"): "actor NOT IN ('api', 'worker')"}
WRITER_SEQUENCES = {("public", "feedback_audit_log_id_seq")}
ROOT_KEY_PATH = "/etc/postgresql-custom/pgsodium_root.key"
# the collection's own scratch and previous copies are not the stack's databases
_OWN_COPY = re.compile(r"_(pre_restore|restore|validate)_\d{8}_\d{6}$")
# the services' logins whose first-start password is POSTGRES_PASSWORD (roles.sql)
SERVICE_LOGINS = ("supabase_admin", "authenticator", "pgbouncer", "supabase_auth_admin",
                  "supabase_functions_admin", "supabase_storage_admin")

_USER_SCHEMA = "n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'"


def _acl(expr: str, default: str = "NULL") -> str:
    """SQL: an aclitem[] as sorted text (the grant order is not state); NULL is ``default``
    (``acldefault(...)``: a NULL ACL and one spelling out the default are the same privileges,
    and pg_dump writes nothing for either), else 'default'."""
    return (f"coalesce((SELECT string_agg(a::text, ' ' ORDER BY a::text) FROM unnest(coalesce({expr}, {default})) AS a),"
            " 'default')")


def _sorted_array(expr: str) -> str:
    return f"coalesce((SELECT string_agg(x::text, E'\\n' ORDER BY x::text) FROM unnest({expr}) AS x), '')"


_DB_ACL = _acl("d.datacl", "acldefault('d', d.datdba)")
_SCHEMA_ACL = _acl("n.nspacl", "acldefault('n', n.nspowner)")
_RELATION_ACL = _acl("c.relacl", "acldefault((CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END)::\"char\", c.relowner)")
_FUNCTION_ACL = _acl("p.proacl", "acldefault('f', p.proowner)")

_DATABASE_QUERIES = {
    "database": f"""
        SELECT d.datname, pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate,
               d.datctype, d.datlocprovider, d.datconnlimit, d.datallowconn, {_DB_ACL},
               coalesce(shobj_description(d.oid, 'pg_database'), '')
        FROM pg_database d WHERE d.datname = current_database()""",
    "database_settings": f"""
        SELECT coalesce(r.rolname, ''), {_sorted_array('s.setconfig')}
        FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole
        WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
        ORDER BY 1""",
    "schemas": f"""
        SELECT n.nspname, pg_get_userbyid(n.nspowner), {_SCHEMA_ACL},
               coalesce(obj_description(n.oid, 'pg_namespace'), '')
        FROM pg_namespace n WHERE {_USER_SCHEMA} ORDER BY 1""",
    "relations": f"""
        SELECT n.nspname, c.relname, c.relkind, pg_get_userbyid(c.relowner), {_RELATION_ACL},
               c.relrowsecurity, c.relforcerowsecurity, c.relpersistence,
               coalesce(obj_description(c.oid, 'pg_class'), '')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND {_USER_SCHEMA} ORDER BY 1, 2""",
    "columns": f"""
        SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               coalesce(pg_get_expr(ad.adbin, ad.adrelid), ''), a.attidentity, a.attgenerated,
               {_acl('a.attacl')}
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
        WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND {_USER_SCHEMA}
        ORDER BY n.nspname, c.relname, a.attnum""",
    "indexes": """
        SELECT schemaname, tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname !~ '^pg_' AND schemaname <> 'information_schema' ORDER BY 1, 2, 3""",
    "constraints": f"""
        SELECT n.nspname, coalesce(c.relname, ''), co.conname, pg_get_constraintdef(co.oid)
        FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace
        LEFT JOIN pg_class c ON c.oid = co.conrelid
        WHERE {_USER_SCHEMA} ORDER BY 1, 2, 3""",
    "triggers": """
        SELECT t.tgrelid::regclass::text, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled
        FROM pg_trigger t WHERE NOT t.tgisinternal ORDER BY 1, 2""",
    "policies": f"""
        SELECT schemaname, tablename, policyname, permissive, {_sorted_array('roles')}, cmd,
               coalesce(qual, ''), coalesce(with_check, '')
        FROM pg_policies ORDER BY 1, 2, 3""",
    "functions": f"""
        SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), p.prokind,
               pg_get_userbyid(p.proowner), {_FUNCTION_ACL}, p.prosecdef, p.provolatile,
               {_sorted_array('p.proconfig')}, md5(coalesce(p.prosrc, '')),
               pg_get_function_result(p.oid)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE {_USER_SCHEMA} ORDER BY 1, 2, 3""",
    "default_privileges": f"""
        SELECT pg_get_userbyid(d.defaclrole), coalesce(n.nspname, ''), d.defaclobjtype,
               {_acl('d.defaclacl')}
        FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
        ORDER BY 1, 2, 3""",
    "event_triggers": f"""
        SELECT evtname, evtevent, pg_get_userbyid(evtowner), evtfoid::regprocedure::text, evtenabled,
               {_sorted_array('evttags')}
        FROM pg_event_trigger ORDER BY 1""",
    "extensions": """
        SELECT e.extname, e.extversion, n.nspname, pg_get_userbyid(e.extowner)
        FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace ORDER BY 1""",
    "publications": """
        SELECT p.pubname, pg_get_userbyid(p.pubowner), p.puballtables, p.pubinsert, p.pubupdate,
               p.pubdelete, p.pubtruncate,
               coalesce((SELECT string_agg(t.schemaname || '.' || t.tablename, ' '
                                           ORDER BY t.schemaname, t.tablename)
                         FROM pg_publication_tables t WHERE t.pubname = p.pubname), '')
        FROM pg_publication p ORDER BY 1""",
}

_CLUSTER_QUERIES = {
    # the SCRAM verifier only as its md5: equal verifiers = the same password, nothing to leak
    "roles": """
        SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin,
               rolreplication, rolbypassrls, rolconnlimit, coalesce(rolvaliduntil::text, ''),
               coalesce(md5(rolpassword), ''), coalesce(shobj_description(oid, 'pg_authid'), '')
        FROM pg_authid WHERE rolname !~ '^pg_' ORDER BY 1""",
    "memberships": """
        SELECT r.rolname, m.rolname, g.rolname, am.admin_option, am.inherit_option, am.set_option
        FROM pg_auth_members am JOIN pg_roles r ON r.oid = am.roleid
        JOIN pg_roles m ON m.oid = am.member JOIN pg_roles g ON g.oid = am.grantor
        WHERE m.rolname !~ '^pg_' ORDER BY 1, 2, 3""",
    "role_settings": f"""
        SELECT coalesce(d.datname, ''), coalesce(r.rolname, ''), {_sorted_array('s.setconfig')}
        FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole
        LEFT JOIN pg_database d ON d.oid = s.setdatabase ORDER BY 1, 2""",
    "databases": """
        SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1""",
}


def _rows_fingerprint(stack: "Stack", db: str) -> Dict[str, List[Any]]:
    """Per table: row count and an md5 over its rows' md5s (as text, sorted); per sequence its state."""
    tables = stack.psql_rows(f"""
        SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND {_USER_SCHEMA}
        ORDER BY 1, 2""", db)
    result: Dict[str, List[Any]] = {}
    if tables:
        selects = []
        for i, (nsp, rel) in enumerate(tables):
            where = WRITER_ROWS.get((nsp, rel), "true")
            # one md5 per row first: a large table never becomes one huge text value
            selects.append(f"SELECT {i}, count(*), coalesce(md5(string_agg(h, '' ORDER BY h)), '')"
                           f" FROM (SELECT md5(t::text) AS h FROM {_quote_ident(nsp)}.{_quote_ident(rel)} AS t"
                           f" WHERE {where}) AS rows")
        for i, count, digest in stack.psql_rows("\nUNION ALL ".join(selects), db):
            nsp, rel = tables[int(i)]
            result[f"{nsp}.{rel}"] = [int(count), digest]
    for nsp, seq, last_value in stack.psql_rows(
            "SELECT schemaname, sequencename, coalesce(last_value::text, 'not called') FROM pg_sequences "
            "ORDER BY 1, 2", db):
        if (nsp, seq) not in WRITER_SEQUENCES:
            result[f"sequence {nsp}.{seq}"] = [last_value]
    return result


def database_fingerprint(stack: "Stack", db: str) -> Dict[str, Any]:
    """Everything of database ``db`` a restore must bring back: settings, owners, ACLs,
    columns, constraints, indexes, triggers, policies and RLS flags, functions, default
    privileges, event triggers, extensions, publications, and every table's rows."""
    found: Dict[str, Any] = {key: [list(r) for r in stack.psql_rows(sql, db)]
                             for key, sql in _DATABASE_QUERIES.items()}
    found["rows"] = _rows_fingerprint(stack, db)
    return found


def cluster_fingerprint(stack: "Stack") -> Dict[str, Any]:
    """Roles with their attributes and password verifiers (as md5s), memberships with their
    options and grantors, every role and database setting, the databases' names."""
    found = {key: [list(r) for r in stack.psql_rows(sql, "postgres")] for key, sql in _CLUSTER_QUERIES.items()}
    found["databases"] = [r for r in found["databases"] if not _OWN_COPY.search(r[0])]
    found["role_settings"] = [r for r in found["role_settings"] if not _OWN_COPY.search(r[0])]
    return found


def files_fingerprint(root: os.PathLike) -> Dict[str, Dict[str, Any]]:
    """Every entry below ``root`` (not ``root`` itself), by relative path: type, owner, group,
    mode, extended attributes (all of them, values hex), sha256 and size of a file, target of a
    symlink. Times are left out. Raises FileNotFoundError when ``root`` is missing."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(root)
    found: Dict[str, Dict[str, Any]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            entry: Dict[str, Any] = {"uid": st.st_uid, "gid": st.st_gid, "mode": oct(stat.S_IMODE(st.st_mode))}
            if stat.S_ISLNK(st.st_mode):
                entry.update(type="symlink", target=os.readlink(path))
            else:
                entry["xattrs"] = {key: os.getxattr(path, key, follow_symlinks=False).hex()
                                   for key in sorted(os.listxattr(path, follow_symlinks=False))}
                if stat.S_ISDIR(st.st_mode):
                    entry["type"] = "dir"
                else:
                    with open(path, "rb") as fh:
                        digest = hashlib.sha256(fh.read()).hexdigest()
                    entry.update(type="file", size=st.st_size, sha256=digest)
            found[os.path.relpath(path, root)] = entry
    return found


def root_key_fingerprint(stack: "Stack") -> Dict[str, str]:
    """The root key file in the DB container: sha256, owner and mode (never the key)."""
    digest = stack.docker_exec(stack.db_container, ["sha256sum", ROOT_KEY_PATH]).stdout.split()[0]
    owner_mode = stack.docker_exec(stack.db_container, ["stat", "-c", "%u:%g %a", ROOT_KEY_PATH]).stdout.strip()
    return {"sha256": digest, "owner_mode": owner_mode}


def supabase_fingerprint(stack: "Stack") -> Dict[str, Any]:
    """All of a supabase stack that a full restore must bring back, in one comparable dict:
    the cluster (roles, memberships, settings), every database (see
    :func:`database_fingerprint`), the root key's checksum, the Storage files with bytes,
    owners, modes and xattrs, and the deployment files (.env, docker-compose.yml)."""
    if stack.profile != "supabase":
        raise ValueError(f"stack {stack.name} has the {stack.profile} profile, not supabase")
    cluster = cluster_fingerprint(stack)
    databases = [row[0] for row in cluster["databases"] if not _OWN_COPY.search(row[0])]
    deployment = {}
    for name in (".env", "docker-compose.yml"):
        path = Path(stack.project_dir) / name
        st = path.stat()
        deployment[name] = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                            "mode": oct(stat.S_IMODE(st.st_mode)), "uid": st.st_uid, "gid": st.st_gid}
    return {
        "cluster": cluster,
        "databases": {db: database_fingerprint(stack, db) for db in databases},
        "root_key": root_key_fingerprint(stack),
        "storage": files_fingerprint(stack.storage_dir),
        "deployment": deployment,
    }


def fingerprint_diff(before: Mapping[str, Any], after: Mapping[str, Any], path: str = "") -> List[str]:
    """Where two fingerprints differ, one short line per difference (for assertion messages)."""
    diffs: List[str] = []
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        for key in sorted(set(before) | set(after), key=str):
            where = f"{path}/{key}"
            if key not in after:
                diffs.append(f"{where}: missing after")
            elif key not in before:
                diffs.append(f"{where}: new after")
            else:
                diffs.extend(fingerprint_diff(before[key], after[key], where))
    elif isinstance(before, list) and isinstance(after, list) and before != after \
            and all(isinstance(x, list) for x in before + after):
        gone = [x for x in before if x not in after]
        new = [x for x in after if x not in before]
        diffs.extend(f"{path}: only before: {row}" for row in gone[:10])
        diffs.extend(f"{path}: only after: {row}" for row in new[:10])
        if not gone and not new:
            diffs.append(f"{path}: same rows, another order")
    elif before != after:
        diffs.append(f"{path}: {str(before)[:200]} != {str(after)[:200]}")
    return diffs


def can_log_in(stack: "Stack", user: str, password: str, db: str = DB_NAME) -> bool:
    """True when ``user`` logs in with ``password`` over TCP (scram-sha-256 in pg_hba.conf),
    False when the server refuses the password."""
    import psycopg2  # imported lazily: unit tests must not need it

    try:
        conn = psycopg2.connect(stack.dsn(db, user=user, password=password), connect_timeout=10)
    except psycopg2.OperationalError as exc:
        if "password authentication failed" in str(exc):
            return False
        raise
    conn.close()
    return True
