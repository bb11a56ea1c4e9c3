"""Make ``ansible_collections.cortexreview.supabase_backup`` importable from a plain checkout."""

import hashlib
import os
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _collections_root():
    marker = os.path.join('ansible_collections', 'cortexreview', 'supabase_backup')
    if REPO_ROOT.endswith(marker):
        return REPO_ROOT[:-len(marker)]
    # One link per checkout: two checkouts tested at once must not import each other's code.
    checkout = hashlib.sha256(REPO_ROOT.encode('utf-8')).hexdigest()[:12]
    root = os.path.join(tempfile.gettempdir(), 'cortexreview-unit-collections-' + checkout)
    link = os.path.join(root, marker)
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if os.path.realpath(link) != REPO_ROOT:
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(REPO_ROOT, link)
    return root


sys.path.insert(0, _collections_root())
