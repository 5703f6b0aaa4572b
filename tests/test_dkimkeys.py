"""DKIM key generation, selectors, sealing at rest, and signing verified over loopback DNS."""

from __future__ import annotations

import base64
import os
import re
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from litemx.adapters.dns_resolver import DnsResolver, dkimpy_dnsfunc
from litemx.core.dkimkeys import (
    DkimKeyPair,
    SealError,
    derive_secret_key,
    dkimpy_private_key,
    generate_key_pair,
    is_litemx_selector,
    load_or_create_secret_key,
    new_selector,
    public_key_b64_from_pem,
    seal,
    unseal,
)
from litemx.core.dnsplan import DkimPublicKey, plan_records
from tests.support.dns_server import LoopbackDnsServer

KEY = bytes(range(32))
MESSAGE = (b"From: Support <support@example.com>\r\nTo: someone@example.org\r\n"
           b"Subject: Hello\r\nMessage-ID: <1@example.com>\r\nDate: Mon, 3 Nov 2025 10:00:00 +0000\r\n"
           b"\r\nHello there.\r\n")


@pytest.fixture(scope="module")
def rsa_pair() -> DkimKeyPair:
    return generate_key_pair("rsa", "lmx202511r1")


@pytest.fixture(scope="module")
def ed_pair() -> DkimKeyPair:
    return generate_key_pair("ed25519", "lmx202511e1")


@pytest.fixture
def dns_server() -> Iterator[LoopbackDnsServer]:
    with LoopbackDnsServer() as server:
        yield server


# -- generation -----------------------------------------------------------------------------------

def test_rsa_keys_are_2048_bit_with_the_spki_der_in_dns(rsa_pair: DkimKeyPair) -> None:
    private = serialization.load_pem_private_key(rsa_pair.private_pem, password=None)
    public = serialization.load_der_public_key(base64.b64decode(rsa_pair.public_key_b64))

    assert rsa_pair.private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert isinstance(private, rsa.RSAPrivateKey) and private.key_size == 2048
    assert isinstance(public, rsa.RSAPublicKey) and public.public_numbers() == private.public_key().public_numbers()


def test_ed25519_keys_publish_the_raw_32_byte_public_key(ed_pair: DkimKeyPair) -> None:
    private = serialization.load_pem_private_key(ed_pair.private_pem, password=None)
    raw = base64.b64decode(ed_pair.public_key_b64)

    assert isinstance(private, ed25519.Ed25519PrivateKey)
    assert len(raw) == 32
    assert ed25519.Ed25519PublicKey.from_public_bytes(raw) == private.public_key()


def test_the_public_value_can_be_recomputed_from_the_stored_private_key(
        rsa_pair: DkimKeyPair, ed_pair: DkimKeyPair) -> None:
    assert public_key_b64_from_pem(rsa_pair.private_pem) == rsa_pair.public_key_b64
    assert public_key_b64_from_pem(ed_pair.private_pem) == ed_pair.public_key_b64


def test_repr_never_shows_the_private_key(rsa_pair: DkimKeyPair) -> None:
    shown = repr(rsa_pair) + str(rsa_pair)

    assert "PRIVATE" not in shown and "private_pem" not in shown
    assert "lmx202511r1" in shown


def test_an_unknown_algorithm_is_refused() -> None:
    with pytest.raises(ValueError):
        generate_key_pair("dsa", "s1")  # type: ignore[arg-type]


# -- selectors ----------------------------------------------------------------------------------

def test_selectors_name_the_month_and_algorithm_and_count_rotations() -> None:
    now = datetime(2025, 11, 3, tzinfo=UTC)

    assert new_selector("rsa", now) == "lmx202511r1"
    assert new_selector("ed25519", now) == "lmx202511e1"
    assert new_selector("rsa", now, ["lmx202511r1", "LMX202511R2", "lmx202510r3"]) == "lmx202511r3"


def test_selectors_are_valid_dns_labels() -> None:
    selector = new_selector("rsa", datetime(2025, 1, 1, tzinfo=UTC), [f"lmx202501r{i}" for i in range(1, 12)])

    assert re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", selector)  # RFC 1035 §2.3.1
    assert is_litemx_selector(selector) and not is_litemx_selector("google")


# -- sealing ------------------------------------------------------------------------------------

def test_seal_round_trips_with_a_fresh_nonce_each_time(rsa_pair: DkimKeyPair) -> None:
    first, second = seal(rsa_pair.private_pem, KEY), seal(rsa_pair.private_pem, KEY)

    assert first != second and first.startswith(b"lmx1")
    assert rsa_pair.private_pem not in first
    assert unseal(first, KEY) == unseal(second, KEY) == rsa_pair.private_pem


