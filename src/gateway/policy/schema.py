"""The Cedar schema of the live catalog, and how each tool's arguments are typed in it.

Every tool becomes one action (its exposed name) in `Action::"call_tool"` and in the groups
the gateway generates: `server:<connector>`, one per true annotation (`read_only`,
`destructive`, `idempotent`, `open_world`) and `label:<label>` per label. A tool's JSON input
schema becomes the type of `context.input` for its action, so policies are type-checked
against the arguments a tool really takes. Whatever Cedar cannot express is still offered, as
the argument's JSON text in a String, and reported as a limitation; nothing here raises on a
strange input schema.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gateway.catalog import Catalog, PromptEntry, ToolEntry

AGENT = "Agent"
ROLE = "Role"
USER = "User"
SERVER = "Server"
TOOL = "Tool"
PROMPT = "Prompt"
RESOURCE = "Resource"

CALL_TOOL = "call_tool"
LIST_TOOLS = "list_tools"
READ_RESOURCE = "read_resource"
GET_PROMPT = "get_prompt"
READ_ONLY = "read_only"
DESTRUCTIVE = "destructive"
IDEMPOTENT = "idempotent"
OPEN_WORLD = "open_world"
ANNOTATION_GROUPS = (READ_ONLY, DESTRUCTIVE, IDEMPOTENT, OPEN_WORLD)
RESERVED_ACTIONS = frozenset({CALL_TOOL, LIST_TOOLS, READ_RESOURCE, GET_PROMPT, *ANNOTATION_GROUPS})

#: Records and sets nested deeper than this are offered as JSON text instead of typed values.
MAX_TYPED_DEPTH = 32
#: Typed schema nodes per tool; past this (e.g. `$ref`s that fan out) the rest is JSON text.
MAX_TYPED_NODES = 2000

_DECIMAL = {"type": "Extension", "name": "decimal"}


def server_group(connector: str) -> str:
    """The action group holding every tool of one connector."""
    return f"server:{connector}"


def label_group(label: str) -> str:
    """The action group holding every tool that carries a label."""
    return f"label:{label}"


@dataclass(frozen=True, slots=True)
class ToolAnnotations:
    """A tool's MCP behaviour hints with the MCP defaults applied.

    MCP defaults: readOnlyHint false, destructiveHint true, idempotentHint false, openWorldHint
    true. destructiveHint only means something when readOnlyHint is false, so a read-only tool
    is never destructive, whatever it says.
    """

    read_only: bool = False
    destructive: bool = True
    idempotent: bool = False
    open_world: bool = True

    @classmethod
    def from_definition(cls, annotations: Any) -> ToolAnnotations:
        hints = annotations if isinstance(annotations, Mapping) else {}

        def hint(key: str, default: bool) -> bool:
            value = hints.get(key)
            return value if isinstance(value, bool) else default

        read_only = hint("readOnlyHint", False)
        return cls(
            read_only=read_only,
            destructive=False if read_only else hint("destructiveHint", True),
            idempotent=hint("idempotentHint", False),
            open_world=hint("openWorldHint", True),
        )

    def groups(self) -> tuple[str, ...]:
        flags = (self.read_only, self.destructive, self.idempotent, self.open_world)
        return tuple(group for group, flag in zip(ANNOTATION_GROUPS, flags) if flag)

    def as_record(self) -> dict[str, bool]:
        return {
            READ_ONLY: self.read_only,
            DESTRUCTIVE: self.destructive,
            IDEMPOTENT: self.idempotent,
            OPEN_WORLD: self.open_world,
        }


class Kind(StrEnum):
    """How one argument is represented in the Cedar context."""

    STRING = "String"
    LONG = "Long"
    BOOL = "Boolean"
    DECIMAL = "decimal"
    RECORD = "Record"
    SET = "Set"
    JSON = "json"  # a Cedar String holding the value's JSON text


@dataclass(frozen=True, slots=True)
class ArgumentType:
    """The Cedar type of one argument, and so how its JSON value is converted."""

    kind: Kind
    fields: tuple[FieldType, ...] = ()
    items: ArgumentType | None = None

    def cedar(self) -> dict[str, Any]:
        """This type in Cedar's JSON schema format."""
        if self.kind in (Kind.STRING, Kind.JSON):
            return {"type": "String"}
        if self.kind is Kind.DECIMAL:
            return dict(_DECIMAL)
        if self.kind is Kind.RECORD:
            return {
                "type": "Record",
                "attributes": {f.name: {**f.type.cedar(), "required": f.required} for f in self.fields},
            }
        if self.kind is Kind.SET:
            assert self.items is not None
            return {"type": "Set", "element": self.items.cedar()}
        return {"type": self.kind.value}


