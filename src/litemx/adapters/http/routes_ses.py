"""`POST /api/inbound/ses`: where Amazon SNS delivers SES notifications (SPEC §3, §5).

No bearer token: SNS cannot send one. The proof is the SNS message signature, plus the
optional `?secret=` of the subscription URL (service/ses_inbound.py). SNS posts JSON with
`Content-Type: text/plain; charset=UTF-8`, so the body is read raw, whatever its type.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from litemx.adapters.http.deps import services

router = APIRouter()

_BODY = {"required": True, "content": {
    "text/plain": {"schema": {"type": "string", "description": "An SNS message (JSON text, as SNS sends it)"}},
    "application/json": {"schema": {"type": "object", "description": "An SNS message: Type, MessageId, "
                                    "TopicArn, Message, Timestamp, SignatureVersion, Signature, SigningCertURL, "
                                    "and SubscribeURL/Token for (un)subscribe confirmations"}},
}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "forbidden: not provably from SNS (signature, certificate URL, topic, stale, secret)"},
    413: {"description": "payload_too_large"},
    422: {"description": "invalid_request: not an SNS message"},
    503: {"description": "unavailable: try again (SNS retries 5xx answers)"},
}


@router.post("/api/inbound/ses", tags=["Inbound"], summary="SES inbound webhook (SNS HTTPS subscription)",
             operation_id="inbound.ses", openapi_extra={"requestBody": _BODY}, responses=_ERRORS)
async def ses_webhook(request: Request, secret: str | None = Query(
        None, description="The shared secret of the subscription URL, when LITEMX_SES_WEBHOOK_SECRET is set.")
) -> dict[str, Any]:
    """Take one SNS delivery: confirm a subscription, store received mail (queued for the MX
    pipeline), or apply a bounce/complaint. Answers 200 for a redelivered MessageId too."""
    body = await request.body()
    client = request.client.host if request.client else None
    # The service does blocking I/O (database, certificate and S3 fetches): off the event loop.
    return await run_in_threadpool(services(request).ses_inbound.handle, body, secret=secret, ip=client,
                                   user_agent=request.headers.get("user-agent"))
