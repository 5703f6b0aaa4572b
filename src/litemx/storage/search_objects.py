"""Names of the full-text index objects the migrations create by raw DDL (see 0002)."""

from __future__ import annotations

SEARCH_OBJECTS = ("message_fts", "message_fts_source")


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Schema comparison skips the full-text index: the metadata does not describe it."""
    return not (name or "").startswith(SEARCH_OBJECTS)
