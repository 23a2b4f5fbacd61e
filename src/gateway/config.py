"""Typed settings: `gateway.toml` plus one `connectors/*.toml` file per backend.

Files are parsed once at start into frozen pydantic models and passed down; nothing reads
configuration from globals. `${VAR}` references in string values are resolved from the
environment at load time, so secrets live in the environment, and the models hold them as
`SecretStr` so a repr or a log line never shows them. Every error names the file, the line
and the key, because the person reading it is editing that file.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.audit.redaction import RedactionSettings
from gateway.errors import ConfigError
from gateway.identity.authenticators import DEFAULT_MAX_TOKEN_BYTES
from gateway.identity.oidc import IssuerSettings
from gateway.telemetry.settings import TelemetrySettings

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CONNECTOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")

#: Built-in `${...}` names that resolve without an environment variable of that name.
_BUILTIN_REFERENCES = {"PYTHON": sys.executable}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


ReasoningMode = Literal["off", "optional", "required"]


class ToolOverride(_Frozen):
    """Per-tool settings from a connector file's `[tools.<name>]` table."""

    enabled: bool = Field(default=True, description="`false` hides the tool from agents and refuses calls to it.")
    description: str | None = Field(
        default=None, description="Replaces the tool's description in `tools/list` (unset: the backend's own)."
    )
    labels: tuple[str, ...] = Field(
        default=(),
        description='Labels added to the connector\'s for this tool: policies see `Action::"label:<label>"`.',
    )
    reasoning: ReasoningMode | None = Field(
        default=None,
        description="Reasoning capture for this tool (`off`, `optional`, `required`); unset: the connector's.",
    )


class RestartPolicy(_Frozen):
    """How a dead backend is restarted: exponential backoff between attempts."""

    initial_backoff: float = Field(
        default=0.5, gt=0, description="Seconds before the first restart; each failed attempt doubles the wait."
    )
    max_backoff: float = Field(default=30.0, gt=0, description="The longest wait between restart attempts, in seconds.")


#: Defaults of the listing bounds: 1,000 tools is ten times what the largest real MCP servers offer
#: and already more than an agent's context can use; 64 KiB holds any honest tool definition
#: (long descriptions and rich input schemas stay under 10 KiB); 8 MiB is 1,000 such tools.
DEFAULT_MAX_TOOLS = 1000
DEFAULT_MAX_DEFINITION_BYTES = 64 * 1024
DEFAULT_MAX_LISTING_BYTES = 8 * 1024 * 1024


class ListingLimits(_Frozen):
    """How much of a backend's listing the gateway takes in, so no backend can stall it for the others."""

    max_tools: int = Field(
        default=DEFAULT_MAX_TOOLS,
        ge=1,
        description="Most tools one backend may list; a listing with more is refused whole and the previous one kept.",
    )
    max_definition_bytes: int = Field(
        default=DEFAULT_MAX_DEFINITION_BYTES,
        ge=1,
        description="Largest JSON size of one tool, resource or prompt definition; a larger one is left out.",
    )
    max_listing_bytes: int = Field(
        default=DEFAULT_MAX_LISTING_BYTES,
        ge=1,
        description="Largest JSON size of one backend's whole listing; a larger one is refused and the previous kept.",
    )


