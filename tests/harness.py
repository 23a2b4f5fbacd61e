"""Real parts for tests: the gateway as a subprocess under uvicorn, backends as subprocesses,
and the official `mcp` client over real HTTP. Readiness is awaited by polling, never by sleeping.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.testclient import TestClient

TESTS = Path(__file__).parent
KITCHEN_SINK = TESTS / "backends" / "kitchen_sink.py"
STARTUP_DEADLINE = 30.0
KITCHEN_SINK_MARKERS_ENV = "KITCHEN_SINK_MARKERS"
#: The `[server] ops_token` of every gateway the harness configures: `/readyz` details and `/metrics` need it.
OPS_TOKEN = "tests-ops-token-" + "0123456789abcdef" * 2
OPS_HEADERS = {"Authorization": f"Bearer {OPS_TOKEN}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Any, *, timeout: float = STARTUP_DEADLINE, what: str = "condition") -> Any:
    """Poll `predicate` until it returns a truthy value; fail the test with `what` on timeout."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, httpx.HTTPError) as exc:
            last_error = exc
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last error: {last_error!r})" if last_error else ""))


async def eventually(predicate: Any, *, timeout: float = STARTUP_DEADLINE, what: str = "condition") -> Any:
    """`wait_until` for async tests: polls without blocking the event loop the client runs on."""
    import anyio

    deadline = anyio.current_time() + timeout
    while anyio.current_time() < deadline:
        value = predicate()
        if value:
            return value
        await anyio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send `data` on a new connection as far as the server reads it; all the server answered.

    For requests HTTP clients will not send (huge header blocks, broken encodings); the request
    should ask for `Connection: close` so the answer ends.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        try:
            for start in range(0, len(data), 65536):
                sock.sendall(data[start : start + 65536])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading; its answer may still be there
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        return received


def gateway_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "gateway", *args]


