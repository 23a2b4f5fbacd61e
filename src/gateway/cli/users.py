"""`gateway users create|list|disable|key|revoke`: the people who approve held calls, and their keys.

People are not agents: their keys (`agu_…`) are kept apart from agents' API keys, and only they
can vote on held calls (`gateway approvals`). A key is printed once, by `create` or `key`: the
database keeps only its hash. Users are disabled, never deleted, so a name keeps naming one
person in every vote and audit event.
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
    from gateway.identity.users import UserKey, UserRecord, UserStore


def build(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(title="users", metavar="ACTION")
    create = actions.add_parser("create", help="create a user with a first key; the key is printed once")
    add_config_argument(create)
    create.add_argument("name", help="the person's name, as approvers' `user:NAME` entries name them")
    create.add_argument("--role", action="append", default=[], help="role of the person (repeatable)")
    create.add_argument("--json", action="store_true", help="print JSON instead of text")
    create.set_defaults(run=_create)
    listing = actions.add_parser("list", help="list users and their keys (never the secrets)")
    add_config_argument(listing)
    listing.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    listing.set_defaults(run=_list)
    disable = actions.add_parser("disable", help="disable a user: none of their keys works any more")
    add_config_argument(disable)
    disable.add_argument("name", help="the user's name")
    disable.set_defaults(run=_disable)
    key = actions.add_parser("key", help="issue another key for a user; the key is printed once")
    add_config_argument(key)
    key.add_argument("name", help="the user's name")
    key.add_argument("--json", action="store_true", help="print JSON instead of text")
    key.set_defaults(run=_key)
    revoke = actions.add_parser("revoke", help="revoke a user key by its id")
    add_config_argument(revoke)
    revoke.add_argument("key_id", help="the key's id, as shown by 'gateway users list'")
    revoke.set_defaults(run=_revoke)


def _with_store(args: argparse.Namespace, action: Callable[[UserStore], Awaitable[int]]) -> int:
    from gateway.identity.users import UserStore

    return with_database(args, lambda database: action(UserStore(database)))


def _create(args: argparse.Namespace) -> int:
    async def create(store: UserStore) -> int:
        try:
            user, key = await store.create(args.name, args.role)
        except ValueError as exc:
            print(f"gateway: {exc}", file=sys.stderr)
            return 2
        if args.json:
            print(json.dumps({"id": user.id, "name": user.name, "roles": list(user.roles), "key": key}))
        else:
            print(f"Created user '{user.name}' ({user.id}, roles: {', '.join(user.roles) or '-'}).")
            print("Give them this key now; it is not shown again:")
            print(key)
        return 0

    return _with_store(args, create)


def _list(args: argparse.Namespace) -> int:
    async def show(store: UserStore) -> int:
        records = await store.list()
        if args.json:
            for record in records:
                print(json.dumps(_record_json(record)))
            return 0
        rows = [
            (
                r.user.id,
                r.user.name,
                ",".join(r.user.roles) or "-",
                ",".join(f"{k.id}({k.prefix}…)" for k in r.keys if not k.revoked) or "-",
                _when(r.created_at),
                _when(r.disabled_at) or "active",
            )
            for r in records
        ]
        print_table(("ID", "NAME", "ROLES", "KEYS", "CREATED", "DISABLED"), rows)
        return 0

    return _with_store(args, show)


def _disable(args: argparse.Namespace) -> int:
    async def disable(store: UserStore) -> int:
        record = await store.disable(args.name)
        print(f"Disabled user '{record.user.name}' ({record.user.id}); none of their keys works any more.")
        return 0

    return _with_store(args, disable)


def _key(args: argparse.Namespace) -> int:
    async def issue(store: UserStore) -> int:
        key, secret = await store.add_key(args.name)
        if args.json:
            print(json.dumps({**_key_json(key), "key": secret}))
        else:
            print(f"Created key {key.id} for user '{key.user}'.")
            print("Give them this key now; it is not shown again:")
            print(secret)
        return 0

    return _with_store(args, issue)


def _revoke(args: argparse.Namespace) -> int:
    async def revoke(store: UserStore) -> int:
        key = await store.revoke_key(args.key_id)
        print(f"Revoked key {key.id} of user '{key.user}'.")
        return 0

    return _with_store(args, revoke)


def _record_json(record: UserRecord) -> dict[str, Any]:
    return {
        "id": record.user.id,
        "name": record.user.name,
        "roles": list(record.user.roles),
        "created_at": _when(record.created_at),
        "disabled_at": _when(record.disabled_at),
        "keys": [_key_json(key) for key in record.keys],
    }


def _key_json(key: UserKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "user": key.user,
        "prefix": key.prefix,
        "created_at": _when(key.created_at),
        "revoked_at": _when(key.revoked_at),
    }


def _when(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None
