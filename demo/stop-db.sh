#!/usr/bin/env bash
# Stop the demo PostgreSQL started by demo/start-db.sh (fast shutdown).
#   --purge   also delete $DEMO_DIR (data, password, copied binaries)
# Idempotent: succeeds when nothing is running.
set -euo pipefail

DEMO_DIR="${DEMO_DIR:-/tmp/cortexreview-demo}"
DATA="$DEMO_DIR/data"
PURGE=0
for arg in "$@"; do
	case "$arg" in
		--purge) PURGE=1 ;;
		-h|--help) sed -n '2,4p' "$0"; exit 0 ;;
		*) echo "unknown argument: $arg" >&2; exit 2 ;;
	esac
done
log() { printf '[demo-db] %s\n' "$*" >&2; }

BIN=""
if [ -f "$DEMO_DIR/env" ]; then
	BIN="$(sed -n "s/^export PG_BIN_DIR='\(.*\)'$/\1/p" "$DEMO_DIR/env")"
fi

if [ -f "$DATA/postmaster.pid" ] && [ -n "$BIN" ] && [ -x "$BIN/pg_ctl" ]; then
	owner="$(stat -c %U "$DATA")"
	if [ "$(id -u)" = 0 ] && [ "$owner" != root ]; then
		as_pg() { runuser -u "$owner" -- "$@"; }
	else
		as_pg() { "$@"; }
	fi
	if as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
		log "stopping server ($DATA)"
		as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
	else
		log "server not running (stale postmaster.pid)"
	fi
else
	log "server not running"
fi

if [ "$PURGE" = 1 ] && [ -d "$DEMO_DIR" ]; then
	log "removing $DEMO_DIR"
	rm -rf --one-file-system "$DEMO_DIR"
fi
