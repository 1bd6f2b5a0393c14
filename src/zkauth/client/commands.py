"""The client side of the ``zkauth`` CLI: ``enroll``, ``login``, ``call`` and ``rotate``.

``zkauth.cli`` owns the Typer app and calls :func:`register`. Every command turns the SDK's
exceptions into one red line on stderr and an exit code a script can branch on:
0 success, 1 refused (or rate limited), 2 bad usage or input, 3 server unreachable or unreadable.
Output meant for other programs (tokens, response bodies) goes to stdout, everything else to
stderr.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import httpx
import typer
from rich.console import Console
from rich.markup import escape

from zkauth.client._core import server_base
from zkauth.client._wire import b64encode
from zkauth.client.auth import ZkAuth
from zkauth.client.credentials import CredentialFile
from zkauth.client.errors import ServerError
from zkauth.client.sync import ZkAuthClient
from zkauth.crypto import Credential
from zkauth.errors import InputError, RateLimited, Refused, ZkAuthError
from zkauth.protocol import check_client_id

EXIT_REFUSED = 1
EXIT_INPUT = 2
EXIT_UNREACHABLE = 3
_TIMEOUT = 30.0

err = Console(stderr=True, highlight=False)

CredentialOption = Annotated[
    Path,
    typer.Option(
        "--credential",
        "-c",
        envvar="ZKAUTH_CREDENTIAL",
        dir_okay=False,
        help="Credential file written by `zkauth enroll` (or set ZKAUTH_CREDENTIAL).",
    ),
]
AudienceOption = Annotated[
    str | None,
    typer.Option("--audience", "-a", help="Audience to request the token for (server default)."),
]


def register(app: typer.Typer) -> None:
    """Add the client commands to ``app`` at top level."""
    for command in (enroll, login, call, rotate):
        app.command()(command)


def _transport() -> httpx.BaseTransport | None:
    """The transport of every connection the commands open; tests replace this function."""
    return None


def enroll(
    server: Annotated[str, typer.Option(help="The zkauth server, e.g. https://auth.example.")],
    client_id: Annotated[
        str, typer.Option("--client-id", help="Identifier to enroll: 1-128 of A-Z a-z 0-9 . _ -")
    ],
    out: Annotated[
        Path, typer.Option(dir_okay=False, help="Where to write the credential (must not exist).")
    ],
    passphrase: Annotated[
        bool,
        typer.Option(
            "--passphrase",
            help="Derive the secret from a passphrase typed at a hidden prompt (min. 12 characters)"
            " instead of generating a random one. For people; machines should use random secrets.",
        ),
    ] = False,
) -> None:
    """Enroll a new client and save its credential file.

    Generates a random secret (or derives one from --passphrase), sends the server only its
    commitment and a proof that you know it, and writes server, client id and secret to --out
    with mode 0600. The secret never leaves this machine: keep the file safe, it is the login.
    The file is written before the server is asked, so an enrolled secret is never lost.

    Example:

        zkauth enroll --server https://auth.example --client-id billing-worker --out billing.cred
    """
    with _errors(server):
        server_url = server_base(server)
        check_client_id(client_id)
        if out.exists():
            _fail(f"{out} already exists; choose another --out or move it away", EXIT_INPUT)
        if passphrase:
            phrase = typer.prompt("Passphrase", hide_input=True, confirmation_prompt=True, err=True)
            credential = Credential.from_passphrase(phrase, client_id)
        else:
            credential = Credential.generate()
        CredentialFile(server_url, client_id, credential).save(out)
        doubt = f"{out} holds the secret the server may have enrolled"
        with _keep_on_doubt(out, doubt), _client(server_url) as zk:
            enrollment = zk.enroll(client_id, credential)
        typer.echo(enrollment.reference_id)
        err.print(f"enrolled {escape(client_id)}; credential written to {escape(str(out))}")


def login(
    credential: CredentialOption,
    audience: AudienceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Log in and print an access token with its channel binding and expiry.

    The token is bound to the channel binding: send both on every call, as
    `Authorization: Bearer TOKEN` and `X-Channel-Binding: BINDING`.

    Examples:

        zkauth login -c billing.cred

        S=$(zkauth login -c billing.cred --json)
        curl -H "Authorization: Bearer $(jq -r .accessToken <<<"$S")" \\
             -H "X-Channel-Binding: $(jq -r .channelBinding <<<"$S")" \\
             https://auth.example/v1/resources/x
    """
    with _errors():
        stored = CredentialFile.load(credential)
        with _errors(stored.server), _client(stored.server) as zk:
            session = zk.login(stored.client_id, stored.credential, audience=audience)
    binding = b64encode(session.channel_binding)
    if as_json:
        document = {
            "clientId": session.client_id,
            "accessToken": session.access_token,
            "tokenType": "Bearer",
            "channelBinding": binding,
            "expiresAt": session.expires_at.isoformat(),
            "expiresIn": session.expires_in,
            "audience": session.audience,
        }
        typer.echo(json.dumps(document))
        return
    typer.echo(f"access token     {session.access_token}")
    typer.echo(f"channel binding  {binding}")
    typer.echo(f"expires          {session.expires_at.isoformat()} (in {session.expires_in:.0f} s)")


