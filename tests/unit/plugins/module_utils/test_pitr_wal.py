"""The WAL archive on paper: names, segment numbers, gaps, timelines, the catalog, chains and retention."""

import json
import os

import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils import _pitr_wal as wal

MB = 1024 * 1024
SIZE = 16 * MB
DAY = 86400
NOW = 1_800_000_000


def seg(timeline, number, size=SIZE):
    return wal.segment_name(timeline, number, size)


# ---------------------------------------------------------------------------------------- names --

@pytest.mark.parametrize('size, per_log', [(MB, 4096), (SIZE, 256), (64 * MB, 64), (1024 * MB, 4)])
def test_segments_per_log_follows_the_segment_size(size, per_log):
    assert wal.segments_per_log(size) == per_log


@pytest.mark.parametrize('size', [0, MB - 1, 3 * MB, 2048 * MB, True, '16777216', None])
def test_an_impossible_segment_size_is_refused(size):
    with pytest.raises(ValueError, match='segment size'):
        wal.check_segment_size(size)


@pytest.mark.parametrize('name, size, number', [
    ('000000010000000000000002', SIZE, 2),
    ('0000000100000001000000FF', SIZE, 256 + 255),
    ('00000001000000020000003F', 64 * MB, 2 * 64 + 63),
    ('000000010000000000000FFF', MB, 4095),
    ('000000030000000A00000003', 1024 * MB, 10 * 4 + 3),
    ('000000010000000000000007.partial', SIZE, 7),
])
def test_segment_number_for_any_segment_size(name, size, number):
    assert wal.segment_number(name, size) == number
    assert wal.segment_name(wal.segment_timeline(name), number, size) == name.replace('.partial', '')


@pytest.mark.parametrize('name, size', [
    ('000000010000000000000100', SIZE),            # seg beyond 255 for 16 MB segments
    ('000000010000000000000040', 64 * MB),
    ('000000000000000000000001', SIZE),            # timeline 0 does not exist
    ('00000002.history', SIZE),
    ('00000001000000000000000g', SIZE),
    ('00000001000000000000000a', SIZE),            # PostgreSQL writes upper case
    ('000000010000000000000001.tmp', SIZE),
    ('000000010000000000000001.gz', SIZE),
    ('', SIZE),
])
def test_segment_number_refuses_what_is_not_a_segment(name, size):
    with pytest.raises(ValueError):
        wal.segment_number(name, size)


def test_parse_wal_name_tells_the_kinds_apart_and_ignores_the_rest():
    assert wal.parse_wal_name('000000010000000000000003') == ('000000010000000000000003', 'segment', 1, 3)
    assert wal.parse_wal_name('000000020000000000000004.partial') == (
        '000000020000000000000004.partial', 'partial', 2, 4)
    assert wal.parse_wal_name('0000000A.history') == ('0000000A.history', 'history', 10, None)
    for other in ('00000000.history', '0000000a.history', 'x.history', '.lock', 'archive_status',
                  '000000010000000000000003.partial.tmp'):
        assert wal.parse_wal_name(other) is None


def test_lsn_round_trip_and_segment_of_an_lsn():
    assert wal.parse_lsn('0/2000028') == 0x2000028
    assert wal.parse_lsn('1A/FF000000') == (0x1A << 32) | 0xFF000000
    assert wal.format_lsn(0x2000028) == '0/2000028'
    assert wal.format_lsn((0x1A << 32) | 0xFF000000) == '1A/FF000000'
    assert wal.lsn_segment('0/2000028', 1, SIZE) == '000000010000000000000002'
    assert wal.lsn_segment('1/0', 2, SIZE) == '000000020000000100000000'
    # A stop position on a segment boundary ends in the segment before it, as PostgreSQL names it.
    assert wal.lsn_segment('0/3000000', 1, SIZE, previous=True) == '000000010000000000000002'
    assert wal.lsn_segment('0/3000001', 1, SIZE, previous=True) == '000000010000000000000003'
    for bad in ('', '0/', '2000028', '0/2000028x', 'G/1', '123456789/0'):
        with pytest.raises(ValueError):
            wal.parse_lsn(bad)


