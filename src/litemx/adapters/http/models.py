"""Request bodies. Unknown fields are refused (`extra="forbid"`) so typos never pass silently."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        """No JSON string may carry NUL: no field means it, and PostgreSQL text refuses it."""
        if _contains_nul(data):
            raise ValueError("text fields may not contain NUL characters or unpaired surrogates")
        return data


def _contains_nul(value: Any) -> bool:
    """NUL, or a lone UTF-16 surrogate (valid JSON escape, but no UTF-8 text can hold it)."""
    if isinstance(value, str):
        return "\x00" in value or not _encodable(value)
    if isinstance(value, dict):
        return any(_contains_nul(k) or _contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_contains_nul(v) for v in value)
    return False


class DomainCreate(Body):
    name: StrictStr = Field(description="The domain, e.g. project.dev (IDN accepted).")
    dmarc_report: StrictStr | None = Field(None, description="Address receiving DMARC aggregate reports "
                                                             "(the plan's rua=mailto:...); optional.")


class DmarcUpdate(Body):
    report_address: StrictStr | None = Field(description="Address receiving DMARC aggregate reports "
                                                         "(rua=mailto:...); null removes it.")


class ReadinessUpdate(Body):
    provider_approved: StrictBool = Field(description="The outbound provider granted production sending.")


class MailboxCreate(Body):
    address: StrictStr = Field(description="support@project.dev")
    display_name: StrictStr | None = None


class RetentionUpdate(Body):
    days: StrictInt = Field(description="Content window in days (1-3650).")


class AliasCreate(Body):
    address: StrictStr
    targets: list[StrictStr] = Field(description="Mailbox addresses of this account the alias delivers to.")


class CatchallUpdate(Body):
    mailbox: StrictStr | None = Field(description="Mailbox receiving unknown recipients; null turns it off.")


class TokenCreate(Body):
    name: StrictStr
    scopes: list[StrictStr]
    mailboxes: list[StrictStr] = Field(description="Mailbox addresses, or ['*'] for all.")
    expires_at: datetime | None = None


# -- Domains and DNS: response shapes (documented in OpenAPI; the service builds the dicts) ------


class DnsRecordOut(BaseModel):
    type: str = Field(description="MX or TXT.")
    host: str = Field(description="Absolute name without the final dot.")
    value: str = Field(description="MX: the exchange host; TXT: the whole value (split at 255 bytes when published).")
    purpose: str = Field(description="inbound | spf | dkim | dmarc | mail_from")
    ttl: int
    priority: int | None = Field(description="MX preference; null for TXT.")
    selector: str | None = Field(description="DKIM selector; null for other records.")


class DnsPlanOut(BaseModel):
    domain: str
    records: list[DnsRecordOut]
    warnings: list[str] = Field(default_factory=list, description="What the plan cannot publish for you, e.g. the "
                                "RFC 7489 §7.1 authorisation a DMARC report domain must publish.")
    zone: str | None = Field(None, description="BIND zone snippet (only with ?format=zone).")


class RecordStatusOut(DnsRecordOut):
    status: str = Field(description="ok | missing | mismatch")
    expected: str = Field(description="What the check wants to find (MX as 'preference host').")
    found: list[str] = Field(description="What DNS served at this host and type.")
    hint: str | None = Field(description="What to change; null when the record is ok.")
    warnings: list[str] = Field(description="Things that do not block readiness.")


class Readiness(BaseModel):
    inbound_ready: bool
    outbound_ready: bool
    provider_approved: bool


class DomainStatusOut(BaseModel):
    domain: str
    records: list[RecordStatusOut]
    readiness: Readiness
    checked_at: str


class DkimKeyOut(BaseModel):
    selector: str
    algorithm: str = Field(description="rsa | ed25519")
    status: str = Field(description="active (signs) | retiring (still published) | retired")
    public_key_b64: str
    created_at: str
    retired_at: str | None


class DmarcOut(BaseModel):
    domain: str
    report_address: str | None
    records: list[DnsRecordOut] = Field(description="The DMARC record to publish now.")
    warnings: list[str]


class DkimRotateOut(BaseModel):
    domain: str
    created: list[str] = Field(description="Selectors of the new active keys.")
    retiring: list[str] = Field(description="Selectors now retiring (published, no longer signing).")
    retired: list[str] = Field(description="Selectors no longer published.")
    keys: list[DkimKeyOut]
    records: list[DnsRecordOut] = Field(description="The DKIM records to publish now.")



# -- Inbound simulate (issue 3) ----------------------------------------------------------------


class InboundSimulate(Body):
    """Raw MIME plus an SMTP envelope; exactly one of `raw` / `raw_base64`."""

    raw: StrictStr | None = Field(None, description="The message as text (sent as its UTF-8 bytes).")
    raw_base64: StrictStr | None = Field(None, description="The message bytes, base64 (exact bytes, any charset).")
    recipients: list[StrictStr] = Field(description="RCPT TO addresses (1-100), routed like the MX routes them.")
    mail_from: StrictStr = Field("", description="MAIL FROM reverse-path without brackets; empty for bounces.")
    client_ip: StrictStr | None = Field(None, description="The connecting IP the SPF check uses.")
    helo: StrictStr | None = Field(None, description="The HELO/EHLO name.")


# -- Retention, abuse and privacy (issue 7) ------------------------------------------------------


class LegalHoldUpdate(Body):
    hold: StrictBool = Field(description="true: retention and purge leave the mailbox untouched until released.")


class RetentionRun(Body):
    as_of: datetime | None = Field(None, description="Run as if it were this time (ISO 8601 with a timezone); "
                                                     "default now.")


# -- Drafts and sending (issue 4) ----------------------------------------------------------------

Recipients = list[StrictStr]
_RECIPIENTS = "Addresses: `alice@example.com` or `Alice <alice@example.com>`."


class AttachmentIn(Body):
    """One file (docs/sending.md "Attachments"): the whole message, encoded, must fit in the
    server's max_message_bytes (413 `payload_too_large` otherwise)."""

    filename: StrictStr = Field(description="Plain file name (1-255 characters; no CR/LF/NUL, / or \\). "
                                            "Non-ASCII is sent as an RFC 2231 parameter.")
    content_type: StrictStr = Field(description="type/subtype, e.g. application/pdf (no parameters; "
                                                "multipart/* and message/* refused).")
    content_base64: StrictStr = Field(description="The file's bytes, standard base64.")
    content_id: StrictStr | None = Field(None, description="Content-ID without brackets (part1@example.com), "
                                                           "for `cid:` references from the HTML body.")
    inline: StrictBool = Field(False, description="Shown inside the HTML body (needs content_id) rather "
                                                  "than as a file.")


