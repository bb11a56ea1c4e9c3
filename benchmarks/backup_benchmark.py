"""Benchmark: `ansible-playbook playbooks/backup.yml` against the contract's shell pipeline.

    python3 benchmarks/backup_benchmark.py [--rows 20000] [--rounds 2] [--encrypted]

Loads a few hundred MB of knowledge_base-like rows (1536-dimension vectors) into schema
`bench` of the test stack's `postgres` database, then times, side by side and alternating:

  baseline  docker exec cortexreview-supabase-db pg_dump -U postgres postgres | gzip > FILE
  ours      ansible-playbook playbooks/backup.yml   (start-up and the role's checks included)

With --encrypted both encrypt with gpg (AES256): the baseline is the contract's
``... | gzip | gpg --symmetric --cipher-algo AES256 > FILE.gpg`` and backup.yml gets
``supabase_backup_encrypt_passphrase``. It prints the wall-time ratio (target <= 0.5), the size ratio against gzip's default level
(target <= 1.10) and the backup process's peak memory on the small seed database and on the
large one (bounded: it must not grow with the database). Exits 1 if a target is missed.
The `bench` schema is dropped at the end. Needs the test stack (tests/testbed/stack.sh up).
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

from _bench import DB_CONTAINER, REPO, collections_path, load_bench_rows, psql, run_backup_playbook

TIME_TARGET = 0.5
SIZE_TARGET = 1.10
MEMORY_GROWTH_LIMIT = 1.5


def run_baseline(path, passphrase_file=None):
    pipeline = 'set -o pipefail; docker exec %s pg_dump -U postgres postgres | gzip' % DB_CONTAINER
    if passphrase_file:
        pipeline += (' | gpg --batch --pinentry-mode loopback --passphrase-file "%s" --symmetric '
                     '--cipher-algo AES256' % passphrase_file)
    started = time.monotonic()
    subprocess.run(['bash', '-c', '%s > "%s"' % (pipeline, path)], check=True)
    return time.monotonic() - started


def check_gzip(path, passphrase_file=None):
    """gzip -t of the file, decrypted first when it is encrypted."""
    if not passphrase_file:
        subprocess.run(['gzip', '-t', path], check=True)
        return
    subprocess.run(['bash', '-c', 'set -o pipefail; gpg --batch --pinentry-mode loopback --passphrase-file "%s" '
                    '--decrypt "%s" 2>/dev/null | gzip -t' % (passphrase_file, path)], check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--rows', type=int, default=20000, help='bench rows (20000 ~ 350 MB of SQL)')
    parser.add_argument('--rounds', type=int, default=2, help='timed runs of each, alternating')
    parser.add_argument('--encrypted', action='store_true', help='both encrypt with gpg (AES256)')
    args = parser.parse_args()
    subprocess.run(['bash', os.path.join(REPO, 'tests', 'testbed', 'stack.sh'), 'up'], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workdir = tempfile.mkdtemp(prefix='cortexreview-bench-')
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(workdir), ANSIBLE_NOCOLOR='1')
    backup_dir = os.path.join(workdir, 'backups')
    passphrase = passphrase_file = None
    if args.encrypted:
        passphrase = 'bench-' + os.urandom(12).hex()
        passphrase_file = os.path.join(workdir, 'bench-passphrase')
        with open(os.open(passphrase_file, os.O_WRONLY | os.O_CREAT, 0o600), 'w') as handle:
            handle.write(passphrase + '\n')
    try:
        # Warm-up on the small seed database: provisions the runtime, gives the small-size memory figure.
        _elapsed, _path, small_rss = run_backup_playbook(workdir, env, backup_dir, passphrase)
        print('loading %d vector rows into schema bench ...' % args.rows, flush=True)
        load_bench_rows(args.rows)
        baseline_times, our_times, our_rss = [], [], []
        baseline_path = os.path.join(workdir, 'baseline.sql.gz' + ('.gpg' if args.encrypted else ''))
        for round_number in range(args.rounds):
            order = ('baseline', 'ours') if round_number % 2 == 0 else ('ours', 'baseline')
            for which in order:
                if which == 'baseline':
                    baseline_times.append(run_baseline(baseline_path, passphrase_file))
                else:
                    elapsed, our_path, rss = run_backup_playbook(workdir, env, backup_dir, passphrase)
                    our_times.append(elapsed)
                    our_rss.append(rss)
        for path in (baseline_path, our_path):
            check_gzip(path, passphrase_file)
        # The restore point's manifest (STEM.manifest.json); the dump is its first part.
        stem = our_path[:-len('.sql.gz.gpg')] if our_path.endswith('.gpg') else our_path[:-len('.sql.gz')]
        with open(stem + '.manifest.json') as handle:
            manifest = json.load(handle)['parts'][0]
        dumped_rows = manifest['tables'].get('bench.knowledge_base')
        baseline_time = statistics.median(baseline_times)
        our_time = statistics.median(our_times)
        baseline_size = os.path.getsize(baseline_path)
        our_size = os.path.getsize(our_path)
        time_ratio = our_time / baseline_time
        size_ratio = our_size / baseline_size
        memory_ratio = max(our_rss) / small_rss if small_rss else float('inf')
        print()
        print('data set:      %d vector rows, %.0f MB of SQL (%s)' % (
            args.rows, manifest['uncompressed_size'] / 1e6, manifest['compression']['implementation']))
        print('baseline:      %.1f s  %.1f MB   docker exec pg_dump | gzip%s   (runs: %s)' % (
            baseline_time, baseline_size / 1e6, ' | gpg --symmetric' if args.encrypted else '',
            ', '.join('%.1f' % t for t in baseline_times)))
        print('backup.yml:    %.1f s  %.1f MB   ansible-playbook, start-up included (runs: %s)' % (
            our_time, our_size / 1e6, ', '.join('%.1f' % t for t in our_times)))
        print('time ratio:    %.2f  (target <= %.2f)' % (time_ratio, TIME_TARGET))
        print('size ratio:    %.3f (target <= %.2f)' % (size_ratio, SIZE_TARGET))
        print('peak memory:   %.0f MB on the seed database, %.0f MB on the large one (ratio %.2f, limit %.1f)' % (
            small_rss / 1024, max(our_rss) / 1024, memory_ratio, MEMORY_GROWTH_LIMIT))
        print('rows in dump:  %s of %d' % (dumped_rows, args.rows))
        missed = [name for name, ok in (('time', time_ratio <= TIME_TARGET), ('size', size_ratio <= SIZE_TARGET),
                                        ('memory', memory_ratio <= MEMORY_GROWTH_LIMIT),
                                        ('rows', dumped_rows == args.rows)) if not ok]
        print('result:        %s' % ('all targets met' if not missed else 'MISSED: ' + ', '.join(missed)))
        return 1 if missed else 0
    finally:
        psql('DROP SCHEMA IF EXISTS bench CASCADE;')
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
