# -*- coding: utf-8 -*-
# Copyright (c) 2026 CortexReview engineering
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This is a private module_utils of cortexreview.supabase_backup; it may change without notice.
# It must stay importable without Ansible: the cron runner uses it too.
"""The point-in-time archive on paper: WAL file names, gaps, timelines and the base backup catalog.

Pure functions (no Docker, no PostgreSQL): the base backup, the restore and the status all read the
archive through them, so they agree on what is missing and what may be removed.

A WAL segment is named ``TTTTTTTTLLLLLLLLSSSSSSSS`` (timeline, then the segment number split into a
"log" and a segment inside it: ``number = log * (2**32 // segment_size) + seg``); ``pg_receivewal``
writes the segment in progress as ``<name>.partial`` and each timeline switch as ``TTTTTTTT.history``
(lines ``<parent timeline> <switch LSN> <reason>``).
"""

from __future__ import annotations

import collections
import json
import os
import re

CATALOG_FORMAT = 1
BASE_PREFIX = 'pitr-base-'
CATALOG_KEYS = ('format', 'name', 'type', 'parent', 'timeline', 'start_lsn', 'stop_lsn', 'start_wal', 'stop_wal',
                'started_at', 'finished_at', 'finished_epoch', 'pg_version', 'system_identifier',
                'wal_segment_size', 'size')
FULL = 'full'
INCREMENTAL = 'incremental'

SEGMENT = 'segment'
PARTIAL = 'partial'
HISTORY = 'history'
DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024

_SEGMENT_RE = re.compile(r'^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})(\.partial)?$')
_HISTORY_RE = re.compile(r'^([0-9A-F]{8})\.history$')
_LSN_RE = re.compile(r'^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$')
_BASE_NAME_RE = re.compile(r'^pitr-base-\d{8}_\d{6}$')
_DAY = 86400


class WalFile(collections.namedtuple('WalFile', 'name kind timeline number')):
    """One file of the WAL directory: ``number`` is the segment number (None for a history file)."""


# ---------------------------------------------------------------------------------------- names --

def check_segment_size(segment_size):
    """``segment_size`` as PostgreSQL allows it (a power of two, 1 MB to 1 GB), else ValueError."""
    if (isinstance(segment_size, bool) or not isinstance(segment_size, int)
            or not 1 << 20 <= segment_size <= 1 << 30 or segment_size & (segment_size - 1)):
        raise ValueError('invalid WAL segment size %r: PostgreSQL uses a power of two from 1 MB to 1 GB'
                         % (segment_size,))
    return segment_size


def segments_per_log(segment_size):
    """How many segments one "log" (the middle 8 hex digits) holds: 4 GB worth."""
    return (1 << 32) // check_segment_size(segment_size)


def parse_wal_name(name, segment_size=DEFAULT_SEGMENT_SIZE):
    """A WalFile for a segment, ``.partial`` or ``.history`` name; None for anything else (temp files)."""
    match = _HISTORY_RE.match(name)
    if match:
        timeline = int(match.group(1), 16)
        return WalFile(name, HISTORY, timeline, None) if timeline else None
    match = _SEGMENT_RE.match(name)
    if not match:
        return None
    timeline, log, seg = (int(group, 16) for group in match.group(1, 2, 3))
    per_log = segments_per_log(segment_size)
    if not timeline or seg >= per_log:
        return None
    return WalFile(name, PARTIAL if match.group(4) else SEGMENT, timeline, log * per_log + seg)


def segment_number(name, segment_size):
    """The segment number of a segment (or ``.partial``) name; ValueError for anything else."""
    parsed = parse_wal_name(name, segment_size)
    if parsed is None or parsed.kind == HISTORY:
        raise ValueError('not a WAL segment name for %d-byte segments: %r' % (segment_size, name))
    return parsed.number


def segment_timeline(name):
    """The timeline of a segment or history name (the first 8 hex digits)."""
    return int(name[:8], 16)


