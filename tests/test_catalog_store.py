"""Stored listings: what a gateway offers before its backends answer, written by every process that lists."""

from __future__ import annotations

import anyio
import pytest

from gateway.catalog.store import load_listings, save_listing
from gateway.connectors.base import Listing
from gateway.storage import Database

pytestmark = pytest.mark.anyio


async def test_processes_storing_one_connectors_listing_at_once_all_succeed(database: Database) -> None:
    """Workers that start together list the same backends at the same moment: none may fail to start over it."""
    listings = [Listing(tools=({"name": f"tool_{n}", "inputSchema": {"type": "object"}},)) for n in range(8)]
    async with anyio.create_task_group() as group:
        for listing in listings:
            group.start_soon(save_listing, database, "crm", listing)
    stored = await load_listings(database)
    assert list(stored) == ["crm"] and stored["crm"] in listings
