#!/usr/bin/env bash
# Writer loop for the fake api/worker containers.
#
# Every $WRITE_INTERVAL seconds (default 0.5) insert one row into
# feedback_audit_log over TCP (PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE
# from the environment).  Every failure -- DB down, restarting, database
# dropped/renamed/recreated, table missing -- is tolerated: the loop never
# exits on its own, so the container never crash-loops.  State changes are
# logged (not every failure) to keep `docker logs` readable.
set -u

ROLE="${APP_ROLE:-app}"
INTERVAL="${WRITE_INTERVAL:-0.5}"
export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-2}"
export PGAPPNAME="cortexreview-${ROLE}"
# never block forever behind a restore's locks
export PGOPTIONS="${PGOPTIONS:--c statement_timeout=5000 -c lock_timeout=3000 -c log_min_error_statement=panic}"

running=1
trap 'running=0' TERM INT

log() { printf '%s [%s] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$ROLE" "$*"; }

log "starting writer: host=${PGHOST:-?} db=${PGDATABASE:-?} interval=${INTERVAL}s"
state=unknown
seq=0
ok_count=0
while [ "$running" = 1 ]; do
	seq=$((seq + 1))
	if err=$(psql -X -q -v ON_ERROR_STOP=1 -c \
		"INSERT INTO feedback_audit_log (event_type, actor, payload)
		 VALUES ('${ROLE}_heartbeat', '${ROLE}',
		         jsonb_build_object('seq', ${seq}, 'host', '${HOSTNAME:-unknown}'))" \
		2>&1 >/dev/null); then
		ok_count=$((ok_count + 1))
		if [ "$state" != ok ]; then log "writes OK (seq=$seq)"; state=ok; fi
		if [ $((ok_count % 600)) = 0 ]; then log "still writing ($ok_count rows so far)"; fi
	else
		if [ "$state" != failing ]; then
			log "write failed, will keep retrying: $(printf '%s' "$err" | tr '\n' ' ' | cut -c1-300)"
			state=failing
		fi
	fi
	# sleep in the background + wait, so a TERM is handled immediately
	sleep "$INTERVAL" & wait $! 2>/dev/null || true
done
log "stopping (signal received)"
exit 0
