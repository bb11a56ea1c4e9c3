"""Benchmark: supabase_restore and restore.yml against the contract's restore procedure.

    python3 benchmarks/restore_benchmark.py [--rows 20000] [--rounds 2] [--writers-stop-at swap|load|both] [--jobs 0]

BENCH_DB_CONTAINER and BENCH_WRITERS (space-separated) name another DB container and its writers
than the test stack's, so that it can run beside the test suite.

Loads vector rows (1536 dimensions, an IVFFlat index) into schema `bench` of the test stack's
`postgres` database, makes one backup of it with backup.yml, then restores that backup into
`postgres`, side by side and alternating:

  contract     docker stop api worker; DROP DATABASE postgres; CREATE DATABASE postgres;
               gunzip -c FILE | docker exec -i psql; docker start api worker
  module       a one-task play calling supabase_restore (ansible start-up included)
  restore.yml  the role: its check-mode plan, the confirmation given with -e, the restore

The contract's psql gets maintenance_work_mem=1GB (the module's default) through PGOPTIONS: with
the server's 64 MB the IVFFlat build of 20 000 rows fails ("memory required is 65 MB") and the
contract's procedure, which does not stop on errors, ends with the index missing.

It prints the wall times and their ratios (targets: module <= 1.0, restore.yml <= 1.1), the API's
downtime (from the engine's events; target with writers_stop_at swap <= 0.25 of the contract's
restore time), the split of our restore (load, post-data, verification, swap; the module's own
duration and Ansible's time around it), the load average over the timed runs (the machine may
be shared: compare ratios of one run) and the restore process's peak memory on the seed database
and on the large one (bounded: it must not grow with the database). --writers-stop-at both
measures both modes beside the same contract runs. Exits 1 if a target is missed. It is not part
of .ci/run.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from _bench import DB_CONTAINER, REPO, WRITERS, PeakMemory, collections_path, load_bench_rows, psql, run_backup_playbook

API_CONTAINER = WRITERS[0]
CONTRACT_MAINTENANCE_WORK_MEM = '1GB'
MODULE_TARGET = 1.0
ROLE_TARGET = 1.1
DOWNTIME_TARGET = 0.25
MEMORY_GROWTH_LIMIT = 1.5


class Downtime:
    """Seconds the API container was down while the with-block ran: from each stop request (the
    engine's ``kill`` event, else ``die``) to its next ``start``. The events are followed live by one
    ``docker events`` process, which costs the restores no CPU (a ``docker inspect`` every 50 ms
    did); read afterwards, they could be lost: the engine replays only its last 256 events."""

    def __init__(self):
        self.seconds = 0.0
        self._events = None

    def __enter__(self):
        self._events = subprocess.Popen(  # pylint: disable=consider-using-with
            ['docker', 'events', '--since', '%.3f' % time.time(), '--filter', 'container=' + API_CONTAINER,
             '--filter', 'event=kill', '--filter', 'event=die', '--filter', 'event=start',
             '--format', '{{.TimeNano}} {{.Action}}'], stdout=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *exc_info):
        time.sleep(0.5)  # the last events on their way
        self._events.terminate()
        events, _stderr = self._events.communicate()
        down_since = None
        for line in events.splitlines():
            if not line.strip():
                continue
            stamp, action = line.split(None, 1)
            moment = int(stamp) / 1e9
            if action in ('kill', 'die') and down_since is None:
                down_since = moment
            elif action == 'start' and down_since is not None:
                self.seconds += moment - down_since
                down_since = None
        if down_since is not None:
            self.seconds += time.time() - down_since


def drop_old_copies():
    """The previous databases our restores keep, so the disk holds one copy at a time."""
    rows = subprocess.run(['docker', 'exec', DB_CONTAINER, 'psql', '-U', 'postgres', '-XAtqd', 'template1', '-c',
                           "SELECT datname FROM pg_database WHERE datname LIKE 'postgres\\_%restore\\_%'"],
                          capture_output=True, text=True, check=True).stdout.split()
    for name in rows:
        psql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name, db='template1')


def run_contract(path):
    """The contract's restore: stop the writers, drop, create, gunzip | psql, start them."""
    phases = {}
    with Downtime() as downtime:
        started = time.monotonic()
        subprocess.run(['docker', 'stop'] + list(WRITERS), check=True, stdout=subprocess.DEVNULL)
        phases['stop'] = time.monotonic()
        psql('DROP DATABASE postgres WITH (FORCE);', db='template1')
        psql('CREATE DATABASE postgres;', db='template1')
        phases['drop_create'] = time.monotonic()
        subprocess.run(['bash', '-c', 'set -o pipefail; gunzip -c "%s" | docker exec -i -e PGOPTIONS="-c '
                        'maintenance_work_mem=%s" %s psql -U postgres -X -q -d postgres >/dev/null'
                        % (path, CONTRACT_MAINTENANCE_WORK_MEM, DB_CONTAINER)], check=True)
        phases['gunzip_psql'] = time.monotonic()
        subprocess.run(['docker', 'start'] + list(WRITERS), check=True, stdout=subprocess.DEVNULL)
        phases['start'] = time.monotonic()
        elapsed = time.monotonic() - started
    previous = started
    for name in ('stop', 'drop_create', 'gunzip_psql', 'start'):
        phases[name], previous = phases[name] - previous, phases[name]
    return elapsed, downtime.seconds, phases


def run_module(workdir, env, python, args):
    """A one-task play calling supabase_restore; (seconds, its result, API downtime, peak RSS in kB).

    The result comes through the tree callback, not a second task that would add to the wall time.
    """
    tree = os.path.join(workdir, 'restore-result')
    shutil.rmtree(tree, ignore_errors=True)
    playbook = os.path.join(workdir, 'restore-module.yml')
    with open(playbook, 'w') as handle:
        handle.write('- hosts: localhost\n  gather_facts: false\n  tasks:\n'
                     '    - cortexreview.supabase_backup.supabase_restore: %s\n' % json.dumps(args))
    env = dict(env, ANSIBLE_CALLBACKS_ENABLED='ansible.builtin.tree', ANSIBLE_CALLBACK_TREE_DIR=tree)
    with Downtime() as downtime, PeakMemory(b'AnsiballZ_supabase_restore') as memory:
        started = time.monotonic()
        ran = subprocess.run(['ansible-playbook', '-i', inventory(workdir, python), playbook], env=env,
                             capture_output=True, text=True, check=False)
        elapsed = time.monotonic() - started
    if ran.returncode != 0:
        sys.exit('the restore failed:\n%s' % ran.stdout[-3000:])
    with open(os.path.join(tree, 'localhost')) as handle:
        return elapsed, json.load(handle), downtime.seconds, memory.peak


def run_role(workdir, env, python, src, writers_stop_at, jobs):
    """playbooks/restore.yml on localhost, confirmation given; (seconds, API downtime)."""
    vars_file = os.path.join(workdir, 'restore-vars.json')
    with open(vars_file, 'w') as handle:
        json.dump({'supabase_restore_hosts': 'localhost', 'supabase_restore_src': src,
                   'supabase_restore_confirm': True, 'supabase_restore_writers_stop_at': writers_stop_at,
                   'supabase_restore_restore_jobs': jobs, 'supabase_restore_container': DB_CONTAINER,
                   'supabase_restore_stop_containers': list(WRITERS),
                   'supabase_restore_venv_dir': os.path.dirname(os.path.dirname(python))}, handle)
    with Downtime() as downtime:
        started = time.monotonic()
        ran = subprocess.run(['ansible-playbook', '-i', inventory(workdir, python),
                              os.path.join(REPO, 'playbooks', 'restore.yml'), '-e', '@' + vars_file],
                             env=env, capture_output=True, text=True, check=False)
        elapsed = time.monotonic() - started
    if ran.returncode != 0:
        sys.exit('restore.yml failed:\n%s' % ran.stdout[-3000:])
    return elapsed, downtime.seconds


def inventory(workdir, python):
    path = os.path.join(workdir, 'restore-inventory')
    with open(path, 'w') as handle:
        handle.write('localhost ansible_connection=local ansible_python_interpreter=%s\n' % python)
    return path


def median(values):
    return statistics.median(values) if values else float('nan')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--rows', type=int, default=20000, help='bench rows (20000 ~ 330 MB database)')
    parser.add_argument('--rounds', type=int, default=2, help='timed runs of each, alternating')
    parser.add_argument('--writers-stop-at', default='swap', choices=['swap', 'load', 'both'],
                        help='both: each mode measured in the same run, beside the same contract runs')
    parser.add_argument('--jobs', type=int, default=0, help='restore_jobs (0: one per CPU)')
    args = parser.parse_args()
    modes = ['swap', 'load'] if args.writers_stop_at == 'both' else [args.writers_stop_at]
    if 'BENCH_DB_CONTAINER' not in os.environ:
        subprocess.run(['bash', os.path.join(REPO, 'tests', 'testbed', 'stack.sh'), 'up'], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workdir = tempfile.mkdtemp(prefix='cortexreview-restore-bench-')
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(workdir), ANSIBLE_NOCOLOR='1')
    backup_dir = os.path.join(workdir, 'backups')
    python = os.path.join(workdir, 'runtime', 'venv', 'bin', 'python3')
    module_args = {'confirm': True, 'restore_jobs': args.jobs, 'container': DB_CONTAINER,
                   'stop_containers': list(WRITERS)}
    try:
        # Warm-up on the seed database: provisions the runtime, gives the small-size memory figure.
        _elapsed, small_backup, _rss = run_backup_playbook(workdir, env, backup_dir)
        _elapsed, _result, _downtime, small_rss = run_module(workdir, env, python, dict(
            module_args, src=small_backup, writers_stop_at=modes[0]))
        drop_old_copies()
        print('loading %d vector rows into schema bench ...' % args.rows, flush=True)
        load_bench_rows(args.rows, indexes=True)
        _elapsed, backup, _rss = run_backup_playbook(workdir, env, backup_dir)
        order = ['contract'] + [(which, mode) for mode in modes for which in ('module', 'role')]
        times = dict((key, []) for key in order)
        downtimes = dict((key, []) for key in order)
        splits = dict((mode, []) for mode in modes)
        engine = dict((mode, []) for mode in modes)
        reported = dict((mode, []) for mode in modes)
        peaks, loads, load, contract_phases = [], [], {}, []
        for round_number in range(args.rounds):
            shift = round_number % len(order)
            for key in order[shift:] + order[:shift]:
                loads.append(os.getloadavg()[0])
                if key == 'contract':
                    elapsed, downtime, phases = run_contract(backup)
                    contract_phases.append(phases)
                elif key[0] == 'module':
                    elapsed, result, downtime, rss = run_module(workdir, env, python, dict(
                        module_args, src=backup, writers_stop_at=key[1]))
                    splits[key[1]].append(result['timings'])
                    engine[key[1]].append(result['duration'])
                    reported[key[1]].append(result['downtime'] or 0)
                    peaks.append(rss)
                    load = result['load']
                else:
                    elapsed, downtime = run_role(workdir, env, python, backup, key[1], args.jobs)
                times[key].append(elapsed)
                downtimes[key].append(downtime)
                drop_old_copies()
        loads.append(os.getloadavg()[0])
        contract = median(times['contract'])
        memory_ratio = max(peaks) / small_rss if small_rss else float('inf')
        with open(backup[:-len('.sql.gz')] + '.manifest.json') as handle:
            size = json.load(handle)['parts'][0].get('uncompressed_size') or 0
        print()
        print('data set:      %d vector rows, backup %.0f MB (%.0f MB of SQL), %d rounds' % (
            args.rows, os.path.getsize(backup) / 1e6, size / 1e6, args.rounds))
        print('load average:  %.1f to %.1f (median %.1f) over the timed runs; %d CPUs' % (
            min(loads), max(loads), median(loads), os.cpu_count()))
        print('contract:      %.1f s, writers down %.1f s   (runs: %s)' % (
            contract, median(downtimes['contract']), ', '.join('%.1f' % t for t in times['contract'])))
        print('  split:       %s' % ', '.join(
            '%s %.1f s' % (phase, median([split[phase] for split in contract_phases]))
            for phase in ('stop', 'drop_create', 'gunzip_psql', 'start')))
        missed = []
        for mode in modes:
            module, role = median(times[('module', mode)]), median(times[('role', mode)])
            module_ratio, role_ratio = module / contract, role / contract
            downtime_ratio = median(downtimes[('module', mode)]) / contract
            print('[writers_stop_at: %s]' % mode)
            print('  module:      %.1f s (%.2fx), writers down %.1f s = %.2fx (reported %.1f s)   (runs: %s; down %s)' % (
                module, module_ratio, median(downtimes[('module', mode)]), downtime_ratio, median(reported[mode]),
                ', '.join('%.1f' % t for t in times[('module', mode)]),
                ', '.join('%.1f' % t for t in downtimes[('module', mode)])))
            print('  restore.yml: %.1f s (%.2fx), writers down %.1f s   (runs: %s; down %s)' % (
                role, role_ratio, median(downtimes[('role', mode)]),
                ', '.join('%.1f' % t for t in times[('role', mode)]),
                ', '.join('%.1f' % t for t in downtimes[('role', mode)])))
            print('  split:       %s; the module itself %.1f s, Ansible around it %.1f s' % (
                ', '.join('%s %.1f s' % (phase, median([split.get(phase, 0) for split in splits[mode]]))
                          for phase in ('load', 'post_data', 'verify', 'swap')),
                median(engine[mode]), module - median(engine[mode])))
            missed += ['module (%s)' % mode for ok in [module_ratio <= MODULE_TARGET] if not ok]
            missed += ['role (%s)' % mode for ok in [role_ratio <= ROLE_TARGET] if not ok]
            if mode == 'swap' and downtime_ratio > DOWNTIME_TARGET:
                missed.append('downtime')
        print('load input:    %s%s' % (load['transport'], ' (%s)' % load['not_piped'] if load['not_piped'] else ''))
        print('post-data:     %d sessions, maintenance_work_mem %s, %d parallel workers, %d entries in parallel' % (
            load['sessions'], load['maintenance_work_mem'], load['max_parallel_maintenance_workers'],
            load['parallel_entries']))
        print('targets:       module <= %.2fx, restore.yml <= %.2fx, downtime (swap) <= %.2fx of the contract\'s time'
              % (MODULE_TARGET, ROLE_TARGET, DOWNTIME_TARGET))
        print('peak memory:   %.0f MB on the seed database, %.0f MB on the large one (ratio %.2f, limit %.1f)' % (
            small_rss / 1024, max(peaks) / 1024, memory_ratio, MEMORY_GROWTH_LIMIT))
        if memory_ratio > MEMORY_GROWTH_LIMIT:
            missed.append('memory')
        print('result:        %s' % ('all targets met' if not missed else 'MISSED: ' + ', '.join(missed)))
        return 1 if missed else 0
    finally:
        drop_old_copies()
        subprocess.run(['docker', 'start'] + list(WRITERS), check=False, stdout=subprocess.DEVNULL)
        psql('DROP SCHEMA IF EXISTS bench CASCADE;')
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
