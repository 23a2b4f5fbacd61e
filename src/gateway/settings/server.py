"""The HTTP endpoint agents connect to, and its sessions: gateway.toml's `[server]` table."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from gateway.settings.base import SettingsModel


class ServerSettings(SettingsModel):
    host: str = Field(
        default="127.0.0.1",
        description="Address to bind (`gateway serve --host` overrides it); loopback gets DNS-rebinding protection.",
    )
    port: int = Field(default=8787, ge=0, le=65535, description="Port to bind (`gateway serve --port` overrides it).")
    path: str = Field(default="/mcp", description="The URL path of the MCP endpoint.")
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, gt=0, description="Largest request body accepted; larger requests get HTTP 413."
    )
    name_separator: str = Field(
        default="__",
        description="Between connector and tool name in exposed names (`crm__update_record`): 1 to 4 of `A-Za-z0-9_-`.",
    )
    session_lifetime: float = Field(
        default=86400.0, gt=0, description="Seconds a session id stays valid; the client then starts a new session."
    )
    session_keys: tuple[SecretStr, ...] = Field(
        default=(),
        description=(
            "Keys (32+ characters) that seal session ids: the first seals, all open, so a new key can be put first "
            "and an old one dropped later. Every process behind one endpoint needs the same keys; unset: a random "
            "key per process (or per supervisor), so sessions end with it."
        ),
    )
    allowed_hosts: tuple[str, ...] = Field(
        default=(),
        description=(
            "Host headers accepted (`host:port`, `*` for any port), for DNS-rebinding protection; unset: loopback "
            "names when `host` is loopback, otherwise no check."
        ),
    )
    workers: int = Field(
        default=1, ge=1, le=64, description="Processes serving the port (SO_REUSEPORT); more than 1 needs PostgreSQL."
    )
    tools_page_size: int = Field(
        default=1000,
        ge=1,
        description=(
            "Catalog tools one tools/list response covers; agents follow nextCursor for the rest, so a huge "
            "catalog never makes one long response that holds up other requests."
        ),
    )
    max_header_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description=(
            "Largest request header block (request line and all headers, in bytes) the gateway reads; a larger "
            "one is answered 431 before authentication or any other work."
        ),
    )
    http_parser: Literal["auto", "httptools", "h11"] = Field(
        default="auto",
        description=(
            "HTTP/1.1 parser: 'httptools' (fast, C), 'h11' (pure Python) or 'auto' (httptools when installed). "
            "Both enforce max_header_bytes."
        ),
    )
    ops_token: SecretStr | None = Field(
        default=None,
        description=(
            "Bearer token that unlocks /readyz details (checks, backends, policies) and /metrics, e.g. "
            '"${GATEWAY_OPS_TOKEN}". Unset: /readyz answers only its status and /metrics is refused.'
        ),
    )

    @field_validator("session_keys")
    @classmethod
    def _session_keys_are_strong(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        if any(len(key.get_secret_value()) < 32 for key in value):
            raise ValueError("each session key must be at least 32 characters (e.g. `openssl rand -base64 32`)")
        return value

    @field_validator("ops_token")
    @classmethod
    def _ops_token_is_strong(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("the ops token must be at least 32 characters (e.g. `openssl rand -base64 32`)")
        return value

    @field_validator("name_separator")
    @classmethod
    def _separator_is_name_safe(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,4}", value):
            raise ValueError("must be 1 to 4 characters from letters, digits, '_' and '-' (LLM APIs allow no others)")
        return value
