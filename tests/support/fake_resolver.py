"""A data-only fake of the mailauth resolver port (litemx.mailauth.dnsport.AuthResolver).

ARCHITECTURE.md allows this one fake: pure SPF/DKIM/DMARC unit vectors over an injected
resolver. The zone is a dict `(name, rtype) -> answers`:

- a name that appears nowhere answers NXDOMAIN, a missing type at a known name NODATA — both `[]`,
  as the port's contract says;
- `TIMEOUT` as the answers (or a name in `timeouts`) raises DnsTempError, like a SERVFAIL or a
  resolver timeout;
- `(name, "CNAME") -> [target]` is followed for every other type, like a stub resolver does.

Every query is appended to `queries`, so tests can assert what was (not) looked up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from litemx.mailauth.dnsport import DnsTempError, normalise_name

TIMEOUT = "TIMEOUT"
_MAX_CNAME_HOPS = 8


@dataclass
class FakeResolver:
    zone: dict[tuple[str, str], Any] = field(default_factory=dict)
    timeouts: set[str] = field(default_factory=set)
    queries: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, rtype: str, *answers: Any) -> FakeResolver:
        """Append answers at (name, rtype); returns self so zones read as a chain."""
        self.zone.setdefault((normalise_name(name), rtype.upper()), []).extend(answers)
        return self

    def time_out(self, name: str, rtype: str) -> FakeResolver:
        """Make queries for (name, rtype) fail as a timeout/SERVFAIL would."""
        self.zone[(normalise_name(name), rtype.upper())] = TIMEOUT
        return self

    def txt(self, name: str) -> list[str]:
        return list(self._answer(name, "TXT"))

    def mx(self, name: str) -> list[tuple[int, str]]:
        return [(int(pref), str(host)) for pref, host in self._answer(name, "MX")]

    def a(self, name: str) -> list[str]:
        return list(self._answer(name, "A"))

    def aaaa(self, name: str) -> list[str]:
        return list(self._answer(name, "AAAA"))

    def ptr(self, name: str) -> list[str]:
        return list(self._answer(name, "PTR"))

    def _answer(self, name: str, rtype: str) -> list[Any]:
        key = normalise_name(name)
        self.queries.append((key, rtype))
        for _hop in range(_MAX_CNAME_HOPS):
            answers = self._lookup(key, rtype)
            cname = self.zone.get((key, "CNAME"))
            if answers or not cname or rtype == "CNAME":
                return answers
            key = normalise_name(cname[0])
        raise DnsTempError(f"CNAME chain too long at {name}")  # a real resolver SERVFAILs

    def _lookup(self, key: str, rtype: str) -> list[Any]:
        answers = self.zone.get((key, rtype), [])
        if key in self.timeouts or answers == TIMEOUT:
            raise DnsTempError(f"timeout resolving {key}/{rtype}")
        return list(answers)
