#!/usr/bin/env bash
# ansible-test sanity on this collection, offline.
#
#   bash tests/sanity.sh [extra ansible-test sanity args]
#
# ansible-test wants the collection under ansible_collections/<namespace>/<name>, so the
# working tree's files (tracked and untracked, not ignored) are copied there first. Its pip
# bootstrap downloads get-pip.py from a host this machine cannot reach: a stand-in in its
# cache installs pip with ensurepip and then the requested packages from PyPI.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# The pip version ansible-test bootstraps into its virtual environments.
pip_version=$("$python" -c "import ansible_test._internal.python_requirements as r, inspect, re; print(re.search(r\"pip='([0-9.]+)'\", inspect.getsource(r.get_venv_packages)).group(1))")
cache="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
if [ ! -f "$cache" ]; then
    mkdir -p "$(dirname "$cache")"
    cat > "$cache" <<'PY'
"""Stand-in for get-pip.py: pip from ensurepip, then the requested packages from the index."""
import ensurepip
import os
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
# ensurepip points PIP_CONFIG_FILE at /dev/null; the machine's pip configuration is wanted below.
os.environ.pop('PIP_CONFIG_FILE', None)
args = [arg for arg in sys.argv[1:] if arg not in ('--no-setuptools', '--no-wheel')]
sys.exit(subprocess.call([sys.executable, '-m', 'pip', 'install'] + args))
PY
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/cortexreview-sanity.XXXXXX")
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/cortexreview/supabase_backup"
mkdir -p "$dest"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$dest")
cd "$dest"
git init -q . && git add -A && git -c user.name=sanity -c user.email=sanity@localhost commit -qm sanity
ansible-test sanity --local --python "$pyver" "$@"
