"""Small factories for the storage tests: valid records with unique ids, overridable fields."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from zkauth.service.models import (
    AdminToken,
    AdminTokenId,
    AuditEvent,
    Challenge,
    ChallengeId,
    Client,
    ClientId,
    Outcome,
)

#: A fixed instant with microseconds, so round trips that lose precision are caught.
T0 = datetime(2026, 3, 1, 12, 0, 0, 250_001, tzinfo=UTC)
TTL = timedelta(seconds=120)


def new_client_id() -> ClientId:
    return ClientId(f"client-{secrets.token_hex(6)}")


def make_client(client_id: ClientId | None = None, **fields: Any) -> Client:
    values: dict[str, Any] = {
        "client_id": client_id or new_client_id(),
        "reference_id": str(uuid.uuid4()),
        "commitment": secrets.token_bytes(32),
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(fields)
    return Client(**values)


def make_challenge(client_id: ClientId, **fields: Any) -> Challenge:
    issued_at = fields.pop("issued_at", T0)
    values: dict[str, Any] = {
        "challenge_id": ChallengeId(secrets.token_urlsafe(16)),
        "client_id": client_id,
        "nonce": secrets.token_bytes(24),
        "channel_binding": secrets.token_bytes(32),
        "issued_at": issued_at,
        "expires_at": issued_at + TTL,
    }
    values.update(fields)
    return Challenge(**values)


def make_event(n: int = 0, **fields: Any) -> AuditEvent:
    values: dict[str, Any] = {
        "at": T0 + timedelta(seconds=n),
        "event": "verification",
        "outcome": Outcome.FAILURE if n % 2 else Outcome.SUCCESS,
        "client_id": ClientId(f"client-{n}"),
        "reason": "proof did not verify" if n % 2 else None,
        "remote_addr": f"192.0.2.{n % 250}",
        "detail": {"protocol_version": "1.0", "n": str(n)},
    }
    values.update(fields)
    return AuditEvent(**values)


def make_token(name: str = "ops", **fields: Any) -> tuple[str, AdminToken]:
    """Return a fresh secret admin token value and the record that stores only its hash."""
    value = secrets.token_urlsafe(32)
    values: dict[str, Any] = {
        "token_id": AdminTokenId(secrets.token_hex(8)),
        "name": name,
        "token_hash": hashlib.sha256(value.encode()).digest(),
        "created_at": T0,
    }
    values.update(fields)
    return value, AdminToken(**values)
