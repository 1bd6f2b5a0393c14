"""Contract of AdminTokenStore: found by hash while active, revoked once."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

from tests.storage.builders import T0, make_token
from zkauth.errors import Conflict
from zkauth.service.models import AdminTokenId
from zkauth.service.ports import Stores

LATER = T0 + timedelta(days=1)


async def test_add_find_revoke(stores: Stores) -> None:
    value, token = make_token()
    _, other = make_token("other")
    await stores.admin_tokens.add(token)
    await stores.admin_tokens.add(other)

    found = await stores.admin_tokens.find_active(hashlib.sha256(value.encode()).digest())
    assert found == token
    assert found.created_at.utcoffset() == timedelta(0)

    assert await stores.admin_tokens.revoke(token.token_id, LATER) is True
    assert await stores.admin_tokens.find_active(token.token_hash) is None
    assert await stores.admin_tokens.revoke(token.token_id, LATER) is False
    assert await stores.admin_tokens.find_active(other.token_hash) == other


async def test_unknown_hash_and_id(stores: Stores) -> None:
    _, token = make_token()
    await stores.admin_tokens.add(token)

    assert await stores.admin_tokens.find_active(hashlib.sha256(b"guess").digest()) is None
    assert await stores.admin_tokens.revoke(AdminTokenId("nope"), LATER) is False


async def test_duplicate_id_or_hash_conflicts(stores: Stores) -> None:
    _, token = make_token()
    await stores.admin_tokens.add(token)
    _, same_id = make_token(token_id=token.token_id)
    _, same_hash = make_token(token_hash=token.token_hash)

    with pytest.raises(Conflict):
        await stores.admin_tokens.add(same_id)
    with pytest.raises(Conflict):
        await stores.admin_tokens.add(same_hash)
    assert await stores.admin_tokens.find_active(token.token_hash) == token


async def test_any_active_tracks_unrevoked_tokens(stores: Stores) -> None:
    assert await stores.admin_tokens.any_active() is False
    _, first = make_token()
    _, second = make_token("second")
    await stores.admin_tokens.add(first)
    await stores.admin_tokens.add(second)
    assert await stores.admin_tokens.any_active() is True

    await stores.admin_tokens.revoke(first.token_id, LATER)
    assert await stores.admin_tokens.any_active() is True
    await stores.admin_tokens.revoke(second.token_id, LATER)
    assert await stores.admin_tokens.any_active() is False
