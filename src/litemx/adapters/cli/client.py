"""The CLI's REST client: LITEMX_URL / LITEMX_TOKEN, or the config `litemx login` writes."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from litemx import __version__

DEFAULT_URL = "http://127.0.0.1:8025"
USER_AGENT = f"litemx-cli/{__version__}"  # the server records interface=cli for this agent


class CliError(Exception):
    """An error to print as one line: `error: <code>: <message>`."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "litemx" / "config.json"


def load_config() -> dict[str, str]:
    try:
        data = json.loads(config_path().read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)}


def save_config(url: str, token: str) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds a secret
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": url, "token": token}, fh)
    return path


@dataclass
class Api:
    url: str
    token: str | None
    timeout: float = 30.0

    @classmethod
    def from_env(cls) -> Api:
        cfg = load_config()
        url = os.environ.get("LITEMX_URL") or cfg.get("url") or DEFAULT_URL
        return cls(url.rstrip("/"), os.environ.get("LITEMX_TOKEN") or cfg.get("token"))

    def call(self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None,
             headers: dict[str, str] | None = None) -> Any:
        """Raises: CliError with the server's error code, or `unavailable` when unreachable."""
        hdrs = {"User-Agent": USER_AGENT, **(headers or {})}
        if self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = httpx.request(method, self.url + path, params=query, json=body, headers=hdrs,
                                     timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise CliError("unavailable", f"cannot reach LiteMX at {self.url} ({type(exc).__name__})") from None
        return _decode(response)


def _decode(response: httpx.Response) -> Any:
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.is_success:
        return data
    error = (data or {}).get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        raise CliError("unavailable", f"unexpected HTTP {response.status_code} from the server")
    raise CliError(str(error.get("code")), str(error.get("message")), error.get("details") or {})
