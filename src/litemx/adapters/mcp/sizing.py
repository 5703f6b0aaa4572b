"""Agent-sized results (SPEC §7): one central cap on every tool result.

Tools build a payload tree (plain JSON values plus `BodyWindow`s) and `fit` turns it into the
CallToolResult: compact JSON as text content plus the same object as structured content. The
whole serialized result is measured; while it is over the cap, every body window is cut to a
shrinking common budget (longest bodies first), and the payload says so. Each cut body keeps
an exact `next_offset` to read on with `read_message`. When even empty bodies do not fit,
`fit` answers None and the caller asks the service for a smaller page.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from mcp_types import CallToolResult, TextContent
from pydantic_core import to_json

from litemx.adapters.mcp.fence import Fence
from litemx.adapters.mcp.trim import Segment, cut, segments

# ~20k tokens at ~4 bytes a token; the JSON-RPC envelope around the result gets the slack.
RESULT_BYTES = 80_000
TARGET_BYTES = RESULT_BYTES - 1_000
SHRINK_FLOOR = 0.8  # each round cuts the body budget by at least a fifth
SIZE_NOTE = ("Bodies were cut to keep this answer under ~80 KB (~20k tokens). Each cut body has a "
             "`next_offset`: call read_message with that message_id and offset to read on.")


@dataclass
class BodyWindow:
    """One window of a stored body as the service served it, possibly trimmed, cut to a budget."""

    offset: int  # stored offset where the service's window starts
    length: int  # length of the whole stored body
    parts: list[Segment]
    window_chars: int  # characters the service served
    service_next: int | None  # the service's next_offset (None: the window reached the end)
    kind: str = "text"
    budget: int | None = field(default=None)

    @classmethod
    def from_chunk(cls, chunk: dict[str, Any], trim: bool, kind: str = "text") -> BodyWindow:
        """From a service body window: {content, offset, length, next_offset}."""
        content = str(chunk.get("content") or "")
        return cls(int(chunk.get("offset") or 0), int(chunk.get("length") or 0), segments(content, trim),
                   len(content), chunk.get("next_offset"), kind)

    def shown_chars(self) -> int:
        return sum(len(p.shown) for p in cut(self.parts, self.budget)[0])

    def cut_for_size(self) -> bool:
        return cut(self.parts, self.budget)[1] < self.window_chars

    def render(self, fence: Fence) -> dict[str, Any]:
        shown, end = cut(self.parts, self.budget)
        next_offset = self.offset + end if end < self.window_chars else self.service_next
        view: dict[str, Any] = {
            "format": self.kind, "content": fence.wrap("".join(p.shown for p in shown)),
            "offset": self.offset, "length": self.length, "next_offset": next_offset,
            "truncated": next_offset is not None,
        }
        if any(not p.kept for p in shown):
            view["quotes_trimmed"] = True
        return view


def render(tree: Any, fence: Fence) -> Any:
    """The payload tree as JSON values (body windows rendered and fenced)."""
    if isinstance(tree, BodyWindow):
        return tree.render(fence)
    if isinstance(tree, dict):
        return {k: render(v, fence) for k, v in tree.items()}
    if isinstance(tree, list):
        return [render(v, fence) for v in tree]
    return tree


def windows(tree: Any, found: list[BodyWindow] | None = None) -> list[BodyWindow]:
    """The body windows of the payload tree, in order."""
    found = [] if found is None else found
    if isinstance(tree, BodyWindow):
        found.append(tree)
    elif isinstance(tree, dict):
        for value in tree.values():
            windows(value, found)
    elif isinstance(tree, list):
        for value in tree:
            windows(value, found)
    return found


def as_result(payload: dict[str, Any], *, is_error: bool = False) -> CallToolResult:
    """Structured content plus the same object as compact JSON text (for clients that read text)."""
    return _result(payload, to_json(payload).decode(), is_error)


def _result(payload: dict[str, Any], text: str, is_error: bool) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=payload,
                          is_error=is_error)


def result_bytes(result: CallToolResult) -> int:
    """Bytes of the result as it goes on the wire (UTF-8 JSON). (Until session 6 this counted
    characters, so non-ASCII content could pass the cap by up to a factor of 4.)"""
    return len(result.model_dump_json(by_alias=True, exclude_none=True).encode())


def wire_bytes(encoded: bytes, is_error: bool = False) -> int:
    """`result_bytes` of `_result(payload, encoded.decode(), is_error)`, where `encoded` is
    `to_json(payload)`, without serializing the result: on the wire the payload appears once as
    structured content (`encoded` itself: the SDK serializes with the same pydantic-core rules)
    and once as the text, a JSON string (`encoded` escaped). Serializing the whole result just to
    measure it cost as much as the SDK's own serialization of the answer, on every call."""
    return _envelope_bytes(is_error) + len(encoded) + len(to_json(encoded.decode()))


@functools.cache
def _envelope_bytes(is_error: bool) -> int:
    """The bytes of a result around its text and structured content."""
    return result_bytes(_result({}, "", is_error)) - len('""') - len("{}")


def fit(tree: dict[str, Any], fence: Fence) -> CallToolResult | None:
    """The result under the cap, bodies cut as needed; None when no body budget is small enough."""
    bodies = windows(tree)
    result, size = _build(tree, fence, bodies)
    budget = max((w.shown_chars() for w in bodies), default=0)
    while size > TARGET_BYTES and bodies and budget > 0:
        budget = int(budget * min(SHRINK_FLOOR, TARGET_BYTES / size))
        for w in bodies:
            w.budget = budget
        result, size = _build(tree, fence, bodies)
    return result if size <= TARGET_BYTES else None


def _build(tree: dict[str, Any], fence: Fence, bodies: list[BodyWindow]) -> tuple[CallToolResult, int]:
    payload = render(tree, fence)
    if any(w.cut_for_size() for w in bodies):
        payload["size_note"] = SIZE_NOTE
    encoded = to_json(payload)
    return _result(payload, encoded.decode(), False), wire_bytes(encoded)