class _ConnectorBase(_Frozen):
    name: str = Field(
        description=(
            "The connector's name, the prefix of its exposed tool names and its `Server` in policies: "
            "letters, digits, `_` and `-`, at most 32. Default: the file name without `.toml`."
        )
    )
    description: str | None = Field(
        default=None, description="Free text for the people who read the file; agents do not see it."
    )
    labels: tuple[str, ...] = Field(
        default=(), description='Labels of every tool of this backend: policies see `Action::"label:<label>"`.'
    )
    timeout: float = Field(
        default=30.0, gt=0, description="Seconds a call may take before the agent gets a timeout tool error."
    )
    connect_timeout: float = Field(default=10.0, gt=0, description="Seconds a connection attempt may take.")
    restart: RestartPolicy = Field(
        default=RestartPolicy(),
        description="How a backend that died or cannot be reached is retried: exponential backoff between attempts.",
    )
    protocol: str = Field(
        default="auto",
        description="`auto` (discover, else `initialize`), `legacy` (`initialize`), or a revision like `2026-07-28`.",
    )
    health_interval: float = Field(default=15.0, gt=0, description="Seconds between health pings.")
    reasoning: ReasoningMode | None = Field(
        default=None, description="Reasoning capture for this backend's tools; unset: `[reasoning] mode`."
    )
    tools: dict[str, ToolOverride] = Field(
        default={},
        description="Per-tool overrides, keyed by the backend's own tool name (not the exposed name).",
    )
    max_tools: int | None = Field(
        default=None, ge=1, description="This backend's own `max_tools`; unset: the gateway's [connectors] value."
    )
    max_definition_bytes: int | None = Field(
        default=None,
        ge=1,
        description="This backend's own `max_definition_bytes`; unset: the gateway's [connectors] value.",
    )
    max_listing_bytes: int | None = Field(
        default=None,
        ge=1,
        description="This backend's own `max_listing_bytes`; unset: the gateway's [connectors] value.",
    )
    source: Path = Field(default=Path("."), exclude=True)
    #: The file as loaded, so problems found later (a listing, a start) can name the line to edit.
    _text: str | None = PrivateAttr(default=None)

    def location(self, *path: str) -> str:
        """`file:line` of a key or table in this connector's file, as a person editing it would look for it."""
        if self._text is None:
            return str(self.source)
        return f"{self.source}:{_line_of(self._text, path)}"

    def listing_limits(self, defaults: ListingLimits | None = None) -> ListingLimits:
        """The bounds on this backend's listing: its own values, else the gateway-wide ones."""
        base = defaults or ListingLimits()
        return ListingLimits(
            max_tools=self.max_tools or base.max_tools,
            max_definition_bytes=self.max_definition_bytes or base.max_definition_bytes,
            max_listing_bytes=self.max_listing_bytes or base.max_listing_bytes,
        )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _CONNECTOR_NAME.fullmatch(value):
            raise ValueError("must start with a letter or digit and hold only letters, digits, '_' or '-' (at most 32)")
        return value

    @field_validator("protocol")
    @classmethod
    def _known_protocol(cls, value: str) -> str:
        from mcp_types.version import MODERN_PROTOCOL_VERSIONS

        if value not in ("auto", "legacy", *MODERN_PROTOCOL_VERSIONS):
            raise ValueError(f"must be 'auto', 'legacy' or one of {', '.join(MODERN_PROTOCOL_VERSIONS)}")
        return value


class McpStdioConnector(_ConnectorBase):
    """A local MCP server the gateway starts as a subprocess and talks to over stdin/stdout."""

    kind: Literal["mcp-stdio"] = Field(description="A local MCP server the gateway starts and supervises.")
    command: tuple[str, ...] = Field(
        min_length=1, description='The program and its arguments, e.g. `["${PYTHON}", "crm_server.py"]`.'
    )
    env: dict[str, SecretStr] = Field(
        default={},
        description=(
            "The backend's environment variables; it inherits only HOME, LOGNAME, PATH, SHELL, TERM and USER "
            "from the gateway, so its secrets go here."
        ),
    )
    cwd: Path | None = Field(
        default=None, description="Working directory, relative to this file; unset: the directory of this file."
    )