def test_parse_history_reads_switches_and_refuses_garbage():
    text = '1\t0/5000098\tno recovery target specified\n\n2\t0/9000000\tat restore point "x"\n'
    assert wal.parse_history(text) == [(1, 0x5000098), (2, 0x9000000)]
    with pytest.raises(ValueError, match='timeline history'):
        wal.parse_history('one\t0/5000000\n')
    with pytest.raises(ValueError):
        wal.parse_history('1\tnot-an-lsn\n')


# ----------------------------------------------------------------------------------------- gaps --

def test_an_unbroken_sequence_has_no_gap_and_a_newest_partial_counts():
    names = [seg(1, n) for n in range(2, 7)] + [seg(1, 7) + '.partial', '.lock']
    assert wal.find_gaps(names, seg(1, 2), SIZE) == []
    assert wal.find_gaps(names, seg(1, 4), SIZE) == []


def test_segments_before_the_start_are_not_needed():
    assert wal.find_gaps([seg(1, n) for n in (5, 6)], seg(1, 5), SIZE) == []


def test_missing_segments_are_named_in_order():
    names = [seg(1, n) for n in (2, 3, 6, 9)] + [seg(1, 10) + '.partial']
    assert wal.find_gaps(names, seg(1, 2), SIZE) == [seg(1, 4), seg(1, 5), seg(1, 7), seg(1, 8)]


def test_the_start_segment_itself_can_be_missing():
    assert wal.find_gaps([seg(1, 4), seg(1, 5)], seg(1, 3), SIZE) == [seg(1, 3)]
    assert wal.find_gaps([], seg(1, 3), SIZE) == [seg(1, 3)]


def test_stop_wal_extends_what_is_needed():
    assert wal.find_gaps([seg(1, 2)], seg(1, 2), SIZE, stop_wal=seg(1, 4)) == [seg(1, 3), seg(1, 4)]


def test_a_partial_in_the_middle_is_an_incomplete_segment():
    names = [seg(1, 2), seg(1, 3) + '.partial', seg(1, 4)]
    assert wal.find_gaps(names, seg(1, 2), SIZE) == [seg(1, 3)]
    # ... unless the complete segment is there too
    assert wal.find_gaps(names + [seg(1, 3)], seg(1, 2), SIZE) == []


def test_gaps_across_a_log_boundary_for_several_segment_sizes():
    for size in (MB, SIZE, 64 * MB, 1024 * MB):
        per_log = wal.segments_per_log(size)
        names = [seg(1, per_log - 2, size), seg(1, per_log + 1, size)]
        assert wal.find_gaps(names, seg(1, per_log - 2, size), size) == [
            seg(1, per_log - 1, size), seg(1, per_log, size)]


def test_a_timeline_switch_with_its_history_is_no_gap():
    # timeline 2 branched in segment 5: its copy of 5 replaces timeline 1's partial one.
    names = [seg(1, n) for n in (2, 3, 4)]
    names += [seg(1, 5) + '.partial', '00000002.history', seg(2, 5), seg(2, 6), seg(2, 7) + '.partial']
    assert wal.find_gaps(names, seg(1, 2), SIZE) == []
    assert wal.find_gaps(names, seg(1, 2), SIZE, histories={2: '1\t0/5000098\tx\n'}) == []


def test_a_segment_of_a_new_timeline_without_its_history_is_a_broken_timeline():
    names = [seg(1, n) for n in (2, 3, 4)] + [seg(2, 5), seg(2, 6)]
    assert wal.find_gaps(names, seg(1, 2), SIZE) == ['00000002.history']


def test_a_jump_over_a_timeline_needs_every_history():
    names = [seg(1, 2), seg(1, 3), '00000003.history', seg(3, 4), seg(3, 5)]
    assert wal.find_gaps(names, seg(1, 2), SIZE) == []
    names = [seg(1, 2), seg(2, 3), seg(3, 4)]
    assert wal.find_gaps(names, seg(1, 2), SIZE) == ['00000002.history', '00000003.history']


