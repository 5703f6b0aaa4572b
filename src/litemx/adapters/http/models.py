"""Request bodies. Unknown fields are refused (`extra="forbid"`) so typos never pass silently."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DomainCreate(Body):
    name: StrictStr = Field(description="The domain, e.g. project.dev (IDN accepted).")


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
