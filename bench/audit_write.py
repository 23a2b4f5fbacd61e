"""What write-ahead auditing costs per call, on SQLite and PostgreSQL.

For each database: one caller recording calls one after another (every call waits for its own
commit), the same caller not waiting for outcomes (as the gateway records them: they ride along
with the next call's commit), then 16 concurrent callers (group commit shares commits between
them). Each "call" is `record_call` (durable before it returns) followed by `record_outcome`,
with realistic arguments and reasoning, so redaction, hashing and the commits are all in the
figure.
Prints per-call latency (p50/p99 of record_call, and wall time per call including the outcome),
calls/s, and the batch sizes the writer achieved.

    python bench/audit_write.py [--calls 2000] [--concurrency 16] [--postgres postgresql://127.0.0.1:5432/test]
                                [--only sqlite|postgresql] [--engine]

With --engine each row is measured twice, interleaved: through the direct store the recorder
uses (a writer thread on SQLite, asyncpg on PostgreSQL) and through SQLAlchemy ("... sqla" rows),
the path every write took before the direct stores.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from gateway.audit import AuditRecorder, Redactor, Timings
from gateway.audit.sqlalchemy_writer import SqlAlchemyEventStore
from gateway.calls import Call, Origin, Target
from gateway.identity.principal import Principal
from gateway.storage import Database

AGENT = Principal(agent="billing-bot", roles=("finance",), user="alice@example.com", credential_id="key_0001")
ARGUMENTS = {
    "customer_id": "cus_4411",
    "amount": 1250,
    "currency": "EUR",
    "note": "Refund for order 4411, approved by phone",
    "items": [{"sku": f"SKU-{n}", "quantity": n} for n in range(5)],
}
REASONING = "The customer reported a damaged parcel; policy allows a refund below 2000 EUR without approval."
CALL = Call(
    "tools/call",
    Origin(AGENT, session_id="s-1"),
    "payments.refund",
    ARGUMENTS,
    reasoning=REASONING,
    workflow="wf-refund",
    target=Target("payments", "refund"),
)


async def one_call(recorder: AuditRecorder, latencies: list[float], wait: bool = True) -> None:
    started = time.perf_counter()
    handle = await recorder.record_call(CALL, decision="allow", policy_ids=("refunds-below-limit",))
    latencies.append(time.perf_counter() - started)
    await recorder.record_outcome(
        handle, outcome="ok", result=b'{"content":[]}', timings=Timings(total_ms=3.2), wait=wait
    )


async def run(url: str, label: str, calls: int, concurrency: int, engine: bool = False) -> None:
    database = Database(url)
    await database.migrate()
    modes = (("sequential", 1, True), ("seq, no wait", 1, False), (f"{concurrency} concurrent", concurrency, True))
    stores: tuple[tuple[str, type[SqlAlchemyEventStore] | None], ...] = ((label, None),)
    if engine:
        stores = ((label, None), (f"{label} sqla", SqlAlchemyEventStore))
    for (mode, callers, wait), (store_label, store) in itertools.product(modes, stores):
        recorder = AuditRecorder(database, Redactor(), replica_id=f"bench-{uuid.uuid4().hex[:8]}", event_store=store)
        await recorder.start()
        for _ in range(20):  # warm up connections and caches
            await one_call(recorder, [])
        latencies: list[float] = []
        per_caller = calls // callers

        async def caller(
            recorder: AuditRecorder = recorder,
            latencies: list[float] = latencies,
            per_caller: int = per_caller,
            wait: bool = wait,
        ) -> None:
            for _ in range(per_caller):
                await one_call(recorder, latencies, wait)

        before = recorder.stats()
        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(callers)))
        elapsed = time.perf_counter() - started
        after = recorder.stats()
        await recorder.close()
        done = per_caller * callers
        batches = after.batches - before.batches
        events = after.events - before.events
        recent = after.recent_batch_sizes[-batches:] if batches else ()
        latencies.sort()
        print(
            f"{store_label:15} {mode:14} record_call p50 {statistics.median(latencies) * 1e3:6.2f} ms  "
            f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1e3:6.2f} ms  "
            f"wall/call {elapsed / done * 1e6:7.0f} us  {done / elapsed:7.0f} calls/s  "
            f"batches {batches} (mean {events / max(batches, 1):.1f} events, max {max(recent, default=0)})"
        )
    await database.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--postgres", default="postgresql://127.0.0.1:5432/test", help="server on which a scratch database is created"
    )
    parser.add_argument("--only", choices=("sqlite", "postgresql"), help="measure one database only")
    parser.add_argument(
        "--engine",
        action="store_true",
        help="also measure writing through SQLAlchemy (the generic store), interleaved with the direct one",
    )
    args = parser.parse_args()
    if args.only != "postgresql":
        with tempfile.TemporaryDirectory() as directory:
            await run(f"sqlite:///{Path(directory) / 'audit.db'}", "sqlite", args.calls, args.concurrency, args.engine)
    if args.only == "sqlite":
        return
    name = f"audit_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.postgres)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
        await run(url, "postgresql", args.calls, args.concurrency, args.engine)
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
