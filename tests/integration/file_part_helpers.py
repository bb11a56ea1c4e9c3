# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers of the file-part tests: a part sink writing a real ``.tar.gz`` part, and tree snapshots."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import sys

import testbed

# The engine is imported in-process here (the parts are written and read without a module run).
sys.path.insert(0, testbed.make_collections_path())


class PartSink:
    """Stands in for the restore point writer's part sink: gzip into ``path``, then its sidecars.

    ``close()`` writes ``<part>.sha256`` and a per-part manifest (``<part>.manifest.json``) holding
    ``facts``, as the restore point's manifest entry would.
    """

    def __init__(self, path):
        self.path = path
        self.facts = {}
        self._raw = open(path, 'wb')  # pylint: disable=consider-using-with
        self._gzip = gzip.GzipFile(fileobj=self._raw, mode='wb', compresslevel=1)

    def write(self, data):
        self._gzip.write(data)
        return len(data)

    def close(self):
        self._gzip.close()
        self._raw.close()
        digest = hashlib.sha256(open(self.path, 'rb').read()).hexdigest()
        name = os.path.basename(self.path)
        with open(self.path + '.sha256', 'w', encoding='utf-8') as handle:
            handle.write('%s  %s\n' % (digest, name))
        entry = dict(self.facts, name=name, sha256=digest)
        with open(self.path + '.manifest.json', 'w', encoding='utf-8') as handle:
            json.dump(entry, handle)
        return digest


def tree(root, skip=()):
    """Everything of a directory tree that a restore must bring back: per path, type, owner, mode,
    extended attributes, content (or link target) and a file's mtime."""
    result = {}
    for directory, dirs, files in os.walk(root):
        dirs[:] = [name for name in dirs if name not in skip]
        for name in [''] + sorted(dirs) + sorted(files):
            if directory == root and name in skip:
                continue
            path = os.path.join(directory, name) if name else directory
            relative = os.path.relpath(path, root)
            if name == '' and directory != root:
                continue
            info = os.lstat(path)
            entry = {'type': stat.S_IFMT(info.st_mode), 'uid': info.st_uid, 'gid': info.st_gid,
                     'mode': stat.S_IMODE(info.st_mode)}
            if stat.S_ISLNK(info.st_mode):
                entry['target'] = os.readlink(path)
            else:
                entry['xattrs'] = {key: os.getxattr(path, key) for key in sorted(os.listxattr(path))}
            if stat.S_ISREG(info.st_mode):
                entry['sha256'] = hashlib.sha256(open(path, 'rb').read()).hexdigest()
                entry['mtime'] = int(info.st_mtime)
                entry['nlink'] = info.st_nlink
            result[relative] = entry
    return result


def populate_storage(root):
    """A Storage-like tree: objects with user.supabase.* attributes, odd modes, non-root numeric owners,
    a relative symlink and a hard link."""
    bucket = os.path.join(root, 'stub', 'stub', 'avatars')
    os.makedirs(os.path.join(bucket, 'folder'))
    objects = {
        'avatars/a.png': os.urandom(70_000),
        'avatars/folder/b.txt': b'hello storage\n',
        'avatars/empty': b'',
    }
    for index, (name, data) in enumerate(sorted(objects.items())):
        path = os.path.join(root, 'stub', 'stub', name)
        with open(path, 'wb') as handle:
            handle.write(data)
        os.setxattr(path, 'user.supabase.content-type', b'image/png' if name.endswith('png') else b'text/plain')
        os.setxattr(path, 'user.supabase.cache-control', b'max-age=%d' % (3600 + index))
        os.setxattr(path, 'user.supabase.etag', hashlib.md5(data).hexdigest().encode())  # nosec - Storage's own etag
        os.chown(path, 1234 + index, 5678)
    os.chmod(os.path.join(bucket, 'a.png'), 0o640)
    os.chmod(os.path.join(bucket, 'folder', 'b.txt'), 0o604)
    os.chmod(os.path.join(bucket, 'empty'), 0o000)
    os.chmod(os.path.join(bucket, 'folder'), 0o2751)
    os.chown(os.path.join(bucket, 'folder'), 1234, 5678)
    os.symlink('folder/b.txt', os.path.join(bucket, 'link-to-b'))
    os.link(os.path.join(bucket, 'a.png'), os.path.join(bucket, 'a-hardlink.png'))
    os.chmod(root, 0o750)
    os.chown(root, 1234, 5678)