def test_a_history_that_does_not_descend_from_the_start_does_not_explain_the_jump():
    names = [seg(1, 2), seg(1, 3), '00000003.history', seg(3, 4)]
    assert wal.find_gaps(names, seg(1, 2), SIZE, histories={3: '2\t0/4000000\tx\n'}) == ['00000003.history']
    # a branch from timeline 1 before the backup started cannot be reached from it either
    names = [seg(1, n) for n in range(2, 8)] + ['00000002.history', seg(2, 3), seg(2, 9)]
    assert wal.find_gaps(names, seg(1, 5), SIZE, histories={2: '1\t0/3000000\tx\n'})[0] == '00000002.history'


def test_the_history_names_segments_missing_around_the_switch():
    # switch in segment 5, but timeline 2's first file present is 7 and timeline 1 stops at 3
    names = [seg(1, 2), seg(1, 3), '00000002.history', seg(2, 7), seg(2, 8)]
    assert wal.find_gaps(names, seg(1, 2), SIZE, histories={2: '1\t0/5000098\tx\n'}) == [
        seg(1, 4), seg(2, 5), seg(2, 6)]
    # without the text, the gap is named on the old timeline up to the new one's first segment
    assert wal.find_gaps(names, seg(1, 2), SIZE) == [seg(1, 4), seg(1, 5), seg(1, 6)]


def test_a_multi_step_history_gives_every_switch():
    names = ([seg(1, 2)] + ['00000002.history', seg(2, 3), seg(2, 4)]
             + ['00000003.history', seg(3, 5), seg(3, 6)])
    histories = {3: '1\t0/3000000\tx\n2\t0/5000000\ty\n'}
    assert wal.find_gaps(names, seg(1, 2), SIZE, histories=histories) == []
    assert wal.find_gaps([n for n in names if n != seg(2, 4)], seg(1, 2), SIZE, histories=histories) == [seg(2, 4)]


def test_older_timelines_than_the_start_are_ignored():
    names = [seg(1, n) for n in range(1, 9)] + ['00000002.history', seg(2, 5), seg(2, 6)]
    assert wal.find_gaps(names, seg(2, 5), SIZE) == []


# ------------------------------------------------------------------------------------ wal_before --

def test_wal_before_keeps_history_newer_timelines_and_unknown_files():
    names = [seg(1, 7), seg(1, 1), seg(1, 2) + '.partial', seg(1, 3), seg(1, 4), '00000002.history',
             seg(2, 2), seg(2, 5), seg(3, 1), 'stray.tmp']
    assert wal.wal_before(names, seg(2, 4), SIZE) == [seg(1, 1), seg(1, 2) + '.partial', seg(2, 2), seg(1, 3)]
    assert wal.wal_before(names, seg(1, 1), SIZE) == []


def test_wal_before_other_segment_sizes():
    size = 64 * MB
    names = [seg(1, n, size) for n in (62, 63, 64, 65)]
    assert wal.wal_before(names, seg(1, 64, size), size) == [seg(1, 62, size), seg(1, 63, size)]


# -------------------------------------------------------------------------------------- catalog --

def entry(name, finished_epoch, kind='full', parent=None, start=2, timeline=1, size=SIZE):
    return {'format': 1, 'name': name, 'type': kind, 'parent': parent, 'timeline': timeline,
            'start_lsn': '0/%X' % (start * size + 0x28), 'stop_lsn': '0/%X' % (start * size + 0x120),
            'start_wal': seg(timeline, start, size), 'stop_wal': seg(timeline, start, size),
            'started_at': '2026-11-27T10:15:00+00:00', 'finished_at': '2026-11-27T10:15:05+00:00',
            'finished_epoch': finished_epoch, 'pg_version': '18', 'system_identifier': '7000000000000000001',
            'wal_segment_size': size, 'size': 1234}


def write_entry(base, data, directory=True, name=None):
    name = name or data['name']
    with open(os.path.join(base, name + '.json'), 'w', encoding='utf-8') as stream:
        json.dump(data, stream)
    if directory:
        os.makedirs(os.path.join(base, name), exist_ok=True)


