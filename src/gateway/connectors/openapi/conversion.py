"""Turn an OpenAPI 3.0/3.1 document and a connector file's curation into tools.

Conversion runs once, when the connector file loads (and in `gateway connectors preview`); the
calls themselves use only the `Operation`s it returns. Every operation of the spec ends up in
exactly one place: a tool in `Conversion.operations`, or `Conversion.left_out` with a sentence
saying why (not selected, a body that is not JSON, a `$ref` that resolves nowhere, a name shared
with another tool, a definition too large), so an operator never wonders where an endpoint went.

Mistakes in the curation itself (an `[operations.<id>]` table, a `hide` or `fixed` key, or a
select rule that names nothing in the spec) are refused with `OpenApiCurationError`: a typo there
would otherwise expose a parameter the file meant to fix, or a tool it meant to rename.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from gateway.connectors.base import JsonObject
from gateway.connectors.openapi.naming import derived_name, tool_name
from gateway.connectors.openapi.operations import (
    Conversion,
    LeftOut,
    Operation,
    Parameter,
    ParameterLocation,
    RequestBody,
)
from gateway.connectors.openapi.schemas import Inliner, RefResolver, UnresolvableReference, is_object_schema
from gateway.errors import OpenApiCurationError, OpenApiSpecError
from gateway.settings.connectors import DEFAULT_MAX_DEFINITION_BYTES
from gateway.settings.openapi import OpenApiCuration, OperationCuration, OperationSelector

#: The longest description a converted tool gets from the spec; longer ones end with "…".
MAX_DESCRIPTION_LENGTH = 2000
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_LOCATIONS: tuple[ParameterLocation, ...] = ("path", "query", "header", "cookie")
#: Header parameters OpenAPI says to ignore: the HTTP client sets them itself.
_IGNORED_HEADERS = frozenset({"accept", "content-type", "authorization"})
_FORM = "application/x-www-form-urlencoded"
_TEMPLATE_VARIABLE = re.compile(r"\{([^{}]+)\}")


class _Refused(Exception):
    """This operation cannot become a tool; the message says why, for `left_out`."""


@dataclass(frozen=True, slots=True)
class _Candidate:
    """One operation of the spec, before curation."""

    method: str
    path: str
    item: JsonObject
    operation: JsonObject
    operation_id: str | None

    @property
    def key(self) -> str:
        """What the connector file names it by: its operationId, else the derived tool name."""
        return self.operation_id or derived_name(self.method, self.path)

    @property
    def reference(self) -> str:
        return self.operation_id or f"{self.method} {self.path}"

    @property
    def tags(self) -> tuple[str, ...]:
        tags = self.operation.get("tags")
        return tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else ()

    def left_out(self, reason: str) -> LeftOut:
        return LeftOut(operation=self.reference, method=self.method, path=self.path, reason=reason)


def openapi_version(document: Any) -> str:
    """The document's OpenAPI version (`3.0.x`, `3.1.x`); raises `OpenApiSpecError` for anything else."""
    if not isinstance(document, dict):
        raise OpenApiSpecError("is not an OpenAPI document: its top level is not a mapping of keys")
    version = document.get("openapi")
    if version is None and "swagger" in document:
        raise OpenApiSpecError(
            f"is Swagger {document.get('swagger')}, not OpenAPI 3: convert it to OpenAPI 3 first "
            "(e.g. with swagger2openapi) and point spec at the result"
        )
    if not isinstance(version, str):
        raise OpenApiSpecError("is not an OpenAPI document: it has no 'openapi' version key")
    if not version.startswith(("3.0.", "3.1.")) and version not in ("3.0", "3.1"):
        raise OpenApiSpecError(f"is OpenAPI {version}; the gateway reads OpenAPI 3.0 and 3.1")
    paths = document.get("paths", {})
    if not isinstance(paths, dict):
        raise OpenApiSpecError("has a 'paths' key that is not a mapping of paths to operations")
    return version


