"""Who may attempt a proof, and what a failed proof costs (SECURITY.md "A malicious client").

``lockout_threshold`` consecutive failures lock a client for ``lockout_base``, doubling with each
further lockout; a success resets both counters. Only the real owner can succeed, and keeping the
doubling across successes would let an attacker push a victim's lockouts towards the cap; an
attacker who never succeeds does face the doubling. A locked client is refused exactly like an
unknown one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from zkauth.service.models import Client, ClientStatus
from zkauth.service.policy import Policy


def refusal_for(client: Client | None, now: datetime) -> str | None:
    """The audit reason this client may not log in at ``now``, or ``None`` if it may."""
    if client is None:
        return "unknown_client"
    if client.status is ClientStatus.REVOKED:
        return "revoked"
    if client.locked_until is not None and now < client.locked_until:
        return "locked"
    return None


@dataclass(frozen=True, slots=True)
class LockoutState:
    """A client's lockout counters after an attempt (``ClientStore.save_lockout_state``), and
    whether the attempt locked it."""

    failed_attempts: int
    locked_until: datetime | None
    lockout_count: int
    locks: bool = False


def after_attempt(client: Client, succeeded: bool, now: datetime, policy: Policy) -> LockoutState:
    """The counters after one attempt of ``client`` (as read before it) on its live challenge.

    A failure counts one more (an earlier lockout, over by now, stays as it was); reaching the
    threshold locks the client. A success resets both counters: always one write, also when
    there is nothing to reset, since a failed proof costs one write too, and the two must not
    be told apart by time. Exact because a client's attempts never overlap: one live challenge
    at a time, the next issued only once the attempt on the one before has committed (or has
    failed to take its challenge, keeping nothing)."""
    if succeeded:
        return LockoutState(0, None, 0)
    failures = client.failed_attempts + 1
    if failures < policy.lockout_threshold:
        return LockoutState(failures, client.locked_until, client.lockout_count)
    until = now + policy.lockout_duration(client.lockout_count)
    return LockoutState(0, until, client.lockout_count + 1, locks=True)
