"""Search, tail and export on real databases, and secrets that must reach none of them."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import orjson
import pytest
from sqlalchemy import event, text

from audit_calls import audit_call
from gateway.audit import AuditRecorder, Redactor, Timings, export, get_call, search, tail
from gateway.audit.chain import chain_hash, event_content
from gateway.errors import AuditExportFailed, BackendError, InvalidAuditQuery
from gateway.identity.principal import Principal
from gateway.storage import Database

pytestmark = pytest.mark.anyio

BILLING = Principal(agent="billing-bot", roles=("finance",), user="alice@example.com")
SUPPORT = Principal(agent="support-bot", roles=("support",), user="bob@example.com")

PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcCANARYPEMBODY\n-----END PRIVATE KEY-----"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJjYW5hcnkiOiJKV1QifQ.CANARYjwtSIGNATUREpart"
CANARIES = (
    "sk_live_CANARY4eC39HqLyjWDarjtT1zdp7dc",
    "CANARYPEMBODY",
    "eyJjYW5hcnkiOiJKV1QifQ",
    "CANARYjwtSIGNATUREpart",
    "CANARY-hunter2-five-deep",
    "ghp_CANARY890abcdefghijklmnopqrstuvwxyzAB",
    "AKIACANARY1234567890",
    "CANARYurlpass",
    "CANARYbearerTOKEN123",
    "CANARY-cookie-value",
)


async def _recorder(database: Database) -> AuditRecorder:
    recorder = AuditRecorder(database, Redactor(), replica_id="gw-1", checkpoint_every=7)
    await recorder.start()
    return recorder


async def record_canaries(recorder: AuditRecorder) -> str:
    """One call whose arguments, reasoning, outcome and a refused login carry every canary secret."""
    handle = await recorder.record_call(
        audit_call(
            BILLING,
            "payments.charge",
            arguments={
                "amount": 1250,
                "stripe": "CANARY-sk_live_CANARY4eC39HqLyjWDarjtT1zdp7dc",
                "signing_key": PEM,
                "session": JWT,
                "a": {"b": {"c": {"d": {"password": "CANARY-hunter2-five-deep"}}}},
                "notes": ["deploy with ghp_CANARY890abcdefghijklmnopqrstuvwxyzAB", "key AKIACANARY1234567890"],
                "headers": {"Cookie": "CANARY-cookie-value"},
            },
            reasoning="Using Bearer CANARYbearerTOKEN123 against postgresql://svc:CANARYurlpass@db/x as asked.",
        ),
        decision="allow",
        reason=f"policy saw {JWT}",
    )
    await recorder.record_outcome(
        handle,
        outcome="backend_error",
        error=BackendError(
            "login failed for postgresql://svc:CANARYurlpass@db/x with token=CANARY-hunter2-five-deep", code=-32000
        ),
    )
    await recorder.record_auth_refused(f"unknown bearer {JWT}", "10.0.0.9", path="/mcp?api_key=CANARYurlpass")
    return handle.call_id


def assert_no_canary(blob: str | bytes, where: str) -> None:
    if isinstance(blob, bytes):
        blob = blob.decode("utf-8", "replace")
    leaked = [canary for canary in CANARIES if canary in blob]
    assert not leaked, f"{where} holds {leaked}"


async def _all_table_text(database: Database) -> str:
    async with database.engine.connect() as connection:
        if database.dialect == "sqlite":
            tables = (await connection.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))).scalars()
            rows = [
                repr(row)
                for table in list(tables)
                for row in (await connection.execute(text(f'SELECT * FROM "{table}"'))).all()
            ]
        else:
            tables = (
                await connection.execute(
                    text("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
                )
            ).scalars()
            rows = [
                value
                for table in list(tables)
                for value in (await connection.execute(text(f'SELECT t::text FROM "{table}" t'))).scalars()
            ]
    return "\n".join(rows)


async def test_canary_secrets_reach_neither_the_database_nor_search_nor_exports(database, database_url, tmp_path):
    recorder = await _recorder(database)
    try:
        call_id = await record_canaries(recorder)
    finally:
        await recorder.close()

    table_text = await _all_table_text(database)
    assert "payments.charge" in table_text and "[REDACTED:" in table_text
    assert_no_canary(table_text, "a database table")
    if database.dialect == "sqlite":
        database_file = Path(database_url.split("///", 1)[1])
        for file in database_file.parent.glob(database_file.name + "*"):  # the file and its WAL
            assert_no_canary(file.read_bytes(), file.name)

    call = await get_call(database, call_id)
    assert call is not None and call.outcome_name == "backend_error"
    assert call.call["arguments"]["value"]["amount"] == 1250
    assert_no_canary(orjson.dumps(call.to_json()), "get_call")
    assert_no_canary(orjson.dumps([c.to_json() for c in (await search(database)).calls]), "search")
    for fmt in ("jsonl", "csv"):
        out = tmp_path / f"audit.{fmt}"
        report = await export(database, out, format=fmt)
        assert report.events == 4  # the call, its outcome, the refused login, the checkpoint on close
        body = out.read_text()
        assert "payments.charge" in body
        assert_no_canary(body, f"the {fmt} export")


async def _populate(database: Database) -> dict[str, str]:
    recorder = await _recorder(database)
    ids: dict[str, str] = {}
    try:
        for n in range(4):
            handle = await recorder.record_call(
                audit_call(
                    BILLING,
                    "crm.lookup",
                    reasoning=f"Checking invoice {n} for 100% of the refund_total",
                    workflow="wf-refund",
                ),
                decision="allow",
            )
            await recorder.record_outcome(handle, outcome="ok", timings=Timings(total_ms=10 + n))
            ids[f"lookup{n}"] = handle.call_id
        denied = await recorder.record_call(audit_call(SUPPORT, "crm.delete", reasoning="Cleanup"), decision="deny")
        await recorder.record_outcome(denied, outcome="denied")
        ids["denied"] = denied.call_id
        running = await recorder.record_call(
            audit_call(SUPPORT, "file:///tmp/report", method="resources/read"), decision="allow"
        )
        ids["running"] = running.call_id
    finally:
        await recorder.close()
    return ids


async def test_search_filters_combine_and_join_outcomes(database):
    ids = await _populate(database)

    async def found(**filters) -> list[str]:
        return [call.call_id for call in (await search(database, **filters)).calls]

    assert await found(agent="support-bot") == [ids["running"], ids["denied"]]
    assert await found(user="alice@example.com", outcome="ok") == [ids[f"lookup{n}"] for n in (3, 2, 1, 0)]
    assert await found(tool="crm.delete", decision="deny") == [ids["denied"]]
    assert await found(outcome="denied") == [ids["denied"]]
    assert await found(workflow="wf-refund", text_in_reasoning="INVOICE 2") == [ids["lookup2"]]
    assert await found(text_in_reasoning="100% of the refund_") == [ids[f"lookup{n}"] for n in (3, 2, 1, 0)]
    assert await found(text_in_reasoning="100_ of") == []  # % and _ are literal, not wildcards
    assert await found(since=datetime.now(UTC) - timedelta(minutes=5), agent="support-bot", tool="crm.delete") == [
        ids["denied"]
    ]
    assert await found(until=datetime.now(UTC) - timedelta(minutes=5)) == []
    running = await get_call(database, ids["running"])
    assert running is not None and running.outcome is None and running.call["method"] == "resources/read"
    assert await get_call(database, "no-such-call") is None
    with pytest.raises(InvalidAuditQuery):
        await search(database, since=datetime(2026, 1, 1))
    with pytest.raises(InvalidAuditQuery):
        await search(database, cursor="not-a-cursor")


async def test_search_pages_with_a_cursor_without_gaps_or_repeats(database):
    recorder = await _recorder(database)
    try:
        expected = [
            (await recorder.record_call(audit_call(BILLING, f"tool.{n}"), decision="allow")).call_id for n in range(25)
        ]
    finally:
        await recorder.close()
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await search(database, limit=10, cursor=cursor)
        seen.extend(call.call_id for call in page.calls)
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3 and seen == list(reversed(expected))


async def test_a_scan_limit_bounds_each_page_and_paging_still_reaches_every_match(database):
    recorder = await _recorder(database)
    try:
        ids = [
            (
                await recorder.record_call(
                    audit_call(BILLING, f"tool.{n}"), decision="deny" if n in (2, 3, 11) else "allow"
                )
            ).call_id
            for n in range(14)
        ]
    finally:
        await recorder.close()

    async def pages(**options) -> list[tuple[list[str], bool]]:
        seen, cursor = [], None
        while True:
            page = await search(database, decision="deny", limit=2, cursor=cursor, **options)
            seen.append(([call.call_id for call in page.calls], page.examined_until is not None))
            cursor = page.next_cursor
            if cursor is None:
                return seen

    # Windows of 5 calls, newest first: 13-9 holds 11, 8-4 holds none, and the last 4 are read whole.
    assert await pages(scan_limit=5) == [([ids[11]], True), ([], True), ([ids[3], ids[2]], False)]
    assert await pages() == [([ids[11], ids[3]], False), ([ids[2]], False)]
    # Filters an index serves alone are never cut short: the index finds the matches wherever they are.
    only = await search(database, tool="tool.0", limit=2, scan_limit=1)
    assert [call.call_id for call in only.calls] == [ids[0]] and only.next_cursor is None
    with pytest.raises(InvalidAuditQuery):
        await search(database, decision="deny", scan_limit=0)


async def test_sqlite_reads_the_index_of_the_name_searched_for_not_every_call(tmp_path: Path) -> None:
    """SQLite's planner would walk every call through (kind, time); a name nobody has must cost nothing.

    SQLite only: it keeps no statistics, so the query steers it; PostgreSQL's planner needs no steering.
    """
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'plans.db'}")
    await database.migrate()
    try:
        await _check_sqlite_plans(database)
    finally:
        await database.close()


async def _check_sqlite_plans(database: Database) -> None:
    await _populate(database)
    statements: list[tuple[str, object]] = []

    def seen(connection, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "calls" in statement:
            statements.append((statement, parameters))

    event.listen(database.engine.sync_engine, "before_cursor_execute", seen)
    try:
        for filters, index in (
            ({"agent": "nobody"}, "ix_audit_events_agent_time"),
            ({"agent": "support-bot", "workflow": "wf-refund"}, "ix_audit_events_workflow_id_time"),
            ({"tool": "crm.delete", "user": "bob@example.com"}, "ix_audit_events_user_id_time"),
        ):
            statements.clear()
            await search(database, **filters)
            (statement, parameters), *_ = statements
            async with database.engine.connect() as connection:
                plan = (await connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)).all()
            steps = " | ".join(str(step[-1]) for step in plan)
            assert f"SEARCH calls USING INDEX {index}" in steps, (filters, steps)
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", seen)


async def test_tail_shows_the_backlog_then_follows_new_events(database):
    recorder = await _recorder(database)
    try:
        first = await recorder.record_call(audit_call(BILLING, "crm.lookup"), decision="allow")
        await recorder.record_outcome(first, outcome="ok")
        events = tail(database, follow=True, backlog=10, poll_interval=0.05)
        backlog = [await anext(events), await anext(events)]
        assert [(e.kind, e.call_id) for e in backlog] == [("call", first.call_id), ("outcome", first.call_id)]
        second = await recorder.record_call(audit_call(SUPPORT, "crm.delete"), decision="allow")
        with anyio.fail_after(10):
            followed = await anext(events)
        assert (followed.kind, followed.call_id, followed.data["agent"]) == ("call", second.call_id, "support-bot")
        await events.aclose()
    finally:
        await recorder.close()
    assert [e.kind async for e in tail(database, follow=False, backlog=2)] == ["outcome", "call"]


async def test_jsonl_export_carries_everything_needed_to_recompute_the_chain(database, tmp_path):
    await _populate(database)
    out = tmp_path / "audit.jsonl"
    progress: list[tuple[int, int]] = []
    report = await export(database, out, progress=lambda done, total: progress.append((done, total)), page_size=4)
    lines = [orjson.loads(line) for line in out.read_text().splitlines()]
    assert report.events == len(lines) == progress[-1][0] == progress[-1][1]
    assert len(progress) > 1  # streamed in pages
    prev = "0" * 64
    for line in lines:
        content = event_content(
            replica_id=line["replica"],
            seq=line["seq"],
            kind=line["kind"],
            time=datetime.fromisoformat(line["time"]),
            call_id=line["call_id"],
            data=line["data"],
        )
        assert line["prev_hash"] == prev and chain_hash(prev, content) == line["hash"]
        prev = line["hash"]


async def test_csv_export_flattens_calls_and_outcomes(database, tmp_path):
    recorder = await _recorder(database)
    try:
        handle = await recorder.record_call(
            audit_call(BILLING, "sheet.write", reasoning='=HYPERLINK("http://evil")'), decision="allow"
        )
        await recorder.record_outcome(handle, outcome="ok", result=b"abc", timings=Timings(total_ms=12.5))
    finally:
        await recorder.close()
    out = tmp_path / "audit.csv"
    await export(database, out, format="csv")
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    call = next(row for row in rows if row["kind"] == "call")
    outcome = next(row for row in rows if row["kind"] == "outcome")
    assert (call["agent"], call["user"], call["tool"], call["decision"]) == (
        "billing-bot",
        "alice@example.com",
        "sheet.write",
        "allow",
    )
    assert call["reasoning"].startswith("'=HYPERLINK")  # never run as a formula by a spreadsheet
    assert (outcome["call_id"], outcome["outcome"], outcome["total_ms"], outcome["result_bytes"]) == (
        handle.call_id,
        "ok",
        "12.5",
        "3",
    )


async def test_an_interrupted_export_leaves_no_file_behind(database, tmp_path):
    await _populate(database)
    tmp_path = tmp_path / "exports"
    tmp_path.mkdir()
    out = tmp_path / "audit.jsonl"
    out.write_text("previous complete export\n")

    def fail_after_first_page(done: int, total: int) -> None:
        raise RuntimeError("disk went away")

    with pytest.raises(RuntimeError, match="disk went away"):
        await export(database, out, progress=fail_after_first_page, page_size=3)
    assert out.read_text() == "previous complete export\n"
    assert [p.name for p in tmp_path.iterdir()] == ["audit.jsonl"]

    cancelled = tmp_path / "cancelled.csv"
    with anyio.CancelScope() as scope:
        await export(database, cancelled, format="csv", progress=lambda done, total: scope.cancel(), page_size=3)
    assert scope.cancelled_caught
    assert not cancelled.exists() and [p.name for p in tmp_path.iterdir()] == ["audit.jsonl"]

    with pytest.raises(AuditExportFailed, match="cannot write"):
        await export(database, tmp_path / "missing-directory" / "audit.jsonl")
