"""Fixtures of the multi-process suite: one deployment (PostgreSQL database, Redis prefix, signing
key) and a pair of ``zkauth serve`` processes on it, shared by every test of the package.

Package scope, so the database is created and migrated once and the two servers start once
(about 1.5 s each). Tests stay independent anyway: each uses client identifiers of its own, and
the test that kills a process starts (and kills) one of its own rather than one of the pair.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from bench.server import ServerProcess

from tests.multiprocess.deployment import Deployment, deployment


@dataclass(frozen=True)
class Pair:
    """Two processes of one deployment: ``a`` and ``b``, both single-worker."""

    a: ServerProcess
    b: ServerProcess


@pytest.fixture(scope="package")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployment(tmp_path_factory.mktemp("multiprocess")) as deployed:
        yield deployed


@pytest.fixture(scope="package")
def pair(shared: Deployment) -> Iterator[Pair]:
    with shared.serve("a") as a, shared.serve("b") as b:
        yield Pair(a, b)