def call(
    url: Annotated[str, typer.Argument(help="Absolute URL, or a path on the zkauth server.")],
    credential: CredentialOption,
    method: Annotated[str, typer.Option("--method", "-X", help="HTTP method.")] = "GET",
    data: Annotated[
        str | None, typer.Option("--data", "-d", help="Request body, sent as application/json.")
    ] = None,
    audience: AudienceOption = None,
) -> None:
    """Log in, then call URL with the token; print the status (stderr) and the body (stdout).

    Exit code 0 for 1xx-3xx, 1 for 401/403, 2 for other 4xx, 3 for 5xx or no answer.

    Examples:

        zkauth call -c billing.cred /v1/resources/invoices

        zkauth call -c billing.cred -X POST -d '{"amount": 3}' https://api.example/v1/charges
    """
    with _errors():
        stored = CredentialFile.load(credential)
        target = stored.server + url if url.startswith("/") else url
        auth = ZkAuth(
            stored.server, stored.client_id, stored.credential, audience, transport=_transport()
        )
        headers = {"Content-Type": "application/json"} if data is not None else None
        with (
            _errors(stored.server),
            httpx.Client(auth=auth, transport=_transport(), timeout=_TIMEOUT) as http,
        ):
            response = http.request(method.upper(), target, content=data, headers=headers)
    status = response.status_code
    colour = "green" if status < 400 else "red"
    err.print(f"[{colour}]HTTP {status} {escape(response.reason_phrase)}[/]")
    typer.echo(response.text)
    if status >= 400:
        if status in (401, 403):
            raise typer.Exit(EXIT_REFUSED)
        raise typer.Exit(EXIT_INPUT if status < 500 else EXIT_UNREACHABLE)


def rotate(credential: CredentialOption) -> None:
    """Replace the secret in the credential file by a new random one, on the server and on disk.

    Crash-safe: with --credential FILE, the new secret is first written to FILE.new, then the
    server switches to it, and only then does FILE.new replace FILE. Whatever fails in between,
    one of the two files holds the secret the server accepts; if FILE.new is left over, run
    `zkauth login -c FILE.new`: if it works, `mv FILE.new FILE`, otherwise delete FILE.new.

    Example:

        zkauth rotate -c billing.cred
    """
    pending = credential.with_name(credential.name + ".new")
    with _errors():
        stored = CredentialFile.load(credential)
        if pending.exists():
            _fail(
                f"{pending} exists: an earlier rotation did not finish. Run "
                f"`zkauth login -c {pending}`; if it works, `mv {pending} {credential}`, "
                f"otherwise delete {pending}. Then rotate again.",
                EXIT_INPUT,
            )
        new = Credential.generate()
        CredentialFile(stored.server, stored.client_id, new).save(pending)
        doubt = f"the server may already use the new secret in {pending}"
        with _errors(stored.server), _keep_on_doubt(pending, doubt), _client(stored.server) as zk:
            session = zk.login(stored.client_id, stored.credential)
            rotated_at = zk.rotate(stored.client_id, stored.credential, new, session)
        try:
            os.replace(pending, credential)
        except OSError as exc:
            _fail(
                f"the server now expects the new secret, saved in {pending}, but replacing "
                f"{credential} failed ({exc.strerror}); run `mv {pending} {credential}`",
                EXIT_INPUT,
            )
    done = f"rotated {stored.client_id} at {rotated_at.isoformat()}; {credential} updated"
    err.print(escape(done))


# -- helpers -------------------------------------------------------------------------------------


@contextmanager
def _client(server_url: str) -> Iterator[ZkAuthClient]:
    with httpx.Client(transport=_transport(), timeout=_TIMEOUT) as http:
        yield ZkAuthClient(server_url, http=http)


@contextmanager
def _keep_on_doubt(path: Path, doubt: str) -> Iterator[None]:
    """Delete ``path`` when the server surely did not act on it; keep it (and say why) otherwise.

    A refusal, a rate limit, a 4xx answer or a failed connection means nothing changed. A
    timeout, a 5xx or an interrupt may come *after* the server committed, and deleting the file
    would then lose the only copy of a secret the server now expects.
    """
    try:
        yield
    except (Refused, RateLimited, InputError, httpx.ConnectError, httpx.ConnectTimeout):
        path.unlink(missing_ok=True)
        raise
    except ServerError as exc:
        if 400 <= exc.status < 500:
            path.unlink(missing_ok=True)
        else:
            err.print(f"[yellow]kept {escape(str(path))}: {escape(doubt)}[/]")
        raise
    except BaseException:
        err.print(f"[yellow]kept {escape(str(path))}: {escape(doubt)}[/]")
        raise


@contextmanager
def _errors(server: str | None = None) -> Iterator[None]:
    """Map exceptions to a message on stderr and an exit code (see the module docstring)."""
    try:
        yield
    except (Refused, RateLimited) as exc:
        _fail(str(exc), EXIT_REFUSED)
    except (InputError, FileExistsError) as exc:
        _fail(str(exc), EXIT_INPUT)
    except ServerError as exc:
        _fail(str(exc), EXIT_UNREACHABLE)
    except httpx.TransportError as exc:
        where = f"the server {server}" if server else "the server"
        _fail(f"cannot reach {where}: {exc or type(exc).__name__}", EXIT_UNREACHABLE)
    except ZkAuthError as exc:
        _fail(str(exc), EXIT_REFUSED)
    except OSError as exc:
        _fail(str(exc), EXIT_INPUT)


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)