def test_a_tampered_blob_does_not_open(rsa_pair: DkimKeyPair) -> None:
    blob = bytearray(seal(rsa_pair.private_pem, KEY))
    blob[-5] ^= 0x01

    with pytest.raises(SealError):
        unseal(bytes(blob), KEY)


@pytest.mark.parametrize(("key", "context", "version"), [
    (bytes(32), b"example.com/lmx202511r1", b"lmx1"),
    (KEY, b"other.com/lmx202511r1", b"lmx1"),
    (KEY, b"example.com/lmx202511r1", b"lmx9"),
])
def test_the_wrong_key_context_or_format_does_not_open(rsa_pair: DkimKeyPair, key: bytes, context: bytes,
                                                       version: bytes) -> None:
    blob = seal(rsa_pair.private_pem, KEY, b"example.com/lmx202511r1")

    with pytest.raises(SealError):
        unseal(version + blob[4:], key, context)


def test_the_sealing_key_must_be_32_bytes() -> None:
    with pytest.raises(ValueError):
        seal(b"x", b"short")


def test_secret_key_settings_in_hex_base64_or_passphrase_form() -> None:
    assert derive_secret_key(KEY.hex()) == KEY
    assert derive_secret_key(base64.b64encode(KEY).decode()) == KEY
    assert derive_secret_key(base64.urlsafe_b64encode(b"\xfb" * 32).decode().rstrip("=")) == b"\xfb" * 32
    phrase = derive_secret_key("correct horse battery staple")
    assert len(phrase) == 32 and phrase == derive_secret_key("correct horse battery staple ")
    assert phrase != derive_secret_key("correct horse battery stable")
    with pytest.raises(ValueError):
        derive_secret_key("  ")


def test_the_key_file_is_created_0600_once_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    old_umask = os.umask(0)  # even a permissive umask must not widen the file's mode
    try:
        first = load_or_create_secret_key(data_dir)
    finally:
        os.umask(old_umask)

    path = data_dir / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret_key(data_dir) == first and len(first) == 32
    assert [p.name for p in data_dir.iterdir()] == ["secret.key"]


def test_the_secret_key_setting_wins_and_creates_no_file(tmp_path: Path) -> None:
    assert load_or_create_secret_key(tmp_path, KEY.hex()) == KEY
    assert not (tmp_path / "secret.key").exists()


def test_a_corrupt_key_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.key").write_text("not a key\n")

    with pytest.raises(ValueError):
        load_or_create_secret_key(tmp_path)


# -- end to end: sign with dkimpy, verify through our resolver and the plan's DKIM record ----------

@pytest.mark.parametrize(("pair_name", "algorithm"), [("rsa_pair", b"rsa-sha256"), ("ed_pair", b"ed25519-sha256")])
def test_a_message_signed_with_a_generated_key_verifies_against_the_planned_record(
        request: pytest.FixtureRequest, dns_server: LoopbackDnsServer, pair_name: str, algorithm: bytes) -> None:
    pair: DkimKeyPair = request.getfixturevalue(pair_name)
    plan = plan_records("example.com", "mx.litemx.example",
                        [DkimPublicKey(pair.selector, pair.public_key_b64, pair.algorithm)])
    for record in (r for r in plan if r.purpose == "dkim"):
        dns_server.set(record.host, [("TXT", record.value)])
    dnsfunc = dkimpy_dnsfunc(DnsResolver((dns_server.address,)))

    signature = dkim.sign(MESSAGE, pair.selector.encode(), b"example.com", dkimpy_private_key(pair.private_pem),
                          signature_algorithm=algorithm, include_headers=[b"from", b"to", b"subject"])

    assert dkim.verify(signature + MESSAGE, dnsfunc=dnsfunc)
    assert not dkim.verify(signature + MESSAGE.replace(b"Hello there.", b"Hello there!"), dnsfunc=dnsfunc)
    assert (f"{pair.selector}._domainkey.example.com", "TXT", "udp") in dns_server.queries


def test_a_signature_does_not_verify_once_another_key_is_published(
        rsa_pair: DkimKeyPair, dns_server: LoopbackDnsServer) -> None:
    other = generate_key_pair("rsa", rsa_pair.selector)
    dns_server.set(f"{rsa_pair.selector}._domainkey.example.com",
                   [("TXT", f"v=DKIM1; k=rsa; p={other.public_key_b64}")])
    signature = dkim.sign(MESSAGE, rsa_pair.selector.encode(), b"example.com", dkimpy_private_key(rsa_pair.private_pem))

    assert not dkim.verify(signature + MESSAGE, dnsfunc=dkimpy_dnsfunc(DnsResolver((dns_server.address,))))
