"""Failed authentications per client address: what bad tokens may cost the server.

Every refused bearer token is audited (`auth.denied`), and on SQLite every audit row takes the
one write lock that SMTP acceptance and mail processing also need. Without a bound, a client
hammering the API with made-up tokens turns each request into an audit row: it grows the log
without limit and competes with real mail for the writer. Guessing a token is hopeless (a
token carries 256 random bits); the bound is about that cost.

A token bucket per client: `per_minute` failures, refilled continuously. Over it, a failed
attempt answers `429 rate_limited` with `Retry-After` (SPEC §3) and writes nothing but the first
refusal of each episode (one `auth.denied` event with reason `rate limited`); an episode ends
once the bucket is full again, so a client failing steadily costs about `per_minute` audit rows
a minute. A valid token from the same address still works: a busy NAT gateway shared with a
misbehaving client must not lock its users out.

A client is its IPv4 address, or its IPv6 /64 (RFC 6177: one site, one /64 at least; a single
host can take any address of its /64). The address is the one the audit log records: the
peer's, or what a trusted local proxy names in X-Forwarded-For (docs/architecture-notes.md).

The buckets live in each front process (like the SMTP session limits): with N front processes
an address gets up to N × per_minute failures a minute. They are capped at MAX_CLIENTS
addresses, the least recently seen dropped first.
"""

from __future__ import annotations

import ipaddress
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

from litemx.ports import Clock

MAX_CLIENTS = 10_000


@dataclass
class _Bucket:
    tokens: float
    at: float  # clock seconds of the last refill
    refusing: bool = False  # the current episode's first refusal was reported


@dataclass(frozen=True)
class Refusal:
    """An attempt over the limit: seconds until one more is allowed, and whether it is the
    first refusal of its episode (the one that is audited)."""

    retry_after: int
    first: bool


class FailureLimiter:
    def __init__(self, per_minute: int, clock: Clock, max_clients: int = MAX_CLIENTS):
        self.per_minute = per_minute
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def spend(self, client: str | None) -> Refusal | None:
        """Count one failed attempt from `client`; None when it is within the limit (refuse it
        as usual), else the Refusal. No client address (stdio, in-process) or a limit of 0: never limited."""
        if client is None or self.per_minute <= 0:
            return None
        now = self.clock.now().timestamp()
        rate = self.per_minute / 60.0
        with self._lock:
            bucket = self._bucket(_client_key(client), now)
            # max(): a wall clock stepped back (an NTP correction) must not drain the bucket.
            bucket.tokens = min(float(self.per_minute), bucket.tokens + max(now - bucket.at, 0.0) * rate)
            bucket.at = now
            if bucket.tokens >= self.per_minute:
                bucket.refusing = False  # quiet long enough: the next refusal starts a new episode
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return None
            first, bucket.refusing = not bucket.refusing, True
            return Refusal(max(1, math.ceil((1.0 - bucket.tokens) / rate)), first)

    def _bucket(self, client: str, now: float) -> _Bucket:
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = _Bucket(float(self.per_minute), now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
        return bucket


def _client_key(address: str) -> str:
    """IPv4 as it is; IPv6 by its /64; anything else (a test client's name) as it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        if ip.is_loopback or ip.is_link_local:  # one host per address (and zone), not a site
            return address
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
