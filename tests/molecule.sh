#!/usr/bin/env bash
# Run every Molecule scenario of the collection (molecule/*/molecule.yml) from the repo root.
#
#   bash tests/molecule.sh [extra molecule test args]
#
# Needs: molecule, pytest-testinfra, ansible-core, root (the role installs packages and a
# cron job on this machine), and the test stack's DB container running for the scenarios
# that back it up (tests/testbed/stack.sh).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

# Molecule runs with prerun: false, so it does not install the collection itself: run it
# in a snapshot of this checkout, importable as cortexreview.supabase_backup. A snapshot
# keeps converge and idempotence on the same files while the working tree is edited.
# shellcheck source-path=SCRIPTDIR source=collection_snapshot.sh
. "$repo/tests/collection_snapshot.sh"
collections=$(collection_snapshot "$repo")
trap 'rm -rf "$collections"' EXIT
cd "$collections/ansible_collections/cortexreview/supabase_backup"
export ANSIBLE_COLLECTIONS_PATH="$collections"
# Scenarios live in molecule/ (not extensions/molecule/) in this collection.
export MOLECULE_GLOB='molecule/*/molecule.yml'
export PY_COLORS=0 ANSIBLE_NOCOLOR=1

molecule --version | head -1
status=0
molecule test --all "$@" || status=$?
if [ "$status" -ne 0 ]; then
    echo "tests/molecule.sh: molecule test failed (exit $status)" >&2
fi
exit "$status"
