# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Check an execution environment build context made by ``ansible-builder create``.

    python3 scripts/check_ee_context.py REPO CONTEXT_DIR

Exits 1 with one line per problem when the context does not hold this collection (the
tarball of ``galaxy.yml``'s namespace, name and version, with every module, role and
playbook of the checkout), its Python requirements (requirements.txt) and its system
requirements (bindep.txt), or when the Containerfile's galaxy step would not install it:
that step (``ansible-galaxy collection install -r requirements.yml`` in ``_build``) is run
here, offline, into a scratch directory.
"""

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

import yaml

COLLECTION_FILE = 'collections/cortexreview-supabase_backup.tar.gz'


def requirement_lines(path):
    """The requirement lines of a pip or bindep file, comments and blanks left out."""
    with open(path, encoding='utf-8') as handle:
        lines = (line.split('#', 1)[0].strip() for line in handle)
        return sorted(line for line in lines if line)


def expected_members(repo):
    """The collection's files the tarball must hold: modules, module_utils, roles, playbooks, meta."""
    members = {'MANIFEST.json', 'FILES.json', 'meta/runtime.yml'}
    for top in ('plugins', 'roles', 'playbooks'):
        for root, dirs, files in os.walk(os.path.join(repo, top)):
            dirs[:] = [name for name in dirs if name != '__pycache__']
            for name in files:
                if not name.endswith('.pyc'):
                    members.add(os.path.relpath(os.path.join(root, name), repo))
    return members


def check_collection(repo, build_dir, problems):
    with open(os.path.join(repo, 'galaxy.yml'), encoding='utf-8') as handle:
        galaxy = yaml.safe_load(handle)
    path = os.path.join(build_dir, COLLECTION_FILE)
    if not os.path.isfile(path):
        problems.append('the context holds no collection: _build/%s is missing' % COLLECTION_FILE)
        return
    with tarfile.open(path) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile('MANIFEST.json'))['collection_info']
    for key in ('namespace', 'name', 'version'):
        if manifest[key] != galaxy[key]:
            problems.append('the collection in the context is %s %s, galaxy.yml says %s'
                            % (key, manifest[key], galaxy[key]))
    missing = sorted(expected_members(repo) - names)
    if missing:
        problems.append('the collection in the context lacks %d files of the checkout, e.g. %s'
                        % (len(missing), ', '.join(missing[:5])))


def check_requirements(repo, build_dir, problems):
    with open(os.path.join(build_dir, 'requirements.yml'), encoding='utf-8') as handle:
        galaxy_requirements = yaml.safe_load(handle)
    if galaxy_requirements.get('collections') != [{'name': COLLECTION_FILE, 'type': 'file'}]:
        problems.append('_build/requirements.yml installs %s, not the collection tarball %s'
                        % (galaxy_requirements.get('collections'), COLLECTION_FILE))
    for ours, theirs in (('requirements.txt', 'requirements.txt'), ('bindep.txt', 'bindep.txt')):
        built = os.path.join(build_dir, theirs)
        if not os.path.isfile(built):
            problems.append('the context holds no %s' % theirs)
        elif requirement_lines(built) != requirement_lines(os.path.join(repo, ours)):
            problems.append('_build/%s differs from %s' % (theirs, ours))


def check_containerfile(context, problems):
    names = [name for name in ('Containerfile', 'Dockerfile') if os.path.isfile(os.path.join(context, name))]
    if not names:
        problems.append('the context holds no Containerfile or Dockerfile')
        return
    with open(os.path.join(context, names[0]), encoding='utf-8') as handle:
        text = handle.read()
    for needle in ('COPY _build /build', 'ansible-galaxy collection install', '-r requirements.yml',
                   'requirements.txt', 'bindep.txt', 'quay.io/ansible/awx-ee'):
        if needle not in text:
            problems.append('%s does not say %r' % (names[0], needle))


def check_galaxy_install(build_dir, problems):
    """The galaxy stage's command, in _build, offline, into a scratch collections path."""
    scratch = tempfile.mkdtemp(prefix='cortexreview-ee-install.')
    try:
        galaxy = os.path.join(os.path.dirname(sys.executable), 'ansible-galaxy')
        proc = subprocess.run(
            [galaxy if os.access(galaxy, os.X_OK) else 'ansible-galaxy', 'collection', 'install',
             '--offline', '-r', 'requirements.yml', '--collections-path', scratch],
            cwd=build_dir, capture_output=True, text=True, check=False)
        installed = os.path.join(scratch, 'ansible_collections', 'cortexreview', 'supabase_backup')
        if proc.returncode != 0:
            problems.append('ansible-galaxy collection install -r requirements.yml failed in the context: %s'
                            % (proc.stderr.strip().splitlines() or ['exit %d' % proc.returncode])[-1])
        elif not os.path.isfile(os.path.join(installed, 'plugins', 'modules', 'supabase_dump.py')):
            problems.append('ansible-galaxy collection install -r requirements.yml installed no supabase_dump module')
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main():
    if len(sys.argv) != 3:
        sys.exit('usage: check_ee_context.py REPO CONTEXT_DIR')
    repo, context = (os.path.abspath(arg) for arg in sys.argv[1:])
    build_dir = os.path.join(context, '_build')
    if not os.path.isdir(build_dir):
        sys.exit('%s: not an ansible-builder context (no _build/)' % context)
    problems = []
    check_collection(repo, build_dir, problems)
    check_requirements(repo, build_dir, problems)
    check_containerfile(context, problems)
    if not problems:
        check_galaxy_install(build_dir, problems)
    for problem in problems:
        print('execution environment: %s' % problem, file=sys.stderr)
    if problems:
        sys.exit(1)
    print('execution environment: the context holds the collection, requirements.txt and bindep.txt; '
          'its galaxy step installs the collection')


if __name__ == '__main__':
    main()
