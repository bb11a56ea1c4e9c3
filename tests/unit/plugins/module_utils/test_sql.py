import pytest

from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._errors import ConfigError
from ansible_collections.cortexreview.supabase_backup.plugins.module_utils._sql import (
    MAX_IDENTIFIER_BYTES,
    derived_name,
    quote_ident,
    quote_literal,
)


@pytest.mark.parametrize('name,quoted', [
    ('postgres', '"postgres"'),
    ('Weird Table', '"Weird Table"'),
    ('a"b', '"a""b"'),
    ('"; DROP DATABASE postgres; --', '"""; DROP DATABASE postgres; --"'),
])
def test_quote_ident_doubles_quotes(name, quoted):
    assert quote_ident(name) == quoted


@pytest.mark.parametrize('value,quoted', [
    ('postgres', "'postgres'"),
    ("it's", "'it''s'"),
    ("'); DROP DATABASE postgres; --", "'''); DROP DATABASE postgres; --'"),
    ('back\\slash', "'back\\slash'"),  # standard_conforming_strings: a backslash is literal
])
def test_quote_literal_doubles_single_quotes(value, quoted):
    assert quote_literal(value) == quoted


@pytest.mark.parametrize('quote', [quote_ident, quote_literal])
def test_nul_bytes_are_refused(quote):
    with pytest.raises(ConfigError, match='NUL'):
        quote('a\x00b')


def test_derived_name_keeps_short_names_whole():
    assert derived_name('postgres', '_restore_20260101_000000') == 'postgres_restore_20260101_000000'


def test_derived_name_fits_63_bytes_and_keeps_the_suffix():
    suffix = '_pre_restore_20260101_000000'
    name = derived_name('d' * 80, suffix)
    assert len(name.encode('utf-8')) == MAX_IDENTIFIER_BYTES
    assert name.endswith(suffix)


def test_derived_name_never_splits_a_multibyte_character():
    suffix = '_restore_20260101_000000'
    name = derived_name('\u00e9' * 40, suffix)  # two bytes each
    assert len(name.encode('utf-8')) <= MAX_IDENTIFIER_BYTES
    assert name.endswith(suffix)
    assert name[:-len(suffix)] == '\u00e9' * len(name[:-len(suffix)])  # decodes cleanly, whole characters only


def test_derived_names_of_one_base_differ_by_suffix():
    base = 'x' * 70
    assert derived_name(base, '_restore_20260101_000000') != derived_name(base, '_pre_restore_20260101_000000')
