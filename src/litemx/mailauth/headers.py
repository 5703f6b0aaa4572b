"""The RFC5322.From field as DMARC and the phishing signals see it.

Parsing is forgiving (compat32, no exceptions on malformed input): a message we cannot read a
From domain out of is still stored; DMARC reports why (RFC 7489 §6.6.1).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

# RFC 1035 §2.3.1 LDH labels (underscore tolerated, as in real DNS), at least two labels.
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_DOMAIN = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})+$")


@dataclass(frozen=True)
class Mailbox:
    """One From mailbox; `domain` is the A-label form, lower case, "" when unusable."""

    display_name: str
    address: str
    domain: str


@dataclass(frozen=True)
class FromHeader:
    """Every From field of a message: mailboxes in order, how many fields, and their text."""

    mailboxes: tuple[Mailbox, ...]
    fields: int
    text: str

    @property
    def domains(self) -> tuple[str, ...]:
        """Distinct usable author domains, in order of appearance."""
        return tuple(dict.fromkeys(box.domain for box in self.mailboxes if box.domain))


def parse_from(raw: bytes) -> FromHeader:
    """Read the From field(s) out of a raw message's header block.

    Raises:
        Nothing: malformed headers give fewer (or no) mailboxes.
    """
    message = BytesHeaderParser(policy=compat32).parsebytes(raw)
    return from_fields([str(value) for name, value in message.raw_items() if name.lower() == "from"])


def from_fields(raw_values: Sequence[str]) -> FromHeader:
    """A FromHeader from the From fields' values as the stdlib parser stores them (folded,
    8-bit bytes as surrogates): `core.mime.ParsedMessage.from_fields` gives them too.

    Raises:
        Nothing: malformed values give fewer (or no) mailboxes.
    """
    return from_values([_unfold(_utf8(value)) for value in raw_values])


def _utf8(value: str) -> str:
    # The parser keeps 8-bit header bytes as surrogates; RFC 6532 says they are UTF-8.
    try:
        return value.encode("ascii", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return value


def _unfold(value: str) -> str:
    return re.sub(r"\r?\n(?=[ \t])", "", value)  # RFC 5322 §2.2.3 unfolding


def from_values(values: list[str]) -> FromHeader:
    """A FromHeader from already-extracted From field values (one string per field).

    Raises:
        Nothing: values without a usable address give mailboxes with an empty domain.
    """
    boxes = tuple(_mailbox(name, addr) for name, addr in getaddresses(values) if addr or name)
    return FromHeader(boxes, len(values), ", ".join(_decode(value) for value in values))


def _mailbox(name: str, address: str) -> Mailbox:
    return Mailbox(_decode(name), address, author_domain(address))


def author_domain(address: str) -> str:
    """The usable domain of an address: lower case, A-label (RFC 7489 §6.6.1), or "".

    Raises:
        Nothing: an address without a valid domain gives "".
    """
    if "@" not in address:
        return ""
    domain = address.rpartition("@")[2].strip().rstrip(".").lower()
    try:
        # RFC 7489 §6.6.1: a U-label domain MUST be converted to an A-label.
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return ""
    return ascii_domain if _DOMAIN.match(ascii_domain) else ""


def _decode(text: str) -> str:
    # RFC 2047 encoded-words; undecodable charsets leave the text as it came.
    try:
        return str(make_header(decode_header(text)))
    except (HeaderParseError, LookupError, UnicodeError):
        return text
