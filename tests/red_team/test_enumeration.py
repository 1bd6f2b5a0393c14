"""Red team §"Enumeration and side channels" (ATTACKS.md items 30–31).

Line 30's timing half is measured by a statistical benchmark elsewhere, not by a timed unit test;
here the unknown, revoked, locked and wrong-proof cases must agree byte for byte: status, body and
every header. Line 31: error bodies, logs (stdlib, structlog and the raw output streams, and the
real server's JSON log stream) and the audit trail never hold a secret, a proof, a token or a
stack trace.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable
from pathlib import Path

import httpx
import pytest
import structlog

from tests.red_team.conftest import (
    ADMIN_TOKEN,
    INTROSPECTION_TOKEN,
    RedApi,
    assert_problem,
    assert_same,
    b64,
    channel,
    served,
)
from zkauth.crypto import Credential, LoginStatement, PossessionStatement, RotationStatement, prove

# -- 30. Unknown, revoked, locked and wrong-proof look the same -----------------------------------


async def _four_cases(api: RedApi) -> dict[str, tuple[str, Credential | None]]:
    """An unknown, a revoked, a locked and a healthy client (for the wrong-proof case)."""
    unknown = api.new_id("nobody")
    revoked, revoked_cred = await api.fresh("revoked")
    assert (await api.revoke(revoked)).status_code == 204
    locked, locked_cred = await api.fresh("locked")
    for _ in range(3):
        cb = channel()
        ch = await api.issued(locked, cb)
        wrong = api.login_proof(Credential.generate(), locked, ch, cb)
        assert (await api.verify(locked, ch, wrong, cb)).status_code == 401
    healthy, healthy_cred = await api.fresh("healthy")
    return {
        "unknown": (unknown, None),
        "revoked": (revoked, revoked_cred),
        "locked": (locked, locked_cred),
        "wrong-proof": (healthy, healthy_cred),
    }


async def test_rt30_verify_refusals_are_identical_for_unknown_revoked_locked_and_wrong_proof(
    api: RedApi,
) -> None:
    baseline = await api.verify_refusal()
    cases = await _four_cases(api)
    responses: dict[str, httpx.Response] = {}
    healthy, _ = cases["wrong-proof"]
    cb = channel()
    live = await api.issued(healthy, cb)
    for name, (client_id, cred) in cases.items():
        ch = live if name == "wrong-proof" else {**live, "challengeId": "ch_" + "C" * 24}
        # The RIGHT secret where there is one (revoked, locked): still the same refusal.
        prover = cred if name != "wrong-proof" and cred is not None else Credential.generate()
        proof = prove(
            prover,
            LoginStatement(prover.commitment, client_id, base64.b64decode(ch["nonce"]), cb),
        )
        responses[name] = await api.verify(client_id, ch, proof, cb)
    for name, response in responses.items():
        assert response.status_code == 401, name
        assert_same(response, baseline)


async def test_rt30_challenge_refusals_are_identical_for_unknown_revoked_and_locked(
    api: RedApi,
) -> None:
    baseline = await api.challenge_refusal()
    cases = await _four_cases(api)
    for name in ("unknown", "revoked", "locked"):
        client_id, _ = cases[name]
        assert_same(await api.challenge(client_id, channel()), baseline)
    # A bad binding size on a healthy client is refused the same way.
    healthy, _ = cases["wrong-proof"]
    assert_same(await api.challenge(healthy, bytes(16)), baseline)


async def test_rt30_rotation_refusals_are_identical_for_unknown_revoked_and_locked(
    api: RedApi,
) -> None:
    baseline = await api.rotation_refusal()
    # Tokens obtained while the clients were healthy.
    tokens = {}
    for prefix in ("revoked", "locked"):
        client_id, cred = await api.fresh(prefix)
        cb = channel()
        tokens[prefix] = (client_id, cred, cb, await api.login(client_id, cred, cb))
    revoked, revoked_cred, revoked_cb, revoked_token = tokens["revoked"]
    locked, locked_cred, locked_cb, locked_token = tokens["locked"]
    ch_revoked = await api.issued(revoked, revoked_cb)
    assert (await api.revoke(revoked)).status_code == 204
    for _ in range(3):
        cb = channel()
        ch = await api.issued(locked, cb)
        wrong = api.login_proof(Credential.generate(), locked, ch, cb)
        assert (await api.verify(locked, ch, wrong, cb)).status_code == 401
    new = Credential.generate()
    body = api.rotation_body(revoked, revoked_cred, new, ch_revoked, revoked_cb)
    assert_same(await api.rotate(revoked, body, revoked_token, revoked_cb), baseline)
    # The locked client's token still verifies, but it cannot get the fresh challenge rotation
    # needs, and a made-up one is refused like everything else.
    assert_same(await api.challenge(locked, locked_cb), await api.challenge_refusal())
    fake = {"challengeId": "ch_" + "D" * 24, "nonce": b64(bytes(24))}
    body = api.rotation_body(locked, locked_cred, new, fake, locked_cb)
    assert_same(await api.rotate(locked, body, locked_token, locked_cb), baseline)
    unknown = api.new_id("nobody")
    assert_same(await api.rotate(unknown, body, locked_token, locked_cb), baseline)


async def test_rt30_enrollment_refusals_are_identical_whatever_the_cause(api: RedApi) -> None:
    baseline = await api.enrollment_refusal()
    taken, _ = await api.fresh("taken")
    revoked, _ = await api.fresh("revoked")
    assert (await api.revoke(revoked)).status_code == 204
    cred = Credential.generate()
    fresh_id = api.new_id("fresh")
    c = cred.commitment.encode()

    def pop(client_id: str) -> bytes:
        return prove(cred, PossessionStatement(cred.commitment, client_id))

    cases = {
        "taken": (taken, c, pop(taken)),
        "revoked": (revoked, c, pop(revoked)),
        "bad-proof": (fresh_id, c, pop(taken)),
        "bad-commitment": (fresh_id, bytes(32), pop(fresh_id)),
    }
    for name, (client_id, commitment, proof) in cases.items():
        response = await api.enroll_raw(client_id, commitment, proof)
        assert response.status_code == 409, name
        assert_same(response, baseline)


async def test_rt30_malformed_input_is_answered_the_same_for_known_and_unknown_clients(
    api: RedApi,
) -> None:
    """400s come before any lookup: their bytes cannot tell who exists either."""
    known, _ = await api.fresh()
    unknown = api.new_id("nobody")
    for body in (
        {"channelBinding": "not base64!"},
        {"channelBinding": b64(channel()), "protocolVersion": "9.9"},
        {"channelBinding": b64(channel()), "extra": 1},
    ):
        a = await api.http.post("/v1/challenges", json={"clientIdentifier": known, **body})
        b = await api.http.post("/v1/challenges", json={"clientIdentifier": unknown, **body})
        assert_problem(a, 400)
        assert_same(a, b)
    fake = {"challengeId": "ch_x", "nonce": b64(bytes(24))}
    a = await api.verify_with(known, fake, bytes(96), channel(), {"proof": "!!!!"})
    b = await api.verify_with(unknown, fake, bytes(96), channel(), {"proof": "!!!!"})
    assert_problem(a, 400)
    assert_same(a, b)


# -- 31. No secrets, proofs or stack traces in bodies, logs or the audit trail ---------------------


class Secrets:
    """Everything that must never be written anywhere: credentials, scalars, proofs, tokens."""

    def __init__(self) -> None:
        self.values: set[str] = {ADMIN_TOKEN, INTROSPECTION_TOKEN}

    def credential(self, cred: Credential) -> Credential:
        self.values.add(cred.encode())
        for scalar in (cred.s, cred.r):
            raw = scalar.encode()
            self.values |= {raw.hex(), raw.hex().upper(), b64(raw), str(int(scalar))}
        return cred

    def proof(self, proof: bytes) -> bytes:
        self.values |= {b64(proof), proof.hex(), b64(proof[32:64]), b64(proof[64:])}
        return proof

    def token(self, token: str) -> str:
        self.values |= {token, token.rsplit(".", 1)[1]}
        return token

    def found_in(self, texts: Iterable[str]) -> list[str]:
        joined = "\n".join(texts)
        return sorted(s[:12] + "…" for s in self.values if s in joined)


async def _full_flow_with_failures(api: RedApi, secrets: Secrets) -> list[httpx.Response]:
    """Enroll, log in, use, rotate, revoke; and along the way every kind of failure, with the
    secrets placed where a careless handler would echo or log them."""
    out: list[httpx.Response] = []
    client_id = api.new_id("leaky")
    cred = secrets.credential(Credential.generate())
    pop = secrets.proof(prove(cred, PossessionStatement(cred.commitment, client_id)))
    out.append(await api.enroll_raw(client_id, cred.commitment.encode(), pop))
    out.append(await api.enroll_raw(client_id, cred.commitment.encode(), pop))  # 409
    cb = channel()
    ch = await api.issued(client_id, cb)
    wrong = secrets.proof(
        api.login_proof(secrets.credential(Credential.generate()), client_id, ch, cb)
    )
    out.append(await api.verify(client_id, ch, wrong, cb))  # 401
    ch = await api.issued(client_id, cb)
    proof = secrets.proof(api.login_proof(cred, client_id, ch, cb))
    for field, value in [
        ("proof", cred.encode()),  # the credential pasted where the proof goes
        ("proof", b64(proof) + "\n"),
        ("proof", proof.hex()),
        ("channelBinding", cred.encode()),
        ("challengeId", cred.encode() + "x" * 40),
        ("domainSeparationTag", cred.encode()),
        ("targetAudience", cred.encode()),
        ("clientIdentifier", cred.encode() + "!"),
        ("proof", {"value": cred.encode()}),
        ("proof", [b64(proof)]),
    ]:
        out.append(await api.verify_with(client_id, ch, proof, cb, {field: value}))
    ch = await api.issued(client_id, cb)  # the refused tag burnt the last one
    proof = secrets.proof(api.login_proof(cred, client_id, ch, cb))
    response = await api.verify(client_id, ch, proof, cb)
    out.append(response)
    token = secrets.token(response.json()["accessToken"])
    out.append(await api.resource(token, cb))
    out.append(await api.resource(token, channel()))  # 401
    out.append(await api.resource(token[:-4] + "AAAA", cb))  # 401
    out.append(
        await api.http.get("/v1/resources/x", headers={"Authorization": f"Bearer {cred.encode()}"})
    )
    out.append(
        await api.post_json(
            "/v1/challenges", b'{"clientIdentifier": "' + cred.encode().encode() + b'", '
        )
    )
    out.append(
        await api.http.post(
            "/v1/challenges", content=cred.encode(), headers={"content-type": "text/plain"}
        )
    )
    new = secrets.credential(Credential.generate())
    ch = await api.issued(client_id, cb)
    body = api.rotation_body(client_id, cred, new, ch, cb)
    for value in (body["currentProof"], body["newCommitmentProof"]):
        secrets.proof(base64.b64decode(value))
    bad = {**body, "currentProof": body["newCommitmentProof"]}
    out.append(await api.rotate(client_id, bad, token, cb))  # 401 (and burns the challenge)
    ch = await api.issued(client_id, cb)
    body = api.rotation_body(client_id, cred, new, ch, cb)
    for value in (body["currentProof"], body["newCommitmentProof"]):
        secrets.proof(base64.b64decode(value))
    out.append(await api.rotate(client_id, body, token, cb))  # 200
    out.append(await api.rotate(client_id, body, token, cb))  # replay: 401
    nonce = base64.b64decode(ch["nonce"])
    stray = secrets.proof(
        prove(new, RotationStatement.new(cred.commitment, new.commitment, client_id, nonce, cb))
    )
    out.append(
        await api.rotate(client_id, {**body, "currentProof": b64(stray) + "!"}, token, cb)
    )  # 400
    out.append(await api.revoke(client_id, admin=cred.encode()))  # 401
    out.append(await api.revoke(client_id, admin=token))  # 401
    out.append(
        await api.http.post(
            "/v1/introspect",
            data={"token": token},
            headers={"Authorization": f"Bearer {INTROSPECTION_TOKEN}"},
        )
    )
    out.append(await api.revoke(client_id))  # 204
    out.append(await api.resource(token, cb))  # 401
    return out  # fmt: skip


async def test_rt31_error_bodies_and_logs_never_hold_secrets_proofs_or_tracebacks(
    api: RedApi, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = Secrets()
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        responses = await _full_flow_with_failures(api, secrets)
    captured = capsys.readouterr()
    statuses = {r.status_code for r in responses}
    assert {200, 201, 204, 400, 401, 409, 415} <= statuses
    assert all(s < 500 for s in statuses)
    errors = [r for r in responses if r.status_code >= 400]
    for response in errors:
        assert response.headers["content-type"] == "application/problem+json"
        assert "Traceback" not in response.text
        assert 'File "' not in response.text
    assert secrets.found_in(r.text for r in errors) == []
    assert secrets.found_in(str(v) for r in errors for v in r.headers.values()) == []
    # Logs: stdlib records (message, args, exception info), structlog events, raw streams.
    records = [
        f"{r.name} {r.getMessage()} {r.args!r} {r.exc_text or ''} {r.exc_info!r}"
        for r in caplog.records
    ]
    structured = [repr(event) for event in events]
    streams = [captured.out, captured.err]
    # Not vacuous: the audited events really reached at least one of the sinks.
    assert any("verification" in text for text in [*records, *structured, *streams])
    assert secrets.found_in(records) == []
    assert secrets.found_in(structured) == []
    assert secrets.found_in(streams) == []
    for text in [*records, *structured, *streams]:
        assert "Traceback" not in text
    # The audit trail, which records every refusal with its reason, holds no secret either.
    entries = await api.container.stores.audit.entries(limit=10_000)
    assert entries
    assert secrets.found_in(repr(e.event) for e in entries) == []


def test_rt31_the_real_server_log_stream_never_holds_secrets(tmp_path: Path) -> None:
    """``zkauth serve`` writes JSON lines to stderr: after a full flow with failures, none of
    them holds a secret, a proof, a token or a traceback."""
    secrets = Secrets()
    with served(tmp_path / "data") as server, httpx.Client(base_url=server.url) as http:
        client_id = "leaky-real"
        cred = secrets.credential(Credential.generate())
        pop = secrets.proof(prove(cred, PossessionStatement(cred.commitment, client_id)))
        enroll = {"clientIdentifier": client_id, "commitment": b64(cred.commitment.encode())}
        assert (
            http.post("/v1/clients", json={**enroll, "proofOfPossession": b64(pop)}).status_code
            == 201
        )
        cb = channel()
        for wrong_secret_first in (True, False):
            ch = http.post(
                "/v1/challenges", json={"clientIdentifier": client_id, "channelBinding": b64(cb)}
            ).json()
            signer = secrets.credential(Credential.generate()) if wrong_secret_first else cred
            nonce = base64.b64decode(ch["nonce"])
            proof = secrets.proof(
                prove(signer, LoginStatement(signer.commitment, client_id, nonce, cb))
            )
            body = {
                "clientIdentifier": client_id,
                "challengeId": ch["challengeId"],
                "proof": b64(proof),
                "channelBinding": b64(cb),
                "domainSeparationTag": "2FApi-v1.0-Sigma",
            }
            assert http.post("/v1/verify", json={**body, "proof": cred.encode()}).status_code == 400
            response = http.post("/v1/verify", json=body)
        token = secrets.token(response.json()["accessToken"])
        headers = {"Authorization": f"Bearer {token}", "X-Channel-Binding": b64(cb)}
        assert http.get("/v1/resources/x", headers=headers).status_code == 200
        assert (
            http.get(
                "/v1/resources/x", headers={**headers, "X-Channel-Binding": b64(channel())}
            ).status_code
            == 401
        )
        assert (
            http.delete(
                f"/v1/clients/{client_id}", headers={"Authorization": f"Bearer {cred.encode()}"}
            ).status_code
            == 401
        )
        assert (
            http.delete(
                f"/v1/clients/{client_id}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            ).status_code
            == 204
        )
        assert http.get("/v1/resources/x", headers=headers).status_code == 401
    log = server.log_text()
    assert '"event": "verification"' in log  # the JSON stream really was captured
    assert secrets.found_in([log]) == []
    assert "Traceback" not in log  # fmt: skip


async def test_rt31_unknown_field_names_are_not_echoed_in_error_bodies(api: RedApi) -> None:
    """A 400 names the offending field; when the "field" is attacker text (an unknown key), the
    body must not reflect it — it could be a pasted credential, or markup."""
    cred = Credential.generate()
    for key in (cred.encode(), "<script>alert(1)</script>"):
        body = {"clientIdentifier": "x", "channelBinding": b64(channel()), key: 1}
        response = await api.http.post("/v1/challenges", json=body)
        assert_problem(response, 400)
        assert key not in response.text


async def test_rt31_a_credential_pasted_as_client_identifier_is_not_logged(
    api: RedApi, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    cred = Credential.generate()
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        response = await api.challenge(cred.encode(), channel())
    captured = capsys.readouterr()
    assert response.status_code in (400, 401)
    texts = [r.getMessage() + repr(r.args) for r in caplog.records]
    texts += [repr(e) for e in events] + [captured.out, captured.err]
    entries = await api.container.stores.audit.entries(limit=100)
    texts += [repr(e.event) for e in entries]
    assert cred.encode() not in "\n".join(texts)
