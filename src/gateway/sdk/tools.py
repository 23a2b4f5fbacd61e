"""One tool of a Python connector: its definition from the function's signature, and one call of it.

The typed signature is the single source of truth. Pydantic reads it once, at decoration time,
into a model: the model's JSON Schema is the tool's `inputSchema` (so Cedar sees typed
arguments), and the same model validates every call's arguments before the function runs, so
an author never writes a schema by hand that can drift from the code. Everything a call can end
with becomes an MCP result dict: a value, a `ToolError` the author raised (a tool error the
agent reads), or an unexpected exception (a tool error naming an incident id; the traceback goes
to the log, never to the agent, since it may hold paths, data or secrets).
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, get_type_hints

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

logger = logging.getLogger("gateway.sdk")

#: MCP's tool name rule: 1 to 128 of letters, digits, `_`, `-` and `.`.
TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")

JsonObject = dict[str, Any]


class ToolError(Exception):
    """Raise it from a tool to answer the agent with a tool error: say what happened and what to do."""


@dataclass(frozen=True, slots=True)
class ToolAnnotations:
    """MCP's behaviour hints; policies and the approval pages read them, so state them truthfully."""

    read_only: bool | None = None
    destructive: bool | None = None
    idempotent: bool | None = None
    open_world: bool | None = None
    title: str | None = None

    def wire(self) -> JsonObject:
        pairs = (
            ("title", self.title),
            ("readOnlyHint", self.read_only),
            ("destructiveHint", self.destructive),
            ("idempotentHint", self.idempotent),
            ("openWorldHint", self.open_world),
        )
        return {key: value for key, value in pairs if value is not None}


@dataclass(slots=True)
class Tool:
    """A decorated function with its arguments model and its (optional) structured output."""

    name: str
    function: Callable[..., Any]
    description: str
    arguments: type[BaseModel]
    annotations: ToolAnnotations = field(default_factory=ToolAnnotations)
    output: TypeAdapter[Any] | None = None
    output_schema: JsonObject | None = None

    @classmethod
    def from_function(
        cls, function: Callable[..., Any], *, name: str | None, description: str | None, annotations: ToolAnnotations
    ) -> Tool:
        tool_name = name or function.__name__
        if not TOOL_NAME.fullmatch(tool_name):
            raise ValueError(f"tool name {tool_name!r} is not valid: use 1 to 128 letters, digits, '_', '-' or '.'")
        hints = get_type_hints(function, include_extras=True)
        fields: dict[str, Any] = {}
        for parameter in inspect.signature(function).parameters.values():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                raise ValueError(f"tool {tool_name!r}: *args and **kwargs have no schema; name every parameter")
            if parameter.name not in hints:
                raise ValueError(
                    f"tool {tool_name!r}: parameter {parameter.name!r} has no type annotation; the input schema "
                    "is made from the annotations"
                )
            default = ... if parameter.default is parameter.empty else parameter.default
            fields[parameter.name] = (hints[parameter.name], default)
        model_name = "".join(part.capitalize() for part in re.split(r"[_.-]", tool_name)) + "Arguments"
        arguments = create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)
        output, output_schema = _output_of(hints.get("return", inspect.Signature.empty))
        text = description if description is not None else inspect.cleandoc(function.__doc__ or "")
        return cls(tool_name, function, text, arguments, annotations, output, output_schema)

    def definition(self) -> JsonObject:
        """The tool as `tools/list` shows it."""
        schema = self.arguments.model_json_schema()
        schema.pop("title", None)
        wire: JsonObject = {"name": self.name, "description": self.description, "inputSchema": schema}
        if self.output_schema is not None:
            wire["outputSchema"] = self.output_schema
        if annotations := self.annotations.wire():
            wire["annotations"] = annotations
        return wire

    async def call(self, arguments: JsonObject, *, connector: str) -> JsonObject:
        """Validate, run, and turn whatever happened into an MCP `CallToolResult` dict.

        Cancellation is not caught: it travels up, so a cancelled call stops at its next await.
        """
        try:
            values = self.arguments.model_validate(arguments)
        except ValidationError as exc:
            return error_result(f"Invalid arguments for {self.name}: {describe_validation(exc)}.")
        kwargs = {name: getattr(values, name) for name in type(values).model_fields}
        try:
            if inspect.iscoroutinefunction(self.function):
                result = await self.function(**kwargs)
            else:  # a blocking function must not stall the gateway: it runs in a worker thread
                result = await anyio.to_thread.run_sync(lambda: self.function(**kwargs), abandon_on_cancel=True)
        except ToolError as exc:
            return error_result(str(exc) or f"{self.name} failed.")
        except Exception:
            incident = secrets.token_hex(4)
            logger.exception(
                "connector tool raised", extra={"connector": connector, "tool": self.name, "incident": incident}
            )
            return error_result(
                f"{self.name} failed unexpectedly (incident {incident}); the details are in the gateway's log. "
                "Retrying may not help: tell an operator the incident id."
            )
        return self._result(result)

    def _result(self, value: Any) -> JsonObject:
        if self.output is not None:
            structured = self.output.dump_python(value, mode="json")
            return {"content": [_text(json.dumps(structured, ensure_ascii=False))], "structuredContent": structured}
        if value is None:
            return {"content": []}
        if isinstance(value, str):
            return {"content": [_text(value)]}
        dumped = TypeAdapter(type(value)).dump_python(value, mode="json")
        result: JsonObject = {"content": [_text(json.dumps(dumped, ensure_ascii=False))]}
        if isinstance(dumped, dict):
            result["structuredContent"] = dumped
        return result


def _output_of(annotation: Any) -> tuple[TypeAdapter[Any] | None, JsonObject | None]:
    """A return type whose schema is an object is structured output; anything else is text."""
    if annotation in (inspect.Signature.empty, None, type(None), Any, str):
        return None, None
    adapter: TypeAdapter[Any] = TypeAdapter(annotation)
    try:
        schema = adapter.json_schema(mode="serialization")
    except Exception:  # a type pydantic cannot describe still returns text
        return None, None
    if schema.get("type") != "object":
        return None, None
    schema.pop("title", None)
    return adapter, schema


def _text(text: str) -> JsonObject:
    return {"type": "text", "text": text}


def error_result(text: str) -> JsonObject:
    return {"content": [_text(text)], "isError": True}


def describe_validation(exc: ValidationError) -> str:
    """`'limit': Input should be a valid integer; 'id': Field required`: each argument by name."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"]) or "arguments"
        parts.append(f"{where!r}: {error['msg']}")
    return "; ".join(parts)


ToolFunction = Callable[..., Any] | Callable[..., Awaitable[Any]]