def test_read_catalog_oldest_first_and_ignores_partials_and_other_files(tmp_path):
    write_entry(tmp_path, entry('pitr-base-20261127_120000', NOW))
    write_entry(tmp_path, entry('pitr-base-20261126_120000', NOW - DAY))
    os.makedirs(tmp_path / '.pitr-base-20261128_120000.partial')
    (tmp_path / 'notes.json').write_text('{')
    catalog = wal.read_catalog(str(tmp_path))
    assert [item['name'] for item in catalog] == ['pitr-base-20261126_120000', 'pitr-base-20261127_120000']
    assert catalog.problems == []


def test_read_catalog_reports_what_it_cannot_use(tmp_path):
    write_entry(tmp_path, entry('pitr-base-20261127_120000', NOW))
    (tmp_path / 'pitr-base-20261127_130000.json').write_text('{"format": 1,')
    (tmp_path / 'pitr-base-20261127_130000').mkdir()
    write_entry(tmp_path, entry('pitr-base-20261127_140000', NOW), directory=False)
    write_entry(tmp_path, dict(entry('pitr-base-20261127_150000', NOW), name='pitr-base-20261127_160000'),
                name='pitr-base-20261127_150000')
    broken = entry('pitr-base-20261127_170000', NOW)
    del broken['stop_wal']
    write_entry(tmp_path, broken)
    write_entry(tmp_path, entry('pitr-base-20261127_180000', NOW, kind='incremental'))
    write_entry(tmp_path, dict(entry('pitr-base-20261127_190000', NOW), format=2))
    write_entry(tmp_path, dict(entry('pitr-base-20261127_200000', NOW), start_wal='00000001XYZ'))
    write_entry(tmp_path, dict(entry('pitr-base-20261127_210000', NOW), finished_epoch='soon'))
    catalog = wal.read_catalog(str(tmp_path))
    assert [item['name'] for item in catalog] == ['pitr-base-20261127_120000']
    problems = '\n'.join(catalog.problems)
    assert len(catalog.problems) == 8
    for expected in ('130000.json: unreadable', '140000.json: its directory pitr-base-20261127_140000 is missing',
                     "150000.json: names 'pitr-base-20261127_160000'", '170000.json: missing keys: stop_wal',
                     "180000.json: type incremental with parent None", '190000.json: catalog format 2',
                     '200000.json: not a WAL segment name', '210000.json: finished_epoch'):
        assert expected in problems


def test_read_catalog_of_a_missing_directory_is_empty_and_accepts_a_layout(tmp_path):
    assert wal.read_catalog(str(tmp_path / 'nothing')) == []

    class Layout:
        base = str(tmp_path)

    write_entry(tmp_path, entry('pitr-base-20261127_120000', NOW))
    assert len(wal.read_catalog(Layout())) == 1


def test_read_catalog_reports_an_unlistable_directory(tmp_path):
    not_a_dir = tmp_path / 'file'
    not_a_dir.write_text('')
    catalog = wal.read_catalog(str(not_a_dir))
    assert catalog == [] and len(catalog.problems) == 1 and 'cannot list' in catalog.problems[0]


# --------------------------------------------------------------------------------------- chains --

def catalog_of(*specs):
    """specs: (name suffix, day offset, parent suffix or None) -> entries."""
    entries = []
    for suffix, days, parent in specs:
        entries.append(entry('pitr-base-%s' % suffix, NOW + days * DAY,
                             kind='incremental' if parent else 'full',
                             parent='pitr-base-%s' % parent if parent else None))
    return entries


def names_of(chain):
    return [item['name'].replace('pitr-base-', '') for item in chain]


