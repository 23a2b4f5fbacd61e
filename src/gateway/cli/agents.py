"""`gateway agents list|suspend|resume`: the kill switch for one agent, straight in the database.

`suspend` stops every request of the agent on every gateway process: on PostgreSQL at once (the
command signals them, `agent_suspensions`), on SQLite within `[auth] suspension_poll_seconds`,
when each process next reads the suspensions. It also cancels the agent's pending approvals, so
its held calls end now with the reason (signalled as `approval_changed`, as `gateway approvals`
does). The agent's API keys are not touched: `resume` gives back exactly the access it had.

Like the deciding `gateway approvals` commands, a change writes its audit event on a chain of
its own (a fresh replica id and lease, closed cleanly before the command exits): the serving
gateway's chain belongs to the serving gateway. Who acted is `--by`, by default the account that
runs the command.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio

from gateway.cli.approvals import _never_opening_sealer
from gateway.cli.command_audit import command_audit
from gateway.cli.config_option import add_config_argument, load
from gateway.cli.output import print_table

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.coordination.suspensions import Suspension, SuspensionStore
    from gateway.storage.database import Database

#: How the audit event says a change was made.
VIA = "command line"


def build(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(title="agents", metavar="ACTION")
    listing = actions.add_parser("list", help="agents with keys, and every suspended agent: by whom, when and why")
    add_config_argument(listing)
    listing.add_argument("--suspended", action="store_true", help="only the suspended agents")
    listing.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    listing.set_defaults(run=_list)
    suspend = actions.add_parser(
        "suspend", help="refuse every request of an agent on every gateway process, and cancel its pending approvals"
    )
    add_config_argument(suspend)
    suspend.add_argument("agent", help="the agent's name, as it authenticates (it need not have connected yet)")
    suspend.add_argument("--reason", required=True, help="why; the agent is told it with every refusal")
    suspend.add_argument("--by", help="who suspends it, for the audit log (default: the account running this)")
    suspend.add_argument("--json", action="store_true", help="print JSON instead of text")
    suspend.set_defaults(run=_suspend)
    resume = actions.add_parser("resume", help="serve a suspended agent again, with the access it had")
    add_config_argument(resume)
    resume.add_argument("agent", help="the suspended agent's name")
    resume.add_argument("--comment", help="why; kept in the audit log")
    resume.add_argument("--by", help="who resumes it, for the audit log (default: the account running this)")
    resume.add_argument("--json", action="store_true", help="print JSON instead of text")
    resume.set_defaults(run=_resume)


# -- reading -----------------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    async def show(store: SuspensionStore, database: Database) -> int:
        from gateway.identity.api_keys import ApiKeyStore

        suspended = {suspension.agent: suspension for suspension in await store.active()}
        keys_in_use: dict[str, int] = {}
        for key in await ApiKeyStore(database, cache_seconds=0).list():
            keys_in_use[key.agent] = keys_in_use.get(key.agent, 0) + (0 if key.revoked else 1)
        names = sorted(suspended if args.suspended else {*suspended, *keys_in_use})
        if args.json:
            for name in names:
                print(json.dumps({"agent": name, "keys": keys_in_use.get(name, 0), **_state_json(suspended.get(name))}))
            return 0
        rows = []
        for name in names:
            suspension = suspended.get(name)
            rows.append(
                (
                    name,
                    "suspended" if suspension is not None else "active",
                    keys_in_use.get(name, 0),
                    suspension.suspended_by if suspension is not None else "-",
                    _when(suspension.suspended_at) if suspension is not None else "-",
                    suspension.reason if suspension is not None else "-",
                )
            )
        print_table(("AGENT", "STATE", "KEYS", "SUSPENDED BY", "SINCE", "REASON"), rows)
        if not names:
            print("gateway: no agent is suspended" if args.suspended else "gateway: no agents yet", file=sys.stderr)
        return 0

    return _run(args, show, audited=False)


# -- acting ------------------------------------------------------------------------------------


def _suspend(args: argparse.Namespace) -> int:
    async def suspend(store: SuspensionStore, database: Database) -> int:
        known = await _known(database, args.agent.strip())
        done = await store.suspend(args.agent, actor=_actor(args), reason=args.reason, details={"via": VIA})
        suspension = done.suspension
        if args.json:
            body = {
                **_state_json(suspension),
                "agent": suspension.agent,
                "known": known,
                "cancelled_approvals": list(done.cancelled_approvals),
            }
            print(json.dumps(body))
            return 0
        print(f"Suspended agent '{suspension.agent}': {suspension.describe()}.")
        kept = "; its API keys are kept for a resume" if known else ""
        print(f"Every request of it is refused on every gateway process{kept}.")
        if not known:
            print(
                f"No API key and no call in the audit log name '{suspension.agent}': check the name. "
                "It is refused from its first request."
            )
        if done.cancelled_approvals:
            print(
                f"Cancelled its {len(done.cancelled_approvals)} pending approval(s), with the reason: "
                + ", ".join(done.cancelled_approvals)
            )
        return 0

    return _run(args, suspend, audited=True)


def _resume(args: argparse.Namespace) -> int:
    async def resume(store: SuspensionStore, database: Database) -> int:
        ended = await store.resume(args.agent.strip(), actor=_actor(args), comment=args.comment, details={"via": VIA})
        if args.json:
            print(json.dumps({"agent": ended.agent, **_state_json(ended)}))
            return 0
        print(
            f"Resumed agent '{ended.agent}' (it was {ended.describe()}). "
            "Its requests are served again, with the keys and access it had."
        )
        return 0

    return _run(args, resume, audited=True)


def _actor(args: argparse.Namespace) -> str:
    by: str | None = args.by.strip() if args.by else None
    return by or getpass.getuser()


async def _known(database: Database, agent: str) -> bool:
    """Whether an API key or a recorded call names `agent`: a suspension of a mistyped name is worth a word."""
    from gateway.audit.query import search
    from gateway.identity.api_keys import ApiKeyStore

    if any(key.agent == agent for key in await ApiKeyStore(database, cache_seconds=0).list()):
        return True
    return bool((await search(database, agent=agent, limit=1)).calls)


# -- stores ------------------------------------------------------------------------------------


def _run(
    args: argparse.Namespace,
    action: Callable[[SuspensionStore, Database], Awaitable[int]],
    *,
    audited: bool,
) -> int:
    config = load(args, with_connectors=False)

    async def run() -> int:
        async with _stores(config, audited=audited) as (store, database):
            return await action(store, database)

    return anyio.run(run)


@asynccontextmanager
async def _stores(config: Config, *, audited: bool) -> AsyncIterator[tuple[SuspensionStore, Database]]:
    """The suspension store; with `audited`, able to cancel approvals, audit and signal what it changes."""
    from gateway.approvals import ApprovalStore
    from gateway.approvals.wakeups import ApprovalWakeups
    from gateway.coordination.suspensions import SuspensionStore
    from gateway.errors import GatewayError
    from gateway.signals import open_signals
    from gateway.storage.database import Database

    database = Database(config.gateway.storage.url)
    try:
        await database.migrate()
        if not audited:
            yield SuspensionStore(database), database
            return
        async with command_audit(database, config.gateway.audit) as recorder:
            approvals = ApprovalStore(
                database,
                _never_opening_sealer(),
                recorder=recorder,
                collect_within=timedelta(seconds=config.gateway.approvals.collect_within),
            )
            signals = open_signals(config.gateway.storage.url)
            wakeups = ApprovalWakeups(approvals, signals)
            store = SuspensionStore(database, recorder=recorder, approvals=approvals, signals=signals)
            refused: GatewayError | None = None
            # The broker runs while the command acts, so the suspension's signal goes out as it commits.
            async with anyio.create_task_group() as tasks:
                await tasks.start(signals.run)
                try:
                    yield store, database
                    await wakeups.flush()
                except GatewayError as exc:  # raised past the group below, not wrapped in an exception group
                    refused = exc
                finally:
                    tasks.cancel_scope.cancel()
            if refused is not None:
                raise refused
    finally:
        await database.close()


# -- printing ----------------------------------------------------------------------------------


def _state_json(suspension: Suspension | None) -> dict[str, Any]:
    if suspension is None:
        return {"suspended": False}
    return {
        "suspended": suspension.active,
        "suspended_by": suspension.suspended_by,
        "suspended_at": _when(suspension.suspended_at),
        "reason": suspension.reason,
        "resumed_by": suspension.resumed_by,
        "resumed_at": _when(suspension.resumed_at) if suspension.resumed_at is not None else None,
    }


def _when(moment: Any) -> str:
    from gateway.coordination.suspensions import when

    return when(moment)
