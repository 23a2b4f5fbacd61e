"""Record locks: calls on one record run one at a time, across agents, gateway processes and crashes.

The backend (`backends/records.py`) detects overlap itself: two runs on one record at once are
logged and answered as an error, whichever gateway process started them. Each run lasts until
the test creates its release file, so the tests decide when a holder finishes.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from gateway.calls import WORKFLOW_META_KEY, Call, Origin, Target
from gateway.catalog import Catalog
from gateway.config import load_connector
from gateway.connectors.base import Listing
from gateway.coordination.locks import LockSpec, RecordLocks
from gateway.errors import ConfigError, RecordLocked
from gateway.identity.principal import Principal
from gateway.storage.database import Database
from harness import TESTS, GatewayProcess, eventually, free_port, mcp_client, stdio_connector, write_gateway_config

RECORDS = TESTS / "backends" / "records.py"

CRM = """
[tools.update_record]
lock = "args.record_id"
lock_wait = 60
lock_lease = {lease}

[tools.rename_record]
lock = "args.record_id"
lock_wait = 0.5

[tools.move_order]
lock = ["args.order.id"]
lock_wait = 60
"""


def _connector(records: Path, *, lease: float = 30) -> str:
    return stdio_connector(script=RECORDS, env={"RECORDS_DIR": str(records)}, extra=CRM.format(lease=lease))


def _gateway(directory: Path, records: Path, database_url: str | None = None, *, lease: float = 30) -> GatewayProcess:
    write_gateway_config(directory, {"crm": _connector(records, lease=lease)}, database_url=database_url)
    return GatewayProcess(directory, free_port())


class Keys:
    def __init__(self, gateway: GatewayProcess) -> None:
        self.a = gateway.create_key("agent-a")
        self.b = gateway.create_key("agent-b")


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("records")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, records: Path) -> Iterator[GatewayProcess]:
    gateway = _gateway(tmp_path_factory.mktemp("gateway"), records)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def keys(gateway: GatewayProcess) -> Keys:
    return Keys(gateway)


def _text(result: Any) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


def _lines(records: Path, name: str) -> list[str]:
    path = records / name
    return path.read_text().splitlines() if path.exists() else []


async def _call(
    client: Client,
    tool: str,
    arguments: dict[str, Any],
    *,
    workflow: str | None = None,
    messages: list[str] | None = None,
) -> Any:
    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if messages is not None and message:
            messages.append(message)

    meta = {WORKFLOW_META_KEY: workflow} if workflow else None
    return await client.call_tool(f"crm__{tool}", arguments, progress_callback=on_progress, meta=meta)  # type: ignore[arg-type]


async def _race_on_one_record(
    first: GatewayProcess, second: GatewayProcess, keys: Keys, records: Path, record: str
) -> None:
    """Agent A holds `record`; agent B (through `second`) waits for it, then runs once A is done; never both."""
    release = f"release-{record}"
    results: dict[str, Any] = {}
    waiting: list[str] = []
    async with mcp_client(first.url, keys.a) as a, mcp_client(second.url, keys.b) as b:

        async def run_a() -> None:
            results["a"] = await _call(
                a, "update_record", {"record_id": record, "call": "a", "release": release}, workflow="wf-a"
            )

        async def run_b() -> None:
            arguments = {"record_id": record, "call": "b", "release": release}
            results["b"] = await _call(b, "update_record", arguments, workflow="wf-b", messages=waiting)

        async with anyio.create_task_group() as group:
            group.start_soon(run_a)
            await eventually(lambda: (records / f"{record}.a.started").exists(), what="agent A's run to start")
            group.start_soon(run_b)
            await eventually(lambda: waiting, what="agent B to report that it waits for the lock")
            assert not (records / f"{record}.b.started").exists()  # B waits; it did not run beside A
            (records / release).touch()
    assert not results["a"].is_error and not results["b"].is_error, (_text(results["a"]), _text(results["b"]))
    assert "held by agent 'agent-a' (workflow 'wf-a', tool 'crm__update_record')" in waiting[0]
    runs = [line.split() for line in _lines(records, "runs.log") if f" {record} " in line]
    assert [(event, call) for event, _, call, _ in runs] == [("start", "a"), ("end", "a"), ("start", "b"), ("end", "b")]
    assert not [line for line in _lines(records, "overlaps.log") if line.startswith(f"{record} ")]


# -- one gateway ---------------------------------------------------------------------------------


def test_without_a_lock_the_backend_catches_the_overlap(gateway: GatewayProcess, keys: Keys, records: Path) -> None:
    """The detector works: `touch_record` has no lock, and a second call on the record overlaps."""

    async def scenario() -> None:
        async with mcp_client(gateway.url, keys.a) as a, mcp_client(gateway.url, keys.b) as b:
            async with anyio.create_task_group() as group:
                group.start_soon(_call, a, "touch_record", {"record_id": "ctl", "call": "a", "release": "release-ctl"})
                await eventually(lambda: (records / "ctl.a.started").exists(), what="the first run to start")
                second = await _call(b, "touch_record", {"record_id": "ctl", "call": "b"})
                (records / "release-ctl").touch()
        assert second.is_error and "overlap on ctl" in _text(second)

    anyio.run(scenario)
    assert "ctl b" in _lines(records, "overlaps.log")


def test_two_agents_on_one_record_run_one_after_the_other(gateway: GatewayProcess, keys: Keys, records: Path) -> None:
    anyio.run(_race_on_one_record, gateway, gateway, keys, records, "r1")


def test_a_call_that_cannot_get_the_lock_in_time_names_the_holder_and_did_not_run(
    gateway: GatewayProcess, keys: Keys, records: Path
) -> None:
    """`rename_record` shares `update_record`'s lock on a record, and waits at most half a second for it."""

    async def scenario() -> Any:
        async with mcp_client(gateway.url, keys.a) as a, mcp_client(gateway.url, keys.b) as b:
            async with anyio.create_task_group() as group:
                arguments = {"record_id": "r2", "call": "a", "release": "release-r2"}
                group.start_soon(lambda: _call(a, "update_record", arguments, workflow="wf-a"))
                await eventually(lambda: (records / "r2.a.started").exists(), what="agent A's run to start")
                refused = await _call(b, "rename_record", {"record_id": "r2", "call": "b"}, workflow="wf-b")
                (records / "release-r2").touch()
            return refused

    refused = anyio.run(scenario)
    text = _text(refused)
    assert refused.is_error, text
    assert text.startswith("'crm__rename_record' did not run: the lock on 'crm' records by args.record_id is held ")
    assert "by agent 'agent-a' (workflow 'wf-a', tool 'crm__update_record') since 20" in text
    assert "(lock_wait 0.5 s). Nothing was sent to the backend; retry the call once that work is done." in text
    assert refused.meta["io.autonomy-gateway/error"]["type"] == "RecordLocked"
    assert not (records / "r2.b.started").exists()
    [entry] = [
        json.loads(line) for line in gateway.cli("audit", "search", "--json", "--outcome", "locked").stdout.splitlines()
    ]
    assert entry["agent"] == "agent-b" and entry["name"] == "crm__rename_record" and entry["decision"] == "allow"


