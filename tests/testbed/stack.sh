#!/usr/bin/env bash
# Manage a cortexreview test-bed stack (a docker-compose project).
#
#   stack.sh up [--no-seed]  build images if needed, start containers, wait for the DB,
#                    seed it if the schema is missing (--no-seed: leave it empty, as a
#                    new host would be)                                (idempotent)
#   stack.sh down    remove containers, network AND the data volume
#   stack.sh reset   down + up (fresh volume, fresh seed)
#   stack.sh seed    (re)load tests/testbed/seed.sql (drops + recreates its tables;
#                    SEED_KB_ROWS=N for N knowledge_base rows instead of 300)
#   stack.sh wait    wait until the DB accepts connections
#   stack.sh status  containers, health, volume, row counts
#   stack.sh logs    docker-compose logs --tail=50
#   stack.sh names   the stack's names, one NAME=value a line
#
# CORTEXREVIEW_TESTBED=NAME selects the stack (default: cortexreview), so several run
# side by side; CORTEXREVIEW_TESTBED_PORT overrides its published port.
# CORTEXREVIEW_TESTBED_PROFILE=supabase makes a stack shaped like a self-hosted Supabase
# (tests/testbed/supabase/): the compose project directory /var/tmp/cortexreview-testbed-NAME
# (.env, docker-compose.yml, volumes/db, volumes/storage), a storage container NAME-storage,
# the db-config volume NAME-db-config; its first `up` writes the .env with
# CORTEXREVIEW_TESTBED_POSTGRES_PASSWORD or a new random password; `down` removes the
# directory too. Without the variable, a stack whose project directory exists is a supabase one.
# Default stack: containers cortexreview-supabase-db, cortexreview-api, cortexreview-worker,
# volume cortexreview-supabase-db-data, network cortexreview_default, DB port 127.0.0.1:54322.
# Stack NAME: NAME-supabase-db, NAME-api, NAME-worker, NAME-supabase-db-data, NAME_default.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WAIT_TIMEOUT="${STACK_WAIT_TIMEOUT:-120}"

db_exec() { docker exec -i "$TB_DB_CONTAINER" "$@"; }
db_psql() { # db sql...
	local db="$1"; shift
	db_exec psql -X -At -v ON_ERROR_STOP=1 -U postgres -d "$db" -c "$*"
}

wait_db() {
	local deadline=$((SECONDS + WAIT_TIMEOUT)) state
	while :; do
		state="$(docker inspect -f '{{.State.Status}}' "$TB_DB_CONTAINER" 2>/dev/null || echo missing)"
		if [ "$state" = running ] \
			&& db_exec pg_isready -q -h 127.0.0.1 -p 5432 -U postgres >/dev/null 2>&1 \
			&& db_psql template1 'SELECT 1' >/dev/null 2>&1; then
			break
		fi
		if [ $SECONDS -ge $deadline ]; then
			docker logs --tail 40 "$TB_DB_CONTAINER" >&2 || true
			tb_die "database not ready after ${WAIT_TIMEOUT}s (container state: $state)"
		fi
		sleep 0.5
	done
	# a test may have dropped/renamed the "postgres" database: bring it back
	if [ "$(db_psql template1 "SELECT count(*) FROM pg_database WHERE datname = 'postgres'")" = 0 ]; then
		tb_log "database 'postgres' missing -- recreating it"
		db_psql template1 'CREATE DATABASE postgres'
	fi
}

is_seeded() {
	local supabase_seeded=true
	[ "$TB_PROFILE" = plain ] \
		|| supabase_seeded="to_regclass('public.profiles') IS NOT NULL AND EXISTS (SELECT FROM storage.objects)"
	[ "$(db_psql postgres "SELECT to_regclass('public.knowledge_base') IS NOT NULL
		AND to_regclass('public.learned_constraints') IS NOT NULL
		AND to_regclass('public.feedback_audit_log') IS NOT NULL
		AND to_regprocedure('public.match_knowledge(vector,double precision,integer)') IS NOT NULL
		AND $supabase_seeded" 2>/dev/null)" = t ]
}