_ATTACHMENTS = "Files to send with the message (at most 50)."


def attachment_dicts(items: list[AttachmentIn] | None) -> list[dict[str, Any]] | None:
    return None if items is None else [a.model_dump(exclude_none=True) for a in items]


class DraftCreate(Body):
    mailbox: StrictStr = Field(description="The sending mailbox (must be in the token's grants).")
    to: Recipients = Field(default_factory=list, description=_RECIPIENTS)
    cc: Recipients = Field(default_factory=list, description=_RECIPIENTS)
    bcc: Recipients = Field(default_factory=list, description=_RECIPIENTS + " Never written into the message.")
    subject: StrictStr = ""
    text: StrictStr | None = Field(None, description="Plain-text body.")
    html: StrictStr | None = Field(None, description="HTML body (sent as multipart/alternative with the text).")
    attachments: list[AttachmentIn] = Field(default_factory=list, description=_ATTACHMENTS)


class DraftUpdate(Body):
    """Only the fields given change."""

    to: Recipients | None = None
    cc: Recipients | None = None
    bcc: Recipients | None = None
    subject: StrictStr | None = None
    text: StrictStr | None = None
    html: StrictStr | None = None
    attachments: list[AttachmentIn] | None = Field(None, description=_ATTACHMENTS + " Replaces the draft's "
                                                   "list; [] removes them all.")


class ReplyCreate(Body):
    text: StrictStr | None = Field(None, description="Plain-text body of the reply (nothing is quoted).")
    html: StrictStr | None = None
    reply_all: StrictBool = Field(False, description="Also copy the parent's To and Cc (minus this mailbox).")


class SendDirect(Body):
    mailbox: StrictStr = Field(description="The sending mailbox.")
    to: Recipients = Field(description=_RECIPIENTS)
    cc: Recipients = Field(default_factory=list)
    bcc: Recipients = Field(default_factory=list)
    subject: StrictStr = ""
    text: StrictStr | None = None
    html: StrictStr | None = None
    attachments: list[AttachmentIn] = Field(default_factory=list, description=_ATTACHMENTS)
