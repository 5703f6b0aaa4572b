"""Optional trimming of quoted history and signatures from a body window (`trim_quotes`).

Trimming never loses the way back: the window is split into segments that remember where
they sit in the stored text, trimmed runs become one short placeholder, and a window cut
for size maps its end back to a stored offset, so `next_offset` stays exact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Where the rest of a reply is the quoted conversation or a signature (everything after goes).
_HISTORY_START = (
    re.compile(r"^\s*On\b.{0,300}\bwrote:\s*$"),  # Gmail, Apple Mail, Thunderbird
    re.compile(r"^\s*-{2,}\s*Original Message\s*-{2,}\s*$", re.IGNORECASE),  # Outlook
    re.compile(r"^\s*-{2,}\s*Forwarded message\s*-{2,}\s*$", re.IGNORECASE),
    re.compile(r"^\s*Am\b.{0,300}\bschrieb\b.{0,100}:\s*$"),  # German clients
    re.compile(r"^\s*Le\b.{0,300}\ba écrit\s*:\s*$"),  # French clients
    re.compile(r"^_{10,}\s*$"),  # Outlook's rule above the quoted From:/Sent: block
    re.compile(r"^-- ?$"),  # RFC 3676 §4.3 signature separator
)
_WRAPPED_ON = re.compile(r"^\s*On\b.{0,300}$")  # "On <date>, <name>" with "wrote:" on the next line
_WROTE = re.compile(r"^.{0,200}\bwrote:\s*$")
_QUOTED = re.compile(r"^\s*>")


@dataclass(frozen=True)
class Segment:
    """A run of the window: kept text, or a placeholder standing for trimmed text."""

    start: int  # offsets within the window's text
    end: int
    shown: str
    kept: bool


def segments(text: str, trim: bool) -> list[Segment]:
    """The window as segments; without `trim`, one kept segment."""
    if not trim or not text:
        return [Segment(0, len(text), text, True)]
    lines = text.splitlines(keepends=True)
    out: list[Segment] = []
    pos, i = 0, 0
    while i < len(lines):
        line = lines[i].rstrip("\r\n")
        if _starts_history(line, lines[i + 1].rstrip("\r\n") if i + 1 < len(lines) else ""):
            out.append(_placeholder(pos, len(text), "quoted history or signature"))
            return _merge(out)
        if _QUOTED.match(line):
            j, end = _quoted_run(lines, i, pos)
            out.append(_placeholder(pos, end, f"{j - i} quoted line{'s' if j - i != 1 else ''}"))
            pos, i = end, j
            continue
        out.append(Segment(pos, pos + len(lines[i]), lines[i], True))
        pos += len(lines[i])
        i += 1
    return _merge(out)


def cut(parts: list[Segment], max_chars: int | None) -> tuple[list[Segment], int]:
    """The segments whose shown text fits `max_chars`, and the window offset where they end.

    A kept segment may be cut inside; a placeholder is shown whole or not at all.
    """
    if max_chars is None:
        return parts, parts[-1].end if parts else 0
    shown: list[Segment] = []
    room = max_chars
    for part in parts:
        if len(part.shown) <= room:
            shown.append(part)
            room -= len(part.shown)
            continue
        if part.kept and room > 0:
            shown.append(Segment(part.start, part.start + room, part.shown[:room], True))
            return shown, part.start + room
        return shown, part.start
    return shown, parts[-1].end if parts else 0


def _starts_history(line: str, following: str) -> bool:
    if any(p.match(line) for p in _HISTORY_START):
        return True
    return bool(_WRAPPED_ON.match(line) and _WROTE.match(following) and not line.rstrip().endswith("."))


def _quoted_run(lines: list[str], i: int, pos: int) -> tuple[int, int]:
    """Index after a run of quoted lines (blank lines inside the run belong to it), and its end."""
    j, end = i, pos
    while j < len(lines) and (_QUOTED.match(lines[j]) or (not lines[j].strip() and _next_quoted(lines, j))):
        end += len(lines[j])
        j += 1
    return j, end


def _next_quoted(lines: list[str], j: int) -> bool:
    return j + 1 < len(lines) and bool(_QUOTED.match(lines[j + 1]))


def _placeholder(start: int, end: int, what: str) -> Segment:
    return Segment(start, end, f"[… {what} trimmed ({end - start} characters) …]\n", False)


def _merge(parts: list[Segment]) -> list[Segment]:
    """Adjacent kept segments as one (fewer pieces to cut)."""
    merged: list[Segment] = []
    for part in parts:
        if merged and merged[-1].kept and part.kept and merged[-1].end == part.start:
            last = merged.pop()
            part = Segment(last.start, part.end, last.shown + part.shown, True)
        merged.append(part)
    return merged
