#!/usr/bin/env bash
# ansible-lint (production profile, offline; see .ansible-lint) over the collection:
# roles/, playbooks/, molecule/ scenarios, meta/ and galaxy.yml.
#
#   bash tests/lint.sh            # the whole collection
#   bash tests/lint.sh PATH...    # only these files or directories
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

# Playbooks name roles and modules by FQCN: make this checkout importable as
# cortexreview.supabase_backup for ansible-lint's syntax check.
collections=$(mktemp -d "${TMPDIR:-/tmp}/cortexreview-lint.XXXXXX")
trap 'rm -rf "$collections"' EXIT
mkdir -p "$collections/ansible_collections/cortexreview"
ln -s "$repo" "$collections/ansible_collections/cortexreview/supabase_backup"
export ANSIBLE_COLLECTIONS_PATH="$collections"
export NO_COLOR=1

ansible-lint --version | head -1
ansible-lint "$@"