seed() {
	local t0=$SECONDS
	tb_log "seeding database 'postgres' from $TB_SEED_SQL"
	local -a vars=()
	[ -n "${SEED_KB_ROWS:-}" ] && vars=(-v "kb_rows=$SEED_KB_ROWS")
	db_exec psql -X -q -v ON_ERROR_STOP=1 "${vars[@]}" --single-transaction -U postgres -d postgres -f - \
		< "$TB_SEED_SQL" >/dev/null
	if [ "$TB_PROFILE" = supabase ]; then
		tb_log "seeding the supabase profile's data and Storage files into $TB_STORAGE_DIR"
		db_exec psql -X -q -v ON_ERROR_STOP=1 -U postgres -d postgres -f - \
			< "$TB_SUPABASE_DIR/seed.sql" >/dev/null
		"$(tb_python)" "$TB_SUPABASE_DIR/seed_storage.py" "$TB_STORAGE_DIR" \
			| db_exec psql -X -q -v ON_ERROR_STOP=1 -U postgres -d postgres -f - >/dev/null
	fi
	tb_log "seeded in $((SECONDS - t0))s"
}

# A secret for the .env: 48 hex digits from /dev/urandom.
random_secret() { od -A n -t x1 -N 24 /dev/urandom | tr -d ' \n'; }

# The supabase profile's compose project directory, made at the stack's first `up`: the
# compose file and volumes/db copied from tests/testbed/supabase, an empty volumes/storage,
# and a .env (0600) with the password from CORTEXREVIEW_TESTBED_POSTGRES_PASSWORD or a new one.
prepare_project_dir() {
	local password="${CORTEXREVIEW_TESTBED_POSTGRES_PASSWORD:-}"
	if [ -n "$password" ] && ! [[ "$password" =~ ^[A-Za-z0-9._~-]{8,128}$ ]]; then
		printf 'CORTEXREVIEW_TESTBED_POSTGRES_PASSWORD: use 8-128 of A-Z a-z 0-9 . _ ~ -\n' >&2
		exit 2
	fi
	if [ ! -f "$TB_PROJECT_DIR/docker-compose.yml" ]; then
		tb_log "creating the compose project directory $TB_PROJECT_DIR"
		mkdir -p "$TB_PROJECT_DIR/volumes/db"
		cp "$TB_SUPABASE_DIR/docker-compose.yml" "$TB_PROJECT_DIR/docker-compose.yml"
		cp -R "$TB_SUPABASE_DIR/volumes/db/." "$TB_PROJECT_DIR/volumes/db/"
	fi
	mkdir -p "$TB_STORAGE_DIR"
	if [ ! -s "$TB_ENV_FILE" ]; then
		[ -n "$password" ] || password="$(random_secret)"
		(
			umask 077
			printf 'POSTGRES_PASSWORD=%s\nJWT_SECRET=%s\nJWT_EXP=3600\n' "$password" "$(random_secret)" \
				> "$TB_ENV_FILE.tmp"
		)
		mv -f "$TB_ENV_FILE.tmp" "$TB_ENV_FILE"
	fi
}

up() {
	local t0=$SECONDS seed_it=1
	case "${1:-}" in
		"") ;;
		--no-seed) seed_it=0 ;;
		*) tb_die "stack.sh up: unknown option ${1} (only --no-seed)" ;;
	esac
	bash "$TB_DIR/build-images.sh"
	[ "$TB_PROFILE" = plain ] || prepare_project_dir
	tb_log "starting stack (project $TB_PROJECT, profile $TB_PROFILE, DB port 127.0.0.1:$TB_DB_PORT)"
	tb_compose up -d --no-build 2>&1 | grep -v -e '^$' >&2 || true
	# `compose up` output is filtered above, so check the outcome explicitly
	local c
	for c in "${TB_CONTAINERS[@]}"; do
		[ "$(docker inspect -f '{{.State.Running}}' "$c" 2>/dev/null)" = true ] \
			|| tb_die "container $c is not running after compose up"
	done
	wait_db
	if is_seeded; then
		tb_log "schema present -- not re-seeding"
	elif [ "$seed_it" = 0 ]; then
		tb_log "left empty (--no-seed)"
	else
		seed
	fi
	tb_log "stack up in $((SECONDS - t0))s"
}

