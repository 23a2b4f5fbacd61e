"""What one OpenAPI operation becomes: a tool definition, and the plan to turn its arguments into a request.

The converter (`gateway.connectors.openapi.conversion`) reads the spec once, at load; the
connector that calls the API then needs no spec at all, only these frozen values. Everything a
request needs is decided here, so the caller never guesses which argument goes where.

How a call's arguments become a request (`Operation.split` does exactly this):

1. Arguments named in `hidden` are dropped (the agent never sees hidden or fixed parameters and
   body properties: they are not in `inputSchema`, and one it sends anyway is not sent on), then
   the operation's `fixed` parameter values are laid over the rest.
2. Each `Parameter` takes the argument named `parameter.argument`, when present, and sends it as
   `parameter.name` in its `location` (path, query, header or cookie), serialised with its
   `style`/`explode` (OpenAPI defaults: `simple` for path and header, `form` with explode for
   query and cookie). A parameter whose value is JSON content (`content_type` set) is sent as
   that JSON text.
3. The body, if the operation has one:
   - `RequestBody.argument is None`: the body's properties are tool arguments of their own, side
     by side with the parameters; the body is every argument no parameter claimed (plus the
     body's fixed properties). This is the usual case: an object body whose property names do
     not collide with the parameters' argument names.
   - `RequestBody.argument == "body"` (or `body_`, `body__` when a parameter took `body`): the
     whole body is that one argument. Used when the body is not a plain object (an array, a
     `oneOf`, a scalar), or when one of its property names equals a parameter's argument name.
   The body is sent as `content_type`: JSON, or `application/x-www-form-urlencoded` with the
   per-property `encoding` (style and explode) the spec gives.

Argument names: a parameter's argument is its own name, except when two parameters of different
locations share a name (`id` in the path and in the query): path parameters keep the name, then
query, header and cookie ones in that order take `<name>_<location>` (`id_query`), then a `_2`,
`_3` suffix if that too is taken. Header names compare case-insensitively with each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from gateway.connectors.base import JsonObject

ParameterLocation = Literal["path", "query", "header", "cookie"]


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Parameter:
    """One path, query, header or cookie parameter of an operation."""

    #: The name on the wire (the spec's `name`): the path template's `{name}`, the query key, the header name.
    name: str
    location: ParameterLocation
    #: The tool argument that carries its value (usually `name`; see the module's rules for collisions).
    argument: str
    required: bool
    #: OpenAPI serialisation: `simple`, `form`, `label`, `matrix`, `spaceDelimited`, `pipeDelimited`, `deepObject`.
    style: str
    explode: bool
    #: The parameter's JSON Schema, `$ref`s resolved (what its `inputSchema` property is).
    schema: JsonObject = field(default_factory=dict)
    allow_reserved: bool = False
    #: Set when the spec gives the parameter as `content` (e.g. `application/json`): send the value as that text.
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class RequestBody:
    """The request body of an operation and which arguments fill it."""

    #: `application/json` (or another `+json` type), or `application/x-www-form-urlencoded`.
    content_type: str
    #: None: the body is every argument no parameter claimed; else the one argument holding the whole body.
    argument: str | None
    required: bool
    #: The body's JSON Schema, `$ref`s resolved, `readOnly` properties dropped.
    schema: JsonObject = field(default_factory=dict)
    #: Body properties the connector file fixes (`fixed`), always sent, never shown to the agent.
    fixed: Mapping[str, Any] = field(default_factory=_empty)
    #: For form bodies: property name → `{"style": ..., "explode": ...}` (the spec's `encoding`, defaults filled).
    encoding: Mapping[str, Mapping[str, Any]] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True)
class SplitArguments:
    """A call's arguments sorted into the parts of an HTTP request, values not yet serialised."""

    path: dict[str, Any]
    query: dict[str, Any]
    header: dict[str, Any]
    cookie: dict[str, Any]
    #: The body value; None when the operation has no body or the agent gave none for an optional one.
    body: Any | None


@dataclass(frozen=True, slots=True)
class Operation:
    """One converted operation: the tool an agent sees and how to call the API for it."""

    #: The tool's name as the backend lists it (the catalog adds the connector prefix).
    tool_name: str
    #: The spec's operationId; None when it had none (the name is then derived from method and path).
    operation_id: str | None
    #: Upper case: `GET`, `POST`, ...
    method: str
    #: The spec's path, e.g. `/customers/{customer_id}`, to be joined to the connector's `base_url`.
    path_template: str
    #: Every parameter the request may carry, the hidden and fixed ones included.
    parameters: tuple[Parameter, ...]
    body: RequestBody | None
    #: The JSON Schema of the first 2xx JSON response, `$ref`s resolved; None when there is none.
    response_schema: JsonObject | None
    #: Parameter values the connector file fixes, keyed by their `Parameter.argument`.
    fixed: Mapping[str, Any]
    #: The MCP tool definition: name, description, inputSchema, outputSchema (object responses), annotations.
    definition: JsonObject
    #: Argument names the agent may not give (hidden or fixed parameters and body properties): dropped.
    hidden: frozenset[str] = frozenset()

    @property
    def reference(self) -> str:
        """How people name the operation: its operationId, else `METHOD /path`."""
        return self.operation_id or f"{self.method} {self.path_template}"

    def split(self, arguments: Mapping[str, Any]) -> SplitArguments:
        """Sort a call's arguments (fixed values laid over them) into path, query, header, cookie and body."""
        given = {k: v for k, v in arguments.items() if k not in self.hidden} | dict(self.fixed)
        parts: dict[str, dict[str, Any]] = {"path": {}, "query": {}, "header": {}, "cookie": {}}
        claimed: set[str] = set()
        for parameter in self.parameters:
            claimed.add(parameter.argument)
            if parameter.argument in given:
                parts[parameter.location][parameter.name] = given[parameter.argument]
        body: Any | None = None
        if self.body is not None:
            if self.body.argument is None:
                rest = {k: v for k, v in given.items() if k not in claimed}
                merged = {**rest, **self.body.fixed}
                body = merged if merged or self.body.required else None
            elif self.body.argument in given:
                body = given[self.body.argument]
                if self.body.fixed and isinstance(body, dict):
                    body = {**body, **self.body.fixed}
            elif self.body.fixed:
                body = dict(self.body.fixed)
        return SplitArguments(
            path=parts["path"], query=parts["query"], header=parts["header"], cookie=parts["cookie"], body=body
        )


@dataclass(frozen=True, slots=True)
class LeftOut:
    """An operation that did not become a tool, and why (what `gateway connectors preview` prints)."""

    #: The operationId, else `METHOD /path`.
    operation: str
    method: str
    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class Conversion:
    """What a spec becomes under a connector file's curation."""

    operations: tuple[Operation, ...]
    left_out: tuple[LeftOut, ...]
    #: The spec's `servers` URLs in order, variables at their defaults; `base_url`'s default is the first.
    servers: tuple[str, ...] = ()
    #: The spec's `info.title` and `info.version`, for the preview.
    title: str = ""
    version: str = ""

    def operation(self, tool_name: str) -> Operation | None:
        """The operation behind a tool name, if any."""
        for operation in self.operations:
            if operation.tool_name == tool_name:
                return operation
        return None
