"""OpenAPI schemas as the self-contained JSON Schema (2020-12) an MCP tool definition carries.

A tool's `inputSchema` must stand alone: agents and policies read it without the spec, so every
`$ref` is inlined. Recursive types (a comment with replies that are comments) cannot be inlined
whole, so expansion stops at a cycle or past `MAX_REF_DEPTH` nested references: that spot
becomes a plain `{"type": "object"}`, and the caller is told which types were cut so it can say
so in the description. OpenAPI 3.0's dialect is mapped to 3.1's (JSON Schema 2020-12):
`nullable` becomes a `null` type, boolean `exclusiveMinimum`/`exclusiveMaximum` become numbers,
and keywords JSON Schema does not know (`example`, `xml`, `discriminator`, `x-*`) are dropped.
`readOnly` properties are dropped from input (the server sets them) and `writeOnly` ones from
output (the server never returns them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource, Unresolvable

from gateway.connectors.base import JsonObject

#: Nested `$ref`s expanded along one path before the rest becomes a plain object.
MAX_REF_DEPTH = 8
#: The URI the spec is registered under; any `$ref` that leaves it is external and refused.
_SPEC_URI = "https://openapi.invalid/spec"

_SCHEMA_MAPS = ("properties", "patternProperties", "dependentSchemas", "$defs", "definitions")
_SCHEMA_LISTS = ("allOf", "oneOf", "anyOf", "prefixItems")
_SCHEMA_VALUES = (
    "items",
    "additionalProperties",
    "not",
    "contains",
    "if",
    "then",
    "else",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
    "additionalItems",
)
_DROPPED = frozenset({"example", "xml", "discriminator", "externalDocs", "nullable", "$schema", "$id"})

Direction = Literal["input", "output"]


class UnresolvableReference(Exception):
    """A `$ref` that points nowhere in the document, or outside it."""

    def __init__(self, ref: str, why: str) -> None:
        super().__init__(f"$ref {ref!r} {why}")
        self.ref = ref


class RefResolver:
    """Looks `$ref`s up in one spec document; references to other files are refused, never fetched."""

    def __init__(self, document: JsonObject) -> None:
        def refuse(uri: str) -> Resource[Any]:
            raise NoSuchResource(ref=uri)  # type: ignore[call-arg]

        registry: Registry[Any] = Registry(retrieve=refuse).with_resource(  # type: ignore[call-arg]
            _SPEC_URI, Resource.opaque(document)
        )
        self._resolver = registry.resolver(base_uri=_SPEC_URI)
        self._cache: dict[str, Any] = {}

    def lookup(self, ref: str) -> Any:
        """The value `ref` points at; raises `UnresolvableReference` saying why not."""
        if ref in self._cache:
            return self._cache[ref]
        if not ref.startswith("#"):
            raise UnresolvableReference(
                ref, "points outside the document: bundle the spec into one file (external references are not fetched)"
            )
        try:
            value = self._resolver.lookup(ref).contents
        except Unresolvable:
            raise UnresolvableReference(ref, "points at nothing in the document") from None
        self._cache[ref] = value
        return value

    def deref(self, value: Any, *, limit: int = MAX_REF_DEPTH) -> Any:
        """Follow a chain of `$ref`-only objects (a parameter, a response) to what it names."""
        seen: list[str] = []
        while isinstance(value, dict) and isinstance(value.get("$ref"), str):
            ref = value["$ref"]
            if ref in seen or len(seen) >= limit:
                raise UnresolvableReference(ref, "refers back to itself")
            seen.append(ref)
            value = self.lookup(ref)
        return value


@dataclass(slots=True)
class Inliner:
    """Inlines one operation's schemas, remembering which recursive types it had to cut."""

    resolver: RefResolver
    direction: Direction
    openapi_30: bool
    cut: set[str] = field(default_factory=set)
    #: Expansions that met no cycle or bound, reused wherever the same `$ref` appears again.
    _expanded: dict[str, Any] = field(default_factory=dict)
    _cut_events: list[str] = field(default_factory=list)

    def schema(self, value: Any) -> Any:
        """The JSON Schema `value` becomes (see the module's rules)."""
        return self._walk(value, ())

    def _walk(self, value: Any, stack: tuple[str, ...]) -> Any:
        if isinstance(value, bool):
            return value
        if not isinstance(value, dict):
            return {}  # a malformed schema accepts anything rather than failing the whole operation
        ref = value.get("$ref")
        if isinstance(ref, str):
            return self._reference(ref, value, stack)
        return self._object(value, stack)

    def _reference(self, ref: str, value: JsonObject, stack: tuple[str, ...]) -> Any:
        name = ref.rsplit("/", 1)[-1]
        if ref in stack or len(stack) >= MAX_REF_DEPTH:
            self.cut.add(name)
            self._cut_events.append(ref)
            plain: JsonObject = {"type": "object", "description": f"A {name} (recursive: not expanded further)."}
            return plain
        target = self._expanded.get(ref)
        if target is None:
            cuts = len(self._cut_events)
            target = self._walk(self.resolver.lookup(ref), (*stack, ref))
            if len(self._cut_events) == cuts:
                self._expanded[ref] = target  # expanded whole: the same wherever it appears
        siblings = {k: v for k, v in value.items() if k != "$ref"}
        if not siblings or self.openapi_30:
            return target  # OpenAPI 3.0 ignores a $ref's siblings
        extra = self._object(siblings, stack)
        if isinstance(target, dict) and set(extra) <= {"description", "title", "default", "deprecated"}:
            return {**target, **extra}
        return {"allOf": [target], **extra}

    def _object(self, value: JsonObject, stack: tuple[str, ...]) -> Any:
        out: JsonObject = {}
        for key, item in value.items():
            if key in _DROPPED or key.startswith("x-"):
                continue
            if key in _SCHEMA_MAPS and isinstance(item, dict):
                out[key] = {
                    name: self._walk(sub, stack) for name, sub in item.items() if not self._dropped_property(sub)
                }
            elif key in _SCHEMA_LISTS and isinstance(item, list):
                out[key] = [self._walk(sub, stack) for sub in item]
            elif key in _SCHEMA_VALUES:
                out[key] = (
                    [self._walk(sub, stack) for sub in item] if isinstance(item, list) else self._walk(item, stack)
                )
            elif key == "example":
                continue
            else:
                out[key] = item
        if "properties" in out and isinstance(value.get("properties"), dict) and isinstance(out.get("required"), list):
            kept = out["properties"]
            required = [name for name in out["required"] if name in kept or name not in value["properties"]]
            if required:
                out["required"] = required
            else:
                del out["required"]
        self._exclusive_bounds(out)
        if value.get("nullable") is True and self.openapi_30:
            return _nullable(out)
        return out

    def _dropped_property(self, schema: Any) -> bool:
        """Whether a property is one this direction never carries (`readOnly` in input, `writeOnly` in output)."""
        flag = "readOnly" if self.direction == "input" else "writeOnly"
        if not isinstance(schema, dict):
            return False
        if schema.get(flag) is True:
            return True
        ref = schema.get("$ref")
        if isinstance(ref, str):
            try:
                target = self.resolver.lookup(ref)
            except UnresolvableReference:
                return False
            return isinstance(target, dict) and target.get(flag) is True
        return False

    def _exclusive_bounds(self, out: JsonObject) -> None:
        """OpenAPI 3.0's boolean `exclusiveMinimum`/`exclusiveMaximum` as 2020-12 numbers."""
        for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            flag = out.get(exclusive)
            if isinstance(flag, bool):
                del out[exclusive]
                if flag and bound in out:
                    out[exclusive] = out.pop(bound)


def _nullable(schema: JsonObject) -> JsonObject:
    """A 3.0 `nullable: true` schema in 3.1 style: `null` joins its type, its enum, or an `anyOf`."""
    kind = schema.get("type")
    if isinstance(kind, str):
        schema = {**schema, "type": [kind, "null"]}
        if isinstance(schema.get("enum"), list) and None not in schema["enum"]:
            schema["enum"] = [*schema["enum"], None]
        return schema
    if isinstance(kind, list):
        return {**schema, "type": kind if "null" in kind else [*kind, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def is_object_schema(schema: Any) -> bool:
    """Whether a schema is a plain object: its properties can stand beside other arguments."""
    if not isinstance(schema, dict):
        return False
    if any(k in schema for k in ("allOf", "oneOf", "anyOf", "not", "if", "$ref")):
        return False
    kind = schema.get("type")
    return kind == "object" or (kind is None and isinstance(schema.get("properties"), dict))
