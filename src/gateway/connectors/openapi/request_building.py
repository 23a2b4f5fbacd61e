"""A call's arguments serialised into an HTTP request, as the OpenAPI spec's parameter styles say.

`Operation.split` decides where each argument goes (fixed values laid over the agent's); this
module writes them: path parameters percent-encoded into the template (a `/` in a value can never
add a path segment, and `.` or `..` are refused, since servers would resolve them), query and
cookie parameters in their `style`/`explode` forms, header parameters in `simple` style, and the
body as JSON or a form.

An argument naming a parameter that the tool does not show (a hidden one) is dropped before the
split: hidden parameters are the file's to set, never the agent's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from gateway.connectors.base import JsonObject
from gateway.connectors.openapi.operations import Operation, Parameter, RequestBody
from gateway.errors import UnusableArguments

#: Characters RFC 3986 reserves, left as they are in values of parameters with `allowReserved`.
_RESERVED = ":/?#[]@!$&'()*+,;="


def build_request(
    client: httpx.AsyncClient, base_url: str, operation: Operation, arguments: JsonObject
) -> httpx.Request:
    """The request for one call of `operation`; raises `UnusableArguments` when the arguments cannot make one."""
    split = operation.split(_shown_arguments(operation, arguments))
    by_name = {(p.location, p.name): p for p in operation.parameters}
    path = operation.path_template
    for name, value in split.path.items():
        path = path.replace("{" + name + "}", _path_value(by_name[("path", name)], value))
    if "{" in path:
        missing = [p.argument for p in operation.parameters if p.location == "path" and p.name not in split.path]
        raise UnusableArguments(
            f"{operation.tool_name} needs the argument(s) {', '.join(missing)} (they are part of the URL path)"
        )
    query = "&".join(
        part for name, value in split.query.items() for part in _query_parts(by_name[("query", name)], value)
    )
    url = base_url.rstrip("/") + path + (f"?{query}" if query else "")
    headers: dict[str, str] = {"Accept": "application/json, */*;q=0.5"}
    for name, value in split.header.items():
        if value is not None:
            headers[name] = _header_value(by_name[("header", name)], value)
    cookies = [
        f"{name}={quote(_scalar_or_joined(by_name[('cookie', name)], value), safe='')}"
        for name, value in split.cookie.items()
        if value is not None
    ]
    if cookies:
        headers["Cookie"] = "; ".join(cookies)
    content: bytes | None = None
    if split.body is not None and operation.body is not None:
        content, headers["Content-Type"] = _body(operation.body, split.body)
    return client.build_request(operation.method, httpx.URL(url), headers=headers, content=content)


def _shown_arguments(operation: Operation, arguments: JsonObject) -> JsonObject:
    """The arguments without any that name a parameter the tool hides (hidden parameters are the file's)."""
    properties = operation.definition.get("inputSchema", {}).get("properties")
    if not isinstance(properties, Mapping):
        return arguments
    hidden = {p.argument for p in operation.parameters if p.argument not in properties}
    if not hidden & arguments.keys():
        return arguments
    return {key: value for key, value in arguments.items() if key not in hidden}


def _text(value: Any, parameter: Parameter | None = None) -> str:
    """One value as the text OpenAPI sends: booleans as `true`/`false`, numbers as JSON writes them."""
    if parameter is not None and parameter.content_type is not None:
        return orjson.dumps(value).decode()
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, int | float | str):
        return str(value) if isinstance(value, str) else orjson.dumps(value).decode()
    return orjson.dumps(value).decode()


def _encode(text: str, parameter: Parameter) -> str:
    return quote(text, safe=_RESERVED if parameter.allow_reserved else "")


