#!/usr/bin/env bash
# The execution environment's build context, proven without a container build:
#
#   bash scripts/ee_context.sh [--check] [CONTEXT_DIR]     (default CONTEXT_DIR: context)
#
# 1. builds the collection (ansible-galaxy collection build) into
#    cortexreview-supabase_backup.tar.gz beside execution-environment.yml (git-ignored);
# 2. runs `ansible-builder create` (PyPI: ansible-builder) into CONTEXT_DIR (default: context/,
#    where `ansible-builder build` puts it too; git-ignored);
# 3. with --check, scripts/check_ee_context.py proves the context holds the collection (the
#    tarball, with the modules, roles and playbooks), its Python and
#    system requirements, and that the Containerfile's galaxy step installs it (run here,
#    offline, into a scratch directory).
# A full `ansible-builder build` also needs the base image quay.io/ansible/awx-ee, which is
# pulled from the network.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=../tests/testbed/lib.sh
. "$REPO/tests/testbed/lib.sh"

check=0
context=""
for arg in "$@"; do
	case "$arg" in
		--check) check=1 ;;
		-h|--help) sed -n '2,15p' "$0"; exit 0 ;;
		-*) tb_die "unknown option $arg (only --check)" ;;
		*) [ -z "$context" ] || tb_die "one CONTEXT_DIR only"; context="$arg" ;;
	esac
done
context="${context:-$REPO/context}"

PYTHON="$(tb_python)"
PYTHON="$("$PYTHON" -c 'import sys; print(sys.executable)')"
SCRIPTS="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
for tool in ansible-galaxy ansible-builder; do
	[ -x "$SCRIPTS/$tool" ] || tb_die "$tool not found in $SCRIPTS (pip install -r requirements-dev.txt)"
done

tarball="$REPO/cortexreview-supabase_backup.tar.gz"
build="$(mktemp -d "${TMPDIR:-/tmp}/cortexreview-ee.XXXXXX")"
trap 'rm -rf "$build"' EXIT
"$SCRIPTS/ansible-galaxy" collection build --output-path "$build" "$REPO" >/dev/null
built=("$build"/cortexreview-supabase_backup-*.tar.gz)
if [ ${#built[@]} != 1 ] || [ ! -f "${built[0]}" ]; then
	tb_die "ansible-galaxy collection build made no tarball"
fi
mv -f "${built[0]}" "$tarball"
tb_log "collection $(basename "${built[0]}") -> $tarball"

rm -rf "$context"
"$SCRIPTS/ansible-builder" create --file "$REPO/execution-environment.yml" --context "$context" >/dev/null
tb_log "build context in $context"

if [ "$check" = 1 ]; then
	"$PYTHON" "$REPO/scripts/check_ee_context.py" "$REPO" "$context"
fi
