"""DKIM key pairs, selector names, and encryption of private keys at rest.

- Keys: RSA-2048 (RFC 8301 §3.2 requires at least 1024 bits; 2048 is what receivers expect)
  and Ed25519 (RFC 8463). Private keys are PKCS#8 PEM; `dkimpy_private_key` converts to what
  dkimpy's signer takes.
- Selectors: `lmx<yyyymm><r|e><n>`, e.g. `lmx202511r1` — short, one valid DNS label
  (RFC 1035 §2.3.1), sortable by month, the algorithm visible (RSA and Ed25519 selectors are
  published side by side for dual signing, RFC 8463 §3), and `n` counts rotations in a month.
- At rest: `seal`/`unseal` use AES-256-GCM with a random 96-bit nonce (NIST SP 800-38D §8.2.2)
  behind a version prefix; an optional context (e.g. domain and selector) is bound as
  associated data so a sealed key cannot be swapped onto another row.
- The sealing key comes from `settings.secret_key` or from `<data_dir>/secret.key` (0600),
  created on first use. This is the one function here that touches the file system.

Private keys never appear in reprs, logs or exceptions.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

Algorithm = Literal["rsa", "ed25519"]

RSA_BITS = 2048
SECRET_KEY_FILE = "secret.key"
KEY_BYTES = 32
_SEAL_VERSION = b"lmx1"  # bump when the format changes; unseal dispatches on it
_NONCE_BYTES = 12
_HKDF_SALT = b"litemx secret_key v1"
_HKDF_INFO = b"litemx dkim private key sealing"
_SELECTOR = re.compile(r"^lmx(\d{6})([re])(\d+)$")


class SealError(Exception):
    """A sealed blob could not be opened: wrong key, tampered data or unknown format."""


@dataclass(frozen=True)
class DkimKeyPair:
    """A generated key. `private_pem` is excluded from repr (and so from logs and tracebacks)."""

    selector: str
    algorithm: Algorithm
    public_key_b64: str
    private_pem: bytes = field(repr=False)


def generate_key_pair(algorithm: Algorithm, selector: str) -> DkimKeyPair:
    """A fresh key pair of `algorithm` for `selector`.

    Raises: ValueError for an unknown algorithm.
    """
    if algorithm == "rsa":
        return _pair(selector, "rsa", rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS))
    if algorithm == "ed25519":
        return _pair(selector, "ed25519", ed25519.Ed25519PrivateKey.generate())
    raise ValueError(f"unknown DKIM key algorithm {algorithm!r}")


def _pair(selector: str, algorithm: Algorithm,
          key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> DkimKeyPair:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return DkimKeyPair(selector, algorithm, public_key_b64(key.public_key()), pem)


def public_key_b64(key: rsa.RSAPublicKey | ed25519.Ed25519PublicKey) -> str:
    """The DNS `p=` value.

    RSA: base64 of the DER SubjectPublicKeyInfo (RFC 6376 §3.6.1). Ed25519: base64 of the raw
    32-byte public key, not wrapped in SubjectPublicKeyInfo (RFC 8463 §4.2).
    """
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        raw = key.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(raw).decode("ascii")


def public_key_b64_from_pem(private_pem: bytes) -> str:
    """The `p=` value for a stored private key.

    Raises: ValueError when the PEM is not an RSA or Ed25519 private key.
    """
    key = serialization.load_pem_private_key(private_pem, password=None)
    if not isinstance(key, (rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise ValueError("not an RSA or Ed25519 private key")
    return public_key_b64(key.public_key())


def dkimpy_private_key(private_pem: bytes) -> bytes:
    """The private key in the form `dkim.sign(privkey=...)` takes: the PEM for RSA, base64 of
    the 32-byte seed for Ed25519 (dkimpy hands it to PyNaCl's SigningKey).

    Cached by the key material itself: loading an RSA-2048 PEM runs cryptography's key
    validation, ~0.1 s of CPU, which every send paid (bench/PROFILE.md finding 6). Keyed by
    content, an entry can never be a stale key after a rotation, on this node or another; a
    rotated-away key simply ages out of the bounded cache.
    Raises: ValueError when the PEM is not an RSA or Ed25519 private key (not cached).
    """
    return _dkimpy_private_key(bytes(private_pem))


@functools.lru_cache(maxsize=128)
def _dkimpy_private_key(private_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(private_pem, password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
        return base64.b64encode(seed)
    if isinstance(key, rsa.RSAPrivateKey):
        return private_pem
    raise ValueError("not an RSA or Ed25519 private key")


# -- selectors ----------------------------------------------------------------------------------

def new_selector(algorithm: Algorithm, now: datetime, existing: Iterable[str] = ()) -> str:
    """The next `lmx<yyyymm><r|e><n>` selector not in `existing` (see module docstring)."""
    prefix = f"lmx{now:%Y%m}{algorithm[0]}"
    used = {s.lower() for s in existing}
    n = 1
    while f"{prefix}{n}" in used:
        n += 1
    return f"{prefix}{n}"


def is_litemx_selector(selector: str) -> bool:
    """Whether a selector follows LiteMX's naming scheme."""
    return bool(_SELECTOR.match(selector))


# -- sealing ------------------------------------------------------------------------------------

def seal(private_pem: bytes, key: bytes, context: bytes = b"") -> bytes:
    """Encrypt with AES-256-GCM: version prefix, random nonce, ciphertext and tag.

    `context` is authenticated but not stored: pass the same value to `unseal`.
    Raises: ValueError when the key is not 32 bytes.
    """
    _check_key(key)
    nonce = secrets.token_bytes(_NONCE_BYTES)
    ciphertext = AESGCM(key).encrypt(nonce, private_pem, _SEAL_VERSION + context)
    return _SEAL_VERSION + nonce + ciphertext


def unseal(blob: bytes, key: bytes, context: bytes = b"") -> bytes:
    """Decrypt a `seal` blob.

    Raises: SealError on an unknown version, a wrong key or context, or tampered data;
        ValueError when the key is not 32 bytes.
    """
    _check_key(key)
    if not blob.startswith(_SEAL_VERSION):
        raise SealError("unknown sealed-key format")
    body = blob[len(_SEAL_VERSION):]
    nonce, ciphertext = body[:_NONCE_BYTES], body[_NONCE_BYTES:]
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, _SEAL_VERSION + context)
    except InvalidTag:
        raise SealError("sealed key does not open with this secret key (wrong key or tampered)") from None