def test_different_records_run_at_the_same_time(gateway: GatewayProcess, keys: Keys, records: Path) -> None:
    """Locks are per record, and a nested path (`args.order.id`) tells records apart too."""

    async def scenario() -> None:
        async with mcp_client(gateway.url, keys.a) as a, mcp_client(gateway.url, keys.b) as b:
            async with anyio.create_task_group() as group:
                for client, record, call in ((a, "r3", "a"), (b, "r4", "b")):
                    arguments = {"record_id": record, "call": call, "release": "release-r34"}
                    group.start_soon(_call, client, "update_record", arguments)
                for client, order, call in ((a, "o1", "a"), (b, "o2", "b")):
                    arguments = {"order": {"id": order}, "call": call, "release": "release-r34"}
                    group.start_soon(_call, client, "move_order", arguments)
                started = ("r3.a", "r4.b", "o1.a", "o2.b")
                await eventually(
                    lambda: all((records / f"{name}.started").exists() for name in started),
                    what="all four runs to be under way at once",
                )
                (records / "release-r34").touch()

    anyio.run(scenario)


# -- two gateway processes on one database, and a holder that dies --------------------------------


def test_two_gateways_serialise_one_record_and_a_killed_holders_lock_runs_out(
    tmp_path: Path, database_url: str
) -> None:
    records = tmp_path / "records"
    records.mkdir()
    first = _gateway(tmp_path / "first", records, database_url, lease=2)
    second = _gateway(tmp_path / "second", records, database_url, lease=2)
    try:
        first.start()
        second.start()
        keys = Keys(first)
        anyio.run(_race_on_one_record, first, second, keys, records, "shared")

        waiting: list[str] = []

        async def crash_then_take_over() -> Any:
            async with anyio.create_task_group() as group:

                async def doomed() -> None:
                    try:
                        async with mcp_client(first.url, keys.a) as a:
                            arguments = {"record_id": "crashed", "call": "a", "release": "never"}
                            await _call(a, "update_record", arguments, workflow="wf-doomed")
                    except Exception:  # the gateway dies under this call; that is the point
                        return

                group.start_soon(doomed)
                started = records / "crashed.a.started"
                await eventually(started.exists, what="the doomed run to start")
                assert first.process is not None
                os.kill(first.process.pid, signal.SIGKILL)
                first.process.wait(10)
                os.kill(int(started.read_text()), signal.SIGKILL)  # its backend goes down with it
                group.cancel_scope.cancel()
            (records / "go").touch()
            async with mcp_client(second.url, keys.b) as b:
                with anyio.fail_after(30):
                    arguments = {"record_id": "crashed", "call": "b", "release": "go"}
                    return await _call(b, "update_record", arguments, messages=waiting)

        result = anyio.run(crash_then_take_over)
        assert not result.is_error, _text(result)
        assert (
            waiting and "held by agent 'agent-a' (workflow 'wf-doomed'" in waiting[0]
        )  # it waited for the dead holder
        assert not _lines(records, "overlaps.log")
    finally:
        first.stop()
        second.stop()


