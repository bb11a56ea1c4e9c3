"""Benchmark: the disaster-recovery drill (playbooks/dr_restore.yml), its recovery time by phase.

    python3 benchmarks/dr_benchmark.py [--rows 20000] [--profile plain|supabase] [--keep]

A test-bed stack of its own (never the test suite's), `crbench-dr`, seeded and loaded with vector
rows (1536 dimensions, an IVFFlat index) in schema `bench`: the old host. It is backed up
encrypted, with every part (with `--profile supabase`: both databases, the roles, the root key, the
project's `.env` and `docker-compose.yml`, Storage's files), to a real S3 server on loopback
(`rclone serve s3`, a directory of this machine standing for the store). Then the host is lost: the
stack goes with its volumes and project directory, and comes back empty, with a new password (the
new host). The drill runs there from the remote alone: the runtime (a new virtualenv, packages from
PyPI), the fetch and its checks, the restore of every component, the validation.

Prints each phase and the total against the contract's RTO (30 minutes) and this collection's
target for ~330 MB (5 minutes). Exits 1 if the drill fails or misses the target. Not part of
.ci/run.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tests', 'integration'))

from offsite_helpers import S3Remote  # noqa: E402  (a real S3 server: rclone serve s3)

from _bench import INDEX_SQL, LOAD_SQL  # noqa: E402  (the restore benchmark's rows and indexes)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STACK_SH = os.path.join(REPO, 'tests', 'testbed', 'stack.sh')
CONTRACT_RTO = 30 * 60
TARGET = 5 * 60
PASSPHRASE = 'dr benchmark passphrase'
PHASES = ('runtime', 'fetch', 'restore', 'validate', 'total')
SAME_ROWS = 'SELECT count(*), md5(string_agg(id::text, \',\' ORDER BY id)) FROM bench.knowledge_base'


def stack(name, profile, *args, password=None):
    env = dict(os.environ, CORTEXREVIEW_TESTBED=name, CORTEXREVIEW_TESTBED_PROFILE=profile)
    if password:
        env['CORTEXREVIEW_TESTBED_POSTGRES_PASSWORD'] = password
    subprocess.run(['bash', STACK_SH] + list(args), env=env, check=True, stdout=subprocess.DEVNULL)


def psql(container, sql):
    done = subprocess.run(['docker', 'exec', '-i', '-e', 'PGOPTIONS=-c maintenance_work_mem=1GB', container, 'psql',
                           '-U', 'postgres', '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-d', 'postgres'],
                          input=sql.encode(), capture_output=True, check=True)
    return done.stdout.decode().strip()


def playbook(env, inventory, path, variables, workdir):
    vars_file = os.path.join(workdir, 'vars-%d.json' % time.monotonic_ns())
    with open(os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'w') as handle:
        json.dump(variables, handle)
    started = time.monotonic()
    done = subprocess.run(['ansible-playbook', '-i', inventory, path, '-e', '@' + vars_file], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit('%s failed:\n%s\n%s' % (os.path.basename(path), done.stdout[-4000:], done.stderr[-2000:]))
    return time.monotonic() - started, done.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--rows', type=int, default=20000)
    parser.add_argument('--profile', default='plain', choices=['plain', 'supabase'])
    parser.add_argument('--keep', action='store_true', help='leave the stack running')
    args = parser.parse_args()
    name = 'crbench-dr'
    project = '/var/tmp/cortexreview-testbed-' + name
    workdir = tempfile.mkdtemp(prefix='cortexreview-dr-bench-')
    os.chmod(workdir, 0o700)
    s3 = S3Remote(path='dr')
    db, writers = name + '-supabase-db', [name + '-api', name + '-worker']
    try:
        stack(name, args.profile, 'down')
        stack(name, args.profile, 'up')
        psql(db, LOAD_SQL.replace('{rows}', str(args.rows)) + INDEX_SQL + 'VACUUM ANALYZE bench.knowledge_base;')
        size = int(psql(db, "SELECT pg_database_size('postgres')"))
        expected = psql(db, SAME_ROWS)
        collections = os.path.join(workdir, 'collections', 'ansible_collections', 'cortexreview')
        os.makedirs(collections)
        os.symlink(REPO, os.path.join(collections, 'supabase_backup'))
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(workdir, 'collections'), ANSIBLE_NOCOLOR='1')
        inventory = os.path.join(workdir, 'inventory')
        with open(inventory, 'w') as handle:
            handle.write('localhost ansible_connection=local ansible_python_interpreter=%s\n' % sys.executable)
        backup_play = os.path.join(workdir, 'backup.yml')
        with open(backup_play, 'w') as handle:
            handle.write('- hosts: localhost\n  gather_facts: false\n  tasks:\n'
                         '    - cortexreview.supabase_backup.supabase_dump: "{{ dump }}"\n')
        with open(s3.config, encoding='utf-8') as handle:
            rclone_config = handle.read()
        dump = {'backup_dir': os.path.join(workdir, 'old-host'), 'container': db, 'encrypt_passphrase': PASSPHRASE,
                'offsite_remote': s3.remote, 'offsite_config': s3.config}
        restore = {}
        if args.profile == 'supabase':
            dump.update(storage_path=os.path.join(project, 'volumes', 'storage'),
                        deployment_files=[os.path.join(project, '.env'), os.path.join(project, 'docker-compose.yml')])
            restore['supabase_restore_storage_container'] = name + '-storage'
        backup_seconds, _output = playbook(env, inventory, backup_play, {'dump': dump}, workdir)
        uploaded = sum(os.path.getsize(os.path.join(s3.objects_dir, item)) for item in s3.names())
        # The host is lost: the stack goes with its volumes and files, and a new one starts empty.
        stack(name, args.profile, 'down')
        stack(name, args.profile, 'up', '--no-seed', password='a-new-hosts-password')
        etc = os.path.join(workdir, 'etc')
        os.makedirs(etc, mode=0o700)
        drill_seconds, output = playbook(env, inventory, os.path.join(REPO, 'playbooks', 'dr_restore.yml'), {
            'dr_restore_hosts': 'localhost',
            'supabase_backup_dir': os.path.join(workdir, 'new-host'),
            'supabase_backup_install_dir': os.path.join(workdir, 'runtime'),
            'supabase_backup_command': os.path.join(workdir, 'cortexreview-supabase-backup'),
            'supabase_backup_config_file': os.path.join(etc, 'backup.json'),
            'supabase_backup_cron_enabled': False, 'supabase_backup_logrotate_enabled': False,
            'supabase_backup_log_file': os.path.join(workdir, 'backup.log'),
            'supabase_backup_metrics_file': os.path.join(workdir, 'metrics', 'supabase_backup.prom'),
            'supabase_backup_offsite_remote': s3.remote, 'supabase_backup_offsite_rclone_config': rclone_config,
            'supabase_backup_encrypt_passphrase': PASSPHRASE, 'supabase_backup_container': db,
            'supabase_restore_stop_containers': writers, 'supabase_restore_confirm': True, **restore,
        }, workdir)
        phases = {phase: float(value) for phase, value in
                  re.findall(r'"(runtime|fetch|restore|validate|total) +([0-9.]+) s"', output)}
        if set(phases) != set(PHASES):
            sys.exit('the drill printed no phases:\n%s' % output[-3000:])
        same = psql(db, SAME_ROWS) == expected
        print('database %d MB (%d rows of bench.knowledge_base), %d MB on the remote, profile %s'
              % (size >> 20, args.rows, uploaded >> 20, args.profile))
        print('backup with upload: %.1f s (not part of the recovery)' % backup_seconds)
        for phase in PHASES:
            print('  %-8s %7.1f s' % (phase, phases[phase]))
        print('drill, ansible-playbook wall time: %.1f s' % drill_seconds)
        print('recovery time %.1f s = %.2f of the contract\'s RTO (30 min); target %d s: %s; data identical: %s'
              % (phases['total'], phases['total'] / CONTRACT_RTO, TARGET,
                 'met' if phases['total'] <= TARGET else 'MISSED', same))
        return 0 if same and phases['total'] <= TARGET else 1
    finally:
        s3.close()
        if not args.keep:
            stack(name, args.profile, 'down')
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
