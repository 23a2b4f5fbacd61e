"""Running one command against the configured database, migrated first, closed after."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable

import anyio

from gateway.cli.config_option import load
from gateway.storage.database import Database


def with_database(args: argparse.Namespace, action: Callable[[Database], Awaitable[int]]) -> int:
    """The exit status of `action` on the database `--config` names; commands that need no backends."""
    config = load(args, with_connectors=False)

    async def run() -> int:
        database = Database(config.gateway.storage.url)
        try:
            await database.migrate()
            return await action(database)
        finally:
            await database.close()

    return anyio.run(run)
