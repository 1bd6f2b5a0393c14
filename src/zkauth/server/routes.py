"""HTTP API v1 routes: thin adapters from JSON to use cases and back (README.md "HTTP API v1")."""

from __future__ import annotations

import json
from typing import Annotated, Any, Final
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from zkauth import __version__
from zkauth.bootstrap import Container, Role
from zkauth.errors import ProtocolError, Refused
from zkauth.protocol import CLIENT_ID_PATTERN, PROTOCOL_VERSION
from zkauth.server import schemas as s
from zkauth.server.middleware import media_type
from zkauth.server.problems import WWW_AUTHENTICATE
from zkauth.server.schemas import b64, enc
from zkauth.service.audit import RequestContext
from zkauth.service.lifecycle import RotationRequest

router = APIRouter()

Responses = dict[int | str, dict[str, Any]]


def _problem(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """A problem+json answer (``_openapi`` in app.py puts the model's schema under that media
    type: FastAPI would give it to ``application/json``)."""
    answer = {
        "model": s.Problem,
        "content": {"application/problem+json": {}},
        "description": description,
    }
    return answer if headers is None else {**answer, "headers": headers}


def _header(description: str, kind: str = "string") -> dict[str, Any]:
    return {"description": description, "schema": {"type": kind}}


#: Sent with every answer of a rate-limited endpoint that is not refused for malformed input
#: (the draft-ietf-httpapi-ratelimit-headers fields); app.py adds them to the 2xx answers.
RATE_LIMIT_HEADERS: Final = {
    "RateLimit-Policy": _header('the most restrictive limit: "name";q=quota;w=window seconds'),
    "RateLimit": _header('what is left of it: "name";r=remaining;t=seconds to reset'),
}

#: What any rate-limited endpoint with path or query parameters may answer besides success.
_GUARDED: Final[Responses] = {
    400: _problem("malformed input"),
    429: _problem(
        "rate limit exceeded",
        {"Retry-After": _header("seconds to wait", "integer"), **RATE_LIMIT_HEADERS},
    ),
    503: _problem("a backend needed to decide safely is unavailable"),
}
#: ... and with a JSON body.
_BAD: Final[Responses] = {
    **_GUARDED,
    413: _problem("body over 64 KiB"),
    415: _problem("body not application/json"),
}
_REFUSED: Final[Responses] = {401: _problem("the single refusal, identical for every cause")}
#: ... where a bearer credential alone is checked (RFC 6750 §3; problems.bearer_protected).
_REFUSED_BEARER: Final[Responses] = {
    401: _problem(
        "the single refusal, identical for every cause",
        {"WWW-Authenticate": _header(WWW_AUTHENTICATE)},
    )
}

ClientIdPath = Annotated[str, Path(pattern=CLIENT_ID_PATTERN, max_length=128)]


def container(request: Request) -> Container:
    """The app's container, called by each route itself rather than injected with ``Depends``:
    FastAPI runs a plain ``def`` dependency in a worker thread (two thread hand-offs per
    request), and even an ``async`` one costs ~7 µs of dependency solving per request."""
    c: Container = request.app.state.container
    return c


def context(request: Request) -> RequestContext:
    return RequestContext(remote_addr=request.client.host if request.client else None)


async def limit_requests(
    c: Container, request: Request, response: Response, client_id: str | None = None
) -> None:
    """Count the request against the rate limits (429 / 503 when refused or unavailable)."""
    if c.guard is not None:
        await c.guard.check(request, response, client_id)


def credential(role: Role | None) -> Any:
    """A dependency: rate-limit the request, then require the admin credential (``None``) or
    one that ``role`` allows. Refused with the endpoint's single 401 otherwise."""

    async def check(
        request: Request,
        response: Response,
        authorization: Annotated[str | None, Header()] = None,
    ) -> None:
        c = container(request)
        await limit_requests(c, request, response)
        token = bearer(authorization)
        allowed = (
            await c.credentials.is_admin(token)
            if role is None
            else await c.credentials.allows(role, token)
        )
        if not allowed:
            raise Refused()

    return Depends(check)


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` header (scheme case-insensitive)."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


Admin = Annotated[None, credential(None)]

#: The headers of the bearer-protected routes, as their OpenAPI ``parameters``. Those routes read
#: the headers themselves: a FastAPI ``Header()`` parameter costs ~12 µs per request (generic
#: per-request type inspection), twice that for the two, on the hottest route.
_BEARER_HEADERS: Final = {
    "parameters": [
        {
            "name": name,
            "in": "header",
            "required": False,
            "schema": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": name.title()},
        }
        for name in ("authorization", "x-channel-binding")
    ]
}


def header_binding(value: str | None) -> bytes | None:
    """``X-Channel-Binding`` decoded; an undecodable header counts as a missing one (refused)."""
    if value is None:
        return None
    try:
        return b64("X-Channel-Binding", value)
    except ProtocolError:
        return None


@router.post(
    "/v1/clients",
    status_code=201,
    response_model=s.EnrollmentResponse,
    responses={
        **_BAD,
        201: {"headers": {"Location": _header("the client's path, /v1/clients/{id}")}},
        409: _problem("enrollment refused, whatever the cause"),
    },
    summary="Enroll a client with its commitment and proof of possession",
)
async def enroll(body: s.EnrollmentRequest, request: Request, response: Response) -> Any:
    c = container(request)
    await limit_requests(c, request, response)
    client = await c.enrollment.enroll(
        body.clientIdentifier,
        b64("commitment", body.commitment),
        b64("proofOfPossession", body.proofOfPossession),
        context(request),
    )
    response.headers["Location"] = f"/v1/clients/{client.client_id}"
    answer = s.EnrollmentResponse(
        referenceId=client.reference_id, clientIdentifier=client.client_id
    )
    return _encoded(answer, response, 201)


@router.post(
    "/v1/challenges",
    response_model=s.ChallengeResponse,
    responses={**_BAD, **_REFUSED},
    summary="Issue a single-use challenge (supersedes the client's older ones)",
)
async def challenge(body: s.ChallengeRequest, request: Request, response: Response) -> Any:
    c = container(request)
    await limit_requests(c, request, response, body.clientIdentifier)
    issued = await c.challenges.request(
        body.clientIdentifier,
        b64("channelBinding", body.channelBinding),
        body.protocolVersion,
        context(request),
    )
    answer = s.ChallengeResponse(
        challengeId=issued.challenge_id,
        nonce=enc(issued.nonce),
        channelBinding=enc(issued.channel_binding),
        expiresAt=issued.expires_at,
        protocolVersion=PROTOCOL_VERSION,
    )
    return _encoded(answer, response)


@router.post(
    "/v1/verify",
    response_model=s.TokenResponse,
    responses={**_BAD, **_REFUSED},
    summary="Verify a proof for a challenge and issue an access token",
)
async def verify(body: s.VerifyRequest, request: Request, response: Response) -> Any:
    c = container(request)
    await limit_requests(c, request, response)
    token = await c.verification.verify(
        body.clientIdentifier,
        body.challengeId,
        b64("proof", body.proof),
        b64("channelBinding", body.channelBinding),
        body.domainSeparationTag,
        body.targetAudience,
        context(request),
    )
    answer = s.TokenResponse(
        accessToken=token.token, expiresAt=token.expires_at, expiresIn=token.expires_in
    )
    return _encoded(answer, response)


def _encoded(answer: BaseModel, response: Response, status: int = 200) -> Response:
    """``answer`` encoded here, once, with the headers set on ``response`` (the guard's
    RateLimit headers, an enrollment's Location). Returned as a model, it would be validated
    again and encoded through FastAPI's generic path: several microseconds more on the path
    that succeeds than on the refusals it must not be told from (``make bench-timing``). The
    same bytes either way (tests/server/test_flows.py)."""
    sent = Response(answer.model_dump_json().encode(), status, media_type="application/json")
    sent.headers.raw.extend(response.headers.raw)
    return sent


@router.get(
    "/v1/resources/{resource_id}",
    response_model=s.ResourceResponse,
    responses={**_GUARDED, **_REFUSED_BEARER},
    openapi_extra=_BEARER_HEADERS,
    summary="The server's own protected resource (tokens for its audience only)",
)
async def resource(resource_id: ClientIdPath, request: Request, response: Response) -> Any:
    c = container(request)
    await limit_requests(c, request, response)
    token = bearer(request.headers.get("authorization"))
    if token is None:
        raise Refused()
    claims = await c.access.authorize(
        token, header_binding(request.headers.get("x-channel-binding")), context(request)
    )
    answer = s.ResourceResponse(
        resourceId=resource_id,
        clientIdentifier=claims.subject,
        audience=claims.audience,
        data={"message": f"protected resource {resource_id}"},
    )
    return _encoded(answer, response)


@router.put(
    "/v1/clients/{client_id}/commitment",
    response_model=s.RotationResponse,
    responses={**_BAD, **_REFUSED},
    openapi_extra=_BEARER_HEADERS,
    summary="Rotate the client's commitment (token of that client, two bound proofs)",
)
async def rotate(
    client_id: ClientIdPath, body: s.RotationRequest, request: Request, response: Response
) -> Any:
    c = container(request)
    await limit_requests(c, request, response)
    headers = request.headers
    token = bearer(headers.get("authorization"))
    binding = header_binding(headers.get("x-channel-binding"))
    request_ = RotationRequest(
        client_id=client_id,
        challenge_id=body.challengeId,
        current_proof=b64("currentProof", body.currentProof),
        new_commitment=b64("newCommitment", body.newCommitment),
        new_proof=b64("newCommitmentProof", body.newCommitmentProof),
        channel_binding=binding or b"",
    )
    if token is None or binding is None:
        raise Refused()
    claims = c.access.check_token(token, binding)  # the client's standing: rotate's checklist
    rotated_at = await c.lifecycle.rotate(request_, claims, context(request))
    return _encoded(s.RotationResponse(rotatedAt=rotated_at), response)


@router.delete(
    "/v1/clients/{client_id}",
    status_code=204,
    response_class=Response,
    responses={**_GUARDED, **_REFUSED_BEARER},
    summary="Revoke a client (admin credential); idempotent",
)
async def revoke(client_id: ClientIdPath, request: Request, _: Admin) -> None:
    await container(request).lifecycle.revoke(client_id, context(request))


@router.post(
    "/v1/introspect",
    response_model=s.IntrospectionResponse,
    response_model_exclude_none=True,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                media: {
                    "schema": {
                        "type": "object",
                        "required": ["token"],
                        "properties": {"token": {"type": "string", "minLength": 1}},
                    }
                }
                for media in ("application/x-www-form-urlencoded", "application/json")
            },
        }
    },
    responses={**_BAD, **_REFUSED_BEARER},
    summary="RFC 7662 token introspection (admin or resource-server credential)",
)
async def introspect(request: Request, _: Annotated[None, credential(Role.INTROSPECT)]) -> Any:
    c = container(request)
    content_type = media_type(request.headers.get("content-type", "").encode("latin-1"))
    token = _token_parameter(await request.body(), content_type)
    claims = await c.access.introspect(token, context(request))
    if claims is None:
        return s.IntrospectionResponse(active=False)
    return s.IntrospectionResponse(
        active=True,
        iss=c.settings.issuer,
        sub=claims.subject,
        aud=claims.audience,
        iat=int(claims.issued_at.timestamp()),
        exp=int(claims.expires_at.timestamp()),
        jti=claims.jti,
        token_type="Bearer",  # noqa: S106 (a token type name, not a secret)
        client_id=claims.subject,
    )


def _token_parameter(body: bytes, media: bytes) -> str:
    """The ``token`` parameter of an introspection request's body (a form or a JSON object;
    the body middleware let only those through)."""
    if media == b"application/x-www-form-urlencoded":
        values = parse_qs(body.decode("utf-8", "replace")).get("token", [])
        token = values[0] if len(values) == 1 else None
    else:
        document = json.loads(body)  # already checked strictly by the body middleware
        token = document.get("token") if isinstance(document, dict) else None
    if not isinstance(token, str) or not token:
        raise ProtocolError("the token parameter is required")
    return token


@router.get(
    "/v1/admin/alerts",
    response_model=s.AlertList,
    responses={**_GUARDED, **_REFUSED_BEARER},
    summary="Recent anomaly alerts, newest first (admin credential)",
)
async def alerts(
    request: Request, _: Admin, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> Any:
    entries = await container(request).stores.audit.latest("alert", limit)
    return s.AlertList(
        alerts=[
            s.Alert(
                at=e.event.at,
                kind=e.event.detail.get("kind", "unknown"),
                clientId=e.event.client_id,
                detail={k: v for k, v in e.event.detail.items() if k != "kind"},
            )
            for e in entries
        ]
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        **_GUARDED,
        **_REFUSED_BEARER,
        200: {"content": {"text/plain": {}}, "description": "Prometheus text"},
    },
    summary="Prometheus metrics (admin or metrics credential)",
)
async def metrics(request: Request, _: Annotated[None, credential(Role.SCRAPE)]) -> Response:
    return Response(container(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/health", response_model=s.HealthResponse, summary="Liveness")
async def health() -> Any:
    return s.HealthResponse(status="ok", version=__version__)


@router.get("/.well-known/jwks.json", summary="Public keys that verify access tokens")
async def jwks(request: Request) -> dict[str, Any]:
    return container(request).jwks