def convert(
    spec_document: dict[str, Any],
    curation: OpenApiCuration,
    *,
    max_definition_bytes: int = DEFAULT_MAX_DEFINITION_BYTES,
) -> Conversion:
    """Every selected operation as a tool, and every other one in `left_out` with why.

    Raises `OpenApiSpecError` when the document is not OpenAPI 3.0/3.1, and
    `OpenApiCurationError` when the curation names what the spec does not have.
    """
    version = openapi_version(spec_document)
    resolver = RefResolver(spec_document)
    candidates, left_out = _candidates(spec_document, resolver)
    _check_curation(curation, candidates)
    selected: list[_Candidate] = []
    for candidate in candidates:
        reason = _selection_refusal(curation, candidate)
        if reason:
            left_out.append(candidate.left_out(reason))
        else:
            selected.append(candidate)
    ids = Counter(c.operation_id for c in selected if c.operation_id)
    converted: list[Operation] = []
    openapi_30 = version.startswith("3.0")
    for candidate in selected:
        if candidate.operation_id and ids[candidate.operation_id] > 1:
            others = [o.reference_path for o in _same_id(selected, candidate)]
            left_out.append(
                candidate.left_out(
                    f"its operationId {candidate.operation_id!r} is also that of {', '.join(others)}; "
                    "operationIds must be unique, so none of them is converted: fix the spec"
                )
            )
            continue
        settings = curation.operations.get(candidate.key, OperationCuration())
        try:
            converted.append(_operation(candidate, settings, resolver, openapi_30, max_definition_bytes))
        except _Refused as refusal:
            left_out.append(candidate.left_out(str(refusal)))
        except UnresolvableReference as unresolvable:
            left_out.append(candidate.left_out(f"{unresolvable}"))
    operations = _refuse_shared_names(converted, left_out)
    info = spec_document.get("info") if isinstance(spec_document.get("info"), dict) else {}
    return Conversion(
        operations=tuple(operations),
        left_out=tuple(left_out),
        servers=_servers(spec_document),
        title=str(info.get("title", "")) if info else "",
        version=str(info.get("version", "")) if info else "",
    )


@dataclass(frozen=True, slots=True)
class _Reference:
    method: str
    path: str

    @property
    def reference_path(self) -> str:
        return f"{self.method} {self.path}"


def _same_id(selected: Iterable[_Candidate], candidate: _Candidate) -> list[_Reference]:
    return [
        _Reference(c.method, c.path)
        for c in selected
        if c.operation_id == candidate.operation_id and c is not candidate
    ]


def _candidates(document: JsonObject, resolver: RefResolver) -> tuple[list[_Candidate], list[LeftOut]]:
    """Every operation of the spec in document order; path items that cannot be read are left out."""
    candidates: list[_Candidate] = []
    left_out: list[LeftOut] = []
    for path, raw_item in (document.get("paths") or {}).items():
        try:
            item = resolver.deref(raw_item)
        except UnresolvableReference as unresolvable:
            left_out.append(LeftOut(operation=path, method="*", path=path, reason=f"its path item's {unresolvable}"))
            continue
        if not isinstance(item, dict):
            left_out.append(LeftOut(operation=path, method="*", path=path, reason="its path item is not a mapping"))
            continue
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            upper = method.upper()
            if not isinstance(operation, dict):
                left_out.append(LeftOut(f"{upper} {path}", upper, path, "the operation is not a mapping"))
                continue
            operation_id = operation.get("operationId")
            candidates.append(
                _Candidate(
                    method=upper,
                    path=str(path),
                    item=item,
                    operation=operation,
                    operation_id=operation_id if isinstance(operation_id, str) and operation_id else None,
                )
            )
    return candidates, left_out


# -- curation ------------------------------------------------------------------------------------


def _glob(pattern: str) -> re.Pattern[str]:
    """A path glob: `**` any number of segments, `*` within one segment."""
    parts = re.split(r"(\*\*|\*)", pattern)
    regex = "".join(".*" if p == "**" else "[^/]*" if p == "*" else re.escape(p) for p in parts)
    return re.compile(regex)


def _matches(rule: OperationSelector, candidate: _Candidate) -> bool:
    if rule.operations and not {candidate.key, candidate.reference, f"{candidate.method} {candidate.path}"} & set(
        rule.operations
    ):
        return False
    if rule.tags and not set(rule.tags) & set(candidate.tags):
        return False
    if rule.methods and candidate.method not in rule.methods:
        return False
    return not (rule.paths and not any(_glob(p).fullmatch(candidate.path) for p in rule.paths))


