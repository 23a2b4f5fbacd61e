"""Backends: the connector files (`connectors/*.toml`, one per backend) and gateway.toml's `[connectors]`.

A connector file describes one backend: how to reach it (a local command or a remote URL), how
long its calls may take, how it is restarted, and which of its tools agents see. The listing
bounds keep any one backend from stalling the gateway for the others; each file may tighten or
widen the gateway-wide ones.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator

from gateway.settings.base import SettingsModel
from gateway.settings.catalog import NewToolsPolicy
from gateway.settings.reasoning import ReasoningMode
from gateway.settings.toml_lines import line_of

#: The connector name of the gateway's own tools; a connector file may not take it.
GATEWAY_TOOLS_CONNECTOR = "gateway"
_CONNECTOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
#: A lock path: `args.` and one or more property names, e.g. `args.record_id` or `args.order.id`.
_LOCK_PATH = re.compile(r"^args(\.[^.\s]+)+$")
#: Seconds a call waits for a record lock, and how long a holder's lease lasts between renewals, by default.
DEFAULT_LOCK_WAIT = 30.0
DEFAULT_LOCK_LEASE = 30.0

#: `idempotency_key` value naming all the arguments, rather than some of them.
DIGEST_KEY = "digest"
#: `idempotency_key` value of a tool that is never de-duplicated, whatever its connector's key.
NO_KEY = "off"
#: How long a recorded outcome answers repeats when the file sets no `idempotency_window`.
DEFAULT_IDEMPOTENCY_WINDOW = timedelta(hours=24)
_ARGUMENT_PATH = re.compile(r"^args(\.[^.\s]+)+$")


def _checked_idempotency_key(value: str | tuple[str, ...] | None) -> str | tuple[str, ...] | None:
    """`digest`, `off`, an argument path (`args.invoice_id`, `args.payee.iban`) or a list of paths."""
    if value is None:
        return None
    if isinstance(value, str):
        if value in (DIGEST_KEY, NO_KEY):
            return value
        paths: tuple[str, ...] = (value,)
    else:
        paths = value
    if not paths:
        raise ValueError('an empty list names no argument: give one or more paths such as "args.invoice_id"')
    for path in paths:
        if not _ARGUMENT_PATH.fullmatch(path):
            raise ValueError(
                f'{path!r} is not an argument path: write "args.<name>" (nested: "args.<name>.<field>"), '
                f'a list of such paths, "{DIGEST_KEY}" for all the arguments, or "{NO_KEY}"'
            )
    if len(set(paths)) != len(paths):
        raise ValueError("the list names one argument path twice")
    return value


def _checked_window(value: timedelta | None) -> timedelta | None:
    if value is not None and value <= timedelta(0):
        raise ValueError('must be a positive duration: seconds (86400) or ISO 8601 ("PT24H", "P1D")')
    return value


class ToolOverride(SettingsModel):
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
    share_result: bool = Field(
        default=False,
        description=(
            "Keep a short, redacted summary of this tool's successful results in the call's workflow, for the "
            "other agents in it to read through `gateway__workflow_status` (off: they see only that it ran)."
        ),
    )
    lock: tuple[str, ...] = Field(
        default=(),
        description=(
            'The record lock key: an argument path (`"args.record_id"`, nested `"args.order.id"`) or a list of '
            "them. Calls of this connector's tools with the same key values run one at a time, across agents "
            "and replicas; unset: no lock."
        ),
    )
    lock_wait: float = Field(
        default=DEFAULT_LOCK_WAIT,
        ge=0,
        description=(
            "Seconds a call may wait for its record lock before it is refused unrun, naming the holder; "
            "`0` refuses at once."
        ),
    )
    lock_lease: float = Field(
        default=DEFAULT_LOCK_LEASE,
        ge=1,
        description=(
            "Seconds a held record lock lasts unless renewed: the holder renews it while the call runs, so this "
            "is how soon the lock of a gateway that died is taken over."
        ),
    )

    @field_validator("lock", mode="before")
    @classmethod
    def _lock_paths(cls, value: object) -> object:
        """One path or a list of them, each `args.<property>[.<property>...]`."""
        paths = (value,) if isinstance(value, str) else value
        if not isinstance(paths, list | tuple):
            return value  # pydantic says what is wrong with the type
        for path in paths:
            if isinstance(path, str) and not _LOCK_PATH.fullmatch(path):
                raise ValueError(
                    f"{path!r} is not an argument path: write 'args.' and the property, e.g. 'args.record_id' "
                    "or 'args.order.id'"
                )
        if isinstance(paths, list | tuple) and len(set(paths)) != len(paths):
            raise ValueError("names one argument path twice")
        return tuple(paths)

    @model_validator(mode="after")
    def _lock_settings_need_a_lock(self) -> ToolOverride:
        """`lock_wait` or `lock_lease` without `lock` does nothing: almost surely a forgotten `lock`."""
        if not self.lock and ({"lock_wait", "lock_lease"} & self.model_fields_set):
            raise ValueError("lock_wait and lock_lease apply to a record lock: set lock, e.g. lock = 'args.record_id'")
        return self

    idempotency_key: str | tuple[str, ...] | None = Field(
        default=None,
        description=(
            'What makes two calls of this tool the same call: an argument path (`"args.invoice_id"`), a list of '
            'paths, or `"digest"` (all the arguments). A repeat within `idempotency_window` gets the first call\'s '
            'recorded result instead of running again. `"off"`: never de-duplicated. Unset: the connector\'s '
            "`idempotency_key`, which does not apply to read-only tools."
        ),
    )
    idempotency_window: timedelta | None = Field(
        default=None,
        description=(
            "How long after the first call finished a repeat gets its recorded result: seconds or ISO 8601 "
            '(`"PT24H"`). Unset: the connector\'s, else 24 hours.'
        ),
    )
    idempotency_scope: Literal["tool", "agent"] = Field(
        default="tool",
        description=(
            "`tool`: one key value is one call whichever agent makes it (two agents paying one invoice pay it once); "
            "`agent`: each agent's calls are de-duplicated apart (for results that differ by caller)."
        ),
    )
    idempotency_wait: float = Field(
        default=30.0,
        ge=0,
        description=(
            "Seconds a repeat waits for the first call still running (with progress notifications when asked) "
            "before it is told to repeat later."
        ),
    )

    _check_key = field_validator("idempotency_key")(_checked_idempotency_key)
    _check_window = field_validator("idempotency_window")(_checked_window)

    @model_validator(mode="after")
    def _key_for_its_settings(self) -> ToolOverride:
        given = {"idempotency_scope", "idempotency_wait"} & self.model_fields_set
        if given and self.idempotency_key in (None, NO_KEY):
            raise ValueError(
                f"{' and '.join(sorted(given))} set without idempotency_key: say which calls are the same "
                '(idempotency_key = "args.<name>" or "digest"), or remove them'
            )
        return self


class RestartPolicy(SettingsModel):
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


class ListingLimits(SettingsModel):
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


class ConnectorBase(SettingsModel):
    """What every connector's settings hold, whatever reaches its backend."""

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
    idempotency_key: str | tuple[str, ...] | None = Field(
        default=None,
        description=(
            "An `idempotency_key` for every tool of this backend except read-only ones (`readOnlyHint`), which "
            'are de-duplicated only when their own `[tools.<name>]` sets one; usually `"digest"`.'
        ),
    )
    idempotency_window: timedelta | None = Field(
        default=None,
        description="The `idempotency_window` of this backend's tools that set none; unset: 24 hours.",
    )
    new_tools: NewToolsPolicy | None = Field(
        default=None,
        description="`accept` or `review` for this backend's new tools; unset: `[catalog] new_tools`.",
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

    def remember_text(self, text: str) -> None:
        """Keep the file's text as it was loaded, so that `location` can name lines after loading."""
        self._text = text

    def location(self, *path: str) -> str:
        """`file:line` of a key or table in this connector's file, as a person editing it would look for it."""
        if self._text is None:
            return str(self.source)
        return f"{self.source}:{line_of(self._text, path)}"

    def listing_limits(self, defaults: ListingLimits | None = None) -> ListingLimits:
        """The bounds on this backend's listing: its own values, else the gateway-wide ones."""
        base = defaults or ListingLimits()
        return ListingLimits(
            max_tools=self.max_tools or base.max_tools,
            max_definition_bytes=self.max_definition_bytes or base.max_definition_bytes,
            max_listing_bytes=self.max_listing_bytes or base.max_listing_bytes,
        )

    _check_key = field_validator("idempotency_key")(_checked_idempotency_key)
    _check_window = field_validator("idempotency_window")(_checked_window)

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


class McpStdioConnector(ConnectorBase):
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


class McpHttpConnector(ConnectorBase):
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


class PythonConnector(ConnectorBase):
    """A connector written in Python with `gateway.sdk`, found by entry point or `module:attribute`."""

    kind: Literal["python"] = Field(description="A Python connector built with `gateway.sdk`.")
    entry_point: str | None = Field(
        default=None,
        description="The connector's name in the `gateway.connectors` entry-point group of an installed package.",
    )
    module: str | None = Field(
        default=None,
        description='`"package.module:attribute"` of a connector not installed as a package (see `path`).',
    )
    path: tuple[Path, ...] = Field(
        default=(),
        description="Directories added to the import path for `module`, relative to this file.",
    )
    settings: dict[str, Any] = Field(
        default={},
        repr=False,
        description="Passed to the connector at start (its settings model validates them); `${ENV}` for secrets.",
    )
    isolation: Literal["in-process", "subprocess"] = Field(
        default="in-process",
        description=(
            "`in-process`: called directly, no serialisation; `subprocess`: run as an MCP server in a child "
            "process the gateway supervises like an `mcp-stdio` backend, so a crash or a block stays there."
        ),
    )

    @model_validator(mode="after")
    def _one_target(self) -> PythonConnector:
        if (self.entry_point is None) == (self.module is None):
            raise ValueError('set exactly one of entry_point = "<name>" or module = "package.module:attribute"')
        if self.module is not None and ":" not in self.module:
            raise ValueError(f'module {self.module!r} names no attribute: write "package.module:attribute"')
        return self

    @property
    def target(self) -> str:
        """What `gateway.sdk.load` takes: the entry point name or `module:attribute`."""
        return self.module or self.entry_point or ""


class GatewayToolsConnector(ConnectorBase):
    """The tools the gateway serves itself (`gateway__approval_status`): built in, never read from a file."""

    name: str = Field(default=GATEWAY_TOOLS_CONNECTOR, description="Always `gateway`: the built-in tools' prefix.")
    kind: Literal["gateway"] = Field(default="gateway", description="The gateway's own tools.")


class ConnectorsSettings(ListingLimits):
    """Where the connector files are, and the listing bounds every connector has unless its file sets its own."""

    dir: Path = Field(
        default=Path("connectors"), description="Directory of the connector files, one `*.toml` per backend."
    )
