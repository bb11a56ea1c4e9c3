"""What the benchmarks share: the test stack's database, the collection, the backup playbook."""

import json
import os
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Another DB container (and writers) than the test stack's, for a run beside the test suite.
DB_CONTAINER = os.environ.get('BENCH_DB_CONTAINER', 'cortexreview-supabase-db')
WRITERS = tuple(os.environ.get('BENCH_WRITERS', 'cortexreview-api cortexreview-worker').split())
NODE_PYTHON = '/usr/bin/python3'  # the node's system Python, as on a Debian DB host


def psql(sql, db='postgres', options=None):
    """Run SQL in the test stack's DB container, errors stopping it."""
    env = ['-e', 'PGOPTIONS=%s' % options] if options else []
    argv = ['docker', 'exec', '-i'] + env + [DB_CONTAINER, 'psql', '-U', 'postgres', '-X', '-q',
                                             '-v', 'ON_ERROR_STOP=1', '-d', db]
    subprocess.run(argv, input=sql.encode(), check=True)


LOAD_SQL = '''
DROP SCHEMA IF EXISTS bench CASCADE;
CREATE SCHEMA bench;
CREATE TABLE bench.knowledge_base (
    id bigserial PRIMARY KEY, content text NOT NULL, metadata jsonb NOT NULL, embedding vector(1536));
INSERT INTO bench.knowledge_base (content, metadata, embedding)
SELECT 'review note ' || g || ': ' || repeat('prefer explicit error handling over silent fallbacks; ', 8),
       jsonb_build_object('repo', 'service-' || (g % 50), 'lang', 'python', 'n', g),
       (SELECT array_agg((random() * 2 - 1)::real) FROM generate_series(1, 1536) WHERE g > 0)::vector
  FROM generate_series(1, {rows}) g;
'''
# The restore benchmark's rows carry the indexes a restore rebuilds, as knowledge_base does.
INDEX_SQL = '''
CREATE INDEX bench_kb_embedding_idx ON bench.knowledge_base USING ivfflat (embedding vector_cosine_ops) WITH (lists = 100);
CREATE INDEX bench_kb_metadata_idx ON bench.knowledge_base USING gin (metadata jsonb_path_ops);
'''


def load_bench_rows(rows, indexes=False):
    """A few hundred MB of knowledge_base-like rows (1536-dimension vectors) in schema ``bench``."""
    psql(LOAD_SQL.replace('{rows}', str(rows)) + (INDEX_SQL if indexes else ''), options='-c maintenance_work_mem=1GB')
    psql('VACUUM ANALYZE bench.knowledge_base;')


def collections_path(workdir):
    link = os.path.join(workdir, 'collections', 'ansible_collections', 'cortexreview', 'supabase_backup')
    os.makedirs(os.path.dirname(link))
    os.symlink(REPO, link)
    return os.path.join(workdir, 'collections')


class PeakMemory:
    """The peak RSS (VmHWM, kB) of processes whose command line holds ``pattern``, while in a with-block."""

    def __init__(self, pattern):
        self.pattern = pattern
        self.peaks = {}
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=peak_rss_of, args=(pattern, self._stop, self.peaks), daemon=True)

    def __enter__(self):
        self._sampler.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._sampler.join()

    @property
    def peak(self):
        return max(self.peaks.values()) if self.peaks else 0


def peak_rss_of(pattern, stop, peaks):
    """Sample the peak RSS (VmHWM) of processes whose command line contains ``pattern``.

    /proc is searched for them every 0.5 s; the ones found are read every 50 ms (VmHWM keeps the
    peak, so only a process's last moments could be missed), which costs the run measured little CPU.
    """
    known = set()
    last_search = 0.0
    while not stop.is_set():
        if time.monotonic() - last_search >= 0.5:
            last_search = time.monotonic()
            for pid in filter(str.isdigit, os.listdir('/proc')):
                try:
                    with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                        if pattern in handle.read():
                            known.add(pid)
                except OSError:
                    continue
        for pid in list(known):
            try:
                with open('/proc/%s/status' % pid) as handle:
                    for line in handle:
                        if line.startswith('VmHWM:'):
                            peaks[pid] = max(peaks.get(pid, 0), int(line.split()[1]))
            except OSError:
                known.discard(pid)
        time.sleep(0.05)


def run_backup_playbook(workdir, env, backup_dir, passphrase=None):
    """backup.yml with every path in ``workdir``: (seconds, the new backup, peak RSS of the module in kB)."""
    vars_file = os.path.join(workdir, 'vars.json')
    with open(os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'w') as handle:
        # The operator's defaults, but every path in the work directory: the run must not
        # touch a real installation on this machine.
        json.dump({'supabase_backup_encrypt_passphrase': passphrase,
                   'supabase_backup_passphrase_file': os.path.join(workdir, 'etc', 'passphrase'),
                   'supabase_backup_metrics_file': '',
                   'supabase_backup_hosts': 'localhost', 'supabase_backup_dir': backup_dir,
                   'supabase_backup_container': DB_CONTAINER,
                   'supabase_backup_install_dir': os.path.join(workdir, 'runtime'),
                   'supabase_backup_command': os.path.join(workdir, 'bin', 'cortexreview-supabase-backup'),
                   'supabase_backup_config_file': os.path.join(workdir, 'etc', 'backup.json'),
                   'supabase_backup_cron_file': os.path.join(workdir, 'cron.d', 'cortexreview-backup'),
                   'supabase_backup_log_file': os.path.join(workdir, 'log', 'supabase_backup.log'),
                   'supabase_backup_logrotate_file': os.path.join(workdir, 'logrotate.d', 'backup')}, handle)
    for directory in ('bin', 'cron.d', 'log', 'logrotate.d'):
        os.makedirs(os.path.join(workdir, directory), exist_ok=True)
    inventory = os.path.join(workdir, 'inventory')
    with open(inventory, 'w') as handle:
        handle.write('localhost ansible_connection=local ansible_python_interpreter=%s\n' % NODE_PYTHON)
    with PeakMemory(b'AnsiballZ_supabase_dump') as memory:
        started = time.monotonic()
        result = subprocess.run(['ansible-playbook', '-i', inventory, os.path.join(REPO, 'playbooks', 'backup.yml'),
                                 '-e', '@' + vars_file], env=env, capture_output=True, text=True, check=False)
        elapsed = time.monotonic() - started
    if result.returncode != 0:
        sys.exit('backup.yml failed:\n%s\n%s' % (result.stdout[-3000:], result.stderr[-3000:]))
    suffix = '.sql.gz.gpg' if passphrase else '.sql.gz'
    newest = sorted(name for name in os.listdir(backup_dir) if name.endswith(suffix))[-1]
    return elapsed, os.path.join(backup_dir, newest), memory.peak
