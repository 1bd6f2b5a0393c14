"""The SDK's public surface is explicit, complete and free of private names."""

from __future__ import annotations

import zkauth.client
from zkauth import errors

EXPECTED = {
    "AsyncZkAuthClient",
    "Credential",
    "CredentialFile",
    "Enrollment",
    "EnrollmentRefused",
    "RateLimited",
    "Refused",
    "ServerError",
    "Session",
    "ZkAuth",
    "ZkAuthClient",
}


def test_all_lists_exactly_the_public_names() -> None:
    exported = zkauth.client.__all__
    assert len(exported) == len(set(exported))
    assert set(exported) == EXPECTED
    for name in exported:
        assert getattr(zkauth.client, name).__module__.startswith("zkauth.")


def test_errors_are_the_shared_zkauth_errors() -> None:
    assert zkauth.client.Refused is errors.Refused
    assert zkauth.client.RateLimited is errors.RateLimited
    assert issubclass(zkauth.client.ServerError, errors.ZkAuthError)
    assert issubclass(zkauth.client.EnrollmentRefused, errors.Conflict)
