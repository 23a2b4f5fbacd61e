"""A form for a tool's arguments, generated from its input schema, and the arguments read back from it.

People explaining a decision should not have to write JSON for a tool that takes a customer id and
an amount, so each simple property of the schema becomes an input of its own: text for strings,
a number input for numbers and integers, a choice for enums and for booleans (with "leave out",
since a checkbox cannot tell false from absent). Anything else (nested objects, arrays, unions of
several types) is a JSON text area for that one property; a schema that is not an object with
properties is one JSON text area for all the arguments. Nothing is required by the form itself:
leaving out what the schema requires is a question worth asking (the policies deny such a call).

Read back, a blank field is left out, a number is read as JSON reads it (so `1000` stays an
integer, as in `gateway policy explain --args`), and anything that does not fit its type is an
error naming the property, never a silent guess.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The form name of a property's input: `arg:<property>`, apart from the explain form's own fields.
FIELD_PREFIX = "arg:"
#: The form name of the one JSON text area used when the schema cannot be shown field by field.
WHOLE = "arguments"
#: More properties than this are shown as one JSON text area: a form that long helps nobody.
MAX_FIELDS = 100

_SIMPLE_TYPES = ("string", "number", "integer", "boolean")
_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True, slots=True)
class ArgumentField:
    """One property of the schema as an input: `kind` is string, number, integer, boolean, enum or json."""

    name: str
    kind: str
    required: bool = False
    help: str | None = None
    #: The schema's default, as JSON text, for the help line (the form never fills it in).
    default: str | None = None
    #: For an enum: each allowed value as the option's text (a string as it is, anything else as JSON).
    choices: tuple[str, ...] = ()
    #: For an enum: the allowed values themselves, in the order of `choices`.
    values: tuple[Any, ...] = ()
    #: What was typed, shown again when the form comes back.
    value: str = ""

    @property
    def input_name(self) -> str:
        return FIELD_PREFIX + self.name


@dataclass(frozen=True, slots=True)
class ArgumentForm:
    """The inputs for one tool's arguments; `whole` when they are one JSON text area instead of fields."""

    fields: tuple[ArgumentField, ...] = ()
    whole: bool = False
    whole_value: str = ""


def argument_form(schema: Any, submitted: Mapping[str, str] | None = None) -> ArgumentForm:
    """The form for `schema` (a tool's input schema), filled with `submitted` (form name -> text) if given."""
    submitted = submitted or {}
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    if not isinstance(properties, Mapping) or not properties or len(properties) > MAX_FIELDS:
        return ArgumentForm(whole=True, whole_value=submitted.get(WHOLE, ""))
    required = schema.get("required") if isinstance(schema.get("required"), list) else []
    fields = []
    for name, prop in properties.items():
        kind, allowed = _kind(prop)
        described = prop if isinstance(prop, Mapping) else {}
        help_text = described.get("description") or described.get("title")
        fields.append(
            ArgumentField(
                name=str(name),
                kind=kind,
                required=name in required,
                help=help_text if isinstance(help_text, str) else None,
                default=json.dumps(described["default"]) if "default" in described else None,
                choices=tuple(allowed),
                values=tuple(allowed.values()),
                value=submitted.get(FIELD_PREFIX + str(name), ""),
            )
        )
    return ArgumentForm(tuple(fields))


def read_arguments(form: ArgumentForm) -> tuple[Any, list[str]]:
    """The arguments the filled `form` gives, and what is wrong with it (empty when nothing is)."""
    if form.whole:
        if not form.whole_value.strip():
            return {}, []
        try:
            return json.loads(form.whole_value), []
        except json.JSONDecodeError as exc:
            return {}, [f"The arguments are not JSON: {exc}"]
    arguments: dict[str, Any] = {}
    errors: list[str] = []
    for entry in form.fields:
        text = entry.value.strip() if entry.kind != "string" else entry.value
        if text == "":
            continue  # left out: the call is decided without this argument
        try:
            arguments[entry.name] = _read(entry, text)
        except ValueError as exc:
            errors.append(f"{entry.name}: {exc}")
    return arguments, errors


def _read(entry: ArgumentField, text: str) -> Any:
    if entry.kind == "string":
        return text
    if entry.kind == "boolean":
        if text not in ("true", "false"):
            raise ValueError("choose true or false, or leave it out")
        return text == "true"
    if entry.kind == "enum":
        if text not in entry.choices:
            raise ValueError(f"choose one of {', '.join(entry.choices)}")
        return entry.values[entry.choices.index(text)]
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}" if entry.kind == "json" else f"not a number: {text!r}") from None
    if entry.kind == "json":
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"not a number: {text!r}")
    if entry.kind == "integer" and not isinstance(value, int):
        raise ValueError(f"not a whole number: {text!r}")
    return value


def _kind(prop: Any) -> tuple[str, dict[str, Any]]:
    """How a property is entered, and for an enum its allowed values by option text."""
    if not isinstance(prop, Mapping):
        return "json", {}
    if "enum" in prop or "const" in prop:
        values = prop["enum"] if "enum" in prop else [prop["const"]]
        if isinstance(values, list) and values and all(isinstance(v, _SCALARS) for v in values):
            return "enum", {(v if isinstance(v, str) else json.dumps(v)): v for v in values}
        return "json", {}
    declared = prop.get("type")
    if isinstance(declared, list):
        others = [t for t in declared if t != "null"]
        declared = others[0] if len(others) == 1 else None
    if declared in _SIMPLE_TYPES:
        return str(declared), {}
    if declared is None:
        # `anyOf: [{type: string}, {type: null}]`, as Python's Optional[str] is published: the one real type.
        union = prop.get("anyOf", prop.get("oneOf"))
        if isinstance(union, list):
            options = [o for o in union if not (isinstance(o, Mapping) and o.get("type") == "null")]
            if len(options) == 1:
                return _kind(options[0])
    return "json", {}