down() {
	tb_log "removing stack $TB_PROJECT, network $TB_NETWORK and volume $TB_DB_VOLUME"
	# every volume mounted by our containers (incl. anonymous ones)
	local vols v
	vols="$(docker inspect -f '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{end}}{{end}}' \
		"$TB_DB_CONTAINER" "$TB_API_CONTAINER" "$TB_WORKER_CONTAINER" "$TB_STORAGE_CONTAINER" 2>/dev/null || true)"
	tb_compose down -v --remove-orphans -t 10 2>&1 | grep -v -e '^$' >&2 || true
	# leftovers not tracked by compose (e.g. a volume re-created by hand); the supabase
	# profile's names too, whatever the profile (they are this stack's alone)
	docker rm -f "$TB_DB_CONTAINER" "$TB_API_CONTAINER" "$TB_WORKER_CONTAINER" "$TB_STORAGE_CONTAINER" \
		>/dev/null 2>&1 || true
	# shellcheck disable=SC2086
	docker volume rm -f "$TB_DB_VOLUME" "$TB_CONFIG_VOLUME" $vols >/dev/null 2>&1 || true
	docker network rm "$TB_NETWORK" >/dev/null 2>&1 || true
	for v in "$TB_DB_VOLUME" "$TB_CONFIG_VOLUME"; do
		if docker volume inspect "$v" >/dev/null 2>&1; then
			tb_die "volume $v still exists (in use by another container?)"
		fi
	done
	if [ -e "$TB_PROJECT_DIR" ]; then
		tb_log "removing the compose project directory $TB_PROJECT_DIR"
		rm -rf --one-file-system "$TB_PROJECT_DIR"
	fi
}

status() {
	tb_compose ps
	local c
	for c in "${TB_CONTAINERS[@]}"; do
		printf '%-28s %s\n' "$c" \
			"$(docker inspect -f '{{.State.Status}} {{if .State.Health}}({{.State.Health.Status}}){{end}}' "$c" 2>/dev/null || echo absent)"
	done
	printf '%-28s %s\n' "volume $TB_DB_VOLUME" \
		"$(docker volume inspect -f '{{.Mountpoint}}' "$TB_DB_VOLUME" 2>/dev/null || echo absent)"
	if [ "$TB_PROFILE" = supabase ]; then
		printf '%-28s %s\n' "volume $TB_CONFIG_VOLUME" \
			"$(docker volume inspect -f '{{.Mountpoint}}' "$TB_CONFIG_VOLUME" 2>/dev/null || echo absent)"
		printf '%-28s %s\n' "project directory" "$TB_PROJECT_DIR$([ -d "$TB_PROJECT_DIR" ] || echo ' (absent)')"
	fi
	if [ "$(docker inspect -f '{{.State.Running}}' "$TB_DB_CONTAINER" 2>/dev/null)" = true ]; then
		db_psql postgres "SELECT 'knowledge_base', count(*) FROM knowledge_base
			UNION ALL SELECT 'learned_constraints', count(*) FROM learned_constraints
			UNION ALL SELECT 'feedback_audit_log', count(*) FROM feedback_audit_log" 2>/dev/null \
			| sed 's/^/  rows: /' || echo "  (schema not present)"
	fi
}

# Serialise mutating commands (parallel test sessions may call `up` at once).
lock() { exec 8>/tmp/cortexreview-testbed-stack.lock; flock 8; }

names() {
	printf '%s=%s\n' project "$TB_PROJECT" db_container "$TB_DB_CONTAINER" \
		api_container "$TB_API_CONTAINER" worker_container "$TB_WORKER_CONTAINER" \
		volume "$TB_DB_VOLUME" network "$TB_NETWORK" port "$TB_DB_PORT"
	if [ "$TB_PROFILE" = supabase ]; then
		printf '%s=%s\n' profile supabase storage_container "$TB_STORAGE_CONTAINER" \
			config_volume "$TB_CONFIG_VOLUME" project_dir "$TB_PROJECT_DIR" \
			env_file "$TB_ENV_FILE" storage_dir "$TB_STORAGE_DIR"
	fi
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
[ "$cmd" = up ] || [ $# -eq 0 ] || tb_die "stack.sh $cmd: takes no arguments"
case "$cmd" in
	up|down|reset|seed) lock ;;
esac
case "$cmd" in
	up)     up "$@" ;;
	down)   down ;;
	reset)  down; up ;;
	seed)   wait_db; seed ;;
	wait)   wait_db ;;
	status) status ;;
	logs)   tb_compose logs --tail=50 ;;
	names)  names ;;
	*)      sed -n '2,28p' "$0" >&2; exit 2 ;;
esac
