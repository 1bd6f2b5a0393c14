"""The integration surface is explicit: every exported name exists and is public."""

from __future__ import annotations

import zkauth.integrations


def test_all_names_exist_and_are_public() -> None:
    exported = zkauth.integrations.__all__
    assert len(exported) == len(set(exported))
    for name in exported:
        assert not name.startswith("_")
        assert hasattr(zkauth.integrations, name), name


def test_the_surface_is_what_the_readme_shows() -> None:
    assert set(zkauth.integrations.__all__) == {
        "Introspection",
        "JwksCache",
        "KeySet",
        "TokenClaims",
        "ZkAuthDependency",
        "ZkAuthMiddleware",
        "ZkAuthProblem",
        "ZkAuthTokens",
        "zkauth_problem_handler",
    }
