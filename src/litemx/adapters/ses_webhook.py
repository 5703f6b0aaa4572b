"""The outside world of the SES inbound webhook: HTTPS GETs to SNS and S3 reads of stored mail.

Both are injected into `SesInboundService` (app.py) so tests reach only loopback: a fake SNS
over TLS on 127.0.0.1 and moto's S3 server. Neither checks *which* host it may call — the
service does that against `LITEMX_SES_SNS_CERT_HOSTS` before calling; they only refuse
anything but HTTPS, refuse redirects (a redirect could leave the allowed host) and bound
what they read.
"""

from __future__ import annotations

import http.client
import ssl
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from litemx.core.sns import FetchFailed
from litemx.errors import PayloadTooLarge, Unavailable
from litemx.settings import Settings

USER_AGENT = "litemx-ses-webhook"
MAX_FETCH_BYTES = 64 * 1024  # an SNS signing certificate or ConfirmSubscription answer is ~2 KiB
_MISSING = {"404", "NoSuchKey", "NotFound"}


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


def https_get(url: str, *, timeout: float = 10.0, max_bytes: int = MAX_FETCH_BYTES,
              context: ssl.SSLContext | None = None) -> bytes:
    """GET an https URL (certificate and host name verified) and return the body.

    Raises: FetchFailed (not https, a non-200 status, a network or TLS failure, a body over
    `max_bytes`).
    """
    if urlsplit(url).scheme != "https":
        raise FetchFailed("only https URLs are fetched")
    opener = urllib.request.build_opener(_NoRedirects(), urllib.request.HTTPSHandler(context=context))
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with opener.open(request, timeout=timeout) as response:
            data = bytes(response.read(max_bytes + 1))
    except urllib.error.HTTPError as error:
        error.close()
        raise FetchFailed(f"the SNS host answered HTTP {error.code}", error.code) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        raise FetchFailed(f"the SNS host could not be reached ({type(error).__name__})") from None
    if len(data) > max_bytes:
        raise FetchFailed(f"the SNS host answered more than {max_bytes} bytes")
    return data


class S3MailReader:
    """Reads what an SES receipt rule's S3 action stored (boto3; `LITEMX_S3_ENDPOINT` for an
    S3-compatible endpoint such as moto in the tests)."""

    def __init__(self, endpoint_url: str | None = None, region: str | None = None, client: Any = None):
        self.endpoint_url = endpoint_url or None
        self.region = region or None
        self._client = client

    @classmethod
    def from_settings(cls, settings: Settings) -> S3MailReader:
        return cls(settings.s3_endpoint, settings.ses_region)

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # loaded on first use only, as for the S3 blob store
            from botocore.config import Config

            # Path-style for S3-compatible endpoints on a host:port; AWS itself picks its own style.
            style = "path" if self.endpoint_url else "auto"
            self._client = boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region,
                                        config=Config(s3={"addressing_style": style},
                                                      retries={"max_attempts": 3, "mode": "standard"}))
        return self._client

    def __call__(self, bucket: str, key: str, max_bytes: int) -> bytes:
        """The object's bytes.

        Raises: KeyError (no such object), PayloadTooLarge (over `max_bytes`), Unavailable
        (anything else: unreachable, access denied, ...).
        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.get_object(Bucket=bucket, Key=key)
            with response["Body"] as body:
                _check_readable(response, max_bytes)
                return bytes(body.read(max_bytes + 1))
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise KeyError(key) from None
            raise Unavailable(f"S3 refused to read the stored message ({code or 'error'})") from None
        except BotoCoreError as error:
            raise Unavailable(f"S3 is unreachable ({type(error).__name__})") from None


def _check_readable(response: dict[str, Any], max_bytes: int) -> None:
    """Raises: PayloadTooLarge over the limit; Unavailable for an object SES encrypted
    client-side with KMS (its `x-amz-key-v2` metadata), which only the AWS encryption client reads."""
    if int(response.get("ContentLength") or 0) > max_bytes:
        raise PayloadTooLarge(f"the stored message is over the {max_bytes}-byte limit", {"limit": max_bytes})
    if "x-amz-key-v2" in (response.get("Metadata") or {}):
        raise Unavailable("the stored message is KMS-encrypted by SES; LiteMX cannot decrypt it")
