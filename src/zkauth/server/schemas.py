"""Request and response bodies of HTTP API v1 (2FApi-compatible field names).

Bytes travel as standard base64 (RFC 4648 §4) strings; they are decoded by :func:`b64` in the
routes so a bad encoding is a 400 naming the field. Unknown fields are refused (``extra=forbid``)
so typos surface instead of being silently ignored.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from zkauth.errors import ProtocolError
from zkauth.protocol import CHALLENGE_ID_PATTERN, CLIENT_ID_PATTERN, UNSUPPORTED_VERSION

_B64_RE: Final = re.compile(r"[A-Za-z0-9+/]*={0,2}")

ClientIdField = Annotated[
    str, Field(pattern=CLIENT_ID_PATTERN, min_length=1, max_length=128, examples=["billing-agent"])
]
B64 = Annotated[
    str, Field(max_length=4096, json_schema_extra={"format": "byte", "contentEncoding": "base64"})
]


def b64(field: str, value: str) -> bytes:
    """Strict standard base64 with padding: anything else is a 400 naming ``field``.

    Non-zero unused bits in the last character are refused too, so each value has one spelling.
    """
    if len(value) % 4 or _B64_RE.fullmatch(value) is None:
        raise ProtocolError(f"{field} is not valid base64")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"{field} is not valid base64") from None
    if enc(data) != value:
        raise ProtocolError(f"{field} is not valid base64")
    return data


def enc(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class _Body(BaseModel):
    # A field with a default is still always sent: required in the answers' schemas.
    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_serialization_defaults_required=True
    )


class EnrollmentRequest(_Body):
    clientIdentifier: ClientIdField  # noqa: N815 (wire names are 2FApi's camelCase)
    commitment: B64 = Field(description="C = s·G + r·H, 32 bytes (PROTOCOL.md §2)")
    proofOfPossession: B64 = Field(description="96-byte proof (PROTOCOL.md §3.3)")  # noqa: N815


class EnrollmentResponse(_Body):
    referenceId: str  # noqa: N815
    clientIdentifier: str  # noqa: N815


class ChallengeRequest(_Body):
    clientIdentifier: ClientIdField  # noqa: N815
    channelBinding: B64 = Field(description="32 or 48 bytes chosen by the client")  # noqa: N815
    credential: str | None = Field(
        None, max_length=4096, description="accepted for 2FApi compatibility; unused"
    )
    protocolVersion: str | None = Field(None, max_length=16, examples=["1.0"])  # noqa: N815

    @field_validator("protocolVersion", mode="before")
    @classmethod
    def _a_version(cls, value: object) -> object:
        """Any value that cannot name a supported version (not a string, or too long) gets the
        same answer as a string naming another version: the 400 that lists them."""
        if value is not None and (not isinstance(value, str) or len(value) > 16):
            raise PydanticCustomError("unsupported_version", UNSUPPORTED_VERSION)
        return value


class ChallengeResponse(_Body):
    challengeId: str  # noqa: N815
    nonce: str = Field(description="24 bytes, base64")
    channelBinding: str  # noqa: N815
    expiresAt: datetime  # noqa: N815
    protocolVersion: str  # noqa: N815


class VerifyRequest(_Body):
    clientIdentifier: ClientIdField  # noqa: N815
    challengeId: str = Field(pattern=CHALLENGE_ID_PATTERN, max_length=128)  # noqa: N815
    proof: B64 = Field(description="A ‖ z_s ‖ z_r, 96 bytes (PROTOCOL.md §4)")
    channelBinding: B64  # noqa: N815
    domainSeparationTag: str = Field(max_length=128, examples=["2FApi-v1.0-Sigma"])  # noqa: N815
    targetAudience: str | None = Field(None, min_length=1, max_length=256)  # noqa: N815


class TokenResponse(_Body):
    accessToken: str  # noqa: N815
    tokenType: str = "Bearer"  # noqa: N815
    expiresAt: datetime  # noqa: N815
    expiresIn: int  # noqa: N815


class ResourceResponse(_Body):
    resourceId: str  # noqa: N815
    clientIdentifier: str  # noqa: N815
    audience: str
    data: dict[str, str]


class RotationRequest(_Body):
    challengeId: str = Field(pattern=CHALLENGE_ID_PATTERN, max_length=128)  # noqa: N815
    currentProof: B64 = Field(description="proof with the current secret (PROTOCOL.md §3.4)")  # noqa: N815
    newCommitment: B64  # noqa: N815
    newCommitmentProof: B64 = Field(description="proof with the new secret")  # noqa: N815


class RotationResponse(_Body):
    rotatedAt: datetime  # noqa: N815


class HealthResponse(_Body):
    status: str
    version: str


class IntrospectionResponse(BaseModel):
    """RFC 7662 §2.2; only ``active`` when the token is not active."""

    model_config = ConfigDict(extra="forbid")
    active: bool
    iss: str | None = None
    sub: str | None = None
    aud: str | None = None
    iat: int | None = None
    exp: int | None = None
    jti: str | None = None
    token_type: str | None = None
    client_id: str | None = None


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    code: str


class Alert(_Body):
    at: datetime
    kind: str
    clientId: str | None = None  # noqa: N815
    detail: dict[str, str]


class AlertList(_Body):
    alerts: list[Alert]
