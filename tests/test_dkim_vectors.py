"""DKIM (RSA, RFC 8463 Ed25519) and ARC verdicts on dkimpy 1.1.8's own vectors, over the fake resolver."""

from __future__ import annotations

import base64
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from litemx.mailauth.dkim import verify_arc, verify_dkim
from tests.support.corpora import sdist
from tests.support.fake_resolver import FakeResolver

NOW = datetime.now(timezone.utc)
BRISBANE = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="  # RFC 8463 A.2


@pytest.fixture(scope="module")
def data() -> Path:
    return sdist("dkimpy", "1.1.8") / "dkim" / "tests" / "data"


def _text(path: Path) -> str:
    return path.read_text().strip()


def _football(data: Path) -> FakeResolver:
    fake = FakeResolver().add("brisbane._domainkey.football.example.com", "TXT", BRISBANE)
    return fake.add("test._domainkey.football.example.com", "TXT", _text(data / "test.txt"))


def test_rfc8463_message_with_ed25519_and_rsa_signatures_passes_both(data: Path) -> None:
    results = verify_dkim((data / "rfc6376.signed.msg").read_bytes(), _football(data), now=NOW)
    assert [(r.result, r.algorithm, r.selector) for r in results] == [
        ("pass", "ed25519-sha256", "brisbane"),
        ("pass", "rsa-sha256", "test"),
    ]
    assert {r.domain for r in results} == {"football.example.com"}
    assert results[0].header_b == "9/dsDChY"


@pytest.mark.parametrize("canon", [(b"simple", b"simple"), (b"relaxed", b"relaxed"), (b"relaxed", b"simple")])
def test_message_signed_with_the_rsa_test_key_passes(data: Path, canon: tuple[bytes, bytes]) -> None:
    message = (data / "test.message").read_bytes()
    signature = dkim.sign(message, b"test", b"example.com", (data / "test.private").read_bytes(), canonicalize=canon)
    fake = FakeResolver().add("test._domainkey.example.com", "TXT", _text(data / "test.txt"))
    (result,) = verify_dkim(signature + message, fake, now=NOW)
    assert (result.result, result.domain, result.selector) == ("pass", "example.com", "test")


@pytest.mark.parametrize(
    ("key", "public"),
    [
        ("1024_testkey.key", "1024_testkey_wo_markers.pub.txt"),
        ("2048_testkey.key", "2048_testkey_wo_markers.pub.txt"),
        ("2048_testkey_PKCS8.key", "2048_testkey_PKCS8.key.pub.txt"),
    ],
)
def test_each_provided_rsa_key_pair_signs_and_verifies(data: Path, key: str, public: str) -> None:
    message = (data / "rfc6376.msg").read_bytes()
    signature = dkim.sign(message, b"sel", b"example.org", (data / key).read_bytes())
    fake = FakeResolver().add("sel._domainkey.example.org", "TXT", _text(data / public))
    assert [r.result for r in verify_dkim(signature + message, fake, now=NOW)] == ["pass"]


def test_ed25519_signature_with_the_provided_key_passes(data: Path) -> None:
    message = (data / "ed25519test.msg").read_bytes()
    signature = dkim.sign(message, b"test", b"example.net", (data / "ed25519test.key").read_bytes(),
                          signature_algorithm=b"ed25519-sha256")
    fake = FakeResolver().add("test._domainkey.example.net", "TXT", _text(data / "ed25519test.dns"))
    (result,) = verify_dkim(signature + message, fake, now=NOW)
    assert (result.result, result.algorithm) == ("pass", "ed25519-sha256")


def test_altered_body_fails_with_a_body_hash_mismatch(data: Path) -> None:
    raw = (data / "rfc6376.signed.msg").read_bytes().replace(b"We lost the game.", b"We won the game.")
    results = verify_dkim(raw, _football(data), now=NOW)
    assert [r.result for r in results] == ["fail", "fail"]
    assert results[0].reason == "body hash mismatch"


def test_altered_signed_header_fails(data: Path) -> None:
    raw = (data / "rfc6376.signed.msg").read_bytes().replace(b"Subject: Is dinner ready?", b"Subject: Pay now")
    results = verify_dkim(raw, _football(data), now=NOW)
    assert [(r.result, r.reason) for r in results] == [("fail", "signature did not verify")] * 2


def test_malformed_key_record_badk_is_permerror_not_a_crash(data: Path) -> None:
    message = (data / "test.message").read_bytes()
    signature = dkim.sign(message, b"test", b"example.com", (data / "test.private").read_bytes())
    fake = FakeResolver().add("test._domainkey.example.com", "TXT", _text(data / "badk.txt"))
    (result,) = verify_dkim(signature + message, fake, now=NOW)
    assert result.result == "permerror"
    assert "key record unusable" in result.reason


