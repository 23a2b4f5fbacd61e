"""`gateway migrate`: the database schema created or brought up to date, and what was done said.

The other commands migrate on their own as they open the database; this one exists so an
operator can do it ahead of a rollout, and see which revision the database is at.
"""

from __future__ import annotations

import argparse

import anyio

from gateway.cli.config_option import add_config_argument, load


def build(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.set_defaults(run=_migrate)


def _migrate(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    from gateway.storage.database import migrate_database

    config = load(args, with_connectors=False)

    async def migrate() -> int:
        change = await migrate_database(config.gateway.storage.url)
        print(change.describe(make_url(config.gateway.storage.url).render_as_string(hide_password=True)))
        return 0

    return anyio.run(migrate)