# -- the lock itself, on each database -------------------------------------------------------------


def _call_on(record: str, *, agent: str = "agent-a", workflow: str | None = "wf-1") -> Call:
    origin = Origin(Principal(agent, ()), session_id="session-1")
    call = Call("tools/call", origin, "crm__update_record", {"record_id": record}, workflow=workflow)
    return call.resolved(Target("crm", "update_record"))


def _locks(database: Database, tmp_path: Path, *, lease: float, wait: float, poll: float = 0.2) -> RecordLocks:
    file = tmp_path / "crm.toml"
    lock = f'lock = "args.record_id"\nlock_wait = {wait}\nlock_lease = {lease}\n'
    file.write_text(f'kind = "mcp-stdio"\ncommand = ["x"]\n[tools.update_record]\n{lock}')
    return RecordLocks(database, [load_connector(file)], poll_interval=poll)


@pytest.mark.anyio
async def test_a_long_call_keeps_its_lock_and_the_holder_is_readable(database: Database, tmp_path: Path) -> None:
    """The lease lasts 1 s; the call holds it for 3 s, renewed meanwhile, and another process cannot take it."""
    here = _locks(database, tmp_path, lease=1, wait=0)
    elsewhere = _locks(database, tmp_path, lease=1, wait=0)  # another process's view of the same table
    async with anyio.create_task_group() as group:
        await group.start(here.run)
        async with here.held(_call_on("42")):
            [holder] = await elsewhere.holders(workflow="wf-1")
            assert (holder.agent, holder.tool, holder.connector) == ("agent-a", "crm__update_record", "crm")
            deadline = anyio.current_time() + 3
            while anyio.current_time() < deadline:
                with pytest.raises(
                    RecordLocked, match=r"held for the same record by agent 'agent-a' \(workflow 'wf-1'"
                ):
                    async with elsewhere.held(_call_on("42", agent="agent-b")):
                        pass
                await anyio.sleep(0.25)
            async with elsewhere.held(_call_on("43", agent="agent-b")):  # another record is free
                pass
        assert await elsewhere.holders() == []  # released when the block ended
        group.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_waiting_call_is_woken_by_the_release_and_a_cancelled_holder_releases(
    database: Database, tmp_path: Path
) -> None:
    """No polling here (once a minute): only the release in this process can wake the waiter in time."""
    locks = _locks(database, tmp_path, lease=30, wait=30, poll=60)
    order: list[str] = []
    holding, waiting = anyio.Event(), anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        waiting.set()

    async def holder(scope: anyio.CancelScope) -> None:
        with scope:
            async with locks.held(_call_on("7")):
                order.append("first")
                holding.set()
                await anyio.sleep_forever()  # until cancelled, as a client that goes away

    async with anyio.create_task_group() as group:
        scope = anyio.CancelScope()
        group.start_soon(holder, scope)
        await holding.wait()
        waited_from = anyio.current_time()

        async def waiter() -> None:
            async with locks.held(_call_on("7", agent="agent-b"), on_progress):
                order.append("second")

        group.start_soon(waiter)
        await waiting.wait()  # it found the lock held and said so
        scope.cancel()
    assert order == ["first", "second"]
    assert anyio.current_time() - waited_from < 5
    assert await locks.holders() == []