def test_key_record_with_a_bad_version_is_permerror(data: Path) -> None:
    message = (data / "test.message").read_bytes()
    signature = dkim.sign(message, b"test", b"example.com", (data / "test.private").read_bytes())
    fake = FakeResolver().add("test._domainkey.example.com", "TXT", _text(data / "badversion.txt"))
    assert verify_dkim(signature + message, fake, now=NOW)[0].result == "permerror"


def test_missing_key_record_is_permerror_no_key(data: Path) -> None:
    (result,) = verify_dkim((data / "rfc6376.signed.rsa.msg").read_bytes(), FakeResolver(), now=NOW)
    assert (result.result, result.reason) == ("permerror", "no key for signature")


def test_dns_timeout_on_the_key_is_temperror(data: Path) -> None:
    fake = FakeResolver().time_out("test._domainkey.football.example.com", "TXT")
    (result,) = verify_dkim((data / "rfc6376.signed.rsa.msg").read_bytes(), fake, now=NOW)
    assert result.result == "temperror"


def test_invalid_d_tag_is_permerror(data: Path) -> None:
    (result,) = verify_dkim((data / "test.message.baddomain").read_bytes(), FakeResolver(), now=NOW)
    assert result.result == "permerror"


def test_unparseable_signature_header_is_permerror(data: Path) -> None:
    raw = b"DKIM-Signature: this is not a tag list\r\n" + (data / "test.message").read_bytes()
    (result,) = verify_dkim(raw, FakeResolver(), now=NOW)
    assert result.result == "permerror"


def test_message_without_signature_has_no_results(data: Path) -> None:
    assert verify_dkim((data / "test.message").read_bytes(), FakeResolver(), now=NOW) == ()


def test_unparseable_header_block_with_a_signature_is_permerror() -> None:
    (result,) = verify_dkim(b"DKIM-Signature: v=1\r\n\x00bad header\r\n\r\nbody", FakeResolver(), now=NOW)
    assert result.result == "permerror"


def test_signature_past_its_x_tag_fails_at_the_given_time(data: Path) -> None:
    message = (data / "test.message").read_bytes()
    signed = _sign_with_tags(message, (data / "test.private").read_bytes(), expires_in=3600)
    fake = FakeResolver().add("test._domainkey.example.com", "TXT", _text(data / "test.txt"))
    assert verify_dkim(signed, fake, now=NOW)[0].result == "pass"
    later = verify_dkim(signed, fake, now=NOW + timedelta(hours=2))[0]
    assert (later.result, later.reason) == ("fail", "signature expired (x=)")


def _sign_with_tags(message: bytes, key: bytes, *, expires_in: int) -> bytes:
    # dkimpy's signer has no x= option: add it to the signature fields before the b= is computed.
    signer = dkim.DKIM(message)
    original = signer.gen_header

    def with_expiry(fields: list[tuple[bytes, bytes]], *args: object, **kwargs: object) -> bytes:
        expiry = str(int(NOW.timestamp()) + expires_in).encode()
        return original([*fields[:-1], (b"x", expiry), fields[-1]], *args, **kwargs)

    signer.gen_header = with_expiry  # type: ignore[method-assign]
    return signer.sign(b"test", b"example.com", key) + message


def test_rsa_sha1_signature_is_policy_per_rfc8301(data: Path) -> None:
    message = (data / "test.message").read_bytes()
    signature = dkim.sign(message, b"test", b"example.com", (data / "test.private").read_bytes(),
                          signature_algorithm=b"rsa-sha1")
    fake = FakeResolver().add("test._domainkey.example.com", "TXT", _text(data / "test.txt"))
    assert verify_dkim(signature + message, fake, now=NOW)[0].result == "policy"


def test_rsa_key_under_1024_bits_is_policy_per_rfc8301(data: Path) -> None:
    private, public_record = _small_rsa_key()
    message = (data / "test.message").read_bytes()
    signature = dkim.sign(message, b"small", b"example.com", private)
    fake = FakeResolver().add("small._domainkey.example.com", "TXT", public_record)
    result = verify_dkim(signature + message, fake, now=NOW)[0]
    assert (result.result, result.reason) == ("policy", "RSA key of 512 bits")


def _small_rsa_key() -> tuple[bytes, str]:
    # cryptography refuses to *generate* keys under 1024 bits, so build one from two primes.
    rng = random.Random(8301)
    p, q = _prime(rng, 256), _prime(rng, 256)
    e, d = 65537, pow(65537, -1, (p - 1) * (q - 1))
    public = rsa.RSAPublicNumbers(e, p * q)
    key = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), public).private_key()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def _prime(rng: random.Random, bits: int) -> int:
    while True:
        candidate = rng.getrandbits(bits) | (3 << (bits - 2)) | 1  # top two bits: n has 2*bits
        if _probably_prime(candidate, rng):
            return candidate


