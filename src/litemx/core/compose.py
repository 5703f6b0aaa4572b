"""Outgoing mail, pure: recipient parsing, reply headers and the signed MIME a draft becomes.

- Recipients are `mime.Address(name, address)` pairs; addresses go through email-validator
  (`addresses.parse_address`), so what reaches a header or an SMTP envelope is one valid
  addr-spec, and display names are re-quoted by the stdlib on output (RFC 5322 §3.4).
- Replies follow RFC 5322 §3.6.4: `In-Reply-To` is the parent's Message-ID, `References` the
  parent's References (or its single In-Reply-To) followed by the parent's Message-ID.
- `build_message` uses `email.message.EmailMessage` with the SMTP policy (CRLF, folded lines,
  RFC 2047 encoded words for non-ASCII headers); bodies are encoded 7-bit-safe so no relay
  rewrites them and DKIM signatures survive (RFC 6376 §5.3).
- Attachments (`OutgoingAttachment`) make the message multipart/mixed around the body; an
  inline part with a Content-ID goes into a multipart/related with the HTML it illustrates
  (RFC 2387), so `cid:` URLs resolve. Parts are base64 (7-bit safe, DKIM-stable); filenames
  go into Content-Disposition `filename` and Content-Type `name`, as RFC 2231 parameters when
  they are not ASCII.
- `dkim_sign` prepends one DKIM-Signature per key (RFC 6376 §5; RFC 8463 §3 dual RSA +
  Ed25519 signing), relaxed/relaxed canonicalisation (RFC 6376 §3.4) which survives benign
  re-folding by relays.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.utils import format_datetime

import dkim

from litemx.core.addresses import parse_address
from litemx.core.dkimkeys import dkimpy_private_key
from litemx.core.mime import Address

MAX_DISPLAY_NAME = 200
MAX_SUBJECT = 998  # RFC 5322 §2.1.1: a line is at most 998 characters
MAX_REFERENCES = 50  # keep the root and the nearest ancestors; enough for any client's threading
FORBIDDEN_IN_HEADERS = ("\r", "\n", "\0")
_REPLY_PREFIX = re.compile(r"^\s*re\s*(?:\[\d+\])?\s*:", re.IGNORECASE)
_SMTP = policy.SMTP.clone(max_line_length=78)

SigningKey = tuple[str, str, bytes]  # (selector, "rsa" | "ed25519", PKCS#8 PEM)


def has_line_break(value: str) -> bool:
    """True when a header value would smuggle a new header or end the header block."""
    return any(c in value for c in FORBIDDEN_IN_HEADERS)


def parse_recipient(value: str) -> Address:
    """`alice@example.com` or `Alice Example <alice@example.com>` as one normalised Address.

    Raises: ValueError with a human reason (line break, several addresses, invalid address).
    """
    if has_line_break(value):
        raise ValueError("contains a line break or NUL")
    text = value.strip()
    name, address = "", text
    if text.endswith(">") and "<" in text:
        name, _, address = text[:-1].rpartition("<")
        name = name.strip().strip('"').strip()
    if len(name) > MAX_DISPLAY_NAME:
        raise ValueError(f"the display name is longer than {MAX_DISPLAY_NAME} characters")
    return Address(name, parse_address(address).address)


def mailbox_header(addr: Address) -> str:
    """One mailbox as header text; the stdlib quotes names that need it (RFC 5322 §3.2.4)."""
    local, _, domain = addr.address.rpartition("@")
    return str(HeaderAddress(display_name=addr.name, username=local, domain=domain))


def distinct(addresses: Iterable[Address]) -> list[Address]:
    """Addresses in order, each address once (the first display name wins)."""
    seen: dict[str, Address] = {}
    for addr in addresses:
        seen.setdefault(addr.address, addr)
    return list(seen.values())


def new_message_id(domain: str) -> str:
    """`<random@domain>` (RFC 5322 §3.6.4): 128 random bits make it globally unique."""
    return f"<{secrets.token_hex(16)}@{domain}>"


# -- replies -----------------------------------------------------------------------------------

def reply_subject(subject: str) -> str:
    """`Re: <subject>`, without doubling a `Re:` that is already there (RFC 5322 §3.6.5)."""
    subject = " ".join(subject.split())
    return subject if _REPLY_PREFIX.match(subject) else f"Re: {subject}".rstrip()


def reply_references(references: Sequence[str], in_reply_to: str | None, message_id: str | None) -> list[str]:
    """The reply's References (RFC 5322 §3.6.4), capped to the root plus the nearest ancestors."""
    chain = list(references) or ([in_reply_to] if in_reply_to else [])
    if message_id:
        chain.append(message_id)
    chain = list(dict.fromkeys(chain))
    return chain if len(chain) <= MAX_REFERENCES else chain[:1] + chain[-(MAX_REFERENCES - 1):]


@dataclass(frozen=True)
class Parent:
    """What a reply needs from the message it answers."""

    direction: str  # inbound | outbound
    from_: Address | None
    reply_to: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]


