"""How long the console's Activity and Audit pages take to render over a large audit log.

Fills a SQLite database with `--events` audit events (default 1,000,000: calls with their
outcomes, checkpoints, approval, console and refused-authentication events, over 30 days, in two
replicas' hash chains), then serves the real app in-process (httpx's ASGI transport, a signed-in
viewer's session) and times each page `--rounds` times, printing p50 and p95 of the server time
(the whole request inside the app: session check, queries, rendering).

The filled database is kept in `bench/.cache/` (gitignored) and reused by later runs with the
same `--events`, since filling a million events takes a minute or two. Rows are built as the
recorder builds them (canonical content, hash chain, indexed copies via `index_columns`), so
`gateway audit verify` passes on it, and inserted in bulk in one transaction.

    python bench/console_pages.py [--events 1000000] [--rounds 50] [--refill] [--verify]
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx

from gateway.audit.chain import GENESIS_HASH, chain_hash, event_content
from gateway.audit.entry import (
    APPROVAL,
    AUTH_REFUSED,
    CALL,
    CHECKPOINT,
    CONSOLE,
    OUTCOME,
    Timings,
    index_columns,
    new_call_id,
    outcome_payload,
)
from gateway.audit.event_store import COLUMNS
from gateway.audit.sqlite_writer import _utc_text
from gateway.storage import Database

CACHE = Path(__file__).resolve().parent / ".cache"
#: Bumped whenever the generated data changes shape, so an old cached database is not reused.
FILL_VERSION = 2
REPLICAS = ("bench-replica-a", "bench-replica-b")
AGENTS = tuple(f"agent-{n:02d}" for n in range(20))
USERS = tuple(f"user{n:03d}@example.com" for n in range(100))
TOOLS = tuple(f"{connector}__{verb}" for connector in ("crm", "billing", "files", "mail", "git") for verb in range(10))
SPAN = timedelta(days=30)
CHECKPOINT_EVERY = 1000

_INDEXED = COLUMNS[COLUMNS.index("agent") : COLUMNS.index("prev_hash")]
_INSERT = f"INSERT INTO audit_events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


class _Chain:
    """One replica's chain as the recorder would write it: contiguous seqs, linked hashes, checkpoints."""

    def __init__(self, replica_id: str) -> None:
        self.replica_id = replica_id
        self.seq = 0
        self.prev = GENESIS_HASH
        self.since_checkpoint = 0

    def rows(self, kind: str, call_id: str | None, moment: datetime, data: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
        yield self._row(kind, call_id, moment, data)
        self.since_checkpoint += 1
        if self.since_checkpoint >= CHECKPOINT_EVERY:
            yield self.checkpoint(moment, "interval")

    def checkpoint(self, moment: datetime, reason: str) -> tuple[Any, ...]:
        data = {
            "seq": self.seq,
            "hash": self.prev,
            "reason": reason,
            "open_calls": 0,
            "signature": None,
            "key_id": None,
        }
        self.since_checkpoint = 0
        return self._row(CHECKPOINT, None, moment, data)

    def _row(self, kind: str, call_id: str | None, moment: datetime, data: dict[str, Any]) -> tuple[Any, ...]:
        self.seq += 1
        content = event_content(
            replica_id=self.replica_id, seq=self.seq, kind=kind, time=moment, call_id=call_id, data=data
        )
        digest = chain_hash(self.prev, content)
        columns = index_columns(kind, data)
        row = (
            self.replica_id,
            self.seq,
            kind,
            _utc_text(moment),
            call_id,
            *(columns[name] for name in _INDEXED),
            self.prev,
            digest,
            content.decode("utf-8"),
        )
        self.prev = digest
        return row


def _call_data(rng: random.Random, agent: str, tool: str, decision: str) -> dict[str, Any]:
    return {
        "request_id": rng.randrange(1, 10_000),
        "agent": agent,
        "user": rng.choice(USERS) if rng.random() < 0.7 else None,
        "roles": ["worker"],
        "auth_method": "api_key",
        "credential_id": f"key_{AGENTS.index(agent):04d}",
        "session_id": f"s-{rng.randrange(1_000_000):06d}",
        "workflow_id": f"wf-{rng.randrange(5000)}" if rng.random() < 0.3 else None,
        "client": {"name": "bench-client", "version": "1.0"},
        "protocol_version": "2026-07-28",
        "method": "tools/call",
        "name": tool,
        "connector": tool.split("__")[0],
        "original_name": tool.split("__")[1],
        "arguments": {"id": rng.randrange(100_000), "note": "routine maintenance", "token": "[REDACTED]"},
        "reasoning": "The user asked for the monthly report; this reads the figures it needs.",
        "decision": decision,
        "policy_ids": ["policy-default" if decision == "allow" else f"policy-{decision}-{rng.randrange(5)}"],
        "reason": "allowed by policy-default" if decision == "allow" else f"{decision} by a bench policy",
    }


def _events(count: int, seed: int = 7) -> Iterator[tuple[Any, ...]]:
    """`count` events (give or take the checkpoints), oldest first, spread evenly over `SPAN` up to now."""
    rng = random.Random(seed)
    chains = [_Chain(replica) for replica in REPLICAS]
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - SPAN
    step = SPAN / count
    moment = start
    made = 0
    while made < count:
        chain = rng.choice(chains)
        roll = rng.random()
        if roll < 0.01:
            approval = f"0190{rng.randrange(16**28):028x}"
            data = {
                "approval_id": f"{approval[:8]}-{approval[8:12]}-{approval[12:16]}-{approval[16:20]}-{approval[20:32]}",
                "action": "created",
                "state": "pending",
                "previous_state": None,
                "actor": rng.choice(AGENTS),
                "agent": rng.choice(AGENTS),
                "user": None,
                "tool": rng.choice(TOOLS),
                "workflow_id": None,
                "comment": "transfers need treasury",
                "details": None,
            }
            rows = list(chain.rows(APPROVAL, None, moment, data))
        elif roll < 0.015:
            data = {
                "action": "sign_in",
                "user": "operator",
                "via": "key",
                "client_address": "127.0.0.1",
                "target": None,
                "comment": None,
                "details": None,
            }
            rows = list(chain.rows(CONSOLE, None, moment, data))
        elif roll < 0.02:
            data = {
                "reason": "unknown API key",
                "client_address": "10.0.0.9",
                "method": "POST",
                "path": "/mcp",
                "auth_method": "api_key",
            }
            rows = list(chain.rows(AUTH_REFUSED, None, moment, data))
        else:
            agent, tool = rng.choice(AGENTS), rng.choice(TOOLS)
            decision = rng.choices(("allow", "deny", "hold"), weights=(90, 7, 3))[0]
            call_id = new_call_id(int(moment.timestamp() * 1e9))
            total = round(rng.lognormvariate(2.5, 0.8), 3)
            if decision == "allow":
                outcome = rng.choices(("ok", "tool_error", "backend_error", "timeout"), weights=(94, 3, 2, 1))[0]
                timings = Timings(0.05, total - 0.1, total)
            else:
                outcome, timings = ("denied" if decision == "deny" else "held"), Timings(0.05, None, 0.2)
            rows = list(chain.rows(CALL, call_id, moment, _call_data(rng, agent, tool, decision)))
            done = moment + timedelta(milliseconds=total)
            rows += chain.rows(OUTCOME, call_id, done, outcome_payload(outcome, timings=timings))
        written = sum(1 for row in rows if row[2] != CHECKPOINT)
        made += written
        moment += step * written
        yield from rows
    for chain in chains:
        yield chain.checkpoint(end, "close")


async def _migrate(url: str) -> None:
    database = Database(url)
    try:
        await database.migrate()
    finally:
        await database.close()


def filled_database(events: int, *, refill: bool = False) -> Path:
    """The cached database of `events` events, filled first if there is none yet (or `refill`)."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"console-pages-{events}-v{FILL_VERSION}.db"
    if path.exists() and not refill:
        return path
    partial = path.with_suffix(".filling")
    partial.unlink(missing_ok=True)
    anyio.run(_migrate, f"sqlite+aiosqlite:///{partial}")
    started = time.perf_counter()
    with closing(sqlite3.connect(partial)) as connection:
        connection.execute("PRAGMA synchronous=OFF")
        batch: list[tuple[Any, ...]] = []
        for row in _events(events):
            batch.append(row)
            if len(batch) >= 10_000:
                connection.executemany(_INSERT, batch)
                batch.clear()
        connection.executemany(_INSERT, batch)
        connection.commit()
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    os.replace(partial, path)
    print(f"filled {path.name} with {events:,} events in {time.perf_counter() - started:.0f} s")
    return path


def _write_config(directory: Path, database: Path) -> Path:
    (directory / "connectors").mkdir()
    access = directory / "policies" / "access"
    access.mkdir(parents=True)
    (access / "allow.cedar").write_text('@id("bench-allow")\npermit (principal, action, resource);\n')
    config = directory / "gateway.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\n\n[storage]\nurl = "sqlite+aiosqlite:///{database}"\n\n'
        '[logging]\nlevel = "warning"\n\n[connectors]\ndir = "connectors"\n\n[policies]\ndir = "policies"\n'
    )
    return config


async def _pages(database: Path, rounds: int) -> list[tuple[str, list[float]]]:
    """Each page's server times in ms, `rounds` requests each, interleaved so drift hits all alike."""
    from gateway.app import create_app
    from gateway.config import load_config
    from gateway.console.security import SESSION_COOKIE
    from gateway.console.sessions import ConsoleSessions
    from gateway.identity.users import UserStore

    with tempfile.TemporaryDirectory() as scratch:
        config = load_config(_write_config(Path(scratch), database))
        app = create_app(config)
        async with app.router.lifespan_context(app):
            db = Database(config.gateway.storage.url)
            user, _ = await UserStore(db).create(f"bench-{os.getpid()}-{time.time_ns()}", roles=["viewer"])
            secret, _ = await ConsoleSessions(db, config.gateway.console).open(user, via="key")
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://127.0.0.1", cookies={SESSION_COOKIE: secret}
            ) as client:
                newest = await client.get("/ui/activity")
                call_path = newest.text.split('href="/ui/activity/', 2)[1].split('"', 1)[0]
                pages = {
                    "activity, newest": "/ui/activity",
                    "activity, agent + decision": "/ui/activity?agent=agent-07&decision=deny",
                    "activity, outcome no call has": "/ui/activity?outcome=cancelled",
                    "activity, 7 days back": "/ui/activity?until=7d",
                    "activity, one call": f"/ui/activity/{call_path}",
                    "audit, calls": "/ui/audit",
                    "audit, tool in a day": "/ui/audit?tool=crm__3&since=3d&until=2d",
                    "audit, approval events": "/ui/audit?kind=approval",
                    "overview": "/ui/",
                    "approvals inbox": "/ui/approvals",
                    "approvals history": "/ui/approvals/history",
                    "agents": "/ui/agents",
                    "agents, one": "/ui/agents/agent-07",
                    "connectors": "/ui/connectors",
                    "policies": "/ui/policies",
                }
                times: dict[str, list[float]] = {label: [] for label in pages}
                for path in pages.values():  # warm up: caches, the first connection, template compiling
                    answer = await client.get(path)
                    if answer.status_code != 200:
                        raise SystemExit(f"{path} answered {answer.status_code}")
                for _ in range(rounds):
                    for label, path in pages.items():
                        started = time.perf_counter()
                        await client.get(path)
                        times[label].append((time.perf_counter() - started) * 1000)
            await db.close()
    return list(times.items())


async def _verify(database: Path) -> tuple[bool, int, float]:
    from gateway.audit.verify import verify

    db = Database(f"sqlite+aiosqlite:///{database}")
    try:
        started = time.perf_counter()
        report = await verify(db)
        return report.ok, report.events, time.perf_counter() - started
    finally:
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--refill", action="store_true", help="fill the database again even if one is cached")
    parser.add_argument("--verify", action="store_true", help="also time a full chain verification, once")
    args = parser.parse_args()
    database = filled_database(args.events, refill=args.refill)
    results = anyio.run(_pages, database, args.rounds)
    print(f"{args.events:,} audit events, SQLite, {args.rounds} requests per page, server time in ms")
    print(f"{'page':34} {'p50':>8} {'p95':>8} {'max':>8}")
    for label, samples in results:
        ordered = sorted(samples)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        print(f"{label:34} {statistics.median(ordered):8.1f} {p95:8.1f} {ordered[-1]:8.1f}")
    if args.verify:
        ok, events, seconds = anyio.run(_verify, database)
        print(f"verify: {'intact' if ok else 'NOT intact'}, {events:,} events in {seconds:.1f} s")


if __name__ == "__main__":
    main()
