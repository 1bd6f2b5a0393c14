"""The decoy: stand-in records that refusal paths work on, so they cost what accepted paths cost.

An accepted login writes the client's lockout counters, signs a token and so on; a refusal for
an unknown, revoked or locked client has nothing real to write. Skipping the work would make
those refusals measurably faster (an enumeration oracle, tests/red_team/ATTACKS.md item 30), so
they do the same work on the decoy instead: a client row whose identifier is outside the
identifier syntax (``~`` is not allowed), so no request can ever name, enroll, log in as or
revoke it.
"""

from __future__ import annotations

from typing import Final

from zkauth.crypto import Credential
from zkauth.service.models import Client, ClientId, ClientStatus
from zkauth.service.ports import ClientStore, Clock

DECOY_CLIENT_ID: Final = ClientId("~decoy")
#: The decoy's failure counter is reset before it could overflow a 32-bit column.
_RESET_AT: Final = 1_000_000


async def ensure_decoy(clients: ClientStore, clock: Clock) -> None:
    """Create the decoy row if this database has none yet (idempotent, race-safe: ``create``
    is atomic and a second process simply finds it there)."""
    if await clients.get(DECOY_CLIENT_ID) is not None:
        return
    now = clock.now()
    await clients.create(
        Client(
            client_id=DECOY_CLIENT_ID,
            reference_id="00000000-0000-0000-0000-000000000000",
            # Nobody keeps the opening: the process forgets it right here.
            commitment=Credential.generate().commitment.encode(),
            created_at=now,
            updated_at=now,
            status=ClientStatus.REVOKED,
            revoked_at=now,
        )
    )


async def decoy_failure(clients: ClientStore) -> None:
    """The write a failed proof costs (``record_failure``), spent on the decoy."""
    if await clients.record_failure(DECOY_CLIENT_ID) >= _RESET_AT:
        await clients.save_lockout_state(DECOY_CLIENT_ID, 0, None, 0)
