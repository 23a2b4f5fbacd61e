"""The audit trail and telemetry end to end: a real gateway process, real backends, the official
client, the `gateway audit` commands, an OTLP collector on 127.0.0.1 and `/metrics`."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import (
    KITCHEN_SINK_MARKERS_ENV,
    GatewayProcess,
    eventually,
    free_port,
    mcp_client,
    open_legacy_session,
    run_cli,
    stdio_connector,
    wait_until,
    write_gateway_config,
)

REASONING_KEY = "io.autonomy-gateway/reasoning"
WORKFLOW_KEY = "io.autonomy-gateway/workflow"
CANARIES = {
    "password": "CANARY-pw-7f3a9",
    "stripe": "sk_live_CANARY51Habcdefghijklmnop",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJDQU5BUlkifQ.c2lnbmF0dXJlQ0FOQVJZ",
    "github": "ghp_CANARYabcdefghijklmnopqrstuvwxyz0123",
}


class Collector:
    """An OTLP/HTTP receiver on 127.0.0.1 that keeps every payload it is sent."""

    def __init__(self) -> None:
        self.payloads: dict[str, list[bytes]] = {"/v1/traces": [], "/v1/metrics": []}
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                collector.payloads.setdefault(self.path, []).append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def spans(self) -> list[Any]:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        spans = []
        for body in self.payloads["/v1/traces"]:
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    spans.extend(scope.spans)
        return spans

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    running = Collector()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def markers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, collector: Collector, markers: Path) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("audited")
    write_gateway_config(
        directory,
        {"sink": stdio_connector(env={KITCHEN_SINK_MARKERS_ENV: str(markers)})},
        extra=(
            f'\n[telemetry]\notlp_endpoint = "{collector.url}"\nmetrics_export_interval = 1\n'
            '\n[audit]\nreplica_id = "gw-test-1"\nwrite_timeout = 1.5\n'
        ),
    )
    process = GatewayProcess(directory, free_port())
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def key(gateway: GatewayProcess) -> str:
    return gateway.create_key("auditor-bot", "qa")


def audit_search(gateway: GatewayProcess, *args: str) -> list[dict[str, Any]]:
    output = gateway.cli("audit", "search", "--json", "--limit", "500", *args).stdout
    return [json.loads(line) for line in output.splitlines() if line.strip()]


@pytest.mark.anyio
async def test_every_call_is_recorded_with_who_what_why_and_outcome(gateway: GatewayProcess, key: str) -> None:
    async with mcp_client(gateway.url, key) as client:
        await client.list_tools()
        sent = time.perf_counter()
        await client.call_tool(
            "sink__add",
            {"a": 2, "b": 3},
            meta={REASONING_KEY: "reconciling the Q3 totals", WORKFLOW_KEY: "wf-reconcile-42"},
        )
        round_trip_ms = (time.perf_counter() - sent) * 1000
        await client.call_tool("sink__fail_softly", {"reason": "out of stock"})
        with pytest.raises(Exception, match="unknown tool"):
            await client.call_tool("sink__nope", {})
    calls = audit_search(gateway, "--workflow", "wf-reconcile-42")
    assert len(calls) == 1
    call = calls[0]
    assert call["agent"] == "auditor-bot" and call["roles"] == ["qa"]
    assert call["name"] == "sink__add" and call["connector"] == "sink" and call["original_name"] == "add"
    assert call["reasoning"] == "reconciling the Q3 totals"
    assert call["decision"] == "allow" and call["policy_ids"] == ["tests-allow-everything"]
    assert call["outcome"] == "ok"
    outcome = call["result"]
    assert outcome["result"]["bytes"] > 0 and len(outcome["result"]["sha256"]) == 64
    latency = outcome["latency_ms"]
    # Each lap is a real duration (milliseconds, to the microsecond): the decision and the hop to the
    # backend each take some, the total covers both (the policy lap runs from the call's start, the
    # backend's after it; 0.002 allows for rounding each to 0.001), and all of it happened within
    # the round trip the client saw.
    assert latency["policy"] > 0 and latency["backend"] > 0
    assert latency["policy"] + latency["backend"] <= latency["total"] + 0.002
    assert latency["total"] < round_trip_ms
    assert call["protocol_version"] == "2026-07-28"
    outcomes = {c["name"]: c["outcome"] for c in audit_search(gateway, "--agent", "auditor-bot")}
    assert outcomes["sink__fail_softly"] == "tool_error"
    assert outcomes["sink__nope"] == "refused"
    assert any(
        c["method"] == "tools/list" and c["outcome"] == "ok" for c in audit_search(gateway, "--agent", "auditor-bot")
    )
    assert run_cli("audit", "verify", "--config", str(gateway.config_path)).returncode == 0


@pytest.mark.anyio
async def test_canary_secrets_reach_no_store_log_span_metric_or_export(
    gateway: GatewayProcess, key: str, collector: Collector, tmp_path: Path
) -> None:
    arguments = {
        "text": f"please use Bearer {CANARIES['jwt']} and {CANARIES['github']}",
    }
    async with mcp_client(gateway.url, key) as client:
        await client.call_tool(
            "sink__echo",
            arguments,
            meta={REASONING_KEY: f"the customer's key is {CANARIES['stripe']}"},
        )
        # A nested password field, which the backend never declared: still redacted before storage.
        await client.call_tool(
            "sink__show_arguments",
            {"value": "v", "config": {"db": {"auth": {"inner": {"password": CANARIES["password"]}}}}},
        )
    recorded = audit_search(gateway, "--tool", "sink__echo")
    assert recorded and "[REDACTED" in json.dumps(recorded)
    # Spans and metrics: flush by waiting for the collector to hear about our calls.
    await eventually(lambda: any("sink__echo" in s.name for s in collector.spans()), timeout=30, what="spans")
    metrics_text = gateway.metrics()
    exports = []
    for fmt in ("jsonl", "csv"):
        out = tmp_path / f"audit.{fmt}"
        gateway.cli("audit", "export", "--format", fmt, "--output", str(out))
        exports.append(out.read_bytes())
    database = b"".join(p.read_bytes() for p in gateway.directory.glob("gateway.db*"))
    places = {
        "database": database,
        "log": gateway.log_text().encode(),
        "spans": b"".join(collector.payloads["/v1/traces"]),
        "otlp metrics": b"".join(collector.payloads["/v1/metrics"]),
        "/metrics": metrics_text.encode(),
        "exports": b"".join(exports),
        "search": json.dumps(audit_search(gateway)).encode(),
    }
    for name, secret in CANARIES.items():
        for place, content in places.items():
            assert secret.encode() not in content, f"{name} canary found in {place}"


@pytest.mark.anyio
async def test_spans_follow_the_mcp_conventions_and_nest(
    gateway: GatewayProcess, key: str, collector: Collector
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with mcp_client(gateway.url, key) as client:
        await client.call_tool(
            "sink__echo", {"text": "traced"}, meta={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
        )

    def ours() -> list[Any]:
        return [s for s in collector.spans() if s.trace_id.hex() == trace_id]

    spans = await eventually(lambda: len(ours()) >= 4 and ours(), timeout=30, what="the call's spans")
    by_name = {s.name: s for s in spans}
    server = by_name["tools/call sink__echo"]
    attributes = {a.key: a.value for a in server.attributes}
    assert attributes["mcp.method.name"].string_value == "tools/call"
    assert attributes["gen_ai.tool.name"].string_value == "sink__echo"
    assert "mcp.protocol.version" in attributes
    children = {s.name for s in spans if s.parent_span_id == server.span_id}
    assert {"gateway.policy", "gateway.audit"} <= {name.split(" ")[0] for name in children}
    assert any(name.startswith("tools/call echo") for name in children)  # the backend call, original name
    trace_ids_in_log = [json.loads(line).get("trace_id") for line in gateway.log_text().splitlines() if "{" in line]
    assert trace_id in trace_ids_in_log


def test_metrics_endpoint_parses_as_prometheus_text(gateway: GatewayProcess, key: str) -> None:
    families = {f.name: f for f in text_string_to_metric_families(gateway.metrics())}
    assert "mcp_server_operation_duration_seconds" in families
    assert "gateway_policy_decisions" in families or "gateway_policy_decisions_total" in families
    assert any(name.startswith("gateway_audit_batch_size") for name in families)
    assert any(name.startswith("gateway_backend_health") for name in families)


def test_refused_authentication_is_recorded_without_the_credential(gateway: GatewayProcess) -> None:
    presented = "agw_" + "Z" * 43
    response = httpx.post(gateway.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                          headers={"Authorization": f"Bearer {presented}"})  # fmt: skip
    assert response.status_code == 401

    def refusals() -> list[tuple[str, ...]]:
        with sqlite3.connect(gateway.directory / "gateway.db") as db:
            return db.execute("SELECT content FROM audit_events WHERE kind = 'auth_refused'").fetchall()

    rows = wait_until(refusals, what="the refusal to be recorded")
    assert any("unknown API key" in row[0] and "127.0.0.1" in row[0] for row in rows)
    assert not any(presented in row[0] for row in rows)

    # What an operator sees of it: `audit search --kind auth`, as a table and as JSON.
    table = gateway.cli("audit", "search", "--kind", "auth")
    assert table.stdout.splitlines()[0].split() == ["TIME", "CLIENT", "AGENT", "AUTH", "PATH", "REASON"]
    assert any(
        line.split()[1] == "127.0.0.1" and "bearer" in line and "/mcp" in line and "unknown API key" in line
        for line in table.stdout.splitlines()[1:]
    ), table.stdout
    found = [
        json.loads(line) for line in gateway.cli("audit", "search", "--kind", "auth", "--json").stdout.splitlines()
    ]
    assert any(r["client_address"] == "127.0.0.1" and "unknown API key" in r["reason"] for r in found)
    assert presented not in table.stdout + table.stderr + json.dumps(found)


@pytest.mark.anyio
async def test_audit_write_failure_refuses_the_call_and_recovers(
    gateway: GatewayProcess, key: str, markers: Path
) -> None:
    async with mcp_client(gateway.url, key) as client:
        await client.call_tool("sink__echo", {"text": "warm"})  # key cached, session open
        holder = sqlite3.connect(gateway.directory / "gateway.db", timeout=1, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # the audit log cannot be written while this holds the lock
        try:
            refused = await client.call_tool("sink__show_arguments", {"marker": "while-locked"})
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert refused.is_error
        assert "audit" in refused.content[0].text.lower()  # type: ignore[union-attr]
        assert not (markers / "while-locked.called").exists()
        # Writes work again: the next call goes through and is recorded.
        ok = await client.call_tool("sink__show_arguments", {"marker": "after-unlock"})
        assert not ok.is_error
    assert (markers / "after-unlock.called").exists()
    assert run_cli("audit", "verify", "--config", str(gateway.config_path)).returncode == 0


def test_tampering_behind_the_gateways_back_is_named(tmp_path: Path) -> None:
    write_gateway_config(tmp_path, {"sink": stdio_connector()})
    gateway = GatewayProcess(tmp_path, free_port())
    gateway.start()
    key = gateway.create_key("auditor-bot")

    async def calls() -> None:
        async with mcp_client(gateway.url, key) as client:
            for text in ("one", "two", "three"):
                await client.call_tool("sink__echo", {"text": text})

    try:
        anyio.run(calls)
    finally:
        gateway.stop()
    assert run_cli("audit", "verify", "--config", str(gateway.config_path)).returncode == 0
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        seq = db.execute("SELECT seq FROM audit_events WHERE kind = 'call' ORDER BY seq LIMIT 1 OFFSET 1").fetchone()[0]
        db.execute(
            "UPDATE audit_events SET content = replace(content, 'auditor-bot', 'someone-else') WHERE seq = ?", (seq,)
        )
    result = run_cli("audit", "verify", "--config", str(gateway.config_path), check=False)
    assert result.returncode == 1
    assert f"{seq}" in result.stdout + result.stderr and "changed" in (result.stdout + result.stderr)


def test_sigkill_mid_call_leaves_an_entry_marked_unknown_after_restart(tmp_path: Path) -> None:
    write_gateway_config(
        tmp_path, {"sink": stdio_connector()}, extra='\n[audit]\nreplica_id = "gw-kill"\nlease_seconds = 3\n'
    )
    gateway = GatewayProcess(tmp_path, free_port())
    gateway.start()
    key = gateway.create_key("victim")
    in_flight = anyio.Event()

    async def call_and_get_killed() -> None:
        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            in_flight.set()

        async with anyio.create_task_group() as group:

            async def call() -> None:
                try:
                    async with mcp_client(gateway.url, key, mode="legacy") as client:
                        await client.call_tool("sink__slow", {"steps": 100000}, progress_callback=on_progress)
                except Exception:  # the gateway dies under this call; that is the point
                    return

            group.start_soon(call)
            with anyio.fail_after(30):
                await in_flight.wait()
            assert gateway.process is not None
            os.kill(gateway.process.pid, signal.SIGKILL)
            gateway.process.wait(10)
            group.cancel_scope.cancel()

    anyio.run(call_and_get_killed)
    # Same config, same replica id: the killed process never released its lease, so the new one
    # watches it run out (nobody renews it), takes the id over, and recovery runs at start.
    gateway.start()
    try:
        slow = [c for c in audit_search(gateway, "--tool", "sink__slow")]
        assert len(slow) == 1
        assert slow[0]["outcome"] == "unknown"
        assert run_cli("audit", "verify", "--config", str(gateway.config_path)).returncode == 0
    finally:
        gateway.stop()


def test_huge_and_deep_arguments_are_bounded_or_refused_clearly(tmp_path: Path) -> None:
    write_gateway_config(tmp_path, {"sink": stdio_connector()})
    config = tmp_path / "gateway.toml"
    config.write_text(config.read_text().replace("max_body_bytes = 1048576", "max_body_bytes = 16000000"))
    gateway = GatewayProcess(tmp_path, free_port())
    gateway.start()
    try:
        session = open_legacy_session(gateway.url, gateway.create_key("bulk"))
        blob = "a" * (10 * 1024 * 1024)
        body = (
            '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"sink__echo",'
            '"arguments":{"text":"big","blob":"' + blob + '"}}}'
        )
        big = httpx.post(gateway.url, headers=session, content=body, timeout=120)
        assert big.status_code == 200 and '"text":"big"' in big.text
        nested = '{"x":' * 150 + "{}" + "}" * 150
        body = (
            '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"sink__echo",'
            '"arguments":{"text":"nested","deep":' + nested + "}}}"
        )
        assert httpx.post(gateway.url, headers=session, content=body, timeout=60).status_code == 200
        # Deeper than the JSON parser allows: a clear parse error, and the gateway carries on.
        deepest = '{"x":' * 10000 + "{}" + "}" * 10000
        body = (
            '{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"sink__echo",'
            '"arguments":{"text":"deepest","deep":' + deepest + "}}}"
        )
        refused = httpx.post(gateway.url, headers=session, content=body, timeout=60)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == -32700
        assert gateway.readyz()["status"] == "ready"

        stored = audit_search(gateway, "--tool", "sink__echo")
        big_entry = next(c for c in stored if "blob" in (c["arguments"].get("preview") or ""))
        deep_entry = next(c for c in stored if "deep" in (c["arguments"].get("value") or {}))
        assert deep_entry["arguments"]["truncated"] is True and len(deep_entry["arguments"]["sha256"]) == 64
        assert big_entry["arguments"]["bytes"] > 10 * 1024 * 1024
        assert big_entry["arguments"]["truncated"] is True and len(big_entry["arguments"]["sha256"]) == 64
        assert len(big_entry["arguments"]["preview"]) < 100_000
        database_size = sum(p.stat().st_size for p in tmp_path.glob("gateway.db*"))
        assert database_size < 5 * 1024 * 1024
    finally:
        gateway.stop()


@pytest.mark.anyio
async def test_audit_api_is_for_admins_only(gateway: GatewayProcess, key: str) -> None:
    async with mcp_client(gateway.url, key) as client:
        await client.call_tool("sink__echo", {"text": "for the record"})
    admin = gateway.create_key("security-officer", "gateway-admin")
    url = f"{gateway.base_url}/api/audit/calls"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {key}"}).status_code == 403
    response = httpx.get(url, params={"agent": "auditor-bot"}, headers={"Authorization": f"Bearer {admin}"})
    assert response.status_code == 200
    calls = response.json()["calls"]
    assert calls and all(call["agent"] == "auditor-bot" for call in calls)
    verified = httpx.get(f"{gateway.base_url}/api/audit/verify", headers={"Authorization": f"Bearer {admin}"})
    assert verified.status_code == 200 and "ok" in verified.json()


@pytest.mark.anyio
async def test_trace_context_from_http_headers_is_honoured(
    gateway: GatewayProcess, key: str, collector: Collector
) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    headers = {"Authorization": f"Bearer {key}", "traceparent": f"00-{trace_id}-b7ad6b7169203331-01"}
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async with (
        httpx2.AsyncClient(headers=headers) as http,
        Client(streamable_http_client(gateway.url, http_client=http)) as client,
    ):
        await client.call_tool("sink__echo", {"text": "header-traced"})
    await eventually(
        lambda: any(s.trace_id.hex() == trace_id and s.name.startswith("gateway.") for s in collector.spans()),
        timeout=30,
        what="spans in the caller's trace",
    )
