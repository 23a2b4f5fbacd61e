"""A request's Cedar context: the typed arguments plus who, when and why.

Arguments are converted by the type the schema generator gave each one (see `schema.py`):
strings, booleans and records as they are; integers as Long (64-bit; a JSON number with a zero
fraction such as `2.0` counts as an integer); JSON numbers as Cedar `decimal`, rounded half to
even to 4 places; arrays as Sets; anything else as its JSON text. A value Cedar cannot hold (an
integer beyond 64 bits, a number outside the decimal range, a value of the wrong type, a
missing required argument) gives a reason to deny instead of a context, so the caller never
sends Cedar a request it would fail on.

Bounds keep the cost of a decision fixed, whatever an agent sends: untyped JSON text stops at
`max_json_text` characters and at `max_depth` levels of nesting, and a request whose context
(typed strings, keys, untyped text, reasoning, workflow, plus 8 for every value, so a list of
millions of tiny items counts too) adds up to more than `max_total` is denied. Nothing here
recurses on the value: typed conversion recurses only as deep as the tool's schema (at most 32
levels), and JSON text is written with an explicit stack.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

from gateway.calls import THIS_CALL_ONLY, Call, Origin, WorkflowState
from gateway.policy.hold import ApprovalContext
from gateway.policy.schema import ArgumentType, Kind

LONG_MIN = -(2**63)
LONG_MAX = 2**63 - 1
DECIMAL_MIN = Decimal("-922337203685477.5808")
DECIMAL_MAX = Decimal("922337203685477.5807")
_FOUR_PLACES = Decimal("0.0001")
_ELLIPSIS = "…"
#: What every converted value costs against the budget on top of its characters.
_VALUE_COST = 8
#: The arguments of a call that sent none.
_NO_ARGUMENTS: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ArgumentLimits:
    """How much of a request the policy engine looks at (characters, nesting levels)."""

    max_depth: int = 32
    max_json_text: int = 16 * 1024
    max_total: int = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ContextResult:
    """Either the Cedar context of a request, or why no context could be built (a reason to deny).

    `invalid_arguments` is set when the reason is that the arguments break the tool's input schema
    (a wrong type, a missing required argument): said to the agent, without the word "denied",
    since correcting them is up to the agent, not to policy.
    """

    context: dict[str, Any] | None
    problem: str | None = None
    invalid_arguments: str | None = None


class _Unrepresentable(Exception):
    """Raised inside this module only, when a value cannot enter the context; carries the reason."""


class _SchemaMismatch(_Unrepresentable):
    """An argument breaks the tool's input schema; `detail` says so to the agent, naming the argument."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.detail = detail


def call_context(
    input_type: ArgumentType,
    call: Call,
    *,
    now: datetime | None,
    limits: ArgumentLimits,
    approval: ApprovalContext | None = None,
) -> ContextResult:
    """The context of a `call_tool` action: the common attributes plus typed `input`, `rate` (the
    call's own, or this call alone when it was not counted), and `approval` when the call was
    held and is now about to run.

    `call.arguments` is a mapping or None (no arguments); the caller refuses anything else first.
    """
    converter = _Converter(limits)
    arguments = _NO_ARGUMENTS if call.arguments is None else call.arguments
    try:
        context = _common(converter, call.origin, call.reasoning, call.workflow, now, call.workflow_state)
        context["input"] = converter.record(input_type, arguments, "input")
        context["rate"] = (call.rate or THIS_CALL_ONLY).cedar()
        if approval is not None:
            context["approval"] = approval.cedar()
    except _SchemaMismatch as mismatch:
        return ContextResult(None, str(mismatch), invalid_arguments=mismatch.detail)
    except _Unrepresentable as problem:
        return ContextResult(None, str(problem))
    return ContextResult(context)


def common_context(request: Call | Origin, *, now: datetime | None, limits: ArgumentLimits) -> ContextResult:
    """The context of `read_resource` and `get_prompt` (a `Call`) and of `list_tools` (an `Origin`).

    A listing states no reasoning or workflow: those belong to a call.
    """
    try:
        if isinstance(request, Call):
            context = _common(
                _Converter(limits), request.origin, request.reasoning, request.workflow, now, request.workflow_state
            )
        else:
            context = _common(_Converter(limits), request, None, None, now)
    except _Unrepresentable as problem:
        return ContextResult(None, str(problem))
    return ContextResult(context)


#: `context.time` of the clock's current second, by that second (one entry): every field is whole seconds.
_this_second: dict[int, dict[str, Any]] = {}


def time_record(now: datetime | None) -> dict[str, Any]:
    """`context.time` in UTC: a naive `now` is taken to be UTC already.

    Without `now`, the clock's time: a copy of the record of its current second, built once a
    second rather than for every request (formatting the date and time is about a tenth of what a
    tool call the scopes settle costs to decide).
    """
    if now is None:
        second = int(time.time())
        record = _this_second.get(second)
        if record is None:
            record = _record_of(datetime.fromtimestamp(second, UTC))
            _this_second.clear()
            _this_second[second] = record
        return dict(record)
    return _record_of(now)


