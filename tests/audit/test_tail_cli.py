"""``zkauth audit tail``: the newest entries as a table or JSON lines, ``--follow``, hostile
strings shown inertly, and no secret of a real login flow anywhere in what it prints."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest

from tests.audit.conftest import read, record, zkauth
from tests.server.conftest import ADMIN_TOKEN, Api, app_client, b64, channel
from zkauth.crypto import Credential
from zkauth.service.audit import Auditor, RequestContext
from zkauth.service.clock import SystemClock
from zkauth.service.models import Outcome
from zkauth.storage import audit_commands, open_stores

WIDE = {"COLUMNS": "200"}


def json_lines(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines()]


def test_tail_prints_the_newest_entries_as_a_table(url: str) -> None:
    asyncio.run(record(url, 30))

    result = zkauth("audit", "tail", "-n", "5", "--database-url", url, env=WIDE)

    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[1]
    for column in ("seq", "time (UTC)", "event", "outcome", "client", "reason", "detail"):
        assert column in header
    rows = [line for line in result.output.splitlines() if "verification" in line]
    assert [row.split()[1] for row in rows] == ["26", "27", "28", "29", "30"]
    assert "agent-1" in rows[0]
    assert ["proof:invalid" in row for row in rows] == [True, False, False, True, False]
    assert "protocol_version=1.0" in rows[0]


def test_tail_json_has_every_field(url: str) -> None:
    asyncio.run(record(url, 10))
    entries = asyncio.run(read(url))

    result = zkauth("audit", "tail", "-n", "3", "--json", "--database-url", url)

    assert result.exit_code == 0, result.output
    lines = json_lines(result.stdout)
    assert [line["seq"] for line in lines] == [8, 9, 10]
    assert lines[0] == {
        "seq": 8,
        "at": entries[7].event.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "event": "verification",
        "outcome": "failure",
        "client_id": "agent-3",
        "reason": "proof:invalid",
        "remote_addr": "198.51.100.7",
        "detail": {"protocol_version": "1.0"},
        "hash": entries[7].hash.hex(),
    }
    assert (lines[-1]["outcome"], lines[-1]["reason"]) == ("success", None)


def test_tail_of_an_empty_trail_prints_nothing(url: str) -> None:
    result = zkauth("audit", "tail", "--database-url", url)
    assert (result.exit_code, result.stdout) == (0, "")


def test_tail_shows_hostile_strings_as_inert_text(url: str) -> None:
    async def hostile() -> None:
        async with await open_stores(url) as stores:
            auditor = Auditor(stores.transaction, SystemClock())
            await auditor.record(
                "challenge",
                Outcome.FAILURE,
                RequestContext(),
                client_id="[bold red]root[/]\x1b[2J",
                reason="unknown_client",
            )

    asyncio.run(hostile())

    result = zkauth("audit", "tail", "--database-url", url, env=WIDE)

    assert result.exit_code == 0, result.output
    assert "[bold red]root[/]\\x1b[2J" in result.output
    assert "\x1b" not in result.output


def test_tail_follow_prints_new_entries_until_ctrl_c(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.run(record(url, 4))
    polls: list[float] = []

    async def poll(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 1:
            await record(url, 2)  # the server writes meanwhile
        if len(polls) == 3:
            raise KeyboardInterrupt  # the operator's Ctrl-C

    monkeypatch.setattr(audit_commands, "_sleep", poll)

    result = zkauth("audit", "tail", "-n", "2", "--follow", "--json", "--database-url", url)

    assert result.exit_code == 0, result.output
    assert [line["seq"] for line in json_lines(result.stdout)] == [3, 4, 5, 6]
    assert polls == [1.0, 1.0, 1.0]


def test_tail_follow_as_a_table_prints_one_header(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.run(record(url, 2))
    polls: list[float] = []

    async def poll(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) > 1:
            raise KeyboardInterrupt
        await record(url, 1)

    monkeypatch.setattr(audit_commands, "_sleep", poll)

    result = zkauth("audit", "tail", "--follow", "--database-url", url, env=WIDE)

    assert result.exit_code == 0, result.output
    assert result.output.count("outcome") == 1
    assert result.output.count("verification") == 3


async def login_flow(tmp_path: Path) -> list[str]:
    """Enroll, log in, fail a login, revoke, over HTTP; return every secret that was sent
    (credentials, proofs, the token, the channel binding it is bound to, the admin credential)."""
    async with app_client(tmp_path, "sqlite") as (http, container, clock):
        api = Api(http, container, clock)
        cred = await api.enroll("billing-agent")
        cb = channel()
        ch = await api.issued("billing-agent", cb)
        proof = api.login_proof(cred, "billing-agent", ch, cb)
        response = await api.verify("billing-agent", ch, proof, cb)
        assert response.status_code == 200, response.text
        token = response.json()["accessToken"]
        wrong = Credential.generate()
        ch = await api.issued("billing-agent", cb)
        bad = api.login_proof(wrong, "billing-agent", ch, cb)
        assert (await api.verify("billing-agent", ch, bad, cb)).status_code == 401
        revoked = await http.delete(
            "/v1/clients/billing-agent", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert revoked.status_code == 204
    scalars = [cred.s.encode(), cred.r.encode(), wrong.s.encode(), wrong.r.encode()]
    encodings = [
        form
        for raw in [*scalars, proof, bad, cb]
        for form in (raw.hex(), b64(raw), base64.urlsafe_b64encode(raw).decode().rstrip("="))
    ]
    return [token, *token.split("."), ADMIN_TOKEN, *encodings]


def test_tail_of_a_real_login_flow_holds_no_secret(tmp_path: Path) -> None:
    secrets = asyncio.run(login_flow(tmp_path))

    result = zkauth("audit", "tail", "-n", "1000", "--json", "--data-dir", str(tmp_path))

    assert result.exit_code == 0, result.output
    lines = json_lines(result.stdout)
    events = {(line["event"], line["outcome"]) for line in lines}
    assert {("enrollment", "success"), ("verification", "success")} <= events
    assert ("verification", "failure") in events
    assert ("revocation", "success") in events
    leaked = [secret for secret in secrets if secret in result.stdout]
    assert leaked == []
    verified = zkauth("audit", "verify", "--data-dir", str(tmp_path))
    assert verified.exit_code == 0, verified.output
