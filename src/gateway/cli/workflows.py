"""`gateway workflows list|show`: what agents did together, workflow by workflow.

Read from the database the gateway writes (`coordination.workflows.WorkflowStore`): the steps
are the audit log's calls, with their notes, shared result summaries and open approvals. Any
process with the configuration can read them; nothing here changes a workflow.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio

from gateway.cli.config_option import add_config_argument, load
from gateway.cli.output import print_table, printable

if TYPE_CHECKING:
    from gateway.coordination.workflows import WorkflowStore, WorkflowTimeline

_TIME_HELP = "ISO 8601 time (UTC unless a zone is given) or a duration ago, e.g. 15m, 12h, 7d"


def build(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(title="workflows", metavar="ACTION")
    listing = actions.add_parser("list", help="recent workflows, most recent activity first")
    add_config_argument(listing)
    listing.add_argument("--agent", help="only workflows this agent made calls in")
    listing.add_argument("--since", help=f"only workflows active since then: {_TIME_HELP}")
    listing.add_argument("--limit", type=int, default=50, help="how many to list (default: 50, at most 500)")
    listing.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    listing.set_defaults(run=_list)
    show = actions.add_parser("show", help="one workflow's timeline: agents, steps, notes, pending approvals")
    add_config_argument(show)
    show.add_argument("workflow", help="the workflow id, as 'gateway workflows list' shows it")
    show.add_argument("--limit", type=int, default=200, help="latest steps and notes to show (default: 200)")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    show.set_defaults(run=_show)


def _run(args: argparse.Namespace, job: Callable[[WorkflowStore], Awaitable[int]]) -> int:
    from gateway.coordination.workflows import WorkflowStore
    from gateway.storage import Database

    async def run() -> int:
        database = Database(load(args, with_connectors=False).gateway.storage.url)
        try:
            await database.migrate()
            return await job(WorkflowStore(database))
        finally:
            await database.close()

    return int(anyio.run(run))


def _list(args: argparse.Namespace) -> int:
    from gateway.audit.query import parse_time
    from gateway.coordination.workflows import iso

    if not 1 <= args.limit <= 500:
        raise SystemExit("gateway: --limit must be from 1 to 500")
    try:
        since = parse_time(args.since) if args.since else None
    except ValueError as exc:
        raise SystemExit(f"gateway: --since: {exc}") from None

    async def job(store: WorkflowStore) -> int:
        found = await store.recent(agent=args.agent, since=since, limit=args.limit)
        if args.json:
            for summary in found:
                print(json.dumps(summary.to_json()))
            return 0
        rows = [
            (s.id, ", ".join(s.agents) or "-", s.steps, iso(s.last_activity), s.pending_approvals or "-") for s in found
        ]
        print_table(("WORKFLOW", "AGENTS", "STEPS", "LAST ACTIVITY", "PENDING"), rows)
        return 0

    return _run(args, job)


def _show(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 1000:
        raise SystemExit("gateway: --limit must be from 1 to 1000")

    async def job(store: WorkflowStore) -> int:
        timeline = await store.timeline(args.workflow, limit=args.limit)
        if timeline.empty:
            raise SystemExit(
                f"gateway: no workflow '{args.workflow}': no call, note or approval names it "
                "(see 'gateway workflows list')"
            )
        if args.json:
            print(json.dumps(timeline.to_json(), indent=2))
        else:
            _print_timeline(timeline)
        return 0

    return _run(args, job)


def _print_timeline(timeline: WorkflowTimeline) -> None:
    from gateway.coordination.workflows import iso

    print(f"Workflow {timeline.id}")
    print(f"Agents:  {', '.join(timeline.agents) or '-'}")
    shown = f" (the latest {len(timeline.steps)} shown)" if timeline.truncated else ""
    print(f"Steps:   {timeline.total_steps}{shown}")
    if timeline.steps:
        print()
        rows = [
            (
                iso(step.time),
                step.agent or "-",
                step.tool or "-",
                step.decision or "-",
                step.outcome or "(none yet)",
                step.summary or (step.reason if step.decision not in ("allow", None) else "") or "",
            )
            for step in timeline.steps
        ]
        print_table(("TIME", "AGENT", "TOOL", "DECISION", "OUTCOME", "SUMMARY / REASON"), rows)
    if timeline.notes:
        print("\nNotes:")
        for note in timeline.notes:
            print(f"  {iso(note.time)}  {note.agent}: {printable(note.text)}")
    if timeline.pending:
        print("\nPending approval:")
        for approval in timeline.pending:
            print(
                f"  {approval.id}  {approval.tool} by {approval.agent}: {approval.state}, "
                f"approvers {', '.join(approval.approvers)}, expires {iso(approval.expires_at)}"
            )
