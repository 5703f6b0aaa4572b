"""The one HTTP error table: error code -> status; every non-2xx answer has SPEC §3's shape."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from litemx.errors import LitemxError, RateLimited

log = logging.getLogger("litemx.http")

STATUS: dict[str, int] = {
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "payload_too_large": 413,
    "invalid_request": 422,
    "rate_limited": 429,
    "send_blocked": 403,
    "not_implemented": 501,
    "unavailable": 503,
    "internal": 500,
}


def envelope(code: str, message: str, details: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return JSONResponse(body, status_code=STATUS.get(code, 500), headers=headers)


def _litemx_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LitemxError)
    return envelope(exc.code, exc.message, exc.details, error_headers(exc))


def error_headers(exc: LitemxError) -> dict[str, str]:
    """The headers an error's code calls for (RFC 6750 §3 WWW-Authenticate; RFC 6585 §4 Retry-After)."""
    headers: dict[str, str] = {}
    if exc.code == "unauthorized":
        headers["WWW-Authenticate"] = 'Bearer realm="litemx"'
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    return headers


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_clean(e) for e in exc.errors()][:20]
    first = errors[0] if errors else {"field": "body", "message": "invalid request"}
    message = f"{first['field']}: {first['message']}"
    return envelope("invalid_request", message, {"field": first["field"], "errors": errors})


def _clean(error: Any) -> dict[str, str]:
    """Pydantic's error minus the input echo (it may carry a secret) and internals."""
    kind = error.get("type", "")
    loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "header")]
    field = "body" if kind == "json_invalid" else ".".join(loc) or "body"
    message = "the body is not valid JSON" if kind == "json_invalid" else str(error.get("msg", "invalid"))
    return {"field": field, "message": message, "type": kind}


def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return envelope("not_found", "no such route")
    if exc.status_code == 405:
        return envelope("method_not_allowed", "this route does not accept that method")
    code = {400: "invalid_request", 401: "unauthorized", 413: "payload_too_large"}.get(exc.status_code, "internal")
    return envelope(code, str(exc.detail))


def _database_down(_request: Request, exc: Exception) -> JSONResponse:
    # A lost or refused database connection is an outage, not a bug: 503 so clients retry.
    log.error("database unavailable", exc_info=exc)
    return envelope("unavailable", "the database is not reachable right now; try again shortly",
                    headers={"Retry-After": "5"})


def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    # The only place a bug surfaces: logged with its trace server-side, generic to the client.
    log.error("unhandled error", exc_info=exc)
    return envelope("internal", "internal error; the request was not completed")


def install(app: FastAPI) -> None:
    app.add_exception_handler(LitemxError, _litemx_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for outage in (OperationalError, InterfaceError, DisconnectionError):
        app.add_exception_handler(outage, _database_down)
    app.add_exception_handler(Exception, _unexpected)
