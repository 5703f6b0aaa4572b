"""One frozen Settings object, built once from flags and environment (SPEC §12). No globals."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from litemx.errors import InvalidRequest


def _help(text: str, env: str | None = None, default: Any = None) -> Any:
    return field(default=default, metadata={"help": text, "env": env})


@dataclass(frozen=True)
class Settings:
    data_dir: Path = _help("Directory for the SQLite database, blobs and keys.", "LITEMX_DATA_DIR", Path("./data"))
    http: str = _help("host:port for REST, OpenAPI and /mcp.", "LITEMX_HTTP", "127.0.0.1:8025")
    smtp: str = _help("host:port for the inbound MX listener.", "LITEMX_SMTP", "127.0.0.1:2525")
    hostname: str = _help("MX host name used in DNS plans and the SMTP greeting.", "LITEMX_HOSTNAME", "mx.litemx.local")
    database_url: str = _help("SQLAlchemy URL; default SQLite in the data dir.", "LITEMX_DATABASE_URL", "")
    blob_url: str = _help("Blob store: default files in the data dir; s3://bucket/prefix.", "LITEMX_BLOB_URL", "")
    s3_endpoint: str = _help("Endpoint URL of an S3-compatible store.", "LITEMX_S3_ENDPOINT", "")
    dns_servers: tuple[str, ...] = _help("host:port DNS servers every lookup goes to.", "LITEMX_DNS_SERVERS", ())
    outbound: str = _help("smtp://host:port smarthost, 'mx' direct delivery, or 'ses'.", "LITEMX_OUTBOUND", "mx")
    mx_port: int = _help("Port for direct MX delivery (25; override in tests).", "LITEMX_MX_PORT", 25)
    secret_key: str = _help("Key that encrypts DKIM private keys at rest; default a file in the data dir.", "LITEMX_SECRET_KEY", "")
    max_message_bytes: int = _help("Largest inbound message accepted (SMTP SIZE).", "LITEMX_MAX_MESSAGE_BYTES", 25 * 1024 * 1024)
    log_level: str = _help("Python logging level.", "LITEMX_LOG_LEVEL", "INFO")

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'litemx.db').resolve()}"

    @property
    def http_host_port(self) -> tuple[str, int]:
        return split_host_port(self.http, "http")

    @property
    def smtp_host_port(self) -> tuple[str, int]:
        return split_host_port(self.smtp, "smtp")

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Environment first, then explicit overrides (flags); None overrides are ignored.

        Raises: InvalidRequest when a value does not parse.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f.metadata.get("env")
            if name and env.get(name):
                values[f.name] = _coerce(f.name, f.type, env[name])
        for key, value in overrides.items():
            if value is not None:
                values[key] = _coerce(key, _field_type(cls, key), value)
        settings = cls(**values)
        settings.http_host_port, settings.smtp_host_port  # validate early
        return settings

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def _field_type(cls: type, name: str) -> str:
    for f in fields(cls):
        if f.name == name:
            return str(f.type)
    raise InvalidRequest(f"unknown setting {name!r}", {"field": name})


def _coerce(name: str, type_name: Any, value: Any) -> Any:
    if not isinstance(value, str):
        return Path(value) if str(type_name) == "Path" else value
    t = str(type_name)
    try:
        if t == "Path":
            return Path(value)
        if t == "int":
            return int(value)
        if t.startswith("tuple"):
            return tuple(v.strip() for v in value.split(",") if v.strip())
    except ValueError:
        raise InvalidRequest(f"setting {name} has an invalid value {value!r}", {"field": name}) from None
    return value


def split_host_port(value: str, name: str) -> tuple[str, int]:
    """Parse host:port ([v6]:port allowed). Raises: InvalidRequest."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not (0 <= int(port) < 65536):
        raise InvalidRequest(f"{name} must be host:port, got {value!r}", {"field": name})
    return host.strip("[]") or "127.0.0.1", int(port)
