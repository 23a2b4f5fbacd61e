"""OpenAPI connectors calling a real REST API end to end: a gateway process with openapi connector
files, a Starlette API (with its OpenAPI document) under uvicorn, and the official `mcp` client.

One API and one gateway serve the whole module; each credential kind is its own connector file
pointing at the same API, whose `/auth/check` says which credential arrived.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from certificates import make_certificates
from harness import ALLOW_EVERYTHING, TESTS, GatewayProcess, free_port, mcp_client, wait_until, write_gateway_config

sys.path.insert(0, str(TESTS / "backends"))
import rest_api

POLICY_DENIED = -32003
GATEWAY_TIMEOUT = 3

BIG_ORDERS = """
@id("big-orders-refused")
forbid (principal, action == Action::"crm__create_order", resource)
when { context.input.amount.greaterThan(decimal("1000.0")) };
"""


class Api:
    """The test REST API in a subprocess."""

    def __init__(self, tls: Path | None = None) -> None:
        self.port = free_port()
        args = [sys.executable, str(TESTS / "backends" / "rest_api.py"), "--port", str(self.port)]
        if tls is not None:
            args += ["--tls", str(tls)]
        self.process = subprocess.Popen(args)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"

    def wait(self) -> None:
        import socket

        def listening() -> bool:
            assert self.process.poll() is None, "the test API exited"
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        wait_until(listening, what="the test API to listen")

    def counts(self) -> dict[str, int]:
        return httpx.get(f"{self.url}/_counts").json()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    server = Api()
    server.wait()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_api(certs: Path) -> Iterator[Api]:
    server = Api(tls=certs)
    server.wait()
    yield server
    server.stop()


def _openapi(spec: str, base_url: str, extra: str = "") -> str:
    return f'kind = "openapi"\nspec = "{spec}"\nbase_url = "{base_url}"\ntimeout = {GATEWAY_TIMEOUT}\n{extra}\n'


ONLY_AUTH = '[[select.include]]\noperations = ["auth_check"]\n'


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, api: Api, tls_api: Api, certs: Path) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("openapi-gateway")
    spec_file = directory / "crm-openapi.json"
    spec_file.write_text(json.dumps(rest_api.SPEC))
    connectors = {
        "crm": _openapi(
            str(spec_file),
            api.url,
            "max_response_bytes = 1048576\n"
            "[retries]\nattempts = 3\ninitial_backoff = 0.05\n"
            '[operations.get_customer]\nfixed = { tenant = "acme" }\n',
        ),
        # The spec by URL, fetched at load.
        "keyh": _openapi(
            f"{api.url}/openapi.json",
            api.url,
            '[auth]\ntype = "api_key"\nheader = "X-API-Key"\nkey = "${CRM_KEY}"\n' + ONLY_AUTH,
        ),
        "keyq": _openapi(
            str(spec_file), api.url, '[auth]\ntype = "api_key"\nquery = "api_key"\nkey = "${CRM_KEY}"\n' + ONLY_AUTH
        ),
        "bearer": _openapi(str(spec_file), api.url, '[auth]\ntype = "bearer"\ntoken = "${CRM_TOKEN}"\n' + ONLY_AUTH),
        "basic": _openapi(
            str(spec_file),
            api.url,
            f'[auth]\ntype = "basic"\nusername = "{rest_api.BASIC_USER}"\npassword = "${{CRM_PASSWORD}}"\n' + ONLY_AUTH,
        ),
        "oauth": _openapi(
            str(spec_file),
            api.url,
            '[auth]\ntype = "oauth2_client_credentials"\n'
            f'token_url = "{api.url}/oauth/token"\nclient_id = "{rest_api.CLIENT_ID}"\n'
            'client_secret = "${CRM_CLIENT_SECRET}"\nscopes = ["crm.read", "crm.write"]\n'
            'audience = "https://crm.test"\nrefresh_before = 1\n' + ONLY_AUTH,
        ),
        "none": _openapi(str(spec_file), api.url, ONLY_AUTH),
        "mtls": _openapi(
            str(spec_file),
            tls_api.url,
            f'[tls]\nclient_cert = "{certs}/client.pem"\nclient_key = "{certs}/client.key"\n'
            f'ca_bundle = "{certs}/ca.pem"\n' + '[auth]\ntype = "bearer"\ntoken = "${CRM_TOKEN}"\n' + ONLY_AUTH,
        ),
        "nocert": _openapi(
            str(spec_file),
            tls_api.url,
            f'[tls]\nca_bundle = "{certs}/ca.pem"\n[retries]\nattempts = 1\n' + ONLY_AUTH,
        ),
    }
    write_gateway_config(directory, connectors, policies={**ALLOW_EVERYTHING, "orders.cedar": BIG_ORDERS})
    gateway = GatewayProcess(directory, free_port())
    gateway.start(
        env={
            "CRM_KEY": rest_api.API_KEY,
            "CRM_TOKEN": rest_api.BEARER_TOKEN,
            "CRM_PASSWORD": rest_api.BASIC_PASSWORD,
            "CRM_CLIENT_SECRET": rest_api.CLIENT_SECRET,
        }
    )
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def key(gateway: GatewayProcess) -> str:
    return gateway.create_key("rest-agent")


def text_of(result: Any) -> str:
    return "\n".join(block.text for block in result.content if getattr(block, "type", "") == "text")


async def call(gateway: GatewayProcess, key: str, tool: str, arguments: dict[str, Any]) -> Any:
    async with mcp_client(gateway.url, key) as client:
        return await client.call_tool(tool, arguments)


@pytest.mark.anyio
async def test_tools_are_listed_without_fixed_parameters(gateway: GatewayProcess, key: str) -> None:
    async with mcp_client(gateway.url, key) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert {"crm__get_customer", "crm__create_order", "keyh__auth_check", "mtls__auth_check"} <= tools.keys()
    properties = tools["crm__get_customer"].input_schema["properties"]
    assert "customer_id" in properties and "fields" in properties
    assert "tenant" not in properties, "a fixed parameter is never shown to the agent"
    backends = gateway.readyz()["backends"]
    assert backends["crm"]["state"] == "healthy", backends["crm"]


@pytest.mark.anyio
async def test_get_sends_path_and_query_parameters_and_returns_structured_content(
    gateway: GatewayProcess, key: str
) -> None:
    result = await call(
        gateway, key, "crm__get_customer", {"customer_id": "a/b c", "fields": ["name", "email"], "tags": ["t1", "t2"]}
    )
    assert not result.is_error, text_of(result)
    data = result.structured_content
    assert data["id"] == "a/b c"
    assert data["raw_path"] == "/customers/a%2Fb%20c", "a path value is percent-encoded, a '/' adds no segment"
    assert data["fields"] == ["name", "email"], "an exploded array repeats the parameter"
    assert "tags=t1,t2" in data["query"], "explode = false joins the array with commas"
    assert data["tenant"] == "acme", "the fixed value is always sent"
    assert json.loads(text_of(result)) == data, "the text rendering is the same JSON"


@pytest.mark.anyio
async def test_post_sends_a_json_body(gateway: GatewayProcess, key: str) -> None:
    result = await call(gateway, key, "crm__create_order", {"item": "pen", "amount": 12.5, "note": "rush"})
    assert not result.is_error, text_of(result)
    assert result.structured_content == {"id": "order-1", "received": {"item": "pen", "amount": 12.5, "note": "rush"}}


@pytest.mark.anyio
async def test_4xx_and_5xx_are_tool_errors_with_status_and_body(gateway: GatewayProcess, key: str, api: Api) -> None:
    missing = await call(gateway, key, "crm__find_missing", {})
    assert missing.is_error
    assert "HTTP 404 Not Found" in text_of(missing) and "no customer with that id" in text_of(missing)
    before = api.counts().get("broken", 0)
    broken = await call(gateway, key, "crm__break_down", {})
    assert broken.is_error
    assert "HTTP 500 Internal Server Error" in text_of(broken)
    assert "database connection pool exhausted" in text_of(broken)
    assert api.counts()["broken"] == before + 1, "a 500 is not retried"


@pytest.mark.anyio
async def test_an_html_error_page_is_reduced_to_its_text(gateway: GatewayProcess, key: str) -> None:
    result = await call(gateway, key, "crm__html_error", {})
    assert result.is_error
    text = text_of(result)
    assert "Service down Back at 5 pm & later." in text
    assert "<" not in text and "var x" not in text and "color:red" not in text


@pytest.mark.anyio
async def test_a_10_mb_body_is_refused_and_the_gateway_serves_on(gateway: GatewayProcess, key: str) -> None:
    result = await call(gateway, key, "crm__huge_list", {})
    assert result.is_error
    assert "larger than this connector's max_response_bytes (1048576 bytes)" in text_of(result)
    assert result.structured_content is None, "nothing of a cut body is parsed"
    after = await call(gateway, key, "crm__get_customer", {"customer_id": "c1"})
    assert not after.is_error


@pytest.mark.anyio
async def test_a_slow_body_hits_the_connectors_timeout(gateway: GatewayProcess, key: str) -> None:
    started = time.monotonic()
    result = await call(gateway, key, "crm__slow_body", {})
    elapsed = time.monotonic() - started
    assert result.is_error
    assert f"did not answer within {GATEWAY_TIMEOUT}s" in text_of(result)
    assert GATEWAY_TIMEOUT <= elapsed < GATEWAY_TIMEOUT + 5


@pytest.mark.anyio
async def test_a_get_is_retried_on_503_and_a_post_is_not(gateway: GatewayProcess, key: str, api: Api) -> None:
    read = await call(gateway, key, "crm__flaky_read", {"key": "g1"})
    assert not read.is_error, text_of(read)
    assert read.structured_content == {"ok": True, "attempts": 3}
    assert api.counts()["flaky:GET:g1"] == 3
    write = await call(gateway, key, "crm__flaky_write", {"key": "p1"})
    assert write.is_error and "HTTP 503" in text_of(write)
    assert api.counts()["flaky:POST:p1"] == 1, "a POST is never repeated"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("connector", "credential"),
    [
        ("keyh", "api_key_header"),
        ("keyq", "api_key_query"),
        ("bearer", "bearer"),
        ("basic", "basic"),
        ("mtls", "bearer"),
    ],
)
async def test_each_credential_kind_reaches_the_api(
    gateway: GatewayProcess, key: str, connector: str, credential: str
) -> None:
    result = await call(gateway, key, f"{connector}__auth_check", {})
    assert not result.is_error, text_of(result)
    assert result.structured_content["credential"] == credential


@pytest.mark.anyio
async def test_an_api_key_sent_in_the_query_never_reaches_the_log(gateway: GatewayProcess, key: str) -> None:
    result = await call(gateway, key, "keyq__auth_check", {})
    assert not result.is_error, text_of(result)
    assert rest_api.API_KEY not in gateway.log_text()


@pytest.mark.anyio
async def test_the_agents_token_never_reaches_the_api(gateway: GatewayProcess, key: str) -> None:
    result = await call(gateway, key, "none__auth_check", {})
    assert result.is_error and "HTTP 401" in text_of(result)
    assert key not in gateway.log_text()


@pytest.mark.anyio
async def test_without_a_client_certificate_the_mtls_api_is_unreachable(gateway: GatewayProcess, key: str) -> None:
    result = await call(gateway, key, "nocert__auth_check", {})
    assert result.is_error
    assert "the API of connector 'nocert' could not be reached" in text_of(result)


@pytest.mark.anyio
async def test_oauth_tokens_are_cached_renewed_before_expiry_and_after_a_401(
    gateway: GatewayProcess, key: str, api: Api
) -> None:
    unauthorized = api.counts().get("unauthorized", 0)
    first = await call(gateway, key, "oauth__auth_check", {})
    assert not first.is_error, text_of(first)
    token = first.structured_content["token"]
    issued = api.counts()["tokens_issued"]
    again = await call(gateway, key, "oauth__auth_check", {})
    assert again.structured_content["token"] in (token, f"token-{issued + 1}")
    # Tokens live 2 s (the API refuses them after) and are renewed 1 s ahead: calls soon carry a new one.
    deadline = time.monotonic() + 15
    while True:
        renewed = await call(gateway, key, "oauth__auth_check", {})
        if renewed.structured_content["token"] != token:
            break
        assert time.monotonic() < deadline, "the token was never renewed"
    assert api.counts().get("unauthorized", 0) == unauthorized, "renewal before expiry means no call is refused"
    httpx.post(f"{api.url}/_revoke")
    after_revoke = await call(gateway, key, "oauth__auth_check", {})
    assert not after_revoke.is_error, text_of(after_revoke)
    assert api.counts()["unauthorized"] == unauthorized + 1, "one 401, then one renewal and one retry"


@pytest.mark.anyio
async def test_cedar_on_typed_arguments_applies_and_the_call_is_audited(
    gateway: GatewayProcess, key: str, api: Api
) -> None:
    before = api.counts().get("create_order", 0)
    async with mcp_client(gateway.url, key) as client:
        with pytest.raises(MCPError) as denied:
            await client.call_tool("crm__create_order", {"item": "yacht", "amount": 5000})
        assert denied.value.error.code == POLICY_DENIED
        allowed = await client.call_tool("crm__create_order", {"item": "pen", "amount": 999.5})
    assert not allowed.is_error
    assert api.counts()["create_order"] == before + 1, "the refused call never reached the API"
    output = gateway.cli("audit", "search", "--json", "--limit", "500", "--agent", "rest-agent").stdout
    entries = [json.loads(line) for line in output.splitlines() if line.strip()]
    orders = [e for e in entries if e.get("name") == "crm__create_order"]
    decisions = {(e["decision"], e["outcome"]) for e in orders}
    assert ("deny", "denied") in decisions and ("allow", "ok") in decisions
    refused = next(e for e in orders if e["decision"] == "deny")
    assert refused["policy_ids"] == ["big-orders-refused"] and refused["connector"] == "crm"
