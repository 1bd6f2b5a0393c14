"""The lockout arithmetic of one attempt (SECURITY.md "A malicious client"), as a pure function."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from tests.storage.builders import T0, make_client
from zkauth.service.lockout import LockoutState, after_attempt
from zkauth.service.policy import Policy

_POLICY = Policy()


@given(
    failures=st.integers(min_value=0, max_value=_POLICY.lockout_threshold - 1),
    lockouts=st.integers(min_value=0, max_value=40),
    earlier_lock=st.booleans(),
)
def test_an_attempt_counts_locks_at_the_threshold_and_a_success_resets(
    failures: int, lockouts: int, earlier_lock: bool
) -> None:
    """A success resets both counters; a failure counts one more, and the one that reaches the
    threshold locks for the base duration doubled per earlier lockout (capped), counts the
    lockout and starts the failures again; an earlier lockout, over by now, stays as it was."""
    over = T0 - timedelta(minutes=1) if earlier_lock else None
    client = make_client(failed_attempts=failures, lockout_count=lockouts, locked_until=over)

    assert after_attempt(client, True, T0, _POLICY) == LockoutState(0, None, 0)

    state = after_attempt(client, False, T0, _POLICY)
    if failures + 1 < _POLICY.lockout_threshold:
        assert state == LockoutState(failures + 1, over, lockouts)
    else:
        doubled = min(_POLICY.lockout_base * 2 ** min(lockouts, 30), _POLICY.lockout_max)
        assert state == LockoutState(0, T0 + doubled, lockouts + 1, locks=True)


def test_the_third_failure_locks_for_an_hour_then_two_then_the_cap() -> None:
    client = make_client(failed_attempts=2)
    assert after_attempt(client, False, T0, _POLICY).locked_until == T0 + timedelta(hours=1)
    client = make_client(failed_attempts=2, lockout_count=1)
    assert after_attempt(client, False, T0, _POLICY).locked_until == T0 + timedelta(hours=2)
    client = make_client(failed_attempts=2, lockout_count=20)
    assert after_attempt(client, False, T0, _POLICY).locked_until == T0 + timedelta(days=30)
