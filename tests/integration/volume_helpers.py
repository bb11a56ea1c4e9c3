# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers for the volume_snapshot integration tests.

Everything is real: Docker, PostgreSQL, ansible-playbook. The tests never touch the shared
test-bed stack (cortexreview-supabase-db and its volume): they run DB containers of their
own, from the same image, on volumes (or host directories) of their own.

:func:`run_steps` runs several tasks in ONE ansible-playbook process (its start-up is most
of a module call's cost): module calls and plain commands, each registered under its key.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

import testbed

DB_DATA_DIR = testbed.DB_DATA_DIR
PASSWORD = "voltest-password"  # test-only
TEST_LABEL = "org.cortexreview.test"
HELPER_LABEL = "org.cortexreview.supabase_backup.volume-helper"
ASIDE_PREFIX = ".cortexreview-restore-"
PROBE_DIR = "cortexreview_probe"


# ---------------------------------------------------------------- docker --

@dataclass
class DbBox:
    """A DB container of the tests' own, on a named volume or a bind-mounted host directory."""

    name: str
    volume: Optional[str] = None
    path: Optional[str] = None

    @property
    def module_args(self) -> Dict[str, Any]:
        args: Dict[str, Any] = {"container": self.name}
        if self.path:
            args["path"] = self.path
        else:
            args["volume"] = self.volume
        return args

    def create(self) -> None:
        from docker.types import Mount

        client = testbed.docker_client()
        if self.volume:
            client.volumes.create(self.volume, labels={TEST_LABEL: "volume_snapshot"})
            mount = Mount(DB_DATA_DIR, self.volume, type="volume")
        else:
            mount = Mount(DB_DATA_DIR, self.path, type="bind")
        client.containers.run(
            testbed.DB_IMAGE, name=self.name, detach=True, environment={"POSTGRES_PASSWORD": PASSWORD},
            mounts=[mount], shm_size="256m", labels={TEST_LABEL: "volume_snapshot"})
        self.wait_ready()

    def remove(self) -> None:
        client = testbed.docker_client()
        import docker

        for container in client.containers.list(all=True, filters={"label": f"{HELPER_LABEL}={self.name}"}):
            container.remove(force=True, v=True)
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(self.name).remove(force=True, v=True)
        if self.volume:
            with contextlib.suppress(docker.errors.NotFound):
                client.volumes.get(self.volume).remove(force=True)

    # state

    def inspect(self) -> Dict[str, Any]:
        return testbed.docker_client().api.inspect_container(self.name)

    def started_at(self) -> str:
        return self.inspect()["State"]["StartedAt"]

    def running(self) -> bool:
        return bool(self.inspect()["State"]["Running"])

    def accepts_connections(self) -> bool:
        proc = testbed.docker_exec(self.name, ["pg_isready", "-q", "-h", "127.0.0.1"], check=False, timeout=30)
        return proc.returncode == 0

    def wait_ready(self, timeout: float = 120) -> None:
        # TCP: during the first start's initdb the temporary server listens on the socket only.
        testbed.wait_until(self.accepts_connections, timeout=timeout, what=f"{self.name} to accept connections")

    def helpers(self) -> List[str]:
        return [c.name for c in testbed.docker_client().containers.list(
            all=True, filters={"label": f"{HELPER_LABEL}={self.name}"})]

    # contents

    def sh(self, *argv: str) -> str:
        """Run argv as root inside the DB container; returns stdout."""
        return testbed.docker_exec(self.name, list(argv), user="0").stdout

    def psql(self, sql: str, db: str = "postgres") -> str:
        return testbed.psql(sql, db, container=self.name)

    def top_level(self) -> List[str]:
        return sorted(self.sh("ls", "-A", DB_DATA_DIR).split())

    def make_probes(self) -> None:
        """Things only a faithful archive keeps: owners, odd modes, setgid, symlinks."""
        probe = f"{DB_DATA_DIR}/{PROBE_DIR}"
        self.sh("mkdir", "-p", probe)
        self.sh("chown", "999:999", probe)
        self.sh("chmod", "2750", probe)
        self.sh("cp", f"{DB_DATA_DIR}/PG_VERSION", f"{probe}/secret")
        self.sh("chown", "1234:4321", f"{probe}/secret")
        self.sh("chmod", "0640", f"{probe}/secret")
        self.sh("ln", "-s", "../PG_VERSION", f"{probe}/relative-link")
        self.sh("ln", "-s", "/nonexistent/target", f"{probe}/dangling-link")
        self.sh("chown", "-h", "999:999", f"{probe}/relative-link")

    def probes(self) -> str:
        """Owner, group, mode, type and link target of the probes and of the data directory itself."""
        probe = f"{DB_DATA_DIR}/{PROBE_DIR}"
        return self.sh("stat", "-c", "%n %u %g %a %F %N", DB_DATA_DIR, probe, f"{probe}/secret",
                       f"{probe}/relative-link", f"{probe}/dangling-link")

    def fingerprint(self) -> Dict[str, str]:
        """{table: 'rows:md5 of all rows'} of every table of schema public (a dropped table disappears)."""
        tables = [r[0] for r in testbed.psql_rows(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1", container=self.name)]
        if not tables:
            return {}
        parts = ["SELECT %d, count(*) || ':' || md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '')) "
                 "FROM public.%s x" % (number, '"' + table.replace('"', '""') + '"')
                 for number, table in enumerate(tables)]
        rows = testbed.psql_rows("\nUNION ALL ".join(parts), container=self.name)
        return {tables[int(number)]: value for number, value in rows}


@contextlib.contextmanager
def seeded_box(name: str, volume: str, probes: bool = False) -> Iterator[DbBox]:
    """A DB container of the tests' own on its own named volume, seeded with seed.sql; removed afterwards."""
    db = DbBox(name=name, volume=volume)
    db.remove()  # leftovers of an interrupted run
    try:
        db.create()
        db.psql(testbed.SEED_SQL.read_text(encoding="utf-8"))
        if probes:
            db.make_probes()
        yield db
    finally:
        db.remove()


# --------------------------------------------------------------- ansible --

def module_step(key: str, module: str, args: Mapping[str, Any], check: bool = False,
                template: bool = False) -> Dict[str, Any]:
    """A module call; ``template=True`` lets Ansible template its args (e.g. ``{{ r_snap.path }}``)."""
    return {"key": key, "module": module, "args": dict(args), "check": check, "template": template}


def command_step(key: str, argv: Sequence[str]) -> Dict[str, Any]:
    return {"key": key, "argv": list(argv)}


def run_steps(collections_path: str, steps: Sequence[Mapping[str, Any]], timeout: float = 900) -> Dict[str, Any]:
    """Run the steps in one ansible-playbook; returns {key: registered result}. Failures do not stop it."""
    workdir = Path(tempfile.mkdtemp(prefix="cortexreview-volume-steps-"))
    try:
        os.chmod(workdir, 0o700)
        out = workdir / "results.json"
        lines = ["---", "- name: volume_snapshot integration steps", "  hosts: localhost",
                 "  gather_facts: false", "  tasks:"]
        for step in steps:
            lines.append(f"    - name: {step['key']}")
            if "argv" in step:
                lines += ["      ansible.builtin.command:",
                          f"        argv: {testbed._unsafe_flow_yaml(step['argv'])}",  # pylint: disable=protected-access
                          "      check_mode: false",
                          "      changed_when: false"]
            else:
                args = (json.dumps(step["args"]) if step["template"]
                        else testbed._unsafe_flow_yaml(step["args"]))  # pylint: disable=protected-access
                lines += [f"      {testbed.fqcn(step['module'])}: {args}",
                          f"      check_mode: {'true' if step['check'] else 'false'}"]
            lines += [f"      register: r_{step['key']}", "      ignore_errors: true"]
        results = "{" + ", ".join(f"'{s['key']}': r_{s['key']}" for s in steps) + "}"
        playbook = workdir / "playbook.yml"
        playbook.write_text("\n".join(lines) + "\n" + testbed.save_result_task(results), encoding="utf-8")
        inventory = workdir / "inventory.ini"
        inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n",
                             encoding="utf-8")
        proc = subprocess.run([sys.executable, "-m", "ansible", "playbook", "-i", str(inventory), str(playbook)],
                              capture_output=True, text=True, timeout=timeout, cwd=workdir,
                              env=testbed.saving_result_env(testbed.ansible_env(collections_path), out), check=False)
        if not out.exists():
            raise testbed.TestbedError("ansible-playbook produced no results", returncode=proc.returncode,
                                       stdout=proc.stdout, stderr=proc.stderr)
        return json.loads(out.read_text(encoding="utf-8"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_playbook(collections_path: str, path: os.PathLike, extra_vars: Mapping[str, Any], check: bool = False,
                 timeout: float = 900) -> subprocess.CompletedProcess:
    """``ansible-playbook path`` on localhost with stdin from /dev/null, so a pause prompt never waits."""
    workdir = Path(tempfile.mkdtemp(prefix="cortexreview-volume-playbook-"))
    try:
        os.chmod(workdir, 0o700)
        variables = workdir / "extra_vars.json"
        write_file(variables, json.dumps(dict(extra_vars)).encode("utf-8"))
        inventory = workdir / "inventory.ini"
        inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n",
                             encoding="utf-8")
        return subprocess.run([sys.executable, "-m", "ansible", "playbook", "-i", str(inventory),
                               "-e", f"@{variables}", *(["--check"] if check else []), str(path)],
                              stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout, cwd=workdir, env=testbed.ansible_env(collections_path),
                              check=False)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def assert_ok(result: Mapping[str, Any]) -> None:
    assert result.get("failed") is not True, json.dumps(result, indent=1)[:6000]


def assert_clean_failure(result: Mapping[str, Any], *fragments: str) -> str:
    """A failed task with a one-line ``msg`` (containing each fragment) and no traceback."""
    assert result.get("failed") is True, json.dumps(result, indent=1)[:4000]
    msg = result.get("msg", "")
    assert msg and "\n" not in msg.strip(), f"msg is not one line: {msg!r}"
    assert "Traceback" not in json.dumps(result), result
    for key in ("module_stderr", "module_stdout"):
        assert key not in result, f"{key} in result: {result}"
    for fragment in fragments:
        assert fragment.lower() in msg.lower(), f"{fragment!r} not in msg {msg!r}"
    return msg


# ------------------------------------------------------------- archives --

def tar_bytes(path: os.PathLike) -> bytes:
    with open(path, "rb") as handle:
        return gzip.decompress(handle.read())


def write_file(path: os.PathLike, data: bytes, mode: int = 0o600) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return str(path)


def rewrite_archive(src: os.PathLike, dst: os.PathLike, drop: Sequence[str] = (),
                    append: Sequence[tarfile.TarInfo] = ()) -> str:
    """A copy of the snapshot ``src`` without the members ``drop`` and with ``append`` at the end."""
    out = io.BytesIO()
    with tarfile.open(src, "r:gz") as source, tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as target:
        for member in source:
            if member.name in drop:
                continue
            target.addfile(member, source.extractfile(member) if member.isreg() else None)
        for member in append:
            target.addfile(member)
    return write_file(dst, gzip.compress(out.getvalue(), compresslevel=1))


def snapshot_names(directory: os.PathLike) -> List[str]:
    return sorted(name for name in os.listdir(directory) if name.startswith("supabase-volume-"))


def set_age(path: os.PathLike, days: float) -> None:
    when = time.time() - days * 86400
    os.utime(path, (when, when), follow_symlinks=False)


# ----------------------------------------------------------------- tmpfs --

@contextlib.contextmanager
def tmpfs(size: str):
    """A fresh tmpfs mounted on a new directory (we run as root); unmounted and removed afterwards."""
    directory = tempfile.mkdtemp(prefix="cortexreview-voltest-tmpfs-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", directory], check=True)
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", directory], check=False)
        os.rmdir(directory)


def remount(directory: str, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", directory], check=True)


def used_bytes(directory: str) -> int:
    info = os.statvfs(directory)
    return (info.f_blocks - info.f_bfree) * info.f_frsize