def _selection_refusal(curation: OpenApiCuration, candidate: _Candidate) -> str | None:
    """Why `select` leaves this operation out, or None when it is selected."""
    include = curation.select.include
    if include and not any(_matches(rule, candidate) for rule in include):
        return "not selected: no [[select.include]] rule matches it"
    for number, rule in enumerate(curation.select.exclude, start=1):
        if _matches(rule, candidate):
            return f"excluded by [[select.exclude]] rule {number}"
    return None


def _check_curation(curation: OpenApiCuration, candidates: list[_Candidate]) -> None:
    """Refuse curation that names what the spec lacks: each such typo would change what agents see."""
    keys = {c.key for c in candidates} | {c.reference for c in candidates}
    keys |= {f"{c.method} {c.path}" for c in candidates}
    for side in ("include", "exclude"):
        for number, rule in enumerate(getattr(curation.select, side), start=1):
            for name in rule.operations:
                if name not in keys:
                    raise OpenApiCurationError(
                        f"[[select.{side}]] rule {number} names operation {name!r}, which the spec does not have"
                        f"{_closest(name, keys)}",
                        ("select", side),
                    )
            if not any(_matches(rule, c) for c in candidates):
                raise OpenApiCurationError(
                    f"[[select.{side}]] rule {number} matches no operation of the spec: check its "
                    "tags, methods and path globs",
                    ("select", side),
                )
    by_key = {c.key: c for c in candidates}
    for key in curation.operations:
        candidate = by_key.get(key)
        if candidate is None:
            raise OpenApiCurationError(
                f"[operations.{key}] names no operation of the spec (operationIds, or for operations without "
                f"one the derived name such as 'get_users_id'){_closest(key, by_key)}",
                ("operations", key),
            )
        refusal = _selection_refusal(curation, candidate)
        if refusal:
            raise OpenApiCurationError(
                f"[operations.{key}] configures an operation that select leaves out ({refusal}): "
                "select it, or remove the table",
                ("operations", key),
            )


def _closest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3)
    return f"; closest: {', '.join(repr(c) for c in close)}" if close else ""


# -- one operation -------------------------------------------------------------------------------


def _operation(
    candidate: _Candidate,
    settings: OperationCuration,
    resolver: RefResolver,
    openapi_30: bool,
    max_definition_bytes: int,
) -> Operation:
    inputs = Inliner(resolver, "input", openapi_30)
    parameters, properties = _parameters(candidate, resolver, inputs)
    by_argument = {p.argument: p for p in parameters}
    hidden_keys = set(settings.hide) | set(settings.fixed)
    parameter_fixed: dict[str, Any] = {}
    hidden: set[str] = set()
    body_keys: set[str] = set()
    for key in sorted(hidden_keys):
        parameter = _parameter_named(candidate, parameters, key)
        if parameter is None:
            body_keys.add(key)
            continue
        hidden.add(parameter.argument)
        if key in settings.fixed:
            parameter_fixed[parameter.argument] = settings.fixed[key]
        elif parameter.required:
            raise OpenApiCurationError(
                f"[operations.{candidate.key}] hides the required parameter {key!r}: give it a value in fixed "
                "instead, or the API refuses every call",
                ("operations", candidate.key, "hide"),
            )
    body, body_properties, body_required, body_hidden = _body(
        candidate, settings, resolver, inputs, body_keys, set(by_argument)
    )
    hidden |= body_hidden
    visible = {arg: schema for arg, schema in properties.items() if arg not in hidden}
    required = [p.argument for p in parameters if p.required and p.argument not in hidden]
    input_schema: JsonObject = {"type": "object", "properties": {**visible, **body_properties}}
    required += [name for name in body_required if name not in required]
    if required:
        input_schema["required"] = required
    if body is None or body.argument is not None:
        input_schema["additionalProperties"] = False
    elif "additionalProperties" in body.schema:
        input_schema["additionalProperties"] = body.schema["additionalProperties"]
    response_schema = _response_schema(candidate, resolver, openapi_30)
    description = settings.description or _description(candidate, inputs.cut)
    definition: JsonObject = {
        "name": "",
        "description": description,
        "inputSchema": input_schema,
        "annotations": {**_annotations(candidate.method), **settings.annotations},
    }
    if response_schema is not None and is_object_schema(response_schema):
        definition["outputSchema"] = {"type": "object", **response_schema}
    _fit(definition, max_definition_bytes)
    return Operation(
        tool_name=settings.name or tool_name(candidate.key),
        operation_id=candidate.operation_id,
        method=candidate.method,
        path_template=candidate.path,
        parameters=parameters,
        body=body,
        response_schema=response_schema,
        fixed=MappingProxyType(parameter_fixed),
        definition=definition,
        hidden=frozenset(hidden),
    )


