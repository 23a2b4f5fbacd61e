"""`gateway tools pending | diff | accept`: review the tool definitions the gateway withholds.

They read the database, not the backends: a quarantined tool's current definition is stored
with its review, so an admin can review from any machine that reaches the database. `accept`
writes its own audit chain (never the serving gateway's, like `gateway agents suspend`), and on
PostgreSQL signals the running gateways so they serve the tool at once; on SQLite the gateway
reads the change within `[catalog] review_poll_seconds`. Who accepted is `--by`, by default the
account that runs the command.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio

from gateway.cli.command_audit import command_audit
from gateway.cli.config_option import add_config_argument, load
from gateway.cli.output import print_table, printable
from gateway.config import Config
from gateway.errors import GatewayError, NothingToAccept

if TYPE_CHECKING:  # imported where used: the catalog loads the connectors, which check the mcp SDK as they load
    from gateway.catalog.pins import Key, Review
    from gateway.pinning import PinKeeper

VIA = "cli"


def build(actions: Any) -> None:
    """Add `pending`, `diff` and `accept` to the `tools` actions."""
    pending = actions.add_parser("pending", help="list the tools withheld until an admin accepts them")
    add_config_argument(pending)
    pending.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    pending.set_defaults(run=_pending)
    diff = actions.add_parser("diff", help="show how a withheld tool's definition differs from the accepted one")
    add_config_argument(diff)
    diff.add_argument("name", help="the exposed tool name, as `tools pending` shows it")
    diff.set_defaults(run=_diff)
    accept = actions.add_parser("accept", help="accept a withheld tool's current definition (audited)")
    add_config_argument(accept)
    accept.add_argument("name", nargs="?", help="the exposed tool name, as `tools pending` shows it")
    accept.add_argument("--all-pending", action="store_true", help="accept every withheld tool")
    accept.add_argument("--reason", required=True, help="why it is accepted, kept in the audit log")
    accept.add_argument("--by", help="who accepts it, for the audit log (default: the account running this)")
    accept.set_defaults(run=_accept)


def _state(review: Review) -> str:
    return "quarantined (changed)" if review.state == "changed" else "held (new)"


def _pending(args: argparse.Namespace) -> int:
    async def show(keeper: PinKeeper) -> int:
        reviews = sorted(keeper.book.state.reviews.items(), key=lambda item: keeper.exposed(item[0]))
        if args.json:
            for key, review in reviews:
                print(json.dumps(_review_json(keeper, key, review)))
            return 0
        if not reviews:
            print("No tool is waiting for review.")
            return 0
        print_table(
            ("EXPOSED NAME", "CONNECTOR", "STATE", "SEEN", "FLAGS"),
            [
                (keeper.exposed(key), key[0], _state(review), review.seen_at.isoformat()[:19], len(review.flags))
                for key, review in reviews
            ],
        )
        for key, review in reviews:
            for flag in review.flags:
                print(printable(f"{keeper.exposed(key)}: flag: {flag.sentence()}"))
        print("Review one with `gateway tools diff NAME`; accept it with `gateway tools accept NAME --reason ...`.")
        return 0

    return _run(args, show, audited=False)


def _review_json(keeper: PinKeeper, key: Key, review: Review) -> dict[str, Any]:
    pin = keeper.book.state.pins.get(key)
    return {
        "exposed": keeper.exposed(key),
        "connector": key[0],
        "tool": key[1],
        "state": "quarantined" if review.state == "changed" else "held",
        "seen_at": review.seen_at.isoformat(),
        "digest": review.digest,
        "accepted_digest": pin.digest if pin is not None else None,
        "flags": [flag.as_json() for flag in review.flags],
    }


def _diff(args: argparse.Namespace) -> int:
    async def show(keeper: PinKeeper) -> int:
        review = keeper.find(args.name)
        key = (review.connector, review.tool)
        pin = keeper.book.state.pins.get(key)
        exposed = keeper.exposed(key)
        print(f"{exposed}: {_state(review)}, listed since {review.seen_at.isoformat()[:19]}")
        if pin is not None:
            print(f"accepted by {pin.accepted_by} at {pin.accepted_at.isoformat()[:19]} ({pin.reason or 'no reason'})")
        from gateway.catalog.definitions import definition_diff

        for line in definition_diff(pin.definition if pin is not None else None, review.definition, name=exposed):
            print(printable(line))
        if review.flags:
            print("Flags (instructions aimed at the model? shown, never rewritten):")
            for flag in review.flags:
                print(printable(f"  - {flag.sentence()}"))
        else:
            print("Flags: none")
        return 0

    return _run(args, show, audited=False)


def _accept(args: argparse.Namespace) -> int:
    if bool(args.name) == bool(args.all_pending):
        print("gateway: name one tool, or give --all-pending", file=sys.stderr)
        return 2
    actor = (args.by or "").strip() or getpass.getuser()

    async def accept(keeper: PinKeeper) -> int:
        if args.all_pending:
            names = sorted(keeper.exposed(key) for key in keeper.book.state.reviews)
            if not names:
                raise NothingToAccept("no tool is waiting for review")
        else:
            names = [args.name]
        for name in names:
            review = await keeper.accept(name, actor=actor, reason=args.reason)
            what = "changed" if review.state == "changed" else "new"
            print(f"Accepted {name} ({what} definition {review.digest[:12]}).")
        print("Gateways serve it from their next read of the pins (at once on PostgreSQL).")
        return 0

    return _run(args, accept, audited=True)


def _run(args: argparse.Namespace, action: Callable[[PinKeeper], Awaitable[int]], *, audited: bool) -> int:
    config = load(args, with_connectors=False)

    async def run() -> int:
        async with _keeper(config, audited=audited) as keeper:
            await keeper.load()
            try:
                return await action(keeper)
            except GatewayError as exc:
                refused = exc
        # Raised outside the keeper's task group, so it is not wrapped in an exception group and
        # the command prints its sentence rather than a traceback.
        raise refused

    return anyio.run(run)


@asynccontextmanager
async def _keeper(config: Config, *, audited: bool) -> AsyncIterator[PinKeeper]:
    """A keeper on the configured database; with `audited`, with an audit chain of its own and signals."""
    from gateway.catalog.pins import PinBook
    from gateway.pinning import PinKeeper, PinStore
    from gateway.signals import open_signals
    from gateway.storage.database import Database

    database = Database(config.gateway.storage.url)
    book = PinBook(lambda connector: config.gateway.catalog.new_tools)
    separator = config.gateway.server.name_separator
    try:
        await database.migrate()
        store = PinStore(database)
        if not audited:
            yield PinKeeper(store, book, config.gateway.catalog, separator=separator)
            return
        async with command_audit(database, config.gateway.audit) as recorder:
            signals = open_signals(config.gateway.storage.url)
            async with anyio.create_task_group() as tasks:
                await tasks.start(signals.run)
                try:
                    yield PinKeeper(
                        store,
                        book,
                        config.gateway.catalog,
                        separator=separator,
                        recorder=recorder,
                        publish=signals.publish,
                    )
                finally:
                    tasks.cancel_scope.cancel()
    finally:
        await database.close()
