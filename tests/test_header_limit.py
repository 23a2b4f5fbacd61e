"""Huge request header blocks are refused with 431 before any work, by both HTTP parsers, and the
gateway goes on serving. Raw sockets against a real gateway under uvicorn, since HTTP clients
refuse to send some of these requests themselves."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from harness import GatewayProcess, raw_exchange, running_gateway, stdio_connector

KIB = 1024
MIB = 1024 * KIB


@pytest.fixture(scope="module", params=["httptools", "h11"])
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp(f"headers-{request.param}")
    with running_gateway(directory, {"sink": stdio_connector()}, server_extra=f'http_parser = "{request.param}"') as g:
        yield g


def request_with(headers: list[tuple[str, str]]) -> bytes:
    """A `POST /mcp` with `headers`, asking the server to close the connection after its answer."""
    lines = [f"{name}: {value}\r\n" for name, value in [("Host", "127.0.0.1"), *headers]]
    end = "Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
    head = "POST /mcp HTTP/1.1\r\n" + "".join(lines) + end
    return head.encode() + b"{}"


def one_header(size: int) -> list[tuple[str, str]]:
    return [("X-Big", "a" * size)]


def many_headers(size: int) -> list[tuple[str, str]]:
    return [(f"X-Many-{i}", "b" * 50) for i in range(size // 64)]


@pytest.mark.parametrize("size", [128 * KIB, 8 * MIB], ids=["128KiB", "8MiB"])
@pytest.mark.parametrize("shape", [one_header, many_headers], ids=["one-header", "many-headers"])
def test_a_huge_header_block_is_refused_with_431_and_the_gateway_serves_on(
    gateway: GatewayProcess, size: int, shape: object
) -> None:
    assert callable(shape)
    answer = raw_exchange(gateway.port, request_with(shape(size)))
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 431 Request Header Fields Too Large", answer[:300]
    assert b"over 65536 bytes" in rest and b"[server] max_header_bytes" in rest
    # Refused before authentication: the same request with small headers is answered 401.
    assert raw_exchange(gateway.port, request_with([])).startswith(b"HTTP/1.1 401")
    assert httpx.get(f"{gateway.base_url}/healthz", timeout=10).status_code == 200


def test_headers_under_the_limit_and_large_bodies_are_served(gateway: GatewayProcess) -> None:
    answer = raw_exchange(gateway.port, request_with(many_headers(60 * KIB)))
    assert answer.startswith(b"HTTP/1.1 401"), answer[:300]
    # Bodies are not headers: several large bodies on one kept-alive connection, each read whole.
    with httpx.Client(timeout=30) as client:
        for _ in range(3):
            response = client.post(gateway.url, content=b"x" * (900 * KIB), headers={"Content-Type": "text/plain"})
            assert response.status_code == 401


@pytest.mark.parametrize(("overshoot", "status"), [(-64, b"401"), (64, b"431")])
def test_the_limit_is_the_size_of_the_header_block(gateway: GatewayProcess, overshoot: int, status: bytes) -> None:
    padding = 64 * KIB + overshoot - len(request_with([("X-Pad", "")])) + 2  # the body is not part of the block
    answer = raw_exchange(gateway.port, request_with([("X-Pad", "p" * padding)]))
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