@dataclass(frozen=True, slots=True)
class FieldType:
    """One attribute of a record: optional when the JSON schema does not require it or allows null."""

    name: str
    type: ArgumentType
    required: bool
    nullable: bool = False


JSON_TEXT = ArgumentType(Kind.JSON)
EMPTY_RECORD = ArgumentType(Kind.RECORD)


@dataclass(frozen=True, slots=True)
class ToolShape:
    """What the policy layer knows about one tool: its action's groups and its argument types."""

    exposed: str
    connector: str
    original: str
    labels: tuple[str, ...]
    annotations: ToolAnnotations
    input: ArgumentType
    definition: Mapping[str, Any]

    @property
    def groups(self) -> tuple[str, ...]:
        return (
            CALL_TOOL,
            server_group(self.connector),
            *self.annotations.groups(),
            *(label_group(label) for label in self.labels),
        )


@dataclass(frozen=True, slots=True)
class GeneratedSchema:
    """The Cedar schema (JSON format) of one catalog, with what could not be typed."""

    document: Mapping[str, Any]
    tools: Mapping[str, ToolShape]
    prompts: Mapping[str, PromptEntry]
    limitations: tuple[str, ...] = ()
    action_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def _record(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "Record", "attributes": dict(attributes)}


def _common_types() -> dict[str, Any]:
    return {
        "Session": _record({"id": {"type": "String"}, "client": {"type": "String"}}),
        "Time": _record(
            {
                "hour": {"type": "Long"},
                "weekday": {"type": "Long"},
                "date": {"type": "String"},
                "iso": {"type": "String"},
            }
        ),
        # Always present: `id` is "" and the sets are empty for a call in no workflow.
        "Workflow": _record(
            {
                "id": {"type": "String"},
                "completed": {"type": "Set", "element": {"type": "String"}},
                "agents": {"type": "Set", "element": {"type": "String"}},
            }
        ),
        "Approval": _record(
            {
                "granted": {"type": "Boolean"},
                "approvers": {"type": "Set", "element": {"type": "String"}},
                "decided_at": {"type": "String"},
            }
        ),
        # The agent's calls in the last minute and hour, all tools and this one, this call included.
        "Rate": _record({name: {"type": "Long"} for name in ("minute", "hour", "tool_minute", "tool_hour")}),
    }


def _common_context() -> dict[str, Any]:
    """The context attributes every action has; tool actions add `input`."""
    return {
        "reasoning": {"type": "String", "required": False},
        "workflow": {"type": "Workflow"},
        "session": {"type": "Session"},
        "time": {"type": "Time"},
        "request_id": {"type": "String"},
    }


#: Tool actions alone have `context.approval` (present only when an approved call is about to run)
#: and `context.rate` (always present).
_TOOL_CONTEXT = {"approval": {"type": "Approval", "required": False}, "rate": {"type": "Rate"}}


def _entity_types() -> dict[str, Any]:
    server_attributes = {"name": {"type": "String"}, "server": {"type": "String"}}
    return {
        AGENT: {
            "memberOfTypes": [ROLE],
            "shape": _record(
                {
                    "user": {"type": "Entity", "name": USER, "required": False},
                    # Always present (empty for API keys), so policies need no `has` check.
                    "scopes": {"type": "Set", "element": {"type": "String"}},
                }
            ),
        },
        ROLE: {},
        USER: {},
        SERVER: {},
        TOOL: {
            "memberOfTypes": [SERVER],
            "shape": _record(
                {
                    **server_attributes,
                    "annotations": _record({group: {"type": "Boolean"} for group in ANNOTATION_GROUPS}),
                    "labels": {"type": "Set", "element": {"type": "String"}},
                }
            ),
        },
        PROMPT: {"memberOfTypes": [SERVER], "shape": _record(server_attributes)},
        RESOURCE: {
            "memberOfTypes": [SERVER],
            "shape": _record({"uri": {"type": "String"}, "server": {"type": "String"}}),
        },
    }


def _applies(resource_type: str, context: Mapping[str, Any]) -> dict[str, Any]:
    return {"principalTypes": [AGENT], "resourceTypes": [resource_type], "context": _record(context)}


def generate_schema(catalog: Catalog) -> GeneratedSchema:
    """Build the schema for every tool and prompt in `catalog`; never raises on a tool's schema.

    Tools withheld for a connector file problem are in it: policies naming them keep loading.
    """
    return schema_for(catalog.policy_tools(), catalog.prompts())


