"""Credentials against running gateways: a database outage while checking a key, and revocations
made by the CLI (a separate process) reaching every gateway process that shares the database."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from conftest import POSTGRES_ADMIN_URL
from harness import MCP_HEADERS, GatewayProcess, free_port, initialize_request, stdio_connector, write_gateway_config


def post_initialize(gateway: GatewayProcess, key: str) -> httpx.Response:
    return httpx.post(
        gateway.url, headers={**MCP_HEADERS, "Authorization": f"Bearer {key}"}, json=initialize_request(), timeout=60
    )


async def _administer(statements: list[str]) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=10)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture
def gateway_on_postgres(tmp_path: Path, postgres_url: str) -> Iterator[GatewayProcess]:
    write_gateway_config(tmp_path, {"sink": stdio_connector()}, database_url=postgres_url)
    gateway = GatewayProcess(tmp_path, free_port())
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.mark.postgres
def test_a_database_outage_while_checking_a_key_is_a_503_logged_once(
    gateway_on_postgres: GatewayProcess, postgres_url: str
) -> None:
    gateway = gateway_on_postgres
    key = gateway.create_key("outage-agent")  # never cached: the test config sets key_cache_seconds = 0
    assert post_initialize(gateway, key).status_code == 200
    name = make_url(postgres_url).database
    # The database refuses new connections and loses the open ones, as when its server goes away.
    anyio.run(
        _administer,
        [
            f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false',
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
        ],
    )
    try:
        answers: list[httpx.Response] = []

        async def burst() -> None:
            async with httpx.AsyncClient(timeout=60) as client, anyio.create_task_group() as group:
                for _ in range(20):
                    group.start_soon(_initialize, client, gateway.url, key, answers)

        anyio.run(burst)
    finally:
        anyio.run(_administer, [f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'])

    assert [answer.status_code for answer in answers] == [503] * 20
    for answer in answers:
        assert answer.headers["retry-after"] == "5"
        assert answer.text == (
            "Service unavailable: the gateway cannot check credentials because its database is unreachable; "
            "retry in 5 seconds\n"
        )
    log = gateway.log_text()
    assert log.count("cannot check credentials: storage unavailable; answering 503") == 1
    assert "Traceback" not in log
    # Back as soon as the database is.
    assert post_initialize(gateway, key).status_code == 200


async def _initialize(client: httpx.AsyncClient, url: str, key: str, answers: list[httpx.Response]) -> None:
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {key}"}
    answers.append(await client.post(url, headers=headers, json=initialize_request()))


def _trusting_gateway(directory: Path, database_url: str | None = None) -> GatewayProcess:
    """A gateway that would trust a checked key for a minute if nothing told it of a revocation."""
    write_gateway_config(directory, {"sink": stdio_connector()}, database_url=database_url)
    config = directory / "gateway.toml"
    config.write_text(config.read_text().replace("key_cache_seconds = 0", "key_cache_seconds = 60"))
    return GatewayProcess(directory, free_port())


def _seconds_until_refused(gateways: list[GatewayProcess], key: str, since: float) -> dict[int, float]:
    """For each gateway, how long after `since` the first request it refused was sent."""
    refused_after: dict[int, float] = {}
    deadline = since + 30
    with httpx.Client(timeout=60) as client:
        while len(refused_after) < len(gateways):
            assert time.monotonic() < deadline, f"revocation not seen by every gateway: {refused_after}"
            for gateway in gateways:
                if gateway.port in refused_after:
                    continue
                sent = time.monotonic()
                answer = client.post(
                    gateway.url, headers={**MCP_HEADERS, "Authorization": f"Bearer {key}"}, json=initialize_request()
                )
                if answer.status_code == 401:
                    assert answer.json()["error_description"] == "API key revoked"
                    refused_after[gateway.port] = sent - since
                else:
                    assert answer.status_code == 200, answer.text
            time.sleep(0.02)
    return refused_after


@pytest.mark.postgres
def test_a_revocation_from_the_cli_bites_on_every_replica_within_a_second(tmp_path: Path, postgres_url: str) -> None:
    replicas = [_trusting_gateway(tmp_path / name, postgres_url) for name in ("replica-a", "replica-b")]
    try:
        for gateway in replicas:
            gateway.start()
        key = replicas[0].create_key("shared-agent")
        for gateway in replicas:
            assert post_initialize(gateway, key).status_code == 200  # checked, and now cached for a minute

        replicas[1].cli("keys", "revoke", _key_id(replicas[1]))  # a separate process, as an operator runs it
        delays = _seconds_until_refused(replicas, key, time.monotonic())
    finally:
        for gateway in replicas:
            gateway.stop()

    assert all(delay <= 1.0 for delay in delays.values()), delays


def test_a_revocation_from_the_cli_bites_on_a_sqlite_gateway_within_a_second(tmp_path: Path) -> None:
    gateway = _trusting_gateway(tmp_path)
    try:
        gateway.start()
        key = gateway.create_key("local-agent")
        assert post_initialize(gateway, key).status_code == 200  # checked, and now cached for a minute

        gateway.cli("keys", "revoke", _key_id(gateway))
        delays = _seconds_until_refused([gateway], key, time.monotonic())
    finally:
        gateway.stop()

    assert all(delay <= 1.0 for delay in delays.values()), delays


def _key_id(gateway: GatewayProcess) -> str:
    (record,) = [json.loads(line) for line in gateway.cli("keys", "list", "--json").stdout.splitlines()]
    return record["id"]