def segment_name(timeline, number, segment_size):
    per_log = segments_per_log(segment_size)
    return '%08X%08X%08X' % (timeline, number // per_log, number % per_log)


def history_name(timeline):
    return '%08X.history' % timeline


def parse_lsn(text):
    """``'0/2000028'`` -> 33554472; ValueError for anything else."""
    match = _LSN_RE.match(str(text).strip())
    if not match:
        raise ValueError('not a PostgreSQL LSN: %r' % (text,))
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def format_lsn(position):
    return '%X/%X' % (position >> 32, position & 0xFFFFFFFF)


def lsn_segment(lsn, timeline, segment_size, previous=False):
    """The name of the segment holding ``lsn``; ``previous``: holding the byte before it (a stop position,
    as PostgreSQL names the last WAL file a backup needs)."""
    position = parse_lsn(lsn) if isinstance(lsn, str) else lsn
    if previous and position:
        position -= 1
    return segment_name(timeline, position // check_segment_size(segment_size), segment_size)


def parse_history(text):
    """The switches a ``.history`` file records, oldest first: [(parent timeline, switch LSN as int)].

    ValueError for a line that is neither blank, a comment nor ``<timeline> <LSN> [reason]``.
    """
    switches = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        fields = line.split(None, 2)
        if len(fields) < 2 or not fields[0].isdigit():
            raise ValueError('unreadable timeline history line: %r' % line)
        switches.append((int(fields[0]), parse_lsn(fields[1])))
    return switches


# ----------------------------------------------------------------------------------------- gaps --

def find_gaps(names, start_wal, segment_size, stop_wal=None, histories=None):
    """The names missing for an unbroken WAL sequence from ``start_wal`` on, in the order replay needs them.

    ``names``: the WAL directory's file names. Replay needs every segment from ``start_wal`` to the
    newest one present (a ``.partial`` counts only as the newest of its timeline), and to ``stop_wal``
    if that is further (a base backup's last segment). A switch to a newer timeline needs that
    timeline's ``.history`` file: without it the timeline is broken and the history name is reported
    missing, where replay would need it. ``histories`` (timeline -> the text of its ``.history`` file)
    gives the switch points; without it a timeline is taken to begin at its first segment present. A
    history that does not descend from the start's timeline does not explain the jump: its name is
    reported too.
    """
    start_timeline = segment_timeline(start_wal)
    start = segment_number(start_wal, segment_size)
    present = {}   # timeline -> {number: kind}
    history_timelines = set()
    for name in names:
        parsed = parse_wal_name(name, segment_size)
        if parsed is None:
            continue
        if parsed.kind == HISTORY:
            history_timelines.add(parsed.timeline)
        elif parsed.timeline >= start_timeline:
            kinds = present.setdefault(parsed.timeline, {})
            if kinds.get(parsed.number) != SEGMENT:
                kinds[parsed.number] = parsed.kind
    timelines = sorted(timeline for timeline, kinds in present.items() if any(number >= start for number in kinds))
    newest = max(timelines + [start_timeline])
    end = max(list(present.get(newest, {})) + [start])
    if stop_wal is not None:
        end = max(end, segment_number(stop_wal, segment_size))

    chain, unexplained = _timeline_chain(start_timeline, start, newest, timelines, present, histories,
                                         segment_size)
    missing = []
    position = start
    for index, (timeline, begins) in enumerate(chain):
        if index and timeline not in history_timelines:
            missing.append(history_name(timeline))
        if timeline in unexplained:
            missing.append(history_name(timeline))
        last = chain[index + 1][1] - 1 if index + 1 < len(chain) else end
        kinds = present.get(timeline, {})
        newest_here = max(kinds) if kinds else None
        for number in range(max(position, begins), last + 1):
            kind = kinds.get(number)
            if kind == SEGMENT or (kind == PARTIAL and number == newest_here and index + 1 == len(chain)):
                continue
            missing.append(segment_name(timeline, number, segment_size))
        position = max(position, last + 1)
    return missing


def _timeline_chain(start_timeline, start, newest, timelines, present, histories, segment_size):
    """[(timeline, first segment number)] from the start's timeline to the newest, and the timelines whose
    history does not descend from the start's position (another timeline, or a branch before it)."""
    if newest == start_timeline:
        return [(start_timeline, 0)], set()
    text = (histories or {}).get(newest)
    if text is None:
        # Without the history's text: every timeline present, each beginning at its first segment.
        chain = [(start_timeline, 0)]
        for timeline in timelines:
            if timeline != start_timeline:
                chain.append((timeline, min(present[timeline])))
        return chain, set()
    switches = parse_history(text)
    ancestors = [timeline for timeline, _switch in switches]
    first_present = min(present[newest]) if newest in present else start
    if start_timeline not in ancestors:
        return [(start_timeline, 0), (newest, first_present)], {newest}
    chain = [(start_timeline, 0)]
    for index in range(ancestors.index(start_timeline), len(switches)):
        child = ancestors[index + 1] if index + 1 < len(ancestors) else newest
        chain.append((child, switches[index][1] // segment_size))
    if chain[1][1] < start:
        # The branch left the start's timeline before the start: replay from there cannot reach it.
        return [(start_timeline, 0), (newest, first_present)], {newest}
    return chain, set()


def wal_before(names, start_wal, segment_size=DEFAULT_SEGMENT_SIZE):
    """The segments and ``.partial`` files no replay from ``start_wal`` on can need, oldest first.

    Those before ``start_wal``'s segment on its timeline or an older one; never a ``.history`` file
    (tiny, and every later timeline's ancestry), never a newer timeline, never an unknown name.
    """
    start_timeline = segment_timeline(start_wal)
    start = segment_number(start_wal, segment_size)
    old = []
    for name in names:
        parsed = parse_wal_name(name, segment_size)
        if (parsed is not None and parsed.kind != HISTORY and parsed.timeline <= start_timeline
                and parsed.number < start):
            old.append(parsed)
    return [parsed.name for parsed in sorted(old, key=lambda item: (item.number, item.timeline, item.kind))]


# -------------------------------------------------------------------------------------- catalog --

class Catalog(list):
    """The catalog entries oldest first; ``problems`` lists, one line each, what could not be read.

    A reader that must not act on a partial view (retention, restore) checks ``problems`` first.
    """

    def __init__(self, entries=(), problems=()):
        super().__init__(entries)
        self.problems = list(problems)


def base_dir_of(layout_or_dir):
    """The ``pitr/base`` directory of a PitrLayout (its ``base``) or the path itself."""
    value = getattr(layout_or_dir, 'base', None)
    return os.fspath(value if isinstance(value, (str, os.PathLike)) else layout_or_dir)


def is_base_name(name):
    return bool(_BASE_NAME_RE.match(name))


def read_catalog(layout_or_dir):
    """Every ``pitr-base-*.json`` of the base directory as a Catalog, oldest first.

    A .json that does not parse, lacks a key, names another backup or whose directory is missing is a
    problem, not an entry; a missing base directory is an empty catalog (nothing taken yet).
    """
    base_dir = base_dir_of(layout_or_dir)
    try:
        file_names = sorted(os.listdir(base_dir))
    except FileNotFoundError:
        return Catalog()
    except OSError as exc:
        return Catalog(problems=['cannot list %s: %s' % (base_dir, exc.strerror or exc)])
    entries, problems = [], []
    for file_name in file_names:
        if not file_name.endswith('.json') or not file_name.startswith(BASE_PREFIX):
            continue
        name = file_name[:-len('.json')]
        path = os.path.join(base_dir, file_name)
        try:
            with open(path, encoding='utf-8') as stream:
                entry = json.load(stream)
            problem = catalog_entry_problem(entry, name)
        except (OSError, ValueError) as exc:
            problem = 'unreadable: %s' % exc
        if problem is None and not os.path.isdir(os.path.join(base_dir, name)):
            problem = 'its directory %s is missing' % name
        if problem:
            problems.append('%s: %s' % (path, problem))
        else:
            entries.append(entry)
    entries.sort(key=lambda entry: (entry['finished_epoch'], entry['name']))
    return Catalog(entries, problems)


def catalog_entry_problem(entry, name):
    """Why ``entry`` (the parsed ``<name>.json``) is not a usable catalog entry, or None."""
    if not isinstance(entry, dict):
        return 'not a JSON object'
    missing = [key for key in CATALOG_KEYS if key not in entry]
    if missing:
        return 'missing keys: %s' % ', '.join(missing)
    if entry['format'] != CATALOG_FORMAT:
        return 'catalog format %r, this collection reads %d' % (entry['format'], CATALOG_FORMAT)
    if entry['name'] != name or not is_base_name(name):
        return 'names %r, not %r' % (entry['name'], name)
    if entry['type'] not in (FULL, INCREMENTAL):
        return 'type %r is neither full nor incremental' % (entry['type'],)
    if (entry['type'] == INCREMENTAL) != isinstance(entry['parent'], str):
        return 'type %s with parent %r' % (entry['type'], entry['parent'])
    if (isinstance(entry['finished_epoch'], bool) or not isinstance(entry['finished_epoch'], (int, float))
            or not isinstance(entry['timeline'], int) or not isinstance(entry['wal_segment_size'], int)):
        return 'finished_epoch, timeline or wal_segment_size is not a number'
    try:
        check_segment_size(entry['wal_segment_size'])
        for key in ('start_wal', 'stop_wal'):
            segment_number(entry[key], entry['wal_segment_size'])
        for key in ('start_lsn', 'stop_lsn'):
            parse_lsn(entry[key])
    except ValueError as exc:
        return str(exc)
    return None


def chain_for(entries, name):
    """The base backups a restore of ``name`` combines: its full first, then each incremental up to ``name``.

    ValueError when ``name`` or one of its parents is not in the catalog (or the parents loop).
    """
    by_name = {entry['name']: entry for entry in entries}
    chain = []
    current = name
    while current is not None:
        entry = by_name.get(current)
        if entry is None:
            if current == name:
                raise ValueError('base backup %s is not in the catalog' % name)
            raise ValueError('base backup %s needs %s, which is not in the catalog' % (name, current))
        if entry in chain:
            raise ValueError('base backup %s: its parents loop at %s' % (name, current))
        chain.append(entry)
        current = entry['parent']
    chain.reverse()
    return chain


def select_for_time(entries, epoch):
    """The newest entry finished at or before ``epoch`` (None when every one is newer): replay starts there."""
    chosen = None
    for entry in entries:
        if entry['finished_epoch'] <= epoch and (chosen is None or entry['finished_epoch'] >= chosen['finished_epoch']):
            chosen = entry
    return chosen


def chains(entries):
    """The catalog grouped into chains (a full and every incremental built on it), oldest full first.

    An incremental whose ancestry does not reach a full in the catalog belongs to no chain.
    """
    groups = collections.OrderedDict()
    for entry in entries:
        if entry['type'] == FULL:
            groups[entry['name']] = [entry]
    for entry in entries:
        if entry['type'] == INCREMENTAL:
            try:
                root = chain_for(entries, entry['name'])[0]
            except ValueError:
                continue
            if root['type'] == FULL and root['name'] in groups:
                groups[root['name']].append(entry)
    ordered = sorted(groups.values(), key=lambda group: (group[0]['finished_epoch'], group[0]['name']))
    return [sorted(group, key=lambda entry: (entry['finished_epoch'], entry['name'])) for group in ordered]


def expired_chains(entries, keep_full, retention_days, now):
    """The chains retention removes, oldest first, each full first.

    The newest ``keep_full`` chains are always kept. An older chain goes once it is older than
    ``retention_days``: when the next chain's full finished before ``now - retention_days`` days, so a
    newer chain already covers every moment of the window.
    """
    if isinstance(keep_full, bool) or not isinstance(keep_full, int) or keep_full < 1:
        raise ValueError('retention_full must be at least 1, got %r' % (keep_full,))
    if isinstance(retention_days, bool) or not isinstance(retention_days, (int, float)) or retention_days < 0:
        raise ValueError('retention_days must be 0 or more, got %r' % (retention_days,))
    cutoff = now - retention_days * _DAY
    groups = chains(entries)
    candidates = groups[:-keep_full] if len(groups) > keep_full else []
    expired = []
    for index, group in enumerate(candidates):
        if groups[index + 1][0]['finished_epoch'] < cutoff:
            expired.append(group)
    return expired


def oldest_start_wal(entries, segment_size=None):
    """The ``start_wal`` of the entry that needs the oldest WAL (None for an empty catalog)."""
    oldest = None
    for entry in entries:
        size = segment_size or entry['wal_segment_size']
        key = (segment_number(entry['start_wal'], size), segment_timeline(entry['start_wal']))
        if oldest is None or key < oldest[0]:
            oldest = (key, entry['start_wal'])
    return oldest[1] if oldest else None