def schema_for(tools: Iterable[ToolEntry], prompts: Iterable[PromptEntry]) -> GeneratedSchema:
    limitations: list[str] = []
    shapes: dict[str, ToolShape] = {}
    for tool in tools:
        if tool.exposed in RESERVED_ACTIONS:
            limitations.append(
                f"{tool.exposed}: the exposed name is a reserved action name; the tool is left out of the "
                "schema and every call to it is denied (rename the connector or change the separator)"
            )
            continue
        typer = _InputTyper(tool.exposed, tool.backend_input_schema)
        shapes[tool.exposed] = ToolShape(
            exposed=tool.exposed,
            connector=tool.connector,
            original=tool.original,
            labels=tuple(tool.labels),
            annotations=ToolAnnotations.from_definition(tool.definition.get("annotations")),
            input=typer.root(),
            definition=tool.definition,
        )
        limitations.extend(typer.limitations)

    common = _common_context()
    actions: dict[str, Any] = {
        LIST_TOOLS: {"appliesTo": _applies(SERVER, common)},
        READ_RESOURCE: {"appliesTo": _applies(RESOURCE, common)},
        GET_PROMPT: {"appliesTo": _applies(PROMPT, common)},
    }
    groups: dict[str, None] = {}
    action_groups: dict[str, tuple[str, ...]] = {LIST_TOOLS: (), READ_RESOURCE: (), GET_PROMPT: ()}
    for shape in shapes.values():
        for group in shape.groups:
            groups.setdefault(group)
        actions[shape.exposed] = {
            "memberOf": [{"id": group} for group in shape.groups],
            "appliesTo": _applies(TOOL, {**common, **_TOOL_CONTEXT, "input": shape.input.cedar()}),
        }
        action_groups[shape.exposed] = shape.groups
    for group in groups:
        actions[group] = {}
    document = {"": {"commonTypes": _common_types(), "entityTypes": _entity_types(), "actions": actions}}
    return GeneratedSchema(
        document=document,
        tools=shapes,
        prompts={prompt.exposed: prompt for prompt in prompts},
        limitations=tuple(limitations),
        action_groups=action_groups,
    )


_SCALARS = {"string": Kind.STRING, "integer": Kind.LONG, "boolean": Kind.BOOL, "number": Kind.DECIMAL}


