"""Credential files: where a client keeps its server, identifier and secret (``chmod 600``).

Format (version 1)::

    {"version": 1, "server": "https://auth.example", "clientId": "billing-worker",
     "credential": "zks1_…"}

Written atomically (a temporary file in the same directory, fsync, then rename), so a crash or
a full disk never leaves a half-written secret; created with mode 0600 from the first byte, so
there is no moment when another user could open it. Loading refuses a file that other users can
read or write (the secret would be theirs too) and explains the fix. No error message and no
``repr`` ever contains the secret.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from zkauth.crypto import Credential
from zkauth.errors import CredentialFormatError, ProtocolError
from zkauth.protocol import check_client_id

__all__ = ["FILE_VERSION", "CredentialFile"]

FILE_VERSION: Final = 1
#: Any permission bit for group or others: reading steals the secret, writing swaps it.
_FOREIGN_BITS: Final = stat.S_IRWXG | stat.S_IRWXO
_MAX_SIZE: Final = 64 * 1024
_POSIX: Final = os.name == "posix"


@dataclass(frozen=True, slots=True)
class CredentialFile:
    """The parsed contents of a credential file. Its ``repr`` shows everything but the secret."""

    server: str
    client_id: str
    credential: Credential = field(repr=False)

    def __post_init__(self) -> None:
        try:
            check_client_id(self.client_id)
        except ProtocolError as exc:
            raise CredentialFormatError(f"clientId: {exc}") from None
        if not self.server.startswith(("http://", "https://")):
            raise CredentialFormatError("server must be an http:// or https:// URL")

    def to_json(self) -> str:
        """The file's text. It contains the secret: handle it like the file itself."""
        document = {
            "version": FILE_VERSION,
            "server": self.server,
            "clientId": self.client_id,
            "credential": self.credential.encode(),
        }
        return json.dumps(document, indent=2) + "\n"

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write atomically with mode 0600; refuse to replace an existing file unless told to.

        Without ``overwrite`` the final step is a hard link, which fails if the name exists even
        when another process creates it concurrently; a plain existence check would race.
        """
        target = Path(path)
        if not overwrite and target.exists():
            raise _exists(target)
        # mkstemp creates the file with mode 0600 whatever the umask: never readable by others.
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as tmp:
                tmp.write(self.to_json())
                tmp.flush()
                os.fsync(tmp.fileno())
            if overwrite:
                os.replace(tmp_name, target)
            else:
                _link_exclusive(tmp_name, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
        _fsync_directory(target.parent)
        return target

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, check_permissions: bool = True
    ) -> CredentialFile:
        """Read and validate a credential file; every problem is a :class:`CredentialFormatError`.

        Permissions are checked on the opened descriptor, not the name, so the file cannot be
        swapped between the check and the read.
        """
        name = os.fspath(path)
        try:
            # O_NONBLOCK: a FIFO planted under the name must not hang the caller (no effect on
            # regular files).
            fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise CredentialFormatError(f"cannot open credential file {name}: {reason}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise CredentialFormatError(f"{name} is not a regular file")
            if check_permissions and _POSIX and info.st_mode & _FOREIGN_BITS:
                mode = stat.filemode(info.st_mode)
                raise CredentialFormatError(
                    f"{name} is accessible to other users ({mode}); anyone who can read it can "
                    f"log in as this client. Run: chmod 600 {name}  (and consider rotating)"
                )
            handle = os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise
        with handle:
            raw = handle.read(_MAX_SIZE + 1)
        if len(raw) > _MAX_SIZE:
            raise CredentialFormatError(f"{name} is too large to be a credential file")
        return cls.parse(raw, source=name)

    @classmethod
    def parse(cls, raw: bytes | str, *, source: str = "credential file") -> CredentialFile:
        """Parse a file's contents; ``source`` names it in error messages."""
        try:
            document = json.loads(raw)
        except UnicodeDecodeError:
            raise CredentialFormatError(f"{source} is not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            # Position only: exc.doc (and str(exc) on some versions) would quote the content.
            raise CredentialFormatError(
                f"{source} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
            ) from None
        if not isinstance(document, dict):
            raise CredentialFormatError(f"{source} must hold a JSON object")
        version = document.get("version")
        if version != FILE_VERSION or isinstance(version, bool):
            raise CredentialFormatError(
                f"{source} has version {_shape(version)}; this zkauth reads version {FILE_VERSION}"
            )
        server, client_id, secret = (
            _string(document, key, source) for key in ("server", "clientId", "credential")
        )
        try:
            credential = Credential.decode(secret)
        except CredentialFormatError as exc:
            raise CredentialFormatError(f"{source}: {exc}") from None
        try:
            return cls(server, client_id, credential)
        except CredentialFormatError as exc:
            raise CredentialFormatError(f"{source}: {exc}") from None


def _string(document: dict[str, Any], key: str, source: str) -> str:
    if key not in document:
        raise CredentialFormatError(f"{source} has no {key!r} field")
    value = document[key]
    if not isinstance(value, str):
        raise CredentialFormatError(f"{source}: {key!r} must be a string, not {_shape(value)}")
    return value


def _shape(value: object) -> str:
    """Describe a value without showing it (it might be a misplaced secret)."""
    if value is None:
        return "missing"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"of type {type(value).__name__}"


def _link_exclusive(source: str, target: Path) -> None:
    try:
        os.link(source, target)
    except FileExistsError:
        raise _exists(target) from None
    except OSError:
        # Filesystems without hard links: fall back to a check-then-rename (best effort).
        if target.exists():
            raise _exists(target) from None
        os.replace(source, target)


def _exists(target: Path) -> FileExistsError:
    return FileExistsError(f"{target} already exists; refusing to overwrite a credential")


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; not possible (nor needed) on every platform."""
    if not _POSIX:
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
