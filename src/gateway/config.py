"""Loading the settings files: `gateway.toml` plus one `connectors/*.toml` file per backend.

Files are parsed once at start into the frozen models of `gateway.settings` and passed down;
nothing reads configuration from globals. `${VAR}` references in string values are resolved from
the environment at load time, so secrets live in the environment, and the models hold them as
`SecretStr` so a repr or a log line never shows them. Every error names the file, the line and
the key, because the person reading it is editing that file.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from gateway.errors import ConfigError
from gateway.settings.connector_kinds import AnyConnector, ConnectorSettings
from gateway.settings.connectors import (
    GATEWAY_TOOLS_CONNECTOR,
    ListingLimits,
    McpStdioConnector,
    PythonConnector,
)
from gateway.settings.gateway import Config, GatewaySettings
from gateway.settings.toml_lines import line_of

__all__ = ["Config", "load_config", "load_connector", "load_connectors"]

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

#: Built-in `${...}` names that resolve without an environment variable of that name.
_BUILTIN_REFERENCES = {"PYTHON": sys.executable}


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


def _with_listing_defaults(connectors: tuple[AnyConnector, ...], defaults: ListingLimits) -> tuple[AnyConnector, ...]:
    """Every connector carries its effective listing bounds, so the parts that read them need no gateway settings."""
    return tuple(connector.model_copy(update=dict(connector.listing_limits(defaults))) for connector in connectors)


def load_connectors(directory: Path, *, separator: str = "__") -> tuple[AnyConnector, ...]:
    """Load every `*.toml` in `directory`, in name order; refuse duplicates and names the separator makes ambiguous."""
    if not directory.is_dir():
        raise ConfigError(f"{directory}: connectors directory does not exist")
    connectors: list[AnyConnector] = []
    seen: dict[str, Path] = {}
    for file in sorted(directory.glob("*.toml")):
        connector = load_connector(file, separator=separator)
        if connector.name in seen:
            raise ConfigError(
                f"{file}: connector name {connector.name!r} is already used by {seen[connector.name]}; "
                "every connector needs its own name"
            )
        if connector.name == GATEWAY_TOOLS_CONNECTOR:
            raise ConfigError(
                f"{file}: connector name {GATEWAY_TOOLS_CONNECTOR!r} is reserved for the gateway's own tools "
                f"({GATEWAY_TOOLS_CONNECTOR}{separator}approval_status); choose another name "
                '(set name = "..." in the file, or rename the file)'
            )
        seen[connector.name] = file
        connectors.append(connector)
    return tuple(connectors)


def load_connector(file: Path, *, separator: str = "__") -> AnyConnector:
    """Load one connector file; its name defaults to the file name without `.toml`."""
    data, text = _read_toml(file)
    named_in_file = "name" in data
    data.setdefault("name", file.stem)
    data = _resolve_references(data, file, text, ())
    if "kind" not in data:
        raise ConfigError(f'{file}: key \'kind\' is missing: set kind = "mcp-stdio", "mcp-http", "openapi" or "python"')
    adapter: TypeAdapter[AnyConnector] = TypeAdapter(ConnectorSettings)
    try:
        connector = adapter.validate_python(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, file, text)) from None
    update: dict[str, Any] = {"source": file.resolve()}
    if isinstance(connector, McpStdioConnector):
        base = file.resolve().parent
        update["cwd"] = (base / connector.cwd).resolve() if connector.cwd else base
    if isinstance(connector, PythonConnector):
        update["path"] = tuple((file.resolve().parent / p).resolve() for p in connector.path)
    connector = connector.model_copy(update=update)
    connector.remember_text(text)
    _refuse_ambiguous_name(connector, file, separator, named_in_file=named_in_file)
    return connector


def _refuse_ambiguous_name(connector: AnyConnector, file: Path, separator: str, *, named_in_file: bool) -> None:
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
                f"{file}:{line_of(text, path)}: key '{_dotted(path)}' refers to environment variable "
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
        message = error["msg"].removeprefix("Value error, ")  # pydantic's wrapping of our own messages
        lines.append(f"{file}:{line_of(text, loc)}: key '{_dotted(loc)}': {message}")
    return "\n".join(lines)


def _dotted(path: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in path) or "(top level)"