class McpHttpConnector(_ConnectorBase):
    """A remote MCP server reached over streamable HTTP with the connector's own credentials."""

    kind: Literal["mcp-http"] = Field(description="A remote MCP server over streamable HTTP.")
    url: str = Field(description="The backend's MCP endpoint, an http:// or https:// URL.")
    headers: dict[str, SecretStr] = Field(
        default={},
        description="Headers sent with every request to the backend: its credentials (the agent's never are).",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


ConnectorSettings = Annotated[McpStdioConnector | McpHttpConnector, Field(discriminator="kind")]


class ServerSettings(_Frozen):
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


class StorageSettings(_Frozen):
    url: str = Field(
        default="sqlite+aiosqlite:///gateway.db",
        description=(
            "The database: `sqlite:///<file>` (relative to this file) for one process, "
            "`postgresql://user:password@host/db` for several workers or replicas."
        ),
    )


class AuthSettings(_Frozen):
    """Who may call: API keys issued by the gateway, and/or JWTs from the organisation's issuers.

    `resource` is this gateway's public `/mcp` URL, its OAuth resource identifier (RFC 8707/9728):
    it is announced in `/.well-known/oauth-protected-resource` and is the audience an issuer's
    tokens must carry unless the issuer names `audiences` itself.
    """

    key_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="Seconds a verified API key is trusted before it is checked again in the database.",
    )
    revocation_poll_seconds: float = Field(
        default=0.5,
        gt=0,
        description=(
            "How often each gateway process looks for API keys revoked elsewhere (another replica, or "
            "`gateway keys revoke`) and stops accepting them: a revocation bites everywhere within about this long."
        ),
    )
    api_keys: bool = Field(default=True, description="Accept API keys made by `gateway keys create`.")
    max_token_bytes: int = Field(
        default=DEFAULT_MAX_TOKEN_BYTES,
        gt=0,
        description=(
            "Largest bearer credential (API key or JWT) accepted, in bytes; a longer one is refused with 401 "
            "before it is decoded, so oversized tokens cost no parsing."
        ),
    )
    resource: str | None = Field(
        default=None,
        description=(
            "This gateway's public `/mcp` URL, its OAuth resource id: turns on RFC 9728 metadata and the "
            "`WWW-Authenticate` hint, and is the default audience of issuers' tokens."
        ),
    )
    scopes_supported: tuple[str, ...] = Field(
        default=(), description="Scopes announced in the protected-resource metadata, for clients that ask for them."
    )
    issuers: tuple[IssuerSettings, ...] = Field(
        default=(), description="OpenID providers whose JWT access tokens are accepted (one `[[auth.issuers]]` each)."
    )

    @model_validator(mode="before")
    @classmethod
    def _audience_defaults_to_resource(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("resource") and isinstance(data.get("issuers"), list):
            data = {
                **data,
                "issuers": [
                    {**issuer, "audiences": [data["resource"]]}
                    if isinstance(issuer, dict) and "audiences" not in issuer
                    else issuer
                    for issuer in data["issuers"]
                ],
            }
        return data

    @model_validator(mode="after")
    def _some_way_in(self) -> AuthSettings:
        if not self.api_keys and not self.issuers:
            raise ValueError("enable API keys (api_keys = true) or configure at least one [[auth.issuers]]")
        return self


class ReasoningSettings(_Frozen):
    """Asking agents why they call a tool, without changing the agent.

    `optional` adds a `parameter` to every tool's input schema whose description asks the model
    for its reasoning; `required` also refuses calls without it. The gateway takes the value out
    of the arguments before the backend sees them. Connector files and `[tools.<name>]` tables
    may override the mode.
    """

    mode: ReasoningMode = Field(
        default="off",
        description=(
            "`off`; `optional` adds a reasoning parameter to every tool's input schema; `required` also refuses "
            "calls without it."
        ),
    )
    parameter: str = Field(
        default="reasoning",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
        description="Name of the added parameter; taken out of the arguments before the backend sees them.",
    )
    description: str = Field(
        default=(
            "Why you are calling this tool now: the goal it serves and what you expect it to do. "
            "Recorded in the audit log and checked by policy; it is not passed to the tool."
        ),
        description="The added parameter's description: what the model reads when it decides what to write.",
    )


class AuditSettings(_Frozen):
    """The audit log: who writes it, how it is signed, kept and read.

    `replica_id` names this gateway's hash chain; every process writing to one database needs its
    own, which a lease in the database enforces. `signing_key` is an Ed25519 private key (PEM) that
    signs the periodic checkpoints, which `gateway audit checkpoints` exports for `audit verify`.
    """

    replica_id: str | None = Field(
        default=None,
        description=(
            "Name of this process's audit hash chain. Unset: one unique to each process start (host name, pid and a "
            "random part; workers add `-w<index>`). A start is refused while another live process holds the same id."
        ),
    )
    lease_seconds: float = Field(
        default=30.0,
        ge=1,
        description=(
            "How long this process's claim on its replica id lasts without a heartbeat (renewed every third of it). "
            "When a process dies, its id is free again after this long, and a live process then records the calls "
            "it left open as 'unknown'. Clocks of hosts sharing the database must agree to well within it."
        ),
    )
    signing_key: Path | None = Field(
        default=None,
        description="Ed25519 private key (PEM) that signs checkpoints (`openssl genpkey -algorithm ed25519`).",
    )
    checkpoint_every: int = Field(default=1000, ge=1, description="Entries between two checkpoints of the chain.")
    max_batch: int = Field(default=256, ge=1, description="Most entries committed in one transaction (group commit).")
    max_wait_ms: float = Field(
        default=0.0,
        ge=0,
        description="Milliseconds the writer may keep a batch open for callers when busy; a lone call never waits.",
    )
    write_timeout: float = Field(
        default=5.0, gt=0, description="Seconds an audit write may take before the call is refused."
    )
    retention_days: float | None = Field(
        default=None, gt=0, description="Entries older than this are pruned daily; unset: kept for ever."
    )
    admin_roles: tuple[str, ...] = Field(
        default=("gateway-admin",), description="Roles whose principals may read `/api/audit/...`."
    )
    redaction: RedactionSettings = Field(
        default=RedactionSettings(),
        description="What is removed from arguments, reasoning and text before anything is stored, logged or traced.",
    )


class LoggingSettings(_Frozen):
    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Least severe level written to stderr."
    )
    format: Literal["json", "text"] | None = Field(
        default=None,
        description=(
            "How log lines on stderr look: `json` (one object per line with `trace_id` and `span_id`, for log "
            "collectors) or `text` (time, level, message and fields, for people). Unset: text when stderr is a "
            "terminal, JSON otherwise."
        ),
    )


