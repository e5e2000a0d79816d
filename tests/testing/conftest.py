from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import requests

from airflow_provider_aidol.testing import AidolServer

from .signed_client import SignedClient

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="module")
def shared_server() -> Iterator[AidolServer]:
    """One server per module: stopping uvicorn takes ~0.2 s, too slow to pay for every test."""
    with AidolServer() as server:
        yield server


@pytest.fixture
def clean_shared_server(shared_server: AidolServer) -> AidolServer:
    """The module's server, forgetting everything earlier tests did (tests must not change settings)."""
    shared_server.reset()
    return shared_server


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture
def client(clean_shared_server: AidolServer, session: requests.Session) -> SignedClient:
    return SignedClient(clean_shared_server, session)


@pytest.fixture
def fresh_client(aidol_server: AidolServer, session: requests.Session) -> SignedClient:
    """A client of the plugin's fresh per-test server, for tests that change settings or leave work behind."""
    return SignedClient(aidol_server, session)