def _pairs(value: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    return ((str(key), item) for key, item in value.items() if item is not None)


def _path_value(parameter: Parameter, value: Any) -> str:
    if isinstance(value, str) and value in (".", ".."):
        raise UnusableArguments(
            f"the argument {parameter.argument} cannot be {value!r}: "
            "it would change the URL path rather than name a record"
        )
    name = parameter.name

    def enc(item: Any) -> str:
        return _encode(_text(item, parameter), parameter)

    style, explode = parameter.style, parameter.explode
    if parameter.content_type is not None or not isinstance(value, list | dict):
        text = enc(value)
        return {"label": f".{text}", "matrix": f";{name}={text}"}.get(style, text)
    if isinstance(value, list):
        items = [enc(item) for item in value]
        if style == "label":
            return "." + ("." if explode else ",").join(items)
        if style == "matrix":
            return "".join(f";{name}={item}" for item in items) if explode else f";{name}=" + ",".join(items)
        return ",".join(items)
    pairs = list(_pairs(value))
    if explode:
        joined = [f"{_encode(k, parameter)}={enc(v)}" for k, v in pairs]
        separator = {"label": ".", "matrix": ";"}.get(style, ",")
        prefix = {"label": ".", "matrix": ";"}.get(style, "")
        return prefix + separator.join(joined)
    flat = ",".join(f"{_encode(k, parameter)},{enc(v)}" for k, v in pairs)
    return {"label": f".{flat}", "matrix": f";{name}={flat}"}.get(style, flat)


def _query_parts(parameter: Parameter, value: Any) -> list[str]:
    """`name=value` pieces of one query parameter (several when exploded)."""
    if value is None:
        return []
    name = quote(parameter.name, safe="")

    def enc(item: Any) -> str:
        return _encode(_text(item, parameter), parameter)

    if parameter.content_type is not None or not isinstance(value, list | dict):
        return [f"{name}={enc(value)}"]
    style = parameter.style
    if isinstance(value, list):
        if style == "spaceDelimited" and not parameter.explode:
            return [f"{name}=" + "%20".join(enc(item) for item in value)]
        if style == "pipeDelimited" and not parameter.explode:
            return [f"{name}=" + "|".join(enc(item) for item in value)]
        if parameter.explode:
            return [f"{name}={enc(item)}" for item in value]
        return [f"{name}=" + ",".join(enc(item) for item in value)]
    if style == "deepObject":
        return [f"{name}%5B{quote(key, safe='')}%5D={enc(item)}" for key, item in _pairs(value)]
    if parameter.explode:
        return [f"{quote(key, safe='')}={enc(item)}" for key, item in _pairs(value)]
    return [f"{name}=" + ",".join(f"{quote(key, safe='')},{enc(item)}" for key, item in _pairs(value))]


def _scalar_or_joined(parameter: Parameter, value: Any) -> str:
    if parameter.content_type is None and isinstance(value, list):
        return ",".join(_text(item) for item in value)
    if parameter.content_type is None and isinstance(value, dict):
        separator = "=" if parameter.explode else ","
        return ",".join(f"{key}{separator}{_text(item)}" for key, item in _pairs(value))
    return _text(value, parameter)


def _header_value(parameter: Parameter, value: Any) -> str:
    text = _scalar_or_joined(parameter, value)
    if any(char in text for char in "\r\n\0"):
        raise UnusableArguments(f"the argument {parameter.argument} cannot hold line breaks: it is sent as a header")
    return text


def _body(body: RequestBody, value: Any) -> tuple[bytes, str]:
    if body.content_type == "application/x-www-form-urlencoded":
        if not isinstance(value, Mapping):
            raise UnusableArguments("the request body must be an object of form fields")
        parts: list[str] = []
        for key, item in value.items():
            if item is None:
                continue
            encoding = body.encoding.get(key, {})
            field = Parameter(
                name=key,
                location="query",
                argument=key,
                required=False,
                style=str(encoding.get("style", "form")),
                explode=bool(encoding.get("explode", True)),
            )
            parts.extend(_query_parts(field, item))
        return "&".join(parts).encode(), body.content_type
    return orjson.dumps(value), body.content_type