class _InputTyper:
    """Turns one tool's JSON input schema into an `ArgumentType`, noting what it had to leave untyped."""

    def __init__(self, tool: str, schema: Any) -> None:
        self._tool = tool
        self._root_schema = schema
        self._nodes = 0
        self.limitations: list[str] = []

    def root(self) -> ArgumentType:
        schema = self._root_schema
        if schema is None:
            return EMPTY_RECORD
        if (
            isinstance(schema, Mapping)
            and schema.get("type", "object") == "object"
            and not schema.get("properties")
            and not any(keyword in schema for keyword in ("$ref", "anyOf", "oneOf", "allOf"))
        ):
            # An object without declared properties: a tool without arguments to look at.
            if schema.get("additionalProperties") not in (None, False) or schema.get("patternProperties"):
                self._limit("input", "free-form arguments (no declared properties) cannot be typed; policies see none")
            return EMPTY_RECORD
        typed, _ = self._type(schema, "input", 0, ())
        if typed.kind is Kind.RECORD:
            return typed
        self._limit("input", "the input schema is not an object with properties; policies see no arguments")
        return EMPTY_RECORD

    def _limit(self, path: str, problem: str) -> None:
        self.limitations.append(f"{self._tool}: {path}: {problem}")

    def _untyped(self, path: str, problem: str) -> tuple[ArgumentType, bool]:
        self._limit(path, f"{problem}; available as JSON text (String)")
        return JSON_TEXT, False

    def _type(self, schema: Any, path: str, depth: int, refs: tuple[str, ...]) -> tuple[ArgumentType, bool]:
        """The type of `schema` and whether null is allowed (null is then an absent attribute)."""
        if not isinstance(schema, Mapping):
            return self._untyped(path, "accepts any value (no schema)")
        if depth > MAX_TYPED_DEPTH:
            return self._untyped(path, f"nested deeper than {MAX_TYPED_DEPTH} levels")
        self._nodes += 1
        if self._nodes > MAX_TYPED_NODES:
            if self._nodes == MAX_TYPED_NODES + 1:
                self._limit(
                    path,
                    f"the input schema has more than {MAX_TYPED_NODES} typed parts; from here on, "
                    "arguments are available as JSON text (String)",
                )
            return JSON_TEXT, False
        ref = schema.get("$ref")
        if ref is not None:
            if not isinstance(ref, str) or ref in refs:
                return self._untyped(path, f"recursive or invalid reference {ref!r}")
            target = self._resolve(ref)
            if target is None:
                return self._untyped(path, f"unresolvable reference {ref!r}")
            return self._type(target, path, depth + 1, (*refs, ref))
        for keyword in ("anyOf", "oneOf"):
            if keyword in schema:
                return self._union(schema[keyword], keyword, path, depth, refs)
        if "allOf" in schema:
            parts = schema["allOf"]
            if isinstance(parts, list) and len(parts) == 1 and "type" not in schema:
                return self._type(parts[0], path, depth + 1, refs)
            return self._untyped(path, "allOf combinations cannot be expressed in Cedar")
        declared = schema.get("type")
        nullable = False
        if isinstance(declared, list):
            kinds = [t for t in declared if t != "null"]
            nullable = len(kinds) < len(declared)
            if len(kinds) != 1:
                return self._untyped(path, f"a union of types {declared} cannot be expressed in Cedar")
            declared = kinds[0]
        if declared is None:
            declared = _inferred_type(schema)
            if declared is None:
                return self._untyped(path, "the schema declares no type")
        if declared == "null":
            return self._untyped(path, "a null-only value cannot be expressed in Cedar")
        if declared in _SCALARS:
            return ArgumentType(_SCALARS[declared]), nullable
        if declared == "object":
            return self._object(schema, path, depth, refs), nullable
        if declared == "array":
            return self._array(schema, path, depth, refs), nullable
        return self._untyped(path, f"unknown type {declared!r}")

    def _union(
        self, options: Any, keyword: str, path: str, depth: int, refs: tuple[str, ...]
    ) -> tuple[ArgumentType, bool]:
        if not isinstance(options, list) or not options:
            return self._untyped(path, f"invalid {keyword}")
        others = [o for o in options if not (isinstance(o, Mapping) and o.get("type") == "null")]
        if len(others) == 1:
            typed, nullable = self._type(others[0], path, depth + 1, refs)
            if len(others) < len(options):
                nullable = True
            return typed, nullable
        return self._untyped(path, f"{keyword} union of {len(others)} alternatives cannot be expressed in Cedar")

    def _object(self, schema: Mapping[str, Any], path: str, depth: int, refs: tuple[str, ...]) -> ArgumentType:
        properties = schema.get("properties")
        if not isinstance(properties, Mapping) or not properties:
            typed, _ = self._untyped(path, "a free-form object (no declared properties) cannot be typed")
            return typed
        if schema.get("additionalProperties") not in (None, False) or schema.get("patternProperties"):
            self._limit(path, "properties beyond the declared ones are not visible to policies")
        required = schema.get("required")
        required_names = {name for name in required if isinstance(name, str)} if isinstance(required, list) else set()
        fields = []
        for name, subschema in properties.items():
            if not isinstance(name, str):
                continue
            typed, nullable = self._type(subschema, f"{path}.{name}", depth + 1, refs)
            fields.append(
                FieldType(name=name, type=typed, required=name in required_names and not nullable, nullable=nullable)
            )
        return ArgumentType(Kind.RECORD, fields=tuple(fields))

    def _array(self, schema: Mapping[str, Any], path: str, depth: int, refs: tuple[str, ...]) -> ArgumentType:
        items = schema.get("items")
        if "prefixItems" in schema or isinstance(items, list):
            typed, _ = self._untyped(path, "a tuple (positional items) cannot be expressed in Cedar")
            return typed
        if not isinstance(items, Mapping):
            typed, _ = self._untyped(path, "an array without an item type (possibly mixed) cannot be typed")
            return typed
        before = len(self.limitations)
        item_type, nullable = self._type(items, f"{path}[]", depth + 1, refs)
        if item_type.kind is Kind.JSON or nullable:
            del self.limitations[before:]
            typed, _ = self._untyped(path, "an array of mixed, nullable or untyped items cannot be a Cedar Set")
            return typed
        return ArgumentType(Kind.SET, items=item_type)

    def _resolve(self, ref: str) -> Any:
        """A local JSON pointer (`#/$defs/Name`) into the tool's own input schema."""
        if not ref.startswith("#"):
            return None
        node: Any = self._root_schema
        for raw in ref[1:].split("/")[1:] if ref != "#" else ():
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None
        return node


def _inferred_type(schema: Mapping[str, Any]) -> str | None:
    """The type of an `enum` or `const` whose values all share one JSON type."""
    values: list[Any] = []
    if "const" in schema:
        values.append(schema["const"])
    if isinstance(schema.get("enum"), list):
        values.extend(schema["enum"])
    kinds = {_json_type(value) for value in values}
    return kinds.pop() if len(kinds) == 1 and "other" not in kinds else None


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"
