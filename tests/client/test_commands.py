"""The client CLI commands against the fake server: output, files, exit codes, crash safety."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner, Result

from tests.client.conftest import CLIENT_ID
from tests.client.fakes import API, SERVER, FakeServer
from zkauth.client import CredentialFile, commands
from zkauth.client._wire import b64encode
from zkauth.crypto import Credential

Handler = Callable[[httpx.Request], httpx.Response]


def _app() -> typer.Typer:
    app = typer.Typer()
    commands.register(app)
    return app


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, server: FakeServer) -> Callable[..., Result]:
    """Run ``zkauth …`` with every connection going to ``server`` (or to a handler set later)."""
    handler: list[Handler] = [server.handle]
    monkeypatch.setattr(commands, "_transport", lambda: httpx.MockTransport(handler[0]))

    def run(*args: str, input: str | None = None, via: Handler | None = None) -> Result:
        if via is not None:
            handler[0] = via
        return CliRunner().invoke(_app(), list(args), input=input)

    return run


def _flat(text: str) -> str:
    """Rich wraps long lines at the terminal width; compare text with whitespace collapsed."""
    return " ".join(text.split())


@pytest.fixture
def cred_file(tmp_path: Path, enrolled: FakeServer, credential: Credential) -> Path:
    return CredentialFile(SERVER, CLIENT_ID, credential).save(tmp_path / "svc.cred")


def _failing(server: FakeServer, path: str, exc: type[httpx.TransportError]) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith(path):
            raise exc("simulated", request=request)
        return server.handle(request)

    return handle


def test_register_adds_four_commands_whose_help_teaches_by_example(
    cli: Callable[..., Result],
) -> None:
    names = {c.callback.__name__ for c in _app().registered_commands if c.callback}
    assert names == {"enroll", "login", "call", "rotate"}
    for name in ("enroll", "login", "call", "rotate"):
        result = cli(name, "--help")
        assert result.exit_code == 0, result.output
        assert "Example" in result.output
    assert "FILE.new" in _flat(cli("rotate", "--help").output)


def test_enroll_writes_a_private_credential_file_and_prints_the_reference(
    cli: Callable[..., Result], server: FakeServer, tmp_path: Path
) -> None:
    out = tmp_path / "new.cred"
    result = cli("enroll", "--server", SERVER, "--client-id", "svc-9", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "ref-svc-9"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    stored = CredentialFile.load(out)
    assert (stored.server, stored.client_id) == (SERVER, "svc-9")
    assert server.commitments["svc-9"] == stored.credential.commitment
    assert stored.credential.encode() not in result.output


def test_enroll_with_a_passphrase_derives_the_credential(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    phrase = "correct horse battery staple"
    out = tmp_path / "human.cred"
    result = cli(
        "enroll", "--server", SERVER, "--client-id", "ada", "--out", str(out), "--passphrase",
        input=f"{phrase}\n{phrase}\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert CredentialFile.load(out).credential == Credential.from_passphrase(phrase, "ada")
    assert phrase not in result.output


def test_enroll_refuses_an_existing_file_before_contacting_the_server(
    cli: Callable[..., Result], server: FakeServer, tmp_path: Path
) -> None:
    out = tmp_path / "taken.cred"
    out.write_text("keep me")
    result = cli("enroll", "--server", SERVER, "--client-id", "svc-9", "--out", str(out))
    assert result.exit_code == 2
    assert "already exists" in result.stderr
    assert out.read_text() == "keep me"
    assert server.seen == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--client-id", "bad id"], "client identifier"),
        (["--server", "ftp://x"], "http"),
    ],
)
def test_enroll_rejects_bad_input_with_exit_2(
    cli: Callable[..., Result], tmp_path: Path, args: list[str], message: str
) -> None:
    defaults = {"--server": SERVER, "--client-id": "svc-9"}
    defaults.update(dict(zip(args[::2], args[1::2], strict=True)))
    flat = [item for pair in defaults.items() for item in pair]
    result = cli("enroll", *flat, "--out", str(tmp_path / "x.cred"))
    assert result.exit_code == 2
    assert message in result.stderr
    assert not (tmp_path / "x.cred").exists()


def test_a_refused_enrollment_exits_1_and_removes_the_file(
    cli: Callable[..., Result], enrolled: FakeServer, tmp_path: Path
) -> None:
    out = tmp_path / "dup.cred"
    result = cli("enroll", "--server", SERVER, "--client-id", CLIENT_ID, "--out", str(out))
    assert result.exit_code == 1
    assert "refused the enrollment" in _flat(result.stderr)
    assert not out.exists()


def test_an_unreachable_server_exits_3_and_the_unsent_secret_is_removed(
    cli: Callable[..., Result], server: FakeServer, tmp_path: Path
) -> None:
    out = tmp_path / "x.cred"
    result = cli(
        "enroll", "--server", SERVER, "--client-id", "svc-9", "--out", str(out),
        via=_failing(server, "/v1/clients", httpx.ConnectError),
    )  # fmt: skip
    assert result.exit_code == 3
    assert "cannot reach" in _flat(result.stderr)
    assert not out.exists()


def test_a_timeout_keeps_the_secret_the_server_may_have_enrolled(
    cli: Callable[..., Result], server: FakeServer, tmp_path: Path
) -> None:
    out = tmp_path / "x.cred"
    result = cli(
        "enroll", "--server", SERVER, "--client-id", "svc-9", "--out", str(out),
        via=_failing(server, "/v1/clients", httpx.ReadTimeout),
    )  # fmt: skip
    assert result.exit_code == 3
    assert "kept" in _flat(result.stderr)
    assert CredentialFile.load(out).client_id == "svc-9"


def test_login_prints_token_binding_and_expiry(
    cli: Callable[..., Result], cred_file: Path, enrolled: FakeServer
) -> None:
    result = cli("login", "--credential", str(cred_file))
    assert result.exit_code == 0, result.output
    token = next(iter(enrolled.tokens))
    assert f"access token     {token}" in result.stdout
    assert "channel binding" in result.stdout and "expires" in result.stdout


def test_login_json_is_machine_readable(
    cli: Callable[..., Result], cred_file: Path, enrolled: FakeServer
) -> None:
    result = cli("login", "-c", str(cred_file), "--json", "--audience", "billing")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    token = enrolled.tokens[document["accessToken"]]
    assert document["channelBinding"] == b64encode(token.channel_binding)
    assert (document["audience"], document["clientId"]) == ("billing", CLIENT_ID)
    assert document["expiresIn"] == 900


def test_login_refuses_a_readable_credential_file(
    cli: Callable[..., Result], cred_file: Path, enrolled: FakeServer
) -> None:
    cred_file.chmod(0o644)
    result = cli("login", "-c", str(cred_file))
    assert result.exit_code == 2
    assert f"chmod 600 {cred_file}" in _flat(result.stderr)
    assert enrolled.seen == []


def test_login_with_a_wrong_secret_exits_1(
    cli: Callable[..., Result], tmp_path: Path, enrolled: FakeServer
) -> None:
    path = CredentialFile(SERVER, CLIENT_ID, Credential.generate()).save(tmp_path / "wrong")
    result = cli("login", "-c", str(path))
    assert result.exit_code == 1
    assert "the server does not say which" in _flat(result.stderr)


def test_call_a_server_path_prints_status_and_body(
    cli: Callable[..., Result], cred_file: Path
) -> None:
    result = cli("call", "-c", str(cred_file), "/v1/resources/reports")
    assert result.exit_code == 0, result.output
    assert "HTTP 200" in result.stderr
    assert json.loads(result.stdout)["resourceId"] == "reports"


def test_call_another_api_with_a_body(
    cli: Callable[..., Result], cred_file: Path, enrolled: FakeServer
) -> None:
    result = cli("call", "-c", str(cred_file), "-X", "post", "-d", '{"n": 1}', f"{API}/charges")
    assert result.exit_code == 0, result.output
    (request,) = enrolled.api_calls()
    assert (request.method, request.content) == ("POST", b'{"n": 1}')
    assert request.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(("refusals", "path", "code"), [(5, "/x", 1), (0, "/nowhere", 2)])
def test_call_exit_codes_follow_the_status(
    cli: Callable[..., Result],
    cred_file: Path,
    enrolled: FakeServer,
    refusals: int,
    path: str,
    code: int,
) -> None:
    enrolled.api_refusals = refusals
    target = f"{API}{path}" if refusals else path  # a 404 from the zkauth server itself
    assert cli("call", "-c", str(cred_file), target).exit_code == code


def test_rotate_switches_server_and_file_to_a_new_secret(
    cli: Callable[..., Result], cred_file: Path, enrolled: FakeServer, credential: Credential
) -> None:
    result = cli("rotate", "-c", str(cred_file))
    assert result.exit_code == 0, result.output
    new = CredentialFile.load(cred_file).credential
    assert new != credential
    assert enrolled.commitments[CLIENT_ID] == new.commitment
    assert not cred_file.with_name("svc.cred.new").exists()
    assert stat.S_IMODE(cred_file.stat().st_mode) == 0o600


def test_rotate_refuses_to_run_over_an_unfinished_rotation(
    cli: Callable[..., Result], cred_file: Path, enrolled: FakeServer
) -> None:
    pending = cred_file.with_name("svc.cred.new")
    pending.write_text("from last time")
    result = cli("rotate", "-c", str(cred_file))
    assert result.exit_code == 2
    assert "did not finish" in _flat(result.stderr)
    assert pending.read_text() == "from last time"
    assert enrolled.seen == []


def test_a_refused_rotation_leaves_the_working_file_alone(
    cli: Callable[..., Result], tmp_path: Path, enrolled: FakeServer
) -> None:
    path = CredentialFile(SERVER, CLIENT_ID, Credential.generate()).save(tmp_path / "svc.cred")
    before = path.read_text()
    result = cli("rotate", "-c", str(path))
    assert result.exit_code == 1
    assert path.read_text() == before
    assert not path.with_name("svc.cred.new").exists()


def test_a_rotation_cut_off_mid_way_keeps_both_secrets(
    cli: Callable[..., Result], cred_file: Path, enrolled: FakeServer, credential: Credential
) -> None:
    result = cli(
        "rotate", "-c", str(cred_file), via=_failing(enrolled, "/v1/clients/", httpx.ReadTimeout)
    )
    assert result.exit_code == 3
    assert CredentialFile.load(cred_file).credential == credential
    pending = CredentialFile.load(cred_file.with_name("svc.cred.new"))
    assert pending.credential != credential
