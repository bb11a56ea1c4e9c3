"""Benchmark: point-in-time recovery against the logical backup and restore, and the RPO after a loss.

    python3 benchmarks/pitr_benchmark.py [--rows 20000] [--keep]

A test-bed stack of its own (never the test suite's), `crbench-pitr`, seeded and loaded with vector
rows (1536 dimensions, an IVFFlat index) in schema `bench` (~330 MB with 20 000 rows). Its api and
worker containers insert a timestamped row every 0.5 s each throughout. Measured in one run, each
through a one-task play (Ansible's start-up included on both sides):

  base backup     pitr_base_backup (full)    against   supabase_dump (the logical dump)
  recovery        pitr_restore to a time T   against   supabase_restore of the dump
  RPO             the DB container killed and its volume emptied (a fresh PGDATA is all there is),
                  then pitr_restore to the latest: the seconds between the kill and the newest row
                  recovered

Prints the figures and the ratios. Exits 1 if a recovery misses its target (rows up to T and none
after; an RPO of 60 s or more). Not part of .ci/run.
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from _bench import INDEX_SQL, LOAD_SQL, REPO

STACK_SH = os.path.join(REPO, 'tests', 'testbed', 'stack.sh')
NAME = 'crbench-pitr'
DB = NAME + '-supabase-db'
VOLUME = NAME + '-supabase-db-data'
WRITERS = [NAME + '-api', NAME + '-worker']
RPO_TARGET = 60
PASSWORD = 'postgres-test-password'  # the plain test bed's (tests/testbed/docker-compose.yml)


def stack(*args):
    env = dict(os.environ, CORTEXREVIEW_TESTBED=NAME, CORTEXREVIEW_TESTBED_PROFILE='plain')
    subprocess.run(['bash', STACK_SH] + list(args), env=env, check=True, stdout=subprocess.DEVNULL)


def psql(sql):
    done = subprocess.run(['docker', 'exec', '-i', '-e', 'PGOPTIONS=-c maintenance_work_mem=1GB', DB, 'psql',
                           '-U', 'postgres', '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-d', 'postgres'],
                          input=sql.encode(), capture_output=True, check=True)
    return done.stdout.decode().strip()


class Plays:
    """One-task plays calling a module of the collection; each returns (seconds, result)."""

    def __init__(self, workdir):
        self.workdir = workdir
        collections = os.path.join(workdir, 'collections', 'ansible_collections', 'cortexreview')
        os.makedirs(collections)
        os.symlink(REPO, os.path.join(collections, 'supabase_backup'))
        self.env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(workdir, 'collections'),
                        ANSIBLE_NOCOLOR='1', ANSIBLE_CALLBACKS_ENABLED='ansible.builtin.tree')
        self.inventory = os.path.join(workdir, 'inventory')
        with open(self.inventory, 'w') as handle:
            handle.write('localhost ansible_connection=local ansible_python_interpreter=%s\n' % sys.executable)

    def run(self, module, args):
        play = os.path.join(self.workdir, '%s.yml' % module)
        with open(play, 'w') as handle:
            handle.write('- hosts: localhost\n  gather_facts: false\n  tasks:\n'
                         '    - cortexreview.supabase_backup.%s: "{{ args }}"\n' % module)
        args_file = os.path.join(self.workdir, 'args.json')
        with open(os.open(args_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'w') as handle:
            json.dump({'args': args}, handle)
        tree = os.path.join(self.workdir, 'tree')
        shutil.rmtree(tree, ignore_errors=True)
        started = time.monotonic()
        done = subprocess.run(['ansible-playbook', '-i', self.inventory, play, '-e', '@' + args_file],
                              env=dict(self.env, ANSIBLE_CALLBACK_TREE_DIR=tree), capture_output=True, text=True,
                              check=False)
        elapsed = time.monotonic() - started
        if done.returncode != 0:
            sys.exit('%s failed:\n%s\n%s' % (module, done.stdout[-4000:], done.stderr[-2000:]))
        with open(os.path.join(tree, 'localhost')) as handle:
            return elapsed, json.load(handle)


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def lose_the_database():
    """Kill the DB container and empty its volume: a fresh PGDATA is all that is left."""
    subprocess.run(['docker', 'kill', DB], check=True, stdout=subprocess.DEVNULL)
    killed = utc_now()
    subprocess.run(['docker', 'run', '--rm', '--network', 'none', '-v', VOLUME + ':/data', '--entrypoint', 'find',
                    'cortexreview/supabase-db:test', '/data', '-mindepth', '1', '-delete'], check=True)
    return killed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--rows', type=int, default=20000)
    parser.add_argument('--keep', action='store_true', help='leave the stack running')
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix='cortexreview-pitr-bench-')
    os.chmod(workdir, 0o700)
    backup_dir = os.path.join(workdir, 'backups')
    common = {'container': DB, 'backup_dir': backup_dir}
    try:
        stack('down')
        stack('up')
        psql(LOAD_SQL.replace('{rows}', str(args.rows)) + INDEX_SQL + 'VACUUM ANALYZE bench.knowledge_base;')
        size = int(psql("SELECT pg_database_size('postgres')"))
        plays = Plays(workdir)
        archive_seconds, _result = plays.run('pitr_archive', dict(common, state='present', login_password=PASSWORD))
        dump_seconds, dump = plays.run('supabase_dump', {'container': DB, 'backup_dir': os.path.join(workdir, 'logical')})
        base_seconds, _result = plays.run('pitr_base_backup', dict(common))
        # A moment between two writes, with writes before and after it.
        time.sleep(5)
        target = utc_now()
        time.sleep(5)
        expected = psql("SELECT count(*) FROM feedback_audit_log WHERE created_at <= '%s'" % target.isoformat())
        began = utc_now()
        pitr_seconds, recovered = plays.run('pitr_restore', dict(
            common, target_time=target.isoformat(), confirm=True, stop_containers=WRITERS,
            volume=VOLUME))
        # Rows the writers add once they run again are newer than the start of the recovery.
        window = (target.isoformat(), target.isoformat(), began.isoformat())
        got = psql("SELECT count(*) FILTER (WHERE created_at <= '%s'), count(*) FILTER (WHERE created_at > '%s' "
                   "AND created_at < '%s') FROM feedback_audit_log" % window).split('|')
        to_time_ok = got[0] == expected and got[1] == '0'
        restore_seconds, _result = plays.run('supabase_restore', {
            'container': DB, 'src': dump['path'], 'confirm': True, 'stop_containers': WRITERS})
        # Archiving again on the new timeline, a new base backup, then the loss.
        plays.run('pitr_archive', dict(common, state='present', login_password=PASSWORD))
        plays.run('pitr_base_backup', dict(common))
        time.sleep(10)
        killed = lose_the_database()
        latest_seconds, latest = plays.run('pitr_restore', dict(
            common, confirm=True, stop_containers=WRITERS, volume=VOLUME))
        newest = psql("SELECT extract(epoch FROM max(created_at)) FROM feedback_audit_log WHERE created_at < '%s'"
                      % killed.isoformat())
        rpo = killed.timestamp() - float(newest)
        print('database %d MB (%d rows of bench.knowledge_base); archiving set up in %.1f s'
              % (size >> 20, args.rows, archive_seconds))
        print('base backup (full):   %6.1f s  against the logical dump %6.1f s  = %.2fx'
              % (base_seconds, dump_seconds, base_seconds / dump_seconds))
        print('recovery to a time:   %6.1f s  against the logical restore %5.1f s  = %.2fx  (reached %s; rows up '
              'to T and none after: %s)' % (pitr_seconds, restore_seconds, pitr_seconds / restore_seconds,
                                            (recovered.get('reached') or {}).get('time'), to_time_ok))
        print('recovery to the latest after the loss: %.1f s; RPO observed %.1f s (target < %d s)'
              % (latest_seconds, rpo, RPO_TARGET))
        print('  the module reported: reached %s, writers down %s s, %s s in all'
              % ((latest.get('reached') or {}).get('time'), latest.get('downtime'), latest.get('duration')))
        return 0 if to_time_ok and rpo < RPO_TARGET else 1
    finally:
        if not args.keep:
            subprocess.run(['docker', 'rm', '-f', DB + '-pitr-receiver'], check=False, capture_output=True)
            stack('down')
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
