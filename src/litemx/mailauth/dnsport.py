"""The DNS port mailauth programs against: the shared Resolver plus PTR, and its error contract.

`litemx.ports.Resolver` answers TXT/MX/A/AAAA. SPF's `ptr` mechanism and `%{p}` macro
(RFC 7208 §5.5, §7.3) also need PTR, so mailauth asks for `AuthResolver`, which adds one
method. Nothing here needs the type-99 SPF record: RFC 7208 §3.1 retired it.

Error contract every implementation must follow (adapters/dns_resolver.DnsResolver does: its
DnsError is an Unavailable):
- NXDOMAIN and NODATA both answer `[]`; mailauth never needs to tell them apart (RFC 9091 §2.1
  defines a non-existent domain by empty A, AAAA and MX answers, whichever the reason).
- An answer that could not be obtained (timeout, SERVFAIL, REFUSED, no reachable server) raises
  `DnsTempError` — or any `litemx.errors.Unavailable` or `OSError` (e.g. `TimeoutError`), which
  are treated the same — so the verdict becomes `temperror` instead of a false `fail`.
- Names are given without the trailing dot; CNAMEs are followed, as a stub resolver does.
"""

from __future__ import annotations

from typing import Protocol

from litemx.errors import Unavailable
from litemx.ports import Resolver


class DnsTempError(Unavailable):
    """A DNS answer is unknown for now (timeout, SERVFAIL, ...): the caller reports temperror."""


#: Exceptions that mean "try again later" when raised by a resolver method.
TEMP_ERRORS: tuple[type[BaseException], ...] = (Unavailable, OSError)


class AuthResolver(Resolver, Protocol):
    """The Resolver plus the PTR lookup SPF needs."""

    def ptr(self, name: str) -> list[str]:
        """PTR targets at a reverse-zone name such as `4.3.2.1.in-addr.arpa`; [] when none.

        Raises:
            DnsTempError: the answer could not be obtained (see the module's error contract).
        """
        ...


def normalise_name(name: str | bytes) -> str:
    """A query name as the resolver expects it: text, lower case, no trailing dot.

    Raises:
        UnicodeDecodeError: `name` is bytes that are not ASCII (DNS names on the wire are).
    """
    text = name.decode("ascii") if isinstance(name, bytes) else name
    return text.rstrip(".").lower()
