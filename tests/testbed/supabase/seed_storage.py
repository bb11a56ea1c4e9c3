# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Seed the Supabase profile's Storage: objects in the file backend's layout, each with the
``user.supabase.*`` extended attributes storage-api keeps its metadata in, and their
``storage.objects`` rows.

    python3 seed_storage.py STORAGE_DIR > objects.sql

writes ``STORAGE_DIR/stub/stub/<bucket>/<name>/<version>`` (tenant and bucket ``stub`` as in
Supabase's self-hosted compose file; anything under ``stub/`` is replaced) with the owners and
modes below, and prints the SQL that inserts the matching rows (run after seed.sql, which
creates the buckets). Deterministic: the same bytes, versions and rows every time.
"""

import hashlib
import json
import os
import shutil
import sys
import uuid

TENANT_DIR = os.path.join("stub", "stub")
NAMESPACE = uuid.UUID("6f0c55f0-1c5e-4f7e-9a39-7d1bd2f1c0de")
USER = "00000000-0000-4000-8000-00000000000{}"

# bucket, object name, size, content type, uid, gid, mode, owner (auth user number or None)
OBJECTS = (
    ("avatars", "user1/avatar.png", 2048, "image/png", 0, 0, 0o644, 1),
    ("avatars", "user2/avatar.png", 70001, "image/png", 0, 0, 0o644, 2),
    ("documents", "00000000-0000-4000-8000-000000000001/reports/2025 Q1 report.pdf", 150000,
     "application/pdf", 1000, 1000, 0o600, 1),
    ("documents", "00000000-0000-4000-8000-000000000001/notes/naïve ünïcode.txt", 333,
     "text/plain; charset=utf-8", 999, 999, 0o640, 1),
    ("documents", "00000000-0000-4000-8000-000000000003/empty.bin", 0,
     "application/octet-stream", 1000, 1001, 0o660, 3),
)
DIR_MODE = 0o755


def content(name, size):
    """``size`` deterministic bytes (every byte value occurs) derived from ``name``."""
    out = bytearray()
    block = name.encode("utf-8")
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


def sql_literal(value):
    return "NULL" if value is None else "'" + str(value).replace("'", "''") + "'"


def seed(storage_dir):
    root = os.path.join(storage_dir, TENANT_DIR)
    if os.path.lexists(root):
        shutil.rmtree(root)
    rows = []
    for bucket, name, size, mimetype, uid, gid, mode, owner in OBJECTS:
        version = str(uuid.uuid5(NAMESPACE, "version/" + bucket + "/" + name))
        data = content(bucket + "/" + name, size)
        etag = '"' + hashlib.md5(data).hexdigest() + '"'  # nosec - storage-api's eTag is an MD5
        directory = os.path.join(root, bucket, name)
        os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
        path = os.path.join(directory, version)
        with open(path, "wb") as fh:
            fh.write(data)
        os.chown(path, uid, gid)
        os.chmod(path, mode)
        os.setxattr(path, "user.supabase.content-type", mimetype.encode())
        os.setxattr(path, "user.supabase.cache-control", b"max-age=3600")
        os.setxattr(path, "user.supabase.etag", etag.encode())
        metadata = {"eTag": etag, "size": size, "mimetype": mimetype, "cacheControl": "max-age=3600",
                    "lastModified": "2025-03-01T00:00:00.000Z", "contentLength": size,
                    "httpStatusCode": 200}
        rows.append("(%s, %s, %s, %s, %s, %s, '2025-03-01 00:00:00+00', '2025-03-01 00:00:00+00',"
                    " '2025-03-01 00:00:00+00')" % (
                        sql_literal(uuid.uuid5(NAMESPACE, "object/" + bucket + "/" + name)),
                        sql_literal(bucket), sql_literal(name),
                        sql_literal(None if owner is None else USER.format(owner)),
                        sql_literal(json.dumps(metadata, sort_keys=True)), sql_literal(version)))
    # directories made by makedirs take the umask: give every one the same mode
    for dirpath, _dirnames, _filenames in os.walk(root):
        os.chmod(dirpath, DIR_MODE)
    return ("\\set ON_ERROR_STOP on\nBEGIN;\nDELETE FROM storage.objects;\n"
            "INSERT INTO storage.objects (id, bucket_id, name, owner, metadata, version,"
            " created_at, updated_at, last_accessed_at) VALUES\n    "
            + ",\n    ".join(rows) + ";\nCOMMIT;\n")


def main(argv):
    if len(argv) != 2 or not os.path.isdir(argv[1]):
        sys.stderr.write("usage: seed_storage.py STORAGE_DIR (an existing directory)\n")
        return 2
    sys.stdout.write(seed(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
