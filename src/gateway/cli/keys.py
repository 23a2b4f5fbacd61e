"""`gateway keys create|list|revoke`: agents' API keys, administered straight in the database.

The plain key is printed once, by `create`: the database keeps only its hash, so no later
command can show it. A gateway already serving needs no restart to honour a revocation: it
follows them in the database (`gateway.identity.api_keys`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gateway.cli.config_option import add_config_argument
from gateway.cli.database import with_database
from gateway.cli.output import print_table

if TYPE_CHECKING:
    from gateway.identity.api_keys import ApiKeyRecord, ApiKeyStore


def build(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(title="keys", metavar="ACTION")
    create = actions.add_parser("create", help="create a key for an agent; the key is printed once")
    add_config_argument(create)
    create.add_argument("--agent", required=True, help="agent identity the key authenticates as")
    create.add_argument("--role", action="append", default=[], help="role of the agent (repeatable)")
    create.add_argument("--description", help="free text, e.g. where the key is deployed")
    create.add_argument("--json", action="store_true", help="print JSON instead of text")
    create.set_defaults(run=_create)
    listing = actions.add_parser("list", help="list keys (never the secrets)")
    add_config_argument(listing)
    listing.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    listing.set_defaults(run=_list)
    revoke = actions.add_parser("revoke", help="revoke a key by its id")
    add_config_argument(revoke)
    revoke.add_argument("key_id", help="the key's id, as shown by 'gateway keys list'")
    revoke.set_defaults(run=_revoke)


def _with_store(args: argparse.Namespace, action: Callable[[ApiKeyStore], Awaitable[int]]) -> int:
    from gateway.identity.api_keys import ApiKeyStore

    return with_database(args, lambda database: action(ApiKeyStore(database, cache_seconds=0)))


def _create(args: argparse.Namespace) -> int:
    async def create(store: ApiKeyStore) -> int:
        try:
            record, key = await store.create(args.agent, args.role, args.description)
        except ValueError as exc:
            print(f"gateway: {exc}", file=sys.stderr)
            return 2
        if args.json:
            print(json.dumps({**_record_json(record), "key": key}))
        else:
            print(f"Created key {record.id} for agent '{record.agent}' (roles: {', '.join(record.roles) or '-'}).")
            print("Store it now; it is not shown again:")
            print(key)
        return 0

    return _with_store(args, create)


def _list(args: argparse.Namespace) -> int:
    async def show(store: ApiKeyStore) -> int:
        records = await store.list()
        if args.json:
            for record in records:
                print(json.dumps(_record_json(record)))
            return 0
        rows = [
            (
                r.id,
                r.agent,
                ",".join(r.roles) or "-",
                r.prefix + "…",
                _when(r.created_at),
                _when(r.revoked_at) or "active",
            )
            for r in records
        ]
        print_table(("ID", "AGENT", "ROLES", "KEY", "CREATED", "REVOKED"), rows)
        return 0

    return _with_store(args, show)


def _revoke(args: argparse.Namespace) -> int:
    async def revoke(store: ApiKeyStore) -> int:
        try:
            record = await store.revoke(args.key_id)
        except (KeyError, ValueError, LookupError) as exc:
            print(f"gateway: {exc.args[0] if exc.args else exc}", file=sys.stderr)
            return 1
        print(f"Revoked key {record.id} of agent '{record.agent}'.")
        return 0

    return _with_store(args, revoke)


def _record_json(record: ApiKeyRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "agent": record.agent,
        "roles": list(record.roles),
        "prefix": record.prefix,
        "description": record.description,
        "created_at": _when(record.created_at),
        "revoked_at": _when(record.revoked_at),
    }


def _when(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None
