"""Who may attempt a proof, and what a failed proof costs (DESIGN.md "Security behaviour").

``lockout_threshold`` consecutive failures lock a client for ``lockout_base``, doubling with each
further lockout; a success resets both counters. Only the real owner can succeed, and keeping the
doubling across successes would let an attacker push a victim's lockouts towards the cap; an
attacker who never succeeds does face the doubling. A locked client is refused exactly like an
unknown one.
"""

from __future__ import annotations

from datetime import datetime

from zkauth.service.models import Client, ClientStatus
from zkauth.service.policy import Policy
from zkauth.service.ports import ClientStore


def refusal_for(client: Client | None, now: datetime) -> str | None:
    """The audit reason this client may not log in at ``now``, or ``None`` if it may."""
    if client is None:
        return "unknown_client"
    if client.status is ClientStatus.REVOKED:
        return "revoked"
    if client.locked_until is not None and now < client.locked_until:
        return "locked"
    return None


async def record_failure(
    clients: ClientStore, client: Client, now: datetime, policy: Policy
) -> bool:
    """Count one failed proof; lock the client when it reaches the threshold. True if locked."""
    failures = await clients.record_failure(client.client_id)
    if failures < policy.lockout_threshold:
        return False
    until = now + policy.lockout_duration(client.lockout_count)
    await clients.save_lockout_state(client.client_id, 0, until, client.lockout_count + 1)
    return True


async def record_success(clients: ClientStore, client: Client) -> None:
    """Reset the counters after a successful proof. Always one write, also when there is nothing
    to reset: a failed proof costs one write too, and the two must not be told apart by time."""
    await clients.save_lockout_state(client.client_id, 0, None, 0)
