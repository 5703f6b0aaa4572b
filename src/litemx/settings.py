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
    # The MX listener (SPEC §5). STARTTLS is offered only when both TLS files are set.
    tls_cert: str = _help("PEM certificate chain for SMTP STARTTLS (RFC 3207).", "LITEMX_TLS_CERT", "")
    tls_key: str = _help("PEM private key of tls_cert.", "LITEMX_TLS_KEY", "")
    smtp_max_connections: int = _help("Concurrent SMTP sessions; one more is answered 421 and closed.",
                                      "LITEMX_SMTP_MAX_CONNECTIONS", 100)
    smtp_idle_timeout: int = _help("Seconds an SMTP client may stay silent before 421 and close "
                                   "(RFC 5321 §4.5.3.2).", "LITEMX_SMTP_IDLE_TIMEOUT", 300)
    smtp_max_commands: int = _help("Per-session budget of each SMTP command (MAIL, RCPT, ...); over it: 421.",
                                   "LITEMX_SMTP_MAX_COMMANDS", 1000)
    smtp_max_rejected_recipients: int = _help("Refused RCPTs per session before 421 and close (bounds "
                                              "address probing and its audit rows).",
                                              "LITEMX_SMTP_MAX_REJECTED_RECIPIENTS", 20)
    auth_failures_per_minute: int = _help("Failed token authentications per client address and minute before "
                                          "429 rate_limited (bounds their audit rows; a valid token still works; "
                                          "0: no limit).", "LITEMX_AUTH_FAILURES_PER_MINUTE", 60)
    inbound_worker: bool = _help("`serve` processes the inbound queue; 0 accepts and queues only (operations, "
                                 "tests).", "LITEMX_INBOUND_WORKER", True)
    processes: int = _help("Front processes (HTTP + SMTP on shared sockets) `serve` runs; 0: one per CPU; "
                           "1: everything in one process.", "LITEMX_PROCESSES", 0)
    worker_processes: int = _help("Background processes (inbound processing, outbound, schedules) beside the "
                                  "front ones, at a lower CPU priority; 0: one per CPU. Unused when processes=1.",
                                  "LITEMX_WORKER_PROCESSES", 0)
    dkim_ed25519: bool = _help("Also generate an Ed25519 DKIM key per domain (RFC 8463 dual signing), "
                               "published beside the RSA key; 1/true/yes/on to enable.", "LITEMX_DKIM_ED25519", False)
    dns_recheck_seconds: int = _help("Seconds between background re-checks of every domain's DNS records "
                                     "(0 turns the re-check off).", "LITEMX_DNS_RECHECK_SECONDS", 3600)
    # Outbound delivery (SPEC §6): the transport is `outbound` above.
    outbound_timeout: int = _help("Seconds an outbound SMTP connection or command may take.",
                                  "LITEMX_OUTBOUND_TIMEOUT", 60)
    outbound_worker: bool = _help("`serve` delivers queued outbound mail; 0 queues only (operations, tests).",
                                  "LITEMX_OUTBOUND_WORKER", True)
    ses_region: str = _help("AWS region for outbound=ses (default: the AWS SDK's own configuration).",
                            "LITEMX_SES_REGION", "")
    ses_endpoint: str = _help("SES endpoint URL override (an SES-compatible test endpoint).", "LITEMX_SES_ENDPOINT", "")
    ses_configuration_set: str = _help("SES configuration set whose event destinations publish bounces and "
                                       "complaints.", "LITEMX_SES_CONFIGURATION_SET", "")
    # Retention (SPEC §10): the scheduled cleanup; one node at a time runs it (a job lock).
    retention_interval_seconds: int = _help("Seconds between scheduled retention cleanups across the cluster "
                                            "(0 turns the schedule off).", "LITEMX_RETENTION_INTERVAL_SECONDS", 86400)
    # The SES inbound webhook, POST /api/inbound/ses (SPEC §5; docs/ses-inbound.md).
    ses_webhook_secret: str = _help("Shared secret the SNS subscription URL carries as ?secret=...; when set, "
                                    "every request must carry it.", "LITEMX_SES_WEBHOOK_SECRET", "")
    ses_sns_topic_arns: tuple[str, ...] = _help("Comma list of SNS TopicArns accepted by the webhook "
                                                "(empty: any topic).", "LITEMX_SES_SNS_TOPIC_ARNS", ())
    ses_sns_cert_hosts: tuple[str, ...] = _help("Comma list of hosts SNS signing certificates and SubscribeURLs "
                                                "may be fetched from (https only; `*` is one DNS label).",
                                                "LITEMX_SES_SNS_CERT_HOSTS",
                                                ("sns.*.amazonaws.com", "sns.*.amazonaws.com.cn"))
    ses_s3_buckets: tuple[str, ...] = _help("Comma list of S3 buckets an SES S3 action may name (empty: any); "
                                            "keeps a foreign topic from making the webhook read other buckets.",
                                            "LITEMX_SES_S3_BUCKETS", ())
    ses_sns_max_age_seconds: int = _help("Oldest SNS message Timestamp accepted, in seconds (replay guard; SNS "
                                         "stops retrying after 3600).", "LITEMX_SES_SNS_MAX_AGE_SECONDS", 3600)

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
        for name in ("processes", "worker_processes"):
            if getattr(settings, name) < 0:
                raise InvalidRequest(f"setting {name} must be 0 (one per CPU) or more", {"field": name})
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
        if t == "bool":
            return _boolean(value)
        if t.startswith("tuple"):
            return tuple(v.strip() for v in value.split(",") if v.strip())
    except ValueError:
        raise InvalidRequest(f"setting {name} has an invalid value {value!r}", {"field": name}) from None
    return value


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def _boolean(value: str) -> bool:
    """An environment flag. Raises: ValueError for anything but 1/0, true/false, yes/no, on/off."""
    text = value.strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ValueError(value)


def split_host_port(value: str, name: str) -> tuple[str, int]:
    """Parse host:port ([v6]:port allowed). Raises: InvalidRequest."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not (0 <= int(port) < 65536):
        raise InvalidRequest(f"{name} must be host:port, got {value!r}", {"field": name})
    return host.strip("[]") or "127.0.0.1", int(port)