def _record_of(now: datetime) -> dict[str, Any]:
    moment = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    return {
        "hour": moment.hour,
        "weekday": moment.isoweekday(),
        "date": moment.date().isoformat(),
        "iso": moment.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


def _common(
    converter: _Converter,
    origin: Origin,
    reasoning: str | None,
    workflow: str | None,
    now: datetime | None,
    state: WorkflowState | None = None,
) -> dict[str, Any]:
    request_id = origin.request_id
    context: dict[str, Any] = {
        "session": {
            "id": converter.text(origin.session_id or "", "session.id"),
            "client": converter.text(origin.client_name or "", "session.client"),
        },
        "time": time_record(now),
        "request_id": converter.text("" if request_id is None else str(request_id), "request_id"),
    }
    if reasoning is not None:
        context["reasoning"] = converter.text(reasoning, "reasoning")
    context["workflow"] = _workflow_record(converter, workflow, state)
    return context


def _workflow_record(converter: _Converter, workflow: str | None, state: WorkflowState | None) -> dict[str, Any]:
    """`context.workflow`: its id ("" for none) and, when read for this call, what it did so far."""
    if workflow is None or state is None or (not state.completed and not state.agents):
        return {"id": converter.text(workflow or "", "workflow"), "completed": [], "agents": []}
    return {
        "id": converter.text(workflow, "workflow"),
        "completed": [converter.text(name, "workflow.completed") for name in sorted(state.completed)],
        "agents": [converter.text(name, "workflow.agents") for name in sorted(state.agents)],
    }


def _decimal_text(value: int | float) -> str:
    """A JSON number as Cedar `decimal` text: rounded half to even to 4 places, range-checked."""
    try:
        number = Decimal(value) if isinstance(value, int) else Decimal(repr(value))
    except (InvalidOperation, ValueError):
        raise _Unrepresentable(f"{value!r} is not a finite number") from None
    if not number.is_finite():
        raise _Unrepresentable(f"{value!r} is not a finite number")
    if not DECIMAL_MIN <= number <= DECIMAL_MAX:
        raise _Unrepresentable(f"{value!r} is outside the range policies can compare (about ±9.2e14)")
    rounded = number.quantize(_FOUR_PLACES, rounding=ROUND_HALF_EVEN)
    if not DECIMAL_MIN <= rounded <= DECIMAL_MAX:
        raise _Unrepresentable(f"{value!r} is outside the range policies can compare (about ±9.2e14)")
    return f"{rounded:f}"


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


_EXPECTED = {
    Kind.STRING: "a string",
    Kind.LONG: "an integer",
    Kind.BOOL: "a boolean",
    Kind.DECIMAL: "a number",
    Kind.RECORD: "an object",
    Kind.SET: "an array",
}


class _Converter:
    """Converts one request's values, charging every character against the request's budget."""

    def __init__(self, limits: ArgumentLimits) -> None:
        self._limits = limits
        self._spent = 0

    def _charge(self, amount: int) -> None:
        self._spent += amount
        if self._spent > self._limits.max_total:
            raise _Unrepresentable(
                f"the request is larger than the policy engine evaluates ({self._limits.max_total} characters of "
                "arguments, reasoning and workflow); it is denied rather than decided on a part of it"
            )

    def text(self, value: str, path: str) -> str:
        if not isinstance(value, str):
            raise _Unrepresentable(f"{path} must be a string, got {_kind_of(value)}")
        self._charge(len(value))
        return value

    def value(self, typed: ArgumentType, value: Any, path: str) -> Any:
        kind = typed.kind
        self._charge(_VALUE_COST)
        if kind is Kind.JSON:
            text = json_text(value, max_chars=self._limits.max_json_text, max_depth=self._limits.max_depth)
            self._charge(len(text))
            return text
        if kind is Kind.STRING:
            if not isinstance(value, str):
                raise self._mismatch(typed, value, path)
            self._charge(len(value))
            return value
        if kind is Kind.BOOL:
            if not isinstance(value, bool):
                raise self._mismatch(typed, value, path)
            return value
        if kind is Kind.LONG:
            return self._long(typed, value, path)
        if kind is Kind.DECIMAL:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self._mismatch(typed, value, path)
            try:
                return {"__extn": {"fn": "decimal", "arg": _decimal_text(value)}}
            except _Unrepresentable as problem:
                raise _Unrepresentable(f"argument '{path}': {problem}; the call is denied") from None
        if kind is Kind.RECORD:
            if not isinstance(value, Mapping):
                raise self._mismatch(typed, value, path)
            return self.record(typed, value, path)
        if not isinstance(value, list | tuple):
            raise self._mismatch(typed, value, path)
        assert typed.items is not None
        return [self.value(typed.items, item, f"{path}[{index}]") for index, item in enumerate(value)]

    def record(self, typed: ArgumentType, value: Mapping[str, Any], path: str) -> dict[str, Any]:
        """Declared attributes only: arguments the schema does not declare are not in the context."""
        if not isinstance(value, Mapping):
            raise self._mismatch(typed, value, path)
        result: dict[str, Any] = {}
        for field in typed.fields:
            self._charge(len(field.name))
            present = field.name in value
            item = value[field.name] if present else None
            if present and (item is not None or (field.type.kind is Kind.JSON and not field.nullable)):
                result[field.name] = self.value(field.type, item, f"{path}.{field.name}")
            elif present and not field.nullable:
                raise _SchemaMismatch(
                    f"argument '{path}.{field.name}' must not be null; the call is denied",
                    f"argument '{_argument(path, field.name)}' must not be null",
                )
            elif field.required:
                raise _SchemaMismatch(
                    f"required argument '{path}.{field.name}' is missing (the tool's input schema requires it); "
                    "the call is denied",
                    f"required argument '{_argument(path, field.name)}' is missing",
                )
        return result

    def _long(self, typed: ArgumentType, value: Any, path: str) -> int:
        if isinstance(value, bool):
            raise self._mismatch(typed, value, path)
        if isinstance(value, float):
            if not value.is_integer():
                raise _SchemaMismatch(
                    f"argument '{path}' must be an integer (the tool's input schema says so), got {value!r}; "
                    "the call is denied",
                    f"argument '{_argument(path)}' must be an integer, got {value!r}",
                )
            value = int(value)
        if not isinstance(value, int):
            raise self._mismatch(typed, value, path)
        if not LONG_MIN <= value <= LONG_MAX:
            raise _Unrepresentable(
                f"argument '{path}' is an integer beyond the 64-bit range policies can compare; the call is denied"
            )
        return value

    @staticmethod
    def _mismatch(typed: ArgumentType, value: Any, path: str) -> _Unrepresentable:
        return _SchemaMismatch(
            f"argument '{path}' must be {_EXPECTED[typed.kind]} (the tool's input schema says so), "
            f"got {_kind_of(value)}; the call is denied",
            f"argument '{_argument(path)}' must be {_EXPECTED[typed.kind]}, got {_kind_of(value)}",
        )


def _argument(path: str, name: str | None = None) -> str:
    """An argument's path as the agent wrote it: without the `input.` of the Cedar context."""
    full = f"{path}.{name}" if name is not None else path
    return full.removeprefix("input.")


def json_text(value: Any, *, max_chars: int, max_depth: int) -> str:
    """`value` as compact JSON text, cut at `max_chars` (ending in "…") and at `max_depth` levels.

    Containers nested deeper than `max_depth` are written as the string "…". Keys keep the
    order they were sent in. Written without recursion, so no nesting can exhaust the stack, and
    it stops reading the value once the text is long enough, so its cost is bounded too.
    """
    parts: list[str] = []
    length = 0
    for token in _tokens(value, max_depth, max_chars):
        parts.append(token)
        length += len(token)
        if length > max_chars:
            return "".join(parts)[:max_chars] + _ELLIPSIS
    return "".join(parts)


def _tokens(value: Any, max_depth: int, max_chars: int) -> Iterator[str]:
    frames: list[Iterator[tuple[Any, Any]]] = [iter([(None, value)])]
    closers = [""]
    first = [True]
    while frames:
        item = next(frames[-1], None)  # every frame yields (key, value) pairs, so None is the end
        if item is None:
            frames.pop()
            first.pop()
            yield closers.pop()
            continue
        key, current = item
        if not first[-1]:
            yield ","
        first[-1] = False
        if key is not None:
            yield _scalar(str(key), max_chars) + ":"
        nested = len(frames)
        if isinstance(current, Mapping | list | tuple) and nested > max_depth:
            yield json.dumps(_ELLIPSIS, ensure_ascii=False)
        elif isinstance(current, Mapping):
            yield "{"
            frames.append(iter(current.items()))
            closers.append("}")
            first.append(True)
        elif isinstance(current, list | tuple):
            yield "["
            frames.append((None, element) for element in current)
            closers.append("]")
            first.append(True)
        else:
            yield _scalar(current, max_chars)


def _scalar(value: Any, max_chars: int) -> str:
    if isinstance(value, str):
        return json.dumps(value[: max_chars + 1], ensure_ascii=False)
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:  # more digits than Python converts to text
            return json.dumps(_ELLIPSIS, ensure_ascii=False)
    if isinstance(value, float):
        return json.dumps(value)
    return json.dumps(str(value)[: max_chars + 1], ensure_ascii=False)
