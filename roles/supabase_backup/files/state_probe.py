# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read-only probe of the supabase_backup role: how far the node is from the expected state.

One run of this script replaces a module run per file and directory in a steady-state
run of the role; the role's tasks then run only where it found a difference. It changes
nothing. Argument: a JSON object

    expected      {path: "TYPE MODE OWNER GROUP [SHA1]" or "absent"}; a field "*" matches
                  anything ("directory * * *": a directory that must exist, whatever its
                  mode and owner, such as node_exporter's textfile directory)
    engine_dir    directory whose *.py files not in expected are reported as stale
    packages      Debian packages that must be installed
    venv          the virtualenv; requirements: pip requirement strings it must satisfy

Prints a JSON object: outdated (paths whose state differs), absent (paths that do not
exist), orphaned (outdated paths whose parent directory does not exist), stale (engine
files no longer shipped), packages_missing, venv_ready, python_version.
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import stat
import subprocess
import sys

# Run by the virtualenv's Python: are the requirements installed? pip's vendored
# packaging evaluates the specifiers exactly as pip would.
REQUIREMENTS_CHECK = r'''
import sys
from importlib.metadata import PackageNotFoundError, version
from pip._vendor.packaging.requirements import Requirement
for spec in sys.argv[1:]:
    requirement = Requirement(spec)
    try:
        installed = version(requirement.name)
    except PackageNotFoundError:
        sys.exit(1)
    if not requirement.specifier.contains(installed, prereleases=True):
        sys.exit(1)
'''


def sha1_of(path):
    digest = hashlib.sha1()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def name_of(table, ident):
    try:
        return table(ident)[0]
    except KeyError:
        return str(ident)


def state_of(path, with_checksum):
    """The same "TYPE MODE OWNER GROUP [SHA1]" form as the expectation, or "absent"."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return 'absent'
    if stat.S_ISLNK(info.st_mode):
        kind = 'link'
    elif stat.S_ISDIR(info.st_mode):
        kind = 'directory'
    elif stat.S_ISREG(info.st_mode):
        kind = 'file'
    else:
        kind = 'other'
    fields = [kind, '%04o' % stat.S_IMODE(info.st_mode), name_of(pwd.getpwuid, info.st_uid),
              name_of(grp.getgrgid, info.st_gid)]
    if with_checksum and kind == 'file':
        fields.append(sha1_of(path))
    return ' '.join(fields)


def matches(found, wanted):
    """Whether a found state is the wanted one; "*" in the wanted state matches any field."""
    found_fields, wanted_fields = found.split(), wanted.split()
    return len(found_fields) == len(wanted_fields) and all(
        want in ('*', have) for have, want in zip(found_fields, wanted_fields))


def packages_missing(packages):
    if not packages:
        return []
    try:
        proc = subprocess.run(['dpkg-query', '--show', '--showformat', '${Package} ${db:Status-Status}\n']
                              + packages, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              universal_newlines=True, check=False)
    except OSError:
        return list(packages)
    installed = set(line.split()[0] for line in proc.stdout.splitlines() if line.endswith(' installed'))
    return [package for package in packages if package not in installed]


def venv_ready(venv, requirements):
    python = os.path.join(venv, 'bin', 'python3')
    if not os.access(python, os.X_OK):
        return False
    try:
        proc = subprocess.run([python, '-I', '-c', REQUIREMENTS_CHECK] + list(requirements),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    except OSError:
        return False
    return proc.returncode == 0


def stale_files(engine_dir, expected):
    try:
        entries = list(os.scandir(engine_dir))
    except OSError:
        return []
    return sorted(entry.path for entry in entries
                  if entry.name.endswith('.py') and entry.path not in expected
                  and not entry.is_dir(follow_symlinks=False))


def main(argv):
    request = json.loads(argv[1])
    expected = request['expected']
    outdated, absent = [], []
    for path, wanted in sorted(expected.items()):
        found = state_of(path, len(wanted.split()) > 4)
        if not matches(found, wanted):
            outdated.append(path)
        if found == 'absent':
            absent.append(path)
    result = {
        'outdated': outdated,
        'absent': absent,
        'orphaned': [path for path in outdated if not os.path.isdir(os.path.dirname(path))],
        'stale': stale_files(request['engine_dir'], expected),
        'packages_missing': packages_missing(request['packages']),
        'venv_ready': venv_ready(request['venv'], request['requirements']),
        'python_version': '%d.%d' % sys.version_info[:2],
    }
    json.dump(result, sys.stdout, sort_keys=True)
    sys.stdout.write('\n')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