def test_lock_keys_differ_by_connector_and_values_and_agree_whatever_the_order() -> None:
    spec = LockSpec.of("crm", "update", ["args.account", "args.order.id"], wait=1, lease=1)
    key = spec.key({"account": "acme", "order": {"id": 7}, "note": "x"})
    assert key == spec.key({"order": {"id": 7}, "account": "acme"})
    assert key != spec.key({"account": "acme", "order": {"id": 8}})
    assert key != LockSpec.of("erp", "update", ["args.account", "args.order.id"], wait=1, lease=1).key(
        {"account": "acme", "order": {"id": 7}}
    )
    assert spec.key({}) == spec.key({"order": "not an object"})  # absent values are null: one shared lock


# -- bad configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "line", "problem"),
    [
        ('lock = "record_id"', 5, "'record_id' is not an argument path: write 'args.' and the property"),
        ('lock = ["args.id", "args."]', 5, "'args.' is not an argument path"),
        ('lock = ["args.id", "args.id"]', 5, "names one argument path twice"),
        ("lock_wait = 5", 4, "lock_wait and lock_lease apply to a record lock: set lock"),
        ('lock = "args.id"\nlock_wait = -1', 6, "greater than or equal to 0"),
        ('lock = "args.id"\nlock_lease = 0.1', 6, "greater than or equal to 1"),
    ],
)
def test_bad_lock_settings_are_refused_with_file_and_line(tmp_path: Path, body: str, line: int, problem: str) -> None:
    file = tmp_path / "crm.toml"
    file.write_text(f'kind = "mcp-stdio"\ncommand = ["x"]\n\n[tools.update_record]\n{body}\n')
    with pytest.raises(ConfigError) as refused:
        load_connector(file)
    message = str(refused.value)
    assert f"{file}:{line}: key 'tools.update_record" in message and problem in message, message


def test_a_lock_path_the_tool_does_not_have_withholds_the_connector_once_listed(tmp_path: Path) -> None:
    file = tmp_path / "crm.toml"
    file.write_text(
        'kind = "mcp-stdio"\ncommand = ["x"]\n\n[tools.update_record]\nlock = ["args.record", "args.order.number"]\n'
    )
    catalog = Catalog([load_connector(file)])
    schema = {
        "type": "object",
        "properties": {"record_id": {"type": "string"}, "order": {"type": "object", "properties": {"id": {}}}},
    }
    catalog.update("crm", Listing(tools=({"name": "update_record", "inputSchema": schema},)))
    problems = catalog.problems()["crm"]
    assert problems[0].startswith(
        f"{file}:5: [tools.update_record] lock path 'args.record' names no argument of tool 'update_record' of "
        "backend 'crm' (its input schema has no property 'record'); correct the path."
    )
    assert "lock path 'args.order.number'" in problems[1] and "no property 'order.number'" in problems[1]
    assert list(catalog.tools()) == []
    fixed = {
        "type": "object",
        "properties": {"record": {}, "order": {"type": "object"}},
    }  # order's properties undeclared
    catalog.update("crm", Listing(tools=({"name": "update_record", "inputSchema": fixed},)))
    assert "crm" not in catalog.problems() and [t.exposed for t in catalog.tools()] == ["crm__update_record"]


@pytest.mark.anyio
async def test_a_waiting_call_that_is_cancelled_stops_waiting_and_takes_nothing(
    database: Database, tmp_path: Path
) -> None:
    locks = _locks(database, tmp_path, lease=30, wait=60, poll=60)
    waiting = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        waiting.set()

    async with locks.held(_call_on("9")):
        async with anyio.create_task_group() as group:
            scope = anyio.CancelScope()

            async def waiter() -> None:
                with scope:
                    async with locks.held(_call_on("9", agent="agent-b"), on_progress):
                        raise AssertionError("the cancelled call must not get the lock")

            group.start_soon(waiter)
            await waiting.wait()
            scope.cancel()
        assert scope.cancelled_caught
        [holder] = await locks.holders()
        assert holder.agent == "agent-a"  # the holder keeps it
    assert await locks.holders() == []