def reply_recipients(parent: Parent, own: str, reply_all: bool) -> tuple[list[Address], list[Address]]:
    """(to, cc) of a reply sent from the mailbox `own`.

    To is the parent's Reply-To, else its From (RFC 5322 §3.6.3); answering our own sent
    message goes back to its recipients. Reply-all adds the parent's To and Cc as Cc, minus
    the mailbox itself (and its plus-addresses) and anyone already in To.
    """
    if parent.direction == "outbound":
        to = list(parent.to)
    else:
        to = list(parent.reply_to) or ([parent.from_] if parent.from_ else [])
    to = [a for a in distinct(to) if not _is_own(a.address, own)]
    if not reply_all:
        return to, []
    taken = {a.address for a in to}
    cc = [a for a in distinct([*parent.to, *parent.cc]) if a.address not in taken and not _is_own(a.address, own)]
    return to, cc


def _is_own(address: str, own: str) -> bool:
    local, _, domain = address.lower().rpartition("@")
    return f"{local.partition('+')[0]}@{domain}" == own.lower() or address.lower() == own.lower()


# -- the message -------------------------------------------------------------------------------

@dataclass(frozen=True)
class OutgoingAttachment:
    """One file of an outgoing message (already validated, see `core.attach`)."""

    filename: str
    content_type: str  # type/subtype, lower-case
    data: bytes = field(repr=False)
    content_id: str | None = None  # without angle brackets, as `cid:` URLs spell it
    inline: bool = False

    @property
    def disposition(self) -> str:
        return "inline" if self.inline else "attachment"


@dataclass(frozen=True)
class Outgoing:
    """Everything the headers and body of one outgoing message are made of (Bcc never is)."""

    from_: Address
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    subject: str
    text: str | None
    html: str | None
    message_id: str
    date: datetime
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    attachments: tuple[OutgoingAttachment, ...] = ()


def build_message(out: Outgoing) -> bytes:
    """RFC 5322 / MIME bytes with CRLF line ends. Raises: ValueError on a header with a line break."""
    msg = EmailMessage(policy=_SMTP)
    msg["From"] = mailbox_header(out.from_)
    if out.to:
        msg["To"] = ", ".join(mailbox_header(a) for a in out.to)
    if out.cc:
        msg["Cc"] = ", ".join(mailbox_header(a) for a in out.cc)
    msg["Subject"] = out.subject
    msg["Date"] = format_datetime(out.date)  # RFC 5322 §3.3
    msg["Message-ID"] = out.message_id
    if out.in_reply_to:
        msg["In-Reply-To"] = out.in_reply_to
    if out.references:
        msg["References"] = " ".join(out.references)
    html_part = _set_body(msg, out.text, out.html)
    _add_attachments(msg, html_part, out.attachments)
    return msg.as_bytes()


def _set_body(msg: EmailMessage, text: str | None, html: str | None) -> EmailMessage | None:
    """The text (and HTML) body; returns the HTML part, if any."""
    # quoted-printable keeps every line 7-bit and short (RFC 2045 §6.7), whatever the text.
    msg.set_content(text or "", cte="quoted-printable")
    if not html:
        return None
    msg.add_alternative(html, subtype="html", cte="quoted-printable")
    part = msg.get_payload()[-1]
    assert isinstance(part, EmailMessage)
    return part


def _add_attachments(msg: EmailMessage, html_part: EmailMessage | None,
                     attachments: Sequence[OutgoingAttachment]) -> None:
    """Inline parts with a Content-ID join the HTML in multipart/related; everything else is
    a part of multipart/mixed (an inline part without HTML to show it in stays inline there)."""
    if not attachments:
        return
    for a in attachments:
        if html_part is not None and a.inline and a.content_id:
            html_part.add_related(a.data, *_types(a), **_part_args(a))
    for a in attachments:
        if not (html_part is not None and a.inline and a.content_id):
            msg.add_attachment(a.data, *_types(a), **_part_args(a))
    for part in msg.walk():
        if part is not msg:
            del part["MIME-Version"]  # the stdlib repeats it on sub-parts; only the top level needs it


def _types(a: OutgoingAttachment) -> tuple[str, str]:
    maintype, _, subtype = a.content_type.partition("/")
    return maintype, subtype


def _part_args(a: OutgoingAttachment) -> dict[str, object]:
    return {"filename": a.filename, "disposition": a.disposition, "cte": "base64",
            "cid": f"<{a.content_id}>" if a.content_id else None, "params": {"name": a.filename}}


def dkim_sign(raw: bytes, domain: str, keys: Sequence[SigningKey]) -> bytes:
    """The message with one DKIM-Signature per key prepended, in key order (RSA first).

    Each signature covers the message as built, not the other signature, so verifiers may
    check either independently (RFC 8463 §3).
    Raises: ValueError when a PEM is not an RSA or Ed25519 key; dkim.DKIMException when dkimpy
        cannot sign with it.
    """
    signatures = []
    for selector, algorithm, pem in keys:
        alg = b"ed25519-sha256" if algorithm == "ed25519" else b"rsa-sha256"
        signatures.append(dkim.sign(raw, selector.encode("ascii"), domain.encode("ascii"), dkimpy_private_key(pem),
                                    canonicalize=(b"relaxed", b"relaxed"), signature_algorithm=alg,
                                    linesep=b"\r\n"))
    return b"".join(signatures) + raw