def test_chain_for_follows_parents_to_the_full():
    entries = catalog_of(('20261101_000000', -20, None), ('20261102_000000', -19, '20261101_000000'),
                         ('20261103_000000', -18, '20261102_000000'), ('20261108_000000', -13, None))
    assert names_of(wal.chain_for(entries, 'pitr-base-20261103_000000')) == [
        '20261101_000000', '20261102_000000', '20261103_000000']
    assert names_of(wal.chain_for(entries, 'pitr-base-20261108_000000')) == ['20261108_000000']
    with pytest.raises(ValueError, match='not in the catalog'):
        wal.chain_for(entries, 'pitr-base-20261109_000000')
    with pytest.raises(ValueError, match='needs pitr-base-20261101_000000'):
        wal.chain_for(entries[1:], 'pitr-base-20261103_000000')
    looped = catalog_of(('20261102_000000', -19, '20261103_000000'), ('20261103_000000', -18, '20261102_000000'))
    with pytest.raises(ValueError, match='loop'):
        wal.chain_for(looped, 'pitr-base-20261103_000000')


def test_select_for_time_takes_the_newest_finished_before_the_target():
    entries = catalog_of(('20261101_000000', -2, None), ('20261102_000000', -1, '20261101_000000'),
                         ('20261103_000000', 0, None))
    assert wal.select_for_time(entries, NOW - 3 * DAY) is None
    assert wal.select_for_time(entries, NOW - 2 * DAY)['name'] == 'pitr-base-20261101_000000'
    assert wal.select_for_time(entries, NOW - DAY + 5)['name'] == 'pitr-base-20261102_000000'
    assert wal.select_for_time(entries, NOW + 100)['name'] == 'pitr-base-20261103_000000'
    assert wal.select_for_time([], NOW) is None


def weekly(count, incrementals=2):
    """``count`` weekly chains ending today, each a full and daily incrementals."""
    specs = []
    for week in range(count):
        full_day = -7 * (count - 1 - week)
        full = '202611%02d_000000' % (week * 7 + 1)
        specs.append((full, full_day, None))
        parent = full
        for day in range(1, incrementals + 1):
            name = '202611%02d_00000%d' % (week * 7 + 1, day)
            specs.append((name, full_day + day, parent))
            parent = name
    return catalog_of(*specs)


def test_chains_group_each_full_with_its_incrementals():
    groups = wal.chains(weekly(2))
    assert [names_of(group) for group in groups] == [
        ['20261101_000000', '20261101_000001', '20261101_000002'],
        ['20261108_000000', '20261108_000001', '20261108_000002']]
    orphan = catalog_of(('20261101_000001', -1, '20261101_000000'))
    assert wal.chains(orphan) == []


def test_expired_chains_keeps_the_newest_fulls_and_the_window():
    entries = weekly(5)   # fulls at -28, -21, -14, -7, 0 days
    # 14 days: the chain of -21 is still needed for the moment -14 days + 1 s (the -14 full finished then)
    expired = wal.expired_chains(entries, keep_full=2, retention_days=14, now=NOW)
    assert [names_of(group)[0] for group in expired] == ['20261101_000000']
    assert all(len(group) == 3 for group in expired)
    assert [names_of(group)[0] for group in wal.expired_chains(entries, 2, 13, NOW)] == [
        '20261101_000000', '20261108_000000']
    # retention_full always wins over age
    assert [names_of(group)[0] for group in wal.expired_chains(entries, 4, 0, NOW)] == ['20261101_000000']
    assert wal.expired_chains(entries, 5, 0, NOW) == []
    assert wal.expired_chains(entries, 2, 60, NOW) == []
    assert wal.expired_chains([], 2, 14, NOW) == []


@pytest.mark.parametrize('keep_full, days', [(0, 14), (-1, 14), (True, 14), ('2', 14), (2, -1), (2, None)])
def test_expired_chains_refuses_nonsense(keep_full, days):
    with pytest.raises(ValueError):
        wal.expired_chains(weekly(3), keep_full, days, NOW)


def test_oldest_start_wal():
    entries = [entry('pitr-base-20261101_000000', NOW, start=9), entry('pitr-base-20261102_000000', NOW, start=4),
               entry('pitr-base-20261103_000000', NOW, start=6, timeline=2)]
    assert wal.oldest_start_wal(entries) == seg(1, 4)
    assert wal.oldest_start_wal([]) is None
