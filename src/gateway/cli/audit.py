"""`gateway audit tail|search|export|verify|checkpoints|prune`: the audit log from a shell.

`gateway.audit` does the reading, verifying, exporting and pruning; this module parses the
options, prints results on stdout and diagnostics on stderr, and returns the exit status
(`verify` returns 1 when the log is not intact). Gateway errors propagate to `main`, which
prints them in one place.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial

import anyio
import orjson

from gateway.audit.chain import isoformat, load_public_key
from gateway.audit.checkpoints import export_checkpoints, load_checkpoints
from gateway.audit.entry import (
    APPROVAL,
    AUTH_REFUSED,
    CALL,
    CONSOLE,
    OUTCOME,
    OUTCOMES,
    RECOVERED,
    SUSPENSION,
    TOOL_PIN,
    AuditCall,
    AuditEvent,
)
from gateway.audit.export import export
from gateway.audit.query import parse_duration, parse_time, search, search_events, tail
from gateway.audit.retention import prune
from gateway.audit.verify import verify
from gateway.cli.config_option import add_config_argument, load
from gateway.cli.output import print_table
from gateway.storage.database import Database

OpenDatabase = Callable[[argparse.Namespace], Database]

_TIME_HELP = "ISO 8601 time (UTC unless a zone is given) or a duration ago, e.g. 15m, 12h, 7d"

#: `audit search --kind`: what a user asks for, and the events that holds.
_SEARCH_KINDS = {
    "call": CALL,
    "auth": AUTH_REFUSED,
    "recovered": RECOVERED,
    "approval": APPROVAL,
    "console": CONSOLE,
    "suspension": SUSPENSION,
    "tool_pin": TOOL_PIN,
}
#: Filters that only calls carry, by their option name.
_CALL_FILTERS = ("agent", "user", "tool", "decision", "outcome", "workflow", "text")


def _configured_database(args: argparse.Namespace) -> Database:
    return Database(load(args, with_connectors=False).gateway.storage.url)


def build(parser: argparse.ArgumentParser, open_database: OpenDatabase = _configured_database) -> None:
    """Add the audit actions to `parser`; each sets `run(args) -> int`.

    The database comes from `open_database(args)`, the one named by `--config` unless a caller
    passes its own: the actions then run in-process against any database, as the tests do.
    """
    actions = parser.add_subparsers(title="audit", metavar="ACTION")

    def action(name: str, help: str, run: Callable[[OpenDatabase, argparse.Namespace], int]) -> argparse.ArgumentParser:
        subparser = actions.add_parser(name, help=help, description=help)
        add_config_argument(subparser)
        subparser.set_defaults(run=partial(run, open_database))
        return subparser

    tail_parser = action("tail", "show the newest calls and outcomes, then follow new ones", _tail)
    tail_parser.add_argument("--no-follow", dest="follow", action="store_false", help="stop after the backlog")
    tail_parser.add_argument("-n", "--lines", type=int, default=10, help="how many recent events to show first")
    tail_parser.add_argument("--json", action="store_true", help="print JSON lines instead of text")

    search_parser = action("search", "find calls (newest first) with their outcomes, or other recorded events", _search)
    search_parser.add_argument(
        "--kind",
        choices=tuple(_SEARCH_KINDS),
        default="call",
        help="what to find: call (default: calls with their outcomes), auth (refused authentications: "
        "time, client address, reason, never the credential), recovered (calls a stopped process left open, "
        "closed with the outcome 'unknown'), approval (held calls' approvals: each change, vote and override, "
        "with who and their comment), console (what people did in the web console: sign-ins, decisions, "
        "key and user changes), suspension (agents suspended and resumed: by whom and why)",
    )
    search_parser.add_argument("--agent")
    search_parser.add_argument("--user", help="the user the agent acted for")
    search_parser.add_argument("--tool", help="exposed tool (or resource/prompt) name")
    search_parser.add_argument(
        "--decision", help="allow, deny, hold (an approval policy held it), refused or invalid_arguments"
    )
    search_parser.add_argument("--outcome", choices=sorted(OUTCOMES))
    search_parser.add_argument("--workflow")
    search_parser.add_argument("--since", help=_TIME_HELP)
    search_parser.add_argument("--until", help=_TIME_HELP)
    search_parser.add_argument("--text", help="text the agent's reasoning contains (any case)")
    search_parser.add_argument("--limit", type=int, default=50)
    search_parser.add_argument("--cursor", help="continue after a previous page (printed on stderr)")
    search_parser.add_argument("--json", action="store_true", help="print JSON lines instead of a table")

    export_parser = action("export", "write the whole log (or a time range) to a file", _export)
    export_parser.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export_parser.add_argument("--output", "-o", required=True, help="file to write (replaced only when complete)")
    export_parser.add_argument("--since", help=_TIME_HELP)
    export_parser.add_argument("--until", help=_TIME_HELP)

    verify_parser = action("verify", "recompute every hash chain; exit 1 naming the first bad entry", _verify)
    verify_parser.add_argument("--checkpoints", help="checkpoint file written earlier by 'audit checkpoints'")
    verify_parser.add_argument("--public-key", help="PEM Ed25519 public key that signs checkpoints")
    verify_parser.add_argument("--json", action="store_true", help="print the report as JSON")

    checkpoints_parser = action(
        "checkpoints", "export the signed checkpoints, to keep outside the database", _checkpoints
    )
    checkpoints_parser.add_argument("--output", "-o", required=True)
    checkpoints_parser.add_argument("--replica", help="only this replica's checkpoints")

    prune_parser = action("prune", "delete events older than a duration, keeping the chains verifiable", _prune)
    prune_parser.add_argument("--older-than", required=True, help="e.g. 90d, 12w")


def _with_database(
    open_database: OpenDatabase, args: argparse.Namespace, job: Callable[[Database], Awaitable[int]]
) -> int:
    async def run() -> int:
        database = open_database(args)
        try:
            await database.migrate()
            return await job(database)
        finally:
            await database.close()

    return int(anyio.run(run))


# -- tail / search -----------------------------------------------------------------------------


def _tail(open_database: OpenDatabase, args: argparse.Namespace) -> int:
    async def job(database: Database) -> int:
        async for event in tail(database, follow=args.follow, backlog=max(0, args.lines)):
            if args.json:
                print(orjson.dumps(event.to_json()).decode(), flush=True)
            else:
                print(_event_line(event), flush=True)
        return 0

    return _with_database(open_database, args, job)


def _event_line(event: AuditEvent) -> str:
    data = event.data
    when = isoformat(event.time)[:23]
    if event.kind == CALL:
        return (
            f"{when}  call     {event.call_id}  {data.get('agent')}"
            f"{' for ' + data['user'] if data.get('user') else ''}  {data.get('method')} {data.get('name') or ''}  "
            f"{data.get('decision')}"
        ).rstrip()
    if event.kind == OUTCOME:
        total = (data.get("latency_ms") or {}).get("total")
        took = f"  {total:g} ms" if isinstance(total, int | float) else ""
        return f"{when}  outcome  {event.call_id}  {data.get('outcome')}{took}"
    return f"{when}  {event.kind}  {orjson.dumps(data).decode()}"


def _search(open_database: OpenDatabase, args: argparse.Namespace) -> int:
    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until) if args.until else None
    if args.kind != "call":
        given = [f"--{name}" for name in _CALL_FILTERS if getattr(args, name) is not None]
        if given:
            print(
                f"gateway: {', '.join(given)} only filter calls; with --kind {args.kind} use --since, --until, "
                "--limit and --cursor, or leave out --kind to search calls",
                file=sys.stderr,
            )
            return 2
        return _search_events(open_database, args, since, until)

    async def job(database: Database) -> int:
        page = await search(
            database,
            agent=args.agent,
            user=args.user,
            tool=args.tool,
            decision=args.decision,
            outcome=args.outcome,
            since=since,
            until=until,
            workflow=args.workflow,
            text_in_reasoning=args.text,
            limit=args.limit,
            cursor=args.cursor,
        )
        if args.json:
            for call in page.calls:
                print(orjson.dumps(call.to_json()).decode())
        else:
            print_table(
                ("TIME", "CALL", "AGENT", "USER", "TOOL", "DECISION", "OUTCOME", "TOTAL MS"),
                [_call_cells(call) for call in page.calls],
            )
        if page.next_cursor:
            print(f"more calls: --cursor {page.next_cursor}", file=sys.stderr)
        return 0

    return _with_database(open_database, args, job)


def _search_events(
    open_database: OpenDatabase, args: argparse.Namespace, since: datetime | None, until: datetime | None
) -> int:
    kind = _SEARCH_KINDS[args.kind]

    async def job(database: Database) -> int:
        page = await search_events(database, kind, since=since, until=until, limit=args.limit, cursor=args.cursor)
        if args.json:
            for event in page.events:
                entry = {"kind": event.kind, "time": isoformat(event.time), "replica": event.replica_id}
                print(orjson.dumps({**entry, "seq": event.seq, **event.data}).decode())
        elif kind == AUTH_REFUSED:
            print_table(
                ("TIME", "CLIENT", "AGENT", "AUTH", "PATH", "REASON"), [_auth_cells(event) for event in page.events]
            )
        elif kind == APPROVAL:
            print_table(
                ("TIME", "APPROVAL", "ACTION", "STATE", "ACTOR", "TOOL", "COMMENT"),
                [_approval_cells(event) for event in page.events],
            )
        elif kind == CONSOLE:
            print_table(
                ("TIME", "USER", "ACTION", "TARGET", "FROM", "COMMENT"),
                [
                    (
                        isoformat(event.time)[:23],
                        event.data.get("user") or "-",
                        event.data.get("action") or "-",
                        event.data.get("target") or "-",
                        event.data.get("client_address") or "-",
                        event.data.get("comment") or "-",
                    )
                    for event in page.events
                ],
            )
        elif kind == SUSPENSION:
            print_table(
                ("TIME", "AGENT", "ACTION", "ACTOR", "REASON"),
                [
                    (
                        isoformat(event.time)[:23],
                        event.data.get("agent") or "-",
                        event.data.get("action") or "-",
                        event.data.get("actor") or "-",
                        event.data.get("reason") or "-",
                    )
                    for event in page.events
                ],
            )
        elif kind == TOOL_PIN:
            print_table(
                ("TIME", "TOOL", "ACTION", "ACTOR", "REASON"),
                [
                    (
                        isoformat(event.time)[:23],
                        event.data.get("exposed") or "-",
                        event.data.get("action") or "-",
                        event.data.get("actor") or "-",
                        event.data.get("reason") or "-",
                    )
                    for event in page.events
                ],
            )
        else:
            print_table(("TIME", "REPLICA", "CALLS", "CALL IDS"), [_recovered_cells(event) for event in page.events])
        if page.next_cursor:
            print(f"more events: --cursor {page.next_cursor}", file=sys.stderr)
        return 0

    return _with_database(open_database, args, job)


def _auth_cells(event: AuditEvent) -> tuple[str, ...]:
    data = event.data
    return (
        isoformat(event.time)[:23],
        data.get("client_address") or "-",
        data.get("agent") or "-",
        data.get("auth_method") or "-",
        data.get("path") or "-",
        data.get("reason") or "-",
    )


def _approval_cells(event: AuditEvent) -> tuple[str, ...]:
    data = event.data
    details = data.get("details")
    answer = details.get("answer") if isinstance(details, dict) and data.get("action") == "answered" else None
    comment = str(data.get("comment") or answer or "-")  # an answered question: the answer the agent got
    return (
        isoformat(event.time)[:23],
        str(data.get("approval_id") or "-"),
        str(data.get("action") or "-"),
        str(data.get("state") or "-"),
        str(data.get("actor") or "-"),
        str(data.get("tool") or "-"),
        comment if len(comment) <= 60 else comment[:59] + "…",
    )


def _recovered_cells(event: AuditEvent) -> tuple[str, ...]:
    data = event.data
    ids = data.get("call_ids") or []
    shown = ",".join(str(call_id) for call_id in ids[:3]) + (",…" if len(ids) > 3 else "")
    return (isoformat(event.time)[:23], event.replica_id, str(data.get("calls", "-")), shown or "-")


def _call_cells(call: AuditCall) -> tuple[str, ...]:
    total = ((call.outcome or {}).get("latency_ms") or {}).get("total")
    return (
        isoformat(call.time)[:23],
        call.call_id,
        call.agent or "-",
        call.call.get("user") or "-",
        call.tool or call.call.get("method") or "-",
        call.decision or "-",
        call.outcome_name or "(none)",
        f"{total:g}" if isinstance(total, int | float) else "-",
    )


# -- export / verify / checkpoints / prune -------------------------------------------------------


def _export(open_database: OpenDatabase, args: argparse.Namespace) -> int:
    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until) if args.until else None

    async def job(database: Database) -> int:
        report = await export(
            database, args.output, format=args.format, progress=_progress_bar, since=since, until=until
        )
        print(file=sys.stderr)
        print(f"exported {report.events} events to {report.path} ({report.format})")
        return 0

    return _with_database(open_database, args, job)


def _progress_bar(done: int, total: int) -> None:
    width = 30
    filled = width if total == 0 else int(width * done / total)
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} events", end="", file=sys.stderr, flush=True)


def _verify(open_database: OpenDatabase, args: argparse.Namespace) -> int:
    checkpoints = load_checkpoints(args.checkpoints) if args.checkpoints else None
    public_key = load_public_key(args.public_key) if args.public_key else None

    async def job(database: Database) -> int:
        report = await verify(database, checkpoints=checkpoints, public_key=public_key)
        if args.json:
            print(orjson.dumps(report.to_json()).decode())
        elif report.ok:
            print(
                f"audit log intact: {report.events} events in {len(report.replicas)} chain(s), "
                f"{report.checkpoints_checked} exported checkpoint(s) checked"
            )
        else:
            print(f"audit log NOT intact: first bad entry: {report.problems[0]}")
            for problem in report.problems[1:]:
                print(f"also: {problem}")
        for note in report.notes:
            print(f"note: {note}", file=sys.stderr)
        return 0 if report.ok else 1

    return _with_database(open_database, args, job)


def _checkpoints(open_database: OpenDatabase, args: argparse.Namespace) -> int:
    async def job(database: Database) -> int:
        count = await export_checkpoints(database, args.output, replica_id=args.replica)
        print(f"wrote {count} checkpoint(s) to {args.output}")
        return 0

    return _with_database(open_database, args, job)


def _prune(open_database: OpenDatabase, args: argparse.Namespace) -> int:
    age = parse_duration(args.older_than)

    async def job(database: Database) -> int:
        cutoff = datetime.now(UTC) - age
        report = await prune(database, cutoff)
        for replica in report.replicas:
            kept = f"chain now starts at seq {replica.starts_at}"
            print(f"replica {replica.replica_id}: deleted {replica.deleted} events; {kept}")
        print(f"pruned {report.deleted} events recorded before {isoformat(cutoff)[:19]}")
        return 0

    return _with_database(open_database, args, job)
