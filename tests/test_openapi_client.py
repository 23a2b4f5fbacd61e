"""The OpenAPI connector's HTTP side in process, against the real test REST API over HTTP: redirects,
`Retry-After` beyond the bound, a refused token endpoint, unreadable certificates, path values that
would move the URL, health of an unreachable API, and a cancelled call."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from gateway.connectors.base import HealthState, Listing
from gateway.connectors.openapi.api_client import ApiClient
from gateway.connectors.openapi.connector import OpenApiRestConnector
from gateway.connectors.openapi.conversion import convert
from gateway.connectors.openapi.operations import Operation
from gateway.errors import BackendUnavailable, ConfigError, UnusableArguments
from gateway.settings.openapi import OpenApiConnector, OpenApiCuration
from gateway.settings.openapi_http import BackendTls, OAuth2ClientCredentialsAuth, RetryPolicy
from harness import free_port
from test_openapi_calls import Api, rest_api

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    server = Api()
    server.wait()
    yield server
    server.stop()


def operation(tool: str) -> Operation:
    found = convert(rest_api.SPEC, OpenApiCuration()).operation(tool)
    assert found is not None
    return found


def client(base_url: str, **overrides: Any) -> ApiClient:
    settings: dict[str, Any] = {
        "auth": None,
        "tls": BackendTls(),
        "retries": RetryPolicy(initial_backoff=0.01),
        "max_response_bytes": 1 << 20,
        "timeout": 5.0,
        "connect_timeout": 2.0,
        "files_relative_to": Path("."),
    }
    return ApiClient("crm", base_url, **{**settings, **overrides})


def text_of(result: dict[str, Any]) -> str:
    return "\n".join(block["text"] for block in result["content"])


async def test_a_redirect_within_the_origin_is_followed_and_one_elsewhere_is_not(api: Api) -> None:
    calls = client(api.url)
    try:
        same = await calls.call(operation("redirect"), {"where": "same"}, declared_output=True)
        assert same["structuredContent"]["id"] == "moved"
        away = await calls.call(operation("redirect"), {"where": "away"}, declared_output=True)
        assert away["isError"] and "another origin (http://elsewhere.invalid/steal)" in text_of(away)
    finally:
        await calls.aclose()


async def test_a_retry_after_beyond_the_bound_is_not_waited_for(api: Api) -> None:
    calls = client(api.url)
    try:
        before = api.counts().get("busy", 0)
        result = await calls.call(operation("busy_for_an_hour"), {}, declared_output=True)
        assert result["isError"] and "HTTP 503 Service Unavailable" in text_of(result)
        assert api.counts()["busy"] == before + 1, "Retry-After: 3600 is past max_retry_after: no retry"
    finally:
        await calls.aclose()


async def test_a_refused_token_request_names_the_endpoint_and_what_to_check(api: Api) -> None:
    auth = OAuth2ClientCredentialsAuth(
        type="oauth2_client_credentials",
        token_url=f"{api.url}/oauth/token",
        client_id=rest_api.CLIENT_ID,
        client_secret="wrong",  # type: ignore[arg-type]
    )
    calls = client(api.url, auth=auth)
    try:
        with pytest.raises(BackendUnavailable) as refused:
            await calls.call(operation("auth_check"), {}, declared_output=True)
        message = str(refused.value)
        assert f"the token endpoint {api.url}/oauth/token refused" in message and "HTTP 401" in message
        assert "client_id, client_secret and scopes" in message and "wrong" not in message
    finally:
        await calls.aclose()


def test_an_unreadable_client_certificate_is_refused_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "client.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"client_cert/client_key .*client\.pem cannot be loaded"):
        client("https://127.0.0.1:1", tls=BackendTls(client_cert=Path("client.pem")), files_relative_to=tmp_path)


async def test_path_values_cannot_move_the_url(api: Api) -> None:
    calls = client(api.url)
    try:
        for value in (".", ".."):
            with pytest.raises(UnusableArguments, match="would change the URL path"):
                await calls.call(operation("get_customer"), {"customer_id": value}, declared_output=True)
    finally:
        await calls.aclose()


async def test_an_unreachable_api_is_unhealthy_and_its_calls_say_so(tmp_path: Path) -> None:
    spec = tmp_path / "crm.json"
    spec.write_text(json.dumps(rest_api.SPEC))
    down = f"http://127.0.0.1:{free_port()}"
    settings = OpenApiConnector(
        name="crm",
        kind="openapi",
        spec=str(spec),
        base_url=down,
        retries=RetryPolicy(attempts=2, initial_backoff=0.01),
    )
    listings: list[Listing] = []

    async def listed(name: str, listing: Listing) -> None:
        listings.append(listing)

    connector = OpenApiRestConnector(settings, listed)
    async with anyio.create_task_group() as group:
        await connector.start(group)
        assert listings and len(listings[0].tools) == len(rest_api.SPEC["paths"]) + 1
        assert connector.health.state is HealthState.UNHEALTHY
        assert "the API did not answer: the connection failed" in connector.health.detail
        with pytest.raises(BackendUnavailable, match=r"could not be reached: .*\(tried 2 times\); retry shortly"):
            await connector.call_tool("get_customer", {"customer_id": "c1"}, meta=None, on_progress=None)
        await connector.close()
        group.cancel_scope.cancel()
    assert connector.health.state is HealthState.STOPPED


async def test_a_spec_that_cannot_be_loaded_leaves_the_connector_unhealthy_with_the_reason(tmp_path: Path) -> None:
    settings = OpenApiConnector(name="crm", kind="openapi", spec=str(tmp_path / "absent.json"), base_url="http://x")
    listings: list[Listing] = []

    async def listed(name: str, listing: Listing) -> None:
        listings.append(listing)

    connector = OpenApiRestConnector(settings, listed)
    async with anyio.create_task_group() as group:
        await connector.start(group)
    assert not listings and connector.listing.tools == ()
    assert connector.health.state is HealthState.UNHEALTHY
    assert "absent.json does not exist" in connector.health.detail


async def test_a_cancelled_call_stops_reading_the_body(api: Api) -> None:
    calls = client(api.url, timeout=60.0)
    try:
        with anyio.move_on_after(0.5) as scope:
            await calls.call(operation("slow_body"), {}, declared_output=True)
        assert scope.cancelled_caught
        # The pool is still usable: the cancelled stream was closed, not left holding a connection.
        result = await calls.call(operation("get_customer"), {"customer_id": "c1"}, declared_output=True)
        assert result["structuredContent"]["id"] == "c1"
    finally:
        await calls.aclose()
