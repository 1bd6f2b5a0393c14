"""Credential files: mode 0600, atomic and exclusive writes, strict loading, no secret in output."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from zkauth.client import CredentialFile
from zkauth.crypto import Credential
from zkauth.errors import CredentialFormatError

SECRET = Credential.generate()
STORED = CredentialFile("https://auth.example", "svc-1", SECRET)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _write(path: Path, document: Any, mode: int = 0o600) -> Path:
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    path.chmod(mode)
    return path


def _flip(text: str, index: int) -> str:
    """``text`` with one base64url character at ``index`` changed to another."""
    index %= len(text)
    return text[:index] + ("B" if text[index] == "A" else "A") + text[index + 1 :]


def _document(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(STORED.to_json())
    for key, value in changes.items():
        if value is None:
            del document[key]
        else:
            document[key] = value
    return document


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    path = STORED.save(tmp_path / "cred.json")
    loaded = CredentialFile.load(path)
    assert loaded == STORED
    assert loaded.credential.commitment == SECRET.commitment


def test_file_format_is_the_documented_one(tmp_path: Path) -> None:
    document = json.loads(STORED.save(tmp_path / "cred.json").read_text())
    assert document == {
        "version": 1,
        "server": "https://auth.example",
        "clientId": "svc-1",
        "credential": SECRET.encode(),
    }


def test_saved_file_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        path = STORED.save(tmp_path / "cred.json")
    finally:
        os.umask(previous)
    assert _mode(path) == 0o600


def test_save_refuses_to_overwrite(tmp_path: Path) -> None:
    path = _write(tmp_path / "cred.json", "precious")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        STORED.save(path)
    assert path.read_text() == "precious"
    assert os.listdir(tmp_path) == ["cred.json"]


def test_save_overwrites_when_told(tmp_path: Path) -> None:
    path = _write(tmp_path / "cred.json", "old", mode=0o644)
    STORED.save(path, overwrite=True)
    assert CredentialFile.load(path) == STORED
    assert _mode(path) == 0o600


def test_save_leaves_nothing_behind_when_writing_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        STORED.save(tmp_path / "cred.json")
    assert os.listdir(tmp_path) == []


def test_save_is_a_rename_of_a_complete_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The target name only ever points at a fully written, synced file."""
    seen: list[str] = []
    real_replace = os.replace

    def spy_replace(src: str, dst: Any) -> None:
        seen.append(Path(src).read_text())
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy_replace)
    STORED.save(tmp_path / "cred.json", overwrite=True)
    assert seen == [STORED.to_json()]
    assert os.listdir(tmp_path) == ["cred.json"]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602])
def test_load_refuses_files_other_users_can_access(tmp_path: Path, mode: int) -> None:
    path = _write(tmp_path / "cred.json", STORED.to_json(), mode)
    with pytest.raises(CredentialFormatError, match=f"chmod 600 {path}") as caught:
        CredentialFile.load(path)
    assert SECRET.encode() not in str(caught.value)
    assert CredentialFile.load(path, check_permissions=False) == STORED


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{not json", "not valid JSON"),
        ("", "not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        (_document(version=2), "version 2"),
        (_document(version=True), "version of type bool"),
        (_document(version=None), "version missing"),
        (_document(server=None), "no 'server' field"),
        (_document(clientId=None), "no 'clientId' field"),
        (_document(credential=None), "no 'credential' field"),
        (_document(credential=42), "'credential' must be a string"),
        (_document(clientId="bad id!"), "clientId"),
        (_document(server="ftp://auth.example"), "http:// or https://"),
        (_document(credential="zks2_abc"), "must start with 'zks1_'"),
        (_document(credential=SECRET.encode()[:-3]), "wrong length"),
        (_document(credential=_flip(SECRET.encode(), -3)), "checksum"),
    ],
)
def test_load_explains_bad_files_without_echoing_secrets(
    tmp_path: Path, document: Any, message: str
) -> None:
    path = _write(tmp_path / "cred.json", document)
    with pytest.raises(CredentialFormatError, match=message) as caught:
        CredentialFile.load(path)
    assert str(path) in str(caught.value)
    assert SECRET.encode()[5:25] not in str(caught.value)


def test_bad_json_message_does_not_quote_the_content(tmp_path: Path) -> None:
    truncated = STORED.to_json()[:-4]
    path = _write(tmp_path / "cred.json", truncated)
    with pytest.raises(CredentialFormatError, match="line") as caught:
        CredentialFile.load(path)
    assert SECRET.encode()[5:25] not in str(caught.value)


def test_load_refuses_missing_files_directories_binary_and_huge_files(tmp_path: Path) -> None:
    with pytest.raises(CredentialFormatError, match="cannot open"):
        CredentialFile.load(tmp_path / "absent.json")
    with pytest.raises(CredentialFormatError, match="not a regular file"):
        CredentialFile.load(tmp_path)
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    binary.chmod(0o600)
    with pytest.raises(CredentialFormatError):
        CredentialFile.load(binary)
    huge = _write(tmp_path / "huge", " " * 70_000 + STORED.to_json())
    with pytest.raises(CredentialFormatError, match="too large"):
        CredentialFile.load(huge)


def test_repr_never_shows_the_secret() -> None:
    text = repr(STORED)
    assert "svc-1" in text
    assert "https://auth.example" in text
    assert SECRET.encode() not in text
    assert SECRET.encode()[5:] not in text


def test_unknown_fields_are_ignored_for_forward_compatibility(tmp_path: Path) -> None:
    path = _write(tmp_path / "cred.json", _document(comment="rotated by ops"))
    assert CredentialFile.load(path) == STORED
