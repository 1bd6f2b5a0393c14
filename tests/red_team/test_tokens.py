"""Red team §"Tokens" (ATTACKS.md items 15–20): what an attacker does with, or without, an access
token at the server's own protected resource. Every refusal is the one bearer 401 (with
``WWW-Authenticate``), byte-identical to the refusal of a request that carries no token at all.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.red_team.conftest import (
    INTROSPECTION_TOKEN,
    OTHER_AUDIENCE,
    RedApi,
    assert_same,
    b64,
    channel,
)
from zkauth.crypto import Credential
from zkauth.tokens import load_signing_key


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def segments(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    header, payload, signature = token.split(".")
    return json.loads(unb64url(header)), json.loads(unb64url(payload)), unb64url(signature)


def compact(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    h = b64url(json.dumps(header, separators=(",", ":")).encode())
    p = b64url(json.dumps(payload, separators=(",", ":")).encode())
    return f"{h}.{p}.{b64url(signature)}"


def signed(key: Ed25519PrivateKey, header: dict[str, Any], payload: dict[str, Any]) -> str:
    unsigned = compact(header, payload).rsplit(".", 1)[0]
    return f"{unsigned}.{b64url(key.sign(unsigned.encode()))}"


def hs(
    secret: bytes, header: dict[str, Any], payload: dict[str, Any], digest: str = "sha256"
) -> str:
    """HMAC "signed" token: the classic confusion of a public key used as an HMAC secret."""
    unsigned = compact(header, payload).rsplit(".", 1)[0]
    mac = hmac.new(secret, unsigned.encode(), digest).digest()
    return f"{unsigned}.{b64url(mac)}"


async def logged_in(api: RedApi, audience: str | None = None) -> tuple[str, Credential, bytes, str]:
    """A fresh client with a token (for ``audience``), the binding it is tied to."""
    client_id, cred = await api.fresh()
    cb = channel()
    ch = await api.issued(client_id, cb)
    extra = {} if audience is None else {"targetAudience": audience}
    response = await api.verify_with(
        client_id, ch, api.login_proof(cred, client_id, ch, cb), cb, extra
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["accessToken"]
    assert (await api.resource(token, cb)).status_code == 200 or audience is not None
    return client_id, cred, cb, token


# -- 15. No token, empty, garbage, tampered --------------------------------------------------------


async def test_rt15_missing_empty_or_garbage_token_is_refused(api: RedApi) -> None:
    baseline = await api.resource_refusal()
    _, _, cb, token = await logged_in(api)
    for authorization in [
        "",
        "Bearer",
        "Bearer ",
        "Bearer    ",
        "Bearer garbage",
        "Bearer a.b.c",
        "Bearer ..",
        "Bearer " + "A" * 5000,
        f"Basic {token}",
        f"Token {token}",
        token,
        f"Bearer {token} extra",
        f"Bearer {token}.",
        f"Bearer {token}=",
        f"Bearer .{token}",
    ]:
        response = await api.http.get(
            "/v1/resources/x",
            headers={"Authorization": authorization, "X-Channel-Binding": b64(cb)},
        )
        assert_same(response, baseline)
    assert (await api.resource(token, cb)).status_code == 200


async def test_rt15_tampered_payload_is_refused(api: RedApi) -> None:
    baseline = await api.resource_refusal()
    victim, _, _, _ = await logged_in(api)
    _, _, cb, token = await logged_in(api)
    header, payload, signature = segments(token)
    for change in [
        {"sub": victim},
        {"exp": payload["exp"] + 3600},
        {"aud": OTHER_AUDIENCE},
        {"cnf": {"cb#S256": b64url(hashlib.sha256(channel()).digest())}},
        {"iss": "zkauth "},
        {"extra": True},
    ]:
        tampered = compact(header, {**payload, **change}, signature)
        assert_same(await api.resource(tampered, cb), baseline)


async def test_rt15_tampered_signature_is_refused(api: RedApi) -> None:
    baseline = await api.resource_refusal()
    _, _, cb, token = await logged_in(api)
    unsigned, signature = token.rsplit(".", 1)
    raw = unb64url(signature)
    for position in (0, 31, 32, 63):
        flipped = bytearray(raw)
        flipped[position] ^= 0x01
        assert_same(await api.resource(f"{unsigned}.{b64url(bytes(flipped))}", cb), baseline)
    for forged in (raw[:-1], raw + b"\x00", bytes(64), b""):
        assert_same(await api.resource(f"{unsigned}.{b64url(forged)}", cb), baseline)
    assert (await api.resource(token, cb)).status_code == 200


async def test_rt15_signature_in_a_non_canonical_base64url_spelling_is_refused(
    api: RedApi,
) -> None:
    """The same 64 signature bytes spelled with other unused low bits in the last character: one
    token, one spelling (no malleable token strings for caches or deny lists to miss)."""
    baseline = await api.resource_refusal()
    _, _, cb, token = await logged_in(api)
    unsigned, signature = token.rsplit(".", 1)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    assert len(signature) == 86  # 64 bytes: the last character carries 2 bits, 4 are unused
    for spare in range(1, 16):
        variant = signature[:-1] + alphabet[last ^ spare]
        assert unb64url(variant) == unb64url(signature)  # same bytes, other text
        assert_same(await api.resource(f"{unsigned}.{variant}", cb), baseline)


async def test_rt15_tampered_header_is_refused(api: RedApi) -> None:
    baseline = await api.resource_refusal()
    _, _, cb, token = await logged_in(api)
    header, payload, signature = segments(token)
    for change in [{"kid": "x"}, {"typ": "JWT"}, {"typ": "at+JWT"}, {"alg": "Ed25519"}]:
        assert_same(
            await api.resource(compact({**header, **change}, payload, signature), cb), baseline
        )


# -- 16. Another audience (confused deputy) --------------------------------------------------------


async def test_rt16_token_for_another_audience_is_refused(api: RedApi) -> None:
    baseline = await api.resource_refusal()
    client_id, cred, cb, token = await logged_in(api, OTHER_AUDIENCE)
    assert segments(token)[1]["aud"] == OTHER_AUDIENCE
    assert_same(await api.resource(token, cb), baseline)
    # Nor does it open rotation, which also takes only tokens for the server's own audience.
    ch = await api.issued(client_id, cb)
    body = api.rotation_body(client_id, cred, Credential.generate(), ch, cb)
    assert_same(await api.rotate(client_id, body, token, cb), await api.rotation_refusal())
    assert await api.login(client_id, cred, cb)


async def test_rt16_unknown_target_audience_is_400_and_burns_nothing(api: RedApi) -> None:
    client_id, _, cb, ch, proof = await api.pending_login()
    for audience in ["evil-service", "default ", "DEFAULT", OTHER_AUDIENCE + "\n"]:
        response = await api.verify_with(client_id, ch, proof, cb, {"targetAudience": audience})
        assert response.status_code == 400
    assert (await api.verify(client_id, ch, proof, cb)).status_code == 200


# -- 17. Expiry ------------------------------------------------------------------------------------


async def test_rt17_token_at_or_after_exp_is_refused(api: RedApi) -> None:
    baseline = await api.resource_refusal()
    _, _, cb, token = await logged_in(api)
    _, payload, _ = segments(token)
    assert payload["exp"] - payload["iat"] == 900
    api.clock.advance(timedelta(seconds=899, microseconds=999_999))
    assert (await api.resource(token, cb)).status_code == 200  # the last instant
    api.clock.advance(timedelta(microseconds=1))  # exactly exp
    assert_same(await api.resource(token, cb), baseline)
    api.clock.advance(timedelta(days=365))
    assert_same(await api.resource(token, cb), baseline)


async def test_rt17_token_before_its_iat_beyond_the_skew_is_refused(api: RedApi) -> None:
    """A clock moved back (or a token from the future) is no more usable than an expired one."""
    baseline = await api.resource_refusal()
    _, _, cb, token = await logged_in(api)
    api.clock.advance(timedelta(seconds=-61))
    assert_same(await api.resource(token, cb), baseline)


# -- 18. X-Channel-Binding -------------------------------------------------------------------------


async def test_rt18_missing_or_wrong_channel_binding_is_refused(api: RedApi) -> None:
    baseline = await api.resource_refusal()
    _, _, cb, token = await logged_in(api)
    auth = {"Authorization": f"Bearer {token}"}
    assert_same(await api.http.get("/v1/resources/x", headers=auth), baseline)
    for value in [
        "",
        " ",
        "not base64!",
        b64(cb)[:-1],
        b64(cb) + "=",
        b64(cb).replace("+", "-").replace("/", "_")
        if {"+", "/"} & set(b64(cb))
        else "-" + b64(cb)[1:],
        " " + b64(cb) + "x",
        b64(cb + b"\x00"),
        b64(cb[:-1]),
        b64(cb + cb[:16]),
        b64(hashlib.sha256(cb).digest()),  # the cnf value itself, as bytes
        b64url(hashlib.sha256(cb).digest()),  # the cnf value as text
    ]:
        headers = {**auth, "X-Channel-Binding": value}
        assert_same(await api.http.get("/v1/resources/x", headers=headers), baseline)
    assert (await api.resource(token, cb)).status_code == 200


async def test_rt18_token_cnf_replayed_with_another_binding_of_the_same_length_is_refused(
    api: RedApi,
) -> None:
    baseline = await api.resource_refusal()
    _, _, cb, token = await logged_in(api)
    for other in [channel(), bytes(32), bytes(len(cb) - 1) + bytes([cb[-1] ^ 1]), cb[::-1]]:
        assert other != cb
        assert_same(await api.resource(token, other), baseline)
    flipped = bytes([cb[0] ^ 0x80]) + cb[1:]
    assert_same(await api.resource(token, flipped), baseline)


async def test_rt18_a_48_byte_binding_token_needs_its_48_bytes(api: RedApi) -> None:
    baseline = await api.resource_refusal()
    client_id, cred = await api.fresh()
    cb = channel() + channel()[:16]
    token = await api.login(client_id, cred, cb)
    assert (await api.resource(token, cb)).status_code == 200
    assert_same(await api.resource(token, cb[:32]), baseline)


# -- 19. Revoked clients ---------------------------------------------------------------------------


async def test_rt19_token_of_a_revoked_client_is_refused_at_once(api: RedApi) -> None:
    baseline = await api.resource_refusal()
    client_id, _, cb, token = await logged_in(api)
    assert (await api.resource(token, cb)).status_code == 200
    assert (await api.revoke(client_id)).status_code == 204
    assert_same(await api.resource(token, cb), baseline)  # no clock tick in between
    introspected = await api.http.post(
        "/v1/introspect",
        data={"token": token},
        headers={"Authorization": f"Bearer {INTROSPECTION_TOKEN}"},
    )
    assert introspected.status_code == 200
    assert introspected.json() == {"active": False}


# -- 20. Algorithm confusion and foreign keys ------------------------------------------------------


async def _forgeries(api: RedApi, token: str) -> list[tuple[str, str]]:
    header, payload, _ = segments(token)
    kid = header["kid"]
    jwks = (await api.http.get("/.well-known/jwks.json")).json()
    jwk = jwks["keys"][0]
    x_raw = unb64url(jwk["x"])
    attacker = Ed25519PrivateKey.generate()
    attacker_raw = attacker.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    attacker_jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(attacker_raw)}
    pem = load_signing_key(
        api.container.settings.resolved_signing_key_path
    ).public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    typ = {"typ": "at+jwt"}

    def head(alg: str | None, **extra: Any) -> dict[str, Any]:
        alg_part = {} if alg is None else {"alg": alg}
        return {**alg_part, **typ, "kid": kid, **extra}

    foreign_jwk = head("EdDSA", jwk=attacker_jwk)
    foreign_jku = head("EdDSA", jku="https://attacker.example/jwks.json")
    foreign_x5u = head("EdDSA", x5u="https://attacker.example/cert")
    own_kid = {**head("EdDSA", jwk=attacker_jwk), "kid": "attacker"}
    jwks_text = json.dumps(jwks).encode()
    return [
        ("alg none, no signature", compact(head("none"), payload)),
        ("alg none, garbage signature", compact(head("none"), payload, b"x" * 64)),
        ("alg NONE", compact(head("NONE"), payload, b"x" * 64)),
        ("alg missing", compact(head(None), payload, b"x" * 64)),
        ("HS256 keyed with the raw public key", hs(x_raw, head("HS256"), payload)),
        ("HS256 keyed with the JWK x", hs(jwk["x"].encode(), head("HS256"), payload)),
        ("HS256 keyed with the PEM", hs(pem, head("HS256"), payload)),
        ("HS256 keyed with the JWKS", hs(jwks_text, head("HS256"), payload)),
        ("HS512 keyed with the raw public key", hs(x_raw, head("HS512"), payload, "sha512")),
        ("RS256 header", compact(head("RS256"), payload, b"x" * 256)),
        ("ES256 header", compact(head("ES256"), payload, b"x" * 64)),
        ("foreign Ed25519 key, server kid", signed(attacker, head("EdDSA"), payload)),
        ("foreign key with jwk header", signed(attacker, foreign_jwk, payload)),
        ("foreign key with jku header", signed(attacker, foreign_jku, payload)),
        ("foreign key, own kid, jwk header", signed(attacker, own_kid, payload)),
        ("foreign key, x5u header", signed(attacker, foreign_x5u, payload)),
        ("foreign key, no kid", signed(attacker, {"alg": "EdDSA", **typ}, payload)),
    ]


async def test_rt20_token_asking_for_another_algorithm_or_key_is_refused(api: RedApi) -> None:
    baseline = await api.resource_refusal()
    _, _, cb, token = await logged_in(api)
    for name, forged in await _forgeries(api, token):
        response = await api.resource(forged, cb)
        assert response.status_code == 401, name
        assert_same(response, baseline)
    assert (await api.resource(token, cb)).status_code == 200


async def test_rt20_even_the_server_key_cannot_smuggle_jwk_jku_crit_or_another_typ(
    api: RedApi,
) -> None:
    """Signed with the REAL key (as if by a buggy co-signer): any header beyond alg/typ/kid, or
    a typ other than at+jwt, or an audience list, is refused all the same."""
    baseline = await api.resource_refusal()
    _, _, cb, token = await logged_in(api)
    header, payload, _ = segments(token)
    key = load_signing_key(api.container.settings.resolved_signing_key_path).private_key
    assert (await api.resource(signed(key, header, payload), cb)).status_code == 200  # control
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(bytes(32))}
    cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"jwk": jwk}, {}),
        ({"jku": "https://attacker.example/jwks.json"}, {}),
        ({"crit": ["exp"]}, {}),
        ({"b64": False, "crit": ["b64"]}, {}),
        ({"typ": "JWT"}, {}),
        ({"typ": None}, {}),
        ({}, {"aud": ["default"]}),
        ({}, {"aud": ["default", OTHER_AUDIENCE]}),
        ({}, {"exp": float(payload["exp"])}),
        ({}, {"exp": True}),
        ({}, {"cnf": {"jkt": "x"}}),
    ]
    for extra_header, extra_claims in cases:
        forged = signed(key, {**header, **extra_header}, {**payload, **extra_claims})
        assert_same(await api.resource(forged, cb), baseline)
    no_cnf = {k: v for k, v in payload.items() if k != "cnf"}
    assert_same(await api.resource(signed(key, header, no_cnf), cb), baseline)
    assert_same(await api.resource(signed(key, header, no_cnf), None), baseline)


@pytest.mark.parametrize("where", ["revoke", "introspect"])
async def test_rt20_an_access_token_is_not_an_admin_credential(api: RedApi, where: str) -> None:
    victim, victim_cred = await api.fresh()
    _, _, _, token = await logged_in(api)
    if where == "revoke":
        response = await api.revoke(victim, admin=token)
        assert response.status_code == 401
        assert await api.login(victim, victim_cred, channel())
    else:
        response = await api.http.post(
            "/v1/introspect", data={"token": token}, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401