def _parameters(
    candidate: _Candidate, resolver: RefResolver, inputs: Inliner
) -> tuple[tuple[Parameter, ...], dict[str, Any]]:
    """The operation's parameters (path item's, overridden by the operation's) with their argument names."""
    merged: dict[tuple[str, str], JsonObject] = {}
    for raw in [*_as_list(candidate.item.get("parameters")), *_as_list(candidate.operation.get("parameters"))]:
        parameter = resolver.deref(raw)
        if not isinstance(parameter, dict) or not isinstance(parameter.get("name"), str):
            raise _Refused("one of its parameters has no name")
        where = parameter.get("in")
        if where not in _LOCATIONS:
            raise _Refused(f"its parameter {parameter['name']!r} is in {where!r}, not path, query, header or cookie")
        if where == "header" and parameter["name"].lower() in _IGNORED_HEADERS:
            continue  # OpenAPI: the client sets Accept, Content-Type and Authorization itself
        merged[(parameter["name"], str(where))] = parameter
    template = set(_TEMPLATE_VARIABLE.findall(candidate.path))
    declared = {name for name, location in merged if location == "path"}
    if template - declared:
        missing = ", ".join(sorted(template - declared))
        raise _Refused(f"its path has {{{missing}}} but no path parameter of that name")
    if declared - template:
        extra = ", ".join(sorted(declared - template))
        raise _Refused(f"it declares path parameter {extra!r}, which its path {candidate.path} does not contain")
    ordered = sorted(merged.values(), key=lambda p: _LOCATIONS.index(p["in"]))
    taken: set[str] = set()
    parameters: list[Parameter] = []
    properties: dict[str, Any] = {}
    for raw in ordered:
        location: ParameterLocation = raw["in"]
        name: str = raw["name"]
        argument = name
        counter = 1
        while argument in taken:
            counter += 1
            argument = f"{name}_{location}" if counter == 2 else f"{name}_{location}_{counter - 1}"
        taken.add(argument)
        content_type: str | None = None
        if "schema" in raw:
            schema = inputs.schema(raw["schema"])
        elif isinstance(raw.get("content"), dict) and raw["content"]:
            content_type, media = next(iter(raw["content"].items()))
            schema = inputs.schema(media.get("schema", {}) if isinstance(media, dict) else {})
        else:
            schema = {}
        style = raw.get("style") or ("form" if location in ("query", "cookie") else "simple")
        explode = raw.get("explode", style == "form")
        parameters.append(
            Parameter(
                name=name,
                location=location,
                argument=argument,
                required=bool(raw.get("required")) or location == "path",
                style=str(style),
                explode=bool(explode),
                schema=schema,
                allow_reserved=bool(raw.get("allowReserved")),
                content_type=content_type,
            )
        )
        prop = dict(schema) if isinstance(schema, dict) else {}
        if isinstance(raw.get("description"), str) and raw["description"]:
            prop["description"] = _bounded(raw["description"])
        if raw.get("deprecated") is True:
            prop["deprecated"] = True
        properties[argument] = prop
    return tuple(parameters), properties


def _parameter_named(candidate: _Candidate, parameters: tuple[Parameter, ...], key: str) -> Parameter | None:
    """The parameter a `hide`/`fixed` key names: by argument name, else by its unique wire name."""
    for parameter in parameters:
        if parameter.argument == key:
            return parameter
    named = [p for p in parameters if p.name == key]
    if len(named) > 1:
        raise OpenApiCurationError(
            f"[operations.{candidate.key}] names {key!r}, which is a parameter in "
            f"{' and '.join(p.location for p in named)}: name the one meant by its argument "
            f"({', '.join(repr(p.argument) for p in named)})",
            ("operations", candidate.key),
        )
    return named[0] if named else None