def _check_key(key: bytes) -> None:
    if len(key) != KEY_BYTES:
        raise ValueError("the sealing key must be 32 bytes")


# -- the sealing key ----------------------------------------------------------------------------

def derive_secret_key(secret_key: str) -> bytes:
    """32 key bytes from the `secret_key` setting.

    64 hex digits or base64 of 32 bytes are used as they are; anything else is a passphrase
    stretched with HKDF-SHA256 (RFC 5869). HKDF adds no brute-force cost, so a passphrase must
    itself be long and random; prefer `openssl rand -base64 32`.
    Raises: ValueError when the setting is empty.
    """
    text = secret_key.strip()
    if not text:
        raise ValueError("secret_key is empty")
    return _decoded_key(text) or HKDF(hashes.SHA256(), KEY_BYTES, _HKDF_SALT, _HKDF_INFO).derive(
        text.encode("utf-8"))


def _decoded_key(text: str) -> bytes | None:
    """The 32 bytes a hex or base64 (standard or URL-safe alphabet) string spells, else None."""
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)
    if re.fullmatch(r"[A-Za-z0-9+/_-]{43}=?", text):
        # urlsafe_b64decode maps "-_" to "+/" and accepts "+/" as they are: both alphabets work.
        return base64.urlsafe_b64decode(text.rstrip("=") + "=")
    return None


def load_or_create_secret_key(data_dir: Path, secret_key: str = "") -> bytes:
    """The sealing key: from `secret_key` when set, else `<data_dir>/secret.key`, created with
    mode 0600 on first use (base64 text, so it can be moved into LITEMX_SECRET_KEY).

    Raises: ValueError when an existing key file does not hold 32 bytes of base64;
        OSError when the file cannot be read or created.
    """
    if secret_key.strip():
        return derive_secret_key(secret_key)
    path = data_dir / SECRET_KEY_FILE
    if not path.exists():
        _create_key_file(path)
    return _read_key_file(path)


def _read_key_file(path: Path) -> bytes:
    try:
        raw = base64.b64decode(path.read_text("ascii").strip(), validate=True)
    except (binascii.Error, UnicodeDecodeError):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise ValueError(f"{path} does not hold a 32-byte base64 key")
    return raw


def _create_key_file(path: Path) -> None:
    """Write a new key to a private temporary file, then link it into place: two processes
    starting together cannot both win, and nobody ever reads a half-written key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            os.fchmod(f.fileno(), 0o600)  # the umask may have narrowed, never widened, but be exact
            f.write(base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii") + "\n")
            f.flush()
            os.fsync(f.fileno())
        _link_new(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _link_new(tmp: Path, path: Path) -> None:
    with contextlib.suppress(FileExistsError):  # another process created it first: theirs is the key
        os.link(tmp, path)
