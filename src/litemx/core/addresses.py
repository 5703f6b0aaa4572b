"""Address and domain normalisation (email-validator; IDN domains kept in their ASCII form).

Addresses are stored lower-cased with the domain as A-labels (RFC 5890), so lookups by the
SMTP listener, the API and aliases all compare the same bytes. Validation never touches DNS.
"""

from __future__ import annotations

from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

PLUS = "+"


@dataclass(frozen=True)
class Address:
    local: str
    domain: str

    @property
    def address(self) -> str:
        return f"{self.local}@{self.domain}"

    def base(self) -> Address | None:
        """The address without its +tag (`support+x@d` -> `support@d`), or None if untagged."""
        local, sep, _tag = self.local.partition(PLUS)
        return Address(local, self.domain) if sep and local else None


def parse_address(value: str) -> Address:
    """Validate and normalise one address.

    Raises: ValueError with a human reason when the address is not valid.
    """
    try:
        info = validate_email(value.strip(), check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return Address(info.local_part.lower(), info.ascii_domain.lower())


def parse_domain(value: str) -> str:
    """Validate a domain name and return it lower-cased in A-label form.

    Raises: ValueError with a human reason.
    """
    name = value.strip().rstrip(".")
    if not name or "@" in name:
        raise ValueError("a domain name such as example.com is required")
    return parse_address(f"postmaster@{name}").domain