def _body(
    candidate: _Candidate,
    settings: OperationCuration,
    resolver: RefResolver,
    inputs: Inliner,
    body_keys: set[str],
    parameter_arguments: set[str],
) -> tuple[RequestBody | None, dict[str, Any], list[str], set[str]]:
    """The request body, its tool arguments, which of them are required, and which argument names are hidden."""
    raw = candidate.operation.get("requestBody")
    if raw is None:
        _unknown_keys(candidate, body_keys, ())
        return None, {}, [], set()
    body = resolver.deref(raw)
    content = body.get("content") if isinstance(body, dict) else None
    if not isinstance(content, dict) or not content:
        raise _Refused("its request body lists no content type")
    media_type = _json_type(content) or (_FORM if _FORM in content else None)
    if media_type is None:
        raise _Refused(
            f"its request body is {', '.join(content)} only; only JSON and form-urlencoded bodies become tool "
            "arguments (a Python connector can serve this operation)"
        )
    media = content[media_type] if isinstance(content[media_type], dict) else {}
    schema = inputs.schema(media.get("schema", {}))
    if media_type == _FORM and not is_object_schema(schema):
        raise _Refused("its form-urlencoded request body is not an object schema")
    required_body = bool(body.get("required"))
    fixed: dict[str, Any] = {}
    hidden: set[str] = set()
    properties = schema.get("properties") if is_object_schema(schema) else None
    if body_keys:
        _unknown_keys(candidate, body_keys - set(properties or {}), tuple(properties or {}))
        assert properties is not None
        was_required = set(schema.get("required", [])) if isinstance(schema.get("required"), list) else set()
        for key in sorted(body_keys):
            if key in settings.fixed:
                fixed[key] = settings.fixed[key]
            elif key in was_required:
                raise OpenApiCurationError(
                    f"[operations.{candidate.key}] hides the required body property {key!r}: give it a value in "
                    "fixed instead, or the API refuses every call",
                    ("operations", candidate.key, "hide"),
                )
            hidden.add(key)
        properties = {k: v for k, v in properties.items() if k not in body_keys}
        schema = {**schema, "properties": properties}
        if was_required - body_keys:
            schema["required"] = [r for r in schema["required"] if r not in body_keys]
        else:
            schema.pop("required", None)
    encoding = _form_encoding(media) if media_type == _FORM else {}
    merged = bool(properties) and not (set(properties or {}) & parameter_arguments)
    if merged:
        assert properties is not None
        required = [r for r in schema.get("required", []) if r in properties] if required_body else []
        request = RequestBody(media_type, None, required_body, schema, MappingProxyType(fixed), encoding)
        return request, dict(properties), required, hidden
    argument = "body"
    while argument in parameter_arguments:
        argument += "_"
    described = dict(schema)
    if isinstance(body.get("description"), str) and body["description"] and "description" not in described:
        described["description"] = _bounded(body["description"])
    request = RequestBody(media_type, argument, required_body, schema, MappingProxyType(fixed), encoding)
    return request, {argument: described}, [argument] if required_body else [], set()


def _unknown_keys(candidate: _Candidate, keys: set[str], properties: tuple[str, ...]) -> None:
    if not keys:
        return
    key = sorted(keys)[0]
    names = [*properties]
    raise OpenApiCurationError(
        f"[operations.{candidate.key}] hides or fixes {key!r}, which is neither a parameter nor a top-level body "
        f"property of {candidate.method} {candidate.path}{_closest(key, names)}",
        ("operations", candidate.key),
    )


def _json_type(content: Mapping[str, Any]) -> str | None:
    for media_type in content:
        base = media_type.split(";", 1)[0].strip().lower()
        if base == "application/json" or base.endswith("+json"):
            return media_type
    return None


def _form_encoding(media: JsonObject) -> Mapping[str, Mapping[str, Any]]:
    encoding = media.get("encoding")
    if not isinstance(encoding, dict):
        return MappingProxyType({})
    out: dict[str, Mapping[str, Any]] = {}
    for name, spec in encoding.items():
        if isinstance(spec, dict):
            style = spec.get("style", "form")
            out[name] = MappingProxyType({"style": style, "explode": spec.get("explode", style == "form")})
    return MappingProxyType(out)


