#!/usr/bin/env bash
# Run the test suite.  Each step is a function registered with `step`;
# every step runs (so one failure doesn't hide the others), each one's
# failure is reported, and the script exits non-zero if any step failed.
# Inside a step function every failing command fails the step (set -e).
#
# Add a step:   my_step() { ...commands...; }   then   step "my step" my_step
# Run a subset: bash tests/run_tests.sh unit integration   (names = step ids)
# Stop at first failure: FAIL_FAST=1 bash tests/run_tests.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=testbed/lib.sh
. "$REPO/tests/testbed/lib.sh"
cd "$REPO"
tb_activate_python   # puts the interpreter with the dev requirements first on PATH
export PYTHONDONTWRITEBYTECODE=1 ANSIBLE_NOCOLOR=1 PY_COLORS=0

# ------------------------------------------------------------------ steps --
pytest_unit()        { "$PYTHON" -m pytest -q -p no:cacheprovider tests/unit; }
pytest_integration() { "$PYTHON" -m pytest -q -p no:cacheprovider tests/integration; }
sanity()             { bash tests/sanity.sh; }
lint()               { bash tests/lint.sh; }
molecule_scenarios() { bash tests/molecule.sh; }
role_check_mode()    { bash tests/role_test.sh; }

# id            description                      function
STEPS=(
	"unit         pytest tests/unit                pytest_unit"
	"sanity       ansible-test sanity              sanity"
	"lint         ansible-lint                     lint"
	"integration  pytest tests/integration         pytest_integration"
	"molecule     molecule test --all              molecule_scenarios"
	"role         role check mode and idempotence  role_check_mode"
)

# ---------------------------------------------------------------- runner --
selected=("$@")
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
