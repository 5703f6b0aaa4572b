"""storage/types.py's faster read paths decode exactly what the generic ones did: JSON text
through pydantic's parser (json.loads where it refuses), and SQLite's datetime text straight
to an aware UTC datetime (SQLAlchemy's own parser for text it does not know)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, Table, insert, select, text

from litemx.storage.db import Database
from litemx.storage.types import UTCDateTime, json_loads

# Any JSON value, with lone surrogates and astral characters in the text, floats at the edges.
_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=20)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_TEXT, inner, max_size=5), max_leaves=20)


@given(_JSON, st.booleans())
@example("\ud800", True)  # a lone surrogate's escape: pydantic's parser refuses it
@example({"name": "\udcff raw byte"}, True)
@example({"\ud800": None}, False)  # raw in the text: refused too
@example([float("inf"), -0.0, 10**40], False)
def test_json_loads_decodes_what_json_loads_decodes(value, ascii_only):
    encoded = json.dumps(value, ensure_ascii=ascii_only)
    assert json_loads(encoded) == json.loads(encoded)


@pytest.mark.parametrize("stored, expected", [
    ("2026-11-24 09:30:07.123456", datetime(2026, 11, 24, 9, 30, 7, 123456, tzinfo=UTC)),  # as SQLAlchemy writes
    ("2026-11-24 09:30:07", datetime(2026, 11, 24, 9, 30, 7, tzinfo=UTC)),
    ("2026-11-24T09:30:07.5", datetime(2026, 11, 24, 9, 30, 7, 500000, tzinfo=UTC)),
    ("2026-11-24 11:30:07+02:00", datetime(2026, 11, 24, 9, 30, 7, tzinfo=UTC)),  # raw SQL with an offset
    ("2026-11-24", datetime(2026, 11, 24, tzinfo=UTC)),
    (None, None),
])
def test_sqlite_datetime_text_reads_as_aware_utc(tmp_path, stored, expected):
    table = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("at", UTCDateTime))
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with db.write() as conn:
        table.create(conn)
        conn.execute(text("INSERT INTO t (id, at) VALUES (1, :at)"), {"at": stored})
        read = conn.execute(select(table.c.at)).scalar()
        conn.execute(insert(table), {"id": 2, "at": expected})  # and a value written by the bind side
        again = conn.execute(select(table.c.at).where(table.c.id == 2)).scalar()
    db.dispose()
    assert read == expected and again == expected
    assert read is None or read.tzinfo is UTC


def test_sqlite_datetime_text_it_cannot_read_fails_as_before(tmp_path):
    table = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("at", UTCDateTime))
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with db.write() as conn:
        table.create(conn)
        conn.execute(text("INSERT INTO t (id, at) VALUES (1, 'not a date')"))
        with pytest.raises(ValueError):
            conn.execute(select(table.c.at)).scalar()
    db.dispose()