class ConnectorsSettings(ListingLimits):
    """Where the connector files are, and the listing bounds every connector has unless its file sets its own."""

    dir: Path = Field(
        default=Path("connectors"), description="Directory of the connector files, one `*.toml` per backend."
    )


class PoliciesSettings(_Frozen):
    """Where the Cedar policies live (`access/*.cedar`, `tests/`) and how often to look for edits."""

    dir: Path = Field(default=Path("policies"), description="Directory holding `access/*.cedar` and `tests/`.")
    reload_interval: float = Field(
        default=1.0, gt=0, description="Seconds between checks for added, removed or changed policy files."
    )


class GatewaySettings(_Frozen):
    server: ServerSettings = Field(
        default=ServerSettings(), description="The HTTP endpoint agents connect to, and its sessions."
    )
    storage: StorageSettings = Field(
        default=StorageSettings(), description="Where keys, the audit log and backends' last listings are kept."
    )
    auth: AuthSettings = Field(default=AuthSettings(), description="Which credentials agents may authenticate with.")
    logging: LoggingSettings = Field(default=LoggingSettings(), description="The gateway's own log on stderr.")
    reasoning: ReasoningSettings = Field(
        default=ReasoningSettings(), description="Asking agents why they call a tool, without changing the agent."
    )
    telemetry: TelemetrySettings = Field(
        default=TelemetrySettings(),
        description="Traces and metrics; nothing leaves the process unless `otlp_endpoint` is set.",
    )
    audit: AuditSettings = Field(
        default=AuditSettings(), description="The write-ahead audit log: its chain, checkpoints, retention and readers."
    )
    connectors: ConnectorsSettings = Field(
        default=ConnectorsSettings(), description="Where the backends are described."
    )
    policies: PoliciesSettings = Field(
        default=PoliciesSettings(), description="Where the Cedar access policies live and how often they are re-read."
    )
    source: Path | None = Field(default=None, exclude=True)


class Config(_Frozen):
    """Everything the gateway was started with: its own settings and every backend's."""

    gateway: GatewaySettings
    connectors: tuple[McpStdioConnector | McpHttpConnector, ...]


def load_config(path: Path | str | None, *, with_connectors: bool = True) -> Config:
    """Load `gateway.toml` (or defaults when `path` is None) and the connector files it points at.

    Commands that never talk to backends (keys, migrate) pass `with_connectors=False`, so they
    work without the backends' secrets in the environment.
    """
    if path is None:
        settings = GatewaySettings()
        base = Path.cwd()
    else:
        config_path = Path(path)
        data, text = _read_toml(config_path)
        settings = _validate(GatewaySettings, {**data}, config_path, text)
        settings = settings.model_copy(update={"source": config_path.resolve()})
        base = config_path.resolve().parent
    settings = _with_resolved_paths(settings, base)
    connectors = (
        load_connectors(settings.connectors.dir, separator=settings.server.name_separator) if with_connectors else ()
    )
    return Config(gateway=settings, connectors=_with_listing_defaults(connectors, settings.connectors))


