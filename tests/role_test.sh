#!/usr/bin/env bash
# The supabase_backup role without Molecule: check mode on a new host changes nothing and
# predicts the real run, a second run changes nothing, check mode predicts a configuration
# change exactly (tests/role/). Every path the role writes is a sandbox under $TMPDIR; only
# the Debian packages (python3-venv, cron, logrotate) are installed system-wide. Needs root.
#
#   bash tests/role_test.sh [extra pytest args]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=collection_snapshot.sh
. "$repo/tests/collection_snapshot.sh"
collections=$(collection_snapshot "$repo")
trap 'rm -rf "$collections"' EXIT
export ROLE_TEST_COLLECTIONS="$collections"

python=${PYTHON:-python3}
"$python" -m pytest -p no:cacheprovider -v "$repo/tests/role" "$@"
