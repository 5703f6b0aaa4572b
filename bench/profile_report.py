#!/usr/bin/env python3
"""Summarise a py-spy `--format raw` (collapsed stacks) file: where the samples went.

    python bench/profile_report.py FILE [--top 25]

Prints the share of samples per thread, the hottest leaf frames (self time), and inclusive
time for frames inside litemx / aiosmtpd / sqlalchemy / sqlite3 / email (each stack counted
once per frame), which is what tells "parsing" from "fsync" from "SQL compilation".
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*?)(?::(?P<line>\d+))?\)$")
INTERESTING = ("litemx/", "aiosmtpd/", "sqlalchemy/", "sqlite3/", "/email/", "dkim/", "spf", "dns/",
               "uvicorn/", "starlette/", "fastapi/", "asyncio/", "json/", "hashlib", "tempfile", "pathlib")


def _short(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m["file"]
    for marker in ("site-packages/", "/src/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m['func']} ({path}{':' + m['line'] if m['line'] else ''})"


def _key(frame: str) -> str:
    """Function identity without the line number (so one function is one row)."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    return _short(f"{m['func']} ({m['file']})")


def load(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def summarise(path: Path, top: int = 25, focus: str | None = None) -> dict[str, Any]:
    """Shares of all samples; with `focus`, only stacks through a frame containing that text."""
    if not path.exists():
        return {"lines": [f"(no profile written at {path})"], "samples": 0}
    stacks = load(path)
    total = sum(c for frames, c in stacks if not focus or any(focus in f for f in frames)) or 1
    threads: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in stacks:
        thread = frames[0] if frames and frames[0].startswith("thread (") else "?"
        body = frames[1:] if thread != "?" else frames
        if focus and not any(focus in f for f in body):
            continue
        name = thread.partition("): ")[2] or thread
        threads["asyncio_N (default executor)" if name.startswith("asyncio_") else name] += count
        if body:
            leaf[_key(body[-1])] += count
        for name in {_key(f) for f in body if any(tag in f for tag in INTERESTING)}:
            inclusive[name] += count
    lines = [f"{total:,} samples in {path}" + (f" through {focus}" if focus else ""), "by thread:"]
    lines += [f"  {100 * c / total:5.1f}%  {t}" for t, c in threads.most_common(8)]
    lines.append("hottest frames (self):")
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in leaf.most_common(top)]
    lines.append("inclusive (litemx and the libraries it calls):")
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in inclusive.most_common(top + 15)]
    return {"samples": total, "lines": lines,
            "self": {k: v / total for k, v in leaf.most_common(top)},
            "inclusive": {k: v / total for k, v in inclusive.most_common(top + 15)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--focus", help="only stacks through a frame containing this text")
    args = parser.parse_args(argv)
    for line in summarise(args.file, args.top, args.focus)["lines"]:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
