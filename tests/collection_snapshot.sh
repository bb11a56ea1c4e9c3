# shellcheck shell=bash
# Sourced by tests/molecule.sh and tests/role_test.sh.
#
# collection_snapshot REPO: copies the working tree's files (tracked and untracked, not
# ignored) to a new directory laid out as ansible_collections/cortexreview/supabase_backup,
# prints that collections root (for ANSIBLE_COLLECTIONS_PATH). Tests then run on one
# consistent version of the collection while the working tree is being edited.
collection_snapshot() {
    local repo=$1 root snapshot
    root=$(mktemp -d "${TMPDIR:-/tmp}/cortexreview-collection.XXXXXX")
    snapshot="$root/ansible_collections/cortexreview/supabase_backup"
    mkdir -p "$snapshot"
    if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git -C "$repo" ls-files -z --cached --others --exclude-standard \
            | tar -C "$repo" --null --files-from=- --ignore-failed-read -cf - 2>/dev/null \
            | tar -C "$snapshot" -xf -
    else
        cp -a "$repo/." "$snapshot/"
    fi
    printf '%s\n' "$root"
}
