"""The public surface is explicit: every exported name exists, and nothing private leaks."""

from __future__ import annotations

import importlib

import pytest

PUBLIC_MODULES = ["zkauth.crypto", "zkauth.crypto.hazmat"]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_names_exist_and_are_public(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(exported) == len(set(exported))
    for member in exported:
        assert not member.startswith("_")
        assert hasattr(module, member), f"{name}.{member} is listed in __all__ but missing"


def test_safe_surface_does_not_export_hazardous_pieces() -> None:
    import zkauth.crypto

    assert "prove_with_nonces" not in zkauth.crypto.__all__
    assert "lp_transcript" not in zkauth.crypto.__all__
