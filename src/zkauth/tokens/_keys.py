"""Ed25519 signing keys: generation, the key file, and public JWKs.

The key lives in a file outside the database (SECURITY.md "What is stored, and what is not"),
so a database dump cannot mint tokens. The file is created once, atomically and private to its
owner; a file that others can read is refused rather than "fixed", because the key may already
have leaked.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from zkauth.errors import ConfigurationError
from zkauth.tokens._jose import ALGORITHM, b64url_decode, jwk_thumbprint, okp_public_jwk

_POSIX: Final = os.name == "posix"
_MAX_KEY_FILE_BYTES: Final = 64 * 1024
_OPEN_FLAGS: Final = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key and its ``kid`` (RFC 7638 thumbprint of the public JWK).

    The ``kid`` is derived, never chosen, so it cannot disagree with the key. Equality and
    hashing go by ``kid``; the private key is kept out of ``repr``.
    """

    private_key: Ed25519PrivateKey = field(repr=False, compare=False)
    kid: str = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.private_key, Ed25519PrivateKey):
            raise ConfigurationError("zkauth signs access tokens with Ed25519 keys only")
        object.__setattr__(self, "kid", jwk_thumbprint(self.private_key.public_key()))

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, str]:
        """The public JWK as published at ``/.well-known/jwks.json``."""
        return {**okp_public_jwk(self.public_key), "kid": self.kid, "use": "sig", "alg": ALGORITHM}


def jwks(keys: Sequence[SigningKey]) -> dict[str, list[dict[str, str]]]:
    """A JWK Set of the public halves, in order (the signing key first), duplicates dropped."""
    unique = {key.kid: key for key in keys}
    return {"keys": [key.public_jwk() for key in unique.values()]}


def public_key_from_jwk(jwk: object) -> tuple[str, Ed25519PublicKey]:
    """Parse one entry of a JWKS for verification; anything but an Ed25519 signing key is refused.

    A ``d`` member means private material was copied where only public keys belong: refuse
    loudly instead of quietly carrying a signing secret around.
    """
    if not isinstance(jwk, Mapping):
        raise ConfigurationError("JWKS entries must be JSON objects")
    if "d" in jwk:
        raise ConfigurationError("JWKS entry holds private key material ('d'); use public keys")
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise ConfigurationError("JWKS entries must be OKP Ed25519 keys")
    if jwk.get("alg", ALGORITHM) != ALGORITHM or jwk.get("use", "sig") != "sig":
        raise ConfigurationError(f"JWKS entries must be signature keys for {ALGORITHM}")
    x = jwk.get("x")
    try:
        raw = b64url_decode(x) if isinstance(x, str) else b""
        public_key = Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise ConfigurationError("JWKS entry has an invalid Ed25519 'x'") from None
    kid = jwk.get("kid", jwk_thumbprint(public_key))
    if not isinstance(kid, str) or not kid:
        raise ConfigurationError("JWKS entry has an invalid 'kid'")
    return kid, public_key


def load_signing_key(path: Path) -> SigningKey:
    """Load an unencrypted PKCS#8 PEM Ed25519 key; never creates anything.

    The mode is read from the opened descriptor, not the path, so the file checked is the
    file read. Symlinks are followed: mounted secrets (Kubernetes, systemd credentials) are
    links to the real file, whose mode is what counts.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ConfigurationError(f"signing key file {path} does not exist") from None
    except OSError as exc:
        raise ConfigurationError(f"signing key file {path} is unreadable: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigurationError(f"signing key file {path} is not a regular file")
        if _POSIX and info.st_mode & 0o077:
            raise ConfigurationError(
                f"signing key file {path} has mode {stat.S_IMODE(info.st_mode):04o}: group or "
                f"others can access it; the key may have leaked. Check, then `chmod 600 {path}`"
            )
        data = _read_at_most(fd, _MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(f"signing key file {path} is unreadable: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise ConfigurationError(f"signing key file {path} is too large to be a key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigurationError(
            f"signing key file {path} is not an unencrypted PEM (PKCS#8) private key"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(
            f"signing key file {path} holds {_describe(key)} key; zkauth signs with Ed25519 only"
        )
    return SigningKey(key)


def load_or_create_signing_key(path: Path) -> SigningKey:
    """Load the key at ``path``, or create it there on first start.

    An existing file (even a broken one) is never replaced: overwriting a key would silently
    invalidate every token in circulation. Publication is no-clobber, so when several workers
    start at once exactly one key wins and every worker ends up loading it.
    """
    if os.path.lexists(path):
        return load_signing_key(path)
    key = SigningKey.generate()
    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        created = _write_new_file(path, pem)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create signing key file {path}: {exc.strerror or exc}"
        ) from exc
    return key if created else load_signing_key(path)


def _write_new_file(path: Path, content: bytes) -> bool:
    """Write ``content`` to a private temp file, fsync, then publish it as ``path``.

    Returns False when another process published ``path`` first. ``os.link`` fails instead of
    overwriting; on file systems without hard links it falls back to ``os.replace``.
    """
    directory = path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            return False
        except OSError:
            os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    _fsync_directory(directory)
    return True


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0 and (chunk := os.read(fd, remaining)):
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _fsync_directory(directory: Path) -> None:
    """Make the new directory entry durable, so a crash cannot lose a key already in use."""
    if not _POSIX:
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        with contextlib.suppress(OSError):  # some file systems refuse fsync on directories
            os.fsync(fd)
    finally:
        os.close(fd)


def _describe(key: object) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return f"an RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"an EC {key.curve.name}"
    return f"a {type(key).__name__}"