def _response_schema(candidate: _Candidate, resolver: RefResolver, openapi_30: bool) -> JsonObject | None:
    """The schema of the first 2xx response with a JSON body, `writeOnly` properties dropped."""
    responses = candidate.operation.get("responses")
    if not isinstance(responses, dict):
        return None
    codes = sorted(
        (str(code) for code in responses if str(code).startswith("2")), key=lambda c: (c.upper() == "2XX", c)
    )
    for code in codes:
        response = resolver.deref(responses[code] if code in responses else responses[int(code)])
        content = response.get("content") if isinstance(response, dict) else None
        if not isinstance(content, dict):
            continue
        media_type = _json_type(content)
        if media_type is None or not isinstance(content[media_type], dict) or "schema" not in content[media_type]:
            continue
        schema = Inliner(resolver, "output", openapi_30).schema(content[media_type]["schema"])
        return schema if isinstance(schema, dict) else None
    return None


def _annotations(method: str) -> JsonObject:
    """What the HTTP method promises: GET and HEAD read, DELETE destroys, PUT and DELETE are idempotent."""
    if method in ("GET", "HEAD", "OPTIONS"):
        return {"readOnlyHint": True, "destructiveHint": False, "idempotentHint": True, "openWorldHint": True}
    annotations: JsonObject = {"readOnlyHint": False, "openWorldHint": True}
    if method == "DELETE":
        annotations |= {"destructiveHint": True, "idempotentHint": True}
    elif method == "PUT":
        annotations |= {"idempotentHint": True}
    else:
        annotations |= {"idempotentHint": False}
    return annotations


def _description(candidate: _Candidate, cut: set[str]) -> str:
    summary = candidate.operation.get("summary")
    detail = candidate.operation.get("description")
    parts = [p.strip() for p in (summary, detail) if isinstance(p, str) and p.strip()]
    if len(parts) == 2 and parts[1].startswith(parts[0]):
        parts = parts[1:]
    text = "\n\n".join(parts) or f"{candidate.method} {candidate.path}"
    if candidate.operation.get("deprecated") is True:
        text = f"Deprecated. {text}"
    text = _bounded(text)
    if cut:
        text += (
            f"\n\nRecursive types are not expanded where they repeat (plain objects there): {', '.join(sorted(cut))}."
        )
    return text


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_DESCRIPTION_LENGTH else text[: MAX_DESCRIPTION_LENGTH - 1].rstrip() + "…"


def _fit(definition: JsonObject, max_bytes: int) -> None:
    """Keep the definition within the catalog's bound: drop a large outputSchema first, else refuse."""
    size = len(json.dumps(definition, separators=(",", ":")).encode())
    if size <= max_bytes:
        return
    if "outputSchema" in definition:
        del definition["outputSchema"]
        size = len(json.dumps(definition, separators=(",", ":")).encode())
        if size <= max_bytes:
            return
    raise _Refused(
        f"its tool definition is {size // 1024} KiB, more than the {max_bytes // 1024} KiB a tool may have: "
        "hide parameters or body properties it does not need ([operations.<id>] hide)"
    )


def _refuse_shared_names(converted: list[Operation], left_out: list[LeftOut]) -> list[Operation]:
    """Two operations with one tool name are both left out: neither may stand in for the other."""
    names = Counter(o.tool_name for o in converted)
    kept: list[Operation] = []
    for operation in converted:
        if names[operation.tool_name] == 1:
            definition = {**operation.definition, "name": operation.tool_name}
            kept.append(_with_definition(operation, definition))
            continue
        others = [o.reference for o in converted if o.tool_name == operation.tool_name and o is not operation]
        left_out.append(
            LeftOut(
                operation=operation.reference,
                method=operation.method,
                path=operation.path_template,
                reason=(
                    f"its tool name {operation.tool_name!r} is also that of {', '.join(others)}: give one of them "
                    "another name ([operations.<id>] name = ...)"
                ),
            )
        )
    return kept


def _with_definition(operation: Operation, definition: JsonObject) -> Operation:
    from dataclasses import replace

    return replace(operation, definition=definition)


def _servers(document: JsonObject) -> tuple[str, ...]:
    """The spec's server URLs with their variables at their defaults."""
    servers = document.get("servers")
    if not isinstance(servers, list):
        return ()
    urls: list[str] = []
    for server in servers:
        if not isinstance(server, dict) or not isinstance(server.get("url"), str):
            continue
        url: str = server["url"]
        variables = server.get("variables") if isinstance(server.get("variables"), dict) else {}
        for name, variable in (variables or {}).items():
            if isinstance(variable, dict) and "default" in variable:
                url = url.replace("{" + name + "}", str(variable["default"]))
        urls.append(url)
    return tuple(urls)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
