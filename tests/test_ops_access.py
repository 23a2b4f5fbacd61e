"""Who may read `/readyz` details and `/metrics`: anyone gets the readiness status, only the operator's
token gets the connectors, tools and counters behind it. A real gateway under uvicorn over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness import OPS_HEADERS, OPS_TOKEN, GatewayProcess, running_gateway, stdio_connector


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with running_gateway(tmp_path_factory.mktemp("ops"), {"secret-crm": stdio_connector()}) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def tokenless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with running_gateway(tmp_path_factory.mktemp("tokenless"), {"secret-crm": stdio_connector()}, ops_token=None) as g:
        yield g


@pytest.mark.parametrize("host", [None, "evil.example", "127.0.0.1"])
def test_readyz_without_credentials_answers_only_the_status(gateway: GatewayProcess, host: str | None) -> None:
    headers = {"Host": host} if host else {}
    response = httpx.get(f"{gateway.base_url}/readyz", headers=headers, timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}
    assert "secret-crm" not in response.text


def test_readyz_with_the_ops_token_answers_the_details(gateway: GatewayProcess) -> None:
    response = httpx.get(f"{gateway.base_url}/readyz", headers=OPS_HEADERS, timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["backends"]["secret-crm"]["state"] == "healthy"
    assert body["checks"]["storage"] == {"state": "healthy"}


@pytest.mark.parametrize("authorization", ["Bearer wrong-token", f"Bearer {OPS_TOKEN}x", f"Basic {OPS_TOKEN}"])
def test_readyz_with_a_wrong_token_is_refused_and_told_why(gateway: GatewayProcess, authorization: str) -> None:
    response = httpx.get(f"{gateway.base_url}/readyz", headers={"Authorization": authorization}, timeout=10)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "[server] ops_token" in response.json()["error"]
    assert "secret-crm" not in response.text


def test_metrics_need_the_ops_token(gateway: GatewayProcess) -> None:
    url = f"{gateway.base_url}/metrics"
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Host": "evil.example"}):
        refused = httpx.get(url, headers=headers, timeout=10)
        assert refused.status_code == 401, headers
        assert "Authorization: Bearer <token>" in refused.json()["error"]
        assert "secret-crm" not in refused.text
    served = httpx.get(url, headers=OPS_HEADERS, timeout=10)
    assert served.status_code == 200
    assert "gateway_" in served.text


def test_without_a_configured_token_details_are_not_served(tokenless: GatewayProcess) -> None:
    assert httpx.get(f"{tokenless.base_url}/readyz", timeout=10).json() == {"status": "ready"}
    for path in ("/readyz", "/metrics"):
        response = httpx.get(f"{tokenless.base_url}{path}", headers=OPS_HEADERS, timeout=10)
        assert response.status_code == 403
        error = response.json()["error"]
        assert "none is configured" in error and "[server] ops_token" in error
        assert "secret-crm" not in response.text


def test_a_short_ops_token_is_refused_at_start(tmp_path: Path) -> None:
    from harness import run_cli, write_gateway_config

    config = write_gateway_config(tmp_path, {}, ops_token="short")
    result = run_cli("serve", "--config", str(config), "--port", "0", check=False)
    assert result.returncode != 0
    assert "server.ops_token" in result.stderr and "at least 32 characters" in result.stderr
