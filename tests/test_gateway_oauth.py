"""The MCP authorization flow end to end: a real local OpenID provider, the gateway as an OAuth
resource server, and the official client presenting the provider's tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import mcp_types as types
import pytest
from joserfc.jwk import RSAKey

from harness import (
    MCP_HEADERS,
    GatewayProcess,
    free_port,
    mcp_client,
    open_legacy_session,
    stdio_connector,
    write_gateway_config,
)
from local_issuer import LocalIssuer


@pytest.fixture(scope="module")
def idp() -> Iterator[LocalIssuer]:
    issuer = LocalIssuer(RSAKey.generate_key(2048, parameters={"kid": "k1"}), audience="placeholder")
    yield issuer
    issuer.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, idp: LocalIssuer) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("oauth")
    port = free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    idp.audience = resource
    write_gateway_config(directory, {"sink": stdio_connector()})
    config = (directory / "gateway.toml").read_text().replace("[auth]\n", f'[auth]\nresource = "{resource}"\n')
    config += f'\n[[auth.issuers]]\nissuer = "{idp.url}"\nroles_claims = ["groups"]\n'
    (directory / "gateway.toml").write_text(config)
    process = GatewayProcess(directory, port)
    process.start()
    yield process
    process.stop()


def test_protected_resource_metadata_names_the_issuer(gateway: GatewayProcess, idp: LocalIssuer) -> None:
    for path in ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"):
        document = httpx.get(gateway.base_url + path).json()
        assert document["resource"] == gateway.url
        assert document["authorization_servers"] == [idp.url]


def test_challenge_points_at_the_resource_metadata(gateway: GatewayProcess) -> None:
    response = httpx.post(gateway.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{gateway.base_url}/.well-known/oauth-protected-resource/mcp"' in challenge


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_token_from_the_issuer_is_accepted_and_never_forwarded(
    gateway: GatewayProcess, idp: LocalIssuer, mode: str
) -> None:
    token = idp.token(azp="ops-agent", sub="dana", groups=["ops"])
    async with mcp_client(gateway.url, token, mode=mode) as client:
        result = await client.call_tool("sink__whoami", {})
        assert result.structured_content is not None
        assert result.structured_content["authorization"] is None
        echoed = await client.call_tool("sink__echo", {"text": "hi"})
        assert isinstance(echoed.content[0], types.TextContent) and echoed.content[0].text == "hi"
    assert token not in gateway.log_text()


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": "https://another-service.example/mcp"}, "token audience is not this gateway"),
        ({"exp": 1}, "token expired"),
        ({"iss": "https://impostor.example"}, "unknown token issuer"),
    ],
)
def test_tokens_not_issued_for_this_gateway_are_refused(
    gateway: GatewayProcess, idp: LocalIssuer, claims: dict[str, object], reason: str
) -> None:
    token = idp.token(**claims)
    response = httpx.post(
        gateway.url,
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 401
    assert reason in response.json()["error_description"]


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forged_tokens(idp: LocalIssuer) -> dict[str, str]:
    import json

    stranger = RSAKey.generate_key(2048, parameters={"kid": "k-unknown"})
    idp.signing_keys["k-unknown"] = stranger  # signs, but the issuer never publishes it
    unknown_kid = idp.token("k-unknown")
    del idp.signing_keys["k-unknown"]
    header, payload, signature = idp.token().split(".")
    claims = json.loads(__import__("base64").urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["azp"] = "admin-agent"
    tampered = ".".join((header, _b64(json.dumps(claims).encode()), signature))
    unsigned = ".".join((_b64(b'{"alg":"none","typ":"JWT"}'), payload, ""))
    return {"unknown signing key": unknown_kid, "invalid token signature": tampered, "'none'": unsigned}


@pytest.mark.parametrize("reason", ["unknown signing key", "invalid token signature", "'none'"])
def test_forged_tokens_are_refused_with_a_clear_401(gateway: GatewayProcess, idp: LocalIssuer, reason: str) -> None:
    token = _forged_tokens(idp)[reason]
    response = httpx.post(
        gateway.url,
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 401
    assert reason in response.json()["error_description"]
    assert response.headers["www-authenticate"].startswith("Bearer ")


def test_api_keys_keep_working_beside_tokens(gateway: GatewayProcess) -> None:
    key = gateway.create_key("key-agent")
    assert "Mcp-Session-Id" in open_legacy_session(gateway.url, key)


def test_an_oversized_token_is_refused_with_a_clear_401(gateway: GatewayProcess, idp: LocalIssuer) -> None:
    token = idp.token(padding="x" * 66_000)  # signed by the issuer, 88 KB
    response = httpx.post(
        gateway.url,
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={**MCP_HEADERS, "Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 401
    reason = response.json()["error_description"]
    assert reason.startswith(f"bearer credential is {len(token)} bytes, over this gateway's limit of 16384")
    assert 'error="invalid_token", error_description="bearer credential is' in response.headers["www-authenticate"]


SCOPED_POLICIES = {
    "scoped.cedar": """
@id("callers-by-scope")
permit (principal, action, resource) when { principal.scopes.contains("sink:call") };

@id("admins")
permit (principal in Role::"admin", action, resource);
""",
}


@pytest.mark.anyio
async def test_scopes_reach_policies_as_principal_scopes_and_never_as_roles(tmp_path: Path, idp: LocalIssuer) -> None:
    write_gateway_config(tmp_path, {"sink": stdio_connector()}, policies=SCOPED_POLICIES)
    config = tmp_path / "gateway.toml"
    config.write_text(
        config.read_text() + f'\n[[auth.issuers]]\nissuer = "{idp.url}"\naudiences = ["{idp.audience}"]\n'
    )
    gateway = GatewayProcess(tmp_path, free_port())
    gateway.start()
    try:

        async def visible_tools(token: str) -> set[str]:
            async with mcp_client(gateway.url, token) as client:
                return {tool.name for tool in (await client.list_tools()).tools}

        scoped = idp.token(azp="scoped-agent", scope="openid sink:call")
        async with mcp_client(gateway.url, scoped) as client:
            echoed = await client.call_tool("sink__echo", {"text": "by scope"})
            assert isinstance(echoed.content[0], types.TextContent) and echoed.content[0].text == "by scope"
        # A scope named like a role grants nothing: only the roles claims make roles.
        assert await visible_tools(idp.token(azp="self-promoted", scope="admin")) == set()
        assert "sink__echo" in await visible_tools(idp.token(azp="real-admin", groups=["admin"]))
    finally:
        gateway.stop()
