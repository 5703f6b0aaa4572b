"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from pydantic_core import from_json

from sqlalchemy import JSON, BigInteger, DateTime, Integer
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Always timezone-aware UTC in Python; SQLite keeps naive UTC text, PostgreSQL timestamptz."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], datetime | None] | None:
        """On SQLite, the stored text straight to an aware datetime: SQLAlchemy's own path (a
        regular expression, then `process_result_value`) cost a microsecond per value, and a
        list row has three of them. Text it does not know goes the generic way."""
        generic = super().result_processor(dialect, coltype)
        if dialect.name != "sqlite" or generic is None:
            return generic

        def process(value: Any) -> datetime | None:
            if value is None:
                return None
            try:
                # SQLAlchemy stores "YYYY-MM-DD HH:MM:SS.ffffff", naive UTC (process_bind_param).
                parsed = datetime.fromisoformat(value)
            except (TypeError, ValueError):
                return generic(value)
            if parsed.tzinfo is not None:
                return parsed.astimezone(timezone.utc)
            return parsed.replace(tzinfo=timezone.utc)

        return process

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def json_loads(text: str | bytes) -> Any:
    """`json.loads`, faster: pydantic's parser (Rust) where it accepts the text, which is all
    JSON this project writes except what it refuses (a lone surrogate, raw or as an escape
    such as `\\ud800`); json.loads decodes those as before, and raises what it raised."""
    try:
        return from_json(text)
    except (ValueError, TypeError):
        return json.loads(text)


# JSONB on PostgreSQL (indexable), JSON text on SQLite.
JSONType = JSON().with_variant(JSONB(), "postgresql")
# SQLite only autoincrements INTEGER PRIMARY KEY, so BigInteger becomes Integer there.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")