def _with_listing_defaults(
    connectors: tuple[McpStdioConnector | McpHttpConnector, ...], defaults: ListingLimits
) -> tuple[McpStdioConnector | McpHttpConnector, ...]:
    """Every connector carries its effective listing bounds, so the parts that read them need no gateway settings."""
    return tuple(connector.model_copy(update=dict(connector.listing_limits(defaults))) for connector in connectors)


def load_connectors(directory: Path, *, separator: str = "__") -> tuple[McpStdioConnector | McpHttpConnector, ...]:
    """Load every `*.toml` in `directory`, in name order; refuse duplicates and names the separator makes ambiguous."""
    if not directory.is_dir():
        raise ConfigError(f"{directory}: connectors directory does not exist")
    connectors: list[McpStdioConnector | McpHttpConnector] = []
    seen: dict[str, Path] = {}
    for file in sorted(directory.glob("*.toml")):
        connector = load_connector(file, separator=separator)
        if connector.name in seen:
            raise ConfigError(
                f"{file}: connector name {connector.name!r} is already used by {seen[connector.name]}; "
                "every connector needs its own name"
            )
        seen[connector.name] = file
        connectors.append(connector)
    return tuple(connectors)


def load_connector(file: Path, *, separator: str = "__") -> McpStdioConnector | McpHttpConnector:
    """Load one connector file; its name defaults to the file name without `.toml`."""
    data, text = _read_toml(file)
    named_in_file = "name" in data
    data.setdefault("name", file.stem)
    data = _resolve_references(data, file, text, ())
    if "kind" not in data:
        raise ConfigError(f'{file}: key \'kind\' is missing: set kind = "mcp-stdio" or kind = "mcp-http"')
    from pydantic import TypeAdapter

    adapter: TypeAdapter[McpStdioConnector | McpHttpConnector] = TypeAdapter(ConnectorSettings)
    try:
        connector = adapter.validate_python(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, file, text)) from None
    update: dict[str, Any] = {"source": file.resolve()}
    if isinstance(connector, McpStdioConnector):
        base = file.resolve().parent
        update["cwd"] = (base / connector.cwd).resolve() if connector.cwd else base
    connector = connector.model_copy(update=update)
    connector._text = text
    _refuse_ambiguous_name(connector, file, separator, named_in_file=named_in_file)
    return connector


def _refuse_ambiguous_name(
    connector: McpStdioConnector | McpHttpConnector, file: Path, separator: str, *, named_in_file: bool
) -> None:
    """Exposed names are `<connector><separator><tool>`; refuse a connector name that makes that ambiguous.

    `a` + `__` + `b__c` and `a__b` + `__` + `c` are the same string, and so are `a_` + `__` + `x`
    and `a` + `__` + `_x`: a name holding the separator, or ending with the start of it, lets
    one backend's tool take another backend's exposed name. Any other name cannot.
    """
    name = connector.name
    if named_in_file:
        where, subject = connector.location("name"), f"key 'name': connector name {name!r}"
    else:
        where, subject = f"{file}:1", f"the file name gives connector name {name!r}, which"
    fix = 'choose another name (set name = "..." in the file, or rename the file)'
    # A connector name is never empty, so only a separator after the first character can be ambiguous.
    if (at := name.find(separator, 1)) != -1:
        left, right = name[:at], name[at + len(separator) :]
        raise ConfigError(
            f"{where}: {subject} contains the name separator {separator!r}, so exposed names would be ambiguous "
            f"(tool 'x' of {name!r} and tool '{right}{separator}x' of a connector {left!r} would both be "
            f"'{name}{separator}x'); {fix}"
        )
    for length in range(len(separator) - 1, 0, -1):
        start = separator[:length]
        if name[1:].endswith(start):
            raise ConfigError(
                f"{where}: {subject} ends with {start!r}, the start of the name separator {separator!r}, so exposed "
                f"names would be ambiguous (tool 'x' of {name!r} and tool '{start}x' of a connector "
                f"{name[: -len(start)]!r} would both be '{name}{separator}x'); {fix}"
            )


