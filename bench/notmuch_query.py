#!/usr/bin/python3
"""Time notmuch queries in-process through Debian's notmuch2 bindings (python3-notmuch2).

    NOTMUCH_CONFIG=... /usr/bin/python3 bench/notmuch_query.py QUERIES.json ROUNDS

Runs under Debian's python3 (the bindings are not in the LiteMX venv) and prints one JSON object:
per query name, the latencies (seconds) of "the 20 newest matching messages (id + subject)" —
the same page LiteMX's search answers — and of "the 20 newest threads (id + subject)", plus the
total count of matching messages. One database handle is opened once, as a server would.
"""

from __future__ import annotations

import json
import sys
import time

import notmuch2

PAGE = 20


def newest_messages(db: notmuch2.Database, query: str) -> int:
    n = 0
    for msg in db.messages(query, sort=notmuch2.Database.SORT.NEWEST_FIRST):
        msg.messageid, msg.header("subject")
        n += 1
        if n >= PAGE:
            break
    return n


def newest_threads(db: notmuch2.Database, query: str) -> int:
    n = 0
    for thread in db.threads(query, sort=notmuch2.Database.SORT.NEWEST_FIRST):
        thread.threadid, thread.subject
        n += 1
        if n >= PAGE:
            break
    return n


def main() -> None:
    queries: dict[str, str] = json.loads(open(sys.argv[1]).read())
    rounds = int(sys.argv[2])
    db = notmuch2.Database(mode=notmuch2.Database.MODE.READ_ONLY)
    out: dict[str, dict] = {}
    for name, query in queries.items():
        newest_messages(db, query)  # warm the caches, as the LiteMX side is warmed
        msgs, threads = [], []
        for _ in range(rounds):
            t = time.perf_counter()
            newest_messages(db, query)
            msgs.append(time.perf_counter() - t)
            t = time.perf_counter()
            newest_threads(db, query)
            threads.append(time.perf_counter() - t)
        out[name] = {"query": query, "count": db.count_messages(query), "messages": msgs, "threads": threads}
    db.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
