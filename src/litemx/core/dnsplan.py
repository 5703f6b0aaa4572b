"""The DNS records a domain publishes for LiteMX (SPEC §4), and their BIND zone-file form. Pure.

`plan_records` lists, per purpose:
- inbound:   MX <domain> -> the instance's MX host.
- spf:       TXT <domain> "v=spf1 <mechanisms> ~all".
- dkim:      TXT <selector>._domainkey.<domain> "v=DKIM1; k=rsa|ed25519; p=<base64>", one per
             published selector (old and new both stay published during rotation).
- dmarc:     TXT _dmarc.<domain> "v=DMARC1; p=none[; rua=mailto:...]".
- mail_from: MX and SPF TXT on the MAIL FROM subdomain (default bounce.<domain>), so bounces
             come back to LiteMX and the envelope domain passes SPF (aligned under DMARC's
             relaxed mode, RFC 7489 §3.1.2).

Hosts are absolute names written without the final dot (what DNS provider forms expect);
`render_zone` adds the dots.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Purpose = Literal["inbound", "dkim", "spf", "dmarc", "mail_from"]
KeyAlgorithm = Literal["rsa", "ed25519"]

DEFAULT_TTL = 3600
MX_PREFERENCE = 10
MAIL_FROM_LABEL = "bounce"
# RFC 1035 §3.3.14: a <character-string> is a length byte plus at most 255 bytes.
MAX_CHARACTER_STRING = 255
# RFC 7208 §8.5: softfail. We choose "~all" over "-all" because (a) domains joining LiteMX often
# still send through other services the user has not listed yet, and a hard fail would get that
# mail rejected; (b) with DMARC published, RFC 7489 §10.1 warns that receivers rejecting on SPF
# "-all" before DMARC is evaluated break forwarded mail that DKIM would have saved. DMARC treats
# softfail as a non-pass anyway (RFC 7489 §4.2), so "~all" costs no protection.
DEFAULT_SPF_ALL = "~all"


@dataclass(frozen=True)
class DnsRecord:
    """One record to publish. `priority` is set for MX only, `selector` for DKIM only."""

    type: Literal["MX", "TXT"]
    host: str
    value: str
    purpose: Purpose
    ttl: int = DEFAULT_TTL
    priority: int | None = None
    selector: str | None = None


@dataclass(frozen=True)
class DkimPublicKey:
    """A published DKIM selector: the public half only (RFC 6376 §3.6.1 `p=`)."""

    selector: str
    public_key_b64: str
    algorithm: KeyAlgorithm = "rsa"


def normalize_host(name: str) -> str:
    """Lower-case A-label form without the final dot (DNS names compare case-insensitively,
    RFC 4343 §2; internationalised names are published as A-labels, RFC 5890 §2.3.2.1).

    Raises: ValueError when the name is empty or cannot be IDNA-encoded.
    """
    host = name.strip().rstrip(".").lower()
    if not host:
        raise ValueError("empty domain name")
    return host if host.isascii() else host.encode("idna").decode("ascii")


def default_spf_mechanisms(mx_host: str) -> tuple[str, ...]:
    """`a:<mx host>`: authorises the addresses of the instance's host name.

    A single-machine LiteMX sends from the address its MX name points to; `a:` costs one DNS
    lookup of the ten RFC 7208 §4.6.4 allows (`mx` would cost one plus one per MX host, and
    `ip4:` would need the public address, which the server cannot reliably learn). Pass other
    mechanisms (e.g. `include:amazonses.com` for SES, `ip4:` for a relay) when sending elsewhere.
    """
    return (f"a:{normalize_host(mx_host)}",)


def mail_from_host(domain: str, mail_from: str | None = None) -> str:
    """The MAIL FROM (bounce) host: `bounce.<domain>` unless given.

    Raises: ValueError when the given host is not the domain or a subdomain of it (DMARC's SPF
        alignment needs the same organisational domain, RFC 7489 §3.1.2).
    """
    dom = normalize_host(domain)
    host = normalize_host(mail_from) if mail_from else f"{MAIL_FROM_LABEL}.{dom}"
    if host != dom and not host.endswith("." + dom):
        raise ValueError(f"MAIL FROM host {host} is not within {dom}")
    return host


def spf_value(mechanisms: Sequence[str], all_term: str = DEFAULT_SPF_ALL) -> str:
    """`v=spf1 <mechanisms> <all>` (RFC 7208 §4.5 version, §5.1 "all" last)."""
    return " ".join(["v=spf1", *mechanisms, all_term])


def dkim_value(key: DkimPublicKey) -> str:
    """`v=DKIM1; k=<alg>; p=<base64>` (RFC 6376 §3.6.1; k=ed25519 per RFC 8463 §4.2)."""
    return f"v=DKIM1; k={key.algorithm}; p={key.public_key_b64}"


def dmarc_value(report_address: str | None = None) -> str:
    """`v=DMARC1; p=none` plus `rua=mailto:` when given (RFC 7489 §6.3).

    p=none monitors without affecting delivery; users tighten it once reports look clean.
    Raises: ValueError when the report address is not an address.
    """
    if not report_address:
        return "v=DMARC1; p=none"
    return f"v=DMARC1; p=none; rua=mailto:{_mailto_address(report_address)}"


def _mailto_address(address: str) -> str:
    """RFC 7489 §6.4: "," separates URIs and "!" starts a size limit, so both are %-encoded,
    as is ";" which would end the tag. Raises: ValueError."""
    address = address.strip().removeprefix("mailto:")
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in address):
        raise ValueError(f"not an email address: {address!r}")
    return address.replace("%", "%25").replace(",", "%2C").replace("!", "%21").replace(";", "%3B")


def report_authorization(domain: str, report_address: str | None, ttl: int = DEFAULT_TTL) -> DnsRecord | None:
    """The record another domain must publish before receivers send it `domain`'s aggregate
    reports (RFC 7489 §7.1): TXT `<domain>._report._dmarc.<report domain>` "v=DMARC1".

    None when there is no report address or it is on `domain` or a subdomain of it (same
    Organizational Domain). Without the Public Suffix List a parent domain is treated as
    another domain: publishing an authorisation nobody needed is harmless, missing one is not.
    Raises: ValueError when the report address has no domain.
    """
    if not report_address:
        return None
    dom = normalize_host(domain)
    target = normalize_host(report_address.strip().removeprefix("mailto:").rpartition("@")[2])
    if target == dom or target.endswith("." + dom):
        return None
    return DnsRecord("TXT", f"{dom}._report._dmarc.{target}", "v=DMARC1", "dmarc", ttl)


def dkim_host(selector: str, domain: str) -> str:
    """`<selector>._domainkey.<domain>` (RFC 6376 §3.6.2.1)."""
    return f"{normalize_host(selector)}._domainkey.{normalize_host(domain)}"


def plan_records(domain: str, mx_host: str, dkim_keys: Sequence[DkimPublicKey] = (), *,
                 mail_from: str | None = None, spf_mechanisms: Sequence[str] | None = None,
                 spf_all: str = DEFAULT_SPF_ALL, dmarc_rua: str | None = None,
                 ttl: int = DEFAULT_TTL) -> list[DnsRecord]:
    """Every record `domain` needs, in display order: inbound, spf, dkim, dmarc, mail_from.

    Raises: ValueError on an empty/invalid name, a MAIL FROM host outside the domain, or a
        DMARC report address that is not an address.
    """
    dom, mx = normalize_host(domain), normalize_host(mx_host)
    spf = spf_value(spf_mechanisms or default_spf_mechanisms(mx), spf_all)
    bounce = mail_from_host(dom, mail_from)
    return [
        DnsRecord("MX", dom, mx, "inbound", ttl, priority=MX_PREFERENCE),
        DnsRecord("TXT", dom, spf, "spf", ttl),
        *(_dkim_record(dom, key, ttl) for key in dkim_keys),
        DnsRecord("TXT", f"_dmarc.{dom}", dmarc_value(dmarc_rua), "dmarc", ttl),
        DnsRecord("MX", bounce, mx, "mail_from", ttl, priority=MX_PREFERENCE),
        DnsRecord("TXT", bounce, spf, "mail_from", ttl),
    ]


def _dkim_record(domain: str, key: DkimPublicKey, ttl: int) -> DnsRecord:
    selector = normalize_host(key.selector)
    return DnsRecord("TXT", dkim_host(selector, domain), dkim_value(key), "dkim", ttl,
                     selector=selector)


# -- zone-file export ---------------------------------------------------------------------------

def split_character_strings(value: str) -> list[bytes]:
    """The UTF-8 bytes of a TXT value cut into <character-string>s of at most 255 bytes.

    RFC 1035 §3.3.14 limits each string; RFC 7208 §3.3 and RFC 6376 §3.6.2.2 have verifiers
    concatenate them without separators, so cutting anywhere (even inside a UTF-8 sequence)
    round-trips. An empty value is one empty string, not zero strings.
    """
    data = value.encode("utf-8")
    chunks = [data[i:i + MAX_CHARACTER_STRING] for i in range(0, len(data), MAX_CHARACTER_STRING)]
    return chunks or [b""]


def quote_character_string(chunk: bytes) -> str:
    """A master-file quoted string (RFC 1035 §5.1): `\\"` and `\\\\` escaped, bytes outside
    printable ASCII as `\\DDD` so the line stays 7-bit and unambiguous."""
    return '"' + "".join(_escape_byte(b) for b in chunk) + '"'


def _escape_byte(byte: int) -> str:
    if byte in (0x22, 0x5C):  # '"' and '\'
        return "\\" + chr(byte)
    if 0x20 <= byte < 0x7F:
        return chr(byte)
    return f"\\{byte:03d}"


def zone_rdata(record: DnsRecord) -> str:
    """The RDATA column: `10 mx.example.net.` for MX, quoted strings for TXT."""
    if record.type == "MX":
        return f"{record.priority if record.priority is not None else MX_PREFERENCE} {record.value}."
    return " ".join(quote_character_string(c) for c in split_character_strings(record.value))


def zone_line(record: DnsRecord) -> str:
    """One master-file line with an absolute owner name (RFC 1035 §5.1)."""
    return f"{record.host}.\t{record.ttl}\tIN\t{record.type}\t{zone_rdata(record)}"


def render_zone(records: Sequence[DnsRecord], domain: str | None = None) -> str:
    """A BIND zone snippet of `records`, one line each, with a comment line per purpose.

    Names are absolute (trailing dot), so the snippet pastes into any zone regardless of
    $ORIGIN.
    """
    lines = [f"; LiteMX records for {normalize_host(domain)}"] if domain else []
    purpose = None
    for record in records:
        if record.purpose != purpose:
            purpose = record.purpose
            lines.append(f"; {purpose}")
        lines.append(zone_line(record))
    return "\n".join(lines) + "\n"