def _probably_prime(n: int, rng: random.Random) -> bool:
    """Miller-Rabin with 20 random bases."""
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(20):
        x = pow(rng.randrange(2, n - 1), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


# --- ARC (RFC 8617) ---------------------------------------------------------------------------

ARC_MESSAGE = b"""Authentication-Results: lists.example.org; arc=none;
  spf=pass smtp.mfrom=jqd@d1.example;
  dkim=pass (1024-bit key) header.i=@d1.example;
  dmarc=pass
MIME-Version: 1.0
Return-Path: <jqd@d1.example.org>
Message-ID: <54B84785.1060301@d1.example.org>
Date: Thu, 14 Jan 2015 15:00:01 -0800
From: John Q Doe <jqd@d1.example.org>
To: arc@dmarc.org
Subject: Example 1

Hey gang,
This is a test message.
--J.
"""
ARC_HEADERS = [b"from", b"to", b"subject", b"date", b"mime-version"]


def _arc_zone(data: Path) -> FakeResolver:
    record = _text(data / "test.txt")
    fake = FakeResolver().add("dummy._domainkey.example.org", "TXT", record)
    return fake.add("relay._domainkey.example.net", "TXT", record)


def _seal(message: bytes, key: bytes, domain: bytes, selector: bytes, srv_id: bytes) -> bytes:
    headers = dkim.arc_sign(message, selector, domain, key, srv_id, include_headers=ARC_HEADERS)
    assert headers, "dkimpy refused to seal"
    return b"".join(headers) + message


def test_arc_chain_of_one_set_passes(data: Path) -> None:
    sealed = _seal(ARC_MESSAGE, (data / "test.private").read_bytes(), b"example.org", b"dummy", b"lists.example.org")
    result = verify_arc(sealed, _arc_zone(data))
    assert (result.result, result.instances) == ("pass", 1)


def test_arc_chain_of_two_sets_passes(data: Path) -> None:
    key = (data / "test.private").read_bytes()
    first = _seal(ARC_MESSAGE, key, b"example.org", b"dummy", b"lists.example.org")
    hop = b"Authentication-Results: relay.example.net; arc=pass; dkim=none\r\n" + first
    second = _seal(hop, key, b"example.net", b"relay", b"relay.example.net")
    result = verify_arc(second, _arc_zone(data))
    assert (result.result, result.instances) == ("pass", 2)


def test_arc_chain_fails_when_the_body_changes_after_sealing(data: Path) -> None:
    sealed = _seal(ARC_MESSAGE, (data / "test.private").read_bytes(), b"example.org", b"dummy", b"lists.example.org")
    result = verify_arc(sealed.replace(b"Hey gang", b"Hi gang"), _arc_zone(data))
    assert (result.result, result.instances) == ("fail", 1)


def test_arc_chain_with_key_lookup_timeout_fails_with_the_reason(data: Path) -> None:
    sealed = _seal(ARC_MESSAGE, (data / "test.private").read_bytes(), b"example.org", b"dummy", b"lists.example.org")
    result = verify_arc(sealed, FakeResolver(timeouts={"dummy._domainkey.example.org"}))
    assert result.result == "fail"
    assert "key lookup" in result.reason


def test_message_without_arc_headers_is_none(data: Path) -> None:
    assert verify_arc(ARC_MESSAGE, _arc_zone(data)).result == "none"


def test_incomplete_arc_set_fails() -> None:
    raw = b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=example.org; s=dummy; b=AAAA\r\n" + ARC_MESSAGE
    assert verify_arc(raw, FakeResolver()).result == "fail"


def test_only_the_first_ten_signatures_are_tried(data: Path) -> None:
    message = (data / "test.message").read_bytes()
    signature = dkim.sign(message, b"test", b"example.com", (data / "test.private").read_bytes())
    fake = FakeResolver().add("test._domainkey.example.com", "TXT", _text(data / "test.txt"))
    results = verify_dkim(signature * 12 + message, fake, now=NOW)
    assert [r.result for r in results] == ["pass"] * 10


def test_arc_instance_beyond_fifty_fails() -> None:
    raw = b"ARC-Seal: i=51; a=rsa-sha256; cv=pass; d=example.org; s=dummy; b=AAAA\r\n" + ARC_MESSAGE
    result = verify_arc(raw, FakeResolver())
    assert (result.result, result.reason) == ("fail", "more than 50 ARC sets")