def _read_toml(file: Path) -> tuple[dict[str, Any], str]:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: invalid TOML: {exc}") from None


def _validate(model: type[GatewaySettings], data: dict[str, Any], file: Path, text: str) -> GatewaySettings:
    data = _resolve_references(data, file, text, ())
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, file, text)) from None


def _with_resolved_paths(settings: GatewaySettings, base: Path) -> GatewaySettings:
    """Make relative paths in the settings relative to the config file, not the working directory."""
    connectors_dir = (base / settings.connectors.dir).resolve()
    policies_dir = (base / settings.policies.dir).resolve()
    url = settings.storage.url
    match = re.match(r"^(sqlite(?:\+aiosqlite)?:///)(?!/)(.+)$", url)
    if match and match.group(2) != ":memory:":
        url = f"{match.group(1)}{(base / match.group(2)).resolve()}"
    audit = settings.audit
    if audit.signing_key is not None:
        audit = audit.model_copy(update={"signing_key": (base / audit.signing_key).resolve()})
    return settings.model_copy(
        update={
            "audit": audit,
            "connectors": settings.connectors.model_copy(update={"dir": connectors_dir}),
            "policies": settings.policies.model_copy(update={"dir": policies_dir}),
            "storage": settings.storage.model_copy(update={"url": url}),
        }
    )


def _resolve_references(value: Any, file: Path, text: str, path: tuple[str | int, ...]) -> Any:
    """Replace `${VAR}` in every string; a missing variable is an error naming file, line and key."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in os.environ:
                return os.environ[name]
            if name in _BUILTIN_REFERENCES:
                return _BUILTIN_REFERENCES[name]
            raise ConfigError(
                f"{file}:{_line_of(text, path)}: key '{_dotted(path)}' refers to environment variable "
                f"{name}, which is not set"
            )

        return _ENV_REFERENCE.sub(substitute, value)
    if isinstance(value, Mapping):
        return {k: _resolve_references(v, file, text, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_references(v, file, text, (*path, i)) for i, v in enumerate(value)]
    return value


def _describe(exc: ValidationError, file: Path, text: str) -> str:
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = tuple(part for part in error["loc"] if not (isinstance(part, str) and part.startswith("mcp-")))
        if error["type"] == "union_tag_invalid":
            loc = ("kind",)
        lines.append(f"{file}:{_line_of(text, loc)}: key '{_dotted(loc)}': {error['msg']}")
    return "\n".join(lines)


def _dotted(path: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in path) or "(top level)"


def _line_of(text: str, path: tuple[str | int, ...]) -> int:
    """Best-effort line number of a key path in TOML text: the key's line after its table header."""
    keys = [str(part) for part in path if isinstance(part, str)]
    if not keys:
        return 1
    lines = text.splitlines()
    start = 0
    # The path names a table of its own, e.g. [tools.update_record]: its header is the line.
    whole = _table_header(keys)
    for number, line in enumerate(lines):
        if whole.match(line):
            return number + 1
    # Find the deepest table header that is a prefix of the path, e.g. [tools.update_record].
    for depth in range(len(keys) - 1, 0, -1):
        header = _table_header(keys[:depth])
        for number, line in enumerate(lines):
            if header.match(line):
                start = number
                break
        else:
            continue
        break
    for key in reversed(keys):
        quoted = r"""["']?""" + re.escape(key) + r"""["']?\s*="""
        key_line = re.compile(r"^\s*" + quoted + r"|[{,]\s*" + quoted)
        for number in range(start, len(lines)):
            if key_line.search(lines[number]):
                return number + 1
    header = re.compile(r"^\s*\[+\s*" + re.escape(keys[-1]) + r"\s*\]+")
    for number, line in enumerate(lines):
        if header.match(line):
            return number + 1
    return start + 1


def _table_header(keys: list[str]) -> re.Pattern[str]:
    """`[a.b]`, `[[a.b]]` or `[a."b.c"]`: a table header naming exactly these keys."""
    quoted = (r"""(?:["']?""" + re.escape(key) + r"""["']?)""" for key in keys)
    return re.compile(r"^\s*\[+\s*" + r"\s*\.\s*".join(quoted) + r"\s*\]+")
