"""The catalog's memory across restarts: each backend's last listing, in the database.

At start the gateway seeds the catalog from here before any backend answers, so a backend that
is down at start keeps its tools (calls to them answer that the backend is unavailable) and the
access policies that name them still validate. Every live listing replaces the stored one.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import orjson
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from gateway.connectors.base import Listing
from gateway.errors import StorageUnavailable
from gateway.storage.database import Database
from gateway.storage.tables import CatalogListingRow

logger = logging.getLogger(__name__)


async def load_listings(database: Database) -> dict[str, Listing]:
    async with database.session() as session:
        rows = (await session.execute(select(CatalogListingRow))).scalars().all()
    listings: dict[str, Listing] = {}
    for row in rows:
        try:
            data = orjson.loads(row.listing)
            listings[row.connector] = Listing(
                tools=tuple(data.get("tools", ())),
                resources=tuple(data.get("resources", ())),
                resource_templates=tuple(data.get("resource_templates", ())),
                prompts=tuple(data.get("prompts", ())),
                capabilities=data.get("capabilities", {}),
            )
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            logger.warning("stored listing is unreadable; ignored", extra={"connector": row.connector})
    return listings


#: Stores of one listing racing with other processes' (several workers starting at once) before giving up.
_SAVE_ATTEMPTS = 3


async def save_listing(database: Database, connector: str, listing: Listing) -> None:
    """Replace the stored listing; a storage failure is logged, never raised (the live one still works)."""
    payload = orjson.dumps(
        {
            "tools": listing.tools,
            "resources": listing.resources,
            "resource_templates": listing.resource_templates,
            "prompts": listing.prompts,
            "capabilities": dict(listing.capabilities),
        }
    ).decode()
    for attempt in range(_SAVE_ATTEMPTS):
        try:
            async with database.session() as session, session.begin():
                await session.execute(delete(CatalogListingRow).where(CatalogListingRow.connector == connector))
                session.add(CatalogListingRow(connector=connector, listing=payload, updated_at=datetime.now(UTC)))
            return
        except IntegrityError:
            # Another process (a worker started at the same moment) stored this connector's listing
            # between our delete and insert: store ours over it, as the later of the two.
            if attempt + 1 == _SAVE_ATTEMPTS:
                logger.warning("listing not stored: other processes kept storing it", extra={"connector": connector})
        except StorageUnavailable as exc:
            logger.warning("listing not stored", extra={"connector": connector, "error": str(exc)})
            return
