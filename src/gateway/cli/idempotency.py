"""`gateway idempotency list|clear`: the de-duplicated calls, and clearing one whose outcome is unknown.

A call with an idempotency key whose run ended without a known outcome (the gateway stopped while
it ran, or the backend timed out) refuses every repeat, because it may have taken effect. Once an
operator has checked the backend, `clear` removes its record so the next call with that key runs;
`clear` also takes a finished record (to let a call run again within its window), but never the
record of a call still running, which would let a repeat run beside it. Each clearing is
an audit event (kind `console`, action `idempotency_cleared`, `via` "cli"), written on a chain of
the command's own, as `gateway approvals` does for decisions.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio

from gateway.cli.command_audit import command_audit
from gateway.cli.config_option import add_config_argument, load
from gateway.cli.output import print_table

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.coordination.idempotency_store import IdempotencyRecord

_STATES = ("executing", "succeeded", "unknown")
#: Who the audit log names for a clearing from the command line.
OPERATOR = "admin"


def build(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(title="idempotency", metavar="ACTION")
    listing = actions.add_parser("list", help="list de-duplicated calls, newest first")
    add_config_argument(listing)
    listing.add_argument("--state", choices=_STATES, help="only records in this state (unknown: repeats refused)")
    listing.add_argument("--limit", type=int, default=50, help="how many to list (default: 50, at most 500)")
    listing.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    listing.set_defaults(run=_list)
    clear = actions.add_parser(
        "clear", help="remove a record (after checking the backend) so the next call with its key runs"
    )
    add_config_argument(clear)
    clear.add_argument("record_id", help="the record's id, as shown by 'gateway idempotency list' or the agent's error")
    clear.add_argument("--reason", required=True, help="what was checked, and why it may run again; audited")
    clear.set_defaults(run=_clear)


def _list(args: argparse.Namespace) -> int:
    from gateway.coordination.idempotency_store import IdempotencyStore
    from gateway.executions import ExecutionState
    from gateway.storage.database import Database

    config = load(args, with_connectors=False)

    async def run() -> int:
        database = Database(config.gateway.storage.url)
        try:
            await database.migrate()
            store = IdempotencyStore(database, executor="cli")
            state = ExecutionState(args.state) if args.state else None
            records = await store.list(state=state, limit=args.limit)
        finally:
            await database.close()
        if args.json:
            for record in records:
                print(json.dumps(_json(record)))
            return 0
        rows = [
            [
                r.id,
                r.state.value,
                r.tool,
                r.key_shown[:60],
                r.agent,
                _when(r.created_at) or "-",
                _when(r.expires_at) or "-",
                str(r.replays),
            ]
            for r in records
        ]
        print_table(["ID", "STATE", "TOOL", "KEY", "AGENT", "STARTED", "EXPIRES", "REPLAYS"], rows)
        return 0

    return anyio.run(run)


def _clear(args: argparse.Namespace) -> int:
    if not args.reason.strip():
        print("gateway: --reason needs what was checked in the backend", file=sys.stderr)
        return 2
    config = load(args, with_connectors=False)
    return anyio.run(_cleared, config, args.record_id, args.reason)


async def _cleared(config: Config, record_id: str, reason: str) -> int:
    from gateway.coordination.idempotency_store import IdempotencyStore
    from gateway.storage.database import Database

    database = Database(config.gateway.storage.url)
    try:
        await database.migrate()
        store = IdempotencyStore(database, executor="cli")
        await store.get(record_id)  # unknown ids are refused before any audit chain is opened
        async with command_audit(database, config.gateway.audit) as recorder:
            record = await store.clear(record_id)
            await recorder.record_console_event(
                "idempotency_cleared",
                user=OPERATOR,
                via="cli",
                target=record.id,
                comment=reason,
                details={
                    "tool": record.tool,
                    "state": record.state.value,
                    "agent": record.agent,
                    "call_id": record.call_id,
                    "key": record.key_shown,
                },
            )
    finally:
        await database.close()
    print(
        f"Cleared idempotency record {record.id} ({record.tool}, {record.state.value}); "
        "the next call with its key runs."
    )
    return 0


def _json(record: IdempotencyRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "state": record.state.value,
        "tool": record.tool,
        "connector": record.connector,
        "key": record.key_shown,
        "agent": record.agent,
        "workflow": record.workflow,
        "call_id": record.call_id,
        "executor": record.executor,
        "created_at": _when(record.created_at),
        "finished_at": _when(record.finished_at),
        "expires_at": _when(record.expires_at),
        "result_bytes": len(record.result) if record.result is not None else None,
        "result_truncated": record.result_truncated,
        "replays": record.replays,
    }


def _when(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