def run_cli(*args: str, env: Mapping[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        gateway_command(*args), capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )
    if check and result.returncode != 0:
        raise AssertionError(f"gateway {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


@dataclass
class BackendProcess:
    """A kitchen-sink backend serving streamable HTTP on its own port."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_http_backend(
    script: Path = KITCHEN_SINK, *, env: Mapping[str, str] | None = None, port: int | None = None
) -> BackendProcess:
    """A backend on a free port, or on `port` again, as a restarted service would come back."""
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, str(script), "--http", str(port)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    backend = BackendProcess(port, process)

    def listening() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"backend {script.name} exited with {process.returncode}")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_until(listening, what=f"backend {script.name} to listen")
    return backend


def settled(readyz: httpx.Response) -> bool:
    """Whether a `/readyz` answer says the gateway serves and no backend is still in its first attempt.

    With details (asked with the ops token) each backend is looked at: a `degraded` gateway may
    have another backend still starting.
    """
    if readyz.status_code != 200:
        return False
    body = readyz.json()
    if "backends" in body:
        return all(backend["state"] != "starting" for backend in body["backends"].values())
    return body["status"] != "starting"


@dataclass
class GatewayProcess:
    """A gateway started with `gateway serve` on a free port, with its own config directory."""

    directory: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.directory / "gateway.log"

    @property
    def config_path(self) -> Path:
        return self.directory / "gateway.toml"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/mcp"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--config", str(self.config_path), check=check)

    def create_key(self, agent: str = "test-agent", *roles: str) -> str:
        role_args = [arg for role in roles for arg in ("--role", role)]
        result = self.cli("keys", "create", "--agent", agent, *role_args, "--json")
        return json.loads(result.stdout)["key"]

    def start(self, *, env: Mapping[str, str] | None = None, wait_ready: bool = True) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            gateway_command("serve", "--config", str(self.config_path), "--port", str(self.port)),
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=log,
        )
        if wait_ready:
            wait_until(self._started, what=f"gateway on port {self.port} to start; log:\n{self.log_text()}")

    def _started(self) -> bool:
        """Serving, and every backend's first connection attempt over: the tests then meet a settled catalog."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"gateway exited with {self.process.returncode}:\n{self.log_text()}")
        readyz = httpx.get(f"{self.base_url}/readyz", headers=OPS_HEADERS, timeout=2)
        if readyz.status_code in (401, 403):  # configured without the ops token: the status alone
            readyz = httpx.get(f"{self.base_url}/readyz", timeout=2)
        return settled(readyz)

    def serving(self) -> bool:
        """Whether `/readyz` answers 200: the gateway serves, whatever its backends are doing."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"gateway exited with {self.process.returncode}:\n{self.log_text()}")
        return httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200

    def readyz(self) -> dict[str, Any]:
        """The full `/readyz` answer (status, checks, backends), read with the ops token."""
        response = httpx.get(f"{self.base_url}/readyz", headers=OPS_HEADERS, timeout=5)
        body = response.json()
        assert "checks" in body, f"/readyz gave no details ({response.status_code}): {body}"
        return body

    def metrics(self) -> str:
        """`/metrics` in the Prometheus text format, read with the ops token."""
        response = httpx.get(f"{self.base_url}/metrics", headers=OPS_HEADERS, timeout=10)
        assert response.status_code == 200, f"/metrics answered {response.status_code}: {response.text}"
        return response.text

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


ALLOW_EVERYTHING = {"allow.cedar": '@id("tests-allow-everything")\npermit (principal, action, resource);\n'}


def write_gateway_config(
    directory: Path,
    connectors: Mapping[str, str],
    *,
    database_url: str | None = None,
    extra: str = "",
    server_extra: str = "",
    policies: Mapping[str, str] = ALLOW_EVERYTHING,
    ops_token: str | None = OPS_TOKEN,
) -> Path:
    """Write gateway.toml, one connector file per entry (name -> TOML body) and the access policies.

    Tests that are not about policy run under one policy that allows everything; the policy
    tests pass their own.
    """
    ops_line = f'ops_token = "{ops_token}"' if ops_token is not None else ""
    connectors_dir = directory / "connectors"
    connectors_dir.mkdir(parents=True, exist_ok=True)
    for name, body in connectors.items():
        (connectors_dir / f"{name}.toml").write_text(body)
    access_dir = directory / "policies" / "access"
    access_dir.mkdir(parents=True, exist_ok=True)
    for name, body in policies.items():
        (access_dir / name).write_text(body)
    url = database_url or f"sqlite+aiosqlite:///{directory / 'gateway.db'}"
    config = directory / "gateway.toml"
    config.write_text(
        f"""
[server]
host = "127.0.0.1"
max_body_bytes = 1048576
{ops_line}
{server_extra}

[storage]
url = "{url}"

[auth]
key_cache_seconds = 0

[logging]
level = "info"

[connectors]
dir = "connectors"

[policies]
dir = "policies"
{extra}
"""
    )
    return config


def stdio_connector(*, script: Path = KITCHEN_SINK, extra: str = "", env: Mapping[str, str] | None = None) -> str:
    env_line = ""
    if env:
        env_line = "env = { " + ", ".join(f'{k} = "{v}"' for k, v in env.items()) + " }\n"
    return f'kind = "mcp-stdio"\ncommand = ["{sys.executable}", "{script}"]\n{env_line}{extra}\n'


def http_connector(url: str, *, extra: str = "") -> str:
    return f'kind = "mcp-http"\nurl = "{url}"\n{extra}\n'


MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def initialize_request(version: str = "2025-11-25", request_id: int = 1) -> dict[str, Any]:
    """A hand-written `initialize`, for tests that speak the wire without the SDK client."""
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
    }


def open_legacy_session(url: str, key: str, version: str = "2025-11-25") -> dict[str, str]:
    """Initialize a session-based connection by hand; returns the headers its later requests carry."""
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {key}"}
    opened = httpx.post(url, headers=headers, json=initialize_request(version))
    assert opened.status_code == 200, opened.text
    session = {**headers, "Mcp-Session-Id": opened.headers["mcp-session-id"], "Mcp-Protocol-Version": version}
    httpx.post(url, headers=session, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    return session


@asynccontextmanager
async def mcp_client(url: str, key: str | None, *, mode: str = "auto", **kwargs: Any) -> AsyncIterator[Client]:
    """The official client over real HTTP with a bearer key."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http_client:
        transport = streamable_http_client(url, http_client=http_client, max_sse_event_size=None)
        async with Client(transport, mode=mode, **kwargs) as client:
            yield client


@contextmanager
def running_gateway(directory: Path, connectors: Mapping[str, str], **kwargs: Any) -> Iterator[GatewayProcess]:
    write_gateway_config(directory, connectors, **{k: v for k, v in kwargs.items() if k != "env"})
    gateway = GatewayProcess(directory, free_port())
    try:
        gateway.start(env=kwargs.get("env"))
        yield gateway
    finally:
        gateway.stop()


@contextmanager
def settled_client(app: Any, **kwargs: Any) -> Iterator[TestClient]:
    """A `TestClient` on an in-process app once no backend is still making its first attempt.

    The app serves before its backends have listed (`/readyz` says `starting` meanwhile); tests
    that look at a backend's tools wait for that to end, as a script would.
    """
    with TestClient(app, **kwargs) as client:
        wait_until(
            lambda: client.get("/readyz").json().get("status") != "starting", what="the backends' first attempts"
        )
        yield client
